"""Reading a raw data directory (see ``contract.py``): catalog files, and the event day files
landed as daily partitions (:func:`load_event_day`).

A Parquet day file is read where it lies; a CSV day file is landed once in the lake, as text,
one row per input record. Every record keeps the file and its 0-based index in it
(``source_file``, ``source_row``). Records that cannot even be split into fields (wrong field
count, invalid UTF-8, over-long lines) are kept too, with the reader's error in ``parse_error``
and the original line in ``raw_line``: the cleaning step quarantines them with a reason, so
nothing that was delivered silently disappears.

File-level problems (missing file, unreadable or truncated file, missing required columns) raise
:class:`~launch_pipeline.errors.InputFileError` naming the file and what to do.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from launch_pipeline import lake
from launch_pipeline.contract import (
    CANDIDATE_OPTIONAL_COLUMNS,
    EVENT_COLUMNS,
    EVENT_REQUIRED_COLUMNS,
    EVENTS_DIRNAME,
    MANIFEST_NAME,
    PRODUCT_OPTIONAL_COLUMNS,
    PRODUCT_REQUIRED_COLUMNS,
    PRODUCTS_STEM,
    SUPPORTED_SUFFIXES,
)
from launch_pipeline.errors import AccountingError, ConfigurationError, InputFileError
from launch_pipeline.warehouse import quote_identifier

DAY_FILE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(csv|parquet)$", re.IGNORECASE)
"""A day file's name; the extension in any case (``2026-11-01.CSV`` is a CSV day file)."""

MAX_LINE_BYTES = 1_048_576
"""A CSV record longer than this is quarantined as ``malformed_row`` (its first 10,000
characters are kept in ``raw_line``), not read."""
_HEAD_BYTES = 65_536
_BARE_CR = re.compile(rb"\r(?!\n)")
_PARQUET_MAGIC = b"PAR1"


# --------------------------------------------------------------------------------------------
# the data directory
# --------------------------------------------------------------------------------------------
def read_manifest(raw_dir: Path) -> dict:
    """``dataset.json`` as a dict ({} when absent); an :class:`InputFileError` naming the file
    when it is not a JSON object or its ``start_date``/``end_date`` are not dates."""
    path = Path(raw_dir) / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(
            path, f"is not valid JSON ({exc})", "fix or delete the file (it is optional)"
        ) from exc
    if not isinstance(manifest, dict):
        raise InputFileError(
            path,
            f"is a JSON {type(manifest).__name__}, not an object",
            'write an object such as {"start_date": "2026-11-01", "end_date": null}, or delete '
            "the file (it is optional)",
        )
    dates = {}
    for key in ("start_date", "end_date"):
        value = manifest.get(key)
        if value is None or value == "":
            continue
        try:
            dates[key] = dt.date.fromisoformat(str(value))
        except ValueError as exc:
            raise InputFileError(
                path,
                f"{key} {value!r} is not a date ({exc})",
                f"write {key} as YYYY-MM-DD (or null), or delete the file (it is optional)",
            ) from exc
    if len(dates) == 2 and dates["start_date"] > dates["end_date"]:
        raise InputFileError(
            path,
            f"start_date {dates['start_date']} is after end_date {dates['end_date']}",
            "swap or fix the dates",
        )
    return manifest


def _day_of(path: Path) -> dt.date | None:
    """The day a day file's name stands for (None when the name is not ``YYYY-MM-DD.ext``);
    an :class:`InputFileError` for a name that looks like a date but is not a calendar day."""
    m = DAY_FILE_RE.match(path.name)
    if not m:
        return None
    try:
        return dt.date.fromisoformat(m.group(1))
    except ValueError as exc:
        raise InputFileError(
            path,
            f"its name {m.group(1)} is not a calendar date ({exc})",
            "rename it to the UTC day of its events (YYYY-MM-DD), or move it out of the "
            "events folder",
        ) from exc


def event_day_files(raw_dir: Path) -> dict[dt.date, Path]:
    """Map day -> events file. Files whose names are not ``YYYY-MM-DD.csv|parquet`` are not
    read (listed with the reason by :func:`skipped_event_files`)."""
    events_dir = Path(raw_dir) / EVENTS_DIRNAME
    out: dict[dt.date, Path] = {}
    if not events_dir.is_dir():
        return out
    for path in sorted(events_dir.iterdir()):
        day = _day_of(path)
        if day is None:
            continue
        if day in out:
            raise InputFileError(
                path,
                f"two event files for {day} ({out[day].name} and {path.name})",
                "keep one file per day",
            )
        out[day] = path
    return out


