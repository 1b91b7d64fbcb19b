"""Small fixtures shared by the operations tests: a tiny simulated shop, event-log scans."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from launch_pipeline.settings import Settings

TINY_END = dt.date(2026, 11, 20)
LOCK_ERROR = "Could not set lock on file"


def tiny_shop(
    data_dir: Path,
    *,
    days: int = 30,
    users: int = 200,
    events_per_day: int = 300,
    end_date: dt.date = TINY_END,
    candidates: int = 10,
    seed: int = 3,
    model_time_budget_s: float = 5.0,
) -> Settings:
    """Generate a tiny simulated shop under ``data_dir/raw`` and return its settings (default
    cleaning rules: the simulator scales planted bot bursts to the size of a day)."""
    from launch_pipeline.simulator import SimulatorConfig, generate_shop

    data_dir = Path(data_dir)
    raw = data_dir / "raw"
    generate_shop(
        raw,
        SimulatorConfig(
            seed=seed,
            users=users,
            days=days,
            events_per_day=events_per_day,
            end_date=end_date,
            candidates=candidates,
        ),
    )
    settings = Settings.from_env(data_dir=data_dir)
    return dataclasses.replace(settings, model_time_budget_s=model_time_budget_s)


def partition_keys(end_date: dt.date, days: int) -> list[str]:
    return [(end_date - dt.timedelta(days=days - 1 - i)).isoformat() for i in range(days)]


def partition_range_tags(keys: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover the partitions ``keys[0]`` .. ``keys[-1]``."""
    return {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }


def run_sequential_reference(
    raw_dir: Path, ref_dir: Path, keys: Sequence[str], assets: Sequence[str]
) -> Settings:
    """The reference the concurrency tests compare with: ``raw_dir`` copied to ``ref_dir/raw``
    and ``assets`` materialized over the partitions ``keys`` by one in-process run (steps one
    after another). Returns the reference's settings (its warehouse holds the result)."""
    import dagster as dg

    from launch_pipeline.definitions import build_definitions
    from launch_pipeline.defs.jobs import LAUNCH_JOB_NAME

    shutil.copytree(raw_dir, Path(ref_dir) / "raw")
    ref = Settings.from_env(data_dir=ref_dir)
    result = (
        build_definitions(ref)
        .resolve_job_def(LAUNCH_JOB_NAME)
        .execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            tags=partition_range_tags(keys),
            asset_selection=[dg.AssetKey(a) for a in assets],
        )
    )
    assert result.success
    return ref


def instance_env(home: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a process that runs the pipeline against the Dagster instance in
    ``home`` and the data in ``data_dir`` (no raw-folder override from the caller's env)."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LAUNCH_PIPELINE_DATA_DIR": str(data_dir),
        "GX_ANALYTICS_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **extra,
    }
    env.pop("LAUNCH_PIPELINE_RAW_DIR", None)
    return env


def lock_errors_in_instance(instance, run_ids) -> list[str]:
    """Every event message of the given runs that mentions a DuckDB lock conflict."""
    hits = []
    for run_id in run_ids:
        for rec in instance.all_logs(run_id):
            text = rec.user_message or ""
            if rec.dagster_event is not None:
                data = rec.dagster_event.event_specific_data
                err = getattr(data, "error", None)
                if err is not None:
                    text += " " + (err.message or "")
            if LOCK_ERROR in text:
                hits.append(f"{run_id}: {text[:300]}")
    return hits
