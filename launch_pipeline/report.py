"""The launch-plan report: Markdown plus PNG plots under ``data/reports/``.

Written for merchandisers first (what to launch, when, to whom, how much to order, why, and how
the scenarios compare); the model details are in a last section for analysts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from launch_pipeline.planning import WEEKDAYS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_values(plan: pd.DataFrame, path: Path) -> Path:
    """Candidates by value with the 10-90% range of units turned into value (green = chosen)."""
    plt = _plt()
    df = plan.sort_values("value", ascending=True).tail(30)
    per_unit = (df["value"] / df["expected_units"].where(df["expected_units"] > 0)).fillna(0.0)
    lo = (df["value"] - per_unit * df["units_p10"]).clip(lower=0)
    hi = (per_unit * df["units_p90"] - df["value"]).clip(lower=0)
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(df) + 1.2))
    ax.barh(
        df["item_id"].astype(str) + "  " + df["title"].astype(str).str[:28],
        df["value"],
        xerr=[lo, hi],
        color=["#27ae60" if c else "#bdc3c7" for c in df["chosen"]],
        ecolor="#7f8c8d",
    )
    what = "gross profit" if (df["objective"] == "gross_profit").any() else "revenue"
    ax.set_xlabel(f"expected incremental {what} over the horizon (bars: 80% range)")
    ax.set_title("Candidates by value (green = in the plan)")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_launch_hours(plan: pd.DataFrame, overall_profile, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.bar(range(168), overall_profile, width=1.0, color="#95a5a6", label="all shoppers")
    for h in plan.loc[plan["chosen"], "launch_hour_of_week"].dropna().astype(int):
        ax.axvline(h, color="#e67e22", alpha=0.8)
    ax.set_xticks(range(0, 168, 24), [d[:3] for d in WEEKDAYS])
    ax.set_title("Shopper activity by hour of week (UTC) and the launch hours (orange)")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_slot_curve(curve: pd.DataFrame, slots: int, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(curve["slots"], curve["value"], marker="o", color="#2980b9")
    ax.bar(curve["slots"], curve["marginal_value"], color="#aed6f1", label="added by that slot")
    ax.axvline(slots, color="#e67e22", linestyle="--", label=f"this plan: {slots} slots")
    ax.set_xlabel("launch slots")
    ax.set_ylabel("plan value")
    ax.set_title("Value of each extra launch slot")
    ax.legend()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _money(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:,.0f}"


def _when(local, utc, tz: str) -> str:
    if pd.isna(utc):
        return "-"
    local, utc = pd.Timestamp(local), pd.Timestamp(utc)
    if tz == "UTC":
        return f"{utc:%a %d %b %H:00} UTC"
    return f"{local:%a %d %b %H:00} ({utc:%H:00} UTC)"


def plan_table(plan: pd.DataFrame) -> pd.DataFrame:
    """The picks as a merchandiser reads them: rounded, whole units, local and UTC times."""
    chosen = plan[plan["chosen"]].sort_values("plan_rank")
    profit = chosen["objective"].eq("gross_profit").any()
    out = pd.DataFrame(
        {
            "#": chosen["plan_rank"].astype(int),
            "product": chosen["item_id"],
            "title": chosen["title"].astype(str).str[:40],
            "category": chosen["category"],
            "price": chosen["price"].round(2),
            "units sold (80% range)": [
                f"{u:,.0f} ({int(lo):,}-{int(hi):,})"
                for u, lo, hi in zip(
                    chosen["expected_units"], chosen["units_p10"], chosen["units_p90"], strict=True
                )
            ],
            "order": chosen["order_quantity"].astype(int),
            "revenue": chosen["expected_revenue"].map(_money),
        }
    )
    if profit:
        out["gross profit"] = chosen["expected_gross_profit"].map(_money)
        out["incremental profit"] = chosen["incremental_gross_profit"].map(_money)
    else:
        out["incremental revenue"] = chosen["incremental_revenue"].map(_money)
    out["launch"] = [
        _when(lo, ut, tz)
        for lo, ut, tz in zip(
            chosen["launch_at_local"], chosen["launch_at"], chosen["shop_timezone"], strict=True
        )
    ]
    return out.reset_index(drop=True)


def scenario_table(scenarios: pd.DataFrame) -> pd.DataFrame:
    """The scenarios of one plan date side by side."""
    if scenarios.empty:
        return scenarios
    return pd.DataFrame(
        {
            "scenario": scenarios["scenario"],
            "slots": scenarios["slots"],
            "category cap": scenarios["category_cap"],
            "objective": scenarios["objective"].str.replace("_", " "),
            "horizon (days)": scenarios["horizon_days"],
            "budget": scenarios["launch_budget"].map(_money),
            "contact cap": scenarios["max_promotions_per_user"],
            "picks": scenarios["picks"],
            "revenue": scenarios["expected_revenue"].map(_money),
            "gross profit": scenarios["expected_gross_profit"].map(_money),
            "incremental profit": scenarios["incremental_gross_profit"].map(_money),
            "order cost": scenarios["order_cost"].map(_money),
            "customers reached": scenarios["distinct_users"],
        }
    )


def write_plan_report(
    path: Path,
    result,
    overall_profile,
    scenarios: pd.DataFrame,
    context: dict,
) -> Path:
    """Write the report of one scenario (``result``: a ``launch_planner.PlanResult``) to
    ``path`` with its plots beside it; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    plan, s = result.plan, result.summary
    value_png = plot_values(plan, path.with_name(f"{stem}_value.png"))
    hours_png = plot_launch_hours(plan, overall_profile, path.with_name(f"{stem}_launch_hours.png"))
    slots_png = plot_slot_curve(
        result.slot_curve, s["slots"], path.with_name(f"{stem}_slot_value.png")
    )
    chosen = plan[plan["chosen"]].sort_values("plan_rank")
    profit = s["objective"] == "gross_profit"
    tz = s["shop_timezone"]
    first = chosen["launch_at"].min() if len(chosen) else None
    first_local = chosen["launch_at_local"].min() if len(chosen) else None
    created = pd.Timestamp(s["created_at"])
    h = s["horizon_days"]
    lines = [
        f"# Launch plan for {pd.Timestamp(s['plan_date']):%A %d %B %Y}"
        + ("" if s["scenario"] == "default" else f' - scenario "{s["scenario"]}"'),
        "",
        f"**Launch {s['picks']} new products.** Over the next {h} days they are "
        f"expected to sell for **{_money(s['expected_revenue'])}**"
        + (f" with a gross profit of **{_money(s['expected_gross_profit'])}**" if profit else "")
        + f"; after the sales they take from similar products already on sale, "
        f"**{_money(s['incremental_gross_profit'] if profit else s['incremental_revenue'])}** "
        + ("of profit" if profit else "of revenue")
        + " is new to the shop.",
        "",
        f"- Order before launch: {int(chosen['order_quantity'].sum()):,} units"
        + (f", costing {_money(s['order_cost'])}" if s.get("order_cost") is not None else "")
        + (f" (budget {_money(s['launch_budget'])})" if s.get("launch_budget") is not None else "")
        + ".",
        f"- Promotions: {s['audience_places']:,} messages to {s['distinct_users']:,} different "
        f"customers; nobody gets more than {s['max_promotions_per_user']} "
        f"(most anyone gets: {s['max_promotions_seen']}).",
        f"- First launch: {_when(first_local, first, tz)}; the plan was made "
        f"{created:%d %b %H:%M} UTC and no launch is earlier than {s['lead_time_hours']:g} hours "
        "after that. Launches whose audiences overlap are at least a day apart.",
        f"- Rules: at most {s['slots']} launches, at most {s['category_cap']} per category; "
        f"maximising {'gross profit' if profit else 'revenue'}.",
        "",
        "## Products to launch",
        "",
        plan_table(plan).to_markdown(index=False) if len(chosen) else "_No product qualifies._",
        "",
        "*Units sold*: expected units over the horizon, at most the stock; "
        + units_range_note(context.get("demand_model"))
        + forecast_basis_note(context.get("demand_model"), h)
        + " *Order*: the recommended first order, assuming unsold units are "
        + (
            "worth nothing"
            if not context.get("salvage_share")
            else f"worth {context['salvage_share']:.0%} of their cost"
        )
        + " at the end of the horizon: more is ordered when the margin is high, at least one "
        "unit, and more can be reordered as it sells, up to the stock available.",
        "",
        "## Why these products",
        "",
    ]
    expl = result.explained
    for e in [e for e in expl if e.chosen]:
        row = plan.set_index("item_id").loc[e.item_id]
        lines += [
            f"**{int(row['plan_rank'])}. {row['title']}** ({e.item_id}, {row['category']})",
            f"- value drivers: {e.drivers_text()}",
            f"- similar products: {e.similar_text() or 'none on sale'}",
            f"- audience: {e.audience}",
            "",
        ]
    left = [e for e in expl if not e.chosen]
    if left:
        lines += ["## Close alternatives left out", ""]
        for e in left:
            row = plan.set_index("item_id").loc[e.item_id]
            lines += [
                f"**{row['title']}** ({e.item_id}, {row['category']}, value "
                f"{_money(row['value'])}): left out by {e.left_out_by}.",
                f"- value drivers: {e.drivers_text()}",
                f"- similar products: {e.similar_text() or 'none on sale'}",
                "",
            ]
    lines += [
        "## Scenarios compared",
        "",
        "Every scenario planned for this date (`launch-pipeline plan --scenario NAME ...`):",
        "",
        scenario_table(scenarios).to_markdown(index=False),
        "",
        "## Value of an extra launch slot",
        "",
        f"![value of each slot]({slots_png.name})",
        "",
        pd.DataFrame(
            {
                "launch slots": result.slot_curve["slots"],
                "plan value": result.slot_curve["value"].map(_money),
                "added by this slot": result.slot_curve["marginal_value"].map(_money),
            }
        ).to_markdown(index=False),
        "",
        "## Plots",
        "",
        f"![candidates by value]({value_png.name})",
        "",
        f"![launch hours]({hours_png.name})",
        "",
        *analyst_section(s, context),
    ]
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path


