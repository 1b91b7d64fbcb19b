"""The readable launch-plan report: Markdown plus PNG plots under ``data/reports/``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from launch_pipeline.planning import WEEKDAYS


def _plot_revenue(plan: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = plan.sort_values("expected_revenue", ascending=True).tail(30)
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(df) + 1.2))
    colors = ["#27ae60" if c else "#bdc3c7" for c in df["chosen"]]
    err_lo = (df["expected_revenue"] - df["revenue_p10"]).clip(lower=0)
    err_hi = (df["revenue_p90"] - df["expected_revenue"]).clip(lower=0)
    ax.barh(
        df["item_id"].astype(str) + "  " + df["title"].astype(str).str[:28],
        df["expected_revenue"],
        xerr=[err_lo, err_hi],
        color=colors,
        ecolor="#7f8c8d",
    )
    ax.set_xlabel("expected revenue over the horizon (80% interval)")
    ax.set_title("Candidates by expected revenue (green = chosen)")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _plot_launch_hours(plan: pd.DataFrame, overall_profile, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.bar(range(168), overall_profile, width=1.0, color="#95a5a6", label="all shoppers")
    chosen = plan[plan["chosen"]]
    for h in chosen["launch_hour_of_week"].dropna().astype(int):
        ax.axvline(h, color="#e67e22", alpha=0.8)
    ax.set_xticks(range(0, 168, 24), [d[:3] for d in WEEKDAYS])
    ax.set_title("Activity by hour of week (UTC) and chosen launch hours (orange)")
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def _forecast_note(plan: pd.DataFrame) -> str:
    if "value_source" in plan and (plan["value_source"] == "past_launches").any():
        return (
            "Expected revenue comes from the demand model fitted on this shop's own past launches "
            "(launch_pipeline/demand.py: title similarity to products that sell, category, launch "
            "price, collection size); the interval is the 10th-90th percentile of realised / "
            "predicted revenue on those past launches; units = revenue / price. Expected buyers "
            "are sums over users of r_ij (the probability, calibrated on past launches, that "
            "user i buys product j within the horizon); audiences are the top users by r_ij."
        )
    return (
        "Expected units are sums over users of r_ij (the probability that user i buys product j "
        "within the horizon) times the mean units per purchase in the product's category; the "
        "interval is the 10th-90th percentile of that sum of independent purchases."
    )


def write_plan_report(
    reports_dir: Path,
    plan: pd.DataFrame,
    audiences: pd.DataFrame,
    overall_profile,
    plan_date: dt.date,
    context: dict,
) -> Path:
    """Write ``launch_plan_<plan_date>.md`` and its plots; returns the Markdown path."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"launch_plan_{plan_date.isoformat()}"
    rev_png = reports_dir / f"{stem}_revenue.png"
    hours_png = reports_dir / f"{stem}_launch_hours.png"
    _plot_revenue(plan, rev_png)
    _plot_launch_hours(plan, overall_profile, hours_png)
    chosen = plan[plan["chosen"]].sort_values("plan_rank")
    table = pd.DataFrame(
        {
            "#": chosen["plan_rank"].astype(int),
            "product": chosen["item_id"],
            "title": chosen["title"],
            "category": chosen["category"],
            "price": chosen["price"].round(2),
            "expected units (80% interval)": [
                f"{u:.1f} ({lo:.1f}-{hi:.1f})"
                for u, lo, hi in zip(
                    chosen["expected_units"], chosen["units_p10"], chosen["units_p90"], strict=True
                )
            ],
            "expected revenue": chosen["expected_revenue"].round(2),
            "launch (UTC)": [
                f"{w} {pd.Timestamp(t):%Y-%m-%d} {int(h):02d}:00"
                for w, t, h in zip(
                    chosen["launch_weekday"],
                    chosen["launch_at"],
                    chosen["launch_hour"],
                    strict=True,
                )
            ],
        }
    )
    aud = (
        audiences.sort_values(["item_id", "audience_rank"])
        .groupby("item_id")["user_id"]
        .agg(lambda s: ", ".join(map(str, list(s)[:8])) + (" ..." if len(s) > 8 else ""))
    )
    total = chosen["expected_revenue"].sum()
    lines = [
        f"# Launch plan for {plan_date.isoformat()}",
        "",
        f"- Data: events up to {context.get('data_until', '?')}; "
        f"{context.get('users_scored', '?')} users scored against {len(plan)} candidates.",
        f"- Model: `{context.get('model_version', '?')}` "
        f"(next-item HR@10 {context.get('hr@10', float('nan')):.3f}, "
        f"NDCG@10 {context.get('ndcg@10', float('nan')):.3f}; popularity baseline "
        f"HR@10 {context.get('popularity_hr@10', float('nan')):.3f}).",
        f"- Constraints: {context.get('slots')} launch slots, at most "
        f"{context.get('category_cap')} per category; horizon {context.get('horizon_days')} days.",
        f"- Chosen: {len(chosen)} products, expected revenue {total:,.2f} over the horizon "
        f"(MILP objective, {context.get('solver_status', '')}).",
        f"- Value of a candidate: {context.get('value_source', 'sum of r_ij x price')}.",
        "",
        "## Products to launch",
        "",
        table.to_markdown(index=False),
        "",
        "## Promotion audiences (top users by predicted preference)",
        "",
        *[f"- **{item}**: {users}" for item, users in aud.items()],
        "",
        "## Plots",
        "",
        f"![expected revenue]({rev_png.name})",
        "",
        f"![launch hours]({hours_png.name})",
        "",
        _forecast_note(plan),
        "",
    ]
    path = reports_dir / f"{stem}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    return path
