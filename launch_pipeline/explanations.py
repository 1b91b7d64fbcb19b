"""Why a product is in the plan, or why it is not: reasons a merchandiser can check.

For every pick and the best non-picks (:func:`explain_plan`):

* the main **drivers** of its value with their contribution in money: the demand model's factors
  (each factor's contribution is the value minus what the product would be worth with that
  factor at the level of an average candidate, ``value x (1 - exp(-coef x z))``), then what stock,
  margin and cannibalization take off or add;
* its most **similar past products** (title similarity) and how they sold over the horizon before
  the plan;
* its **audience in words** (:func:`describe_audience`);
* for a non-pick, the **constraint that left it out** (:func:`left_out_by`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURE_WORDS = {
    "log_price": "its price",
    "text_knn5": "the 5 products with the most similar titles sell",
    "text_knn20": "the 20 products with the most similar titles sell",
    "text_knn_weighted": "similar titles sell (weighted by similarity)",
    "category_revenue": "its category sells",
    "collection_size": "similar products launched together (a collection)",
    "expected_buyers": "returning customers likely to buy it",
}
BAND_WORDS = {
    "p1": "lowest price band",
    "p2": "low price band",
    "p3": "mid price band",
    "p4": "high price band",
    "p5": "top price band",
}


@dataclass(frozen=True)
class Explanation:
    item_id: str
    chosen: bool
    value_rank: int
    drivers: list[tuple[str, float]]  # (what, contribution in money)
    similar_products: list[dict]  # item_id, title, units, revenue
    audience: str
    left_out_by: str | None

    def drivers_text(self, currency_digits: int = 0) -> str:
        return "; ".join(
            f"{what} ({'+' if v >= 0 else '-'}{abs(v):,.{currency_digits}f})" if v else what
            for what, v in self.drivers
        )

    def similar_text(self) -> str:
        return "; ".join(
            f"{s['title']} ({s['item_id']}): {s['units']:,.0f} "
            f"unit{'' if round(s['units']) == 1 else 's'}, {s['revenue']:,.0f} revenue"
            for s in self.similar_products
        )


def describe_audience(users: pd.DataFrame, user_info: pd.DataFrame) -> str:
    """The audience in words, e.g. "mostly shoppers of kitchen & dining (64%), mid price band,
    72% bought before, last seen 2 days ago (median)". ``users``: ``user_id``; ``user_info``:
    ``user_id, top_category, preferred_price_band, purchases, recency_days``."""
    if users.empty:
        return "no audience"
    info = user_info.merge(users[["user_id"]].astype(str), on="user_id", how="inner")
    if info.empty:
        return f"{len(users)} users without a history"
    parts = []
    cats = info["top_category"].dropna()
    if len(cats):
        top = cats.value_counts()
        share = top.iloc[0] / len(info)
        parts.append(f"mostly shoppers of {top.index[0]} ({share:.0%})")
    bands = info["preferred_price_band"].dropna()
    if len(bands):
        band = bands.value_counts().index[0]
        parts.append(BAND_WORDS.get(str(band), f"price band {band}"))
    bought = (info["purchases"].fillna(0) > 0).mean()
    parts.append(f"{bought:.0%} bought before")
    rec = info["recency_days"].dropna()
    if len(rec):
        days = int(round(float(rec.median())))
        parts.append(
            "last seen today (median)"
            if days == 0
            else f"last seen {days} day{'s' if days != 1 else ''} ago (median)"
        )
    return f"{len(users)} users: " + ", ".join(parts)


def left_out_by(
    row: pd.Series,
    picks: pd.DataFrame,
    slots: int,
    category_cap: int | None,
    launch_budget: float | None,
    value_col: str,
) -> str:
    """The constraint that kept a candidate out of the plan, in words."""
    v = float(row[value_col])
    if not np.isfinite(v) or v <= 0:
        return "adds no value (expected value at or below zero)"
    if picks.empty:
        return "no launch slots"
    weakest = float(picks[value_col].min())
    if category_cap is not None:
        same = picks[picks["category"].fillna("unknown") == (row["category"] or "unknown")]
        if len(same) >= category_cap and v > weakest:
            return (
                f"category cap: the {category_cap} {row['category']} place(s) went to products "
                f"worth more (the weakest {float(same[value_col].min()):,.0f}); without the cap "
                f"it would replace the last pick (worth {weakest:,.0f})"
            )
    if launch_budget is not None:
        used = float(picks["order_cost"].fillna(0).sum())
        cost = float(row.get("order_cost") or 0.0)
        if used + cost > launch_budget and v > weakest:
            return (
                f"launch budget: its order ({cost:,.0f}) does not fit in the "
                f"{launch_budget - used:,.0f} left of {launch_budget:,.0f}"
            )
    if len(picks) >= slots:
        return (
            f"slots: all {slots} launch slots went to products worth more (the last {weakest:,.0f})"
        )
    return "the picks together are worth more with their audiences (contact cap)"


def value_drivers(
    row: pd.Series,
    value_col: str,
    coefficients: dict[str, float] | None,
    z: pd.Series | None,
    top: int = 3,
) -> list[tuple[str, float]]:
    """The main drivers of one candidate's value with their contribution in money."""
    value = float(row[value_col])
    out: list[tuple[str, float]] = []
    if coefficients and z is not None:
        contrib = []
        for f, c in coefficients.items():
            if f in z.index and np.isfinite(z[f]):
                contrib.append((FEATURE_WORDS.get(f, f), value * (1.0 - np.exp(-c * float(z[f])))))
        contrib.sort(key=lambda t: -abs(t[1]))
        out.extend((f"demand: {w}", v) for w, v in contrib[:top])
    else:
        out.append(
            (
                f"demand: {row.get('buyers_from_preferences', 0):.1f} expected buyers among "
                "active users (predicted preferences)",
                value,
            )
        )
    lost = float(row.get("stock_lost_value", 0.0) or 0.0)
    if lost > 0.5:
        out.append((f"stock of {int(row['stock'])} caps sales", -lost))
    cann = float(row.get("cannibalized_value", 0.0) or 0.0)
    if cann > 0.5:
        out.append((f"takes {row['cannibalization_rate']:.0%} from similar products", -cann))
    if "unit_margin" in row and pd.notna(row.get("unit_margin")) and row.get("price"):
        out.append((f"margin {row['unit_margin'] / row['price']:.0%} of the price", 0.0))
    if row.get("stock_limited"):
        out.append((f"may sell out: only {int(row['stock'])} in stock", 0.0))
    return out


