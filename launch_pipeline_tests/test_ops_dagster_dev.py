"""The real ``dagster dev -w workspace.yaml`` (webserver + daemon + code server) on a throw-away
DAGSTER_HOME at 127.0.0.1 on a free port, driven only through its GraphQL API.

One server for the module (started once, its process group always killed in teardown):

* the nightly schedule is RUNNING by default, the scheduler daemon is healthy, and a tick at
  02:00 UTC targets the previous UTC day;
* a 30-day backfill launched through GraphQL (daemon-submitted, multiprocess executor) succeeds
  with no DuckDB lock error, and its tables equal those of a sequential in-process run on the
  same data; so do 3 single-day runs launched at once (run queue + DuckDB pool);
* the nightly job launched through dagster-graphql's client succeeds; lineage, the latest
  materialization metadata and the asset check results are read back through GraphQL;
* headless Chromium takes a screenshot of the asset lineage page (skipped without Chromium).
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from launch_pipeline.defs.jobs import (
    BACKFILL_ASSETS,
    LAUNCH_JOB_NAME,
    MULTIPROCESS_RUN_CONFIG,
    NIGHTLY_SCHEDULE_NAME,
)
from launch_pipeline_tests.support.checksums import warehouse_checksums
from launch_pipeline_tests.support.devserver import DagsterDev, process_group_alive
from launch_pipeline_tests.support.screenshot import PAGES, find_chromium, take_screenshot
from launch_pipeline_tests.support.testing import (
    LOCK_ERROR,
    TINY_END,
    partition_keys,
    run_sequential_reference,
    tiny_shop,
)

pytestmark = pytest.mark.slow

DAYS = 30
KEYS = partition_keys(TINY_END, DAYS)
STRESS_RUNS = 3  # submitted at once; the run queue admits them as the DuckDB pool frees


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagster_dev")
    settings = tiny_shop(root / "data", days=DAYS)
    server = DagsterDev(settings.data_dir, root / "home", model_time_budget_s=5)
    t0 = time.monotonic()
    server.start()
    server.startup_s = time.monotonic() - t0
    try:
        yield server, settings
    finally:
        pgid = server.pgid
        server.stop()
        assert pgid is None or not process_group_alive(pgid), "dagster dev left processes"


@pytest.fixture(scope="module")
def sequential_reference(tmp_path_factory, dev):
    """The same raw data landed and cleaned by one in-process run (steps one after another)."""
    _, settings = dev
    ref = run_sequential_reference(
        settings.raw_dir, tmp_path_factory.mktemp("sequential"), KEYS, BACKFILL_ASSETS
    )
    return warehouse_checksums(ref.warehouse_path)


def _lock_errors(gql, run_ids) -> list[str]:
    return [
        f"{run_id}: {m['message']} {m['error']}"[:300]
        for run_id in run_ids
        for m in gql.run_messages(run_id)
        if LOCK_ERROR in m["message"] + m["error"]
    ]


@pytest.fixture(scope="module")
def backfill(dev):
    """30 daily partitions through the daemon's backfill, multiprocess executor."""
    server, _ = dev
    gql = server.graphql()
    t0 = time.monotonic()
    backfill_id = gql.launch_job_backfill(
        LAUNCH_JOB_NAME,
        KEYS,
        asset_selection=list(BACKFILL_ASSETS),
        run_config=MULTIPROCESS_RUN_CONFIG,
        title="30-day backfill (test)",
    )
    data = gql.wait_for_backfill(backfill_id, deadline_s=600)
    data["wall_s"] = time.monotonic() - t0
    return data


@pytest.mark.timeout(900)
def test_schedule_is_running_by_default_and_targets_yesterday_utc(dev):
    server, _ = dev
    gql = server.graphql()
    schedule = gql.schedule(NIGHTLY_SCHEDULE_NAME)
    assert schedule["defaultStatus"] == "RUNNING"
    assert schedule["scheduleState"]["status"] == "RUNNING"
    assert schedule["cronSchedule"] == "0 2 * * *"
    assert schedule["executionTimezone"] == "UTC"
    assert schedule["pipelineName"] == LAUNCH_JOB_NAME
    assert gql.daemon_statuses().get("SCHEDULER") is True
    tick = dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.timezone.utc).timestamp()
    requests = gql.schedule_dry_run(NIGHTLY_SCHEDULE_NAME, tick)
    assert [r["tags"].get("dagster/partition") for r in requests] == ["2026-11-20"]
    assert requests[0]["job"] == LAUNCH_JOB_NAME


