"""Partition files: every daily partition of a dataset in its own Parquet file (no Dagster here).

Layout (Hive-style, readable by DuckDB, Spark, Polars, pandas and any object store)::

    <lake_dir>/<dataset>/day=YYYY-MM-DD/part-0.parquet
    <lake_dir>/<dataset>/day=YYYY-MM-DD/_stamp.json      # rows, written_at, version

Two partition runs never write the same file, so partition writers can run side by side
without sharing a DuckDB file or a lock. A partition is written to a temporary file in its own
folder and renamed over the old one (``os.replace`` is atomic on one file system): a reader or
a crash sees the old file or the new one, never half of one. The stamp is written after the data
file; ``version`` changes on every write, so an incremental reader can tell which days changed
since it last looked without reading the data."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from launch_pipeline.warehouse import validate_identifier

DATA_FILE = "part-0.parquet"
STAMP_FILE = "_stamp.json"
_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class PartitionStamp:
    """What was written for one day of one dataset."""

    dataset: str
    day: dt.date
    rows: int
    written_at: str  # UTC, ISO 8601
    version: str  # a fresh id per write

    def to_json(self) -> str:
        data = asdict(self)
        data["day"] = self.day.isoformat()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PartitionStamp:
        data = json.loads(text)
        return cls(
            dataset=data["dataset"],
            day=dt.date.fromisoformat(data["day"]),
            rows=int(data["rows"]),
            written_at=data["written_at"],
            version=data["version"],
        )


def partition_dir(lake_dir: Path, dataset: str, day: dt.date) -> Path:
    validate_identifier(dataset, "dataset name")
    return Path(lake_dir) / dataset / f"day={day.isoformat()}"


def _write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_partition(
    con: duckdb.DuckDBPyConnection,
    query: str,
    lake_dir: Path,
    dataset: str,
    day: dt.date,
    params: Sequence | None = None,
) -> PartitionStamp:
    """Write the rows of ``query`` (SQL written in code; values in ``params``) as the partition
    ``day`` of ``dataset``, replacing what was there, atomically. ``con`` may be any DuckDB
    connection (an in-memory one is enough: nothing is written to a database file)."""
    folder = partition_dir(lake_dir, dataset, day)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".part-{uuid.uuid4().hex}.parquet.tmp"
    target = folder / DATA_FILE
    try:
        con.execute(
            f"COPY ({query}) TO '{_sql_path(tmp)}' (FORMAT parquet, COMPRESSION zstd)",
            list(params or ()),
        )
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{_sql_path(tmp)}')").fetchone()[0]
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    stamp = PartitionStamp(
        dataset=dataset,
        day=day,
        rows=int(rows),
        written_at=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        version=uuid.uuid4().hex,
    )
    _write_text_atomically(folder / STAMP_FILE, stamp.to_json())
    return stamp


def remove_partition(lake_dir: Path, dataset: str, day: dt.date) -> bool:
    """Delete one day's files of ``dataset``; True if there was anything to delete."""
    folder = partition_dir(lake_dir, dataset, day)
    if not folder.exists():
        return False
    for name in (STAMP_FILE, DATA_FILE):  # the stamp first: a reader never trusts a lone file
        (folder / name).unlink(missing_ok=True)
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    folder.rmdir()
    return True


def read_stamps(lake_dir: Path, dataset: str) -> dict[dt.date, PartitionStamp]:
    """The stamps of every complete partition of ``dataset`` (data file and stamp present)."""
    root = Path(lake_dir) / validate_identifier(dataset, "dataset name")
    stamps: dict[dt.date, PartitionStamp] = {}
    if not root.is_dir():
        return stamps
    for folder in root.iterdir():
        match = _DAY_DIR.match(folder.name)
        if not match or not (folder / DATA_FILE).is_file() or not (folder / STAMP_FILE).is_file():
            continue
        stamp = PartitionStamp.from_json((folder / STAMP_FILE).read_text(encoding="utf-8"))
        stamps[stamp.day] = stamp
    return dict(sorted(stamps.items()))


def partition_files(
    lake_dir: Path, dataset: str, days: Sequence[dt.date] | None = None
) -> list[Path]:
    """The data files of the complete partitions of ``dataset`` (only ``days`` if given)."""
    stamps = read_stamps(lake_dir, dataset)
    wanted = stamps if days is None else [d for d in days if d in stamps]
    return [partition_dir(lake_dir, dataset, d) / DATA_FILE for d in wanted]


def dataset_relation_sql(files: Sequence[Path], empty_select: str) -> str:
    """SQL for a relation over ``files`` with the ``day`` column from the folder name, or
    ``empty_select`` (a ``SELECT ... WHERE false`` with the dataset's columns and a ``day``
    column) when there are none, since ``read_parquet`` of an empty list is an error."""
    if not files:
        return empty_select
    listed = ", ".join(f"'{_sql_path(f)}'" for f in files)
    return f"SELECT * FROM read_parquet([{listed}], hive_partitioning = true, union_by_name = true)"


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
