"""Great Expectations 1.x suites for the cleaned events: quality rules and noise rules.

``dagster-ge`` only supports GX < 1.0, so GX is called directly: an ephemeral GX context, a pandas
data source, one expectation suite per rule set, one validation per partition range. Each
expectation carries a ``rule`` name in its ``meta``; :func:`run_suite` returns one
:class:`RuleResult` per rule (success, failing-row count, examples) that the Dagster asset checks
turn into check results.

Scaling: GX never sees the whole range. Each expectation has an exact SQL twin (``unexpected``
predicate: the rows GX would flag, or a superset of them); DuckDB scans the range once and keeps

* every *suspect* row (a row any twin flags; for uniqueness, every row whose key hash occurs
  more than once), up to ``MAX_SUSPECT_ROWS``, and
* a deterministic sample of about ``SAMPLE_ROWS`` of the other rows (``hash(key)`` below a
  threshold: the same rows for the same data),

and GX validates that frame. Since every row that can fail is in the frame (and duplicates come
with all their copies), GX's failing-row counts and examples are exactly those of the whole
range; ``element_count`` (``rows_checked``) is the number of rows in the range, ``gx_rows``
(``rows_validated_by_gx``) the rows GX saw. Past ``MAX_SUSPECT_ROWS`` suspects (a badly broken
range) GX sees the first ones and the failing counts come from the SQL twins (``counts_from``).
Memory is bounded by the frame, whatever the range.

The quality suite validates the clean rows themselves (only the columns the rules need). The
noise suite validates small aggregates computed in DuckDB (events per user-minute, accounts per
review text, quarantined share per day), through the same suspects-plus-sample frame.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from launch_pipeline.contract import EVENT_TYPES
from launch_pipeline.settings import CleaningRules

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

QUALITY_RULES = (
    "keys_not_null",
    "allowed_event_types",
    "timestamp_inside_partition",
    "timestamp_not_in_future",
    "purchase_price_positive",
    "purchase_quantity_positive",
    "rating_in_1_to_5",
    "event_key_unique",
)
NOISE_RULES = (
    "no_bot_left",
    "no_review_text_shared_across_accounts",
    "quarantined_share_below_limit",
)
SAMPLE_ROWS = 20_000  # passing rows GX validates besides the suspects (deterministic sample)
MAX_SUSPECT_ROWS = 200_000  # suspect rows handed to GX at most (counts then come from SQL)


@dataclass
class RuleResult:
    rule: str
    passed: bool
    expectations: list[str]
    element_count: int
    unexpected_count: int
    examples: list = field(default_factory=list)
    error: str | None = None
    gx_rows: int | None = None  # rows GX validated (suspects + sample); None = all rows
    counts_from: str = "gx"  # "gx", or "sql" when the suspects exceeded MAX_SUSPECT_ROWS

    def as_metadata(self) -> dict:
        meta = {
            "rule": self.rule,
            "gx_expectations": ", ".join(self.expectations),
            "rows_checked": self.element_count,
            "failing_rows": self.unexpected_count,
        }
        if self.gx_rows is not None:
            meta["rows_validated_by_gx"] = self.gx_rows
            meta["failing_rows_counted_by"] = self.counts_from
        if self.examples:
            meta["failing_examples"] = "; ".join(str(x) for x in self.examples[:10])
        if self.error:
            meta["error"] = self.error
        return meta


def _gx():
    import great_expectations as gx

    return gx


@dataclass
class Check:
    """One GX expectation and its SQL twin: ``unexpected`` is a DuckDB predicate true for every
    row the expectation would flag (or a superset); ``unique`` names the key of a uniqueness
    expectation instead (its suspects are the rows whose key hash occurs more than once)."""

    expectation: object
    unexpected: str | None = None
    unique: str | None = None


def _quality_checks(rules: CleaningRules, now: dt.datetime) -> list[Check]:
    gxe = _gx().expectations
    purchase = {"row_condition": 'event_type=="purchase"', "condition_parser": "pandas"}
    review = {"row_condition": 'event_type=="review"', "condition_parser": "pandas"}
    latest = now.replace(tzinfo=None) + dt.timedelta(minutes=rules.future_tolerance_minutes)
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    return [
        *[
            Check(
                gxe.ExpectColumnValuesToNotBeNull(column=c, meta={"rule": "keys_not_null"}),
                f"{c} IS NULL",
            )
            for c in ("event_id", "user_id", "item_id", "event_type", "ts")
        ],
        Check(
            gxe.ExpectColumnValuesToBeInSet(
                column="event_type",
                value_set=list(EVENT_TYPES),
                meta={"rule": "allowed_event_types"},
            ),
            f"event_type NOT IN ({types})",
        ),
        Check(
            gxe.ExpectColumnPairValuesToBeEqual(
                column_A="ts_date",
                column_B="partition_date",
                meta={"rule": "timestamp_inside_partition"},
            ),
            "ts_date IS DISTINCT FROM partition_date",
        ),
        Check(
            gxe.ExpectColumnValuesToBeBetween(
                column="ts", max_value=latest, meta={"rule": "timestamp_not_in_future"}
            ),
            f"ts > TIMESTAMP '{latest.isoformat(sep=' ')}'",
        ),
        *(
            [
                Check(
                    gxe.ExpectColumnValuesToNotBeNull(
                        column="price", meta={"rule": "purchase_price_positive"}, **purchase
                    ),
                    "event_type = 'purchase' AND price IS NULL",
                )
            ]
            if rules.purchase_price_required
            else []  # a source without prices (e.g. Taobao): price > 0 where there is one
        ),
        Check(
            gxe.ExpectColumnValuesToBeBetween(
                column="price",
                min_value=0,
                strict_min=True,
                meta={"rule": "purchase_price_positive"},
                **purchase,
            ),
            "event_type = 'purchase' AND (price <= 0 OR isnan(price))",
        ),
        Check(
            gxe.ExpectColumnValuesToBeBetween(
                column="quantity",
                min_value=0,
                strict_min=True,
                meta={"rule": "purchase_quantity_positive"},
                **purchase,
            ),
            "event_type = 'purchase' AND quantity <= 0",
        ),
        Check(
            gxe.ExpectColumnValuesToNotBeNull(
                column="rating", meta={"rule": "rating_in_1_to_5"}, **review
            ),
            "event_type = 'review' AND rating IS NULL",
        ),
        Check(
            gxe.ExpectColumnValuesToBeBetween(
                column="rating",
                min_value=1,
                max_value=5,
                meta={"rule": "rating_in_1_to_5"},
                **review,
            ),
            "event_type = 'review' AND (rating < 1 OR rating > 5)",
        ),
        Check(
            gxe.ExpectColumnValuesToBeUnique(column="event_id", meta={"rule": "event_key_unique"}),
            unique="event_id",
        ),
    ]


def _quality_expectations(rules: CleaningRules, now: dt.datetime) -> list:
    return [c.expectation for c in _quality_checks(rules, now)]


def _noise_checks(rules: CleaningRules) -> dict[str, list[Check]]:
    gxe = _gx().expectations
    return {
        "bots": [
            Check(
                gxe.ExpectColumnValuesToBeBetween(
                    column="max_events_per_minute",
                    max_value=rules.bot_events_per_minute,
                    meta={"rule": "no_bot_left"},
                ),
                f"max_events_per_minute > {int(rules.bot_events_per_minute)}",
            )
        ],
        "texts": [
            Check(
                gxe.ExpectColumnValuesToBeBetween(
                    column="accounts",
                    max_value=rules.fake_review_min_accounts - 1,
                    meta={"rule": "no_review_text_shared_across_accounts"},
                ),
                f"accounts > {int(rules.fake_review_min_accounts) - 1}",
            )
        ],
        "shares": [
            Check(
                gxe.ExpectColumnValuesToBeBetween(
                    column="quarantined_share",
                    max_value=rules.max_quarantined_share,
                    meta={"rule": "quarantined_share_below_limit"},
                ),
                f"quarantined_share > {float(rules.max_quarantined_share)!r} "
                "OR isnan(quarantined_share)",
            )
        ],
    }


def _noise_expectations(rules: CleaningRules) -> dict[str, list]:
    return {k: [c.expectation for c in v] for k, v in _noise_checks(rules).items()}


def run_suite(
    name: str, df: pd.DataFrame, expectations: list, rule_names, element_count: int | None = None
) -> list[RuleResult]:
    """Validate ``df`` with ``expectations`` in an ephemeral GX context; one result per rule.

    ``element_count``: rows the rules cover when ``df`` holds only part of them (the suspects
    and a sample, see :func:`validate_sql`); default ``len(df)``."""
    gx = _gx()
    n_rows = len(df) if element_count is None else int(element_count)
    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # no tqdm bars in run logs
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_def = (
        context.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(f"{name}_frame")
        .add_batch_definition_whole_dataframe(f"{name}_batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch_def, suite=suite)
    )
    result = validation.run(
        batch_parameters={"dataframe": df},
        result_format={"result_format": "COMPLETE", "partial_unexpected_count": 10},
    )
    gx_rows = None if element_count is None else len(df)

    def new(rule: str) -> RuleResult:
        return RuleResult(
            rule=rule,
            passed=True,
            expectations=[],
            element_count=n_rows,
            unexpected_count=0,
            gx_rows=gx_rows,
        )

    by_rule: dict[str, RuleResult] = {r: new(r) for r in rule_names}
    for res in result.results:
        cfg = res.expectation_config
        rule = (cfg.meta or {}).get("rule", cfg.type)
        rr = by_rule.setdefault(rule, new(rule))
        column = (
            cfg.kwargs.get("column") or f"{cfg.kwargs.get('column_A')}={cfg.kwargs.get('column_B')}"
        )
        rr.expectations.append(f"{cfg.type}({column})")
        exc = (res.exception_info or {}) if isinstance(res.exception_info, dict) else {}
        if exc.get("raised_exception"):
            rr.passed = False
            rr.error = str(exc.get("exception_message"))[:500]
            continue
        if not res.success:
            rr.passed = False
            rr.unexpected_count += int(res.result.get("unexpected_count") or 0)
            idx = (res.result.get("unexpected_index_list") or [])[:5]
            if idx and len(df):
                rr.examples.extend(df.loc[idx].astype(str).to_dict("records"))
            else:
                rr.examples.extend(res.result.get("partial_unexpected_list") or [])
    return list(by_rule.values())


def _suspect_frame(
    con: duckdb.DuckDBPyConnection,
    source: str,
    params: list,
    checks: list[Check],
    sample_key: str,
    order_by: str,
    sample_rows: int,
    max_suspects: int,
    materialize: bool = False,
) -> tuple[pd.DataFrame, int, dict[int, int] | None]:
    """(frame for GX, rows in ``source``, exact SQL counts per check or None).

    The frame holds every suspect row (up to ``max_suspects``) plus a deterministic sample of
    about ``sample_rows`` others; SQL counts are computed only when the suspects were cut.
    ``materialize``: compute ``source`` once into a temp table (for aggregates, which would
    otherwise run twice: once to count, once to select)."""
    if materialize:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _gx_src AS {source}", params)
        try:
            return _suspect_frame(
                con,
                "SELECT * FROM _gx_src",
                [],
                checks,
                sample_key,
                order_by,
                sample_rows,
                max_suspects,
            )
        finally:
            con.execute("DROP TABLE IF EXISTS _gx_src")
    total = con.execute(f"SELECT count(*) FROM ({source})", params).fetchall()[0][0]
    preds = [f"coalesce(({c.unexpected}), false)" for c in checks if c.unexpected]
    uniq = [c.unique for c in checks if c.unique]
    # NOT MATERIALIZED: ``src`` is read twice (the duplicate keys, then the rows), and DuckDB
    # would otherwise store every row of it first; read twice from the partition files it cost
    # 6.8-8.7 instead of 16-20 CPU-s at 30M events (the stored copy spilled past the memory
    # limit), 2.3-2.5 instead of 3.7-4.4 at 10M, with the same frames (benchmarks/scale.md)
    ctes = [f"src AS NOT MATERIALIZED ({source})"]
    for k, key in enumerate(uniq):
        ctes.append(f"dup{k} AS (SELECT hash({key}) AS h FROM src GROUP BY 1 HAVING count(*) > 1)")
        preds.append(f"hash({key}) IN (SELECT h FROM dup{k})")
    suspect = " OR ".join(preds) or "false"
    # hash(...) is a UBIGINT: keep the rows whose hash falls below fraction * 2^64
    frac = min(1.0, sample_rows / total) if total else 0.0
    threshold = min(int(frac * 2**64), 2**64 - 1)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _gx_frame AS
        WITH {", ".join(ctes)}
        SELECT * FROM (SELECT *, ({suspect}) AS _suspect FROM src)
        WHERE _suspect OR hash({sample_key}) < {threshold}::UBIGINT
        """,
        params,
    )
    try:
        n_suspects = con.execute("SELECT count(*) FROM _gx_frame WHERE _suspect").fetchall()[0][0]
        counts = None
        if n_suspects > max_suspects:  # exact counts from the SQL twins, over all suspects
            counts = {}
            for k, c in enumerate(checks):
                if c.unexpected:
                    sql = (
                        "SELECT count(*) FROM _gx_frame WHERE _suspect "
                        f"AND coalesce(({c.unexpected}), false)"
                    )
                else:
                    sql = (
                        f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM _gx_frame "
                        f"WHERE _suspect GROUP BY {c.unique} HAVING count(*) > 1)"
                    )
                counts[k] = int(con.execute(sql).fetchall()[0][0])
        df = con.execute(
            f"""
            SELECT * EXCLUDE (_suspect) FROM (
                (SELECT * FROM _gx_frame WHERE _suspect ORDER BY {order_by} LIMIT {int(max_suspects)})
                UNION ALL
                (SELECT * FROM _gx_frame WHERE NOT _suspect)
            ) ORDER BY {order_by}
            """
        ).df()
    finally:
        con.execute("DROP TABLE IF EXISTS _gx_frame")
    return df, int(total), counts


