"""Crash safety: a run SIGKILLed mid-way, and kills at the worst moments of a warehouse write and
of a model-file write, never leave a partial table or a half-written model that anything points
to; re-running repairs everything.

* a real ``launch-pipeline run`` (one process, in-process executor) is SIGKILLed while the model
  step trains; the warehouse still opens with consistent tables, and a re-run succeeds, with
  the same deterministic tables and a champion that loads in Keras safe mode;
* a child process kills itself after writing the new partition file of a day of raw events, and
  after writing the new clean and quarantined files of a day, before they replace the old ones:
  the day is unchanged and no temporary file is read;
* a child process kills itself half-way through writing a model file (``save_model``) and a
  registry version (``LocalModelStore.register``): the registry and the final paths are intact.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from launch_pipeline import lake
from launch_pipeline.model_store import REGISTRY_FILE, LocalModelStore
from launch_pipeline.runner import run_pipeline, write_instance_yaml
from launch_pipeline_tests.support.checksums import warehouse_checksums
from launch_pipeline_tests.support.devserver import kill_process_group
from launch_pipeline_tests.support.testing import TINY_END, tiny_shop

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _accounting_holds(db: Path) -> None:
    con = duckdb.connect(str(db), read_only=True)
    try:
        bad = con.execute(
            """
            WITH r AS (SELECT partition_date, count(*) n FROM raw_events GROUP BY 1),
                 c AS (SELECT partition_date, count(*) n FROM clean_events GROUP BY 1),
                 q AS (SELECT partition_date, count(*) n FROM quarantined_events GROUP BY 1)
            SELECT r.partition_date, r.n, coalesce(c.n, 0), coalesce(q.n, 0)
            FROM r LEFT JOIN c USING (partition_date) LEFT JOIN q USING (partition_date)
            WHERE r.n <> coalesce(c.n, 0) + coalesce(q.n, 0)
            """
        ).fetchall()
    finally:
        con.close()
    assert bad == [], f"raw != clean + quarantined for {bad}"


def _registry_consistent(models_dir: Path) -> LocalModelStore:
    registry = LocalModelStore(models_dir)
    reg = json.loads((registry.root / REGISTRY_FILE).read_text())  # parses
    for v in reg["versions"]:
        folder = registry.get(v["version"]).path
        assert (folder / "model.keras").is_file(), f"registry points at {folder} without a model"
        assert not folder.name.startswith("."), folder
    return registry


def _wait_for_step(log: Path, step: str, proc: subprocess.Popen, deadline_s: float) -> str:
    """Wait until the child's Dagster log says ``step`` has started; return the run id. Reads
    the log file, not the instance's SQLite storage: opening that while the child creates it
    races on its tables ("table ... already exists")."""
    started = re.compile(rf" - ([0-9a-f-]{{36}}) - \d+ - {re.escape(step)} - STEP_START - ")
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {step} started (rc {proc.returncode})")
        match = started.search(log.read_text(errors="replace"))
        if match:
            return match.group(1)
        time.sleep(0.5)
    raise TimeoutError(f"{step} did not start within {deadline_s}s")


@pytest.mark.timeout(900)
def test_sigkill_during_model_step_then_rerun(tmp_path):
    # a copy of the context: Dagster keeps the storage of an instance used in a `with` block in
    # a ContextVar, and nested `with instance` blocks (execute_in_process) leave it set
    contextvars.copy_context().run(_sigkill_during_model_step_then_rerun, tmp_path)


def _sigkill_during_model_step_then_rerun(tmp_path):
    settings = tiny_shop(tmp_path / "data", days=10, users=150, events_per_day=300)
    home = tmp_path / "home"
    write_instance_yaml(home)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LAUNCH_PIPELINE_MODEL_TIME_BUDGET_S": "60",  # long enough to be killed while training
        "GX_ANALYTICS_ENABLED": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("LAUNCH_PIPELINE_RAW_DIR", None)
    # --verbose: the full Dagster log (STEP_START lines) on stdout, which the test reads
    cli = [sys.executable, "-m", "launch_pipeline.cli"]
    cmd = [*cli, "run", "--verbose", "--data-dir", str(settings.data_dir)]
    log_path = tmp_path / "killed_run.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        run_id = _wait_for_step(log_path, "preference_model", proc, deadline_s=300)
        time.sleep(4.0)  # TensorFlow imported, training under way
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_process_group(proc, grace_s=1)
        log.close()
    assert proc.returncode == -signal.SIGKILL

    # after the crash: the warehouse opens, every landed day is whole, nothing half-registered
    _accounting_holds(settings.warehouse_path)
    before = warehouse_checksums(settings.warehouse_path)
    root = LocalModelStore(settings.models_dir).root
    if (root / REGISTRY_FILE).exists():
        _registry_consistent(settings.models_dir)
    else:  # nothing registered: no version folder either (a crashed write stays a .v*- temp)
        assert not list(root.glob("v[0-9][0-9][0-9][0-9]"))
    assert not list(root.glob("v[0-9][0-9][0-9][0-9]/.*.tmp*"))  # (glob of a missing dir: [])

    # re-run in the same instance: succeeds, same deterministic tables, a loadable champion
    with dg.DagsterInstance.from_config(str(home)) as instance:
        killed = instance.get_run_by_id(run_id)
        assert killed.status != dg.DagsterRunStatus.SUCCESS
        outcome = run_pipeline(
            dataclasses.replace(settings, model_time_budget_s=5.0), instance=instance
        )
        # the killed run's process is gone: it was marked failed, which freed its pool slot
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        assert outcome.recovered_runs == [run_id]
    assert outcome.success, outcome.failures
    _accounting_holds(settings.warehouse_path)
    assert warehouse_checksums(settings.warehouse_path) == before
    registry = _registry_consistent(settings.models_dir)
    assert not list(registry.root.glob(".v*-*")), "stale temporary version folders left"
    champion = registry.champion()
    assert champion is not None
    from launch_pipeline.model.training import load_model

    assert load_model(champion.model_path) is not None


# --------------------------------------------------------------------------------------------
# deterministic kills at the worst moment (a child process kills itself)
# --------------------------------------------------------------------------------------------
_KILLING_CONNECTION = """
import os, signal, sys, datetime as dt
from pathlib import Path
import duckdb

