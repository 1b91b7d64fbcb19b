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
from launch_pipeline.defs.metadata import (
    markdown_table,
    png_file_markdown,
    png_markdown,
    table_metadata,
)
from launch_pipeline.defs.model import champion_model, model_evaluation
from launch_pipeline.defs.raw import WAREHOUSE_POOL, launch_candidates
from launch_pipeline.defs.resources import LaunchPipelineConfig, ModelStoreResource
from launch_pipeline.errors import ConfigurationError
from launch_pipeline.launch_planner import comment_columns, make_and_store_plan, scenario_tags
from launch_pipeline.outcomes import build_plan_outcomes, summarise_outcomes
from launch_pipeline.report import scenario_table
from launch_pipeline.scoring import score_preferences

PREFERENCE_DESCRIPTIONS = {
    "candidate_preferences": {
        "item_id": "Launch candidate",
        "expected_buyers": "Expected buyers within the horizon: sum of r over the active users",
        "expected_buyers_model": "The same with the uncalibrated r_model (a demand feature)",
        "expected_units_model": "Sum of r_model x the user's mean units per purchase line",
        "max_r": "Highest r of any user",
        "users_scored": "Active users scored (an event in the last 30 days)",
        "audience_kept": "Best users kept per candidate in candidate_audiences",
        "model_version": "Recommender version that scored it",
        "horizon_days": "Horizon of r, days",
    },
    "candidate_audiences": {
        "item_id": "Launch candidate",
        "user_id": "One of the candidate's most likely buyers",
        "r": "Probability the user buys the candidate within the horizon (calibrated)",
        "r_model": "Uncalibrated r: 1 - exp(-n_i p_ij c_j)",
        "audience_rank": "Rank of the user for this candidate (1 = most likely buyer)",
        "model_version": "Recommender version that scored it",
        "horizon_days": "Horizon of r, days",
    },
    "user_top_candidates": {
        "user_id": "Active user (an event in the last 30 days)",
        "item_id": "One of the user's most likely candidates",
        "r": "Probability the user buys the candidate within the horizon (calibrated)",
        "p_next": "The model's probability that the candidate is the user's next item",
        "rank_for_user": "Rank of the candidate for the user (1 = most likely)",
        "model_version": "Recommender version that scored it",
        "horizon_days": "Horizon of r, days",
        "r_model": "Uncalibrated r: 1 - exp(-n_i p_ij c_j)",
    },
}


@dg.asset(
    deps=[champion_model, user_sequences, item_features, user_features],
    group_name="planning",
    kinds={"duckdb", "tensorflow"},
    pool=WAREHOUSE_POOL,
    description=(
        "r_ij: the probability that active user i buys candidate j within the planning horizon, "
        "from the champion model (candidates scored from their attributes and title words "
        "alone), calibrated on who bought the shop's past launches (user activity, similar "
        "products bought). Stored as what the plan needs, never every pair: "
        "candidate_preferences (per candidate: expected buyers = sum of r, the Transformer's "
        "demand features), candidate_audiences (each candidate's best users by r, the pool of "
        "its promotion audience), user_top_candidates (each user's top 10). User vectors are "
        "reused from the last run for users without new events (data/user_vectors/). "
        "launch_history_buyers: the past launches scored as they would have been at their "
        "window start."
    ),
)
def user_preferences(
    pipeline: LaunchPipelineConfig, warehouse: DuckDBResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    with warehouse.get_connection() as con:
        stats = score_preferences(settings, con, model_store.store(settings))
        for table, descriptions in PREFERENCE_DESCRIPTIONS.items():
            comment_columns(con, table, descriptions)
        meta = table_metadata(con, "candidate_preferences")
        by_item = con.execute(
            "SELECT item_id, round(expected_buyers, 2) AS expected_buyers, round(max_r, 4) AS max_r "
            "FROM candidate_preferences ORDER BY expected_buyers DESC LIMIT 15"
        ).df()
    return dg.MaterializeResult(
        metadata={
            **meta,
            "model_version": stats["model_version"],
            "users_scored": stats["users_scored"],
            "users_encoded": stats["users_encoded"],
            "user_vectors_reused": stats["user_vectors_reused"],
            "encode_seconds": stats["encode_seconds"],
            "score_and_store_seconds": stats["score_and_store_seconds"],
            "candidates": stats["candidates"],
            "audience_kept": stats["audience_kept"],
            "mean_r": stats["mean_r"],
            "horizon_days": stats["horizon_days"],
            "past_launches_scored": stats["past_launches_scored"],
            "calibration": (
                {k: round(float(v), 4) for k, v in stats["calibration"].items()}
                if stats["calibration"]
                else "none (no past launch window yet): r_ij = 1 - exp(-n_i p_ij c_j)"
            ),
            "top_candidates_by_expected_buyers": markdown_table(by_item),
            **(
                {"user_vector_cache": stats["user_vector_cache_note"]}
                if stats["user_vector_cache_note"]
                else {}
            ),
        }
    )


PLAN_TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("rank", "int", "Rank among the picks (1 = most valuable)"),
    ("product", "string", "Candidate product id"),
    ("title", "string", "Product title"),
    ("category", "string", "Product category"),
    ("price", "float", "Launch price"),
    ("units", "int", "Expected units sold over the horizon (at most the stock)"),
    ("units_80pct", "string", "Units sold: 10th to 90th percentile (whole units)"),
    ("order", "int", "Recommended initial order (newsvendor; unsold units assumed worthless)"),
    ("revenue", "float", "Expected revenue over the horizon"),
    ("gross_profit", "float", "Expected gross profit (empty when unit costs are unknown)"),
    ("incremental", "float", "Value net of sales taken from similar products (the objective)"),
    ("launch_local", "string", "Launch time in the shop's time zone"),
    ("launch_utc", "string", "Launch time, UTC"),
)


