"""REES46 multi-category store events -> the raw input contract.

Input: the monthly CSV (or a Parquet conversion of it) with the header ``event_time, event_type,
product_id, category_id, category_code, brand, price, user_id, user_session``.
``category_code``, ``brand`` and ``user_session`` may be empty or absent.

==================  ==========================================================================
user_id, item_id    ``user_id``, ``product_id`` as delivered
event_type          as delivered: ``view``, ``cart``, ``purchase`` are contract types; anything
                    else (``remove_from_cart`` in the later months) is kept and cleaning
                    quarantines it as ``invalid_event_type``
ts                  ``event_time`` as delivered (``2019-10-01 00:00:00 UTC``; cleaning reads it)
price               as delivered; quantity empty (REES46 has none: cleaning counts 1)
session_id          ``user_session``
flag                ``outside_source_window`` only when ``start_date``/``end_date`` options cut
                    the range; empty otherwise
==================  ==========================================================================

Products (one per ``product_id``, from its events): title ``<brand> <last part of
category_code> <product_id>`` (e.g. ``lenovo notebook 1307067``); category = ``category_code``
(its most frequent value) or ``category <category_id>`` when the code is empty; brand = the most
frequent brand or ``unknown``; price = the median positive price; launched_at = the first
event (REES46 is a live store log: an item shows up in views before it sells).

Launch candidates: the items first seen in the last ``candidate_days`` (default 30) days of
the data, capped at a quarter of the data's days and never its first day (in a short log every
item is "new"). Price = the first positive price seen. On the 17-minute public sample the cap
leaves no candidate window, so ``candidates.parquet`` is empty.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

from launch_pipeline.adapters import StagingSummary, summary_from
from launch_pipeline.adapters.staging import (
    AdapterOutput,
    as_date,
    assign_days,
    candidate_window,
    connect,
    load_source_table,
    resolve_columns,
    split_candidates,
    timestamp_sql,
    write_raw_dir,
)
from launch_pipeline.warehouse import quote_identifier

SOURCE = "rees46"
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "event_time": ("event_time",),
    "event_type": ("event_type",),
    "product_id": ("product_id",),
    "category_id": ("category_id",),
    "category_code": ("category_code",),
    "brand": ("brand",),
    "price": ("price",),
    "user_id": ("user_id",),
    "user_session": ("user_session",),
}
REQUIRED = ("event_time", "event_type", "product_id", "category_id", "price", "user_id")
EXPECTED = (
    "event_time, event_type, product_id, category_id, category_code, brand, price, user_id, "
    "user_session"
)


def stage(
    path: Path,
    raw_dir: Path,
    *,
    candidate_days: int = 30,
    start_date: str | dt.date | None = None,
    end_date: str | dt.date | None = None,
) -> StagingSummary:
    notes: dict = {}
    con = connect()
    try:
        cols = load_source_table(con, path, "_rr_src", notes)
        c = resolve_columns(path, cols, COLUMN_ALIASES, REQUIRED, EXPECTED)
        q = {k: (quote_identifier(v) if v else "NULL::VARCHAR") for k, v in c.items()}
        _map_events(con, q)
        start, end, moved = assign_days(
            con,
            "_rr_events",
            start=as_date(start_date, "start_date"),
            end=as_date(end_date, "end_date"),
            path=path,
        )
        products, candidates, cat_notes = _catalog(con, start, end, candidate_days)
        notes.update(cat_notes)
        notes["rows_outside_range"] = moved
        notes["event_types"] = dict(
            con.execute(
                "SELECT coalesce(event_type, '(empty)'), count(*) FROM _rr_events "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        out = AdapterOutput("_rr_events", start, end, products, candidates, notes)
        written = write_raw_dir(con, out, source=SOURCE, path=path, raw_dir=raw_dir)
    finally:
        con.close()
    return summary_from(SOURCE, path, raw_dir, start, end, written, notes)


def _map_events(con: duckdb.DuckDBPyConnection, q: dict) -> None:
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _rr_events AS
        SELECT __seq AS seq,
               {timestamp_sql(q["event_time"])} AS t,
               nullif(trim({q["user_id"]}), '') AS user_id,
               nullif(trim({q["product_id"]}), '') AS item_id,
               nullif(trim({q["event_type"]}), '') AS event_type,
               nullif(trim({q["event_time"]}), '') AS ts,
               NULL::VARCHAR AS quantity,
               nullif(trim({q["price"]}), '') AS price,
               NULL::VARCHAR AS rating, NULL::VARCHAR AS review_text,
               nullif(trim({q["user_session"]}), '') AS session_id,
               NULL::VARCHAR AS flag,
               nullif(trim({q["category_id"]}), '') AS category_id,
               nullif(trim({q["category_code"]}), '') AS category_code,
               nullif(trim({q["brand"]}), '') AS brand
        FROM _rr_src
        """
    )
    con.execute("DROP TABLE _rr_src")


