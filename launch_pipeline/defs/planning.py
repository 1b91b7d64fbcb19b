"""Planning assets: predicted preferences r_ij and the launch plan."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from launch_pipeline.defs.features import (
    activity_profile,
    item_features,
    user_features,
    user_sequences,
)
from launch_pipeline.defs.metadata import markdown_table, table_metadata
from launch_pipeline.defs.model import model_evaluation, preference_model
from launch_pipeline.defs.raw import WAREHOUSE_POOL, launch_candidates
from launch_pipeline.defs.resources import LaunchPipelineConfig
from launch_pipeline.scoring import make_and_store_plan, score_preferences


@dg.asset(
    deps=[preference_model, user_sequences, item_features, user_features],
    group_name="planning",
    kinds={"duckdb", "tensorflow"},
    pool=WAREHOUSE_POOL,
    description=(
        "r_ij: the probability that active user i buys candidate j within the planning horizon, "
        "from the champion model (candidates scored from their attributes alone). Table "
        "user_preferences; view user_top_candidates holds each user's top 10."
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
            "top_candidates_by_expected_buyers": markdown_table(by_item),
        }
    )


@dg.asset(
    deps=[user_preferences, activity_profile, item_features, launch_candidates, model_evaluation],
    group_name="planning",
    kinds={"duckdb", "scipy"},
    pool=WAREHOUSE_POOL,
    description=(
        "Which candidates to launch (MILP: maximise sum of r_ij x price under launch slots and a "
        "per-category cap), when (the hour of week its audience is most active), to whom (top "
        "users by r_ij) and how much they will sell (units and revenue with an 80% interval). "
        "Kept per plan date in launch_plan and launch_audiences; report under data/reports/."
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
        }
    )