def validate_sql(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: str,
    params: list,
    checks: list[Check],
    rule_names,
    sample_key: str,
    order_by: str,
    sample_rows: int = SAMPLE_ROWS,
    max_suspects: int = MAX_SUSPECT_ROWS,
    prepare=None,
    materialize: bool = False,
) -> list[RuleResult]:
    """Validate the rows of the SQL ``source`` with GX on its suspects plus a sample (see the
    module docstring); one :class:`RuleResult` per rule."""
    df, total, counts = _suspect_frame(
        con, source, params, checks, sample_key, order_by, sample_rows, max_suspects, materialize
    )
    if prepare is not None:
        df = prepare(df)
    results = run_suite(name, df, [c.expectation for c in checks], rule_names, element_count=total)
    if counts is not None:
        by_rule: dict[str, int] = {}
        for k, c in enumerate(checks):
            rule = (c.expectation.meta or {}).get("rule", c.expectation.expectation_type)
            by_rule[rule] = by_rule.get(rule, 0) + counts[k]
        for rr in results:
            if rr.rule in by_rule:
                rr.unexpected_count = by_rule[rr.rule]
                rr.passed = rr.passed and by_rule[rr.rule] == 0
                rr.counts_from = "sql"
    return results


QUALITY_SOURCE = """
SELECT event_id, user_id, item_id, event_type, ts, price, quantity, rating,
       partition_date, CAST(ts AS DATE) AS ts_date, source_file, source_row
FROM clean_events WHERE partition_date BETWEEN $1 AND $2
"""


