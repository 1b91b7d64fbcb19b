"""Alibaba Taobao UserBehavior -> the raw input contract.

Input: a CSV without header, one behaviour per line: ``user_id, item_id, category_id,
behavior_type, timestamp`` (behaviour ``pv | cart | fav | buy``, unix seconds). The file is read
line by line (as Latin-1, which can decode any byte: the format is ASCII digits and letters), so
a damaged line never stops staging: it is kept and quarantined.

==================  ==========================================================================
user_id, item_id    as delivered
event_type          ``pv`` -> ``view``, ``cart`` -> ``cart``, ``buy`` -> ``purchase``,
                    ``fav`` -> ``view`` by default (option ``fav_as="cart"`` to change it).
                    Why ``view``: a favourite is made from the item's page, so the user did see
                    the item; the contract has no wish-list type, and ``cart`` carries funnel
                    meaning downstream (cart-to-purchase conversion, quantities) that a
                    favourite does not have: counting favourites as carts would inflate
                    conversion features. What is lost: favourites are stronger interest than a
                    plain view. Any other behaviour is kept as delivered (cleaning:
                    ``invalid_event_type``).
ts                  the unix seconds as delivered (cleaning reads unix seconds)
quantity, price     empty: Taobao has no prices or quantities. Cleaning accepts a purchase
                    without a price only because the catalog price is empty too; revenue-based
                    planning (expected revenue, price bands) is meaningless for this source
flag                ``malformed_row`` for a line without exactly 5 fields (the sample's
                    truncated last line); ``outside_source_window`` for a timestamp outside the
                    official window (``window_start`` .. ``window_end``, default 2017-11-25 ..
                    2017-12-03, UTC days)
==================  ==========================================================================

Day files: a row goes to its timestamp's UTC day; a row outside the window to the nearest
boundary day (with its flag); a row without a readable timestamp (malformed or not a number) to
the day of the previous row in file order. Blank lines are not records: they are skipped and
counted in ``dataset.json``.

Products: one per item: title ``taobao item <id>``, category = the category id as text (the most
frequent one if an item appears under several; ties to the smallest id), brand ``unknown``, price
empty, launched_at = the item's first event in the window. Launch candidates: none. The catalog
step requires a candidate price, and Taobao has no prices: a candidate without one would be
rejected and its events would become ``unknown_item``. So every item stays in the catalog and
``candidates.parquet`` is empty (valid, zero rows).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

from launch_pipeline.adapters import StagingSummary, summary_from
from launch_pipeline.adapters.staging import (
    CANDIDATE_COLUMNS,
    AdapterOutput,
    as_date,
    assign_days,
    connect,
    require_file,
    sql_str,
    timestamp_sql,
    write_raw_dir,
)
from launch_pipeline.errors import ConfigurationError, InputFileError

SOURCE = "taobao"
EXPECTED = "user_id,item_id,category_id,behavior_type,timestamp (no header; pv|cart|fav|buy)"
BEHAVIOURS = {"pv": "view", "cart": "cart", "buy": "purchase"}
WINDOW = (dt.date(2017, 11, 25), dt.date(2017, 12, 3))


def stage(
    path: Path,
    raw_dir: Path,
    *,
    fav_as: str = "view",
    window_start: str | dt.date | None = WINDOW[0],
    window_end: str | dt.date | None = WINDOW[1],
) -> StagingSummary:
    if fav_as not in ("view", "cart"):
        raise ConfigurationError(f"fav_as must be 'view' or 'cart' (got {fav_as!r})")
    path = require_file(path)
    start_opt = as_date(window_start, "window_start")
    end_opt = as_date(window_end, "window_end")
    con = connect()
    try:
        blank, header = _read_lines(con, path)
        _map_events(con, fav_as)
        start, end, moved = assign_days(con, "_tb_events", start=start_opt, end=end_opt, path=path)
        products = _products(con)
        notes = _notes(con, blank, header, moved, fav_as, start_opt, end_opt)
        out = AdapterOutput(
            "_tb_events",
            start,
            end,
            products,
            pd.DataFrame(columns=list(CANDIDATE_COLUMNS)),
            notes,
            cleaning={"purchase_price_required": False},  # the log has no prices at all
        )
        written = write_raw_dir(con, out, source=SOURCE, path=path, raw_dir=raw_dir)
    finally:
        con.close()
    return summary_from(SOURCE, path, raw_dir, start, end, written, notes)


def _read_lines(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[int, bool]:
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _tb_lines AS
            SELECT row_number() OVER () - 1 AS seq, line
            FROM read_csv({sql_str(path)}, columns={{'line': 'VARCHAR'}}, header=false,
                          delim=chr(31), quote='', escape='', auto_detect=false,
                          strict_mode=false, max_line_size=1048576, encoding='latin-1')
            """
        )
    except duckdb.Error as exc:
        raise InputFileError(
            path, f"cannot be read as text ({str(exc).splitlines()[0]})", "deliver the CSV again"
        ) from exc
    first = con.execute(
        "SELECT seq, line FROM _tb_lines WHERE nullif(trim(line), '') IS NOT NULL "
        "ORDER BY seq LIMIT 1"
    ).fetchall()
    if not first:
        raise InputFileError(path, "has no data lines", f"deliver the file with lines {EXPECTED}")
    seq0, line0 = first[0]
    fields = [f.strip() for f in line0.split(",")]
    header = len(fields) == 5 and fields[0].lower() in ("user_id", "userid", "user")
    if header:
        con.execute("DELETE FROM _tb_lines WHERE seq = ?", [seq0])
    elif len(fields) != 5 or fields[3].lower() not in (*BEHAVIOURS, "fav"):
        raise InputFileError(
            path,
            f"does not look like Taobao UserBehavior: its first line {line0[:80]!r} has "
            f"{len(fields)} fields, missing columns "
            f"{['user_id', 'item_id', 'category_id', 'behavior_type', 'timestamp'][len(fields) :] or ['a pv|cart|fav|buy behavior_type']}",
            f"deliver lines {EXPECTED}, or pick the right --source",
        )
    blank = con.execute(
        "SELECT count(*) FROM _tb_lines WHERE nullif(trim(line), '') IS NULL"
    ).fetchall()[0][0]
    con.execute("DELETE FROM _tb_lines WHERE nullif(trim(line), '') IS NULL")
    return int(blank), header


