"""Run the whole pipeline in-process against a persistent Dagster instance (``make run``).

The run is recorded in ``data/dagster_home``, so ``make ui`` shows it afterwards."""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from launch_pipeline.raw_io import event_day_files, partition_range, skipped_event_files
from launch_pipeline.settings import Settings

INSTANCE_YAML = """\
# Dagster instance for launch_pipeline (written by `launch-pipeline prepare-instance`).
# Storage: SQLite files in this folder. For PostgreSQL see deploy/dagster.postgres.yaml.
telemetry:
  enabled: false
concurrency:
  # DuckDB allows one writer per database file: every warehouse-touching step is in the pool
  # "duckdb_warehouse", and pools default to one step at a time across all runs ("op"
  # granularity: a step waits for a free slot, other steps of the run go on). The run queue
  # starts a run that needs the pool only when a slot is free, so runs that touch the warehouse
  # start one after another; raising `op_granularity_run_buffer` lets more start and wait
  # (measured slower on 2 cores, see docs/operations.md).
  pools:
    default_limit: 1
    granularity: op
  # The run queue (QueuedRunCoordinator, used by `dagster dev` and the daemon): at most 4 runs
  # at once (a 30-day backfill queues its runs), at most 1 nightly-schedule run at a time.
  runs:
    max_concurrent_runs: 4
    tag_concurrency_limits:
      - key: dagster/schedule_name
        value: nightly_launch_plan
        limit: 1
# Run monitoring (daemon): a run whose worker died is marked failed, and the pool slots of an
# ended run are given back after a minute, so a killed run never blocks the pool for good.
# (`launch-pipeline run` has no daemon; it does the same for its own dead runs before starting.)
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 60
"""

# tags on runs started by `launch-pipeline run`, so a later run can tell a dead one
RUN_HOST_TAG = "launch_pipeline/host"
RUN_PID_TAG = "launch_pipeline/pid"


def write_instance_yaml(home: Path) -> Path:
    """Write ``home/dagster.yaml`` (pools and run queue) unless the folder already has one."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(INSTANCE_YAML)
    return cfg


def prepare_instance(settings: Settings) -> Path:
    """Create ``DAGSTER_HOME`` under the data directory (with ``dagster.yaml``) and point the
    environment at it unless ``DAGSTER_HOME`` is already set. Returns the home used."""
    from launch_pipeline.paths import check_folder_for_writing

    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    check_folder_for_writing(home, "DAGSTER_HOME", globs_matter=True)
    write_instance_yaml(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def recover_abandoned_runs(instance) -> list[str]:
    """Make the pool usable again after a run was killed (SIGKILL, OOM, power cut).

    A run started by ``launch-pipeline run`` on this host whose process no longer exists is still
    "STARTED" in the instance and still holds its ``duckdb_warehouse`` pool slot, so every later
    run would wait for that slot forever. Such runs are marked failed (with a message saying
    why) and the slots of every ended run are freed. Returns the ids of the runs marked failed.
    """
    import dagster as dg

    in_progress = [
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    abandoned = []
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=in_progress, tags={RUN_HOST_TAG: socket.gethostname()})
    )
    for run in runs:
        pid = run.tags.get(RUN_PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            instance.report_run_failed(
                run,
                message=f"launch-pipeline: the process of this run (pid {pid}) is gone "
                "(killed or crashed); marked failed so its pool slots are freed.",
            )
            abandoned.append(run.run_id)
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        for run_id in storage.get_concurrency_run_ids():
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
    return abandoned


@contextmanager
def output_to(path: Path) -> Iterator[int]:
    """Send everything written to stdout and stderr (file descriptors 1 and 2: Python, Dagster's
    console log, TensorFlow's C++ messages) to ``path`` (appended); yields a descriptor of the
    real terminal for progress lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.dup(1)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            for fd in (saved_out, saved_err, terminal):
                os.close(fd)


class StepWatcher(threading.Thread):
    """Polls the instance's event log of one run and reports each finished step once:
    ``write(line)`` with the step, whether it succeeded, and its duration."""

    def __init__(self, instance, run_id: str, write: Callable[[str], None], every_s: float = 1.0):
        super().__init__(daemon=True)
        self.instance, self.run_id, self.write, self.every_s = instance, run_id, write, every_s
        self._stop_event = threading.Event()
        self._seen: set[tuple[str, str]] = set()
        self._t0 = time.monotonic()

    def poll(self) -> None:
        import dagster as dg

        kinds = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
        try:
            records = self.instance.all_logs(self.run_id, of_type=kinds)
        except Exception:  # the run is not stored yet
            return
        for rec in records:
            ev = rec.dagster_event
            if ev is None or (ev.step_key, ev.event_type_value) in self._seen:
                continue
            key = (ev.step_key, ev.event_type_value)
            self._seen.add(key)
            ok = ev.event_type_value == "STEP_SUCCESS"
            ms = getattr(ev.event_specific_data, "duration_ms", None)
            took = f" in {ms / 1000:.1f}s" if ok and ms is not None else ""
            self.write(
                f"  [{time.monotonic() - self._t0:5.0f}s] {ev.step_key}: "
                f"{'done' if ok else 'FAILED'}{took}\n"
            )

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll()
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)
        self.poll()


