"""Feature tables, computed in DuckDB SQL over ``clean_events`` and the catalog.

* ``price_bands``: global price-band thresholds (quintiles of catalog log-prices), used for both
  catalog products and candidates so a new product gets the same band as an old one would.
* ``item_features``: one row per catalog product and per launch candidate (``is_candidate``):
  attributes (category, brand, price band) and behaviour (popularity, conversion, returns,
  rating stats). Candidates have attributes and zero behaviour.
* ``user_features``: recency, frequency, monetary value, funnel counts, conversion, and
  category / price-band affinities (shares of the user's interactions).
* ``user_sequence_steps``: each user's interactions (view, cart, purchase) in time order,
  consecutive events on the same item collapsed into one step carrying the strongest event type,
  the last ``max_sequence_length`` steps kept, one row per step (``step``: its number in the
  user's whole history, so a user's step count is their largest ``step``). What the model reads.
* ``user_sequences``: a view of the same as one row per user with ``items``, ``event_types`` and
  ``ts`` lists and ``n_steps`` (for analysts). Steps are stored as rows so that a nightly run
  appends the day's steps and deletes those past the last ``max_sequence_length``, instead of
  rewriting every active user's lists (benchmarks/scale.md).
* ``activity_profile``: a view of events and purchases by hour of week (0 = Monday 00:00 UTC),
  overall (``scope = 'overall'``) and per user (``scope = 'user'``; only non-zero hours), with
  each row's share of its scope's events, computed when read from the stored user x hour counts
  (``activity_user_hour``; the incremental path's merged state): a night adds to the counts of
  the hours it touched instead of rewriting every share of every active user.
"""

from __future__ import annotations

import duckdb

FEATURE_TABLES = (
    "price_bands",
    "item_features",
    "user_features",
    "user_sequence_steps",
    "user_sequences",
    "activity_profile",
)
VIEWS = ("user_sequences", "activity_profile")  # computed when read from the stored tables
N_PRICE_BANDS = 5
EVENT_STRENGTH = {"view": 1, "cart": 2, "purchase": 3}
# SQL: the event type of a step's strength {x} (the inverse of EVENT_STRENGTH)
STRENGTH_NAME_SQL = "CASE {x} WHEN 1 THEN 'view' WHEN 2 THEN 'cart' ELSE 'purchase' END"

PRICE_BANDS_SQL = f"""
CREATE OR REPLACE TABLE price_bands AS
WITH prices AS (SELECT ln(price) AS lp FROM product_catalog WHERE price > 0),
     q AS (SELECT quantile_cont(lp, [{", ".join(str(i / N_PRICE_BANDS) for i in range(1, N_PRICE_BANDS))}]) AS cuts
           FROM prices)
SELECT b AS band_no, 'p' || b AS price_band,
       CASE WHEN b = 1 THEN NULL ELSE exp(cuts[b - 1]) END AS lower_price,
       CASE WHEN b = {N_PRICE_BANDS} THEN NULL ELSE exp(cuts[b]) END AS upper_price
FROM q, range(1, {N_PRICE_BANDS + 1}) t(b)
"""


def money_sum_decimal(event_type: str) -> str:
    """SQL for the exact (DECIMAL(38, 6)) sum of quantity * price over one event type; sums of
    it over days are exact too (the incremental path adds them up)."""
    return (
        f"sum(CAST(quantity * price AS DECIMAL(18, 6))) FILTER (WHERE event_type = '{event_type}')"
    )


def _money_sum(event_type: str) -> str:
    """SQL for the sum of quantity * price over one event type, added up exactly (as DECIMAL):
    a sum of DOUBLEs depends on the order DuckDB's threads meet the rows, and feature tables
    must be the same bit for bit whenever their input rows are the same (the idempotency
    contract of the operations tests)."""
    return f"CAST({money_sum_decimal(event_type)} AS DOUBLE)"


# band of a price: the band whose [lower, upper) contains it; unknown price -> 'p_unknown'
_BAND_OF = """
coalesce((SELECT pb.price_band FROM price_bands pb
          WHERE {price} IS NOT NULL
            AND ({price} >= pb.lower_price OR pb.lower_price IS NULL)
            AND ({price} < pb.upper_price OR pb.upper_price IS NULL)
          ORDER BY pb.band_no LIMIT 1), 'p_unknown')
"""

