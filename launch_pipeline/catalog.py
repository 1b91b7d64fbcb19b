"""The product catalog and the launch candidates: typed, de-duplicated, bad rows quarantined.

Both tables come from the raw data directory (``products.*`` and ``candidates.*``). Rows that
cannot be used (no id, a duplicated id, a price that is not a positive number, a candidate
whose id is already a product in ``products.*``) go to ``quarantined_products`` with a reason;
the rest land typed in ``product_catalog`` and ``launch_candidates``, so an id is never both a
product and a candidate (which would make every event of it count twice).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from launch_pipeline.contract import CANDIDATES_STEM, PRODUCTS_STEM
from launch_pipeline.errors import InputFileError
from launch_pipeline.raw_io import read_products
from launch_pipeline.warehouse import Rows, replace_atomically

QUARANTINED_PRODUCTS_DDL = """
CREATE TABLE IF NOT EXISTS quarantined_products (
    source VARCHAR, source_file VARCHAR, source_row BIGINT, item_id VARCHAR, title VARCHAR,
    category VARCHAR, brand VARCHAR, price VARCHAR, reason VARCHAR
)
"""

_TYPED = """
WITH src AS (
    SELECT row_number() OVER () - 1 AS source_row, * FROM _products_src
), typed AS (
    SELECT source_row,
           nullif(trim(item_id), '') AS item_id,
           coalesce(nullif(trim(title), ''), trim(item_id)) AS title,
           coalesce(nullif(lower(trim(category)), ''), 'unknown') AS category,
           coalesce(nullif(trim(brand), ''), 'unknown') AS brand,
           price AS price_raw,
           TRY_CAST(price AS DOUBLE) AS price,
           TRY_CAST(nullif(trim(launched_at), '') AS TIMESTAMP) AS launched_at,
           parse_error
           {extra_select}
    FROM src
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY source_row) AS id_rank FROM typed
)
SELECT *,
       CASE
         WHEN parse_error IS NOT NULL THEN 'malformed_row'
         WHEN item_id IS NULL THEN 'missing_item_id'
         WHEN id_rank > 1 THEN 'duplicate_item_id'
         WHEN {in_products} THEN 'already_in_products'
         WHEN price_raw IS NOT NULL AND trim(price_raw) <> '' AND price IS NULL THEN 'invalid_price'
         WHEN price IS NOT NULL AND (price <= 0 OR isnan(price) OR isinf(price)) THEN 'invalid_price'
         WHEN {price_required} AND price IS NULL THEN 'missing_price'
       END AS reason
FROM ranked
"""


def _product_ids(raw_dir: Path) -> pd.DataFrame:
    """The (trimmed) ids of ``products.*``; none when the file cannot be read (the
    ``product_catalog`` step reports that file's problem itself)."""
    try:
        df, _ = read_products(raw_dir, PRODUCTS_STEM)
    except InputFileError:
        return _no_ids()
    ids = df["item_id"].astype("string").str.strip()
    ids = ids[ids.notna() & (ids != "")].drop_duplicates()
    return pd.DataFrame({"item_id": ids.astype(object)})


def _no_ids() -> pd.DataFrame:
    return pd.DataFrame({"item_id": pd.Series([], dtype="string").astype(object)})


def load_table(con: duckdb.DuckDBPyConnection, raw_dir: Path, stem: str) -> dict:
    """Replace ``product_catalog`` (stem ``products``) or ``launch_candidates`` (``candidates``)."""
    is_candidates = stem == CANDIDATES_STEM
    target = "launch_candidates" if is_candidates else "product_catalog"
    df, path = read_products(raw_dir, stem)
    extra = (
        ", TRY_CAST(unit_cost AS DOUBLE) AS unit_cost, TRY_CAST(stock AS BIGINT) AS stock"
        if is_candidates
        else ""
    )
    product_ids = _product_ids(raw_dir) if is_candidates else _no_ids()
    sql = _TYPED.format(
        extra_select=extra,
        price_required="true" if is_candidates else "false",
        in_products="item_id IN (SELECT CAST(item_id AS VARCHAR) FROM _product_ids)",
    )
    con.register("_products_src", df)
    con.register("_product_ids", product_ids)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _products_typed AS {sql}")
    finally:
        con.unregister("_products_src")
        con.unregister("_product_ids")
    usable, total = con.execute(
        "SELECT count(*) FILTER (WHERE reason IS NULL), count(*) FROM _products_typed"
    ).fetchall()[0]
    if total > 0 and usable == 0:  # rows delivered, none usable (an empty file is allowed)
        reasons = con.execute(
            "SELECT reason, count(*) FROM _products_typed GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        con.execute("DROP TABLE _products_typed")
        raise InputFileError(
            path,
            f"has no usable rows ({total} rows, all unusable: {dict(reasons)})",
            "deliver the file with at least one row that has an item_id and a positive price"
            + (
                " and is not already in products (a product on sale is not a new launch)"
                if "already_in_products" in dict(reasons)
                else ""
            ),
        )
    cols = "item_id, title, category, brand, price, launched_at" + (
        ", unit_cost, stock" if is_candidates else ""
    )
    con.execute(QUARANTINED_PRODUCTS_DDL)
    with replace_atomically(con, Rows("quarantined_products", "source = ?", [stem])):
        con.execute(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {cols} FROM _products_typed "
            "WHERE reason IS NULL ORDER BY item_id"
        )
        con.execute(
            """
            INSERT INTO quarantined_products
            SELECT ?, ?, source_row, item_id, title, category, brand, price_raw, reason
            FROM _products_typed WHERE reason IS NOT NULL
            """,
            [stem, Path(path).name],
        )
    stats = con.execute(
        "SELECT count(*) FILTER (WHERE reason IS NULL), count(*) FILTER (WHERE reason IS NOT NULL),"
        " count(DISTINCT category) FILTER (WHERE reason IS NULL),"
        " count(*) FILTER (WHERE reason IS NULL AND category = 'unknown') FROM _products_typed"
    ).fetchall()[0]
    reasons = dict(
        con.execute(
            "SELECT reason, count(*) FROM _products_typed WHERE reason IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    con.execute("DROP TABLE _products_typed")
    return {
        "table": target,
        "source_file": str(path),
        "rows": int(stats[0]),
        "quarantined": int(stats[1]),
        "categories": int(stats[2]),
        "uncategorised": int(stats[3]),
        "quarantine_reasons": reasons,
        "warnings": catalog_warnings(target, int(stats[0]), int(stats[3])),
    }


def catalog_warnings(table: str, rows: int, uncategorised: int) -> list[str]:
    """Plain-words warnings about a usable but degenerate catalog or candidate list."""
    out = []
    if rows and uncategorised:
        what = "launch candidates" if table == "launch_candidates" else "products"
        out.append(
            f"{uncategorised} of {rows} {what} have no category: they are grouped as one "
            "category 'unknown' (the per-category cap of the plan limits them together, and "
            "category affinities cannot tell them apart); fill the category column"
        )
    return out


def load_product_catalog(con, raw_dir: Path) -> dict:
    return load_table(con, raw_dir, PRODUCTS_STEM)


def load_launch_candidates(con, raw_dir: Path) -> dict:
    return load_table(con, raw_dir, CANDIDATES_STEM)
