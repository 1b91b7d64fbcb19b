"""A small simulated shop landed and cleaned (partition files beside ``raw``), its clean events
copied into tables of an in-memory DuckDB, for feature tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from launch_pipeline import catalog, cleaning
from launch_pipeline.raw_io import event_day_files, load_event_day
from launch_pipeline.settings import CleaningRules
from launch_pipeline.simulator import SimulatorConfig, generate_shop


def cleaned_shop_connection(raw: Path, config: SimulatorConfig) -> duckdb.DuckDBPyConnection:
    """Generate ``config``'s shop under ``raw``, land every day and clean them (as of the day
    after the shop's last day); returns the open connection."""
    generate_shop(raw, config)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    catalog.load_product_catalog(con, raw)
    catalog.load_launch_candidates(con, raw)
    files = event_day_files(raw)
    lake_dir = raw.parent / "lake"
    for day, path in sorted(files.items()):
        load_event_day(con, raw, day, path, lake_dir=lake_dir)
    now = dt.datetime.combine(config.end_date + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    cleaning.clean_partitions(
        con, min(files), max(files), CleaningRules(), now=now, lake_dir=lake_dir
    )
    # the cleaned days as tables (the pipeline reads them through views over the partition
    # files), so that feature tests can change a day row by row
    for name in ("clean_events", "quarantined_events"):
        con.execute(f"CREATE TABLE _{name} AS SELECT * FROM {name}")
        con.execute(f"DROP VIEW {name}")
        con.execute(f"ALTER TABLE _{name} RENAME TO {name}")
    return con