# per-item behaviour over clean_events; the incremental path (features_incremental.py) gives
# the same columns from its merged state
ITEM_STATS_FROM_EVENTS = f"""
    SELECT item_id,
           count(*) FILTER (WHERE event_type = 'view') AS views,
           count(*) FILTER (WHERE event_type = 'cart') AS carts,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           coalesce(sum(quantity) FILTER (WHERE event_type = 'purchase'), 0) AS units,
           coalesce({_money_sum("purchase")}, 0) AS revenue,
           count(*) FILTER (WHERE event_type = 'return') AS returns,
           coalesce(sum(quantity) FILTER (WHERE event_type = 'return'), 0) AS returned_units,
           count(DISTINCT user_id) FILTER (WHERE event_type = 'purchase') AS buyers,
           count(DISTINCT user_id) AS users,
           count(*) FILTER (WHERE event_type = 'review') AS rating_count,
           avg(rating) FILTER (WHERE event_type = 'review') AS rating_mean,
           -- whole-number sums: the spread below does not depend on the scan order
           count(rating) FILTER (WHERE event_type = 'review') AS rating_n,
           sum(rating) FILTER (WHERE event_type = 'review') AS rating_sum,
           sum(rating * rating) FILTER (WHERE event_type = 'review') AS rating_sum_sq,
           min(ts) AS first_event_at,
           min(ts) FILTER (WHERE event_type = 'purchase') AS first_sale_at,
           max(ts) AS last_event_at
    FROM clean_events GROUP BY item_id
"""


def item_features_sql(stats: str) -> str:
    """``CREATE OR REPLACE TABLE item_features`` from the catalog, the candidates and ``stats``
    (SQL with the columns of :data:`ITEM_STATS_FROM_EVENTS`, one row per item with events)."""
    return f"""
CREATE OR REPLACE TABLE item_features AS
WITH items AS (
    SELECT item_id, title, category, brand, price, launched_at, false AS is_candidate
    FROM product_catalog
    UNION ALL
    SELECT item_id, title, category, brand, price, launched_at, true FROM launch_candidates
    WHERE item_id NOT IN (SELECT item_id FROM product_catalog)
), stats AS ({stats})
SELECT i.item_id, i.title, i.category, i.brand, i.price,
       {_BAND_OF.format(price="i.price")} AS price_band,
       coalesce(i.launched_at, s.first_sale_at, s.first_event_at) AS launched_at,
       i.is_candidate,
       coalesce(s.views, 0) AS views, coalesce(s.carts, 0) AS carts,
       coalesce(s.purchases, 0) AS purchases, coalesce(s.units, 0) AS units,
       coalesce(s.revenue, 0) AS revenue, coalesce(s.returns, 0) AS returns,
       coalesce(s.buyers, 0) AS buyers, coalesce(s.users, 0) AS users,
       coalesce(s.purchases, 0) / nullif(s.views, 0) AS view_to_purchase,
       coalesce(s.returned_units, 0) / nullif(s.units, 0) AS return_rate,
       coalesce(s.rating_count, 0) AS rating_count, s.rating_mean,
       CASE WHEN s.rating_n > 1 THEN sqrt(greatest(
           (s.rating_sum_sq - s.rating_sum ^ 2 / s.rating_n) / (s.rating_n - 1), 0))
       END AS rating_std,
       s.first_event_at, s.last_event_at,
       CASE WHEN i.is_candidate THEN NULL
            ELSE rank() OVER (PARTITION BY i.is_candidate
                              ORDER BY coalesce(s.purchases, 0) DESC, coalesce(s.views, 0) DESC)
       END AS popularity_rank
FROM items i LEFT JOIN stats s USING (item_id)
ORDER BY i.is_candidate, i.item_id
"""


ITEM_FEATURES_SQL = item_features_sql(ITEM_STATS_FROM_EVENTS)

