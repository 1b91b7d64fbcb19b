"""The shared writer of the source adapters, and the helpers they share.

An adapter maps a public format onto the raw input contract (``launch_pipeline/contract.py``)
inside one DuckDB connection and hands over an :class:`AdapterOutput`:

* a temp table of events with the columns ``day DATE`` (the daily partition the row goes to),
  ``seq BIGINT`` (the record's position in the source file) and every contract event column as
  text (``user_id, item_id, event_type, ts, quantity, price, rating, review_text, session_id,
  flag``);
* the derived product table and launch candidates (pandas frames, contract columns);
* the partition range and the adapter's notes.

:func:`write_raw_dir` then (re)writes the raw data directory:

* ``events/YYYY-MM-DD.parquet`` for EVERY day from ``start`` to ``end``, every column a string,
  the rows in source order; a day without rows gets a valid file with zero rows, so the
  partition range has no holes;
* ``products.parquet``, ``candidates.parquet`` (every column a string);
* ``dataset.json``: source, path, start_date, end_date, timezone (UTC) and the adapter notes.

Before writing it removes what a previous staging (or ``launch-pipeline generate``) left that
would clash: event files named ``YYYY-MM-DD.*``, ``products.csv|parquet``,
``candidates.csv|parquet`` and ``dataset.json``. Nothing else in the directory is touched.

The events are streamed from DuckDB in Arrow record batches, sorted by (day, seq), into one
Parquet writer per day: memory stays bounded by one batch, whatever the size of the source.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from launch_pipeline.cleaning import ambiguous_zone_sql  # noqa: F401 - shared with adapters
from launch_pipeline.contract import (
    CANDIDATE_OPTIONAL_COLUMNS,
    CANDIDATES_STEM,
    EVENT_COLUMNS,
    EVENTS_DIRNAME,
    MANIFEST_NAME,
    PRODUCT_OPTIONAL_COLUMNS,
    PRODUCT_REQUIRED_COLUMNS,
    PRODUCTS_STEM,
    SUPPORTED_SUFFIXES,
)
from launch_pipeline.errors import ConfigurationError, InputFileError
from launch_pipeline.warehouse import quote_identifier

PRODUCT_COLUMNS: tuple[str, ...] = PRODUCT_REQUIRED_COLUMNS + PRODUCT_OPTIONAL_COLUMNS
CANDIDATE_COLUMNS: tuple[str, ...] = PRODUCT_REQUIRED_COLUMNS + CANDIDATE_OPTIONAL_COLUMNS
EVENT_SCHEMA = pa.schema([(c, pa.string()) for c in EVENT_COLUMNS])
STALE_EVENT_FILE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\..+$")

OUTSIDE_WINDOW_FLAG = "outside_source_window"
"""Adapter flag (quarantine reason) of a row whose timestamp is outside the source's own window:
it goes to the nearest boundary day's file."""

DEFAULT_CANDIDATE_DAYS = 30
MAX_CANDIDATE_SHARE = 0.25
"""The candidate window never covers more than this share of the data's days (nor its first
day): in a short log every item is "new", and a catalog with no products says nothing."""

MAX_SPAN_DAYS = 3660
"""A derived partition range longer than this (10 years) is treated as a sign of garbage
timestamps: staging stops and asks for explicit ``start_date``/``end_date`` options."""

BATCH_ROWS = 200_000


