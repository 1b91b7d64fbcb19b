"""Start the real ``dagster dev -w workspace.yaml`` (webserver + daemon + code server) for one data
directory and a throw-away ``DAGSTER_HOME``, bound to 127.0.0.1 on a free port, and always tear
down its whole process group.

    with DagsterDev(data_dir, home) as dev:
        gql = dev.graphql()
        run_id = gql.launch_job("launch_pipeline_job", tags={"dagster/partition": "2026-11-20"})
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from launch_pipeline_tests.support.graphql import DagsterGraphQL

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKSPACE = REPO_ROOT / "workspace.yaml"
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def kill_process_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session=True``), wait up
    to ``grace_s``, then SIGKILL whatever is left of the group."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    # killed processes disappear once reaped: wait for the group to be empty
    t_end = time.monotonic() + 20
    while pgid is not None and process_group_alive(pgid) and time.monotonic() < t_end:
        time.sleep(0.2)


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DagsterDev:
    """``dagster dev`` for one data directory. ``home`` gets the instance ``dagster.yaml`` of
    :func:`launch_pipeline.runner.prepare_instance` unless it already has one."""

    def __init__(
        self,
        data_dir: Path,
        home: Path,
        *,
        workspace: Path = DEFAULT_WORKSPACE,
        port: int | None = None,
        env: dict | None = None,
        model_time_budget_s: float | None = None,
        log_path: Path | None = None,
        ready_timeout_s: float = 180.0,
    ):
        self.data_dir = Path(data_dir)
        self.home = Path(home)
        self.workspace = Path(workspace)
        self.port = port or free_port()
        self.extra_env = dict(env or {})
        self.model_time_budget_s = model_time_budget_s
        self.log_path = Path(log_path) if log_path else self.home / "dagster_dev.log"
        self.ready_timeout_s = ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self.pgid: int | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def graphql(self, timeout: float = 60.0) -> DagsterGraphQL:
        return DagsterGraphQL(HOST, self.port, timeout=timeout)

    def env(self) -> dict:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "LAUNCH_PIPELINE_DATA_DIR": str(self.data_dir),
            "GX_ANALYTICS_ENABLED": "false",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TQDM_DISABLE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("LAUNCH_PIPELINE_RAW_DIR", None)
        if self.model_time_budget_s is not None:
            env["LAUNCH_PIPELINE_MODEL_TIME_BUDGET_S"] = str(self.model_time_budget_s)
        env.update(self.extra_env)
        return env

    def start(self) -> DagsterDev:
        from launch_pipeline.runner import write_instance_yaml

        self.home.mkdir(parents=True, exist_ok=True)
        write_instance_yaml(self.home)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            str(self.workspace),
            "-h",
            HOST,
            "-p",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=str(self.workspace.parent),
            env=self.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pgid = os.getpgid(self.proc.pid)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        gql = self.graphql(timeout=10)
        t_end = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if gql.is_up():
                remaining = max(5.0, t_end - time.monotonic())
                gql.wait_until_loaded(deadline_s=remaining)
                return
            time.sleep(1.0)
        raise TimeoutError(
            f"dagster dev not ready after {self.ready_timeout_s}s:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            kill_process_group(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