def unrecognised_event_files(raw_dir: Path) -> list[Path]:
    events_dir = Path(raw_dir) / EVENTS_DIRNAME
    if not events_dir.is_dir():
        return []
    return [
        p for p in sorted(events_dir.iterdir()) if p.is_file() and not DAY_FILE_RE.match(p.name)
    ]


@dataclass(frozen=True)
class SkippedFile:
    """A file in the events folder that a run or a staging does not read, and why."""

    file: str
    reason: str
    records: int | None
    """Its records (Parquet rows, CSV lines after the header), None when it cannot be told."""

    def line(self) -> str:
        n = "" if self.records is None else f" ({self.records:,} records)"
        return f"{self.file}{n}: {self.reason}"


def count_records(path: Path) -> int | None:
    """Records of a day file without parsing it: Parquet rows from the footer, CSV lines after
    the header (a quoted field spanning lines counts once per line); None when unreadable."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(path).metadata.num_rows)
        lines = 0
        last = b"\n"
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        return max(lines + (0 if last == b"\n" else 1) - 1, 0)
    except Exception:  # noqa: BLE001 - a file we cannot count is reported without a count
        return None


def skipped_event_files(
    raw_dir: Path, start: dt.date | None = None, end: dt.date | None = None
) -> list[SkippedFile]:
    """Every file of the events folder that is not read, with the reason: names that are not
    ``YYYY-MM-DD.csv|parquet``, sub-folders, and day files outside ``start..end`` (the
    partition range)."""
    events_dir = Path(raw_dir) / EVENTS_DIRNAME
    if not events_dir.is_dir():
        return []
    out = []
    for path in sorted(events_dir.iterdir()):
        rel = f"{EVENTS_DIRNAME}/{path.name}"
        if path.is_dir():
            out.append(
                SkippedFile(rel + "/", "a folder (day files are read from events/ only)", None)
            )
            continue
        if not DAY_FILE_RE.match(path.name):
            out.append(
                SkippedFile(
                    rel, "name is not YYYY-MM-DD.csv or YYYY-MM-DD.parquet", count_records(path)
                )
            )
            continue
        day = _day_of(path)
        if (start is not None and day < start) or (end is not None and day > end):
            window = f"{start or '...'} .. {end or 'open end'}"
            out.append(
                SkippedFile(
                    rel,
                    f"day {day} is outside the partition range {window} (a mistyped date? "
                    "rename the file, or widen the range in dataset.json)",
                    count_records(path),
                )
            )
    return out


def partition_range(raw_dir: Path) -> tuple[dt.date | None, dt.date | None]:
    """(first day, last day or None for an open-ended "live" source) of the daily partitions."""
    manifest = read_manifest(raw_dir)
    files = event_day_files(raw_dir)
    start = manifest.get("start_date") or (min(files).isoformat() if files else None)
    end = manifest.get("end_date", max(files).isoformat() if files else None)
    return (
        dt.date.fromisoformat(str(start)) if start else None,
        dt.date.fromisoformat(str(end)) if end else None,
    )


def find_table_file(raw_dir: Path, stem: str) -> Path:
    hits = [Path(raw_dir) / f"{stem}{suffix}" for suffix in SUPPORTED_SUFFIXES]
    hits = [p for p in hits if p.exists()]
    if not hits:
        raise InputFileError(
            Path(raw_dir) / f"{stem}.parquet",
            f"missing: the raw data directory needs {stem}.parquet or {stem}.csv",
            f"put the file in {raw_dir}, or generate default data with "
            "`launch-pipeline generate --out DIR`",
        )
    if len(hits) > 1:
        raise InputFileError(hits[0], f"both {hits[0].name} and {hits[1].name} exist", "keep one")
    check_inside(hits[0], raw_dir)
    return hits[0]


def relation_for_file(con: duckdb.DuckDBPyConnection, path: Path, *, all_varchar: bool = True):
    """A DuckDB relation over a CSV or Parquet file, with file-level errors made readable."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes)", "deliver the file again with a header row")
    if path.suffix.lower() == ".csv":
        check_csv_bytes(path)
    try:
        if path.suffix.lower() == ".parquet":
            rel = con.read_parquet(str(path))
            if all_varchar:
                rel = rel.select(
                    ", ".join(f"CAST({_ident(c)} AS VARCHAR) AS {_ident(c)}" for c in rel.columns)
                )
        else:
            # the header read by us and every column text, without DuckDB's sniffer: a value
            # such as a quoted carriage return must not make the whole file unreadable
            header = read_csv_header(path)
            schema = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in header) + "}"
            rel = con.sql(
                f"SELECT * FROM read_csv({_sql_str(path)}, header=true, auto_detect=false, "
                f"columns={schema}, delim=',', quote='\"', escape='\"')"
            )
        rel.fetchall()  # small tables: a ragged row or a bad quote is found here
    except duckdb.Error as exc:
        raise InputFileError(
            path,
            f"cannot be read as {path.suffix[1:].upper()} ({str(exc).splitlines()[0]})",
            "check that the file is complete (not truncated) and in the format its name says",
        ) from exc
    return rel


