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


def _copy_to_temp(
    con: duckdb.DuckDBPyConnection, query: str, folder: Path, params: Sequence | None = None
) -> Path:
    """The rows of ``query`` in a fresh temporary Parquet file in ``folder`` (created if
    needed); the file is removed again when the COPY fails."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".part-{uuid.uuid4().hex}.parquet.tmp"
    try:
        con.execute(
            f"COPY ({query}) TO '{_sql_path(tmp)}' "
            "(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)",
            list(params or ()),
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _replace_file(con: duckdb.DuckDBPyConnection, query: str, target: Path) -> None:
    """Replace ``target`` by the rows of ``query``, atomically (temporary file + rename)."""
    tmp = _copy_to_temp(con, query, target.parent)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class StagedPartition:
    """A partition written to a temporary file in its folder, not yet visible to readers:
    :func:`commit_partitions` renames it over the old file, :func:`discard_partitions` drops it.
    Checks that must hold before the new rows become visible (row accounting) read ``tmp``."""

    dataset: str
    day: dt.date
    tmp: Path
    rows: int

    @property
    def sql_path(self) -> str:
        return _sql_path(self.tmp)


def stage_partition(
    con: duckdb.DuckDBPyConnection,
    query: str,
    lake_dir: Path,
    dataset: str,
    day: dt.date,
    params: Sequence | None = None,
) -> StagedPartition:
    """Write the rows of ``query`` (SQL written in code; values in ``params``) to a temporary
    file in the folder of partition ``day`` of ``dataset`` (see :class:`StagedPartition`)."""
    tmp = _copy_to_temp(con, query, partition_dir(lake_dir, dataset, day), params)
    try:
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{_sql_path(tmp)}')").fetchone()[0]
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return StagedPartition(dataset=dataset, day=day, tmp=tmp, rows=int(rows))


def commit_partitions(staged: Sequence[StagedPartition], lake_dir: Path) -> list[PartitionStamp]:
    """Make staged partitions visible: each file renamed over the old one (atomic per file),
    then its stamp. Several partitions are committed one after another, in the given order."""
    stamps = []
    for part in staged:
        folder = partition_dir(lake_dir, part.dataset, part.day)
        os.replace(part.tmp, folder / DATA_FILE)
        stamp = PartitionStamp(
            dataset=part.dataset,
            day=part.day,
            rows=part.rows,
            written_at=dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            version=uuid.uuid4().hex,
        )
        _write_text_atomically(folder / STAMP_FILE, stamp.to_json())
        stamps.append(stamp)
    return stamps


def discard_partitions(staged: Sequence[StagedPartition]) -> None:
    for part in staged:
        part.tmp.unlink(missing_ok=True)


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
    staged = stage_partition(con, query, lake_dir, dataset, day, params)
    try:
        return commit_partitions([staged], lake_dir)[0]
    finally:
        discard_partitions([staged])


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


# --------------------------------------------------------------------------------------------
# whole (unpartitioned) tables and the views that downstream SQL reads
# --------------------------------------------------------------------------------------------
SCHEMA_DIR = "_schema"
"""Every dataset read through :func:`dataset_glob_sql` keeps an empty file with its columns in
``<lake>/<dataset>/_schema/part-0.parquet``, so the glob always matches at least one file (DuckDB
refuses a glob without a match) and a view over a dataset without partitions has its columns."""


def table_file(lake_dir: Path, name: str) -> Path:
    """The file of an unpartitioned table ``name`` (e.g. the catalog snapshot cleaning reads)."""
    return Path(lake_dir) / validate_identifier(name, "table name") / DATA_FILE


def write_table(con: duckdb.DuckDBPyConnection, query: str, lake_dir: Path, name: str) -> Path:
    """Write the rows of ``query`` as the unpartitioned table ``name``, replacing the old file
    atomically (a reader sees the old rows or the new ones)."""
    target = table_file(lake_dir, name)
    _replace_file(con, query, target)
    return target


def ensure_schema_file(
    con: duckdb.DuckDBPyConnection, lake_dir: Path, dataset: str, empty_select: str
) -> Path:
    """Write ``<lake>/<dataset>/_schema/part-0.parquet`` (the rows of ``empty_select``: none)
    unless it is there."""
    target = Path(lake_dir) / validate_identifier(dataset, "dataset name") / SCHEMA_DIR / DATA_FILE
    if not target.is_file():
        _replace_file(con, empty_select, target)
    return target


def dataset_glob_sql(lake_dir: Path, dataset: str) -> str:
    """SQL for every partition of ``dataset`` as it is on disk when the query runs (a glob, so a
    view over it never needs refreshing: a partition written later is read, one being written
    is not, since its temporary file does not match). Needs :func:`ensure_schema_file` once.
    The columns are those of the files (no ``day`` column from the folder name)."""
    pattern = Path(lake_dir) / validate_identifier(dataset, "dataset name") / "*" / DATA_FILE
    return (
        f"SELECT * FROM read_parquet('{_sql_path(pattern)}', hive_partitioning = false, "
        "union_by_name = false)"
    )


def replace_view(con: duckdb.DuckDBPyConnection, name: str, select_sql: str) -> None:
    """``CREATE OR REPLACE VIEW name AS select_sql``; a table of that name (a warehouse from
    before the partition files) is dropped first: its rows now live in the lake."""
    validate_identifier(name, "view name")
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables "
        "WHERE table_name = ? AND table_schema = current_schema()",
        [name],
    ).fetchall()
    if kind and kind[0][0] != "VIEW":
        con.execute(f"DROP TABLE {name}")
    con.execute(f"CREATE OR REPLACE VIEW {name} AS {select_sql}")
