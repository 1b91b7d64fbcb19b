"""A throw-away local PostgreSQL server (Debian's ``postgresql`` package) for tests and trials.

    with LocalPostgres() as pg:
        os.environ.update(pg.env())          # DAGSTER_PG_* for deploy/dagster.postgres.yaml
        ...

The cluster lives in a fresh temporary folder, listens on 127.0.0.1 on a free port (and a private
Unix socket folder), trusts local connections, and is stopped and deleted on exit. As root (CI),
the server runs as the ``postgres`` system user (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from launch_pipeline_tests.support.devserver import free_port

DB_NAME = "dagster"
USER = "postgres"


def find_pg_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl`` (PATH first, then /usr/lib/postgresql/*/bin)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class LocalPostgres:
    def __init__(self, db_name: str = DB_NAME, port: int | None = None):
        self.db_name = db_name
        self.port = port or free_port()
        self.bin = find_pg_bin()
        self.root: Path | None = None
        self._as_postgres = hasattr(os, "geteuid") and os.geteuid() == 0

    # ------------------------------------------------------------------ helpers
    def _cmd(self, *args: str) -> list[str]:
        if self._as_postgres:
            return ["runuser", "-u", USER, "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}"
            )
        return proc

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalPostgres:
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        # directly under the system temp folder: the postgres user must be able to reach it
        self.root = Path(tempfile.mkdtemp(prefix="lp-pg-"))
        self.socket_dir.mkdir()
        if self._as_postgres:
            shutil.chown(self.root, USER)
            shutil.chown(self.socket_dir, USER)
        try:
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            )
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            self._run(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                opts,
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                "60",
                "start",
            )
            self._create_database()
        except BaseException:
            self.stop()
            raise
        return self

    def _create_database(self) -> None:
        import psycopg2

        t_end = time.monotonic() + 30
        while True:
            try:
                con = psycopg2.connect(
                    host="127.0.0.1", port=self.port, user=USER, dbname="postgres"
                )
                break
            except psycopg2.OperationalError:
                if time.monotonic() > t_end:
                    raise
                time.sleep(0.5)
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            con.close()

    def connect(self):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, dbname=self.db_name)

    def env(self) -> dict[str, str]:
        """The variables ``deploy/dagster.postgres.yaml`` reads."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": USER,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": self.db_name,
        }

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run(
                    str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"
                )
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: kill the postmaster
            with contextlib.suppress(Exception):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
