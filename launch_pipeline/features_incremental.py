"""Incremental feature tables: per-day partial aggregates merged into the feature tables.

The feature tables (``item_features``, ``user_features``, ``user_sequence_steps`` with the
``user_sequences`` view, ``activity_profile``; see :mod:`launch_pipeline.features`) have the
columns and values of the SQL over the whole history; what changes is how a nightly run gets
there. Instead of reading the whole ``clean_events`` history, each table keeps

* **per-day partials** (``feat_part_*`` tables, one set of rows per clean day): item counts and
  sums, user counts / sums / first and last event, user x category, user x price band and
  user x hour-of-week counts, the distinct (item, user) and (user, session) pairs of the day,
  and each user's collapsed steps of that day;
* a **merged state** (``feat_state_*`` tables, one row per item, user, user x category, ...):
  the partials of every merged day combined (sums added, first/last as min/max, distinct counts);
* **the versions merged** (``feat_merged_days``: feature table, day, version of that day's clean
  partition), so the next run knows which days changed (:func:`clean_day_versions`).

A run computes partials only for the days whose clean partition is new or changed, then:

* **additive parts** (counts, DECIMAL money sums, whole-number rating sums): the new days' partials
  are added to the state;
* **first/last seen** (min/max) are merged the same way when days are only added;
* **distinct counts** (an item's users and buyers, a user's sessions): each distinct pair of
  the merged days is kept once (``feat_seen_*``); the new days' pairs are counted where that
  table does not hold them yet, then added to it (so a night reads the distinct pairs, not every
  day's pairs again);
* **a re-cleaned or removed day**: its old partials are dropped first; every item or user that had
  rows in them is recomputed from the remaining per-day partials (no subtraction: min/max and
  distinct counts cannot be undone by subtracting);
* **sequences** (last 200 steps, consecutive same-item events collapsed to the strongest type),
  stored one row per step: when the new days come after every merged day, each active user's
  new steps are appended, numbered on from the user's stored step count (``feat_seq_last``), the
  first new step merging into the last stored one when they are the same item (a step that spans
  midnight: that one row is written again), and the user's steps past the last 200 are deleted;
  the stored steps are not rewritten. A day added before the last merged day, or a
  re-cleaned/removed day, recomputes the users concerned from their per-day steps (collapsed
  again across day boundaries);
* **activity by hour**: the user x hour-of-week counts are merged like the other sums; the
  ``activity_profile`` view computes the shares and the overall rows when read;
* **price bands and item attributes** come from the catalog and are recomputed every run (cheap);
  when an item with events changes category or price band (a new catalog moved the quintiles),
  the user category / band counts, which were taken with the old attributes, are rebuilt in full.

Many new days at once (a first load, a backfill) are computed in statements of about
:data:`ROWS_PER_STATEMENT` clean events (consecutive days), and the sequences built by buckets of
users of about as many steps, so that no statement outgrows the DuckDB memory limit.

A full rebuild (asset config ``full_rebuild: true``) drops the state and merges every day;
it is also automatic when the state is missing or was built with other settings (sequence length,
state format). Incremental and full give the same tables as the SQL over the whole history
(``features.build_*``; tested with random day orders, a re-cleaned and a removed day).

Days: ``clean_events.partition_date``. Cleaning quarantines a row whose timestamp falls on another
day than its partition (``timestamp_outside_partition``), so a user's active days are the number
of partitions holding their events, and the partitions are ordered in time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from launch_pipeline import features, lake

STATE_FORMAT = "2"  # bump when a partial or state table changes shape: forces a full rebuild
INCREMENTAL_TABLES = ("item_features", "user_features", "user_sequences", "activity_profile")


# --------------------------------------------------------------------------------------------
# which days changed
# --------------------------------------------------------------------------------------------
def clean_day_versions(
    con: duckdb.DuckDBPyConnection, lake_dir: Path | None = None
) -> dict[dt.date, str]:
    """The version of every day of clean events: what tells a run which days changed since the
    last merge. With ``lake_dir`` (clean partitions as files, ``lake.py``): the ``version`` of
    each partition's stamp, fresh on every write, read without touching the data. Without it:
    computed from the ``clean_events`` table (row count and sums of the source row numbers and
    timestamps of the day: a re-cleaned day with other rules or another delivery changes them;
    an identical re-clean keeps them and needs no merge), one scan of three columns."""
    if lake_dir is not None:
        stamps = lake.read_stamps(lake_dir, "clean_events")
        return {day: stamp.version for day, stamp in stamps.items()}
    rows = con.execute(
        "SELECT partition_date, count(*), coalesce(sum(source_row), 0), "
        "coalesce(sum(epoch_us(ts)), 0) FROM clean_events GROUP BY 1"
    ).fetchall()
    return {d: f"{n}:{r}:{t}" for d, n, r, t in rows}


@dataclass(frozen=True)
class DayChanges:
    """Days of clean events against the days merged into one feature table."""

    added: tuple[dt.date, ...]
    recleaned: tuple[dt.date, ...]
    removed: tuple[dt.date, ...]
    kept: tuple[dt.date, ...]  # merged before and unchanged

    @property
    def to_compute(self) -> tuple[dt.date, ...]:
        return tuple(sorted(self.added + self.recleaned))

    @property
    def to_drop(self) -> tuple[dt.date, ...]:
        return tuple(sorted(self.recleaned + self.removed))

    @property
    def appends_only(self) -> bool:
        """Only new days, all later than every day merged before."""
        return not self.to_drop and (
            not self.kept or not self.added or min(self.added) > max(self.kept)
        )


def day_changes(merged: Mapping[dt.date, str], current: Mapping[dt.date, str]) -> DayChanges:
    """Compare the merged versions with the current ones."""
    return DayChanges(
        added=tuple(sorted(d for d in current if d not in merged)),
        recleaned=tuple(sorted(d for d in current if d in merged and merged[d] != current[d])),
        removed=tuple(sorted(d for d in merged if d not in current)),
        kept=tuple(sorted(d for d in current if merged.get(d) == current[d])),
    )


@dataclass(frozen=True)
class MergeResult:
    """What one update of a feature table did."""

    table: str
    mode: str  # "incremental", "full rebuild" or "unchanged"
    reason: str
    days_added: int
    days_recleaned: int
    days_removed: int
    days_merged: int  # days the table holds after the update
    rows: int
    seconds: float

    def summary(self) -> str:
        return (
            f"{self.table}: {self.mode} ({self.reason}); days added {self.days_added}, "
            f"re-cleaned {self.days_recleaned}, removed {self.days_removed}; "
            f"{self.days_merged} days, {self.rows} rows, {self.seconds:.1f} s"
        )


# --------------------------------------------------------------------------------------------
# bookkeeping tables
# --------------------------------------------------------------------------------------------
_BOOKKEEPING_DDL = (
    "CREATE TABLE IF NOT EXISTS feat_merged_days (feature VARCHAR NOT NULL, day DATE NOT NULL, "
    "version VARCHAR NOT NULL)",
    "CREATE TABLE IF NOT EXISTS feat_state_info (feature VARCHAR NOT NULL, "
    "settings VARCHAR NOT NULL)",
)


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_catalog = current_database()"
        ).fetchall()
    }


def _merged_versions(con: duckdb.DuckDBPyConnection, feature: str) -> dict[dt.date, str]:
    return dict(
        con.execute(
            "SELECT day, version FROM feat_merged_days WHERE feature = ?", [feature]
        ).fetchall()
    )


def _settings_key(extra: str = "") -> str:
    return f"format={STATE_FORMAT};{extra}"


def _needs_full(
    con: duckdb.DuckDBPyConnection,
    feature: str,
    own_tables: tuple[str, ...],
    settings: str,
    full_rebuild: bool,
) -> str | None:
    """Why the state of ``feature`` cannot be used (None when it can)."""
    if full_rebuild:
        return "full rebuild asked for"
    present = _tables(con)
    missing = [t for t in (feature, *own_tables) if t not in present]
    if missing:
        return f"no incremental state yet ({missing[0]} missing)"
    stored = con.execute(
        "SELECT settings FROM feat_state_info WHERE feature = ?", [feature]
    ).fetchall()
    if not stored:
        return "no incremental state yet"
    if stored[0][0] != settings:
        return f"state built with other settings ({stored[0][0]} -> {settings})"
    return None


def _set_days_table(con: duckdb.DuckDBPyConnection, name: str, days) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (day DATE)")
    if days:
        con.executemany(f"INSERT INTO {name} VALUES (?)", [[d] for d in days])


def _finish(
    con: duckdb.DuckDBPyConnection,
    feature: str,
    current: Mapping[dt.date, str],
    settings: str,
) -> None:
    con.execute("DELETE FROM feat_merged_days WHERE feature = ?", [feature])
    if current:
        con.executemany(
            "INSERT INTO feat_merged_days VALUES (?, ?, ?)",
            [[feature, d, v] for d, v in sorted(current.items())],
        )
    con.execute("DELETE FROM feat_state_info WHERE feature = ?", [feature])
    con.execute("INSERT INTO feat_state_info VALUES (?, ?)", [feature, settings])


_COMPUTE_DAYS = "(SELECT day FROM _feat_compute)"
_NO_DAY = dt.date(1, 1, 1)


ROWS_PER_STATEMENT = 4_000_000
"""The per-day partials of many new days (a first load, a backfill) are computed in statements of
about this many clean events each: in one statement, 30M events were sorted and grouped past
the DuckDB memory limit and cost a quarter more per event (user_sequences' day steps: 25.5
against 20.3 CPU-s at 30M events; the same 6.8 CPU-s either way at 10M; benchmarks/scale.md).
A nightly run's one day is one statement."""


