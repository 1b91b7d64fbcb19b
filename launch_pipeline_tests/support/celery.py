"""A real Celery deployment on loopback for tests: a throw-away ``redis-server`` (Debian's package)
as the broker and result backend, ``dagster-celery worker start`` worker processes, and a run of
``launch_pipeline_job`` launched from a separate orchestrator process.

    with LocalRedis() as redis, CeleryWorkers(redis.url(0), env, count=2, log_dir=tmp) as workers:
        code = run_job_in_subprocess(env, run_config, tags, assets, log_path)

Every process is started in its own session and stopped by process group (SIGTERM, then SIGKILL
after a timeout), so nothing outlives the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launch_pipeline_tests.support.devserver import (
    HOST,
    REPO_ROOT,
    free_port,
    kill_process_group,
)

VENV_BIN = Path(sys.executable).parent


def celery_missing() -> str | None:
    """Why a Celery test cannot run here (one line), or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server; .ci/run does)"
    try:
        import dagster_celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        return f"dagster-celery with redis is not installed ({exc}): pip install -e '.[dev]'"
    if not (VENV_BIN / "dagster-celery").exists() and shutil.which("dagster-celery") is None:
        return "the dagster-celery command is not on PATH"
    return None


def _wait_for(predicate, what: str, deadline_s: float, proc: subprocess.Popen, log: Path) -> None:
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        if predicate():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {deadline_s:.0f}s: {log.read_text()[-2000:]}")


class LocalRedis:
    """``redis-server`` on 127.0.0.1 on a free port, no persistence, in a temporary folder."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def start(self) -> LocalRedis:
        self.root = Path(tempfile.mkdtemp(prefix="lp-redis-"))
        log = self.root / "redis.log"
        args = [
            "redis-server",
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.root),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--logfile", str(log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL)
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=1)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.exceptions.ConnectionError:
                return False

        log.touch()
        _wait_for(pong, "redis-server", 20, self.proc, log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            kill_process_group(self.proc, grace_s=10)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


class CeleryWorkers:
    """``count`` workers started with ``dagster-celery worker start -A dagster_celery.app``, each
    one task at a time (``--concurrency 1``), importing the code location at start (``-i``)."""

    def __init__(self, broker: str, backend: str, env: dict, *, count: int, log_dir: Path):
        self.broker = broker
        self.backend = backend
        self.env = dict(env)
        self.count = count
        self.log_dir = Path(log_dir)
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, ready_timeout_s: float = 120) -> CeleryWorkers:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.log_dir / "celery_worker.yaml"
        exec_cfg = {"broker": self.broker, "backend": self.backend}
        cfg.write_text(json.dumps({"execution": {"config": exec_cfg}}))  # JSON is YAML
        env = {**self.env, "PATH": f"{VENV_BIN}{os.pathsep}{self.env.get('PATH', '')}"}
        # the SQLite storages of DAGSTER_HOME are created once here: two workers starting at once
        # would both create them and collide ("table secondary_indexes already exists")
        import dagster as dg

        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            instance.get_runs(limit=1)
            instance.event_log_storage.get_concurrency_info("duckdb_warehouse")
        for i in range(self.count):
            log = self.log_dir / f"worker{i + 1}.log"
            args = [
                str(VENV_BIN / "dagster-celery"), "worker", "start",
                "-A", "dagster_celery.app",
                "-y", str(cfg),
                "-n", f"lp-worker{i + 1}",
                "-i", "launch_pipeline.definitions",
                "--", "--concurrency", "1", "--without-heartbeat", "--without-gossip",
                "--without-mingle",
            ]  # fmt: skip
            with log.open("w") as fh:
                proc = subprocess.Popen(
                    args,
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.procs.append(proc)
            self.logs.append(log)
        for proc, log in zip(self.procs, self.logs, strict=True):
            _wait_for(
                lambda log=log: " ready." in log.read_text(), "celery worker", ready_timeout_s,
                proc, log,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        for proc in self.procs:
            kill_process_group(proc, grace_s=15)

    def __enter__(self) -> CeleryWorkers:
        try:
            return self.start()
        except BaseException:  # a worker that failed to start: stop those already running
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


ORCHESTRATOR = """
import json, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
args = json.loads(sys.argv[1])
recon = ReconstructableRepository.for_module("launch_pipeline.definitions", "defs")
job = recon.get_reconstructable_job(args["job"])
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(
        job, instance, run_config=args["run_config"], tags=args["tags"],
        asset_selection=[dg.AssetKey(a) for a in args["assets"]],
    )
    print("RUN_ID", result.run_id, "SUCCESS", result.success, flush=True)
sys.exit(0 if result.success else 1)
"""


def run_job_in_subprocess(
    env: dict,
    job: str,
    run_config: dict,
    tags: dict,
    assets: list[str],
    log: Path,
    timeout_s: float,
) -> tuple[int, str | None]:
    """Launch one run of ``job`` from the code location module (a reconstructable job, as a run
    worker of ``dagster dev`` would) in its own process. Returns (exit code, run id)."""
    payload = json.dumps({"job": job, "run_config": run_config, "tags": tags, "assets": assets})
    with Path(log).open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", ORCHESTRATOR, payload],
            cwd=REPO_ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = -1
    finally:
        kill_process_group(proc, grace_s=5)
    run_id = None
    for line in Path(log).read_text().splitlines():
        if line.startswith("RUN_ID "):
            run_id = line.split()[1]
    return code, run_id