def require_columns(path: Path, columns: Iterable[str], required: Iterable[str], expected) -> None:
    present = {c.strip().lower() for c in columns}
    missing = [c for c in required if c not in present]
    if missing:
        raise InputFileError(
            path,
            f"missing required columns {missing}; found {sorted(present)}",
            f"rename or add the columns: expected {list(expected)}",
        )


# --------------------------------------------------------------------------------------------
# products and candidates
# --------------------------------------------------------------------------------------------
def read_products(raw_dir: Path, stem: str = PRODUCTS_STEM) -> tuple[pd.DataFrame, Path]:
    """The product (or candidate) table as text columns, with its source path."""
    path = find_table_file(raw_dir, stem)
    optional = PRODUCT_OPTIONAL_COLUMNS if stem == PRODUCTS_STEM else CANDIDATE_OPTIONAL_COLUMNS
    con = duckdb.connect()
    try:
        if path.suffix.lower() == ".csv":
            # like a day file: a ragged row, a bare carriage return or invalid UTF-8 in one row
            # is that row's problem (quarantined as malformed_row), not the file's
            if path.stat().st_size == 0:
                raise InputFileError(
                    path, "is empty (0 bytes)", "deliver the file again with a header row"
                )
            cols = _stage_csv(
                con, path, PRODUCT_REQUIRED_COLUMNS, PRODUCT_REQUIRED_COLUMNS + optional
            )
            df = _in_file_order(con)
        else:
            rel = relation_for_file(con, path)
            cols = [c.strip().lower() for c in rel.columns]
            require_columns(
                path, cols, PRODUCT_REQUIRED_COLUMNS, PRODUCT_REQUIRED_COLUMNS + optional
            )
            df = rel.df()
            df.columns = cols
            df["parse_error"] = None
    finally:
        con.close()
    for col in PRODUCT_REQUIRED_COLUMNS + optional:
        if col not in df.columns:
            df[col] = None
    return df[[*PRODUCT_REQUIRED_COLUMNS, *optional, "parse_error"]], path