def _in_list(days) -> str:
    listed = ", ".join(f"DATE '{d.isoformat()}'" for d in (list(days) or [_NO_DAY]))
    return f"({listed})"


class _DayFilter:
    """The connection, with the days to compute written into the SQL as constants:
    ``day IN (DATE '...', ...)`` lets DuckDB skip the row groups of other days in the clean
    events and in the partial tables (their zone maps), where ``day IN (SELECT ...)`` would
    read every row. The SQL of this module says ``(SELECT day FROM _feat_compute)``."""

    def __init__(self, con: duckdb.DuckDBPyConnection, days) -> None:
        self._con = con
        self._day_list = sorted(days)
        self._days = _in_list(self._day_list)
        self._chunks: list[str] | None = None

    def execute(self, sql: str, *args):
        return self._con.execute(sql.replace(_COMPUTE_DAYS, self._days), *args)

    def day_chunks(self) -> list[str]:
        """The days to compute as ``IN`` lists of consecutive days that hold about
        :data:`ROWS_PER_STATEMENT` clean events together (one list when they all fit)."""
        if self._chunks is None:
            rows: dict[dt.date, int] = {}
            if len(self._day_list) > 1:
                rows = dict(
                    self._con.execute(
                        "SELECT partition_date, count(*) FROM clean_events "
                        f"WHERE partition_date IN {self._days} GROUP BY 1"
                    ).fetchall()
                )
            chunks: list[list[dt.date]] = []
            held = 0
            for day in self._day_list:
                n = int(rows.get(day, 0))
                if not chunks or held + n > ROWS_PER_STATEMENT:
                    chunks.append([])
                    held = 0
                chunks[-1].append(day)
                held += n
            self._chunks = [_in_list(c) for c in chunks] or [self._days]
        return self._chunks

    def execute_by_day_chunks(self, sql: str) -> None:
        """``sql`` (which reads ``_feat_compute``) once per chunk of :meth:`day_chunks`: for
        statements whose rows of one day do not depend on other days (the per-day partials)."""
        for days in self.day_chunks():
            self._con.execute(sql.replace(_COMPUTE_DAYS, days))

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def _run(
    con: duckdb.DuckDBPyConnection,
    feature: str,
    own_tables: tuple[str, ...],
    versions: Mapping[dt.date, str] | None,
    full_rebuild: bool,
    settings: str,
    body,
    extra_full_reason=None,
    lake_dir: Path | None = None,
    rows_sql: str | None = None,
) -> MergeResult:
    """The frame shared by the four updates: find the changed days, run ``body(con, changes,
    full)`` in one transaction, record the merged versions. ``rows_sql``: the feature's row
    count from its stored tables (a view's own count would compute the whole view)."""
    t0 = time.perf_counter()
    con.execute("SET TimeZone = 'UTC'")
    for ddl in _BOOKKEEPING_DDL:
        con.execute(ddl)
    current = dict(versions) if versions is not None else clean_day_versions(con, lake_dir)
    reason = _needs_full(con, feature, own_tables, settings, full_rebuild)
    if reason is None and extra_full_reason is not None:
        reason = extra_full_reason(con)
    merged = {} if reason else _merged_versions(con, feature)
    changes = day_changes(merged, current)
    if reason is None and not changes.to_compute and not changes.to_drop:
        mode, why = "unchanged", "no clean day changed"
    else:
        mode, why = ("full rebuild", reason) if reason else ("incremental", "changed days")
    con.execute("BEGIN TRANSACTION")
    try:
        if reason:
            for t in own_tables:
                con.execute(f"DROP TABLE IF EXISTS {t}")
        body(_DayFilter(con, changes.to_compute), changes, bool(reason))
        _finish(con, feature, current, settings)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    rows = con.execute(rows_sql or f"SELECT count(*) FROM {feature}").fetchone()[0]
    return MergeResult(
        table=feature,
        mode=mode,
        reason=why,
        days_added=len(changes.added),
        days_recleaned=len(changes.recleaned),
        days_removed=len(changes.removed),
        days_merged=len(current),
        rows=int(rows),
        seconds=round(time.perf_counter() - t0, 3),
    )