def _num(v, digits: int = 0):
    return None if v is None or pd.isna(v) else round(float(v), digits)


def plan_table_metadata(plan: pd.DataFrame) -> dg.MetadataValue:
    """The picks as a Dagster table (columns with descriptions; numbers rounded)."""
    chosen = plan[plan["chosen"]].sort_values("plan_rank")
    records = [
        dg.TableRecord(
            {
                "rank": int(r.plan_rank),
                "product": str(r.item_id),
                "title": str(r.title)[:60],
                "category": str(r.category),
                "price": _num(r.price, 2),
                "units": int(round(r.expected_units)),
                "units_80pct": f"{int(r.units_p10)}-{int(r.units_p90)}",
                "order": int(r.order_quantity),
                "revenue": _num(r.expected_revenue),
                "gross_profit": _num(r.expected_gross_profit),
                "incremental": _num(r.value),
                "launch_local": f"{pd.Timestamp(r.launch_at_local):%a %Y-%m-%d %H:00} "
                f"{r.shop_timezone}",
                "launch_utc": f"{pd.Timestamp(r.launch_at):%a %Y-%m-%d %H:00}",
            }
        )
        for r in chosen.itertuples()
    ]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(n, t, description=d) for n, t, d in PLAN_TABLE_COLUMNS]
    )
    return dg.MetadataValue.table(records=records, schema=schema)


def explanations_table_metadata(expl: pd.DataFrame) -> dg.MetadataValue:
    cols = (
        ("product", "string", "Candidate product id"),
        ("title", "string", "Product title"),
        ("picked", "bool", "In the plan"),
        ("value", "float", "Incremental value under the objective"),
        ("drivers", "string", "Main drivers of the value with their contribution"),
        ("similar_products", "string", "Most similar products on sale and how they sold"),
        ("left_out_by", "string", "For a non-pick: the constraint that left it out"),
        ("audience", "string", "Who it is (or would be) promoted to, in words"),
    )
    records = [
        dg.TableRecord(
            {
                "product": str(r.item_id),
                "title": str(r.title)[:60],
                "picked": bool(r.chosen),
                "value": _num(r.value),
                "drivers": str(r.drivers),
                "similar_products": str(r.similar_products),
                "left_out_by": "" if r.left_out_by is None else str(r.left_out_by),
                "audience": str(r.audience),
            }
        )
        for r in expl.itertuples()
    ]
    return dg.MetadataValue.table(
        records=records,
        schema=dg.TableSchema(columns=[dg.TableColumn(n, t, description=d) for n, t, d in cols]),
    )


NO_CANDIDATES_MESSAGE = (
    "empty plan: there are no launch candidates (candidates.csv|parquet has no rows, or none "
    "usable: see quarantined_products); add the new products awaiting a launch decision to "
    "the candidates file to get a plan"
)


