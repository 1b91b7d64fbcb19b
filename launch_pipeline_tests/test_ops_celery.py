"""A backfill on a real distributed executor: dagster-celery, a Redis broker, two worker processes.

Everything runs for real on loopback: ``redis-server`` on 127.0.0.1 on a free port (no
persistence, a throw-away folder), two ``dagster-celery worker start`` processes that import the
code location, and an orchestrator process that launches one run of ``launch_pipeline_job`` over
a range of daily partitions (raw, clean and quarantined events, the catalog, the GX checks and
the feature tables) with :func:`celery_run_config`. The orchestrator submits each step to the
broker; a worker executes it against the same ``DAGSTER_HOME`` and data folder. The test checks
that the run succeeds, that both workers executed steps, that no two warehouse steps overlapped
(the ``duckdb_warehouse`` pool, limit 1; partition steps write their own files, outside it) and no step met a DuckDB lock error, and that every table
equals (checksums) the same selection run in-process, steps one after another.

Measure a longer backfill with ``LAUNCH_PIPELINE_CELERY_TEST_DAYS=30 pytest -s
launch_pipeline_tests/test_ops_celery.py`` (prints both wall times). Skips with one line when redis-server or dagster-celery is missing (``.ci/run`` installs both)."""

from __future__ import annotations

import os
import time

import dagster as dg
import pytest

from launch_pipeline.definitions import build_definitions
from launch_pipeline.defs.jobs import (
    BACKFILL_ASSETS,
    CELERY_BACKEND_ENV,
    CELERY_BROKER_ENV,
    CELERY_RUN_CONFIG,
    LAUNCH_JOB_NAME,
    MULTIPROCESS_RUN_CONFIG,
    celery_run_config,
    launch_executor,
)
from launch_pipeline.runner import write_instance_yaml
from launch_pipeline_tests.support.celery import (
    CeleryWorkers,
    LocalRedis,
    celery_missing,
    run_job_in_subprocess,
)
from launch_pipeline_tests.support.checksums import DETERMINISTIC_TABLES, warehouse_checksums
from launch_pipeline_tests.support.testing import (
    TINY_END,
    instance_env,
    lock_errors_in_instance,
    partition_keys,
    partition_range_tags,
    run_sequential_reference,
    tiny_shop,
)

pytestmark = pytest.mark.slow

# 4 partitions in make test; LAUNCH_PIPELINE_CELERY_TEST_DAYS=30 measures a longer backfill
DAYS = int(os.environ.get("LAUNCH_PIPELINE_CELERY_TEST_DAYS", "4"))
KEYS = partition_keys(TINY_END, DAYS)
FEATURE_ASSETS = ("item_features", "user_features", "user_sequences", "activity_profile")
ASSETS = [*BACKFILL_ASSETS, *FEATURE_ASSETS]
TABLES = (*DETERMINISTIC_TABLES, *FEATURE_ASSETS, "price_bands")
RANGE_TAGS = partition_range_tags(KEYS)
WORKERS = 2


def test_executor_choice_by_run_config(tmp_path, monkeypatch):
    """In-process by default; the multiprocess and Celery run configs validate against the job
    (the Celery one reading its broker and backend from the environment); an unknown executor is
    refused."""
    settings = tiny_shop(tmp_path / "data", days=2, users=20, events_per_day=30)
    job = build_definitions(settings).resolve_job_def(LAUNCH_JOB_NAME)

    def executor(run_config: dict) -> dict:
        return dg.validate_run_config(job, run_config)["execution"][launch_executor.name]

    assert executor({}) == {"in_process": {"retries": {"enabled": {}}}}
    monkeypatch.setenv(CELERY_BROKER_ENV, "redis://127.0.0.1:6399/0")
    monkeypatch.setenv(CELERY_BACKEND_ENV, "redis://127.0.0.1:6399/1")
    celery = executor(CELERY_RUN_CONFIG)["celery"]
    assert (celery["broker"], celery["backend"]) == (
        "redis://127.0.0.1:6399/0",
        "redis://127.0.0.1:6399/1",
    )
    assert executor(MULTIPROCESS_RUN_CONFIG)["multiprocess"]["max_concurrent"] == 2
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(job, {"execution": {"config": {"dask": {}}}})


