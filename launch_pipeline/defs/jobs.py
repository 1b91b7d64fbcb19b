"""The job that materializes everything, its executor, and the nightly schedule that runs it."""

from __future__ import annotations

import dagster as dg

LAUNCH_JOB_NAME = "launch_pipeline_job"
NIGHTLY_SCHEDULE_NAME = "nightly_launch_plan"
NIGHTLY_HOUR_UTC = 2
NIGHTLY_TIMEZONE = "UTC"

# The assets a backfill of many days needs: the daily partitions of raw and clean events (and the
# catalog they are cleaned against). Their asset checks come with them. Downstream assets are
# rebuilt once afterwards by an ordinary run of the job (or the next nightly run).
BACKFILL_ASSETS: tuple[str, ...] = (
    "product_catalog",
    "launch_candidates",
    "raw_events",
    "clean_events",
    "quarantined_events",
)

MULTIPROCESS_RUN_CONFIG: dict = {
    "execution": {
        "config": {
            "multiprocess": {
                # 2 step processes per run; the DuckDB pool (limit 1) serialises the writers
                "max_concurrent": 2,
                # forked from a server that imported the code location (and Great Expectations,
                # which the check steps need) once, instead of a fresh interpreter and fresh
                # imports per step: a step then holds the DuckDB pool slot only for its work
                "start_method": {
                    "forkserver": {
                        "preload_modules": ["launch_pipeline.definitions", "great_expectations"]
                    }
                },
            }
        }
    }
}
"""Run config that switches a run of ``launch_pipeline_job`` to the multiprocess executor (used
for backfills; paste it into the launchpad or pass it as ``runConfigData``)."""


def _selector_config():
    return dg.multi_or_in_process_executor.config_schema.config_type


launch_executor = dg.ExecutorDefinition(
    name="in_process_or_multiprocess",
    config_schema=dg.Field(_selector_config(), default_value={"in_process": {}}),
    requirements=dg.multi_or_in_process_executor.get_requirements,
    executor_creation_fn=dg.multi_or_in_process_executor.executor_creation_fn,
    description=(
        "In-process by default (one TensorFlow import, steps one after another); "
        "`execution: config: multiprocess: {...}` runs steps in their own processes, e.g. for "
        "backfills. Either way every DuckDB-writing step is in the pool `duckdb_warehouse`."
    ),
)


def build_launch_job(partitions_def: dg.PartitionsDefinition):
    """Every asset: the targeted day(s) of raw and clean events, then everything downstream.

    By default the steps run one after another in one process (``in_process``): TensorFlow is
    imported once instead of once per step process, and nothing is gained from parallel steps on
    a single DuckDB file. Backfills pass :data:`MULTIPROCESS_RUN_CONFIG`: steps then run in their
    own processes and several runs may run at once; every DuckDB-touching step is in the
    concurrency pool ``duckdb_warehouse`` (limit 1 in ``dagster.yaml``), so DuckDB never sees two
    writers."""
    return dg.define_asset_job(
        LAUNCH_JOB_NAME,
        selection=dg.AssetSelection.all(),
        partitions_def=partitions_def,
        executor_def=launch_executor,
        description=(
            "Land and clean the targeted day(s) of behaviour logs, validate them (blocking GX "
            "checks), rebuild features, train and evaluate the model, score candidates and make "
            "the launch plan."
        ),
    )


def build_nightly_schedule(job) -> dg.ScheduleDefinition:
    """Every night at 02:00 UTC, yesterday's (UTC) partition and everything downstream.

    The cron expression is evaluated in UTC (``execution_timezone="UTC"``), the same timezone as
    the daily partitions, so the tick of day D targets partition D-1 whatever the server's local
    timezone. Running by default: it starts as soon as a Dagster daemon runs for this code
    location."""
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
