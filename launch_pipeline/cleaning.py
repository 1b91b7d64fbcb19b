"""Cleaning: the raw records of a day -> its ``clean_events`` and ``quarantined_events`` files.

All the work is one DuckDB SQL statement per day, read from where the day's records are (the
Parquet day file in place, or the landed CSV records; ``raw_io.raw_day_sql``), written to two
Parquet files of that day (``lake.py``): the clean rows typed, the quarantined rows with the
delivered values as text and a reason. Every raw row ends in exactly one of the two, so
``raw = clean + quarantined`` holds per partition and file (exact duplicates are quarantined
with the reason ``exact_duplicate``, the first copy stays clean). Each rule is partition-local
(it looks only at the day being cleaned and at the catalog), so days are cleaned in any order
or side by side and re-cleaning a day gives the same rows. Downstream SQL reads the files
through the views ``clean_events`` / ``quarantined_events`` (:func:`create_event_views`).

Reasons, in the order they are tested (a row gets the first that applies):

==============================  ==============================================================
``malformed_row``               the record could not be split into fields (wrong field count,
                                invalid UTF-8, over-long line); the raw line is kept
``<adapter flag>``              a reason pre-assigned by a source adapter (e.g.
                                ``non_product_code`` for Online Retail postage lines)
``missing_user_id``             empty user id
``missing_item_id``             empty item id
``invalid_event_type``          not one of view, cart, purchase, return, review
``invalid_timestamp``           ``ts`` is neither ISO 8601 nor unix seconds
``ambiguous_time_zone``         ``ts`` ends in a zone abbreviation other than UTC/GMT (``BST``,
                                ``IST``, ``CST`` each name several zones): its instant is unknown
``future_timestamp``            ``ts`` is later than the run time (plus a small tolerance)
``timestamp_outside_partition`` ``ts`` falls on another day than the file's partition
``unknown_item``                the item is neither in the catalog nor a launch candidate
``invalid_price``               price not a number, or <= 0 (on cart, purchase, return)
``missing_price``               a purchase without a price whose product has no catalog price
                                either (when purchases need a price: ``purchase_price_required``)
``invalid_quantity``            quantity not a positive whole number (on cart, purchase, return)
``invalid_rating``              a review without a whole rating in 1..5
``outlier_quantity``            quantity above ``max_quantity``
``outlier_price``               price more than ``price_outlier_factor`` off the catalog price
``exact_duplicate``             the same record again (every field equal) on the same day
                                (candidates found by the 64-bit record hash that is also the
                                ``event_id``, then every field compared)
``bot_user``                    the user made more than ``bot_events_per_minute`` events in
                                one minute that day: all the user's events of the day go
``fake_review_duplicate_text``  the same review text from ``fake_review_min_accounts`` or more
                                accounts on one day
``fake_review_burst``           one of >= ``review_burst_min_reviews`` 5-star reviews of an item
                                within an hour, by accounts that did not view, cart or buy it
                                that day
==============================  ==============================================================
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from launch_pipeline import lake, raw_io
from launch_pipeline.contract import EVENT_TYPES
from launch_pipeline.errors import AccountingError, InputFileError
from launch_pipeline.settings import CleaningRules

CLEAN_EVENTS = "clean_events"
QUARANTINED_EVENTS = "quarantined_events"

CLEAN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (column, type, expression over the classified rows of a day)
    # the record's key: its 64-bit hash as 16 hex digits (see _CLASSIFY_SQL)
    ("event_id", "VARCHAR", "lpad(to_hex(record_hash), 16, '0')"),
    ("partition_date", "DATE", "partition_date"),
    ("user_id", "VARCHAR", "u"),
    ("item_id", "VARCHAR", "i"),
    ("event_type", "VARCHAR", "et"),
    ("ts", "TIMESTAMP", "t"),
    ("quantity", "BIGINT", "CASE WHEN et IN ('cart', 'purchase', 'return') THEN q_final END"),
    ("price", "DOUBLE", "CASE WHEN et IN ('cart', 'purchase', 'return') THEN price_final END"),
    (
        "price_imputed",
        "BOOLEAN",
        "CASE WHEN et IN ('cart', 'purchase', 'return') THEN price_was_imputed END",
    ),
    ("rating", "INTEGER", "CASE WHEN et = 'review' THEN rt END"),
    ("review_text", "VARCHAR", "CASE WHEN et = 'review' THEN review_text END"),
    ("session_id", "VARCHAR", "session_id"),
    ("source_file", "VARCHAR", "source_file"),
    ("source_row", "BIGINT", "source_row"),
)
"""The columns of ``clean_events`` (one Parquet file per day in the lake, a view in DuckDB)."""

QUARANTINED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("partition_date", "DATE", "partition_date"),
    ("reason", "VARCHAR", "reason"),
    ("source_file", "VARCHAR", "source_file"),
    ("source_row", "BIGINT", "source_row"),
    *((c, "VARCHAR", c) for c in ("user_id", "item_id", "event_type", "ts", "quantity")),
    *((c, "VARCHAR", c) for c in ("price", "rating", "review_text", "session_id")),
    ("detail", "VARCHAR", "coalesce(parse_error || ' | ' || raw_line, parse_error)"),
)
"""The columns of ``quarantined_events``: the delivered values as text, with file and row."""


def _ddl(name: str, columns) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {name} (" + ", ".join(f"{c} {t}" for c, t, _ in columns) + ")"
    )


CLEAN_EVENTS_DDL = _ddl(CLEAN_EVENTS, CLEAN_COLUMNS)
"""A ``clean_events`` *table* with the columns of the view (see :func:`ensure_tables`)."""
QUARANTINED_EVENTS_DDL = _ddl(QUARANTINED_EVENTS, QUARANTINED_COLUMNS)


def _select(columns) -> str:
    return ", ".join(f"CAST({expr} AS {typ}) AS {name}" for name, typ, expr in columns)


def _empty(columns) -> str:
    return (
        "SELECT " + ", ".join(f"NULL::{typ} AS {name}" for name, typ, _ in columns) + " WHERE false"
    )


QUARANTINE_REASONS: tuple[str, ...] = (
    "malformed_row",
    "missing_user_id",
    "missing_item_id",
    "invalid_event_type",
    "invalid_timestamp",
    "ambiguous_time_zone",
    "future_timestamp",
    "timestamp_outside_partition",
    "unknown_item",
    "invalid_price",
    "missing_price",
    "invalid_quantity",
    "invalid_rating",
    "outlier_quantity",
    "outlier_price",
    "exact_duplicate",
    "bot_user",
    "fake_review_duplicate_text",
    "fake_review_burst",
)


def ambiguous_zone_sql(x: str) -> str:
    """SQL: the text ``x`` ends in a time-zone abbreviation other than UTC/GMT (``BST``, ``IST``,
    ``CST``: each names several zones, and DuckDB picks one), so its instant is unknown."""
    return (
        f"coalesce(regexp_matches({x}, '[0-9]\\s*[A-Za-z]{{2,5}}$') AND upper(regexp_extract("
        f"{x}, '([A-Za-z]{{2,5}})$', 1)) NOT IN ('UTC', 'GMT', 'AM', 'PM'), false)"
    )


_EVENT_TYPES_SQL = ", ".join(f"'{t}'" for t in EVENT_TYPES)

# _raw_day: the raw records of the day being cleaned; $now: the run time (UTC, naive)
_CLASSIFY_SQL = f"""
CREATE OR REPLACE TEMP TABLE _classified AS
WITH base AS (
    SELECT r.*,
           nullif(trim(r.user_id), '') AS u,
           nullif(trim(r.item_id), '') AS i,
           lower(trim(r.event_type)) AS et,
           CASE
             WHEN regexp_full_match(trim(r.ts), '-?[0-9]+(\\.[0-9]+)?') THEN
               CASE WHEN TRY_CAST(trim(r.ts) AS DOUBLE) BETWEEN 0 AND 32503680000
                    THEN to_timestamp(TRY_CAST(trim(r.ts) AS DOUBLE)) AT TIME ZONE 'UTC' END
             ELSE TRY_CAST(trim(r.ts) AS TIMESTAMPTZ) AT TIME ZONE 'UTC'
           END AS t,
           {ambiguous_zone_sql("trim(r.ts)")} AS tz_ambiguous,
           TRY_CAST(nullif(trim(r.quantity), '') AS DOUBLE) AS q,
           nullif(trim(r.quantity), '') AS q_raw,
           TRY_CAST(nullif(trim(r.price), '') AS DOUBLE) AS p,
           nullif(trim(r.price), '') AS p_raw,
           TRY_CAST(nullif(trim(r.rating), '') AS DOUBLE) AS rt,
           nullif(trim(r.flag), '') AS fl,
           -- the record's key: DuckDB's 64-bit hash of every delivered field (NULL and ''
           -- hash apart, the order counts); exact duplicates are told by the fields themselves
           hash(r.user_id, r.item_id, r.event_type, r.ts, r.quantity, r.price, r.rating,
                r.review_text, r.session_id, r.raw_line) AS record_hash
    FROM _raw_day r
), known AS (   -- one row per id (the catalog loaders keep the two tables disjoint, and a
                -- product wins here anyway): a join that matched twice would double the events
    SELECT item_id, price AS catalog_price FROM product_catalog
    UNION ALL
    SELECT item_id, price FROM launch_candidates
    WHERE item_id NOT IN (SELECT item_id FROM product_catalog WHERE item_id IS NOT NULL)
), typed AS (
    SELECT b.*, k.catalog_price, (k.item_id IS NOT NULL) AS is_known,
           coalesce(b.p, CASE WHEN b.p_raw IS NULL THEN k.catalog_price END) AS price_final,
           (b.p_raw IS NULL AND k.catalog_price IS NOT NULL) AS price_was_imputed,
           coalesce(b.q, CASE WHEN b.q_raw IS NULL THEN 1 END) AS q_final
    FROM base b LEFT JOIN known k ON k.item_id = b.i
), valid_rows AS (   -- rows that pass the record-level rules: the input of the noise rules
    SELECT * FROM typed
    WHERE parse_error IS NULL AND fl IS NULL AND u IS NOT NULL AND i IS NOT NULL
      AND et IN ({_EVENT_TYPES_SQL}) AND t IS NOT NULL AND NOT tz_ambiguous
      AND CAST(t AS DATE) = partition_date
), bots AS (
    SELECT DISTINCT partition_date, u FROM (
        SELECT partition_date, u, date_trunc('minute', t) AS minute, count(*) AS n
        FROM valid_rows GROUP BY ALL
    ) WHERE n > $bot_per_minute
), dup_texts AS (
    SELECT partition_date, lower(regexp_replace(trim(review_text), '\\s+', ' ', 'g')) AS txt
    FROM valid_rows
    WHERE et = 'review' AND nullif(trim(review_text), '') IS NOT NULL
    GROUP BY ALL HAVING count(DISTINCT u) >= $fake_min_accounts
), fives AS (
    SELECT partition_date, u, i, t, source_file, source_row
    FROM valid_rows WHERE et = 'review' AND rt = 5
), touched AS (   -- (day, user, item) of the 5-star reviews also viewed, carted or bought
    SELECT DISTINCT v.partition_date, v.u, v.i FROM valid_rows v
    SEMI JOIN fives f ON f.partition_date = v.partition_date AND f.u = v.u AND f.i = v.i
    WHERE v.et IN ('view', 'cart', 'purchase')
), cold_fives AS (
    SELECT f.* FROM fives f
    WHERE NOT EXISTS (SELECT 1 FROM touched x
                      WHERE x.partition_date = f.partition_date AND x.u = f.u AND x.i = f.i)
), burst_starts AS (   -- windows [t, t + 1 hour) holding >= burst_min cold 5-star reviews
    SELECT partition_date, i, t AS window_start FROM (
        SELECT partition_date, i, t,
               count(*) OVER (PARTITION BY partition_date, i ORDER BY t
                   RANGE BETWEEN CURRENT ROW AND INTERVAL 1 HOUR FOLLOWING) AS n_fwd
        FROM cold_fives
    ) WHERE n_fwd >= $burst_min
), bursts AS (
    SELECT DISTINCT c.source_file, c.source_row
    FROM cold_fives c JOIN burst_starts b
      ON b.partition_date = c.partition_date AND b.i = c.i
     AND c.t BETWEEN b.window_start AND b.window_start + INTERVAL 1 HOUR
), dup_keys AS (   -- (day, hash of the record) seen twice: candidates for exact duplicates
    SELECT partition_date, record_hash FROM typed GROUP BY ALL HAVING count(*) > 1
), copies AS (      -- copy number of each candidate row among the equal records of its day
    SELECT t.partition_date, t.source_file, t.source_row,
           row_number() OVER (PARTITION BY t.partition_date, t.user_id, t.item_id, t.event_type,
                                           t.ts, t.quantity, t.price, t.rating, t.review_text,
                                           t.session_id, t.raw_line
                              ORDER BY t.source_file, t.source_row) AS copy_no
    FROM typed t SEMI JOIN dup_keys k
      ON k.partition_date = t.partition_date AND k.record_hash = t.record_hash
), ranked AS (
    SELECT t.*,
           coalesce(cp.copy_no, 1) AS copy_no,
           (bo.u IS NOT NULL) AS is_bot,
           (dt.txt IS NOT NULL) AS is_dup_text,
           (bu.source_row IS NOT NULL) AS in_burst
    FROM typed t
    LEFT JOIN copies cp ON cp.partition_date = t.partition_date
         AND cp.source_file = t.source_file AND cp.source_row = t.source_row
    LEFT JOIN bots bo ON bo.partition_date = t.partition_date AND bo.u = t.u
    LEFT JOIN dup_texts dt ON t.et = 'review' AND dt.partition_date = t.partition_date
         AND dt.txt = lower(regexp_replace(trim(t.review_text), '\\s+', ' ', 'g'))
    LEFT JOIN bursts bu ON bu.source_file = t.source_file AND bu.source_row = t.source_row
)
SELECT record_hash, partition_date, source_file, source_row, reason,
       u, i, et, t, q_final, price_final, price_was_imputed, rt, review_text, session_id,
       -- the delivered text is only needed for quarantined rows
       CASE WHEN reason IS NOT NULL THEN user_id END AS user_id,
       CASE WHEN reason IS NOT NULL THEN item_id END AS item_id,
       CASE WHEN reason IS NOT NULL THEN event_type END AS event_type,
       CASE WHEN reason IS NOT NULL THEN ts END AS ts,
       CASE WHEN reason IS NOT NULL THEN quantity END AS quantity,
       CASE WHEN reason IS NOT NULL THEN price END AS price,
       CASE WHEN reason IS NOT NULL THEN rating END AS rating,
       parse_error, raw_line
