"""Cleaning: raw event rows -> ``clean_events`` or ``quarantined_events`` (with a reason).

All the work is one DuckDB SQL statement per partition range. Every raw row ends in exactly one
of the two tables, so ``raw = clean + quarantined`` holds per partition (exact duplicates are
quarantined with the reason ``exact_duplicate``, the first copy stays clean). Each rule is
partition-local (it looks only at the day being cleaned and at the catalog), so partitions can
be cleaned in any order or in parallel and re-cleaning a day gives the same rows.

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

import duckdb
import pandas as pd

from launch_pipeline.contract import EVENT_TYPES
from launch_pipeline.errors import AccountingError
from launch_pipeline.settings import CleaningRules
from launch_pipeline.warehouse import Rows, replace_atomically

CLEAN_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS clean_events (
    event_id VARCHAR NOT NULL,
    partition_date DATE NOT NULL,
    user_id VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    quantity BIGINT,
    price DOUBLE,
    price_imputed BOOLEAN,
    rating INTEGER,
    review_text VARCHAR,
    session_id VARCHAR,
    source_file VARCHAR,
    source_row BIGINT
)
"""

QUARANTINED_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS quarantined_events (
    partition_date DATE NOT NULL,
    reason VARCHAR NOT NULL,
    source_file VARCHAR,
    source_row BIGINT,
    user_id VARCHAR, item_id VARCHAR, event_type VARCHAR, ts VARCHAR,
    quantity VARCHAR, price VARCHAR, rating VARCHAR, review_text VARCHAR, session_id VARCHAR,
    detail VARCHAR
)
"""

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

# $start, $end: partition range; $now: the run time (UTC, naive)
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
           md5(concat_ws(chr(31), coalesce(r.user_id, chr(0)), coalesce(r.item_id, chr(0)),
               coalesce(r.event_type, chr(0)), coalesce(r.ts, chr(0)),
               coalesce(r.quantity, chr(0)), coalesce(r.price, chr(0)),
               coalesce(r.rating, chr(0)), coalesce(r.review_text, chr(0)),
               coalesce(r.session_id, chr(0)), coalesce(r.raw_line, chr(0)))) AS event_id
    FROM raw_events r
    WHERE r.partition_date BETWEEN $start AND $end
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
), touched AS (
    SELECT DISTINCT partition_date, u, i FROM valid_rows WHERE et IN ('view', 'cart', 'purchase')
), cold_fives AS (
    SELECT v.partition_date, v.u, v.i, v.t, v.event_id, v.source_file, v.source_row
    FROM valid_rows v
    WHERE v.et = 'review' AND v.rt = 5
      AND NOT EXISTS (SELECT 1 FROM touched x
                      WHERE x.partition_date = v.partition_date AND x.u = v.u AND x.i = v.i)
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
    SELECT partition_date, hash(event_id) AS h FROM typed GROUP BY ALL HAVING count(*) > 1
), copies AS (      -- copy number of each candidate row among the equal records of its day
    SELECT t.partition_date, t.source_file, t.source_row,
           row_number() OVER (PARTITION BY t.partition_date, t.event_id
                              ORDER BY t.source_file, t.source_row) AS copy_no
    FROM typed t SEMI JOIN dup_keys k
      ON k.partition_date = t.partition_date AND k.h = hash(t.event_id)
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
SELECT event_id, partition_date, source_file, source_row, reason,
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


def _params(start: dt.date, end: dt.date, rules: CleaningRules, now: dt.datetime) -> dict:
    return {
        "start": start,
        "end": end,
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
    con.execute(CLEAN_EVENTS_DDL)
    con.execute(QUARANTINED_EVENTS_DDL)


BATCH_ROWS = 1_000_000  # raw rows classified at once (whole partitions; >= 1 partition)


def _batches(day_rows: list[tuple], target: int) -> list[tuple[dt.date, dt.date]]:
    """Consecutive runs of partitions of about ``target`` rows (a larger day stands alone)."""
    spans: list[list] = []
    n = 0
    for day, rows in day_rows:
        if spans and n + rows <= target:
            spans[-1][1] = day
            n += rows
        else:
            spans.append([day, day])
            n = rows
    return [(lo, hi) for lo, hi in spans]


def _classify_and_insert(con: duckdb.DuckDBPyConnection, params: dict) -> None:
    """Classify the raw rows of ``params['start']..params['end']`` into ``_classified`` and
    insert them into ``clean_events`` / ``quarantined_events``."""
    con.execute(_CLASSIFY_SQL, params)
    con.execute(
        """
        INSERT INTO clean_events
        SELECT event_id, partition_date, u, i, et, t,
               CASE WHEN et IN ('cart', 'purchase', 'return') THEN CAST(q_final AS BIGINT) END,
               CASE WHEN et IN ('cart', 'purchase', 'return') THEN price_final END,
               CASE WHEN et IN ('cart', 'purchase', 'return') THEN price_was_imputed END,
               CASE WHEN et = 'review' THEN CAST(rt AS INTEGER) END,
               CASE WHEN et = 'review' THEN review_text END,
               session_id, source_file, source_row
        FROM _classified WHERE reason IS NULL
        ORDER BY partition_date, t, source_file, source_row
        """
    )
    con.execute(
        """
        INSERT INTO quarantined_events
        SELECT partition_date, reason, source_file, source_row,
               user_id, item_id, event_type, ts, quantity, price, rating, review_text,
               session_id, coalesce(parse_error || ' | ' || raw_line, parse_error)
        FROM _classified WHERE reason IS NOT NULL
        ORDER BY partition_date, source_file, source_row
        """
    )
    con.execute("DROP TABLE _classified")


_ACCOUNTING_SQL = """
WITH raw AS (
    SELECT partition_date, source_file, count(*) AS raw
    FROM raw_events WHERE partition_date BETWEEN $start AND $end GROUP BY ALL
), landed AS (
    SELECT partition_date, source_file, source_row, false AS quarantined
    FROM clean_events WHERE partition_date BETWEEN $start AND $end
    UNION ALL
    SELECT partition_date, source_file, source_row, true
    FROM quarantined_events WHERE partition_date BETWEEN $start AND $end
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


def row_accounting(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date):
    """``raw = clean + quarantined`` per partition and source file, counted in the tables
    (``raw_events``, ``clean_events``, ``quarantined_events``), each raw record exactly once.

    Returns the per-(partition, file) frame; raises :class:`AccountingError` naming the
    partition, the file and what went wrong when a record is missing or counted twice."""
    frame = con.execute(_ACCOUNTING_SQL, {"start": start, "end": end}).df()
    out = frame["clean"] + frame["quarantined"]
    bad = frame[(frame["raw"] != out) | (frame["distinct_rows"] != out)]
    if len(bad):
        row = bad.iloc[0]
        raw, clean, quar, distinct = (
            int(row["raw"]),
            int(row["clean"]),
            int(row["quarantined"]),
            int(row["distinct_rows"]),
        )
        if clean + quar > distinct:
            cause = (
                f"{raw} raw rows became {clean} clean + {quar} quarantined rows: "
                f"{clean + quar - distinct} rows were counted more than once"
            )
        else:
            cause = (
                f"{raw} raw rows but {clean} clean + {quar} quarantined: "
                f"{raw - clean - quar} rows are in neither table"
            )
        more = f" (and {len(bad) - 1} more partition files)" if len(bad) > 1 else ""
        raise AccountingError(
            row["source_file"], pd.Timestamp(row["partition_date"]).date(), cause + more
        )
    return frame


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


def clean_partitions(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    rules: CleaningRules = CleaningRules(),
    now: dt.datetime | None = None,
) -> CleaningResult:
    """Clean the raw rows of the partitions ``start..end`` (inclusive) into ``clean_events`` and
    ``quarantined_events``, replacing whatever those days held before (one transaction).

    The rules are partition-local, so the range is classified in batches of whole consecutive
    partitions of about ``BATCH_ROWS`` raw rows (inside the one transaction): memory and sort
    sizes are bounded by the batch (or the largest day), not by the range.

    Before committing, the row accounting is counted in the tables (:func:`row_accounting`);
    when a record is lost or doubled nothing is committed and :class:`AccountingError` names
    the partition and the file.

    Returns row accounting: per-partition and total raw/clean/quarantined counts, per
    (partition, file) counts and the count per quarantine reason."""
    now = now or dt.datetime.now(dt.timezone.utc)
    con.execute("SET TimeZone = 'UTC'")
    ensure_tables(con)
    days = con.execute(
        "SELECT partition_date, count(*) FROM raw_events "
        "WHERE partition_date BETWEEN ? AND ? GROUP BY 1 ORDER BY 1",
        [start, end],
    ).fetchall()
    spans = _batches(days, BATCH_ROWS) or [(start, end)]
    days_in_range = "partition_date BETWEEN ? AND ?"
    with replace_atomically(
        con,
        Rows("clean_events", days_in_range, [start, end]),
        Rows("quarantined_events", days_in_range, [start, end]),
    ):
        for lo, hi in spans:
            _classify_and_insert(con, _params(lo, hi, rules, now))
        per_file = row_accounting(con, start, end)  # raises before COMMIT: nothing written
        dups = dict(
            con.execute(
                "SELECT partition_date, count(*) FROM quarantined_events "
                "WHERE partition_date BETWEEN ? AND ? AND reason = 'exact_duplicate' GROUP BY 1",
                [start, end],
            ).fetchall()
        )
        reasons = con.execute(
            "SELECT reason, count(*) FROM quarantined_events "
            "WHERE partition_date BETWEEN ? AND ? GROUP BY 1 ORDER BY 2 DESC, 1",
            [start, end],
        ).fetchall()
    per_day = (
        per_file.groupby("partition_date", as_index=False)[["raw", "clean", "quarantined"]]
        .sum()
        .sort_values("partition_date")
        .reset_index(drop=True)
    )
    per_day["exact_duplicates"] = [
        int(dups.get(pd.Timestamp(d).date(), 0)) for d in per_day["partition_date"]
    ]
    return CleaningResult(
        raw=int(per_day["raw"].sum()),
        clean=int(per_day["clean"].sum()),
        quarantined=int(per_day["quarantined"].sum()),
        exact_duplicates=int(per_day["exact_duplicates"].sum()),
        reasons={str(k): int(v) for k, v in reasons},
        per_partition=per_day,
        per_file=per_file,
    )


MIN_USERS = 10
MIN_DAYS = 8
"""Below these (shoppers, days with clean events) the model and the plan have too little to go
on: the cleaning step warns (the training step refuses when nothing can be learnt)."""


def degenerate_warnings(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Plain-words warnings about clean data that is valid but too small or too narrow."""
    users, days = con.execute(
        "SELECT count(DISTINCT user_id), count(DISTINCT partition_date) FROM clean_events"
    ).fetchall()[0]
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