def _replace_partials(
    con: _DayFilter, part: str, ddl_select: str, owner: str, affected: str
) -> None:
    """Record in ``affected`` (a temp table with column ``owner``) the owners that had rows in
    the dropped days' partials, delete those days' (and the recomputed days') rows and insert
    the partials of the days to compute (``ddl_select`` reads ``_feat_compute``; its rows of a
    day depend on that day only, so it runs by chunks of days: :meth:`_DayFilter.day_chunks`)."""
    if part not in _tables(con):
        con.execute(f"CREATE TABLE {part} AS {ddl_select} LIMIT 0")
    con.execute(
        f"INSERT INTO {affected} SELECT DISTINCT {owner} FROM {part} "
        f"WHERE day IN (SELECT day FROM _feat_drop)"
    )
    con.execute(
        f"DELETE FROM {part} WHERE day IN (SELECT day FROM _feat_drop UNION ALL "
        f"SELECT day FROM _feat_compute)"
    )
    con.execute_by_day_chunks(f"INSERT INTO {part} {ddl_select}")


def _prepare(con: duckdb.DuckDBPyConnection, changes: DayChanges, owner: str) -> None:
    _set_days_table(con, "_feat_compute", changes.to_compute)
    _set_days_table(con, "_feat_drop", changes.to_drop)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _feat_affected ({owner} VARCHAR)")


def _set_touched(con: duckdb.DuckDBPyConnection, part: str, owner: str) -> None:
    """``_feat_touched``: the owners with rows in the new days' partials or affected by a
    dropped day (their state rows change)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _feat_touched AS
        SELECT DISTINCT {owner} FROM {part} WHERE day IN (SELECT day FROM _feat_compute)
        UNION SELECT {owner} FROM _feat_affected
        """
    )


def _has_rows(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0])


def _merge_state(
    con: duckdb.DuckDBPyConnection,
    state: str,
    part: str,
    keys: str,
    owner: str,
    aggs: str,
    state_cols: str,
    part_cols: str,
) -> None:
    """The rows of ``state`` of the owners touched (with rows in the new days' partials, or
    affected by a dropped day) are replaced: an unaffected owner's rows combined with its new
    partial rows, an affected owner's rows recomputed from all its partial rows, by ``aggs``
    (``state_cols`` / ``part_cols``: the columns ``aggs`` reads, from each side). The other
    owners' rows are not rewritten. ``_feat_touched`` holds the touched owners afterwards."""
    if state not in _tables(con):
        con.execute(
            f"CREATE TABLE {state} AS SELECT {keys}, {aggs} "
            f"FROM (SELECT {keys}, {part_cols} FROM {part}) WHERE false GROUP BY ALL"
        )
    _set_touched(con, part, owner)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _feat_new_state AS
        SELECT {keys}, {aggs} FROM (
            SELECT {keys}, {state_cols} FROM {state}
            SEMI JOIN _feat_touched USING ({owner}) ANTI JOIN _feat_affected USING ({owner})
            UNION ALL
            SELECT {keys}, {part_cols} FROM {part} ANTI JOIN _feat_affected USING ({owner})
            WHERE day IN (SELECT day FROM _feat_compute)
            UNION ALL
            SELECT {keys}, {part_cols} FROM {part} SEMI JOIN _feat_affected USING ({owner})
        ) GROUP BY ALL
        """
    )
    con.execute(f"DELETE FROM {state} WHERE {owner} IN (SELECT {owner} FROM _feat_touched)")
    con.execute(f"INSERT INTO {state} BY NAME SELECT * FROM _feat_new_state")
    con.execute("DROP TABLE _feat_new_state")


def _merge_sums(
    con: duckdb.DuckDBPyConnection,
    state: str,
    part: str,
    keys: tuple[str, ...],
    owner: str,
    sums: tuple[str, ...],
) -> None:
    """Like :func:`_merge_state` for a state of sums only (``sums``, BIGINT), merged key by
    key: the new days' partial sums of an unaffected owner are added to its rows of the same
    ``keys`` (an UPDATE; keys not held yet are inserted), so a night writes about as many rows
    as the new days have, not every row of the owners touched; an affected owner's rows are
    recomputed from all its partial rows. ``_feat_touched`` holds the touched owners
    afterwards. Keys may be NULL (matched as equal)."""
    key_list = ", ".join(keys)
    summed = ", ".join(f"CAST(sum({c}) AS BIGINT) AS {c}" for c in sums)
    if state not in _tables(con):
        con.execute(
            f"CREATE TABLE {state} AS SELECT {key_list}, {summed} FROM {part} "
            "WHERE false GROUP BY ALL"
        )
    _set_touched(con, part, owner)
    if not _has_rows(con, state):
        # a first load or a full rebuild: the sums of every partial row, in one statement
        con.execute(f"INSERT INTO {state} SELECT {key_list}, {summed} FROM {part} GROUP BY ALL")
        return
    con.execute(f"DELETE FROM {state} WHERE {owner} IN (SELECT {owner} FROM _feat_affected)")
    con.execute(
        f"INSERT INTO {state} SELECT {key_list}, {summed} FROM {part} "
        f"SEMI JOIN _feat_affected USING ({owner}) GROUP BY ALL"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _feat_add AS
        SELECT {key_list}, {summed} FROM {part} ANTI JOIN _feat_affected USING ({owner})
        WHERE day IN (SELECT day FROM _feat_compute) GROUP BY ALL
        """
    )

    def same_keys(left: str) -> str:
        return " AND ".join(f"{left}.{k} IS NOT DISTINCT FROM a.{k}" for k in keys)

    con.execute(
        f"UPDATE {state} SET {', '.join(f'{c} = {state}.{c} + a.{c}' for c in sums)} "
        f"FROM _feat_add a WHERE {same_keys(state)}"
    )
    con.execute(
        f"INSERT INTO {state} SELECT a.* FROM _feat_add a ANTI JOIN {state} s ON {same_keys('s')}"
    )
    con.execute("DROP TABLE _feat_add")