FROM (
SELECT r.* EXCLUDE (is_bot, is_dup_text, in_burst),
    CASE
      WHEN r.parse_error IS NOT NULL THEN 'malformed_row'
      WHEN r.fl IS NOT NULL THEN r.fl
      WHEN r.u IS NULL THEN 'missing_user_id'
      WHEN r.i IS NULL THEN 'missing_item_id'
      WHEN r.et IS NULL OR r.et NOT IN ({_EVENT_TYPES_SQL}) THEN 'invalid_event_type'
      WHEN r.t IS NULL THEN 'invalid_timestamp'
      WHEN r.tz_ambiguous THEN 'ambiguous_time_zone'
      WHEN r.t > $now + INTERVAL ($future_tolerance_minutes) MINUTE THEN 'future_timestamp'
      WHEN CAST(r.t AS DATE) <> r.partition_date THEN 'timestamp_outside_partition'
      WHEN NOT r.is_known THEN 'unknown_item'
      WHEN r.et IN ('cart', 'purchase', 'return')
           AND (r.price_final IS NULL AND r.p_raw IS NOT NULL
                OR r.price_final <= 0 OR isnan(r.price_final) OR isinf(r.price_final))
           THEN 'invalid_price'
      WHEN r.et = 'purchase' AND r.price_final IS NULL AND $price_required
           THEN 'missing_price'
      WHEN r.et IN ('cart', 'purchase', 'return')
           AND (r.q_final IS NULL OR r.q_final <= 0 OR r.q_final <> floor(r.q_final))
           THEN 'invalid_quantity'
      WHEN r.et = 'review' AND (r.rt IS NULL OR r.rt NOT BETWEEN 1 AND 5 OR r.rt <> floor(r.rt))
           THEN 'invalid_rating'
      WHEN r.et IN ('cart', 'purchase', 'return') AND r.q_final > $max_quantity
           THEN 'outlier_quantity'
      WHEN r.et IN ('cart', 'purchase', 'return') AND r.catalog_price > 0
           AND (r.price_final > r.catalog_price * $price_factor
                OR r.price_final < r.catalog_price / $price_factor)
           THEN 'outlier_price'
      WHEN r.copy_no > 1 THEN 'exact_duplicate'
      WHEN r.is_bot THEN 'bot_user'
      WHEN r.is_dup_text THEN 'fake_review_duplicate_text'
      WHEN r.in_burst THEN 'fake_review_burst'
    END AS reason
FROM ranked r
)
"""


def _params(rules: CleaningRules, now: dt.datetime) -> dict:
    return {
        "now": now.replace(tzinfo=None),
        "bot_per_minute": rules.bot_events_per_minute,
        "fake_min_accounts": rules.fake_review_min_accounts,
        "burst_min": rules.review_burst_min_reviews,
        "max_quantity": rules.max_quantity,
        "price_factor": rules.price_outlier_factor,
        "future_tolerance_minutes": rules.future_tolerance_minutes,
        "price_required": bool(rules.purchase_price_required),
    }


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty ``clean_events`` / ``quarantined_events`` *tables* with the columns of the views,
    unless something of that name exists: for code and tests that build clean events row by
    row in a connection of their own (the pipeline reads the partition files through views)."""
    con.execute(CLEAN_EVENTS_DDL)
    con.execute(QUARANTINED_EVENTS_DDL)