def similar_past_products(
    hist,
    titles: pd.Series,
    as_of: pd.Timestamp,
    horizon_days: int,
    k: int = 3,
) -> list[list[dict]]:
    """For each title, its ``k`` most similar existing products and their units and revenue
    over the ``horizon_days`` before ``as_of``."""
    from launch_pipeline.demand import similar_products

    items = hist.items[~hist.items["is_candidate"]]
    existing = items[items["launched_at"].isna() | (items["launched_at"] < as_of)].reset_index(
        drop=True
    )
    idx, sims = similar_products(existing["title"], titles, k)
    s = hist.sales
    recent = s[(s["ts"] >= as_of - pd.Timedelta(days=horizon_days)) & (s["ts"] < as_of)]
    agg = recent.groupby("item_id")[["units", "revenue"]].sum()
    out = []
    for r in range(len(titles)):
        rows = []
        for c in range(idx.shape[1]):
            if sims[r, c] <= 0:
                continue
            it = existing.iloc[int(idx[r, c])]
            key = it["item_id"]
            rows.append(
                {
                    "item_id": str(key),
                    "title": str(it["title"]),
                    "similarity": float(sims[r, c]),
                    "units": float(agg["units"].get(key, 0.0)),
                    "revenue": float(agg["revenue"].get(key, 0.0)),
                }
            )
        out.append(rows)
    return out
