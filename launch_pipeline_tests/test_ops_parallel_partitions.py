"""Partition writers side by side (issue 14 part 3): the steps that land, clean and check a
partition write their own Parquet files on in-memory DuckDB connections, outside the
``duckdb_warehouse`` pool, so several of them run at once without a lock error and write what a
sequential run writes.

* library level (seconds): :func:`cleaning.clean_partitions` with 2 workers writes the same
  files as with 1;
* Dagster level: two partition runs of ``launch_pipeline_job`` (multiprocess executor,
  ``max_concurrent`` 2, the instance's pool limit 1), each in its own process, started at the
  same time on disjoint days after one run of the catalog; both succeed, overlap in time, meet no DuckDB lock error, and
  the raw, clean and quarantined events equal (checksums) one sequential in-process run."""

from __future__ import annotations

import datetime as dt
import threading

import dagster as dg
import duckdb
import pytest

from launch_pipeline import catalog, cleaning, lake, raw_io
from launch_pipeline.definitions import build_definitions
from launch_pipeline.defs.jobs import BACKFILL_ASSETS, LAUNCH_JOB_NAME, MULTIPROCESS_RUN_CONFIG
from launch_pipeline.runner import write_instance_yaml
from launch_pipeline.settings import ENV_PARTITION_WORKERS
from launch_pipeline_tests.support.celery import run_job_in_subprocess
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

DAYS = 6
KEYS = partition_keys(TINY_END, DAYS)
EVENT_TABLES = ("raw_events", "clean_events", "quarantined_events")


def _files_checksums(con, lake_dir) -> dict:
    cleaning.create_event_views(con, lake_dir)
    return {
        t: con.execute(
            f"SELECT count(*), md5(coalesce(string_agg(CAST(x AS VARCHAR), chr(30) "
            f"ORDER BY CAST(x AS VARCHAR)), '')) FROM {t} AS x"
        ).fetchall()[0]
        for t in EVENT_TABLES
    }


def test_two_cleaning_workers_write_what_one_writes(tmp_path):
    settings = tiny_shop(tmp_path / "data", days=DAYS, users=80, events_per_day=150)
    files = raw_io.event_day_files(settings.raw_dir)
    now = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)
    sums, stats = {}, {}
    for workers in (1, 2):
        lake_dir = tmp_path / f"lake_{workers}"
        con = duckdb.connect()
        try:
            catalog.load_product_catalog(con, settings.raw_dir)
            catalog.load_launch_candidates(con, settings.raw_dir)
            for day, path in files.items():
                raw_io.load_event_day(con, settings.raw_dir, day, path, lake_dir=lake_dir)
            stats[workers] = cleaning.clean_partitions(
                con, min(files), max(files), now=now, lake_dir=lake_dir, workers=workers
            )
            cleaning.row_accounting(con, min(files), max(files))
            sums[workers] = _files_checksums(con, lake_dir)
        finally:
            con.close()
        assert len(lake.read_stamps(lake_dir, "clean_events")) == DAYS
    assert sums[1] == sums[2]
    assert stats[1].reasons == stats[2].reasons and stats[2].accounting_holds
    assert stats[1].per_partition.equals(stats[2].per_partition)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_partition_runs_side_by_side_equal_a_sequential_run(tmp_path, monkeypatch):
    settings = tiny_shop(tmp_path / "data", days=DAYS, users=120, events_per_day=250)

    # the reference: one in-process run, one partition step after another, one worker
    monkeypatch.setenv(ENV_PARTITION_WORKERS, "1")
    ref = run_sequential_reference(settings.raw_dir, tmp_path / "sequential", KEYS, BACKFILL_ASSETS)
    expected = warehouse_checksums(ref.warehouse_path, DETERMINISTIC_TABLES)

    home = tmp_path / "dagster_home"
    write_instance_yaml(home)  # SQLite storage + the duckdb_warehouse pool (limit 1)
    # one day at a time inside a step: the runs are the writers
    env = instance_env(home, settings.data_dir, **{ENV_PARTITION_WORKERS: "1"})
    logs = tmp_path / "logs"
    logs.mkdir()

    # the catalog once (the unpartitioned assets a backfill materializes once), in this process
    with dg.DagsterInstance.from_config(str(home)) as instance:
        catalog_result = (
            build_definitions(settings)
            .resolve_job_def(LAUNCH_JOB_NAME)
            .execute_in_process(
                instance=instance,
                tags=partition_range_tags(KEYS[:1]),
                asset_selection=[dg.AssetKey("product_catalog"), dg.AssetKey("launch_candidates")],
            )
        )
    assert catalog_result.success
    catalog_run = catalog_result.run_id

    halves = [KEYS[: DAYS // 2], KEYS[DAYS // 2 :]]
    partition_assets = ["raw_events", "clean_events", "quarantined_events"]
    outcomes: dict[int, tuple[int, str | None]] = {}

    def launch(k: int) -> None:
        outcomes[k] = run_job_in_subprocess(
            env,
            LAUNCH_JOB_NAME,
            MULTIPROCESS_RUN_CONFIG,
            partition_range_tags(halves[k]),
            partition_assets,
            logs / f"run{k}.log",
            timeout_s=300,
        )

    threads = [threading.Thread(target=launch, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        assert outcomes[k][0] == 0, (logs / f"run{k}.log").read_text()[-3000:]
    run_ids = [outcomes[k][1] for k in range(2)]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        spans = []
        for run_id in run_ids:
            stats = instance.get_run_stats(run_id)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
            spans.append((stats.start_time, stats.end_time))
        lock_errors = lock_errors_in_instance(instance, [catalog_run, *run_ids])
    # the two partition runs were executing at the same time
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    assert lock_errors == []
    got = warehouse_checksums(settings.warehouse_path, DETERMINISTIC_TABLES)
    assert got == expected
    assert set(EVENT_TABLES) <= set(got)