def _merge_distinct(
    con: duckdb.DuckDBPyConnection,
    state: str,
    part: str,
    seen: str,
    owner: str,
    member: str,
    column: str,
    flag: str | None = None,
    flag_column: str | None = None,
) -> None:
    """Distinct counts per owner over all merged days, kept without re-reading every day's
    pairs: ``seen`` holds each distinct (``owner``, ``member``) pair of the merged days once
    (twice when ``flag`` turned true on a later day), so a night's new pairs are checked against
    the distinct pairs only. ``state.column`` gains the owner's pairs not seen before,
    ``state.flag_column`` those whose ``flag`` (a boolean column of ``part``) is true for the
    first time; affected owners (reset to 0 by :func:`_merge_state`) are recounted from all
    their partial rows."""
    flag_sql = f"bool_or({flag})" if flag else "false"
    if seen not in _tables(con):
        con.execute(
            f"CREATE TABLE {seen} AS SELECT {owner}, {member}, {flag_sql} AS flag "
            f"FROM {part} WHERE false GROUP BY ALL"
        )
    con.execute(f"DELETE FROM {seen} WHERE {owner} IN (SELECT {owner} FROM _feat_affected)")
    if _has_rows(con, seen):
        pairs = f"""
            WITH c AS (
                SELECT {owner}, {member}, {flag_sql} AS flag FROM {part}
                ANTI JOIN _feat_affected USING ({owner})
                WHERE day IN (SELECT day FROM _feat_compute) GROUP BY ALL
            )
            SELECT c.{owner}, c.{member}, any_value(c.flag) AS flag,
                   count(s.{member}) > 0 AS was_seen,
                   coalesce(bool_or(s.flag), false) AS was_flagged
            FROM c LEFT JOIN {seen} s USING ({owner}, {member}) GROUP BY c.{owner}, c.{member}
            UNION ALL
            SELECT {owner}, {member}, {flag_sql}, false, false FROM {part}
            SEMI JOIN _feat_affected USING ({owner}) GROUP BY ALL
        """
    else:  # a first load or a full rebuild (no pair merged yet): every pair is new
        pairs = f"""
            SELECT {owner}, {member}, {flag_sql} AS flag, false AS was_seen,
                   false AS was_flagged
            FROM {part} GROUP BY {owner}, {member}
        """
    con.execute(f"CREATE OR REPLACE TEMP TABLE _feat_pairs AS {pairs}")
    sets = [f"{column} = {state}.{column} + g.n"]
    if flag_column:
        sets.append(f"{flag_column} = {state}.{flag_column} + g.n_flag")
    con.execute(
        f"""
        UPDATE {state} SET {", ".join(sets)}
        FROM (
            SELECT {owner}, count(*) FILTER (WHERE NOT was_seen) AS n,
                   count(*) FILTER (WHERE flag AND NOT was_flagged) AS n_flag
            FROM _feat_pairs GROUP BY ALL
        ) g WHERE {state}.{owner} = g.{owner}
        """
    )
    con.execute(
        f"INSERT INTO {seen} SELECT {owner}, {member}, flag FROM _feat_pairs "
        "WHERE NOT was_seen OR (flag AND NOT was_flagged)"
    )
    con.execute("DROP TABLE _feat_pairs")