@dataclass
class AdapterOutput:
    events_table: str
    start: dt.date
    end: dt.date
    products: pd.DataFrame
    candidates: pd.DataFrame
    notes: dict = field(default_factory=dict)
    cleaning: dict = field(default_factory=dict)
    """Cleaning thresholds that suit this source (``Settings.from_env`` applies them)."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def sql_str(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def as_date(value, name: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigurationError(f"option {name}={value!r} is not a date (YYYY-MM-DD)") from exc


def timestamp_sql(expr: str) -> str:
    """SQL turning the text ``expr`` into a UTC ``TIMESTAMP`` exactly as ``cleaning.py`` does
    (unix seconds, or ISO 8601 / anything DuckDB casts to TIMESTAMPTZ; NULL otherwise), so a row
    lands in the day file that cleaning will consider its own."""
    x = f"trim({expr})"
    return (
        f"CASE WHEN regexp_full_match({x}, '-?[0-9]+(\\.[0-9]+)?') THEN "
        f"CASE WHEN TRY_CAST({x} AS DOUBLE) BETWEEN 0 AND 32503680000 "
        f"THEN to_timestamp(TRY_CAST({x} AS DOUBLE)) AT TIME ZONE 'UTC' END "
        f"ELSE TRY_CAST({x} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' END"
    )


def normalise_name(name: str) -> str:
    """Column-name key: lower case, letters and digits only (``Customer ID`` -> ``customerid``)."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def resolve_columns(
    path: Path,
    columns: list[str],
    aliases: dict[str, tuple[str, ...]],
    required: tuple[str, ...],
    expected: str,
) -> dict[str, str | None]:
    """Map each logical column to the file's column (by :func:`normalise_name` of the aliases).

    Raises :class:`InputFileError` naming the file, the missing columns and the expected ones."""
    by_key = {}
    for col in columns:
        by_key.setdefault(normalise_name(col), col)
    found = {
        logical: next(
            (by_key[normalise_name(a)] for a in names if normalise_name(a) in by_key), None
        )
        for logical, names in aliases.items()
    }
    missing = [" or ".join(aliases[c]) for c in required if found[c] is None]
    if missing:
        raise InputFileError(
            path,
            f"missing required columns {missing}; found {list(columns)}",
            f"deliver a file with the columns {expected}, or pick the right --source",
        )
    return found


def require_file(path: Path, what: str = "source file") -> Path:
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, f"{what} not found", "check the path (--path)")
    if path.is_dir():
        raise InputFileError(path, f"is a folder, but the {what} must be a file", "name the file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes)", "deliver the file again")
    return path


def file_format(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in (
        (".parquet", "parquet"),
        (".pq", "parquet"),
        (".xlsx", "excel"),
        (".xls", "excel"),
        (".csv", "csv"),
        (".csv.gz", "csv"),
        (".txt", "csv"),
        (".tsv", "csv"),
    ):
        if name.endswith(suffix):
            return fmt
    raise InputFileError(
        path,
        f"has an unsupported file type ({path.suffix or 'no suffix'})",
        "deliver CSV (.csv, .csv.gz), Parquet (.parquet) or Excel (.xlsx)",
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def load_source_table(
    con: duckdb.DuckDBPyConnection, path: Path, table: str, notes: dict
) -> list[str]:
    """Load a tabular source file (CSV with a header, Parquet or Excel) into the temp table
    ``table`` with every column as text plus ``__seq`` (0-based record number in file order).
    Returns the file's column names."""
    path = require_file(path)
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            cols = [c for c in con.sql(f"SELECT * FROM read_parquet({sql_str(path)})").columns]
            select = ", ".join(
                f"CAST({quote_identifier(c)} AS VARCHAR) AS {quote_identifier(c)}" for c in cols
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT file_row_number AS __seq, "
                f"{select} FROM read_parquet({sql_str(path)}, file_row_number=true)"
            )
            return cols
        if fmt == "excel":
            return _load_excel(con, path, table, notes)
        return _load_csv(con, path, table, notes)
    except duckdb.Error as exc:
        raise InputFileError(
            path,
            f"cannot be read as {fmt.upper()} ({_first_line(exc)})",
            "check that the file is complete (not truncated) and in the format its name says",
        ) from exc


def _load_csv(con, path: Path, table: str, notes: dict) -> list[str]:
    base = f"read_csv({sql_str(path)}, header=true, all_varchar=true, sample_size=-1"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS "
            f"SELECT row_number() OVER () - 1 AS __seq, * FROM {base})"
        )
    except duckdb.Error as exc:
        if "unicode" not in str(exc).lower() and "utf" not in str(exc).lower():
            raise
        # the UCI / Kaggle exports of Online Retail are ISO-8859-1, not UTF-8
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS "
            f"SELECT row_number() OVER () - 1 AS __seq, * FROM {base}, encoding='latin-1')"
        )
        notes["encoding"] = "latin-1 (the file is not valid UTF-8)"
    return [c for c in con.sql(f"SELECT * EXCLUDE (__seq) FROM {table}").columns]