def create_event_views(con: duckdb.DuckDBPyConnection, lake_dir: Path, *, raw: bool = True) -> None:
    """(Re)create the views ``raw_events``, ``clean_events`` and ``quarantined_events`` in
    ``con`` over the partition files of ``lake_dir``, with the columns the tables had.

    ``clean_events`` / ``quarantined_events`` read every partition file present when a query
    runs (a glob); ``raw_events`` lists the landed days and is recreated by each warehouse step
    (``DuckDBWarehouse``) and after each cleaning. A table of one of these names (a warehouse
    from before the partition files) is dropped: its rows are rebuilt by re-materializing the
    partitions."""
    for name, columns in ((CLEAN_EVENTS, CLEAN_COLUMNS), (QUARANTINED_EVENTS, QUARANTINED_COLUMNS)):
        lake.ensure_schema_file(con, lake_dir, name, _empty(columns))
        lake.replace_view(con, name, lake.dataset_glob_sql(lake_dir, name))
    if raw:
        lake.replace_view(con, "raw_events", raw_io.raw_events_sql(con, lake_dir))


_ACCOUNTING_SQL = """
WITH raw AS (
    SELECT partition_date, source_file, count(*) AS raw
    FROM {raw} WHERE partition_date BETWEEN $start AND $end GROUP BY ALL
), landed AS (
    SELECT partition_date, source_file, source_row, false AS quarantined
    FROM {clean} WHERE partition_date BETWEEN $start AND $end
    UNION ALL
    SELECT partition_date, source_file, source_row, true
    FROM {quarantined} WHERE partition_date BETWEEN $start AND $end
), outcome AS (
    SELECT partition_date, source_file,
           count(*) FILTER (WHERE NOT quarantined) AS clean,
           count(*) FILTER (WHERE quarantined) AS quarantined,
           count(DISTINCT source_row) AS distinct_rows
    FROM landed GROUP BY ALL
)
SELECT partition_date, source_file, coalesce(raw, 0) AS raw, coalesce(clean, 0) AS clean,
       coalesce(quarantined, 0) AS quarantined, coalesce(distinct_rows, 0) AS distinct_rows
FROM raw FULL OUTER JOIN outcome USING (partition_date, source_file)
ORDER BY partition_date, source_file
"""


