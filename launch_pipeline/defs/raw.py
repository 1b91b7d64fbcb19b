"""Raw assets: the daily behaviour logs, the product catalog and the launch candidates."""

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dagster_duckdb import DuckDBResource

from launch_pipeline import catalog, lake
from launch_pipeline.defs.metadata import markdown_table, table_metadata
from launch_pipeline.defs.resources import LaunchPipelineConfig
from launch_pipeline.errors import InputFileError
from launch_pipeline.raw_io import (
    RAW_LANDED,
    event_day_files,
    load_event_day,
    partition_range,
    raw_sources,
    skipped_event_files,
)
from launch_pipeline.settings import duckdb_memory_limit_from_env, partition_workers_from_env

WAREHOUSE_POOL = "duckdb_warehouse"
"""The pool (limit 1) of the steps that write the warehouse file. Partition steps (raw landing,
cleaning, the GX checks of a partition) are not in it: they work on an in-memory DuckDB
connection of their own and write their own partition files (``lake.py``)."""


@contextmanager
def partition_connection():
    """An in-memory DuckDB connection for a partition step (nothing shared, nothing locked)."""
    con = duckdb.connect(config={"memory_limit": duckdb_memory_limit_from_env()})
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def for_each_day(con: duckdb.DuckDBPyConnection, days: list, work: Callable, workers: int) -> list:
    """``work(cursor, day)`` for every day, ``workers`` days at once (each on its own cursor of
    ``con``); results in the order of ``days``; the first error is raised."""

    def _one(day):
        cur = con.cursor()
        try:
            return work(cur, day)
        finally:
            cur.close()

    if workers <= 1 or len(days) <= 1:
        return [work(con, d) for d in days]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_one, days))


def catalog_views(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> None:
    """Views ``product_catalog`` / ``launch_candidates`` over the snapshot files the catalog
    assets write, for a partition step; a :class:`dagster.Failure` saying what to run first
    when they are missing."""
    for name in ("product_catalog", "launch_candidates"):
        path = lake.table_file(lake_dir, name)
        if not path.is_file():
            raise dg.Failure(
                description=(
                    f"no snapshot of {name} at {path}: materialize product_catalog and "
                    "launch_candidates (the catalog assets) before cleaning a partition"
                ),
                allow_retries=False,
            )
        sql_path = str(path).replace("'", "''")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{sql_path}')")


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
                # the snapshot that partition steps clean against, without opening the warehouse
                lake.write_table(con, f"SELECT * FROM {name}", settings.lake_dir, name)
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
        kinds={"parquet", "csv", "duckdb"},
        description=(
            "Behaviour logs (views, add-to-cart, purchases, returns, reviews) as delivered: one "
            "partition per UTC day, from events/YYYY-MM-DD.csv|parquet. A Parquet day file is "
            "read where it lies (its columns and row count are checked and recorded); a CSV "
            "day file is landed once in lake/raw_events/day=.../ as text, records that cannot "
            "be parsed kept with the reader's error so cleaning can quarantine them. The view "
            "raw_events shows every field as text with source file and row."
        ),
    )
    def raw_events(
        context: dg.AssetExecutionContext, pipeline: LaunchPipelineConfig
    ) -> dg.MaterializeResult:
        settings = pipeline.settings()
        files = event_day_files(settings.raw_dir)
        skipped = skipped_event_files(settings.raw_dir, *partition_range(settings.raw_dir))
        for f in skipped:
            context.log.warning(f"not read: {f.line()}")
        days = [dt.date.fromisoformat(key) for key in context.partition_keys]

        def land(con, day):
            path = files.get(day, settings.raw_dir / "events" / f"{day}.csv")
            return load_event_day(con, settings.raw_dir, day, path, lake_dir=settings.lake_dir)

        try:
            with partition_connection() as con:
                landed = for_each_day(con, days, land, partition_workers_from_env())
                counts = {d.isoformat(): n for d, n in zip(days, landed, strict=True)}
                csv_days = [d for d, src in raw_sources(con, settings.lake_dir, days).items()
                            if src.format == "csv"]  # fmt: skip
                files_landed = lake.partition_files(settings.lake_dir, RAW_LANDED, csv_days)
                unparseable = (
                    con.execute(
                        "SELECT count(*) FROM read_parquet(?) WHERE parse_error IS NOT NULL",
                        [[str(f) for f in files_landed]],
                    ).fetchall()[0][0]
                    if files_landed
                    else 0
                )
        except InputFileError as exc:
            raise fail_on_input_error(exc) from exc
        meta = {
            "dagster/uri": str(settings.lake_dir / RAW_LANDED),
            "landed_csv_days": len(csv_days),
            "parquet_days_read_in_place": len(days) - len(csv_days),
        }
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
