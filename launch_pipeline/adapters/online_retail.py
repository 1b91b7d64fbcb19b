"""UCI Online Retail (2010-2011) and Online Retail II (2009-2011) -> the raw input contract.

Input: one file (CSV, Parquet or Excel; Online Retail II's two sheets are read together) with
the invoice lines ``InvoiceNo|Invoice, StockCode, Description, Quantity, InvoiceDate,
UnitPrice|Price, CustomerID|Customer ID, Country`` (names matched case- and space-insensitively;
``Description`` and ``Country`` may be absent).

One event per invoice line, nothing dropped (``raw = clean + quarantined`` holds on the source's
own row count):

==================  ==========================================================================
user_id             ``CustomerID`` as an integer text (``17850.0`` -> ``17850``); EMPTY when the
                    line has no customer, so cleaning quarantines it as ``missing_user_id``
item_id             ``StockCode``, trimmed and upper-cased (``85123a`` and ``85123A`` are the
                    same product in this data)
event_type          ``return`` when the quantity is negative or the invoice starts with ``C``
                    (a cancellation), else ``purchase``
ts                  ``InvoiceDate`` as ISO 8601 UTC (the shop's UK local time is taken as UTC:
                    at most one hour off in summer, never changes the day for this shop's
                    08:00-20:00 trading hours); an explicit offset (``+01:00``) is converted
                    to UTC; a zone abbreviation such as ``BST`` (British Summer or Bangladesh
                    Standard Time?) is kept as delivered (cleaning: ``ambiguous_time_zone``).
                    Slash dates like ``12/1/2010 8:26`` are read month-first or day-first
                    only when the file proves which (a first number above 12 means
                    day-first, a second one above 12 month-first); a file where every date
                    fits both orders, or that mixes them, stops with a request for the option
                    ``date_format`` (``--date-format``); a date that cannot be read is kept
                    as delivered (cleaning: ``invalid_timestamp``)
quantity            the absolute quantity (a return of 12 is ``return`` with quantity 12)
price               ``UnitPrice`` exactly as delivered (so cleaning's ``invalid_price`` sees the
                    zero and negative prices); prices written with a decimal comma
                    (``2,55``) stop staging unless the option ``decimal_comma`` says so (then
                    ``1.234,56`` -> ``1234.56``)
session_id          the invoice number (one basket)
flag                ``non_product_code`` for postage, fees, manual lines, discounts, samples,
                    gift vouchers, bad-debt adjustments (:data:`NON_PRODUCT_CODES`,
                    :data:`NON_PRODUCT_PATTERNS`); ``stock_adjustment`` for negative quantities on
                    a non-cancellation invoice (stock write-offs such as "damaged", "thrown
                    away", never with a customer); empty otherwise
==================  ==========================================================================

Exact duplicate lines stay duplicated: cleaning quarantines every copy after the first as
``exact_duplicate``.

The catalog is derived from the product lines (every row without a flag):

* title: the most frequent description of the stock code, preferring descriptions of lines
  with a positive price (stock-adjustment notes such as "?" or "damaged" only win when nothing
  else exists); mis-decoded text is repaired (``Â£`` -> ``£``, see :func:`fix_mojibake`);
* category: :mod:`launch_pipeline.adapters.categories` (keyword taxonomy on the title);
* brand: the data has none. ``stock family NNNxx`` (the first three digits of a numeric stock
  code: the shop's own numbering block, which groups related designs and colour variants and
  roughly follows when a code was created) is used as a stand-in; ``unknown`` for codes that
  are not numeric, or everywhere with the option ``brand="unknown"``;
* price: the median unit price of its purchase lines with a positive price (of any positive
  line when it has no such purchase; empty when it never had a positive price);
* launched_at: the first sale (first purchase line with a positive price and quantity).

Launch candidates: the products whose first sale falls in the last ``candidate_days`` (default
30) days of the data go to ``candidates.parquet`` (title, category, brand, price = the unit
price of that first sale, launched_at) and NOT to ``products.parquet``. All their events are
kept: cleaning counts candidates as known items.

Staging a past cutoff (the backtest, ``launch_pipeline/backtest.py``): with
``history_before=T`` only the lines dated before ``T`` (00:00 UTC) are staged, the partition
range ends the day before ``T`` and the catalog (titles, prices, first sales) is derived from
those lines alone. With ``candidates_window=(T, T + H)`` as well, the candidates are the products
whose first sale falls in ``[T, T + H)``, described only by what is known at their launch: the
description of that first sale line (repaired as above), its category and stock family, and
its unit price; ``launched_at`` is left empty (when to launch is what the plan decides). Nothing
else at or after ``T`` is read into the output: not their later lines, not other products'.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pandas as pd

from launch_pipeline.adapters import StagingSummary, summary_from
from launch_pipeline.adapters.categories import categorize
from launch_pipeline.adapters.staging import (
    AdapterOutput,
    ambiguous_zone_sql,
    as_date,
    assign_days,
    candidate_window,
    connect,
    cutoff_options,
    keep_history,
    load_source_table,
    resolve_columns,
    split_candidates,
    sql_str,
    write_raw_dir,
)
from launch_pipeline.errors import ConfigurationError, InputFileError
from launch_pipeline.warehouse import quote_identifier

SOURCE = "online_retail"
# Cleaning thresholds that suit this shop (written to dataset.json, applied by Settings):
# a basket is recorded as up to 543 invoice lines in one minute, and guest checkouts (no
# CustomerID) are up to 88% of some days' lines.
CLEANING_OVERRIDES = {"bot_events_per_minute": 1000, "max_quarantined_share": 0.95}

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "invoice": ("InvoiceNo", "Invoice"),
    "stock_code": ("StockCode",),
    "description": ("Description",),
    "quantity": ("Quantity",),
    "invoice_date": ("InvoiceDate",),
    "unit_price": ("UnitPrice", "Price"),
    "customer_id": ("CustomerID", "Customer ID"),
    "country": ("Country",),
}
REQUIRED = ("invoice", "stock_code", "quantity", "invoice_date", "unit_price", "customer_id")
EXPECTED = (
    "InvoiceNo (or Invoice), StockCode, Description, Quantity, InvoiceDate, UnitPrice (or "
    "Price), CustomerID (or Customer ID), Country"
)

NON_PRODUCT_CODES: tuple[str, ...] = (
    "POST",  # postage
    "DOT",  # dotcom postage
    "C2",  # carriage
    "M",  # manual line
    "D",  # discount
    "S",  # samples
    "B",  # adjust bad debt
    "BANK CHARGES",
    "AMAZONFEE",
    "CRUK",  # charity commission
    "PADS",  # "pads to match all cushions", priced 0.001
)
NON_PRODUCT_PATTERNS: tuple[str, ...] = (
    "GIFT_.*",  # gift vouchers (gift_0001_10 ...)
    "ADJUST.*",  # Online Retail II adjustments
    "TEST.*",  # Online Retail II test lines
)

DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%y %H:%M")
"""Month-first slash dates (the UCI/Kaggle CSV export)."""
DAY_FIRST_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%y %H:%M")
_SLASH_DATE = "^[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}"

_MOJIBAKE = re.compile("[ÂÃâ][\u0080-\u00bf\u2018-\u203a\u0152\u0153\u0160\u0161\u0178\u017d]")


def fix_mojibake(text: str | None) -> str | None:
    """Repair UTF-8 text that was decoded as Latin-1/cp1252 (``Â£`` -> ``£``, ``Ã©`` -> ``é``).

    Only text with a tell-tale sequence is touched, and only when re-decoding succeeds (for the
    whole string); anything else comes back unchanged."""
    if not text or not _MOJIBAKE.search(text):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            fixed = text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != text:
            return fixed
    return text


def non_product_sql(code: str) -> str:
    listed = ", ".join(sql_str(c) for c in NON_PRODUCT_CODES)
    patterns = " OR ".join(f"regexp_full_match({code}, {sql_str(p)})" for p in NON_PRODUCT_PATTERNS)
    return f"({code} IN ({listed}) OR {patterns})"


def _date_sql(col: str, date_format: str | None, order: str = "month-first") -> str:
    """SQL reading ``col`` as a UTC timestamp: ISO 8601 (an offset converted to UTC, no offset
    taken as UTC; an ambiguous zone abbreviation gives NULL), then the slash formats of
    ``order`` (or ``date_format`` alone)."""
    x = f"nullif(trim({col}), '')"
    if date_format:
        return f"try_strptime({x}, {sql_str(date_format)})"
    formats = DAY_FIRST_FORMATS if order == "day-first" else DATE_FORMATS
    fmts = ", ".join(f"try_strptime({x}, {sql_str(f)})" for f in formats)
    iso = (
        f"CASE WHEN {ambiguous_zone_sql(x)} THEN NULL "
        f"ELSE TRY_CAST({x} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' END"
    )
    return f"coalesce({iso}, {fmts})"


def date_order(
    con: duckdb.DuckDBPyConnection, col: str, path: Path, date_format: str | None
) -> tuple[str, dict]:
    """Which way round the file's slash dates are (``dd/mm`` or ``mm/dd``), from evidence only.

    Returns (order, notes); raises :class:`InputFileError` when the dates fit both orders or
    mix them and no ``date_format`` was given: reading them either way would be a guess."""
    if date_format:
        return "explicit", {"date_format": date_format}
    x = f"trim(CAST({col} AS VARCHAR))"
    n, day_first, month_first, ex_day, ex_month, ex_any = con.execute(
        f"""
        WITH d AS (
            SELECT {x} AS v,
                   TRY_CAST(split_part({x}, '/', 1) AS INTEGER) AS a,
                   TRY_CAST(split_part({x}, '/', 2) AS INTEGER) AS b
            FROM _or_src WHERE regexp_matches({x}, '{_SLASH_DATE}')
        )
        SELECT count(*), count(*) FILTER (WHERE a > 12), count(*) FILTER (WHERE b > 12),
               min(v) FILTER (WHERE a > 12), min(v) FILTER (WHERE b > 12), min(v)
        FROM d
        """
    ).fetchall()[0]
    if not n:
        return "iso", {}
    ask = (
        "pass the format explicitly: --date-format '%d/%m/%Y %H:%M' (day first) or "
        "--date-format '%m/%d/%Y %H:%M' (month first)"
    )
    if day_first and month_first:
        raise InputFileError(
            path,
            f"InvoiceDate mixes day-first dates ({day_first:,}, e.g. {ex_day!r}) and month-first "
            f"dates ({month_first:,}, e.g. {ex_month!r})",
            "deliver the dates in one format, or " + ask,
        )
    if not day_first and not month_first:
        raise InputFileError(
            path,
            f"InvoiceDate is ambiguous: all {n:,} slash dates (e.g. {ex_any!r}) fit both "
            "day-first and month-first",
            ask,
        )
    order = "day-first" if day_first else "month-first"
    example = ex_day if day_first else ex_month
    return order, {
        "date_order": f"{order}: {max(day_first, month_first):,} of {n:,} slash dates prove it "
        f"(e.g. {example!r})"
    }


def decimal_comma_check(
    con: duckdb.DuckDBPyConnection, col: str, path: Path, decimal_comma: bool
) -> dict:
    """Prices written with a decimal comma (``2,55``) are refused unless ``decimal_comma``."""
    x = f"trim(CAST({col} AS VARCHAR))"
    n, example = con.execute(
        f"SELECT count(*), min({x}) FROM _or_src WHERE {x} LIKE '%,%'"
    ).fetchall()[0]
    if decimal_comma:
        return {"decimal_comma": f"prices read with a decimal comma ({n:,} values had one)"}
    if n:
        raise InputFileError(
            path,
            f"UnitPrice has {n:,} values with a comma (e.g. {example!r}): a decimal comma or a "
            "thousands separator cannot be told apart safely",
            "pass --decimal-comma if the comma is the decimal separator (1.234,56 = 1234.56), "
            "or deliver prices with a decimal point",
        )
    return {}


def stage(
    path: Path,
    raw_dir: Path,
    *,
    candidate_days: int = 30,
    start_date: str | dt.date | None = None,
    end_date: str | dt.date | None = None,
    date_format: str | None = None,
    decimal_comma: bool = False,
    brand: str = "stock_family",
    history_before: str | dt.date | None = None,
    candidates_window: tuple | None = None,
) -> StagingSummary:
    if brand not in ("stock_family", "unknown"):
        raise ConfigurationError(f"brand must be 'stock_family' or 'unknown' (got {brand!r})")
    cut, window = cutoff_options(history_before, candidates_window)
    if cut is not None:
        bound = cut - dt.timedelta(days=1)
        end_date = min(as_date(end_date, "end_date") or bound, bound)
    notes: dict = {}
    con = connect()
    try:
        cols = load_source_table(con, path, "_or_src", notes)
        c = resolve_columns(path, cols, COLUMN_ALIASES, REQUIRED, EXPECTED)
        q = {k: (quote_identifier(v) if v else "NULL::VARCHAR") for k, v in c.items()}
        notes["columns"] = {k: v for k, v in c.items() if v}
        order, date_notes = date_order(con, q["invoice_date"], path, date_format)
        notes.update(date_notes)
        notes.update(decimal_comma_check(con, q["unit_price"], path, decimal_comma))
        _map_events(con, q, date_format, order, decimal_comma)
        cutoff_candidates = None
        if cut is not None:
            if window is not None:
                cutoff_candidates = _window_candidates(con, cut, window, brand)
            notes["cutoff"] = keep_history(con, "_or_events", cut, window)
            con.execute("DELETE FROM _or_lines WHERE seq NOT IN (SELECT seq FROM _or_events)")
        start, end, moved = assign_days(
            con,
            "_or_events",
            start=as_date(start_date, "start_date"),
            end=as_date(end_date, "end_date"),
            path=path,
        )
        products, candidates, cat_notes = _catalog(
            con, start, end, 0 if cut is not None else candidate_days, brand
        )
        notes.update(cat_notes)
        if cut is not None:
            candidates = (
                cutoff_candidates if cutoff_candidates is not None else candidates.iloc[0:0]
            )
            products = products[~products["item_id"].isin(candidates["item_id"])]
            products = products.reset_index(drop=True)
            notes["candidates_rule"] = (
                f"products whose first sale falls in [{window[0]}, {window[1]}): title = the "
                "description of that first sale line, price = its unit price, launched_at "
                "empty; not in products"
                if window is not None
                else f"none: history before {cut} only"
            )
        notes.update(_mapping_notes(con, moved))
        out = AdapterOutput(
            "_or_events", start, end, products, candidates, notes, cleaning=CLEANING_OVERRIDES
        )
        written = write_raw_dir(con, out, source=SOURCE, path=path, raw_dir=raw_dir)
    finally:
        con.close()
    return summary_from(SOURCE, path, raw_dir, start, end, written, notes)


def _window_candidates(
    con: duckdb.DuckDBPyConnection, cut: dt.date, window: tuple[dt.date, dt.date], brand: str
) -> pd.DataFrame:
    """The products first sold in ``[lo, hi)`` and never before ``cut``, described by their first
    sale line only (description, unit price) plus what the history says about the code."""
    lo, hi = window
    brand_sql = (
        "CASE WHEN regexp_full_match(item_id, '[0-9]{5}.*') "
        "THEN 'stock family ' || left(item_id, 3) || 'xx' ELSE 'unknown' END"
        if brand == "stock_family"
        else "'unknown'"
    )
    sale = "e.event_type = 'purchase' AND l.qty > 0 AND l.price > 0"
    df = con.execute(
        f"""
        WITH ok AS (
            SELECT e.item_id, e.event_type, l.seq, l.t, l.qty, l.price, l.descr
            FROM _or_events e JOIN _or_lines l USING (seq)
            WHERE e.flag IS NULL AND e.item_id IS NOT NULL AND l.t IS NOT NULL
        ), first_sales AS (
            SELECT e.item_id, l.seq, l.t, l.price, l.descr,
                   row_number() OVER (PARTITION BY e.item_id ORDER BY l.t, l.seq) AS rk
            FROM _or_events e JOIN _or_lines l USING (seq)
            WHERE e.flag IS NULL AND e.item_id IS NOT NULL AND l.t IS NOT NULL AND {sale}
              AND l.t < $hi
        ), known_before AS (   -- a description seen before the cutoff, for an empty one
            SELECT item_id, first(descr ORDER BY n DESC, descr) AS descr
            FROM (SELECT item_id, descr, count(*) AS n FROM ok
                  WHERE t < $cut AND descr IS NOT NULL GROUP BY 1, 2)
            GROUP BY 1
        )
        SELECT f.item_id, coalesce(f.descr, k.descr, f.item_id) AS title,
               {brand_sql} AS brand, f.price AS first_price
        FROM first_sales f LEFT JOIN known_before k USING (item_id)
        WHERE f.rk = 1 AND f.t >= $lo
        ORDER BY f.item_id
        """,
        {
            "cut": dt.datetime.combine(cut, dt.time()),
            "lo": dt.datetime.combine(lo, dt.time()),
            "hi": dt.datetime.combine(hi, dt.time()),
        },
    ).df()
    df["title"] = [fix_mojibake(t) for t in df["title"]]
    df["category"] = [categorize(t) for t in df["title"]]
    df["price"] = [None if pd.isna(p) else str(round(float(p), 4)) for p in df["first_price"]]
    df["launched_at"] = None
    return df[["item_id", "title", "category", "brand", "price", "launched_at"]]


def _map_events(
    con: duckdb.DuckDBPyConnection,
    q: dict,
    date_format: str | None,
    order: str = "month-first",
    decimal_comma: bool = False,
) -> None:
    code = f"upper(trim(CAST({q['stock_code']} AS VARCHAR)))"
    price = f"trim({q['unit_price']})"
    if decimal_comma:
        price = f"replace(replace({price}, '.', ''), ',', '.')"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _or_lines AS
        SELECT __seq AS seq,
               nullif(trim({q["invoice"]}), '') AS invoice,
               nullif({code}, '') AS code,
               nullif(regexp_replace(trim({q["description"]}), '\\s+', ' ', 'g'), '') AS descr,
               nullif(trim({q["quantity"]}), '') AS qty_raw,
               TRY_CAST(trim({q["quantity"]}) AS DOUBLE) AS qty,
               nullif(trim({q["invoice_date"]}), '') AS date_raw,
               {_date_sql(q["invoice_date"], date_format, order)} AS t,
               nullif({price}, '') AS price_raw,
               TRY_CAST({price} AS DOUBLE) AS price,
               nullif(regexp_replace(trim({q["customer_id"]}), '\\.0+$', ''), '') AS customer
        FROM _or_src
        """
    )
    con.execute("DROP TABLE _or_src")
    is_cancel = "coalesce(upper(invoice) LIKE 'C%', false)"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _or_events AS
        SELECT seq, t,
               customer AS user_id,
               code AS item_id,
               CASE WHEN qty < 0 OR {is_cancel} THEN 'return' ELSE 'purchase' END AS event_type,
               coalesce(strftime(t, '%Y-%m-%dT%H:%M:%SZ'), date_raw) AS ts,
               CASE WHEN starts_with(qty_raw, '-') THEN substr(qty_raw, 2) ELSE qty_raw END
                   AS quantity,
               price_raw AS price,
               NULL::VARCHAR AS rating,
               NULL::VARCHAR AS review_text,
               invoice AS session_id,
               CASE WHEN code IS NOT NULL AND {non_product_sql("code")} THEN 'non_product_code'
                    WHEN qty < 0 AND NOT {is_cancel} THEN 'stock_adjustment'
               END AS flag
        FROM _or_lines
        """
    )


def _catalog(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, candidate_days: int, brand: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(products, candidates, notes) derived from the unflagged lines."""
    descs = con.execute(
        "SELECT DISTINCT descr FROM _or_lines WHERE descr IS NOT NULL ORDER BY 1"
    ).fetchall()
    fixes = {d: fix_mojibake(d) for (d,) in descs}
    repaired = {k: v for k, v in fixes.items() if v != k}
    con.register(
        "_or_desc_fix",
        pd.DataFrame(  # typed as text even when empty (a file without descriptions)
            {
                "descr": pd.Series(list(fixes), dtype="string"),
                "fixed": pd.Series(list(fixes.values()), dtype="string"),
            }
        ),
    )
    brand_sql = (
        "CASE WHEN regexp_full_match(s.item_id, '[0-9]{5}.*') "
        "THEN 'stock family ' || left(s.item_id, 3) || 'xx' ELSE 'unknown' END"
        if brand == "stock_family"
        else "'unknown'"
    )
    items = con.execute(
        f"""
        WITH ok AS (   -- product lines: every row without an adapter flag
            SELECT e.item_id, e.event_type, l.* EXCLUDE (code)
            FROM _or_events e JOIN _or_lines l USING (seq)
            WHERE e.flag IS NULL AND e.item_id IS NOT NULL
        ), titles AS (
            SELECT ok.item_id, f.fixed AS title,
                   row_number() OVER (PARTITION BY ok.item_id
                       ORDER BY max(ok.price > 0) DESC, count(*) DESC, min(ok.seq)) AS rk
            FROM ok JOIN _or_desc_fix f ON f.descr = ok.descr
            GROUP BY ok.item_id, f.fixed
        ), stats AS (
            SELECT item_id,
                   coalesce(median(price) FILTER (WHERE qty > 0 AND price > 0
                                                  AND event_type = 'purchase'),
                            median(price) FILTER (WHERE price > 0)) AS price,
                   min(t) FILTER (WHERE qty > 0 AND price > 0 AND event_type = 'purchase')
                       AS first_sale,
                   first(price ORDER BY t, seq) FILTER (
                       WHERE qty > 0 AND price > 0 AND event_type = 'purchase') AS first_price,
                   count(*) AS lines
            FROM ok GROUP BY 1
        )
        SELECT s.item_id, coalesce(t.title, s.item_id) AS title,
               {brand_sql} AS brand,
               CAST(round(s.price, 4) AS VARCHAR) AS price,
               CAST(round(s.first_price, 4) AS VARCHAR) AS first_price,
               strftime(s.first_sale, '%Y-%m-%dT%H:%M:%SZ') AS launched_at,
               CAST(s.first_sale AS DATE) AS first_sale_day
        FROM stats s LEFT JOIN titles t ON t.item_id = s.item_id AND t.rk = 1
        ORDER BY s.item_id
        """
    ).df()
    con.unregister("_or_desc_fix")
    items["category"] = [categorize(t) for t in items["title"]]
    cutoff, days = candidate_window(start, end, candidate_days)
    products, candidates = split_candidates(items, "first_sale_day", cutoff)
    notes = {
        "candidates_rule": (
            f"products whose first sale falls in the last {days} days ({cutoff} .. {end}); "
            "price = the unit price of that first sale; they are not in products"
            if cutoff
            else "none: the data is too short for a candidate window"
        ),
        "candidate_window_days": days,
        "category_method": "keyword taxonomy on the title (launch_pipeline/adapters/categories.py)",
        "brand": (
            "stock family NNNxx (first three digits of the stock code): not a brand, the shop's "
            "numbering block"
            if brand == "stock_family"
            else "unknown (the data has no brand)"
        ),
        "descriptions_repaired": {k: v for k, v in sorted(repaired.items())},
    }
    return products, candidates, notes


def _mapping_notes(con: duckdb.DuckDBPyConnection, moved: int) -> dict:
    row = con.execute(
        """
        SELECT count(*) FILTER (WHERE event_type = 'purchase'),
               count(*) FILTER (WHERE event_type = 'return'),
               count(*) FILTER (WHERE user_id IS NULL),
               count(*) FILTER (WHERE t IS NULL)
        FROM _or_events
        """
    ).fetchall()[0]
    return {
        "purchase_lines": int(row[0]),
        "return_lines": int(row[1]),
        "lines_without_customer": int(row[2]),
        "unparseable_dates": int(row[3]),
        "rows_outside_range": moved,
        "timezone_assumption": "InvoiceDate (UK local time) taken as UTC",
        "non_product_codes": list(NON_PRODUCT_CODES),
        "non_product_patterns": list(NON_PRODUCT_PATTERNS),
        "missing_customer": "user_id left empty: cleaning quarantines as missing_user_id",
        "cleaning_overrides": (
            "events are invoice lines: a basket is up to 543 lines of one customer in one "
            "minute, so bot_events_per_minute is raised to 1000; guest checkouts without a "
            "customer id are up to 88% of a day's lines, so max_quarantined_share is 0.95"
        ),
    }