# --------------------------------------------------------------------------------------------
# item_features
# --------------------------------------------------------------------------------------------
_ITEM_PART_SQL = f"""
    SELECT partition_date AS day, item_id,
           count(*) FILTER (WHERE event_type = 'view') AS views,
           count(*) FILTER (WHERE event_type = 'cart') AS carts,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           coalesce(sum(quantity) FILTER (WHERE event_type = 'purchase'), 0) AS units,
           coalesce({features.money_sum_decimal("purchase")}, 0) AS revenue,
           count(*) FILTER (WHERE event_type = 'return') AS returns,
           coalesce(sum(quantity) FILTER (WHERE event_type = 'return'), 0) AS returned_units,
           count(*) FILTER (WHERE event_type = 'review') AS rating_count,
           count(rating) FILTER (WHERE event_type = 'review') AS rating_n,
           coalesce(sum(rating) FILTER (WHERE event_type = 'review'), 0) AS rating_sum,
           coalesce(sum(rating * rating) FILTER (WHERE event_type = 'review'), 0) AS rating_sum_sq,
           min(ts) AS first_event_at,
           min(ts) FILTER (WHERE event_type = 'purchase') AS first_sale_at,
           max(ts) AS last_event_at
    FROM clean_events WHERE partition_date IN (SELECT day FROM _feat_compute) GROUP BY ALL
"""
_ITEM_USER_PART_SQL = """
    SELECT partition_date AS day, item_id, user_id, bool_or(event_type = 'purchase') AS bought
    FROM clean_events WHERE partition_date IN (SELECT day FROM _feat_compute) GROUP BY ALL
"""
_ITEM_COLS = (
    "views, carts, purchases, units, revenue, returns, returned_units, rating_count, rating_n, "
    "rating_sum, rating_sum_sq, first_event_at, first_sale_at, last_event_at"
)
_ITEM_STATE_COLS = _ITEM_COLS + ", users, buyers"
_ITEM_PART_COLS = _ITEM_COLS + ", 0 AS users, 0 AS buyers"
_ITEM_AGGS = """
    CAST(sum(views) AS BIGINT) AS views, CAST(sum(carts) AS BIGINT) AS carts,
    CAST(sum(purchases) AS BIGINT) AS purchases, sum(units) AS units, sum(revenue) AS revenue,
    CAST(sum(returns) AS BIGINT) AS returns, sum(returned_units) AS returned_units,
    CAST(sum(rating_count) AS BIGINT) AS rating_count, CAST(sum(rating_n) AS BIGINT) AS rating_n,
    sum(rating_sum) AS rating_sum, sum(rating_sum_sq) AS rating_sum_sq,
    min(first_event_at) AS first_event_at, min(first_sale_at) AS first_sale_at,
    max(last_event_at) AS last_event_at, CAST(sum(users) AS BIGINT) AS users,
    CAST(sum(buyers) AS BIGINT) AS buyers
"""
# the state as the stats of features.item_features_sql; rating_mean as DuckDB's avg computes it
_ITEM_STATS_FROM_STATE = """
    SELECT item_id, views, carts, purchases, units, CAST(revenue AS DOUBLE) AS revenue, returns,
           returned_units, buyers, users, rating_count,
           CASE WHEN rating_n > 0 THEN _feat_int_mean(rating_sum, rating_n) END AS rating_mean,
           rating_n, rating_sum, rating_sum_sq, first_event_at, first_sale_at, last_event_at
    FROM feat_state_item
"""
ITEM_TABLES = ("feat_part_item", "feat_part_item_user", "feat_state_item", "feat_seen_item_user")


def _int_mean(sums: pa.Array, counts: pa.Array) -> pa.Array:
    """The mean of whole numbers as DuckDB's ``avg`` of an integer column returns it: the sum
    divided by the count in long double, then rounded to double (a plain double division
    differs in the last bit for about 1 in 15,000 (sum, count) pairs)."""
    s = np.array(sums.to_pylist(), dtype=np.longdouble)
    n = np.array(counts.to_pylist(), dtype=np.longdouble)
    with np.errstate(invalid="ignore", divide="ignore"):  # rows with no rating: unused
        return pa.array((s / n).astype(np.float64))


def _register_int_mean(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.InvalidInputException):  # not registered here yet
        con.remove_function("_feat_int_mean")
    con.create_function(
        "_feat_int_mean",
        _int_mean,
        ["HUGEINT", "BIGINT"],
        "DOUBLE",
        type="arrow",
        null_handling="special",
        side_effects=False,
    )


def update_item_features(
    con: duckdb.DuckDBPyConnection,
    versions: Mapping[dt.date, str] | None = None,
    full_rebuild: bool = False,
    lake_dir: Path | None = None,
) -> MergeResult:
    """``price_bands`` and ``item_features`` with the clean days that changed merged into the
    item state (see the module docstring). ``versions``: :func:`clean_day_versions` (read when
    None: from the stamps under ``lake_dir``, else from the table)."""

    def body(con, changes: DayChanges, full: bool) -> None:
        _prepare(con, changes, "item_id")
        _replace_partials(con, "feat_part_item", _ITEM_PART_SQL, "item_id", "_feat_affected")
        _replace_partials(
            con, "feat_part_item_user", _ITEM_USER_PART_SQL, "item_id", "_feat_affected"
        )
        _merge_state(
            con,
            "feat_state_item",
            "feat_part_item",
            "item_id",
            "item_id",
            _ITEM_AGGS,
            _ITEM_STATE_COLS,
            _ITEM_PART_COLS,
        )
        # users / buyers: affected items start from 0 (recount), the others gain new pairs
        _merge_distinct(
            con,
            "feat_state_item",
            "feat_part_item_user",
            "feat_seen_item_user",
            "item_id",
            "user_id",
            "users",
            flag="bought",
            flag_column="buyers",
        )
        con.execute(features.PRICE_BANDS_SQL)
        _register_int_mean(con)
        con.execute(features.item_features_sql(_ITEM_STATS_FROM_STATE))

    return _run(
        con,
        "item_features",
        ITEM_TABLES,
        versions,
        full_rebuild,
        _settings_key(),
        body,
        lake_dir=lake_dir,
    )


# --------------------------------------------------------------------------------------------
# user_features
# --------------------------------------------------------------------------------------------
_USER_PART_SQL = f"""
    SELECT partition_date AS day, user_id,
           min(ts) AS first_seen_at, max(ts) AS last_seen_at,{features.USER_EVENT_COUNTS}
           coalesce({features.money_sum_decimal("purchase")}, 0) AS bought_money,
           coalesce({features.money_sum_decimal("return")}, 0) AS returned_money
    FROM clean_events WHERE partition_date IN (SELECT day FROM _feat_compute) GROUP BY ALL
"""
_USER_SESSION_PART_SQL = """
    SELECT DISTINCT partition_date AS day, user_id, session_id FROM clean_events
    WHERE partition_date IN (SELECT day FROM _feat_compute) AND session_id IS NOT NULL
"""


def _user_attr_part_sql(column: str) -> str:
    return f"""
    SELECT e.partition_date AS day, e.user_id, f.{column}, count(*) AS n
    FROM clean_events e LEFT JOIN item_features f USING (item_id)
    WHERE e.partition_date IN (SELECT day FROM _feat_compute)
      AND e.event_type IN ('view', 'cart', 'purchase')
    GROUP BY ALL
    """