def _warehouse_pool_steps(settings) -> set[str]:
    """Step keys (asset op names) of the steps in the ``duckdb_warehouse`` pool."""
    from launch_pipeline.defs.raw import WAREHOUSE_POOL

    defs = build_definitions(settings)
    return {
        a.op.name
        for a in defs.resolve_asset_graph().assets_defs
        if getattr(a.op, "pool", None) == WAREHOUSE_POOL
    }


def _step_intervals(instance, run_id: str) -> dict[str, tuple[float, float]]:
    """(start, end) timestamps of every step of a run, from its event log."""
    starts, ends = {}, {}
    for rec in instance.all_logs(run_id):
        event = rec.dagster_event
        if event is None or not rec.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[rec.step_key] = rec.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[rec.step_key] = rec.timestamp
    return {k: (starts[k], ends[k]) for k in starts if k in ends}


def _celery_workers_by_step(instance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that executed it (the worker's engine event)."""
    found = {}
    for rec in instance.all_logs(run_id):
        event = rec.dagster_event
        if event is None or event.event_type_value != "ENGINE_EVENT" or not rec.step_key:
            continue
        meta = event.engine_event_data.metadata if event.engine_event_data else {}
        worker = meta.get("Celery worker")
        if worker is not None:
            found[rec.step_key] = str(worker.value)
    return found


@pytest.mark.timeout(240 + 10 * DAYS)
def test_backfill_on_celery_workers_equals_sequential_run(tmp_path):
    reason = celery_missing()
    if reason:
        pytest.skip(reason)
    settings = tiny_shop(tmp_path / "data", days=DAYS, users=120, events_per_day=250)

    # the reference: the same raw data, one in-process run, steps one after another
    t0 = time.monotonic()
    ref = run_sequential_reference(settings.raw_dir, tmp_path / "sequential", KEYS, ASSETS)
    in_process_s = time.monotonic() - t0
    expected = warehouse_checksums(ref.warehouse_path, TABLES)

    home = tmp_path / "dagster_home"
    write_instance_yaml(home)  # SQLite storage + the duckdb_warehouse pool (limit 1)
    env = instance_env(home, settings.data_dir, PYTHONUNBUFFERED="1")
    logs = tmp_path / "logs"
    with LocalRedis() as redis:
        run_config = celery_run_config(redis.url(0), redis.url(1))
        with CeleryWorkers(redis.url(0), redis.url(1), env, count=WORKERS, log_dir=logs):
            t0 = time.monotonic()
            code, run_id = run_job_in_subprocess(
                env,
                LAUNCH_JOB_NAME,
                run_config,
                RANGE_TAGS,
                ASSETS,
                logs / "orchestrator.log",
                timeout_s=150 + 5 * DAYS,
            )
            celery_s = time.monotonic() - t0
    orchestrator_log = (logs / "orchestrator.log").read_text()
    assert code == 0 and run_id, orchestrator_log[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.run_config["execution"]["config"].keys() == {"celery"}
        by_step = _celery_workers_by_step(instance, run_id)
        intervals = _step_intervals(instance, run_id)
        lock_errors = lock_errors_in_instance(instance, [run_id])
        stats = instance.get_run_stats(run_id)
    # every step ran on a Celery worker, and both workers took part
    assert set(by_step) == set(intervals), (by_step, intervals)
    assert {w.split("@")[0] for w in by_step.values()} == {"lp-worker1", "lp-worker2"}, by_step
    # the pool let one warehouse step run at a time, so DuckDB never saw two writers; the
    # partition steps (own files, in-memory DuckDB) are not in the pool and may overlap them
    pooled = _warehouse_pool_steps(settings)
    assert "raw_events" not in pooled and "product_catalog" in pooled, pooled
    ordered = sorted(iv for step, iv in intervals.items() if step in pooled)
    assert len(ordered) >= 2, intervals
    assert all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:], strict=False)), intervals
    assert lock_errors == []
    assert warehouse_checksums(settings.warehouse_path, TABLES) == expected
    assert set(expected) == set(TABLES)
    print(
        f"\ncelery: {DAYS} partitions, {len(intervals)} steps on {WORKERS} workers: run "
        f"{stats.end_time - stats.start_time:.1f}s from start to success, {celery_s:.1f}s with "
        f"the orchestrator process's start; in-process (warm test process) {in_process_s:.1f}s"
    )