class KillAfter:
    '''Forwards to a DuckDB connection; SIGKILLs the process right after a statement that
    contains `marker` (inside the caller's transaction, before COMMIT).'''
    def __init__(self, con, marker):
        self._con, self._marker = con, marker
    def execute(self, sql, *args, **kw):
        out = self._con.execute(sql, *args, **kw)
        if self._marker in sql:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    def __getattr__(self, name):
        return getattr(self._con, name)
"""


def _run_child(code: str, tmp_path: Path) -> int:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_KILLING_CONNECTION) + textwrap.dedent(code))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    return proc.returncode


@pytest.fixture
def landed_week(tmp_path):
    settings = tiny_shop(tmp_path / "data", days=4, users=100, events_per_day=200)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        from launch_pipeline.catalog import load_launch_candidates, load_product_catalog
        from launch_pipeline.cleaning import clean_partitions
        from launch_pipeline.raw_io import event_day_files, load_event_day

        load_product_catalog(con, settings.raw_dir)
        load_launch_candidates(con, settings.raw_dir)
        files = event_day_files(settings.raw_dir)
        for day, path in files.items():
            load_event_day(con, settings.raw_dir, day, path, lake_dir=settings.lake_dir)
        clean_partitions(con, min(files), max(files), settings.cleaning, lake_dir=settings.lake_dir)
    finally:
        con.close()
    return settings


@pytest.mark.timeout(300)
def test_kill_inside_raw_landing_transaction_leaves_day_unchanged(landed_week, tmp_path):
    settings = landed_week
    before = warehouse_checksums(settings.warehouse_path)
    raw_stamps = lake.read_stamps(settings.lake_dir, "raw_events")
    # the day file changes, then the landing dies after writing the new partition file, before
    # it replaces the old one
    day_file = settings.raw_dir / "events" / f"{TINY_END}.csv"
    lines = day_file.read_text().splitlines()
    day_file.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    rc = _run_child(
        f"""
        from launch_pipeline.raw_io import load_event_day
        con = duckdb.connect({str(settings.warehouse_path)!r})
        load_event_day(KillAfter(con, "/raw_events/day="), Path({str(settings.raw_dir)!r}),
                       dt.date.fromisoformat({TINY_END.isoformat()!r}), Path({str(day_file)!r}),
                       lake_dir=Path({str(settings.lake_dir)!r}))
        sys.exit(3)
        """,
        tmp_path,
    )
    assert rc == -signal.SIGKILL
    assert warehouse_checksums(settings.warehouse_path) == before
    assert raw_stamps == lake.read_stamps(settings.lake_dir, "raw_events")
    _accounting_holds(settings.warehouse_path)


@pytest.mark.timeout(300)
def test_kill_inside_cleaning_transaction_leaves_day_unchanged(landed_week, tmp_path):
    settings = landed_week
    before = warehouse_checksums(settings.warehouse_path)
    stamps = {
        d: lake.read_stamps(settings.lake_dir, d) for d in ("clean_events", "quarantined_events")
    }
    rc = _run_child(
        f"""
        from launch_pipeline.cleaning import clean_partitions
        con = duckdb.connect({str(settings.warehouse_path)!r})
        day = dt.date.fromisoformat({TINY_END.isoformat()!r})
        # dies after writing both new files of the day, before they replace the old ones
        clean_partitions(KillAfter(con, "/quarantined_events/day="), day, day,
                         lake_dir=Path({str(settings.lake_dir)!r}))
        sys.exit(3)
        """,
        tmp_path,
    )
    assert rc == -signal.SIGKILL
    after = warehouse_checksums(settings.warehouse_path)
    assert after == before
    # the old files are still the committed ones (same versions); the new ones were left as
    # temporary files that no reader matches
    assert stamps == {d: lake.read_stamps(settings.lake_dir, d) for d in stamps}
    assert list(settings.lake_dir.rglob("*.tmp"))
    _accounting_holds(settings.warehouse_path)


@pytest.mark.timeout(300)
def test_kill_while_writing_model_files_leaves_registry_intact(tmp_path):
    models = tmp_path / "models"
    registry = LocalModelStore(models)

    def write_ok(folder: Path) -> None:
        (folder / "model.keras").write_bytes(b"complete model v1")

    v1 = registry.register(write_ok, {"metrics": {"ndcg@10": 0.1}})
    registry.promote(v1.version)
    reg_before = (registry.root / REGISTRY_FILE).read_bytes()

    # 1) killed half-way through LocalModelStore.register: a temporary folder, nothing registered
    rc = _run_child(
        f"""
        from launch_pipeline.model_store import LocalModelStore
        def half(folder):
            with open(folder / "model.keras", "wb") as fh:
                fh.write(b"half a mod")
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        LocalModelStore(Path({str(models)!r})).register(half, {{}})
        """,
        tmp_path,
    )
    assert rc == -signal.SIGKILL
    assert (registry.root / REGISTRY_FILE).read_bytes() == reg_before
    assert not (registry.root / "v0002").exists()
    assert list(registry.root.glob(".v0002-*")), "the temporary folder is where the crash was"
    assert registry.champion().version == v1.version
    assert registry.champion().model_path.read_bytes() == b"complete model v1"

    # 2) killed half-way through save_model over an existing file: the old file is intact
    target = v1.model_path
    rc = _run_child(
        f"""
        from launch_pipeline.model.training import save_model
        class HalfModel:
            def save(self, path):
                with open(path, "wb") as fh:
                    fh.write(b"half")
                    fh.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
        save_model(HalfModel(), Path({str(target)!r}))
        """,
        tmp_path,
    )
    assert rc == -signal.SIGKILL
    assert target.read_bytes() == b"complete model v1"

    # the next registration cleans the leftovers and takes the next free number
    assert registry.clean_stale_temporaries() >= 1
    v2 = registry.register(write_ok, {})
    assert v2.version == 2
    _registry_consistent(models)