_USER_STATE_COLS = (
    "first_seen_at, last_seen_at, active_days, events, views, carts, purchases, returns, "
    "reviews, units, bought_money, returned_money, sessions"
)
# a partial row is one active day; sessions are counted apart (distinct over days)
_USER_PART_COLS = (
    "first_seen_at, last_seen_at, 1 AS active_days, events, views, carts, purchases, returns, "
    "reviews, units, bought_money, returned_money, 0 AS sessions"
)
_USER_AGGS = """
    min(first_seen_at) AS first_seen_at, max(last_seen_at) AS last_seen_at,
    CAST(sum(active_days) AS BIGINT) AS active_days, CAST(sum(events) AS BIGINT) AS events,
    CAST(sum(views) AS BIGINT) AS views, CAST(sum(carts) AS BIGINT) AS carts,
    CAST(sum(purchases) AS BIGINT) AS purchases, CAST(sum(returns) AS BIGINT) AS returns,
    CAST(sum(reviews) AS BIGINT) AS reviews, sum(units) AS units,
    sum(bought_money) AS bought_money, sum(returned_money) AS returned_money,
    CAST(sum(sessions) AS BIGINT) AS sessions
"""
_USER_BASE_FROM_STATE = """
    SELECT user_id, first_seen_at, last_seen_at, active_days, sessions, events, views, carts,
           purchases, returns, reviews, units,
           CAST(bought_money AS DOUBLE) - CAST(returned_money AS DOUBLE) AS monetary
    FROM feat_state_user
"""
USER_TABLES = (
    "feat_part_user",
    "feat_part_user_session",
    "feat_part_user_category",
    "feat_part_user_band",
    "feat_state_user",
    "feat_state_user_category",
    "feat_state_user_band",
    "feat_seen_user_session",
    "feat_user_category_affinity",
    "feat_user_band_affinity",
    "feat_item_attrs",
)


# per state: the name the affinity SQL reads it by, and that SQL (features.user_features_sql)
_AFFINITY = {
    "category": ("cat", features.CATEGORY_AFFINITY_SQL),
    "band": ("band", features.BAND_AFFINITY_SQL),
}


def _item_attrs_changed(con: duckdb.DuckDBPyConnection) -> str | None:
    """A full rebuild reason when an item's category or price band is not what the stored
    user category / band counts were taken with."""
    n = con.execute(
        """
        SELECT count(*) FROM feat_item_attrs o LEFT JOIN item_features f USING (item_id)
        WHERE f.item_id IS NULL OR f.category IS DISTINCT FROM o.category
           OR f.price_band IS DISTINCT FROM o.price_band
        """
    ).fetchone()[0]
    if n:
        return f"{n} item(s) changed category or price band since the last merge"
    return None


def update_user_features(
    con: duckdb.DuckDBPyConnection,
    versions: Mapping[dt.date, str] | None = None,
    full_rebuild: bool = False,
    lake_dir: Path | None = None,
) -> MergeResult:
    """``user_features`` with the clean days that changed merged into the user state; reads
    ``item_features`` (categories and price bands), so it runs after
    :func:`update_item_features`."""

    def body(con, changes: DayChanges, full: bool) -> None:
        _prepare(con, changes, "user_id")
        _replace_partials(con, "feat_part_user", _USER_PART_SQL, "user_id", "_feat_affected")
        _replace_partials(
            con, "feat_part_user_session", _USER_SESSION_PART_SQL, "user_id", "_feat_affected"
        )
        for attr, part in (("category", "category"), ("price_band", "band")):
            _replace_partials(
                con,
                f"feat_part_user_{part}",
                _user_attr_part_sql(attr),
                "user_id",
                "_feat_affected",
            )
        _merge_state(
            con,
            "feat_state_user",
            "feat_part_user",
            "user_id",
            "user_id",
            _USER_AGGS,
            _USER_STATE_COLS,
            _USER_PART_COLS,
        )
        _merge_distinct(
            con,
            "feat_state_user",
            "feat_part_user_session",
            "feat_seen_user_session",
            "user_id",
            "session_id",
            "sessions",
        )
        for attr, part in (("category", "category"), ("price_band", "band")):
            _merge_sums(
                con,
                f"feat_state_user_{part}",
                f"feat_part_user_{part}",
                ("user_id", attr),
                "user_id",
                ("n",),
            )
            # the affinities of the users whose counts changed (the others keep theirs)
            agg_table = f"feat_user_{part}_affinity"
            cte, agg_sql = _AFFINITY[part]
            fresh = (
                f"WITH {cte} AS (SELECT user_id, {attr}, n FROM feat_state_user_{part} "
                f"SEMI JOIN _feat_touched USING (user_id)) {agg_sql}"
            )
            if agg_table not in _tables(con):
                con.execute(f"CREATE TABLE {agg_table} AS {fresh} LIMIT 0")
            con.execute(
                f"DELETE FROM {agg_table} WHERE user_id IN (SELECT user_id FROM _feat_touched)"
            )
            con.execute(f"INSERT INTO {agg_table} {fresh}")
        con.execute(
            features.user_features_sql(
                snapshot="SELECT max(last_seen_at) AS as_of FROM feat_state_user",
                base=_USER_BASE_FROM_STATE,
                cat="SELECT 1 AS unused",
                band="SELECT 1 AS unused",
                ev="SELECT 1 AS unused",
                cat_agg="SELECT * FROM feat_user_category_affinity",
                band_agg="SELECT * FROM feat_user_band_affinity",
            )
        )
        con.execute(
            "CREATE OR REPLACE TABLE feat_item_attrs AS "
            "SELECT item_id, category, price_band FROM item_features"
        )

    return _run(
        con,
        "user_features",
        USER_TABLES,
        versions,
        full_rebuild,
        _settings_key(),
        body,
        extra_full_reason=_item_attrs_changed,
        lake_dir=lake_dir,
    )


