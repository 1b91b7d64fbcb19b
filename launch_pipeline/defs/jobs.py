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
                # 2 step processes per run; the DuckDB pool (limit 1) serialises the warehouse
                # writers, partition steps (own files, in-memory DuckDB) are not in the pool
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


CELERY_BROKER_ENV = "LAUNCH_PIPELINE_CELERY_BROKER"
CELERY_BACKEND_ENV = "LAUNCH_PIPELINE_CELERY_BACKEND"


def celery_run_config(broker: object, backend: object) -> dict:
    """Run config that sends every step of a run of ``launch_pipeline_job`` to Celery workers
    (``dagster-celery worker start -A dagster_celery.app`` with the same broker, the code location
    importable and ``LAUNCH_PIPELINE_DATA_DIR`` / ``DAGSTER_HOME`` pointing at the same folders).

    ``broker`` / ``backend``: URLs (``redis://127.0.0.1:6379/0``) or ``{"env": NAME}``. The
    DuckDB writers stay one at a time through the pool ``duckdb_warehouse``: the Celery loop
    claims a pool slot in the Dagster instance before it submits a step, across runs and
    executors, so the workers may run several tasks each without two warehouse writers; partition
    steps write their own files and are not in the pool."""
    return {"execution": {"config": {"celery": {"broker": broker, "backend": backend}}}}


CELERY_RUN_CONFIG: dict = celery_run_config({"env": CELERY_BROKER_ENV}, {"env": CELERY_BACKEND_ENV})
"""Run config for the Celery executor with the broker and result backend read from
``$LAUNCH_PIPELINE_CELERY_BROKER`` / ``$LAUNCH_PIPELINE_CELERY_BACKEND`` where the run starts
(paste it into the launchpad or pass it as ``runConfigData``)."""


CELERY_MISSING = (
    "the Celery executor needs dagster-celery and redis, which are in the project's "
    "dependencies: run `pip install -e .` (or `make install`) in this environment"
)


def _selector_config():
    try:
        from dagster_celery.executor import CELERY_CONFIG

        celery_config = dg.Field(CELERY_CONFIG)
    except ImportError:  # an environment installed before the dependency: fail on use, not load
        celery_config = dg.Field(dg.Permissive(), description=CELERY_MISSING)
    fields = dict(dg.multi_or_in_process_executor.config_schema.config_type.fields)
    fields["celery"] = celery_config
    return dg.Selector(fields)


def _requirements(executor_config):
    if "celery" in executor_config:
        return dg.multiple_process_executor_requirements()
    return dg.multi_or_in_process_executor.get_requirements(executor_config)


def _create_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    if "celery" not in init_context.executor_config:
        return dg.multi_or_in_process_executor.executor_creation_fn(init_context)
    from dagster._core.execution.retries import RetryMode

    try:
        from dagster_celery.executor import CeleryExecutor
    except ImportError as exc:
        raise dg.DagsterInvariantViolationError(f"{CELERY_MISSING} ({exc})") from exc

    cfg = init_context.executor_config["celery"]
    return CeleryExecutor(
        broker=cfg.get("broker"),
        backend=cfg.get("backend"),
        include=cfg.get("include"),
        config_source=cfg.get("config_source"),
        retries=RetryMode.from_config(cfg["retries"]),
    )


launch_executor = dg.ExecutorDefinition(
    name="in_process_multiprocess_or_celery",
    config_schema=dg.Field(_selector_config(), default_value={"in_process": {}}),
    requirements=_requirements,
    executor_creation_fn=_create_executor,
    description=(
        "In-process by default (one TensorFlow import, steps one after another); "
        "`execution: config: multiprocess: {...}` runs steps in their own processes, e.g. for "
        "backfills; `execution: config: celery: {broker: ..., backend: ...}` sends each step to "
        "dagster-celery workers. Every step that writes the warehouse file is in the pool "
        "`duckdb_warehouse` (limit 1), whichever executor runs it; partition steps (raw "
        "landing, cleaning, their GX checks) write their own partition files and are not."
    ),
)


def build_launch_job(partitions_def: dg.PartitionsDefinition):
    """Every asset: the targeted day(s) of raw and clean events, then everything downstream.

    By default the steps run one after another in one process (``in_process``): TensorFlow is
    imported once instead of once per step process, and nothing is gained from parallel steps on
    a single DuckDB file. Backfills pass :data:`MULTIPROCESS_RUN_CONFIG`: steps then run in their
    own processes and several runs may run at once; every step that writes the warehouse file
    is in the concurrency pool ``duckdb_warehouse`` (limit 1 in ``dagster.yaml``), so DuckDB
    never sees two writers. Partition steps (raw landing, cleaning, the GX checks of their
    days) write their own Parquet files (``lake.py``) on in-memory DuckDB connections: they are
    not in the pool, so the partition runs of a backfill run side by side."""
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
