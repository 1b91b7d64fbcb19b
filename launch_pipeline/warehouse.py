"""Small helpers for the DuckDB warehouse (no Dagster here).

Every asset that rewrites a partition or a table does it the same way: delete the rows it
replaces and insert the new ones in one transaction, so a reader or a crash never sees a
half-written partition and a re-run gives the same rows (idempotent partitions)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from launch_pipeline.errors import ConfigurationError

_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_RESERVED = {
    "select", "from", "where", "table", "drop", "delete", "insert", "update", "create", "alter",
    "union", "join", "order", "group", "by", "limit", "and", "or", "not", "null", "as", "on",
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# identifiers from configuration or from delivered files
# --------------------------------------------------------------------------------------------
def validate_identifier(name: str, what: str = "SQL identifier") -> str:
    """A table or column name that came from configuration: letters, digits and ``_``, not
    starting with a digit, at most 63 characters, not an SQL keyword. Returns it unchanged."""
    if not isinstance(name, str) or not _IDENTIFIER_RE.match(name) or name.lower() in _RESERVED:
        raise ConfigurationError(
            f"{what} {name!r} is not allowed: use letters, digits and underscores only, not "
            "starting with a digit, at most 63 characters, and not an SQL keyword"
        )
    return name


def quote_identifier(name: str) -> str:
    """Quote a name that comes from data (e.g. a column header of a delivered file) for DuckDB:
    ``"name"`` with embedded quotes doubled, so it can never end the identifier early."""
    if "\x00" in str(name):
        raise ConfigurationError(f"identifier {name!r} contains a NUL character")
    return '"' + str(name).replace('"', '""') + '"'


@dataclass(frozen=True)
class Rows:
    """The rows of ``table`` that ``where`` (SQL with ``?`` placeholders) selects.

    ``table`` and ``where`` are written in code, never taken from data; values go in
    ``params``."""

    table: str
    where: str = "true"
    params: Sequence = field(default_factory=tuple)


@contextmanager
def replace_atomically(con: duckdb.DuckDBPyConnection, *rows: Rows) -> Iterator[None]:
    """``BEGIN``; delete each of ``rows``; run the body (the inserts); ``COMMIT``. Any error
    rolls everything back (the old rows stay) and is raised again.

    With no ``rows`` it is a plain transaction, e.g. around ``CREATE OR REPLACE TABLE``."""
    con.execute("BEGIN TRANSACTION")
    try:
        for r in rows:
            con.execute(f"DELETE FROM {r.table} WHERE {r.where}", list(r.params))
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class TableSummary:
    """Row count, column schema (name, DuckDB type) and a small preview of a warehouse table."""

    rows: int
    schema: list[tuple[str, str]]
    preview: pd.DataFrame


def table_summary(
    con: duckdb.DuckDBPyConnection,
    table: str,
    preview_rows: int = 5,
    rows: int | None = None,
    preview_where: str | None = None,
) -> TableSummary:
    """What asset metadata shows about a table or view (see ``defs/metadata.py``). For a view
    whose whole computation is dear, pass its ``rows`` (known from the stored tables) and a
    ``preview_where`` that lets DuckDB compute only a few of its rows."""
    name = quote_identifier(table)
    if rows is None:
        rows = con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
    schema = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    where = f" WHERE {preview_where}" if preview_where else ""
    preview = con.execute(f"SELECT * FROM {name}{where} LIMIT {int(preview_rows)}").df()
    return TableSummary(int(rows), [(str(n), str(t)) for n, t in schema], preview)
