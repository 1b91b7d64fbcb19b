"""Order-independent checksums of warehouse tables, to prove that two runs wrote the same rows."""

from __future__ import annotations

from pathlib import Path

import duckdb

from launch_pipeline.cleaning import create_event_views
from launch_pipeline.warehouse import quote_identifier

LAKE_TABLES = ("raw_events", "clean_events", "quarantined_events")

# Tables whose content depends only on the raw data (not on training randomness or the clock).
DETERMINISTIC_TABLES: tuple[str, ...] = (
    "raw_events",
    "clean_events",
    "quarantined_events",
    "product_catalog",
    "launch_candidates",
    "quarantined_products",
)


def table_checksum(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, str]:
    """(row count, md5 over the rows sorted by their text form) of a table."""
    t = quote_identifier(table)
    rows = con.execute(
        f"SELECT count(*), md5(coalesce(string_agg(CAST(x AS VARCHAR), chr(30) "
        f"ORDER BY CAST(x AS VARCHAR)), '')) FROM {t} AS x"
    ).fetchall()
    return int(rows[0][0]), rows[0][1]


def existing_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }


def warehouse_checksums(
    db_path: Path, tables: tuple[str, ...] = DETERMINISTIC_TABLES
) -> dict[str, tuple[int, str]]:
    """Checksums of ``tables`` (those that exist) in a DuckDB file, opened read-only. The event
    datasets (raw, clean, quarantined) are read from the partition files in ``lake`` beside
    the file, through views made now (as every warehouse step makes them), so a run of the
    partition steps alone is seen too."""
    lake_dir = Path(db_path).parent / "lake"
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{db_path}' AS wh (READ_ONLY)")
        present = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_catalog = 'wh' AND table_schema = 'main'"
            ).fetchall()
        }
        if lake_dir.is_dir():
            create_event_views(con, lake_dir)
            present |= {"raw_events", "clean_events", "quarantined_events"}
        out = {}
        for t in tables:
            if t not in present:
                continue
            con.execute("USE memory" if t in LAKE_TABLES and lake_dir.is_dir() else "USE wh")
            out[t] = table_checksum(con, t)
        return out
    finally:
        con.close()