# --------------------------------------------------------------------------------------------
# user_sequences
# --------------------------------------------------------------------------------------------
def _collapse_runs_sql(source: str, keys: str, order: str) -> str:
    """SQL: the rows of ``source`` (``keys``, ``item_id``, ``strength``, ``ts`` and the columns
    of ``order``) as steps, consecutive rows on the same item collapsed, per ``keys`` in
    ``order``: ``keys, step, item_id, strength, ts`` (the strongest event, the first time).
    One window pass numbers the rows and tells, from the neighbours, where a run of same-item
    rows starts and ends; a row alone in its run (most of them) is a step as it is, and only the
    rows of longer runs are grouped (by the number of the run's first row, found with a running
    max over them only). A step's number is the number of its first row: increasing, with gaps,
    unique per ``keys``."""
    return f"""
        WITH _ev AS (
            SELECT {keys}, item_id, strength, ts, row_number() OVER w AS _rn,
                   lag(item_id) OVER w IS DISTINCT FROM item_id AS _starts,
                   lead(item_id) OVER w IS DISTINCT FROM item_id AS _ends
            FROM ({source}) WINDOW w AS (PARTITION BY {keys} ORDER BY {order})
        ), _runs AS (
            SELECT *, max(CASE WHEN _starts THEN _rn END)
                          OVER (PARTITION BY {keys} ORDER BY _rn ROWS UNBOUNDED PRECEDING) AS _run
            FROM _ev WHERE NOT (_starts AND _ends)
        )
        SELECT {keys}, CAST(_rn AS BIGINT) AS step, item_id, strength, ts
        FROM _ev WHERE _starts AND _ends
        UNION ALL
        SELECT {keys}, CAST(_run AS BIGINT) AS step, any_value(item_id) AS item_id,
               max(strength) AS strength, min(ts) AS ts
        FROM _runs GROUP BY {keys}, _run
    """


# a user's steps of one day: consecutive events on the same item collapsed (as in
# features.USER_SEQUENCES_SQL, partitioned by day as well); a step's number is the number of its
# first event in the user's day
_SEQ_PART_SQL = _collapse_runs_sql(
    """
    SELECT partition_date AS day, user_id, item_id, ts, source_file, source_row,
           CASE event_type WHEN 'view' THEN 1 WHEN 'cart' THEN 2 WHEN 'purchase' THEN 3 END
             AS strength
    FROM clean_events
    WHERE event_type IN ('view', 'cart', 'purchase')
      AND partition_date IN (SELECT day FROM _feat_compute)
    """,
    keys="day, user_id",
    order="ts, source_file, source_row",
)
SEQ_TABLES = ("feat_part_seq", "feat_seq_last", "user_sequence_steps")
_SEQ_LAST_COLUMNS = (
    "user_id VARCHAR, n_steps BIGINT, last_item VARCHAR, last_strength INTEGER, last_ts TIMESTAMP"
)