def _load_excel(con, path: Path, table: str, notes: dict) -> list[str]:
    if importlib.util.find_spec("openpyxl") is None:
        raise InputFileError(
            path,
            "is an Excel workbook, and reading Excel needs the openpyxl package, which is not "
            "installed",
            "convert every sheet to CSV or Parquet and pass that file (e.g. pandas: "
            "pd.read_excel(path, sheet_name=None) then concat and to_parquet), or "
            "`pip install openpyxl`",
        )
    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=str)
    except Exception as exc:  # noqa: BLE001 - any reader error is a file-level problem
        raise InputFileError(
            path, f"cannot be read as Excel ({_first_line(exc)})", "re-export it"
        ) from exc
    frames = [df for df in sheets.values() if len(df.columns)]
    if not frames:
        raise InputFileError(path, "has no sheet with data", "deliver the workbook with its data")
    df = pd.concat(frames, ignore_index=True).astype("string")
    notes["excel_sheets"] = list(sheets)
    df.insert(0, "__seq", range(len(df)))
    con.register("_excel_src", df)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _excel_src")
    finally:
        con.unregister("_excel_src")
    return [c for c in df.columns if c != "__seq"]


# --------------------------------------------------------------------------------------------
# days and windows
# --------------------------------------------------------------------------------------------
def assign_days(
    con: duckdb.DuckDBPyConnection,
    table: str,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    path: Path | None = None,
    today: dt.date | None = None,
) -> tuple[dt.date, dt.date, int]:
    """Give every row of ``table`` (columns ``seq``, ``t`` TIMESTAMP or NULL, ``flag``) its
    partition ``day``; returns (start, end, rows placed on another day than their timestamp's).

    * The range is ``start..end`` where given (the source's window); what is not given is the
      first / last day of the parseable timestamps, the last day being the last one that is not
      in the future (UTC), so a future timestamp does not create partitions of its own.
    * A row whose timestamp falls before ``start`` or after ``end`` goes to the nearest boundary
      day. Outside a given window it is flagged ``outside_source_window`` (unless it already has
      a flag); beyond a derived end (a future timestamp) it is not flagged, so that cleaning
      names it ``future_timestamp``.
    * A row without a parseable timestamp goes to the day of the previous row in file order
      (the next row's, for leading rows; the first day, if no row has a timestamp), so that
      cleaning can quarantine it (``invalid_timestamp``)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    lo, hi, hi_past = con.execute(
        f"SELECT min(CAST(t AS DATE)), max(CAST(t AS DATE)), "
        f"max(CAST(t AS DATE)) FILTER (WHERE CAST(t AS DATE) <= $today) FROM {table} "
        "WHERE CAST(t AS DATE) BETWEEN $s AND $e",
        {"s": start or dt.date.min, "e": end or dt.date.max, "today": today},
    ).fetchall()[0]
    flag_low, flag_high = start is not None, end is not None
    start = start or lo
    if end is None:
        end = hi_past if hi_past is not None and (start is None or hi_past >= start) else hi
    if start is None or end is None:
        raise InputFileError(
            path or table,
            "has no row with a parseable timestamp"
            + (" inside the window" if (flag_low or flag_high) else ""),
            "check the timestamp column and its format",
        )
    if end < start:
        raise ConfigurationError(f"start date {start} is after end date {end}")
    span = (end - start).days + 1
    if span > MAX_SPAN_DAYS:
        raise InputFileError(
            path or table,
            f"its timestamps span {span} days ({start} .. {end}): some are probably wrong",
            "pass start_date/end_date options to set the partition range; rows outside it are "
            f"quarantined as {OUTSIDE_WINDOW_FLAG}",
        )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        WITH d AS (
            SELECT *, CAST(t AS DATE) AS t_day,
                   CASE WHEN CAST(t AS DATE) < $start THEN $start
                        WHEN CAST(t AS DATE) > $end THEN $end
                        ELSE CAST(t AS DATE) END AS placed
            FROM {table}
        ), filled AS (
            SELECT *,
                   coalesce(placed,
                            last_value(placed IGNORE NULLS) OVER (
                                ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                            first_value(placed IGNORE NULLS) OVER (
                                ORDER BY seq ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING),
                            $start) AS day_
            FROM d
        )
        SELECT * EXCLUDE (t_day, placed, day_, flag),
               day_ AS day,
               CASE WHEN flag IS NULL AND (t_day < $start AND $flag_low
                                           OR t_day > $end AND $flag_high)
                    THEN '{OUTSIDE_WINDOW_FLAG}' ELSE flag END AS flag
        FROM filled
        """,
        {"start": start, "end": end, "flag_low": flag_low, "flag_high": flag_high},
    )
    moved = con.execute(
        f"SELECT count(*) FROM {table} WHERE t IS NOT NULL AND CAST(t AS DATE) <> day"
    ).fetchall()[0][0]
    return start, end, int(moved)