# per-user parts over clean_events (``ev``: events with their item's category and price band);
# the incremental path gives the same columns from its merged state
USER_SNAPSHOT_FROM_EVENTS = "SELECT max(ts) AS as_of FROM clean_events"
# a user's event counts and units (also summed per day by the incremental path)
USER_EVENT_COUNTS = """
           count(*) AS events,
           count(*) FILTER (WHERE event_type = 'view') AS views,
           count(*) FILTER (WHERE event_type = 'cart') AS carts,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
           count(*) FILTER (WHERE event_type = 'return') AS returns,
           count(*) FILTER (WHERE event_type = 'review') AS reviews,
           coalesce(sum(quantity) FILTER (WHERE event_type = 'purchase'), 0) AS units,
"""
USER_BASE_FROM_EVENTS = f"""
    SELECT user_id,
           min(ts) AS first_seen_at, max(ts) AS last_seen_at,
           count(DISTINCT CAST(ts AS DATE)) AS active_days,
           count(DISTINCT session_id) AS sessions,{USER_EVENT_COUNTS}           coalesce({_money_sum("purchase")}, 0) - coalesce({_money_sum("return")}, 0) AS monetary
    FROM ev GROUP BY user_id
"""
USER_CATEGORY_FROM_EVENTS = """
    SELECT user_id, category, count(*) AS n FROM ev
    WHERE event_type IN ('view', 'cart', 'purchase') GROUP BY ALL
"""
USER_BAND_FROM_EVENTS = """
    SELECT user_id, price_band, count(*) AS n FROM ev
    WHERE event_type IN ('view', 'cart', 'purchase') GROUP BY ALL
"""
EVENTS_WITH_ITEM_ATTRS = """
    SELECT e.*, f.category, f.price_band
    FROM clean_events e LEFT JOIN item_features f USING (item_id)
"""


# a user's shares of interactions per category / price band (from ``cat`` / ``band``)
# one ordered list per user (for categories its first entry is the top one) and the user's
# total in the same aggregate, instead of a window for the total
CATEGORY_AFFINITY_SQL = """
    SELECT user_id,
           map_from_entries(list_transform(l, lambda x: (x.category, x.n / total)))
             AS category_affinity,
           l[1].category AS top_category
    FROM (SELECT user_id, list({'category': category, 'n': n} ORDER BY n DESC, category) AS l,
                 sum(n) AS total
          FROM cat GROUP BY user_id)
"""
BAND_AFFINITY_SQL = """
    SELECT user_id,
           map_from_entries(list_transform(l, lambda x: (x.price_band, x.n / total)))
             AS price_band_affinity,
           preferred_price_band
    FROM (SELECT user_id, list({'price_band': price_band, 'n': n} ORDER BY price_band) AS l,
                 first(price_band ORDER BY n DESC, price_band) AS preferred_price_band,
                 sum(n) AS total
          FROM band GROUP BY user_id)
"""


def user_features_sql(
    snapshot: str = USER_SNAPSHOT_FROM_EVENTS,
    base: str = USER_BASE_FROM_EVENTS,
    cat: str = USER_CATEGORY_FROM_EVENTS,
    band: str = USER_BAND_FROM_EVENTS,
    ev: str = EVENTS_WITH_ITEM_ATTRS,
    cat_agg: str = CATEGORY_AFFINITY_SQL,
    band_agg: str = BAND_AFFINITY_SQL,
) -> str:
    """``CREATE OR REPLACE TABLE user_features`` from its parts: ``snapshot`` (one row,
    ``as_of``), ``base`` (one row per user), ``cat`` / ``band`` (interactions per user and
    category / price band, column ``n``) or directly their affinities ``cat_agg`` /
    ``band_agg``; ``ev`` is what the default parts read."""
    return f"""
CREATE OR REPLACE TABLE user_features AS
WITH snapshot AS ({snapshot}),
ev AS ({ev}),
base AS ({base}),
cat AS ({cat}),
band AS ({band}),
cat_agg AS ({cat_agg}),
band_agg AS ({band_agg})
SELECT b.user_id, b.first_seen_at, b.last_seen_at,
       date_diff('hour', b.last_seen_at, a.as_of) / 24.0 AS recency_days,
       date_diff('hour', b.first_seen_at, b.last_seen_at) / 24.0 AS tenure_days,
       b.active_days, b.sessions, b.events, b.views, b.carts, b.purchases, b.returns, b.reviews,
       b.units, b.monetary,
       b.purchases / nullif(b.views, 0) AS view_to_purchase,
       b.monetary / nullif(b.purchases, 0) AS avg_purchase_value,
       c.top_category, c.category_affinity, p.preferred_price_band, p.price_band_affinity,
       a.as_of
FROM base b CROSS JOIN snapshot a
LEFT JOIN cat_agg c USING (user_id) LEFT JOIN band_agg p USING (user_id)
ORDER BY b.user_id
"""