def _in_file_order(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The staged CSV records (``_day_accepted`` + ``_day_rejected``) in file order, every
    column text, ``parse_error`` set on the records the reader could not split."""
    names = [c for c in con.sql("SELECT * FROM _day_accepted").columns if c != "source_row"]
    nulls = ", ".join(f"NULL::VARCHAR AS {_ident(c.strip().lower())}" for c in names)
    select = ", ".join(f"{_ident(c)} AS {_ident(c.strip().lower())}" for c in names)
    return (
        con.execute(
            f"""
        SELECT {select}, NULL::VARCHAR AS parse_error, source_row FROM _day_accepted
        UNION ALL
        SELECT {nulls}, parse_error, source_row FROM _day_rejected
        ORDER BY source_row
        """
        )
        .df()
        .drop(columns=["source_row"])
    )


# --------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------
def _sql_str(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A column name from a delivered file, quoted for DuckDB (embedded quotes doubled)."""
    try:
        return quote_identifier(name)
    except ConfigurationError as exc:
        raise InputFileError("(column header)", str(exc), "rename the column") from exc


def check_inside(path: Path, root: Path) -> Path:
    """``path`` with symlinks resolved; an :class:`InputFileError` when it leaves ``root`` (a
    symlinked day file pointing at ``/etc/passwd`` is not read)."""
    real = Path(os.path.realpath(path))
    root_real = Path(os.path.realpath(root))
    if real != root_real and root_real not in real.parents:
        raise InputFileError(
            path,
            f"resolves to {real}, outside the raw data directory {root_real}",
            "copy the file into the raw data directory instead of linking to it",
        )
    return real


def check_csv_bytes(path: Path) -> None:
    """File-level checks before DuckDB sees a CSV: a Parquet file named .csv, binary data."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if head.startswith(_PARQUET_MAGIC):
        raise InputFileError(
            path, "is a Parquet file with a .csv name", f"rename it to {Path(path).stem}.parquet"
        )
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 13))
    # text never holds NUL bytes; a few control characters inside fields (a title with \x01)
    # are row-level noise, not a binary file (a small catalog file was refused for them)
    if head and (b"\x00" in head or (len(head) >= 256 and control > 0.3 * len(head))):
        raise InputFileError(
            path,
            f"is binary data, not CSV text ({control} control bytes in the first {len(head)})",
            "deliver it as comma-separated UTF-8 text with a header row (or as .parquet)",
        )


def read_csv_header(path: Path) -> list[str]:
    """The column names of a CSV file's header row (UTF-8, BOM allowed), read without DuckDB's
    sniffer so that a bad row further down cannot make the whole file unreadable."""
    with open(path, "rb") as fh:
        first = fh.readline(MAX_LINE_BYTES + 1)
    if len(first) > MAX_LINE_BYTES:
        raise InputFileError(
            path,
            f"the first line is longer than {MAX_LINE_BYTES} bytes: no header row",
            "deliver the file with a header row (user_id,item_id,event_type,ts,...)",
        )
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(
            path,
            f"the header row is not UTF-8 text ({exc.reason} at byte {exc.start})",
            "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from exc
    rows = list(csv.reader(io.StringIO(text), delimiter=",", quotechar='"'))
    names = [c.strip() for c in rows[0]] if rows else []
    if not names or all(not n for n in names):
        raise InputFileError(path, "has no header row", "deliver the file with a header row")
    lowered = [n.lower() for n in names]
    dupes = sorted({n for n in lowered if lowered.count(n) > 1})
    if dupes:
        raise InputFileError(
            path, f"has duplicated column names {dupes}", "keep one column of each name"
        )
    return names


def _stage_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    required: Iterable[str] = EVENT_REQUIRED_COLUMNS,
    expected: Iterable[str] = EVENT_COLUMNS,
) -> list[str]:
    """Stage one CSV day file into temp tables ``_day_accepted`` (with ``source_row``) and
    ``_day_rejected``. Returns the file's (lower-cased) column names.

    The header is read by :func:`read_csv_header` and DuckDB reads the rest with that schema
    (``auto_detect=false``): a row with the wrong field count, invalid UTF-8, an unterminated
    quote or more than :data:`MAX_LINE_BYTES` bytes becomes a rejected record (quarantined as
    ``malformed_row`` with the reader's error and the raw line) instead of failing the file."""
    check_csv_bytes(path)
    header = read_csv_header(path)
    cols = [c.strip().lower() for c in header]
    require_columns(path, cols, required, expected)
    schema = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in header) + "}"
    con.execute("DROP TABLE IF EXISTS reject_errors; DROP TABLE IF EXISTS reject_scans;")
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _day_read AS
            SELECT row_number() OVER () - 1 AS accepted_idx, *
            FROM read_csv({_sql_str(path)}, header=true, auto_detect=false, columns={schema},
                          delim=',', quote='"', escape='"', store_rejects=true,
                          max_line_size={MAX_LINE_BYTES})
            """
        )
    except duckdb.Error as exc:
        line = _bare_carriage_return_line(path)
        if line is not None:
            raise InputFileError(
                path,
                f"has a bare carriage return (\\r) inside line {line}, which the CSV reader "
                "cannot place (a row end or part of a field?)",
                "remove the stray carriage returns (lines end in \\n), or quote that field",
            ) from exc
        raise InputFileError(
            path,
            f"cannot be read as CSV ({str(exc).splitlines()[0]})",
            "deliver a comma-separated UTF-8 file with a header row",
        ) from exc
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _day_rejected AS
        SELECT line - 2 AS source_row,
               first(error_type || ': ' || coalesce(error_message, '')
                     ORDER BY coalesce(column_idx, -1), error_type, error_message) AS parse_error,
               any_value(csv_line) AS raw_line
        FROM reject_errors GROUP BY line
        """
    )
    # accepted rows keep their order; give each its record index in the file
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _day_accepted AS
        WITH idx AS (
            SELECT row_number() OVER (ORDER BY i) - 1 AS accepted_idx, i AS source_row
            FROM range((SELECT count(*) FROM _day_read) + (SELECT count(*) FROM _day_rejected)) t(i)
            WHERE i NOT IN (SELECT source_row FROM _day_rejected)
        )
        SELECT idx.source_row, r.* EXCLUDE (accepted_idx)
        FROM _day_read r JOIN idx USING (accepted_idx)
        """
    )
    con.execute("DROP TABLE _day_read")
    return [c.strip().lower() for c in con.sql("SELECT * FROM _day_accepted").columns]


def _bare_carriage_return_line(path: Path) -> int | None:
    """1-based line of the first carriage return not followed by a line feed, in a file whose
    lines end in line feeds (None when there is none)."""
    line, prev = 1, b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            data = prev + chunk
            m = _BARE_CR.search(data[:-1])  # the last byte waits for the next chunk
            if m:
                return line + data[: m.start()].count(b"\n")
            line += data[:-1].count(b"\n")
            prev = data[-1:]
    return line if prev == b"\r" else None


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    rel = relation_for_file(con, path, all_varchar=False)
    cols = [c.strip().lower() for c in rel.columns]
    require_columns(path, cols, EVENT_REQUIRED_COLUMNS, EVENT_COLUMNS)
    lowered = [c.strip().lower() for c in rel.columns]
    dupes = sorted({c for c in lowered if lowered.count(c) > 1})
    if dupes:
        raise InputFileError(
            path, f"has duplicated column names {dupes}", "keep one column of each name"
        )
    select = ", ".join(
        f"CAST({_ident(c)} AS VARCHAR) AS {_ident(c.strip().lower())}" for c in rel.columns
    )
    # a view, not a copy; file_row_number is the record's 0-based row in the file
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW _day_accepted AS
        SELECT file_row_number AS source_row, {select}
        FROM read_parquet({_sql_str(path)}, file_row_number = true)
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW _day_rejected AS "
        "SELECT NULL::BIGINT AS source_row, NULL::VARCHAR AS parse_error, "
        "NULL::VARCHAR AS raw_line WHERE false"
    )
    return cols


RAW_SOURCES = "raw_sources"
"""Lake dataset: one row per landed day (which file, its format, records, size and mtime)."""
RAW_LANDED = "raw_events"
"""Lake dataset: the records of CSV day files, landed once as text (what a CSV delivers), with
the reader's error and the raw line of records that could not be split. Parquet day files are
not copied: they are read where they lie."""

_RAW_SOURCES_EMPTY = (
    "SELECT NULL::DATE AS partition_date, NULL::VARCHAR AS source_file, NULL::VARCHAR AS path, "
    "NULL::VARCHAR AS format, NULL::BIGINT AS records, NULL::BIGINT AS size, "
    "NULL::BIGINT AS mtime_ns, NULL::VARCHAR[] AS columns WHERE false"
)
RAW_EVENTS_EMPTY = (
    "SELECT NULL::DATE AS partition_date, NULL::VARCHAR AS source_file, "
    "NULL::BIGINT AS source_row, "
    + ", ".join(f"NULL::VARCHAR AS {c}" for c in EVENT_COLUMNS)
    + ", NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_line WHERE false"
)


@dataclass(frozen=True)
class RawSource:
    """Where the records of one day are read from (a row of the lake dataset ``raw_sources``)."""

    day: dt.date
    source_file: str  # as shown in source_file (relative to the raw data directory)
    path: str  # the file's absolute path
    format: str  # "parquet" (read where it lies) or "csv" (landed in the lake)
    records: int
    size: int
    mtime_ns: int
    columns: tuple[str, ...]  # the file's column names as delivered


def load_event_day(
    con: duckdb.DuckDBPyConnection, raw_dir: Path, day: dt.date, path: Path, *, lake_dir: Path
) -> int:
    """Land the records of ``path`` as partition ``day`` (replacing what the day held).

    A Parquet day file is read where it lies: its columns and row count (from its footer) are
    checked and recorded in ``raw_sources``, nothing is copied. A CSV day file is read once (a
    record that cannot be split is kept with the reader's error and its raw line) and landed in
    the lake dataset ``raw_events`` as text. ``con`` is a working connection (an in-memory one is
    enough): nothing is written into its database. Returns the number of records."""
    path = Path(path)
    raw_dir = Path(raw_dir)
    rel_file = str(path.relative_to(raw_dir)) if path.is_relative_to(raw_dir) else str(path)
    if not path.exists():
        raise InputFileError(
            path,
            f"no events file for partition {day}",
            f"deliver {EVENTS_DIRNAME}/{day}.csv or .parquet, or materialize another partition",
        )
    real = check_inside(path, raw_dir)
    if path.stat().st_size == 0:
        raise InputFileError(
            path, "is empty (0 bytes)", "deliver the day's file again with a header row"
        )
    is_parquet = path.suffix.lower() == ".parquet"
    staged: list[lake.StagedPartition] = []
    try:
        if is_parquet:
            columns = _parquet_columns(con, path)
            n = count_records(path)
            if n is None:
                raise InputFileError(
                    path,
                    "cannot be read as PARQUET (its footer is unreadable)",
                    "check that the file is complete (not truncated); deliver it again",
                )
        else:
            cols = _stage_csv(con, path)
            header = read_csv_header(path)
            columns = tuple(header)
            select = ", ".join(
                f"CAST({_ident(c)} AS VARCHAR) AS {c}" if c in cols else f"NULL::VARCHAR AS {c}"
                for c in EVENT_COLUMNS
            )
            nulls = ", ".join("NULL::VARCHAR" for _ in EVENT_COLUMNS)
            landed = lake.stage_partition(
                con,
                f"""
                SELECT ?::DATE AS partition_date, ?::VARCHAR AS source_file, source_row,
                       {select},
                       NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_line
                FROM _day_accepted
                UNION ALL
                SELECT ?::DATE, ?::VARCHAR, source_row, {nulls}, parse_error, raw_line
                FROM _day_rejected
                ORDER BY source_row
                """,
                lake_dir,
                RAW_LANDED,
                day,
                [day, rel_file, day, rel_file],
            )
            staged.append(landed)
            n, distinct, lo, hi = con.execute(
                "SELECT count(*), count(DISTINCT source_row), min(source_row), max(source_row) "
                f"FROM read_parquet('{landed.sql_path}', hive_partitioning = false)"
            ).fetchall()[0]
            _check_landed(path, day, False, int(n), int(distinct), lo, hi)
        stat = real.stat()
        staged.append(
            lake.stage_partition(
                con,
                "SELECT ?::DATE AS partition_date, ?::VARCHAR AS source_file, ?::VARCHAR AS path, "
                "?::VARCHAR AS format, ?::BIGINT AS records, ?::BIGINT AS size, "
                "?::BIGINT AS mtime_ns, ?::VARCHAR[] AS columns",
                lake_dir,
                RAW_SOURCES,
                day,
                [
                    day,
                    rel_file,
                    str(real),
                    "parquet" if is_parquet else "csv",
                    int(n),
                    stat.st_size,
                    stat.st_mtime_ns,
                    list(columns),
                ],
            )
        )
        lake.commit_partitions(staged, lake_dir)
        if is_parquet:  # a CSV landing of the day from an earlier delivery is stale now
            lake.remove_partition(lake_dir, RAW_LANDED, day)
    finally:
        lake.discard_partitions(staged)
        if not is_parquet:
            con.execute("DROP TABLE IF EXISTS _day_accepted; DROP TABLE IF EXISTS _day_rejected;")
    return int(n)


def _parquet_columns(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, ...]:
    """The column names of a Parquet day file (from its footer), checked like a CSV header."""
    try:
        rel = con.read_parquet(str(path))
        names = list(rel.columns)
    except duckdb.Error as exc:
        raise InputFileError(
            path,
            f"cannot be read as PARQUET ({str(exc).splitlines()[0]})",
            "check that the file is complete (not truncated); deliver it again",
        ) from exc
    cols = [c.strip().lower() for c in names]
    require_columns(path, cols, EVENT_REQUIRED_COLUMNS, EVENT_COLUMNS)
    dupes = sorted({c for c in cols if cols.count(c) > 1})
    if dupes:
        raise InputFileError(
            path, f"has duplicated column names {dupes}", "keep one column of each name"
        )
    return tuple(names)


def raw_sources(
    con: duckdb.DuckDBPyConnection, lake_dir: Path, days: Iterable[dt.date] | None = None
) -> dict[dt.date, RawSource]:
    """The landed days (all, or those of ``days`` that were landed) and where they are read."""
    files = lake.partition_files(lake_dir, RAW_SOURCES, None if days is None else list(days))
    if not files:
        return {}
    rows = con.execute(
        f"SELECT * FROM ({lake.dataset_relation_sql(files, _RAW_SOURCES_EMPTY)})"
    ).fetchall()
    out = {}
    for r in rows:
        src = RawSource(
            day=r[0], source_file=r[1], path=r[2], format=r[3], records=int(r[4]),
            size=int(r[5]), mtime_ns=int(r[6]), columns=tuple(r[7]),
        )  # fmt: skip
        out[src.day] = src
    return dict(sorted(out.items()))


def raw_day_sql(lake_dir: Path, source: RawSource, *, check_unchanged: bool = True) -> str:
    """SQL for the raw records of one landed day, with the columns of ``raw_events``
    (``partition_date``, ``source_file``, ``source_row``, every event field as text,
    ``parse_error``, ``raw_line``): the landed CSV records, or the Parquet file where it lies.

    ``check_unchanged``: an :class:`InputFileError` when the Parquet file was replaced or
    changed since it was landed (its size or modification time differ)."""
    if source.format == "csv":
        data = lake.partition_dir(lake_dir, RAW_LANDED, source.day) / lake.DATA_FILE
        return f"SELECT * FROM read_parquet({_sql_str(data)}, hive_partitioning = false)"
    path = Path(source.path)
    if check_unchanged:
        try:
            stat = path.stat()
            same = stat.st_size == source.size and stat.st_mtime_ns == source.mtime_ns
        except OSError:
            same = False
        if not same:
            raise InputFileError(
                path,
                f"changed or disappeared since partition {source.day} was landed",
                f"materialize raw_events for {source.day} again (then clean it again)",
            )
    by_name = {c.strip().lower(): c for c in source.columns}
    fields = ", ".join(
        f"CAST({_ident(by_name[c])} AS VARCHAR) AS {c}" if c in by_name else f"NULL::VARCHAR AS {c}"
        for c in EVENT_COLUMNS
    )
    return (
        f"SELECT DATE '{source.day.isoformat()}' AS partition_date, "
        f"{_sql_str(source.source_file)}::VARCHAR AS source_file, "
        f"file_row_number::BIGINT AS source_row, {fields}, "
        "NULL::VARCHAR AS parse_error, NULL::VARCHAR AS raw_line "
        f"FROM read_parquet({_sql_str(path)}, file_row_number = true, hive_partitioning = false)"
    )


def raw_events_sql(con: duckdb.DuckDBPyConnection, lake_dir: Path) -> str:
    """SQL for every landed day's raw records (the ``raw_events`` view; see
    :func:`raw_day_sql`). Built from the landings as they are now: recreate the view after a
    landing."""
    parts = [
        raw_day_sql(lake_dir, src, check_unchanged=False)
        for src in raw_sources(con, lake_dir).values()
        # a day file deleted since it was landed is left out here (a view over a missing file
        # cannot be created); cleaning that day again says what happened
        if src.format == "csv" or Path(src.path).is_file()
    ]
    return "\nUNION ALL\n".join(parts) if parts else RAW_EVENTS_EMPTY


def _check_landed(
    path: Path, day: dt.date, is_parquet: bool, n: int, distinct: int, lo, hi
) -> None:
    """Landing accounting, from the table: every record of the file landed exactly once.

    The records' ``source_row`` must be 0..n-1 without a gap or a repeat, and a Parquet file's
    row count (from its footer, not from the reader) must equal the rows landed."""
    if n and (distinct != n or lo != 0 or hi != n - 1):
        raise AccountingError(
            path,
            day,
            f"{n} rows landed but their record numbers are not 0..{n - 1} once each "
            f"({distinct} distinct, {lo}..{hi}): records lost or doubled while reading",
        )
    if is_parquet:
        expected = count_records(path)
        if expected is not None and expected != n:
            raise AccountingError(path, day, f"the file holds {expected} rows but {n} were landed")
