"""Raw assets: the daily behaviour logs, the product catalog and the launch candidates."""

import datetime as dt

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from launch_pipeline import catalog
from launch_pipeline.defs.metadata import markdown_table, table_metadata
from launch_pipeline.defs.partitions import partition_dates
from launch_pipeline.defs.resources import LaunchPipelineConfig
from launch_pipeline.errors import InputFileError
from launch_pipeline.raw_io import (
    event_day_files,
    load_event_day,
    partition_range,
    skipped_event_files,
)

WAREHOUSE_POOL = "duckdb_warehouse"


def fail_on_input_error(exc: InputFileError) -> dg.Failure:
    return dg.Failure(
        description=str(exc),
        metadata={"file": exc.path, "problem": exc.problem, "what_to_do": exc.fix},
        allow_retries=False,
    )


def _catalog_asset(name: str, loader, description: str):
    @dg.asset(
        name=name,
        group_name="raw",
        kinds={"duckdb", "parquet"},
        pool=WAREHOUSE_POOL,
        description=description,
    )
    def _asset(
        context: dg.AssetExecutionContext, pipeline: LaunchPipelineConfig, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        settings = pipeline.settings()
        try:
            with warehouse.get_connection() as con:
                stats = loader(con, settings.raw_dir)
                meta = table_metadata(con, name)
                by_category = con.execute(
                    f"SELECT category, count(*) AS products FROM {name} GROUP BY 1 ORDER BY 2 DESC"
                ).df()
        except InputFileError as exc:
            raise fail_on_input_error(exc) from exc
        for warning in stats["warnings"]:
            context.log.warning(warning)
        return dg.MaterializeResult(
            metadata={
                **meta,
                "warnings": "\n".join(stats["warnings"]) or "none",
                "uncategorised": stats["uncategorised"],
                "source_file": stats["source_file"],
                "quarantined_rows": stats["quarantined"],
                "quarantine_reasons": stats["quarantine_reasons"],
                "categories": stats["categories"],
                "products_per_category": markdown_table(by_category),
            }
        )

    return _asset


product_catalog = _catalog_asset(
    "product_catalog",
    catalog.load_product_catalog,
    "Products already on sale (id, title, category, brand, price, launch date), typed; rows "
    "without an id, with a duplicated id or a non-positive price go to quarantined_products.",
)
launch_candidates = _catalog_asset(
    "launch_candidates",
    catalog.load_launch_candidates,
    "New products awaiting a launch decision, with the catalog attributes plus unit cost and "
    "stock; unusable rows go to quarantined_products.",
)


def build_raw_events(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        name="raw_events",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="raw",
        kinds={"duckdb", "csv", "parquet"},
        pool=WAREHOUSE_POOL,
        description=(
            "Behaviour logs (views, add-to-cart, purchases, returns, reviews) landed as delivered: "
            "one partition per UTC day, read from events/YYYY-MM-DD.csv|parquet, every field as "
            "text, with source file and row. Records that cannot be parsed are kept with the "
            "reader's error so cleaning can quarantine them."
        ),
    )
    def raw_events(
        context: dg.AssetExecutionContext, pipeline: LaunchPipelineConfig, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        settings = pipeline.settings()
        start, end = partition_dates(context)
        files = event_day_files(settings.raw_dir)
        skipped = skipped_event_files(settings.raw_dir, *partition_range(settings.raw_dir))
        for f in skipped:
            context.log.warning(f"not read: {f.line()}")
        counts = {}
        try:
            with warehouse.get_connection() as con:
                for key in context.partition_keys:
                    day = dt.date.fromisoformat(key)
                    path = files.get(day, settings.raw_dir / "events" / f"{key}.csv")
                    counts[key] = load_event_day(con, settings.raw_dir, day, path)
                unparseable = con.execute(
                    "SELECT count(*) FROM raw_events WHERE partition_date BETWEEN ? AND ? "
                    "AND parse_error IS NOT NULL",
                    [start, end],
                ).fetchall()[0][0]
                meta = table_metadata(con, "raw_events")
        except InputFileError as exc:
            raise fail_on_input_error(exc) from exc
        total = sum(counts.values())
        return dg.MaterializeResult(
            metadata={
                **meta,
                "dagster/row_count": total,
                "partitions": len(counts),
                "rows_in_run": total,
                "unparseable_records": int(unparseable),
                "files_not_read": len(skipped),
                "records_not_read": sum(f.records or 0 for f in skipped),
                **(
                    {
                        "files_not_read_list": markdown_table(
                            pd.DataFrame(
                                {
                                    "file": [f.file for f in skipped],
                                    "records": [f.records for f in skipped],
                                    "reason": [f.reason for f in skipped],
                                }
                            ),
                            max_rows=40,
                        )
                    }
                    if skipped
                    else {}
                ),
                "rows_per_partition": markdown_table(
                    pd.DataFrame({"partition": list(counts), "rows": list(counts.values())}),
                    max_rows=40,
                ),
            }
        )

    return raw_events