USER_FEATURES_SQL = user_features_sql()

# steps: a new step starts where the item changes (lag over the user's time order); the step
# number is the running count of starts, so a user's step count is the largest step number and
# the last $max_len steps are those above it minus $max_len
USER_SEQUENCE_STEPS_SQL = """
CREATE OR REPLACE {temp} TABLE {table} AS
WITH ev AS (
    SELECT user_id, item_id, ts, source_file, source_row,
           CASE event_type WHEN 'view' THEN 1 WHEN 'cart' THEN 2 WHEN 'purchase' THEN 3 END AS strength
    FROM clean_events WHERE event_type IN ('view', 'cart', 'purchase'){where}
), ordered AS (
    SELECT *, CASE WHEN lag(item_id) OVER w = item_id THEN 0 ELSE 1 END AS new_step
    FROM ev WINDOW w AS (PARTITION BY user_id ORDER BY ts, source_file, source_row)
), stepped AS (
    SELECT *, sum(new_step) OVER (PARTITION BY user_id ORDER BY ts, source_file, source_row
                                  ROWS UNBOUNDED PRECEDING) AS step
    FROM ordered
), steps AS (
    SELECT user_id, CAST(step AS BIGINT) AS step, any_value(item_id) AS item_id,
           max(strength) AS strength, min(ts) AS ts
    FROM stepped GROUP BY user_id, step
)
SELECT user_id, step, item_id, {event_type} AS event_type, ts
FROM steps QUALIFY step > max(step) OVER (PARTITION BY user_id) - $max_len
"""
SEQUENCE_STEPS_COLUMNS = (
    "user_id VARCHAR, step BIGINT, item_id VARCHAR, event_type VARCHAR, ts TIMESTAMP"
)


def user_sequences_select(steps: str = "user_sequence_steps") -> str:
    """SQL: the steps table ``steps`` as one row per user (``user_id, n_steps, items,
    event_types, ts``; lists in step order): what the ``user_sequences`` view shows."""
    return f"""
SELECT user_id, n_steps,
       list_transform(l, lambda x: x.item) AS items,
       list_transform(l, lambda x: x.type) AS event_types,
       list_transform(l, lambda x: x.ts) AS ts
FROM (SELECT user_id, max(step) AS n_steps,
             list_sort(list({{'step': step, 'item': item_id, 'type': event_type, 'ts': ts}})) AS l
      FROM {steps} GROUP BY user_id)
"""


ACTIVITY_PER_USER_FROM_EVENTS = """
    SELECT user_id, (isodow(ts) - 1) * 24 + hour(ts) AS hour_of_week, count(*) AS events,
           count(*) FILTER (WHERE event_type = 'purchase') AS purchases
    FROM clean_events GROUP BY ALL
"""


def activity_rows_sql(per_user: str) -> str:
    """The rows of ``activity_profile`` from ``per_user`` (``user_id``, ``hour_of_week``,
    ``events``, ``purchases``; only non-zero hours): the user scope, and the overall scope, their
    sum per hour of week (all 168 hours); ``event_share``: the row's share of its scope's events."""
    return f"""
WITH per_user AS (
    SELECT 'user' AS scope, user_id, hour_of_week, events, purchases FROM ({per_user})
), overall AS (
    SELECT 'overall' AS scope, NULL::VARCHAR AS user_id, h.hour_of_week,
           CAST(coalesce(sum(p.events), 0) AS BIGINT) AS events,
           CAST(coalesce(sum(p.purchases), 0) AS BIGINT) AS purchases
    FROM range(168) h(hour_of_week) LEFT JOIN ({per_user}) p USING (hour_of_week)
    GROUP BY ALL
), both_scopes AS (SELECT * FROM overall UNION ALL SELECT * FROM per_user)
SELECT scope, user_id, hour_of_week, hour_of_week // 24 AS weekday, hour_of_week % 24 AS hour,
       events, purchases,
       events / greatest(sum(events) OVER (PARTITION BY scope, user_id), 1) AS event_share
FROM both_scopes
"""


