"""Feature assets: DuckDB tables computed in SQL from the cleaned events and the catalog
(``user_sequences`` and ``activity_profile`` are views over stored steps and counts).

Each asset merges only the clean days that changed since its last run into its state
(``features_incremental.py``); ``full_rebuild: true`` in the asset's config rebuilds it from
every day (automatic when the state is missing or was built with other settings)."""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from launch_pipeline import features_incremental
from launch_pipeline.defs.metadata import markdown_table, png_markdown, table_metadata
from launch_pipeline.defs.raw import WAREHOUSE_POOL, launch_candidates, product_catalog
from launch_pipeline.defs.resources import DuckDBWarehouse

COMMON = {"group_name": "features", "kinds": {"duckdb", "sql"}, "pool": WAREHOUSE_POOL}


class FeatureBuildConfig(dg.Config):
    full_rebuild: bool = Field(
        default=False,
        description=(
            "Rebuild the table from every clean day instead of merging the days that changed "
            "(same result; use it after changing the feature SQL)."
        ),
    )


def clean_lake_dir(warehouse: DuckDBResource) -> Path | None:
    """Where the clean partitions' files and stamps are (the warehouse's lake), or None when
    the clean events are a table (a plain DuckDBResource)."""
    return warehouse.resolved_lake_dir() if isinstance(warehouse, DuckDBWarehouse) else None


def merge_metadata(result: features_incremental.MergeResult) -> dict:
    """What the update did, as asset metadata."""
    return {
        "update_mode": result.mode,
        "update_reason": result.reason,
        "days_added": result.days_added,
        "days_recleaned": result.days_recleaned,
        "days_removed": result.days_removed,
        "days_merged": result.days_merged,
        "update_seconds": result.seconds,
    }


@dg.asset(
    deps=["clean_events", product_catalog, launch_candidates],
    description=(
        "One row per catalog product and launch candidate: category, brand, price band "
        "(global quintiles of catalog log-prices, also written to price_bands), popularity, "
        "conversion, returns and rating statistics."
    ),
    **COMMON,
)
def item_features(
    context: dg.AssetExecutionContext, config: FeatureBuildConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        update = features_incremental.update_item_features(
            con, full_rebuild=config.full_rebuild, lake_dir=clean_lake_dir(warehouse)
        )
        context.log.info(update.summary())
        meta = table_metadata(con, "item_features")
        bands = con.execute("SELECT * FROM price_bands ORDER BY band_no").df()
        top = con.execute(
            "SELECT item_id, title, category, purchases, revenue, view_to_purchase "
            "FROM item_features WHERE NOT is_candidate ORDER BY popularity_rank LIMIT 10"
        ).df()
    return dg.MaterializeResult(
        metadata={
            **meta,
            **merge_metadata(update),
            "price_bands": markdown_table(bands),
            "top_products": markdown_table(top),
        }
    )


@dg.asset(
    deps=["clean_events", item_features],
    description=(
        "One row per user: recency, frequency, monetary value, views/carts/purchases, "
        "conversion, and category and price-band affinities."
    ),
    **COMMON,
)
def user_features(
    context: dg.AssetExecutionContext, config: FeatureBuildConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        update = features_incremental.update_user_features(
            con, full_rebuild=config.full_rebuild, lake_dir=clean_lake_dir(warehouse)
        )
        context.log.info(update.summary())
        meta = table_metadata(con, "user_features")
        summary = con.execute(
            "SELECT count(*) AS users, count(*) FILTER (WHERE purchases > 0) AS buyers, "
            "median(recency_days) AS median_recency_days, avg(events) AS mean_events "
            "FROM user_features"
        ).df()
    return dg.MaterializeResult(
        metadata={**meta, **merge_metadata(update), "summary": markdown_table(summary)}
    )


@dg.asset(
    deps=["clean_events"],
    description=(
        "Each user's views, carts and purchases in time order (consecutive events on the same "
        "item collapsed to the strongest type), the last 200 steps: the model's input. Stored "
        "one row per step in user_sequence_steps; user_sequences is a view with one row per "
        "user (lists)."
    ),
    **COMMON,
)
def user_sequences(
    context: dg.AssetExecutionContext, config: FeatureBuildConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        update = features_incremental.update_user_sequences(
            con, full_rebuild=config.full_rebuild, lake_dir=clean_lake_dir(warehouse)
        )
        context.log.info(update.summary())
        meta = table_metadata(
            con,
            "user_sequences",
            rows=update.rows,
            preview_where=features_incremental.sequence_preview_where(con),
        )
        lengths = features_incremental.sequence_lengths(con)
    return dg.MaterializeResult(
        metadata={**meta, **merge_metadata(update), "sequence_lengths": markdown_table(lengths)}
    )


@dg.asset(
    deps=["clean_events"],
    description=(
        "Events and purchases by hour of week (0 = Monday 00:00 UTC), overall and per user: "
        "when to launch and promote. A view: shares computed when read from the stored user x "
        "hour counts."
    ),
    **COMMON,
)
def activity_profile(
    context: dg.AssetExecutionContext, config: FeatureBuildConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        update = features_incremental.update_activity_profile(
            con, full_rebuild=config.full_rebuild, lake_dir=clean_lake_dir(warehouse)
        )
        context.log.info(update.summary())
        meta = table_metadata(
            con, "activity_profile", rows=update.rows, preview_where="scope = 'overall'"
        )
        overall = con.execute(
            "SELECT hour_of_week, events FROM activity_profile WHERE scope = 'overall' "
            "ORDER BY hour_of_week"
        ).df()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.bar(overall["hour_of_week"], overall["events"], width=1.0, color="#2980b9")
    ax.set_xticks(range(0, 168, 24), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    ax.set_ylabel("events")
    ax.set_title("Activity by hour of week (UTC)")
    return dg.MaterializeResult(
        metadata={**meta, **merge_metadata(update), "activity_by_hour_of_week": png_markdown(fig)}
    )
