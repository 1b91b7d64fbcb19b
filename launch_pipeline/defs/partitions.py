"""The daily partitions of the raw and cleaned events (UTC days)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from launch_pipeline.raw_io import partition_range
from launch_pipeline.settings import Settings, raw_dir_from_env

FALLBACK_DAYS = 30


def build_daily_partitions(settings: Settings | None = None) -> dg.DailyPartitionsDefinition:
    """Daily partitions from the raw data's own range (``dataset.json`` or the event file names)
    of ``settings.raw_dir`` (default ``LAUNCH_PIPELINE_RAW_DIR`` or ``./data/raw``).

    This is the one thing read when the code location loads: a static partition set is what
    lets the nightly schedule target "yesterday" and a backfill list the days that exist.
    (Dynamic partitions added by a sensor would avoid the read, but change how the schedule,
    backfills and the CLI pick days; not worth it for a read of one small file.)

    A live source (no end date) gets partitions up to yesterday, so the nightly schedule can
    target the last complete day. With no raw data yet, the last ``FALLBACK_DAYS`` days are used
    so that the code location still loads."""
    start, end = partition_range(settings.raw_dir if settings else raw_dir_from_env())
    if start is None:
        start = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=FALLBACK_DAYS)
    end_date = (end + dt.timedelta(days=1)).isoformat() if end else None
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(), end_date=end_date, timezone="UTC"
    )


def partition_dates(context) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of the partitions a run or check targets."""
    keys = context.partition_keys
    return dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])
