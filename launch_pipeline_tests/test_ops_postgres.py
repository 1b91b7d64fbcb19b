"""The example production instance (deploy/dagster.postgres.yaml) against a real PostgreSQL.

A local PostgreSQL (Debian's ``postgresql`` package, installed by ``.ci/run``) is started in a
temporary folder on 127.0.0.1, the nightly schedule is evaluated and its run executed with run,
event-log and schedule storage in PostgreSQL, the rows are read back with SQL, and the server is
stopped. Skipped with a reason when PostgreSQL or dagster-postgres is missing."""

from __future__ import annotations

import contextvars
import datetime as dt
import importlib.util
import shutil

import dagster as dg
import pytest

from launch_pipeline.definitions import build_definitions
from launch_pipeline.defs.jobs import BACKFILL_ASSETS, LAUNCH_JOB_NAME, NIGHTLY_SCHEDULE_NAME
from launch_pipeline_tests.support.devserver import REPO_ROOT as REPO
from launch_pipeline_tests.support.postgres import LocalPostgres, find_pg_bin
from launch_pipeline_tests.support.testing import TINY_END, partition_keys, tiny_shop

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_pg_bin() is None,
        reason="PostgreSQL is not installed (apt-get install postgresql; .ci/run does)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("dagster_postgres") is None,
        reason="dagster-postgres is not installed (pip install -e .)",
    ),
]


@pytest.mark.timeout(600)
def test_nightly_job_with_postgres_storage(tmp_path, monkeypatch):
    # a copy of the context: Dagster keeps the storage of an instance used in a `with` block in
    # a ContextVar, and nested `with instance` blocks (execute_in_process) leave it set
    contextvars.copy_context().run(_nightly_job_with_postgres_storage, tmp_path, monkeypatch)


def _nightly_job_with_postgres_storage(tmp_path, monkeypatch):
    settings = tiny_shop(tmp_path / "data", days=12, users=150, events_per_day=300)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    with LocalPostgres() as pg:
        for key, value in pg.env().items():
            monkeypatch.setenv(key, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"

            defs = build_definitions(settings)
            schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE_NAME)
            tick = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.timezone.utc)
            ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
            requests = schedule.evaluate_tick(ctx).run_requests
            assert [r.partition_key for r in requests] == [TINY_END.isoformat()]

            job = defs.resolve_job_def(LAUNCH_JOB_NAME)
            # the earlier days first (a backfill of the partitioned assets), then the nightly run
            history = job.execute_in_process(
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": partition_keys(TINY_END, 12)[0],
                    "dagster/asset_partition_range_end": partition_keys(TINY_END, 12)[-2],
                },
                asset_selection=[dg.AssetKey(a) for a in BACKFILL_ASSETS],
            )
            assert history.success
            result = job.execute_in_process(
                instance=instance,
                partition_key=requests[0].partition_key,
                tags={**requests[0].tags, "dagster/schedule_name": NIGHTLY_SCHEDULE_NAME},
                raise_on_error=False,
            )
            assert result.success
            run_id = result.run_id
            mat = instance.get_latest_materialization_event(dg.AssetKey("launch_plan"))
            assert mat is not None and mat.run_id == run_id
            checks = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("clean_events"), "event_key_unique"), limit=1
            )
            assert checks and checks[0].status.value == "SUCCEEDED"

        # the same facts, straight from PostgreSQL
        con = pg.connect()
        try:
            with con.cursor() as cur:
                cur.execute("SELECT status FROM runs WHERE run_id = %s", [run_id])
                assert cur.fetchall() == [("SUCCESS",)]
                cur.execute("SELECT count(*) FROM runs")
                assert cur.fetchall()[0][0] == 2
                cur.execute(
                    "SELECT count(*) FROM event_logs WHERE run_id = %s "
                    "AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                    [run_id],
                )
                assert cur.fetchall()[0][0] >= 10
                cur.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
                tables = {r[0] for r in cur.fetchall()}
            assert {"runs", "event_logs", "jobs", "job_ticks", "concurrency_limits"} <= tables
        finally:
            con.close()
    assert pg.root is None  # stopped and removed