def units_range_note(model) -> str:
    """What the 80% units range of the plan is worth, in a merchandiser's words: checked on the
    shop's own past launches, only fitted to them, or not checked at all (``model``: the
    demand model, a ``demand.DemandModel``, or ``None`` when the shop had too few past
    launches for one)."""
    if model is None:
        return (
            "the range shows how purchases vary around that expectation but not how far the "
            "expectation itself can be off: the shop has too few past launches to check it."
        )
    replayed = model.interval_replayed_launches
    if replayed or model.interval_from.startswith("split-conformal"):
        # (a model stored before the count was kept says so only in ``interval_from``)
        return (
            "the range is set so that it held 8 in 10 of the shop's past launches"
            + (f" ({replayed:,})" if replayed else "")
            + " when they were forecast the same way, before their sales were known."
        )
    return (
        "the range is fitted to the shop's past launches but could not yet be checked on "
        "launches it had not seen (less than two launch periods of history), so it may be too "
        "narrow: fewer than 8 launches in 10 may fall inside it."
    )


def forecast_basis_note(model, horizon_days: int) -> str:
    """With a demand model, what its forecasts are learned from, in a merchandiser's words: past
    launches' sales from their launch day to the end of a period as long as the horizon,
    whichever day of it they launched (what the backtest scores). A plan launches its picks in
    its first days, so they usually sell more than that (on Online Retail 2011 launches made
    0.41-0.72 of their first-90-days revenue by their window's end:
    ``benchmarks/launch_timing_factor.py``). Empty without a demand model."""
    if model is None:
        return ""
    return (
        f" Forecasts are learned from how the shop's past launches sold from their launch day "
        f"to the end of {horizon_days}-day periods, whichever day of them they launched; a "
        "product launched at the start, as planned here, usually sells more."
    )