def _accounting(con, start, end, raw: str, clean: str, quarantined: str) -> pd.DataFrame:
    sql = _ACCOUNTING_SQL.format(raw=raw, clean=clean, quarantined=quarantined)
    frame = con.execute(sql, {"start": start, "end": end}).df()
    out = frame["clean"] + frame["quarantined"]
    bad = frame[(frame["raw"] != out) | (frame["distinct_rows"] != out)]
    if len(bad):
        row = bad.iloc[0]
        raw_n, clean_n, quar, distinct = (
            int(row["raw"]),
            int(row["clean"]),
            int(row["quarantined"]),
            int(row["distinct_rows"]),
        )
        if clean_n + quar > distinct:
            cause = (
                f"{raw_n} raw rows became {clean_n} clean + {quar} quarantined rows: "
                f"{clean_n + quar - distinct} rows were counted more than once"
            )
        else:
            cause = (
                f"{raw_n} raw rows but {clean_n} clean + {quar} quarantined: "
                f"{raw_n - clean_n - quar} rows are in neither table"
            )
        more = f" (and {len(bad) - 1} more partition files)" if len(bad) > 1 else ""
        raise AccountingError(
            row["source_file"], pd.Timestamp(row["partition_date"]).date(), cause + more
        )
    return frame


def row_accounting(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date):
    """``raw = clean + quarantined`` per partition and source file, counted in the views
    ``raw_events``, ``clean_events`` and ``quarantined_events`` (:func:`create_event_views`),
    each raw record exactly once. Cleaning counts the same for each day in its new files
    before they replace the old ones.

    Returns the per-(partition, file) frame; raises :class:`AccountingError` naming the
    partition, the file and what went wrong when a record is missing or counted twice."""
    return _accounting(con, start, end, "raw_events", CLEAN_EVENTS, QUARANTINED_EVENTS)


