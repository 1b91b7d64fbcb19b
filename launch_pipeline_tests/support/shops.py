"""A small simulated shop landed and cleaned into an in-memory DuckDB, for feature tests."""

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
    for day, path in sorted(files.items()):
        load_event_day(con, raw, day, path)
    now = dt.datetime.combine(config.end_date + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    cleaning.clean_partitions(con, min(files), max(files), CleaningRules(), now=now)
    return con
