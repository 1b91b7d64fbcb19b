"""``launch-pipeline run`` recovers the pool after a killed run: a run left "STARTED" by a
process that no longer exists is marked failed and its ``duckdb_warehouse`` slot is freed, so
the next run does not wait for that slot forever."""

from __future__ import annotations

import socket
import subprocess
import sys

import dagster as dg

from launch_pipeline.runner import (
    RUN_HOST_TAG,
    RUN_PID_TAG,
    recover_abandoned_runs,
    write_instance_yaml,
)

POOL = "duckdb_warehouse"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _started_run(instance, pid: int, host: str) -> dg.DagsterRun:
    run = instance.create_run_for_job(
        dg.GraphDefinition(name="g", node_defs=[]).to_job(name="launch_pipeline_job"),
        tags={RUN_HOST_TAG: host, RUN_PID_TAG: str(pid)},
    )
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.PIPELINE_START.value,
            job_name=run.job_name,
        ),
    )
    return instance.get_run_by_id(run.run_id)


def test_dead_run_is_failed_and_its_pool_slot_freed(tmp_path):
    home = tmp_path / "home"
    write_instance_yaml(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)
        dead = _started_run(instance, _dead_pid(), socket.gethostname())
        alive = _started_run(instance, 1, socket.gethostname())  # pid 1 always exists
        elsewhere = _started_run(instance, _dead_pid(), "another-host")
        assert storage.claim_concurrency_slot(POOL, dead.run_id, "raw_events").is_claimed
        # the pool is full: a new run's step cannot get the slot
        assert not storage.claim_concurrency_slot(POOL, "new-run", "raw_events").is_claimed
        storage.free_concurrency_slots_for_run("new-run")

        assert recover_abandoned_runs(instance) == [dead.run_id]

        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        # a live process's run and another host's run are left alone
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
        assert instance.get_run_by_id(elsewhere.run_id).status == dg.DagsterRunStatus.STARTED
        assert storage.claim_concurrency_slot(POOL, "new-run", "raw_events").is_claimed
        # nothing more to do on a second call
        assert recover_abandoned_runs(instance) == []