@dataclass(frozen=True)
class CleaningResult:
    """Row accounting of one cleaning run: totals, rows per quarantine reason (largest first),
    and the same per partition (``partition_date``, ``raw``, ``clean``, ``quarantined``,
    ``exact_duplicates``) and per (partition, source file)."""

    raw: int
    clean: int
    quarantined: int
    exact_duplicates: int
    reasons: dict[str, int]
    per_partition: pd.DataFrame
    per_file: pd.DataFrame

    @property
    def accounting_holds(self) -> bool:
        return self.raw == self.clean + self.quarantined


@dataclass(frozen=True)
class DayCleaning:
    """What cleaning one day wrote: per-file accounting and rows per quarantine reason."""

    day: dt.date
    per_file: pd.DataFrame
    reasons: dict[str, int]


def clean_day(
    con: duckdb.DuckDBPyConnection,
    lake_dir: Path,
    source: raw_io.RawSource,
    rules: CleaningRules = CleaningRules(),
    now: dt.datetime | None = None,
) -> DayCleaning:
    """Clean one landed day into its ``clean_events`` and ``quarantined_events`` partition files.

    ``con`` is a working connection in which ``product_catalog`` and ``launch_candidates`` can
    be read (the warehouse, or an in-memory connection with views over the catalog snapshot);
    nothing is written into its database. Both files are written beside the old ones first;
    the row accounting is counted in them (:class:`AccountingError` and nothing replaced when a
    record is lost or doubled); then they replace the old ones."""
    now = now or dt.datetime.now(dt.timezone.utc)
    day = source.day
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE OR REPLACE TEMP VIEW _raw_day AS {raw_io.raw_day_sql(lake_dir, source)}")
    staged: list[lake.StagedPartition] = []
    try:
        try:
            con.execute(_CLASSIFY_SQL, _params(rules, now))
        except duckdb.IOException as exc:
            raise InputFileError(
                source.path,
                f"cannot be read ({str(exc).splitlines()[0]})",
                "check that the file is complete (not truncated); deliver it again, then "
                f"materialize partition {day} again",
            ) from exc
        staged.append(
            lake.stage_partition(
                con,
                # no ORDER BY: the rows keep the order they are classified in (the delivery
                # order in practice); readers order what they need, and a sort of every row
                # cost 1.6 of the 23 CPU-seconds of cleaning at 10M events
                f"SELECT {_select(CLEAN_COLUMNS)} FROM _classified WHERE reason IS NULL",
                lake_dir,
                CLEAN_EVENTS,
                day,
            )
        )
        staged.append(
            lake.stage_partition(
                con,
                f"SELECT {_select(QUARANTINED_COLUMNS)} FROM _classified "
                "WHERE reason IS NOT NULL ORDER BY source_file, source_row",
                lake_dir,
                QUARANTINED_EVENTS,
                day,
            )
        )
        per_file = _accounting(
            con,
            day,
            day,
            "_raw_day",
            f"read_parquet('{staged[0].sql_path}', hive_partitioning = false)",
            f"read_parquet('{staged[1].sql_path}', hive_partitioning = false)",
        )
        landed = int(per_file["raw"].sum())
        if landed != source.records:
            raise AccountingError(
                source.path,
                day,
                f"the file held {source.records} records when it was landed but {landed} were "
                "read now: deliver it again and materialize the partition again",
            )
        reasons = con.execute(
            "SELECT reason, count(*) FROM _classified WHERE reason IS NOT NULL GROUP BY 1"
        ).fetchall()
        lake.commit_partitions(staged, lake_dir)
    finally:
        lake.discard_partitions(staged)
        con.execute("DROP TABLE IF EXISTS _classified; DROP VIEW IF EXISTS _raw_day;")
    return DayCleaning(day, per_file, {str(k): int(v) for k, v in reasons})