@dataclass
class RunOutcome:
    success: bool
    run_id: str
    partitions: tuple[str, str] | None
    failures: list[str]
    recovered_runs: list[str] = field(default_factory=list)  # dead runs marked failed first
    skipped_files: list[str] = field(default_factory=list)  # files in events/ not read, why
    warnings: list[str] = field(default_factory=list)  # the steps' warnings, "step: message"
    root_cause: str | None = None
    """One line: the root cause of the first failed step (file, problem, what to do)."""


_OWN_ERRORS = {
    "Failure",
    "InputFileError",
    "ConfigurationError",
    "AccountingError",
    "NotEnoughDataError",
}


def root_cause(error) -> str:
    """The cause of a Dagster step error (a ``SerializableErrorInfo``) as one line: the first of
    our own errors or ``dagster.Failure`` in its chain, as its message (file, problem, what to
    do); else the exception the step's code raised, as ``Class: message``."""
    chain = []
    while error is not None:
        chain.append(error)
        error = getattr(error, "cause", None)
    own = [e for e in chain if getattr(e, "cls_name", None) in _OWN_ERRORS]
    user = [e for e in chain if not str(getattr(e, "cls_name", "") or "").startswith("Dagster")]
    error = (own or user or chain)[0]
    cls = getattr(error, "cls_name", None) or ""
    message = (getattr(error, "message", None) or str(error)).strip()
    head, sep, rest = message.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == cls:
        message = rest.strip()
    message = " ".join(message.split())  # one line
    if cls in _OWN_ERRORS:
        return message
    return f"{cls}: {message}" if cls else message


def available_partition_range(settings: Settings, partitions_def) -> tuple[str, str] | None:
    """First and last partition key that has an events file."""
    keys = set(partitions_def.get_partition_keys())
    days = sorted(d.isoformat() for d in event_day_files(settings.raw_dir) if d.isoformat() in keys)
    return (days[0], days[-1]) if days else None