def candidate_window(
    start: dt.date, end: dt.date, candidate_days: int | None
) -> tuple[dt.date | None, int]:
    """(first day of the candidate window or None, its length in days).

    The window is the last ``candidate_days`` days of the data, capped at
    ``MAX_CANDIDATE_SHARE`` of the data's days and never including the first day."""
    if candidate_days is None:
        candidate_days = DEFAULT_CANDIDATE_DAYS
    if candidate_days < 0:
        raise ConfigurationError(f"candidate_days must be >= 0 (got {candidate_days})")
    span = (end - start).days + 1
    days = min(int(candidate_days), int(span * MAX_CANDIDATE_SHARE), span - 1)
    if days <= 0:
        return None, 0
    return end - dt.timedelta(days=days - 1), days


def split_candidates(
    items: pd.DataFrame, first_day_col: str, cutoff: dt.date | None, require: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(products, candidates): the items first seen on or after ``cutoff`` (and with a non-null
    ``require`` column, if given) are candidates priced at their ``first_price``."""
    if cutoff is None:
        is_cand = pd.Series(False, index=items.index)
    else:
        is_cand = items[first_day_col].notna() & (
            pd.to_datetime(items[first_day_col]).dt.date >= cutoff
        )
        if require is not None:
            is_cand &= items[require].notna()
    products = items.loc[~is_cand].reset_index(drop=True)
    candidates = items.loc[is_cand].reset_index(drop=True).copy()
    candidates["price"] = candidates["first_price"]
    return products, candidates


# --------------------------------------------------------------------------------------------
# writing the raw directory
# --------------------------------------------------------------------------------------------
def stale_files(raw_dir: Path) -> list[Path]:
    """What a previous staging or generation left that would clash with a new one."""
    raw_dir = Path(raw_dir)
    out = []
    events = raw_dir / EVENTS_DIRNAME
    if events.is_dir():
        out += [
            p for p in sorted(events.iterdir()) if p.is_file() and STALE_EVENT_FILE_RE.match(p.name)
        ]
    for stem in (PRODUCTS_STEM, CANDIDATES_STEM):
        out += [
            raw_dir / f"{stem}{s}" for s in SUPPORTED_SUFFIXES if (raw_dir / f"{stem}{s}").exists()
        ]
    if (raw_dir / MANIFEST_NAME).exists():
        out.append(raw_dir / MANIFEST_NAME)
    return out


def prepare_raw_dir(raw_dir: Path, source: Path | None = None) -> int:
    """Create ``raw_dir`` and remove the stale files; returns how many were removed.

    Refuses to delete the source itself (``--path`` pointing at a file of ``raw_dir``)."""
    raw_dir = Path(raw_dir)
    stale = stale_files(raw_dir)
    if source is not None:
        src = Path(source).resolve()
        if any(p.resolve() == src for p in stale):
            raise ConfigurationError(
                f"--path {source} is a file that staging into {raw_dir} would replace: move the "
                "source elsewhere, or pass another --data-dir"
            )
    (raw_dir / EVENTS_DIRNAME).mkdir(parents=True, exist_ok=True)
    for p in stale:
        p.unlink()
    return len(stale)


def empty_event_file(path: Path) -> None:
    pq.write_table(EVENT_SCHEMA.empty_table(), path)


def write_events(
    con: duckdb.DuckDBPyConnection, table: str, raw_dir: Path, start: dt.date, end: dt.date
) -> dict:
    """One Parquet file per day ``start..end`` (empty days included). Returns rows and days."""
    events_dir = Path(raw_dir) / EVENTS_DIRNAME
    events_dir.mkdir(parents=True, exist_ok=True)
    select = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in EVENT_COLUMNS)
    reader = con.sql(
        f"SELECT CAST(day AS VARCHAR) AS __day, {select} FROM {table} "
        f"WHERE day BETWEEN DATE '{start}' AND DATE '{end}' ORDER BY day, seq"
    ).to_arrow_reader(BATCH_ROWS)
    written: set[str] = set()
    rows = 0
    writer: pq.ParquetWriter | None = None
    current = None
    try:
        for batch in reader:
            days = batch.column(0).to_pylist()
            body = pa.Table.from_batches([batch]).drop_columns(["__day"]).cast(EVENT_SCHEMA)
            i = 0
            while i < len(days):
                day = days[i]
                j = i
                while j < len(days) and days[j] == day:
                    j += 1
                if day != current:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(events_dir / f"{day}.parquet", EVENT_SCHEMA)
                    current = day
                    written.add(day)
                writer.write_table(body.slice(i, j - i))
                rows += j - i
                i = j
    finally:
        if writer is not None:
            writer.close()
    empty = 0
    day = start
    while day <= end:
        if day.isoformat() not in written:
            empty_event_file(events_dir / f"{day.isoformat()}.parquet")
            empty += 1
        day += dt.timedelta(days=1)
    return {"rows": rows, "days": (end - start).days + 1, "empty_days": empty}


def write_table(df: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> int:
    """Write the contract columns of ``df`` as a Parquet file of strings (NULL stays NULL)."""
    arrays = {}
    for c in columns:
        values = df[c] if c in df.columns else pd.Series([None] * len(df), dtype=object)
        arrays[c] = pa.array([_text(v) for v in values], type=pa.string())
    pq.write_table(pa.table(arrays, schema=pa.schema([(c, pa.string()) for c in columns])), path)
    return len(df)


def _text(value) -> str | None:
    """Text of one product-table value; None, NaN and NaT become NULL."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else repr(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def flag_counts(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    rows = con.execute(
        f"SELECT flag, count(*) FROM {table} WHERE flag IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall()
    return {k: int(v) for k, v in rows}


def category_table(products: pd.DataFrame, candidates: pd.DataFrame) -> dict[str, int]:
    """Products per category over the catalog and the candidates, largest first."""
    cats = pd.concat(
        [
            products.get("category", pd.Series(dtype=object)),
            candidates.get("category", pd.Series(dtype=object)),
        ]
    ).fillna("unknown")
    counts = cats.value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def write_manifest(raw_dir: Path, manifest: dict) -> None:
    (Path(raw_dir) / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def check_staged_rows(
    con: duckdb.DuckDBPyConnection, out: AdapterOutput, raw_dir: Path, path: Path, written: int
) -> None:
    """Staging accounting, counted rather than assumed: the adapter's rows (every source record
    it keeps) = the rows written = the rows the day files' Parquet footers hold."""
    from launch_pipeline.errors import AccountingError
    from launch_pipeline.raw_io import count_records

    source = con.execute(f"SELECT count(*) FROM {out.events_table}").fetchall()[0][0]
    events_dir = Path(raw_dir) / EVENTS_DIRNAME
    footers, day = 0, out.start
    while day <= out.end:
        footers += count_records(events_dir / f"{day.isoformat()}.parquet") or 0
        day += dt.timedelta(days=1)
    if not source == written == footers:
        raise AccountingError(
            path,
            f"{out.start}..{out.end}",
            f"the source gave {source:,} rows, {written:,} were written and the day files hold "
            f"{footers:,}",
        )


def write_raw_dir(
    con: duckdb.DuckDBPyConnection,
    out: AdapterOutput,
    *,
    source: str,
    path: Path,
    raw_dir: Path,
) -> dict:
    """Write events, products, candidates and ``dataset.json``; returns what the summary needs."""
    raw_dir = Path(raw_dir)
    removed = prepare_raw_dir(raw_dir, source=path)
    ev = write_events(con, out.events_table, raw_dir, out.start, out.end)
    check_staged_rows(con, out, raw_dir, path, ev["rows"])
    n_products = write_table(out.products, raw_dir / f"{PRODUCTS_STEM}.parquet", PRODUCT_COLUMNS)
    n_candidates = write_table(
        out.candidates, raw_dir / f"{CANDIDATES_STEM}.parquet", CANDIDATE_COLUMNS
    )
    flagged = flag_counts(con, out.events_table)
    categories = category_table(out.products, out.candidates)
    manifest = {
        "source": source,
        "path": str(Path(path).resolve()),
        "start_date": out.start.isoformat(),
        "end_date": out.end.isoformat(),
        "timezone": "UTC",
        "staged_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rows": ev["rows"],
        "days": ev["days"],
        "empty_days": ev["empty_days"],
        "products": n_products,
        "candidates": n_candidates,
        "flagged": flagged,
        "categories": categories,
        "notes": out.notes,
        "cleaning": out.cleaning,
    }
    write_manifest(raw_dir, manifest)
    return {
        "rows": ev["rows"],
        "days": ev["days"],
        "products": n_products,
        "candidates": n_candidates,
        "flagged": flagged,
        "categories": categories,
        "removed_stale_files": removed,
    }


def keep_history(
    con: duckdb.DuckDBPyConnection,
    table: str,
    cut: dt.date,
    window: tuple[dt.date, dt.date] | None,
) -> dict:
    """Drop every line of the adapter's events ``table`` (columns ``seq``, ``t``) dated at or
    after ``cut`` (a line without a readable date goes with the previous line in file order, as
    staging places it); what was kept and dropped, for the staging notes."""
    before = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {table} AS
        SELECT * EXCLUDE (t_fill) FROM (
            SELECT *, coalesce(
                t,
                last_value(t IGNORE NULLS) OVER (
                    ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                first_value(t IGNORE NULLS) OVER (
                    ORDER BY seq ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)) AS t_fill
            FROM {table})
        WHERE t_fill IS NULL OR t_fill < $cut
        """,
        {"cut": dt.datetime.combine(cut, dt.time())},
    )
    kept = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return {
        "history_before": cut.isoformat(),
        "candidates_window": [d.isoformat() for d in window] if window else None,
        "lines_kept": int(kept),
        "lines_at_or_after_cutoff_dropped": int(before - kept),
    }


def cutoff_options(
    history_before, candidates_window, *, window_starts_at_cutoff: bool = False
) -> tuple[dt.date | None, tuple | None]:
    """The backtest options of an adapter as dates: ``history_before`` (the cutoff) and
    ``candidates_window`` ``(lo, hi)``, which needs the cutoff and must start at or after it (at it
    when ``window_starts_at_cutoff``: a source whose candidate rule looks back from ``lo``)."""
    cut = as_date(history_before, "history_before")
    if candidates_window is None:
        return cut, None
    if cut is None:
        raise ConfigurationError(
            "candidates_window needs history_before: the candidates' later sales must not be "
            "staged with the history"
        )
    try:
        lo, hi = (as_date(d, "candidates_window") for d in candidates_window)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"candidates_window must be two dates (first day, day after the last), got "
            f"{candidates_window!r}"
        ) from exc
    if lo is None or hi is None or hi <= lo or lo < cut or (window_starts_at_cutoff and lo != cut):
        first = "history_before" if window_starts_at_cutoff else "lo"
        raise ConfigurationError(
            f"candidates_window {candidates_window!r} must be ({first}, hi) with "
            f"history_before {'=' if window_starts_at_cutoff else '<='} lo < hi"
        )
    return cut, (lo, hi)