def clean_partitions(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    rules: CleaningRules = CleaningRules(),
    now: dt.datetime | None = None,
    *,
    lake_dir: Path,
    workers: int = 1,
) -> CleaningResult:
    """Clean the landed days ``start..end`` (inclusive), each into its own partition files
    (:func:`clean_day`), replacing whatever those days held before; a day of the range that
    has no landing any more loses its old partitions. The rules are partition-local, so the
    days are independent: ``workers`` > 1 cleans that many days at once, each on its own
    cursor of ``con``. Recreates the views in ``con`` (:func:`create_event_views`).

    Returns row accounting: per-partition and total raw/clean/quarantined counts, per
    (partition, file) counts and the count per quarantine reason."""
    now = now or dt.datetime.now(dt.timezone.utc)
    wanted = [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]
    sources = raw_io.raw_sources(con, lake_dir, wanted)
    for day in wanted:
        if day not in sources:
            lake.remove_partition(lake_dir, CLEAN_EVENTS, day)
            lake.remove_partition(lake_dir, QUARANTINED_EVENTS, day)
    if workers > 1 and len(sources) > 1:
        from concurrent.futures import ThreadPoolExecutor

        def _one(src: raw_io.RawSource) -> DayCleaning:
            cur = con.cursor()
            try:
                return clean_day(cur, lake_dir, src, rules, now)
            finally:
                cur.close()

        with ThreadPoolExecutor(max_workers=workers) as pool:
            days = list(pool.map(_one, sources.values()))
    else:
        days = [clean_day(con, lake_dir, src, rules, now) for src in sources.values()]
    create_event_views(con, lake_dir)
    return summarise(days)