def run_pipeline(
    settings: Settings,
    first_day: dt.date | None = None,
    last_day: dt.date | None = None,
    instance=None,
    log_file: Path | None = None,
) -> RunOutcome:
    """Materialize every asset: the partitions ``first_day..last_day`` (default: all partitions
    with an events file) of raw and clean events in one run, then everything downstream.

    ``log_file``: everything the run prints (Dagster's log, library output) goes there instead
    of the terminal, which shows one line per finished step (:class:`StepWatcher`)."""
    import dagster as dg

    from launch_pipeline.definitions import build_definitions
    from launch_pipeline.defs.jobs import LAUNCH_JOB_NAME

    if instance is None:
        prepare_instance(settings)
        instance = dg.DagsterInstance.get()
    defs = build_definitions(settings)
    job = defs.resolve_job_def(LAUNCH_JOB_NAME)
    span = available_partition_range(settings, job.partitions_def)
    if first_day or last_day:
        span = (
            (first_day or dt.date.fromisoformat(span[0])).isoformat(),
            (last_day or dt.date.fromisoformat(span[1])).isoformat(),
        )
    if span is None:
        return RunOutcome(False, "", None, [f"no event files in {settings.raw_dir / 'events'}"])
    skipped = [
        f.line() for f in skipped_event_files(settings.raw_dir, *partition_range(settings.raw_dir))
    ]
    recovered = recover_abandoned_runs(instance)
    tags = {
        "dagster/asset_partition_range_start": span[0],
        "dagster/asset_partition_range_end": span[1],
        RUN_HOST_TAG: socket.gethostname(),
        RUN_PID_TAG: str(os.getpid()),
    }
    if log_file is None:
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    else:
        run_id = str(uuid.uuid4())
        with output_to(log_file) as terminal:
            watcher = StepWatcher(instance, run_id, lambda line: os.write(terminal, line.encode()))
            watcher.start()
            try:
                result = job.execute_in_process(
                    instance=instance, tags=tags, raise_on_error=False, run_id=run_id
                )
            finally:
                watcher.stop()
    failures = []
    first_cause = None
    for event in result.all_events:
        if event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE"):
            data = event.event_specific_data
            err = getattr(data, "error", None)
            msg = root_cause(err) if err is not None else (event.message or "")
            failures.append(f"{event.step_key or 'run'}: {msg}")
            if first_cause is None and event.step_key:
                first_cause = f"step {event.step_key} failed: {msg}"
    for eval_ in result.get_asset_check_evaluations():
        if not eval_.passed:
            failures.append(f"check {eval_.check_name} failed: {dict(eval_.metadata)}")
            if first_cause is None:
                first_cause = (
                    f"blocking check {eval_.check_name} on {eval_.asset_key.to_user_string()} "
                    "failed: its metadata (in the run log or the UI) lists the failing rows"
                )
    return RunOutcome(
        result.success,
        result.run_id,
        span,
        failures,
        recovered,
        skipped_files=skipped,
        root_cause=first_cause or (failures[0] if failures else None),
        warnings=step_warnings(instance, result.run_id),
    )


def step_warnings(instance, run_id: str) -> list[str]:
    """The warnings the steps logged (degenerate inputs, uncategorised products, ...), once
    each, without the files-not-read lines (listed on their own)."""
    import logging

    out: list[str] = []
    for entry in instance.all_logs(run_id):
        if entry.dagster_event is not None or entry.level != logging.WARNING:
            continue
        message = " ".join(str(entry.user_message or "").split())
        line = f"{entry.step_key or 'run'}: {message}"
        if message and not message.startswith("not read:") and line not in out:
            out.append(line)
    return out


@dataclass
class PlanOutcome:
    success: bool
    run_id: str
    failures: list[str]
    seconds: float


def plan_scenario(settings: Settings, instance=None) -> PlanOutcome:
    """Re-plan one scenario (``settings.planning``) from the stored preferences and demand
    history, without retraining: a Dagster run of ``launch_plan`` alone, tagged with the
    scenario and its settings, recorded in the instance (``make ui`` shows it)."""
    import time

    import dagster as dg

    from launch_pipeline.defs.planning import launch_plan
    from launch_pipeline.defs.resources import build_resources
    from launch_pipeline.launch_planner import scenario_tags

    t0 = time.perf_counter()
    if instance is None:
        prepare_instance(settings)
        instance = dg.DagsterInstance.get()
    recover_abandoned_runs(instance)
    tags = {
        **scenario_tags(settings.planning),
        RUN_HOST_TAG: socket.gethostname(),
        RUN_PID_TAG: str(os.getpid()),
    }
    result = dg.materialize(
        [launch_plan],
        resources=build_resources(settings),
        instance=instance,
        tags=tags,
        raise_on_error=False,
        # the terminal shows the plan; the run's full log is in the instance (`make ui`)
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    failures = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            err = getattr(event.event_specific_data, "error", None)
            failures.append(root_cause(err) if err is not None else (event.message or ""))
    return PlanOutcome(result.success, result.run_id, failures, time.perf_counter() - t0)


def step_seconds(instance, run_id: str) -> dict:
    """Seconds per step of a finished run, from its event log."""
    import dagster as dg

    starts, out = {}, {}
    for rec in instance.all_logs(run_id):
        ev = rec.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type == dg.DagsterEventType.STEP_START:
            starts[ev.step_key] = rec.timestamp
        elif ev.step_key in starts and ev.event_type in (
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        ):
            out[ev.step_key] = round(rec.timestamp - starts[ev.step_key], 2)
    return out