def analyst_section(s: dict, context: dict) -> list[str]:
    """Model details (for analysts)."""
    cann = context.get("cannibalization") or {}
    model = context.get("demand_model")
    lines = [
        "## For analysts",
        "",
        f"- Data: events up to {context.get('data_until', '?')}; "
        f"{context.get('users_scored', '?')} users scored; recommender "
        f"`{context.get('model_version', '?')}`"
        + (
            f" (next-item HR@10 {context['hr@10']:.3f}, NDCG@10 {context['ndcg@10']:.3f}; "
            f"popularity HR@10 {context['popularity_hr@10']:.3f})."
            if all(k in context for k in ("hr@10", "ndcg@10", "popularity_hr@10"))
            else "."
        ),
        f"- Value of a candidate: {s['value_source']}. With a demand model the 80% units range "
        "and the median are its split-conformal bounds (realised / predicted of replayed past "
        "launches; in-sample when no window could be replayed) times the expected units; the "
        "order and the expected units sold come from a negative binomial whose spread is the "
        "gamma matching those quantiles. Without a demand model: Poisson around sum_i r_ij x "
        "units per purchase. Expected units sold = E[min(units, stock)]; buyers = units sold / "
        "units per purchase, never above the sum of r_ij.",
    ]
    if model is not None:
        coefs = ", ".join(f"{k} {v:+.3f}" for k, v in model.coefficients.items())
        lines.append(
            f"- Demand model: Poisson regression on {model.launches} past launches; "
            f"coefficients {coefs}; realised / predicted p10 {model.ratio_quantiles['p10']:.2f}, "
            f"p90 {model.ratio_quantiles['p90']:.2f} ({model.interval_from or 'interval'})."
        )
    if cann:
        lines.append(
            f"- Cannibalization: measured on {cann.get('launches', 0)} past launches with "
            f"similar products on sale ({cann.get('window_days')} days before vs after, "
            f"{cann.get('neighbours')} nearest titles at cosine >= "
            f"{cann.get('min_similarity')}): {cann.get('measured_rate', 0):+.1%} of a launch's "
            f"revenue taken from them (valued at {cann.get('rate', 0):.1%}; a negative rate is "
            "a halo and is valued as 0). Each candidate's rate scales with how close its "
            "neighbours are."
        )
    lines += [
        f"- Optimisation: a MILP (scipy / HiGHS) picks the products ({s['solver_status']}); "
        "the audiences of all picks are assigned together as a min-cost flow (LP, whole "
        "optimum) under the contact cap, maximising sum r_ij x value of a purchase after every "
        "pick got the first half of its audience.",
        f"- Made {pd.Timestamp(s['created_at']):%Y-%m-%d %H:%M:%S} UTC in "
        f"{s.get('plan_seconds', float('nan')):.1f} s; settings: `{s['settings_json']}`.",
        "",
    ]
    return lines


def report_date(plan_date) -> str:
    return pd.Timestamp(plan_date).date().isoformat() if plan_date else dt.date.today().isoformat()