def summarise(days: list[DayCleaning]) -> CleaningResult:
    """One :class:`CleaningResult` for the cleaned days."""
    columns = ["partition_date", "source_file", "raw", "clean", "quarantined", "distinct_rows"]
    per_file = (
        pd.concat([d.per_file for d in days], ignore_index=True)
        if days
        else pd.DataFrame({c: [] for c in columns})
    )
    per_file = per_file.sort_values(["partition_date", "source_file"]).reset_index(drop=True)
    per_day = (
        per_file.groupby("partition_date", as_index=False)[["raw", "clean", "quarantined"]]
        .sum()
        .sort_values("partition_date")
        .reset_index(drop=True)
    )
    dups = {d.day: d.reasons.get("exact_duplicate", 0) for d in days}
    per_day["exact_duplicates"] = [
        int(dups.get(pd.Timestamp(d).date(), 0)) for d in per_day["partition_date"]
    ]
    reasons: dict[str, int] = {}
    for d in days:
        for k, v in d.reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    reasons = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return CleaningResult(
        raw=int(per_day["raw"].sum()),
        clean=int(per_day["clean"].sum()),
        quarantined=int(per_day["quarantined"].sum()),
        exact_duplicates=int(per_day["exact_duplicates"].sum()),
        reasons=reasons,
        per_partition=per_day,
        per_file=per_file,
    )


