"""Great Expectations 1.x suites for the cleaned events: quality rules and noise rules.

``dagster-ge`` only supports GX < 1.0, so GX is called directly: an ephemeral GX context, a pandas
data source, one expectation suite per rule set, one validation per partition range. Each
expectation carries a ``rule`` name in its ``meta``; :func:`run_suite` returns one
:class:`RuleResult` per rule (success, failing-row count, examples) that the Dagster asset checks
turn into check results.

The quality suite validates the clean rows themselves (only the columns the rules need). The
noise suite validates small aggregates computed in DuckDB (events per user-minute, accounts per
review text, quarantined share per day), so it never loads more than one row per group.
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


@dataclass
class RuleResult:
    rule: str
    passed: bool
    expectations: list[str]
    element_count: int
    unexpected_count: int
    examples: list = field(default_factory=list)
    error: str | None = None

    def as_metadata(self) -> dict:
        meta = {
            "rule": self.rule,
            "gx_expectations": ", ".join(self.expectations),
            "rows_checked": self.element_count,
            "failing_rows": self.unexpected_count,
        }
        if self.examples:
            meta["failing_examples"] = "; ".join(str(x) for x in self.examples[:10])
        if self.error:
            meta["error"] = self.error
        return meta


def _gx():
    import great_expectations as gx

    return gx


def _quality_expectations(rules: CleaningRules, now: dt.datetime) -> list:
    gxe = _gx().expectations
    purchase = {"row_condition": 'event_type=="purchase"', "condition_parser": "pandas"}
    review = {"row_condition": 'event_type=="review"', "condition_parser": "pandas"}
    latest = now.replace(tzinfo=None) + dt.timedelta(minutes=rules.future_tolerance_minutes)
    return [
        *[
            gxe.ExpectColumnValuesToNotBeNull(column=c, meta={"rule": "keys_not_null"})
            for c in ("event_id", "user_id", "item_id", "event_type", "ts")
        ],
        gxe.ExpectColumnValuesToBeInSet(
            column="event_type", value_set=list(EVENT_TYPES), meta={"rule": "allowed_event_types"}
        ),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="ts_date",
            column_B="partition_date",
            meta={"rule": "timestamp_inside_partition"},
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="ts", max_value=latest, meta={"rule": "timestamp_not_in_future"}
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column="price", meta={"rule": "purchase_price_positive"}, **purchase
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="price",
            min_value=0,
            strict_min=True,
            meta={"rule": "purchase_price_positive"},
            **purchase,
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="quantity",
            min_value=0,
            strict_min=True,
            meta={"rule": "purchase_quantity_positive"},
            **purchase,
        ),
        gxe.ExpectColumnValuesToNotBeNull(
            column="rating", meta={"rule": "rating_in_1_to_5"}, **review
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="rating", min_value=1, max_value=5, meta={"rule": "rating_in_1_to_5"}, **review
        ),
        gxe.ExpectColumnValuesToBeUnique(column="event_id", meta={"rule": "event_key_unique"}),
    ]


def _noise_expectations(rules: CleaningRules) -> dict[str, list]:
    gxe = _gx().expectations
    return {
        "bots": [
            gxe.ExpectColumnValuesToBeBetween(
                column="max_events_per_minute",
                max_value=rules.bot_events_per_minute,
                meta={"rule": "no_bot_left"},
            )
        ],
        "texts": [
            gxe.ExpectColumnValuesToBeBetween(
                column="accounts",
                max_value=rules.fake_review_min_accounts - 1,
                meta={"rule": "no_review_text_shared_across_accounts"},
            )
        ],
        "shares": [
            gxe.ExpectColumnValuesToBeBetween(
                column="quarantined_share",
                max_value=rules.max_quarantined_share,
                meta={"rule": "quarantined_share_below_limit"},
            )
        ],
    }


def run_suite(name: str, df: pd.DataFrame, expectations: list, rule_names) -> list[RuleResult]:
    """Validate ``df`` with ``expectations`` in an ephemeral GX context; one result per rule."""
    gx = _gx()
    context = gx.get_context(mode="ephemeral")
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
    by_rule: dict[str, RuleResult] = {
        r: RuleResult(
            rule=r, passed=True, expectations=[], element_count=len(df), unexpected_count=0
        )
        for r in rule_names
    }
    for res in result.results:
        cfg = res.expectation_config
        rule = (cfg.meta or {}).get("rule", cfg.type)
        rr = by_rule.setdefault(
            rule, RuleResult(rule, True, [], element_count=len(df), unexpected_count=0)
        )
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


def quality_frame(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> pd.DataFrame:
    return con.execute(
        """
        SELECT event_id, user_id, item_id, event_type, ts, price, quantity, rating,
               partition_date, CAST(ts AS DATE) AS ts_date
        FROM clean_events WHERE partition_date BETWEEN ? AND ?
        """,
        [start, end],
    ).df()


def validate_quality(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    rules: CleaningRules = CleaningRules(),
    now: dt.datetime | None = None,
) -> list[RuleResult]:
    now = now or dt.datetime.now(dt.timezone.utc)
    df = quality_frame(con, start, end)
    for col in ("partition_date", "ts_date"):
        df[col] = pd.to_datetime(df[col]).dt.date
    return run_suite("clean_events_quality", df, _quality_expectations(rules, now), QUALITY_RULES)


def noise_frames(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date
) -> dict[str, pd.DataFrame]:
    args = [start, end]
    bots = con.execute(
        """
        SELECT partition_date, user_id, max(n) AS max_events_per_minute FROM (
            SELECT partition_date, user_id, date_trunc('minute', ts) AS minute, count(*) AS n
            FROM clean_events WHERE partition_date BETWEEN ? AND ? GROUP BY ALL
        ) GROUP BY ALL
        """,
        args,
    ).df()
    texts = con.execute(
        """
        SELECT partition_date, lower(regexp_replace(trim(review_text), '\\s+', ' ', 'g')) AS text,
               count(DISTINCT user_id) AS accounts
        FROM clean_events
        WHERE partition_date BETWEEN ? AND ? AND event_type = 'review'
          AND nullif(trim(review_text), '') IS NOT NULL
        GROUP BY ALL
        """,
        args,
    ).df()
    shares = con.execute(
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
        args,
    ).df()
    return {"bots": bots, "texts": texts, "shares": shares}


def validate_noise(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    rules: CleaningRules = CleaningRules(),
) -> list[RuleResult]:
    frames = noise_frames(con, start, end)
    expectations = _noise_expectations(rules)
    results: list[RuleResult] = []
    for key, rule in zip(("bots", "texts", "shares"), NOISE_RULES, strict=True):
        results.extend(run_suite(f"noise_{key}", frames[key], expectations[key], (rule,)))
    return results
