"""Cleaning assets: ``clean_events`` and ``quarantined_events``, one Parquet file per day each
(``lake/clean_events/day=.../``), written by the step itself on an in-memory DuckDB connection:
not in the warehouse pool, so partition runs clean side by side."""

import dagster as dg
import pandas as pd

from launch_pipeline.cleaning import clean_partitions, degenerate_warnings
from launch_pipeline.defs.metadata import markdown_table, png_markdown, table_metadata
from launch_pipeline.defs.partitions import partition_dates
from launch_pipeline.defs.raw import (
    catalog_views,
    fail_on_input_error,
    launch_candidates,
    partition_connection,
    product_catalog,
)
from launch_pipeline.defs.resources import LaunchPipelineConfig
from launch_pipeline.errors import AccountingError, InputFileError
from launch_pipeline.settings import partition_workers_from_env


def _reasons_plot(reasons: dict) -> dg.MetadataValue | None:
    if not reasons:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(reasons.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#c0392b")
    ax.set_xlabel("quarantined rows")
    ax.set_title("Quarantine reasons")
    return png_markdown(fig, "quarantine reasons")


def build_cleaning_assets(
    partitions_def: dg.PartitionsDefinition, raw_events
) -> dg.AssetsDefinition:
    deps = [raw_events, product_catalog, launch_candidates]

    @dg.multi_asset(
        name="clean_and_quarantine_events",
        specs=[
            dg.AssetSpec(
                "clean_events",
                deps=deps,
                group_name="cleaning",
                kinds={"parquet", "duckdb"},
                description=(
                    "Typed, valid, de-duplicated behaviour events without bots or fake reviews, "
                    "one Parquet file per day (a view in the warehouse). Re-materializing a day "
                    "replaces that day's file."
                ),
            ),
            dg.AssetSpec(
                "quarantined_events",
                deps=deps,
                group_name="cleaning",
                kinds={"parquet", "duckdb"},
                description=(
                    "Every raw row that did not make it into clean_events, as delivered, with a "
                    "`reason` (see cleaning.py for the list); nothing is dropped silently."
                ),
            ),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def clean_and_quarantine_events(
        context: dg.AssetExecutionContext, pipeline: LaunchPipelineConfig
    ):
        settings = pipeline.settings()
        start, end = partition_dates(context)
        with partition_connection() as con:
            catalog_views(con, settings.lake_dir)
            try:
                stats = clean_partitions(
                    con,
                    start,
                    end,
                    settings.cleaning,
                    lake_dir=settings.lake_dir,
                    workers=partition_workers_from_env(),
                )
            except InputFileError as exc:
                raise fail_on_input_error(exc) from exc
            except AccountingError as exc:
                raise dg.Failure(
                    description=str(exc),
                    metadata={"file": exc.path, "partition": exc.partition, "problem": exc.problem},
                    allow_retries=False,
                ) from exc
            warnings = degenerate_warnings(con, (start, end))
            clean_meta = table_metadata(con, "clean_events")
            quarantine_meta = table_metadata(con, "quarantined_events")
            by_type = con.execute(
                "SELECT event_type, count(*) AS rows FROM clean_events "
                "WHERE partition_date BETWEEN ? AND ? GROUP BY 1 ORDER BY 2 DESC",
                [start, end],
            ).df()
        per_day: pd.DataFrame = stats.per_partition
        accounting = {
            "raw_rows": stats.raw,
            "clean_rows": stats.clean,
            "quarantined_rows": stats.quarantined,
            "exact_duplicates_removed": stats.exact_duplicates,
            # counted per partition and source file in the three tables before the commit
            # (cleaning.row_accounting): a run where it does not hold stops before this line
            "accounting_holds": stats.accounting_holds,
        }
        context.log.info(f"row accounting {start}..{end}: {accounting}")
        for warning in warnings:
            context.log.warning(warning)
        reasons_table = pd.DataFrame(
            {"reason": list(stats.reasons), "rows": list(stats.reasons.values())}
        )
        yield dg.MaterializeResult(
            asset_key="clean_events",
            metadata={
                **clean_meta,
                **accounting,
                "warnings": "\n".join(warnings) or "none",
                "dagster/row_count": stats.clean,
                "events_by_type": markdown_table(by_type),
                "accounting_per_partition": markdown_table(per_day, max_rows=40),
                "accounting_per_file": markdown_table(stats.per_file, max_rows=40),
            },
        )
        plot = _reasons_plot(stats.reasons)
        yield dg.MaterializeResult(
            asset_key="quarantined_events",
            metadata={
                **quarantine_meta,
                **accounting,
                "dagster/row_count": stats.quarantined,
                "rows_per_reason": markdown_table(reasons_table, max_rows=40),
                **{f"reason/{k}": v for k, v in stats.reasons.items()},
                **({"reasons_plot": plot} if plot is not None else {}),
            },
        )

    return clean_and_quarantine_events
