"""Small fixtures shared by the operations tests: a tiny simulated shop, event-log scans."""

from __future__ import annotations

import dataclasses
import datetime as dt
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