def _map_events(con: duckdb.DuckDBPyConnection, fav_as: str) -> None:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in {**BEHAVIOURS, "fav": fav_as}.items())
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _tb_events AS
        WITH f AS (
            SELECT seq, string_split(line, ',') AS p FROM _tb_lines
        ), v AS (
            SELECT seq, len(p) AS n,
                   nullif(trim(p[1]), '') AS u, nullif(trim(p[2]), '') AS i,
                   nullif(trim(p[3]), '') AS c, nullif(trim(p[4]), '') AS b,
                   nullif(trim(p[5]), '') AS ts
            FROM f
        )
        SELECT seq,
               CASE WHEN n = 5 THEN {timestamp_sql("ts")} END AS t,
               u AS user_id, i AS item_id,
               CASE lower(b) {cases} ELSE b END AS event_type,
               ts,
               NULL::VARCHAR AS quantity, NULL::VARCHAR AS price, NULL::VARCHAR AS rating,
               NULL::VARCHAR AS review_text, NULL::VARCHAR AS session_id,
               CASE WHEN n <> 5 THEN 'malformed_row' END AS flag,
               c AS category_id
        FROM v
        """
    )
    con.execute("DROP TABLE _tb_lines")


def _products(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        """
        WITH ok AS (
            SELECT item_id, category_id, t, day FROM _tb_events
            WHERE flag IS NULL AND item_id IS NOT NULL
        ), cats AS (
            SELECT item_id, category_id,
                   row_number() OVER (PARTITION BY item_id
                       ORDER BY count(*) DESC, TRY_CAST(category_id AS BIGINT), category_id) AS rk
            FROM ok WHERE category_id IS NOT NULL GROUP BY 1, 2
        )
        SELECT o.item_id, 'taobao item ' || o.item_id AS title,
               coalesce(any_value(c.category_id), 'unknown') AS category,
               'unknown' AS brand, NULL::VARCHAR AS price,
               strftime(min(o.t), '%Y-%m-%dT%H:%M:%SZ') AS launched_at
        FROM ok o LEFT JOIN cats c ON c.item_id = o.item_id AND c.rk = 1
        GROUP BY o.item_id ORDER BY o.item_id
        """
    ).df()


def _notes(con, blank, header, moved, fav_as, start_opt, end_opt) -> dict:
    behaviours = dict(
        con.execute(
            "SELECT coalesce(event_type, '(empty)'), count(*) FROM _tb_events GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    return {
        "event_types": {k: int(v) for k, v in behaviours.items()},
        "fav_mapped_to": fav_as,
        "window": [str(start_opt) if start_opt else None, str(end_opt) if end_opt else None],
        "rows_outside_window": moved,
        "blank_lines_skipped": blank,
        "header_line_skipped": header,
        "prices": "none in Taobao: price empty, revenue-based planning is meaningless",
        "candidates": "none: the catalog requires a candidate price and Taobao has none",
    }