@dg.asset(
    deps=[user_preferences, activity_profile, item_features, launch_candidates, model_evaluation],
    group_name="planning",
    kinds={"duckdb", "scipy"},
    pool=WAREHOUSE_POOL,
    description=(
        "Which candidates to launch, to whom to promote them and when, for one planning "
        "scenario (resource field `scenario`; `default` is the nightly plan). A MILP "
        "maximises the expected incremental gross profit (revenue when unit costs are "
        "unknown; sales capped by stock, net of what similar products lose) under launch "
        "slots, a per-category cap, an optional order budget and the promotion "
        "audiences of all picks are assigned together under a contact cap per user (min-cost "
        "flow). Launch times after the plan's creation plus a lead "
        "time, staggered when audiences overlap, in the shop's time zone and UTC. Units as a "
        "count distribution (whole units, 80% range), recommended first order (newsvendor). "
        "Reasons for each pick and the best non-picks in launch_plan_explanations. Rows kept "
        "per plan date and scenario in launch_plan, launch_audiences, "
        "launch_plan_explanations, plan_scenarios, plan_slot_values; report under "
        "data/reports/. A scenario whose horizon differs from the stored preferences' is "
        "refused: re-score user_preferences first."
    ),
)
def launch_plan(
    context: dg.AssetExecutionContext, pipeline: LaunchPipelineConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    p = settings.planning
    context.instance.add_run_tags(context.run_id, scenario_tags(p))
    with warehouse.get_connection() as con:
        n_candidates = con.execute("SELECT count(*) FROM launch_candidates").fetchall()[0][0]
        if n_candidates == 0:  # allowed (a shop with nothing new): an empty plan, said plainly
            context.log.warning(NO_CANDIDATES_MESSAGE)
            return dg.MaterializeResult(
                metadata={"launched_products": 0, "message": NO_CANDIDATES_MESSAGE}
            )
        ev = dict(
            con.execute(
                "SELECT method || '_' || metric, value FROM model_evaluation WHERE model_version = "
                "(SELECT any_value(model_version) FROM candidate_preferences)"
            ).fetchall()
        )
        names = {"hr@10": "transformer_hr@10", "ndcg@10": "transformer_ndcg@10"}
        names["popularity_hr@10"] = "popularity_hr@10"
        model_context = {k: ev[v] for k, v in names.items() if v in ev}
        # refused settings end the step after the connection is closed (dagster-duckdb's
        # get_connection does not close it when the body raises)
        try:
            out = make_and_store_plan(
                settings, con, {**model_context, "salvage_share": p.salvage_share},
                run_id=context.run_id,
            )  # fmt: skip
        except ConfigurationError as exc:
            refused = exc
        else:
            refused = None
            meta = table_metadata(con, "launch_plan")
    if refused is not None:
        raise dg.Failure(description=str(refused), allow_retries=False) from refused
    s = out["summary"]
    chosen = out["chosen"]
    uncategorised = int((chosen.get("category", pd.Series(dtype=object)) == "unknown").sum())
    plan_warnings = (
        [
            f"{uncategorised} of {len(chosen)} picks have no category (grouped as 'unknown', "
            "one category for the cap): check them before launching, and fill the category "
            "column of the candidates"
        ]
        if uncategorised
        else []
    )
    for warning in plan_warnings:
        context.log.warning(warning)
    report = out["report_path"]
    stem = report.with_suffix("")
    return dg.MaterializeResult(
        metadata={
            "plan": plan_table_metadata(out["plan"]),
            "warnings": "\n".join(plan_warnings) or "none",
            "scenario": s["scenario"],
            "plan_date": str(s["plan_date"]),
            "objective": s["objective"].replace("_", " "),
            "launched_products": s["picks"],
            "expected_revenue": _num(s["expected_revenue"]),
            "expected_gross_profit": _num(s["expected_gross_profit"]),
            "incremental_value": _num(s["value"]),
            "order_cost": _num(s["order_cost"]),
            "customers_reached": s["distinct_users"],
            "promotion_messages": s["audience_places"],
            "max_promotions_per_user": s["max_promotions_seen"],
            **(
                {
                    "value_chart": png_file_markdown(f"{stem}_value.png", "candidates by value"),
                    "slot_value_curve": png_file_markdown(
                        f"{stem}_slot_value.png", "value per slot"
                    ),
                    "launch_hours": png_file_markdown(f"{stem}_launch_hours.png", "launch hours"),
                    "report": dg.MetadataValue.path(str(report)),
                }
                if p.plan_details
                else {"report": "not written (plan_details off: the decision only)"}
            ),
            "reasons": explanations_table_metadata(out["explanations"]),
            "scenarios_compared": markdown_table(scenario_table(out["scenarios"])),
            "solver": s["solver_status"],
            "plan_seconds": _num(s["plan_seconds"], 2),
            "value_source": s["value_source"],
            **meta,
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
