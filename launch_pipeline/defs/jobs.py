"""The job that materializes everything, and the nightly schedule that runs it."""

from __future__ import annotations

import dagster as dg

LAUNCH_JOB_NAME = "launch_pipeline_job"
NIGHTLY_SCHEDULE_NAME = "nightly_launch_plan"
NIGHTLY_HOUR_UTC = 2


def build_launch_job(partitions_def: dg.PartitionsDefinition):
    """Every asset: the targeted day(s) of raw and clean events, then everything downstream.

    Steps run one after another in one process: DuckDB allows one writer per database file, and
    TensorFlow is imported once instead of once per step process."""
    return dg.define_asset_job(
        LAUNCH_JOB_NAME,
        selection=dg.AssetSelection.all(),
        partitions_def=partitions_def,
        executor_def=dg.in_process_executor,
        description=(
            "Land and clean the targeted day(s) of behaviour logs, validate them (blocking GX "
            "checks), rebuild features, train and evaluate the model, score candidates and make "
            "the launch plan."
        ),
    )


def build_nightly_schedule(job) -> dg.ScheduleDefinition:
    """Every night at 02:00 UTC, yesterday's (UTC) partition and everything downstream.

    Running by default: it starts as soon as a Dagster daemon runs for this code location."""
    return dg.build_schedule_from_partitioned_job(
        job,
        name=NIGHTLY_SCHEDULE_NAME,
        hour_of_day=NIGHTLY_HOUR_UTC,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            "Nightly at 02:00 UTC: materializes yesterday's (UTC) partition of raw and clean "
            "events, then all downstream assets."
        ),
    )