@pytest.mark.timeout(900)
def test_backfill_30_partitions_multiprocess_no_lock_errors(dev, backfill, sequential_reference):
    server, settings = dev
    gql = server.graphql()
    runs = backfill["runs"]
    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    assert backfill["numPartitions"] == DAYS
    messages = [m for r in runs for m in gql.run_messages(r["runId"])]
    assert any("multiprocess executor" in m["message"].lower() for m in messages)
    assert _lock_errors(gql, [r["runId"] for r in runs]) == []
    got = warehouse_checksums(settings.warehouse_path)
    assert got == sequential_reference
    assert got["raw_events"][0] > 0 and got["clean_events"][0] > 0
    print(f"\nbackfill: {DAYS} partitions, {len(runs)} run(s), {backfill['wall_s']:.1f}s wall")


@pytest.mark.timeout(900)
def test_concurrent_partition_runs_no_lock_errors(dev, backfill, sequential_reference):
    """Several single-day runs at once (multiprocess executor each): the run queue admits them,
    the DuckDB pool serialises their warehouse steps; re-landed days are unchanged."""
    server, settings = dev
    gql = server.graphql()
    t0 = time.monotonic()
    run_ids = [
        gql.launch_job(
            LAUNCH_JOB_NAME,
            tags={"dagster/partition": key},
            run_config=MULTIPROCESS_RUN_CONFIG,
            asset_selection=["raw_events", "clean_events", "quarantined_events"],
        )
        for key in KEYS[-STRESS_RUNS:]
    ]
    statuses = [gql.wait_for_run(run_id, deadline_s=600) for run_id in run_ids]
    assert statuses == ["SUCCESS"] * STRESS_RUNS
    assert _lock_errors(gql, run_ids) == []
    assert warehouse_checksums(settings.warehouse_path) == sequential_reference
    print(f"\n{STRESS_RUNS} concurrent partition runs: {time.monotonic() - t0:.1f}s wall")


@pytest.fixture(scope="module")
def nightly_run(dev, backfill):
    server, _ = dev
    gql = server.graphql()
    run_id = gql.launch_job(LAUNCH_JOB_NAME, tags={"dagster/partition": TINY_END.isoformat()})
    status = gql.wait_for_run(run_id, deadline_s=600)
    return run_id, status


@pytest.mark.timeout(900)
def test_nightly_job_through_graphql(dev, nightly_run):
    server, _ = dev
    gql = server.graphql()
    run_id, status = nightly_run
    failures = [m for m in gql.run_messages(run_id) if m["error"]]
    assert status == "SUCCESS", failures[:3]

    # lineage
    nodes = gql.asset_nodes()
    assert "clean_events" in nodes["raw_events"]["downstream"]
    assert {"raw_events", "product_catalog", "launch_candidates"} <= set(
        nodes["clean_events"]["upstream"]
    )
    assert {"user_preferences", "activity_profile", "item_features", "launch_candidates"} <= set(
        nodes["launch_plan"]["upstream"]
    )
    assert nodes["raw_events"]["partitioned"] and not nodes["launch_plan"]["partitioned"]

    # latest materialization metadata
    clean = gql.latest_materialization("clean_events")
    assert clean["run_id"] == run_id and clean["partition"] == TINY_END.isoformat()
    assert clean["metadata"]["dagster/row_count"] > 0
    assert clean["metadata"]["accounting_holds"] is True
    assert "dagster/column_schema" in clean["metadata"]
    plan = gql.latest_materialization("launch_plan")
    assert plan["run_id"] == run_id
    assert plan["metadata"]["launched_products"] > 0
    assert plan["metadata"]["report"].endswith(".md")
    model = gql.latest_materialization("preference_model")
    assert model["metadata"]["version"].startswith("preference_model:v")

    # asset check results
    checks = gql.asset_checks("clean_events")
    assert {"event_key_unique", "no_bot_left", "quarantined_share_below_limit"} <= set(checks)
    for name, res in checks.items():
        assert res["run_id"] == run_id, name
        assert res["status"] == "SUCCEEDED" and res["passed"] is True, (name, res)
    model_checks = gql.asset_checks("champion_model")
    assert model_checks["challenger_not_worse_than_champion"]["status"] == "SUCCEEDED"


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    find_chromium() is None,
    reason="Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)",
)
@pytest.mark.parametrize("page", ["asset_lineage", "global_lineage"])
def test_lineage_page_screenshot(dev, nightly_run, tmp_path, page):
    server, _ = dev
    out = tmp_path / f"{page}.png"
    info = take_screenshot(server.url, out, page)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, info
    if info["method"] == "webdriver":
        assert info["found"] == list(PAGES[page][1])
    print(f"\nscreenshot: {info}")