def update_user_sequences(
    con: duckdb.DuckDBPyConnection,
    versions: Mapping[dt.date, str] | None = None,
    full_rebuild: bool = False,
    max_sequence_length: int = 200,
    lake_dir: Path | None = None,
) -> MergeResult:
    """``user_sequence_steps`` (and the ``user_sequences`` view over it) with the clean days that
    changed merged in: each active user's new steps appended when the new days come last (their
    oldest steps past ``max_sequence_length`` deleted), users of a re-cleaned / removed / earlier
    day recomputed from their per-day steps."""
    max_len = int(max_sequence_length)
    if max_len < 1:
        raise ValueError(f"max_sequence_length must be at least 1, not {max_sequence_length}")

    def body(con, changes: DayChanges, full: bool) -> None:
        _prepare(con, changes, "user_id")
        present = _tables(con)
        if "user_sequence_steps" not in present:
            con.execute(f"CREATE TABLE user_sequence_steps ({features.SEQUENCE_STEPS_COLUMNS})")
        if "feat_seq_last" not in present:
            con.execute(f"CREATE TABLE feat_seq_last ({_SEQ_LAST_COLUMNS})")
        _replace_partials(con, "feat_part_seq", _SEQ_PART_SQL, "user_id", "_feat_affected")
        if not changes.appends_only:
            # days out of order: every user of the new days is recomputed as well
            con.execute(
                "INSERT INTO _feat_affected SELECT DISTINCT user_id FROM feat_part_seq "
                "WHERE day IN (SELECT day FROM _feat_compute)"
            )
        # the users' steps are numbered by buckets of users (a hash of the id) holding about
        # ROWS_PER_STATEMENT steps each: sorting every step of a first load at once went past
        # the memory limit at 30M events (one bucket for a nightly day)
        steps = con.execute(
            "SELECT count(*) FROM feat_part_seq WHERE day IN (SELECT day FROM _feat_compute)"
        ).fetchone()[0]
        if _has_rows(con, "_feat_affected"):
            steps += con.execute(
                "SELECT count(*) FROM feat_part_seq SEMI JOIN _feat_affected USING (user_id)"
            ).fetchone()[0]
            for table in ("user_sequence_steps", "feat_seq_last"):
                con.execute(
                    f"DELETE FROM {table} WHERE user_id IN (SELECT user_id FROM _feat_affected)"
                )
        buckets = max(1, -(-int(steps) // ROWS_PER_STATEMENT))
        for bucket in range(buckets):
            in_bucket = f"hash(user_id) % {buckets} = {bucket}" if buckets > 1 else "true"
            _merge_sequences(con, in_bucket, max_len)
        features.create_user_sequences_view(con)

    return _run(
        con,
        "user_sequences",
        SEQ_TABLES,
        versions,
        full_rebuild,
        _settings_key(f"max_sequence_length={max_len}"),
        body,
        lake_dir=lake_dir,
        rows_sql="SELECT count(*) FROM feat_seq_last",
    )


def sequence_preview_where(con: duckdb.DuckDBPyConnection, users: int = 5) -> str:
    """A filter of the ``user_sequences`` view to its first ``users`` users, as literal ids:
    DuckDB pushes a literal ``IN`` list through the view's ``GROUP BY`` into the scan, not a
    subquery (which computed every user's lists: 4.4 s at 60 days of 1M events)."""
    ids = [
        r[0]
        for r in con.execute(
            f"SELECT user_id FROM feat_seq_last ORDER BY user_id LIMIT {int(users)}"
        ).fetchall()
    ]
    listed = ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)
    return f"user_id IN ({listed})" if ids else "false"


def sequence_lengths(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Min / median / max of the users' step counts, their total and the steps stored (at most
    the last ``max_sequence_length`` of each user), from the stored tables."""
    return con.execute(
        "SELECT min(n_steps) AS min, median(n_steps) AS median, max(n_steps) AS max, "
        "sum(n_steps) AS total_steps, (SELECT count(*) FROM user_sequence_steps) AS stored_steps "
        "FROM feat_seq_last"
    ).df()


def _merge_sequences(con: duckdb.DuckDBPyConnection, in_bucket: str, max_len: int) -> None:
    """Merge the steps of the users for which ``in_bucket`` holds into ``user_sequence_steps``
    and ``feat_seq_last`` (each user's step count and last step; the rows of the users in
    ``_feat_affected`` were deleted from both): a user's steps of the new days
    (``_feat_compute``) are numbered on from their stored count, the first new step merged into
    the last stored one when they are the same item (a step that spans midnight: that row is
    replaced); a user in ``_feat_affected`` gets every step recomputed from all their day steps.
    Then the steps past the last ``max_len`` are deleted. Only the new steps are written: the
    stored steps of a user are not rewritten."""
    steps = _collapse_runs_sql(
        "SELECT user_id, day, step, item_id, strength, ts FROM feat_part_seq "
        "ANTI JOIN _feat_affected USING (user_id) "
        f"WHERE day IN (SELECT day FROM _feat_compute) AND {in_bucket} "
        "UNION ALL "
        "SELECT user_id, day, step, item_id, strength, ts FROM feat_part_seq "
        f"SEMI JOIN _feat_affected USING (user_id) WHERE {in_bucket}",
        keys="user_id",
        order="day, step",
    )
    # r: the step's rank among the user's new steps, k: their number; m = 1 when the first new
    # step continues the last stored one (it keeps that step's number, time and strongest type)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _feat_block AS
        WITH ranked AS (
            SELECT user_id, item_id, strength, ts, row_number() OVER w AS r,
                   count(*) OVER (PARTITION BY user_id) AS k, first_value(item_id) OVER w AS first_item
            FROM ({steps}) WINDOW w AS (PARTITION BY user_id ORDER BY step)
        ), joined AS (
            SELECT n.*, coalesce(l.n_steps, 0) AS old_n,
                   CAST(coalesce(l.last_item = n.first_item, false) AS BIGINT) AS m,
                   l.last_strength, l.last_ts
            FROM ranked n LEFT JOIN feat_seq_last l USING (user_id)
        )
        SELECT user_id, old_n + r - m AS step, item_id,
               CASE WHEN r = 1 AND m = 1 THEN greatest(last_strength, strength)
                    ELSE strength END AS strength,
               CASE WHEN r = 1 AND m = 1 THEN last_ts ELSE ts END AS ts,
               old_n + k - m AS n, old_n, m
        FROM joined
        """
    )
    # the stored steps that fall out of the last max_len, and the stored last steps that the
    # first new step continues (written again below with the stronger type)
    con.execute(
        f"""
        DELETE FROM user_sequence_steps s USING (
            SELECT DISTINCT user_id, n, old_n, m FROM _feat_block
            WHERE old_n > 0 AND (m = 1 OR n > {max_len})
        ) b
        WHERE s.user_id = b.user_id AND (s.step <= b.n - {max_len} OR (b.m = 1 AND s.step = b.old_n))
        """
    )
    event_type = features.STRENGTH_NAME_SQL.format(x="strength")
    con.execute(
        f"INSERT INTO user_sequence_steps SELECT user_id, step, item_id, {event_type}, ts "
        f"FROM _feat_block WHERE step > n - {max_len}"
    )
    con.execute(
        "DELETE FROM feat_seq_last WHERE user_id IN (SELECT DISTINCT user_id FROM _feat_block)"
    )
    con.execute(
        "INSERT INTO feat_seq_last SELECT user_id, n, item_id, strength, ts FROM _feat_block "
        "WHERE step = n"
    )
    con.execute("DROP TABLE _feat_block")


# --------------------------------------------------------------------------------------------
# activity_profile
# --------------------------------------------------------------------------------------------
_HOUR_PART_SQL = """
    SELECT partition_date AS day, user_id, (isodow(ts) - 1) * 24 + hour(ts) AS hour_of_week,
           count(*) AS events, count(*) FILTER (WHERE event_type = 'purchase') AS purchases
    FROM clean_events WHERE partition_date IN (SELECT day FROM _feat_compute) GROUP BY ALL
"""
HOUR_TABLES = ("feat_part_user_hour", "feat_state_user_hour")


def update_activity_profile(
    con: duckdb.DuckDBPyConnection,
    versions: Mapping[dt.date, str] | None = None,
    full_rebuild: bool = False,
    lake_dir: Path | None = None,
) -> MergeResult:
    """``activity_profile`` from the user x hour-of-week counts with the changed days merged."""

    def body(con, changes: DayChanges, full: bool) -> None:
        _prepare(con, changes, "user_id")
        _replace_partials(con, "feat_part_user_hour", _HOUR_PART_SQL, "user_id", "_feat_affected")
        _merge_sums(
            con,
            "feat_state_user_hour",
            "feat_part_user_hour",
            ("user_id", "hour_of_week"),
            "user_id",
            ("events", "purchases"),
        )
        # the view computes the shares and the overall rows when read: a night writes only
        # the user x hour counts it changed
        features.create_activity_profile_view(con, "feat_state_user_hour")

    return _run(
        con,
        "activity_profile",
        HOUR_TABLES,
        versions,
        full_rebuild,
        _settings_key(),
        body,
        lake_dir=lake_dir,
        rows_sql="SELECT count(*) + 168 FROM feat_state_user_hour",
    )


def update_all(
    con: duckdb.DuckDBPyConnection,
    full_rebuild: bool = False,
    max_sequence_length: int = 200,
    lake_dir: Path | None = None,
) -> list[MergeResult]:
    """The four tables in dependency order (one read of the day versions)."""
    versions = clean_day_versions(con, lake_dir)
    return [
        update_item_features(con, versions, full_rebuild),
        update_user_features(con, versions, full_rebuild),
        update_user_sequences(con, versions, full_rebuild, max_sequence_length),
        update_activity_profile(con, versions, full_rebuild),
    ]
