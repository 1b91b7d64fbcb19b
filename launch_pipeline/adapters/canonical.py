"""The raw input contract itself (``launch_pipeline/contract.py``), from a folder or one file.

* **A folder in the contract layout** (``events/YYYY-MM-DD.csv|parquet``, ``products.*``,
  ``candidates.*``, optional ``dataset.json``): every file is checked (required columns) and
  copied unchanged, so the raw reader sees the bytes as delivered (a malformed CSV line is
  still reported by it, with the reader's error). Days without a file inside the range get an
  empty Parquet file. The range is the folder's ``dataset.json`` range if it has one (an
  open-ended ``end_date: null`` stays open), else the first and last file. When ``--path`` is
  the data directory's own raw folder, nothing is copied: the files are only checked.
* **One events file** (CSV or Parquet with the contract's event columns, rows of any days),
  with ``products.csv|parquet`` and ``candidates.csv|parquet`` beside it: the rows are split
  into one Parquet file per UTC day of ``ts`` (read as cleaning reads it), in file order. A
  row whose ``ts`` cannot be read goes to the day of the previous row (cleaning:
  ``invalid_timestamp``); a CSV line that cannot be split into fields is kept as an empty row
  flagged ``malformed_row`` (its text is listed in ``dataset.json``). The options
  ``start_date``/``end_date`` set the range explicitly; rows outside it go to the nearest
  boundary day flagged ``outside_source_window``. An existing ``flag`` column is kept.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from launch_pipeline.adapters import StagingSummary, summary_from
from launch_pipeline.adapters.staging import (
    AdapterOutput,
    as_date,
    assign_days,
    category_table,
    connect,
    empty_event_file,
    prepare_raw_dir,
    require_file,
    timestamp_sql,
    write_manifest,
    write_raw_dir,
)
from launch_pipeline.contract import (
    CANDIDATES_STEM,
    EVENT_COLUMNS,
    EVENT_REQUIRED_COLUMNS,
    EVENTS_DIRNAME,
    MANIFEST_NAME,
    PRODUCTS_STEM,
)
from launch_pipeline.errors import AccountingError, InputFileError
from launch_pipeline.raw_io import (
    _stage_csv,
    _stage_parquet,
    count_records,
    event_day_files,
    find_table_file,
    read_manifest,
    read_products,
    require_columns,
    skipped_event_files,
)

SOURCE = "canonical"


def stage(
    path: Path,
    raw_dir: Path,
    *,
    start_date: str | dt.date | None = None,
    end_date: str | dt.date | None = None,
) -> StagingSummary:
    if Path(path).is_dir():
        return _stage_folder(
            Path(path),
            Path(raw_dir),
            as_date(start_date, "start_date"),
            as_date(end_date, "end_date"),
        )
    return _stage_file(
        Path(path), Path(raw_dir), as_date(start_date, "start_date"), as_date(end_date, "end_date")
    )


# --------------------------------------------------------------------------------------------
# a folder in the contract layout
# --------------------------------------------------------------------------------------------
def _event_file_columns(path: Path) -> list[str]:
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes)", "deliver the day's file with a header")
    if path.suffix.lower() == ".parquet":
        try:
            return [c.strip().lower() for c in pq.read_schema(path).names]
        except Exception as exc:  # noqa: BLE001 - any reader error is a file-level problem
            raise InputFileError(
                path, f"cannot be read as Parquet ({exc})", "deliver the file again"
            ) from exc
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        header = fh.readline()
    return [c.strip().strip('"').lower() for c in header.rstrip("\r\n").split(",")]


STRAY_GAP_DAYS = 92
"""Without a declared range, day files more than this many days apart (a quarter) are taken as a
mistyped date (``2062-11-02`` for ``2026-11-02``): staging stops instead of creating thousands
of empty partitions."""


def _folder_range(
    path: Path,
    files: dict[dt.date, Path],
    manifest: dict,
    start: dt.date | None,
    end: dt.date | None,
) -> tuple[dt.date, dt.date | None, str]:
    """(start, end or None for an open end, where the range came from)."""
    days = sorted(files)
    all_names = {d: p.name for d, p in files.items()}
    if start is not None or end is not None:
        return start or min(days), end or max(days), "the start_date/end_date options"
    if manifest.get("start_date") or "end_date" in manifest:
        lo = as_date(manifest.get("start_date"), "start_date") or min(days)
        hi = as_date(manifest.get("end_date"), "end_date") if "end_date" in manifest else max(days)
        return lo, hi, f"{MANIFEST_NAME}"
    for a, b in zip(days, days[1:], strict=False):
        gap = (b - a).days
        if gap > STRAY_GAP_DAYS:
            before = [d for d in days if d <= a]
            after = [d for d in days if d >= b]
            stray = before if len(before) < len(after) else after
            names = ", ".join(f"{d}" for d in stray[:5]) + (" ..." if len(stray) > 5 else "")
            raise InputFileError(
                path / EVENTS_DIRNAME / (all_names.get(stray[0]) or ""),
                f"the day files jump from {a} to {b} ({gap:,} days without a file): the "
                f"{len(stray)} file(s) {names} look like a mistyped date",
                "rename the stray file(s), or declare the range with start_date/end_date in "
                f"{MANIFEST_NAME} (files outside it are then skipped and listed)",
            )
    return min(days), max(days), "the day files"


def _stage_folder(
    path: Path, raw_dir: Path, start: dt.date | None = None, end: dt.date | None = None
) -> StagingSummary:
    all_files = event_day_files(path)
    if not all_files:
        raise InputFileError(
            path / EVENTS_DIRNAME,
            "has no event files named YYYY-MM-DD.csv or YYYY-MM-DD.parquet",
            "deliver the folder in the contract layout (see launch_pipeline/contract.py), or "
            "pass a single events file",
        )
    manifest = read_manifest(path)
    start, end, range_from = _folder_range(path, all_files, manifest, start, end)
    skipped = skipped_event_files(path, start, end)
    files = {d: p for d, p in all_files.items() if d >= start and (end is None or d <= end)}
    if not files:
        raise InputFileError(
            path / EVENTS_DIRNAME,
            f"has no day file inside the range {start} .. {end or 'open end'} ({range_from})",
            "check the range, or the file names",
        )
    for day_file in files.values():
        require_columns(
            day_file, _event_file_columns(day_file), EVENT_REQUIRED_COLUMNS, EVENT_COLUMNS
        )
    products, products_path = read_products(path, PRODUCTS_STEM)
    candidates, candidates_path = read_products(path, CANDIDATES_STEM)
    last = max([*files, end] if end else list(files))
    source_rows = {p.name: count_records(p) or 0 for p in files.values()}
    rows = sum(source_rows.values())
    notes = {
        "layout": "folder",
        "event_files": len(files),
        "range_from": range_from,
        "original_manifest": manifest,
    }
    same = path.resolve() == Path(raw_dir).resolve()
    empty = 0
    if same:
        notes["copied"] = False
    else:
        prepare_raw_dir(raw_dir)
        events_dir = raw_dir / EVENTS_DIRNAME
        for src in files.values():
            dest = events_dir / src.name
            shutil.copyfile(src, dest)
            copied = count_records(dest) or 0
            if copied != source_rows[src.name]:
                raise AccountingError(
                    src,
                    src.name.split(".")[0],
                    f"{source_rows[src.name]} records in the source but {copied} in the copy "
                    f"{dest}",
                    "check the free disk space and stage again",
                )
        for src in (products_path, candidates_path):
            shutil.copyfile(src, raw_dir / src.name)
        day = start
        while day <= last:
            if day not in files:
                empty_event_file(events_dir / f"{day.isoformat()}.parquet")
                empty += 1
            day += dt.timedelta(days=1)
        categories = category_table(products, candidates)
        notes["copied"] = True
        write_manifest(
            raw_dir,
            {
                "source": SOURCE,
                "path": str(path.resolve()),
                "start_date": start.isoformat(),
                "end_date": end.isoformat() if end else None,
                "timezone": "UTC",
                "rows": rows,
                "days": (last - start).days + 1,
                "empty_days": empty,
                "products": len(products),
                "candidates": len(candidates),
                "categories": categories,
                "skipped_files": [dataclasses.asdict(f) for f in skipped],
                "notes": notes,
            },
        )
    written = {
        "rows": rows,
        "days": (last - start).days + 1,
        "products": len(products),
        "candidates": len(candidates),
        "flagged": {},
        "categories": category_table(products, candidates),
    }
    summary = summary_from(SOURCE, path, raw_dir, start, last, written, notes)
    summary.skipped = skipped
    return summary


# --------------------------------------------------------------------------------------------
# one events file
# --------------------------------------------------------------------------------------------
def _stage_file(
    path: Path, raw_dir: Path, start: dt.date | None, end: dt.date | None
) -> StagingSummary:
    path = require_file(path, "events file")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise InputFileError(
            path, f"has an unsupported file type ({path.suffix})", "deliver CSV or Parquet"
        )
    folder = path.parent
    for stem in (PRODUCTS_STEM, CANDIDATES_STEM):
        try:
            find_table_file(folder, stem)
        except InputFileError as exc:
            raise InputFileError(
                exc.path,
                f"missing: a single events file needs {stem}.parquet or {stem}.csv beside it",
                f"put the {stem} file in {folder}",
            ) from exc
    products, _ = read_products(folder, PRODUCTS_STEM)
    candidates, _ = read_products(folder, CANDIDATES_STEM)
    con = connect()
    try:
        cols = (
            _stage_parquet(con, path)
            if path.suffix.lower() == ".parquet"
            else _stage_csv(con, path)
        )
        notes = _load_events(con, cols)
        start, end, moved = assign_days(con, "_cn_events", start=start, end=end, path=path)
        notes.update({"layout": "single events file", "rows_outside_range": moved})
        out = AdapterOutput("_cn_events", start, end, products, candidates, notes)
        written = write_raw_dir(con, out, source=SOURCE, path=path, raw_dir=raw_dir)
    finally:
        con.close()
    return summary_from(SOURCE, path, raw_dir, start, end, written, notes)


def _load_events(con: duckdb.DuckDBPyConnection, cols: list[str]) -> dict:
    select = ", ".join(
        f'CAST("{c}" AS VARCHAR) AS {c}' if c in cols else f"NULL::VARCHAR AS {c}"
        for c in EVENT_COLUMNS
        if c != "flag"
    )
    flag = "nullif(trim(CAST(flag AS VARCHAR)), '')" if "flag" in cols else "NULL::VARCHAR"
    nulls = ", ".join(f"NULL::VARCHAR AS {c}" for c in EVENT_COLUMNS if c != "flag")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _cn_events AS
        SELECT source_row AS seq, {timestamp_sql('CAST("ts" AS VARCHAR)')} AS t, {select},
               {flag} AS flag
        FROM _day_accepted
        UNION ALL
        SELECT source_row, NULL::TIMESTAMP, {nulls}, 'malformed_row' FROM _day_rejected
        """
    )
    malformed = con.execute(
        "SELECT source_row, parse_error, raw_line FROM _day_rejected ORDER BY 1 LIMIT 20"
    ).fetchall()
    n_malformed = con.execute("SELECT count(*) FROM _day_rejected").fetchall()[0][0]
    for name in ("_day_accepted", "_day_rejected"):  # views for Parquet, tables for CSV
        kind = con.execute(
            "SELECT CASE WHEN count(*) > 0 THEN 'VIEW' ELSE 'TABLE' END FROM duckdb_views() "
            "WHERE view_name = ? AND temporary",
            [name],
        ).fetchall()[0][0]
        con.execute(f"DROP {kind} IF EXISTS {name}")
    return {
        "malformed_lines": int(n_malformed),
        "malformed_examples": [
            {"record": int(r), "error": e, "line": (line or "")[:200]} for r, e, line in malformed
        ],
    }
