"""Planning assets: predicted preferences r_ij and the launch plan."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from launch_pipeline.defs.features import (
    activity_profile,
    item_features,
    user_features,
    user_sequences,
)
from launch_pipeline.defs.metadata import markdown_table, png_markdown, table_metadata
from launch_pipeline.defs.model import champion_model, model_evaluation
from launch_pipeline.defs.raw import WAREHOUSE_POOL, launch_candidates
from launch_pipeline.defs.resources import LaunchPipelineConfig
from launch_pipeline.outcomes import build_plan_outcomes, summarise_outcomes
from launch_pipeline.scoring import make_and_store_plan, score_preferences


@dg.asset(
    deps=[champion_model, user_sequences, item_features, user_features],
    group_name="planning",
    kinds={"duckdb", "tensorflow"},
    pool=WAREHOUSE_POOL,
    description=(
        "r_ij: the probability that active user i buys candidate j within the planning horizon, "
        "from the champion model (candidates scored from their attributes and title words "
        "alone), calibrated on who bought the shop's past launches (user activity, similar "
        "products bought). Table user_preferences (r_model: uncalibrated); view "
        "user_top_candidates holds each user's top 10; launch_history_buyers: the past launches "
        "scored as they would have been at their window start."
    ),
)
def user_preferences(
    pipeline: LaunchPipelineConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    with warehouse.get_connection() as con:
        stats = score_preferences(settings, con)
        meta = table_metadata(con, "user_preferences")
        by_item = con.execute(
            "SELECT item_id, round(sum(r), 2) AS expected_buyers, round(max(r), 4) AS max_r "
            "FROM user_preferences GROUP BY 1 ORDER BY 2 DESC LIMIT 15"
        ).df()
    return dg.MaterializeResult(
        metadata={
            **meta,
            "model_version": stats["model_version"],
            "users_scored": stats["users_scored"],
            "candidates": stats["candidates"],
            "mean_r": stats["mean_r"],
            "horizon_days": stats["horizon_days"],
            "past_launches_scored": stats["past_launches_scored"],
            "calibration": (
                {k: round(float(v), 4) for k, v in stats["calibration"].items()}
                if stats["calibration"]
                else "none (no past launch window yet): r_ij = 1 - exp(-n_i p_ij c_j)"
            ),
            "top_candidates_by_expected_buyers": markdown_table(by_item),
        }
    )


@dg.asset(
    deps=[user_preferences, activity_profile, item_features, launch_candidates, model_evaluation],
    group_name="planning",
    kinds={"duckdb", "scipy"},
    pool=WAREHOUSE_POOL,
    description=(
        "Which candidates to launch (MILP: maximise expected revenue under launch slots and a "
        "per-category cap; expected revenue from a demand model fitted on the shop's own past "
        "launches: title similarity to products that sell, category, price, collection size; "
        "sum of r_ij x price x units when the history has too few launches), when (the hour of week its audience is most active), to "
        "whom (top users by r_ij) and how much they will sell (units and revenue with an 80% "
        "interval). Kept per plan date in launch_plan and launch_audiences; report under "
        "data/reports/."
    ),
)
def launch_plan(pipeline: LaunchPipelineConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    settings = pipeline.settings()
    with warehouse.get_connection() as con:
        ev = dict(
            con.execute(
                "SELECT method || '_' || metric, value FROM model_evaluation WHERE model_version = "
                "(SELECT any_value(model_version) FROM user_preferences)"
            ).fetchall()
        )
        context = {
            "hr@10": ev.get("transformer_hr@10", float("nan")),
            "ndcg@10": ev.get("transformer_ndcg@10", float("nan")),
            "popularity_hr@10": ev.get("popularity_hr@10", float("nan")),
        }
        out = make_and_store_plan(settings, con, context)
        meta = table_metadata(con, "launch_plan")
    chosen = out["chosen"]
    demand_meta = {}
    model = out.get("demand_model")
    if model is not None:
        demand_meta = {
            "demand_model_launches": model.launches,
            "demand_model_windows": markdown_table(pd.DataFrame(model.windows)),
            "demand_model_coefficients": {k: round(v, 4) for k, v in model.coefficients.items()},
            "demand_model_train_spearman": model.train_spearman,
        }
    shown = chosen[
        [
            "plan_rank",
            "item_id",
            "title",
            "category",
            "price",
            "expected_units",
            "expected_revenue",
            "launch_weekday",
            "launch_hour",
            "launch_at",
        ]
    ].round(2)
    return dg.MaterializeResult(
        metadata={
            **meta,
            "plan_date": str(out["plan_date"]),
            "launched_products": len(chosen),
            "expected_revenue": float(chosen["expected_revenue"].sum()),
            "objective": out["selection"].objective,
            "solver": out["selection"].status,
            "solve_seconds": out["selection"].solve_seconds,
            "plan": markdown_table(shown),
            "report": dg.MetadataValue.path(str(out["report_path"])),
            "value_source": (
                "demand model (past launches)" if model is not None else "sum r_ij x price"
            ),
            **demand_meta,
        }
    )


@dg.asset(
    deps=[launch_plan],
    group_name="planning",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description=(
        "Every earlier launch plan against what really sold since its plan date: realised vs "
        "forecast units and revenue per launched product (forecast pro-rated to the days "
        "observed), whether the realised units fell in the 80% interval, and the conversion of "
        "the promotion audience vs the other users. Table plan_outcomes."
    ),
)
def plan_outcomes(warehouse: DuckDBResource) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        df = build_plan_outcomes(con)
        meta = table_metadata(con, "plan_outcomes")
    summary = summarise_outcomes(df)
    extra = {}
    observed = df[df["days_observed"] > 0]
    if not observed.empty:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(
            observed["forecast_revenue_to_date"], observed["realised_revenue"], color="#2980b9"
        )
        top = float(
            max(observed["forecast_revenue_to_date"].max(), observed["realised_revenue"].max(), 1)
        )
        ax.plot([0, top], [0, top], color="#7f8c8d", linestyle="--", label="forecast = realised")
        ax.set_xlabel("forecast revenue to date")
        ax.set_ylabel("realised revenue")
        ax.set_title("Earlier plans: forecast vs realised")
        ax.legend()
        extra["forecast_vs_realised"] = png_markdown(fig)
        extra["outcomes"] = markdown_table(
            observed[
                [
                    "plan_date",
                    "item_id",
                    "title",
                    "days_observed",
                    "forecast_units_to_date",
                    "realised_units",
                    "forecast_revenue_to_date",
                    "realised_revenue",
                    "audience_conversion",
                    "other_users_conversion",
                ]
            ].round(3),
            max_rows=40,
        )
    return dg.MaterializeResult(
        metadata={**meta, **{k: v for k, v in summary.items() if v is not None}, **extra}
    )