def _dates(df: pd.DataFrame, cols=("partition_date", "ts_date")) -> pd.DataFrame:
    for col in cols:
        if col in df.columns:
            df[col] = pd.to_datetime(df[col]).dt.date
    return df


def validate_quality(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    rules: CleaningRules = CleaningRules(),
    now: dt.datetime | None = None,
    sample_rows: int = SAMPLE_ROWS,
    max_suspects: int = MAX_SUSPECT_ROWS,
) -> list[RuleResult]:
    now = now or dt.datetime.now(dt.timezone.utc)
    return validate_sql(
        con,
        "clean_events_quality",
        QUALITY_SOURCE,
        [start, end],
        _quality_checks(rules, now),
        QUALITY_RULES,
        sample_key="event_id",
        order_by="partition_date, source_file, source_row",
        sample_rows=sample_rows,
        max_suspects=max_suspects,
        prepare=lambda df: _dates(df.drop(columns=["source_file", "source_row"])),
    )


NOISE_SOURCES = {
    "bots": (
        """
        SELECT partition_date, user_id, max(n) AS max_events_per_minute FROM (
            SELECT partition_date, user_id, date_trunc('minute', ts) AS minute, count(*) AS n
            FROM clean_events WHERE partition_date BETWEEN $1 AND $2 GROUP BY ALL
        ) GROUP BY ALL
        """,
        "concat_ws('|', partition_date, user_id)",
        "partition_date, user_id",
    ),
    "texts": (
        """
        SELECT partition_date, lower(regexp_replace(trim(review_text), '\\s+', ' ', 'g')) AS text,
               count(DISTINCT user_id) AS accounts
        FROM clean_events
        WHERE partition_date BETWEEN $1 AND $2 AND event_type = 'review'
          AND nullif(trim(review_text), '') IS NOT NULL
        GROUP BY ALL
        """,
        "concat_ws('|', partition_date, text)",
        "partition_date, text",
    ),
    "shares": (
        """
        WITH c AS (SELECT partition_date, count(*) AS n FROM clean_events
                   WHERE partition_date BETWEEN $1 AND $2 GROUP BY 1),
             q AS (SELECT partition_date, count(*) AS n FROM quarantined_events
                   WHERE partition_date BETWEEN $1 AND $2 GROUP BY 1)
        SELECT coalesce(c.partition_date, q.partition_date) AS partition_date,
               coalesce(c.n, 0) AS clean, coalesce(q.n, 0) AS quarantined,
               coalesce(q.n, 0) / greatest(coalesce(c.n, 0) + coalesce(q.n, 0), 1) AS quarantined_share
        FROM c FULL JOIN q ON c.partition_date = q.partition_date
        """,
        "partition_date",
        "partition_date",
    ),
}


def noise_frames(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date
) -> dict[str, pd.DataFrame]:
    """The whole noise aggregates as frames (small data and tests; validation uses
    :func:`validate_noise`, which never loads them whole)."""
    return {key: con.execute(sql, [start, end]).df() for key, (sql, _, _) in NOISE_SOURCES.items()}


def validate_noise(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    rules: CleaningRules = CleaningRules(),
    sample_rows: int = SAMPLE_ROWS,
    max_suspects: int = MAX_SUSPECT_ROWS,
) -> list[RuleResult]:
    checks = _noise_checks(rules)
    results: list[RuleResult] = []
    for key, rule in zip(("bots", "texts", "shares"), NOISE_RULES, strict=True):
        sql, sample_key, order_by = NOISE_SOURCES[key]
        results.extend(
            validate_sql(
                con,
                f"noise_{key}",
                sql,
                [start, end],
                checks[key],
                (rule,),
                sample_key=sample_key,
                order_by=order_by,
                sample_rows=sample_rows,
                max_suspects=max_suspects,
                materialize=True,
            )
        )
    return results
