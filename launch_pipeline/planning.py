"""The launch plan: which candidates to launch, when, to whom, and how much they will sell.

Pure functions over pandas/numpy; the ``launch_plan`` asset only feeds them tables and writes
their output.

* **Selection** (:func:`select_launches`): maximise the expected revenue ``sum_j x_j * v_j`` over
  binary ``x_j`` subject to at most ``slots`` launches and at most ``category_cap`` launches per
  category. Solved exactly as a MILP with ``scipy.optimize.milp`` (HiGHS). ``v_j`` is the
  demand model's expected revenue (:mod:`launch_pipeline.demand`, fitted on the shop's past
  launches) when there is one, else ``sum_i r_ij * price_j * units per purchase``.
* **Audience** (:func:`promotion_audiences`): the ``audience_size`` users with the highest
  ``r_ij`` for each chosen product.
* **Timing** (:func:`best_launch_window`): the hour of week in which the audience is most active
  (their activity profiles weighted by ``r_ij``), and the first such day-and-hour after the plan
  date.
* **Forecast**: with a demand model, expected units and revenue and their 80% interval come from
  it (the spread of its errors on past launches). Without one (:func:`demand_forecast`): ``r_ij``
  is the probability that user ``i`` buys ``j`` within the horizon; units are a sum of
  independent Bernoulli purchases times the mean units per purchase of the product's category.
  The 80% interval uses the normal approximation of that Poisson-binomial sum (mean ``sum r``,
  variance ``sum r(1-r)``), floored at zero. ``expected_buyers`` is ``sum_i r_ij`` either way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp

Z80 = 1.2815515655446004  # standard normal quantile for a central 80% interval

DEMAND_COLUMNS = (
    "expected_revenue",
    "revenue_p10",
    "revenue_p90",
    "expected_units",
    "units_p10",
    "units_p90",
    "demand_score",
)

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class SelectionResult:
    chosen: list[str]
    objective: float
    status: str
    solve_seconds: float


def select_launches(
    candidates: pd.DataFrame,
    slots: int,
    category_cap: int | None = None,
    value_col: str = "expected_revenue",
) -> SelectionResult:
    """Pick at most ``slots`` candidates, at most ``category_cap`` per category, maximising the
    sum of ``value_col``. ``candidates`` needs columns ``item_id``, ``category`` and ``value_col``.

    Candidates with a non-positive value are never chosen (launching them adds nothing)."""
    import time

    if slots < 0:
        raise ValueError(f"slots must be >= 0, got {slots}")
    if category_cap is not None and category_cap < 0:
        raise ValueError(f"category_cap must be >= 0, got {category_cap}")
    df = candidates.reset_index(drop=True)
    n = len(df)
    if n == 0 or slots == 0:
        return SelectionResult([], 0.0, "empty", 0.0)
    values = df[value_col].to_numpy(dtype=float)
    values = np.where(np.isfinite(values), values, 0.0)
    rows = [np.ones(n)]
    upper = [float(slots)]
    if category_cap is not None:
        codes, cats = pd.factorize(df["category"].fillna("unknown"))
        a = np.zeros((len(cats), n))
        a[codes, np.arange(n)] = 1.0
        rows.extend(a)
        upper.extend([float(category_cap)] * len(cats))
    from scipy.sparse import csr_array

    constraints = LinearConstraint(csr_array(np.vstack(rows)), -np.inf, np.array(upper))
    ub = (values > 0).astype(float)  # never launch a candidate that adds no value
    t0 = time.perf_counter()
    res = milp(
        c=-values,
        constraints=constraints,
        integrality=np.ones(n),
        bounds=Bounds(np.zeros(n), ub),
        options={"disp": False, "time_limit": 60.0},
    )
    elapsed = time.perf_counter() - t0
    if res.x is None:
        raise RuntimeError(f"launch selection MILP failed: {res.message}")
    chosen_mask = res.x > 0.5
    chosen = df.loc[chosen_mask].sort_values(value_col, ascending=False)["item_id"].tolist()
    return SelectionResult(
        chosen=[str(c) for c in chosen],
        objective=float(values[chosen_mask].sum()),
        status=str(res.message),
        solve_seconds=elapsed,
    )


def promotion_audiences(
    prefs: pd.DataFrame, item_ids: list[str], audience_size: int
) -> pd.DataFrame:
    """Top ``audience_size`` users by ``r`` for each item. ``prefs``: ``user_id, item_id, r``."""
    sub = prefs[prefs["item_id"].isin(item_ids)]
    sub = sub.sort_values(["item_id", "r", "user_id"], ascending=[True, False, True])
    sub = sub.groupby("item_id", sort=False).head(audience_size).copy()
    sub["audience_rank"] = sub.groupby("item_id").cumcount() + 1
    return sub[["item_id", "user_id", "r", "audience_rank"]].reset_index(drop=True)


def best_launch_window(
    audience: pd.DataFrame, user_profiles: pd.DataFrame, overall_profile: np.ndarray | None = None
) -> tuple[int, np.ndarray]:
    """Hour of week (0 = Monday 00:00 UTC) in which the audience is most active.

    ``audience``: ``user_id, r``; ``user_profiles``: ``user_id, hour_of_week, event_share``.
    Each user's hour-of-week activity shares are weighted by ``r``; the result is smoothed over
    the neighbouring hours (a launch reaches people for a while). Falls back to the overall
    profile for users without history. Returns (hour_of_week, 168-vector of weights)."""
    weights = np.zeros(168)
    prof = user_profiles.merge(audience[["user_id", "r"]], on="user_id")
    if len(prof):
        np.add.at(
            weights,
            prof["hour_of_week"].to_numpy(dtype=int),
            (prof["event_share"] * prof["r"]).to_numpy(dtype=float),
        )
    if weights.sum() <= 0 and overall_profile is not None:
        weights = np.asarray(overall_profile, dtype=float).copy()
    smoothed = 0.5 * weights + 0.25 * np.roll(weights, 1) + 0.25 * np.roll(weights, -1)
    return int(np.argmax(smoothed)), smoothed


def next_launch_time(plan_date: dt.date, hour_of_week: int) -> dt.datetime:
    """First datetime on or after ``plan_date`` (00:00 UTC) with the given hour of week."""
    weekday, hour = divmod(int(hour_of_week), 24)
    days_ahead = (weekday - plan_date.weekday()) % 7
    day = plan_date + dt.timedelta(days=days_ahead)
    return dt.datetime.combine(day, dt.time(hour))


def demand_forecast(r: np.ndarray, price: float, units_per_purchase: float = 1.0) -> dict:
    """Expected buyers, units and revenue with an 80% interval from purchase probabilities."""
    r = np.clip(np.asarray(r, dtype=float), 0.0, 1.0)
    mean = float(r.sum())
    sd = float(np.sqrt((r * (1 - r)).sum()))
    lo, hi = max(0.0, mean - Z80 * sd), mean + Z80 * sd
    k = float(units_per_purchase)
    return {
        "expected_buyers": mean,
        "expected_units": mean * k,
        "units_p10": lo * k,
        "units_p90": hi * k,
        "expected_revenue": mean * k * price,
        "revenue_p10": lo * k * price,
        "revenue_p90": hi * k * price,
    }


def make_plan(
    prefs: pd.DataFrame,
    candidates: pd.DataFrame,
    user_profiles: pd.DataFrame,
    overall_profile: np.ndarray,
    plan_date: dt.date,
    slots: int,
    category_cap: int | None,
    audience_size: int,
    demand: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, SelectionResult]:
    """The whole plan.

    ``prefs``: ``user_id, item_id, r`` (purchase probability within the horizon);
    ``candidates``: ``item_id, title, category, brand, price, units_per_purchase``;
    ``user_profiles``: ``user_id, hour_of_week, event_share``; ``demand`` (optional): the demand
    model's ``item_id, expected_revenue, revenue_p10, revenue_p90, expected_units, units_p10,
    units_p90`` (and ``demand_score``), which then replace the r_ij-based forecast and value.

    Returns (plan: one row per candidate with ``chosen`` and, for chosen ones, launch time and
    forecast; audiences: ``item_id, user_id, r, audience_rank``; the MILP result)."""
    agg = prefs.groupby("item_id")["r"].agg(list).rename("rs")
    cand = candidates.merge(agg, left_on="item_id", right_index=True, how="left")
    rows = []
    for rec in cand.itertuples(index=False):
        rs = np.asarray(rec.rs if isinstance(rec.rs, list) else [], dtype=float)
        price = float(rec.price) if pd.notna(rec.price) else 0.0
        f = demand_forecast(rs, price, getattr(rec, "units_per_purchase", 1.0) or 1.0)
        rows.append({"item_id": rec.item_id, **f})
    forecast = pd.DataFrame(rows)
    forecast["value_source"] = "preferences"
    if demand is not None and len(demand):
        cols = [c for c in DEMAND_COLUMNS if c in demand.columns]
        d = demand.set_index("item_id")[cols]
        known = forecast["item_id"].isin(d.index)
        for c in cols:
            if c not in forecast.columns:
                forecast[c] = np.nan
            forecast.loc[known, c] = d.loc[forecast.loc[known, "item_id"], c].to_numpy()
        forecast.loc[known, "value_source"] = "past_launches"
    table = candidates.merge(forecast, on="item_id", how="left")
    selection = select_launches(table, slots=slots, category_cap=category_cap)
    table["chosen"] = table["item_id"].isin(selection.chosen)
    rank = {item: k + 1 for k, item in enumerate(selection.chosen)}
    table["plan_rank"] = table["item_id"].map(rank)
    audiences = promotion_audiences(prefs, selection.chosen, audience_size)
    launch_hours, launch_at = {}, {}
    for item in selection.chosen:
        how, _ = best_launch_window(
            audiences[audiences["item_id"] == item], user_profiles, overall_profile
        )
        launch_hours[item] = how
        launch_at[item] = next_launch_time(plan_date, how)
    table["launch_hour_of_week"] = table["item_id"].map(launch_hours)
    table["launch_at"] = pd.to_datetime(table["item_id"].map(launch_at))
    table["launch_weekday"] = table["launch_hour_of_week"].map(
        lambda h: WEEKDAYS[int(h) // 24] if pd.notna(h) else None
    )
    table["launch_hour"] = table["launch_hour_of_week"].map(
        lambda h: int(h) % 24 if pd.notna(h) else None
    )
    table.insert(0, "plan_date", plan_date)
    table = table.sort_values(["chosen", "expected_revenue"], ascending=[False, False])
    audiences.insert(0, "plan_date", plan_date)
    return table.reset_index(drop=True), audiences, selection