def relation_kind(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """``'BASE TABLE'``, ``'VIEW'`` (or another kind) for ``name`` in the current database's
    main schema, ``None`` when there is none."""
    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = ? "
        "AND table_schema = 'main' AND table_catalog = current_database()",
        [name],
    ).fetchall()
    return kind[0][0] if kind else None


def replace_with_view(con: duckdb.DuckDBPyConnection, name: str, select: str) -> None:
    """``CREATE OR REPLACE VIEW name AS select``, dropping a table of that name first (a
    warehouse built before the feature became a view)."""
    kind = relation_kind(con, name)
    if kind is not None and kind != "VIEW":
        con.execute(f"DROP TABLE {name}")
    con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")


def drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the table or view ``name`` of the current database, if there is one."""
    kind = relation_kind(con, name)
    if kind is not None:
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {name}")


def create_user_sequences_view(con: duckdb.DuckDBPyConnection) -> None:
    """The ``user_sequences`` view over ``user_sequence_steps``."""
    replace_with_view(con, "user_sequences", user_sequences_select("user_sequence_steps"))


def create_activity_profile_view(con: duckdb.DuckDBPyConnection, counts: str) -> None:
    """The ``activity_profile`` view over the user x hour-of-week counts in table ``counts``."""
    replace_with_view(
        con,
        "activity_profile",
        activity_rows_sql(f"SELECT user_id, hour_of_week, events, purchases FROM {counts}"),
    )


def build_item_features(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(PRICE_BANDS_SQL)
    con.execute(ITEM_FEATURES_SQL)


def build_user_features(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(USER_FEATURES_SQL)


SAMPLE_MODULUS = 1_000_003  # hash buckets for sample_fraction


def build_user_sequences(
    con: duckdb.DuckDBPyConnection,
    max_sequence_length: int = 200,
    as_of=None,
    table: str = "user_sequence_steps",
    temporary: bool = False,
    sample_fraction: float | None = None,
) -> None:
    """``user_sequence_steps`` from ``clean_events`` (with the ``user_sequences`` view over it).
    With ``as_of`` (a naive UTC datetime) the same steps as they would have been built from the
    events before that time (what a past launch window saw; ``scoring.users_as_of``), written to
    ``table`` (a ``temporary`` one if asked; no view). ``sample_fraction`` keeps only a
    deterministic share of the users (by a hash of the id)."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    where, params = "", {"max_len": max_sequence_length}
    if as_of is not None:
        where += " AND ts < $as_of"
        params["as_of"] = as_of
    if sample_fraction is not None and sample_fraction < 1:
        where += f" AND hash(user_id) % {SAMPLE_MODULUS} < $sample_keep"
        params["sample_keep"] = int(round(max(sample_fraction, 0.0) * SAMPLE_MODULUS))
    sql = USER_SEQUENCE_STEPS_SQL.format(
        temp="TEMP" if temporary else "",
        table=table,
        where=where,
        event_type=STRENGTH_NAME_SQL.format(x="strength"),
    )
    con.execute(sql, params)
    if table == "user_sequence_steps" and not temporary:
        create_user_sequences_view(con)
        # the incremental path's per-user state no longer matches these steps: its next run
        # rebuilds in full (features_incremental.SEQ_TABLES)
        con.execute("DROP TABLE IF EXISTS feat_seq_last")


def build_activity_profile(con: duckdb.DuckDBPyConnection) -> None:
    """``activity_user_hour`` (events and purchases per user and hour of week) from
    ``clean_events``, and the ``activity_profile`` view over it."""
    con.execute(f"CREATE OR REPLACE TABLE activity_user_hour AS {ACTIVITY_PER_USER_FROM_EVENTS}")
    create_activity_profile_view(con, "activity_user_hour")