MIN_USERS = 10
MIN_DAYS = 8
"""Below these (shoppers, days with clean events) the model and the plan have too little to go
on: the cleaning step warns (the training step refuses when nothing can be learnt)."""


def degenerate_warnings(
    con: duckdb.DuckDBPyConnection, days_run: tuple[dt.date, dt.date] | None = None
) -> list[str]:
    """Plain-words warnings about clean data that is valid but too small or too narrow.
    ``days_run``: the (first, last) day just cleaned; when those days alone hold
    :data:`MIN_USERS` shoppers the whole history does too, and it is not counted (counting the
    distinct shoppers of every day took 1.0 s of a nightly run at 60 days of 1M events)."""
    users = None
    if days_run is not None:
        users = con.execute(
            "SELECT count(DISTINCT user_id) FROM clean_events WHERE partition_date BETWEEN ? AND ?",
            list(days_run),
        ).fetchall()[0][0]
    if users is None or users < MIN_USERS:
        users = con.execute("SELECT count(DISTINCT user_id) FROM clean_events").fetchall()[0][0]
    days = con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT partition_date FROM clean_events)"
    ).fetchall()[0][0]
    out = []
    if users < MIN_USERS:
        out.append(
            f"the clean events hold only {users} shopper(s): the recommender learns from "
            f"differences between shoppers and needs at least {MIN_USERS}; its scores and "
            "audiences will say little (load the events of more shoppers)"
        )
    if days < MIN_DAYS:
        out.append(
            f"the clean events cover only {days} day(s): the model keeps the last days to "
            f"evaluate itself and needs at least {MIN_DAYS} (load more days)"
        )
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    if "product_catalog" in tables:
        cats = con.execute(
            "SELECT count(DISTINCT category) FILTER (WHERE category <> 'unknown') "
            "FROM product_catalog"
        ).fetchall()[0][0]
        if cats < 2:
            out.append(
                f"the products have {cats} real categor{'y' if cats == 1 else 'ies'}: category "
                "affinities and the per-category cap cannot tell products apart (fill the "
                "category column)"
            )
    return out