def _catalog(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, candidate_days: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    items = con.execute(
        """
        WITH ok AS (
            SELECT *, TRY_CAST(price AS DOUBLE) AS p FROM _rr_events
            WHERE flag IS NULL AND item_id IS NOT NULL
        ), cat AS (
            SELECT item_id, coalesce(category_code, 'category ' || category_id) AS category,
                   row_number() OVER (PARTITION BY item_id
                       ORDER BY count(*) DESC, min(seq)) AS rk
            FROM ok WHERE coalesce(category_code, category_id) IS NOT NULL GROUP BY 1, 2
        ), br AS (
            SELECT item_id, lower(brand) AS brand,
                   row_number() OVER (PARTITION BY item_id
                       ORDER BY count(*) DESC, min(seq)) AS rk
            FROM ok WHERE brand IS NOT NULL GROUP BY 1, 2
        ), s AS (
            SELECT item_id, median(p) FILTER (WHERE p > 0) AS price,
                   first(p ORDER BY t, seq) FILTER (WHERE p > 0) AS first_price,
                   min(t) AS first_seen
            FROM ok GROUP BY 1
        )
        SELECT s.item_id,
               concat_ws(' ', br.brand,
                         nullif(replace(list_last(string_split(c.category, '.')), '_', ' '), ''),
                         s.item_id) AS title,
               coalesce(c.category, 'unknown') AS category,
               coalesce(br.brand, 'unknown') AS brand,
               CAST(round(s.price, 4) AS VARCHAR) AS price,
               CAST(round(s.first_price, 4) AS VARCHAR) AS first_price,
               strftime(s.first_seen, '%Y-%m-%dT%H:%M:%SZ') AS launched_at,
               CAST(s.first_seen AS DATE) AS first_day
        FROM s LEFT JOIN cat c ON c.item_id = s.item_id AND c.rk = 1
               LEFT JOIN br ON br.item_id = s.item_id AND br.rk = 1
        ORDER BY s.item_id
        """
    ).df()
    # a title from a category id ("category 2103807459595387724") says nothing: brand + id
    plain = items["category"].str.startswith("category ") | (items["category"] == "unknown")
    items.loc[plain, "title"] = (
        items.loc[plain, "brand"].where(items.loc[plain, "brand"] != "unknown", "item")
        + " "
        + items.loc[plain, "item_id"]
    )
    cutoff, days = candidate_window(start, end, candidate_days)
    products, candidates = split_candidates(items, "first_day", cutoff, require="first_price")
    notes = {
        "candidates_rule": (
            f"items first seen in the last {days} days ({cutoff} .. {end}); price = first "
            "positive price; they are not in products"
            if cutoff
            else "none: the data is too short for a candidate window (it never covers more "
            "than a quarter of the days, nor the first day)"
        ),
        "candidate_window_days": days,
        "category_method": "category_code, else 'category <category_id>'",
    }
    return products, candidates, notes
