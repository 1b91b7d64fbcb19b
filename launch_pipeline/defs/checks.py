"""Blocking Great Expectations checks on ``clean_events``: quality rules and noise rules.

Each rule is its own Dagster asset check (so the UI shows which rule failed); each suite runs
once per run for the partitions the run materialized, on an in-memory DuckDB connection over
those days' partition files (not in the warehouse pool). A failing rule blocks everything
downstream of ``clean_events`` in the same run."""

import datetime as dt

import dagster as dg

from launch_pipeline.cleaning import create_event_views
from launch_pipeline.defs.raw import partition_connection
from launch_pipeline.defs.resources import LaunchPipelineConfig
from launch_pipeline.quality import NOISE_RULES, QUALITY_RULES, validate_noise, validate_quality

RULE_DESCRIPTIONS = {
    "keys_not_null": "event_id, user_id, item_id, event_type and ts are never null",
    "allowed_event_types": "event_type is one of view, cart, purchase, return, review",
    "timestamp_inside_partition": "every event's UTC date equals its partition",
    "timestamp_not_in_future": "no event is later than the validation time",
    "purchase_price_positive": "purchases have a price > 0",
    "purchase_quantity_positive": "purchases have a quantity > 0",
    "rating_in_1_to_5": "reviews have a rating in 1..5",
    "event_key_unique": "event_id (hash of the whole record) is unique",
    "no_bot_left": "no user above the bot threshold (events per minute) is left",
    "no_review_text_shared_across_accounts": "no review text is shared by several accounts on a day",
    "quarantined_share_below_limit": "the quarantined share of each day is below the limit",
}


def _validated_range(context, con) -> tuple[dt.date, dt.date] | None:
    """The partitions the run targets; all cleaned partitions when the check runs on its own."""
    try:
        keys = context.partition_keys
    except Exception:  # noqa: BLE001 - unpartitioned check run: validate everything
        keys = None
    if keys:
        return dt.date.fromisoformat(keys[0]), dt.date.fromisoformat(keys[-1])
    row = con.execute(
        "SELECT min(partition_date), max(partition_date) FROM clean_events"
    ).fetchall()[0]
    return (row[0], row[1]) if row and row[0] else None


def _results(rule_results, rules, asset_key: str):
    if not rule_results:  # nothing cleaned yet: nothing can violate a rule
        for rule in rules:
            yield dg.AssetCheckResult(
                asset_key=asset_key, check_name=rule, passed=True, metadata={"rows_checked": 0}
            )
        return
    for rr in rule_results:
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=rr.rule,
            passed=rr.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=rr.as_metadata(),
        )


def _specs(rules) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            name=rule, asset="clean_events", blocking=True, description=RULE_DESCRIPTIONS[rule]
        )
        for rule in rules
    ]


def _suite_check(name: str, rules, validate, description: str):
    """One multi-asset check per GX suite, one check result per rule of the suite."""

    @dg.multi_asset_check(name=name, specs=_specs(rules), description=description)
    def _check(context: dg.AssetCheckExecutionContext, pipeline: LaunchPipelineConfig):
        settings = pipeline.settings()
        with partition_connection() as con:
            create_event_views(con, settings.lake_dir, raw=False)
            span = _validated_range(context, con)
            results = [] if span is None else validate(con, span[0], span[1], settings.cleaning)
        yield from _results(results, rules, "clean_events")

    return _check


clean_events_quality_rules = _suite_check(
    "clean_events_quality_rules",
    QUALITY_RULES,
    validate_quality,
    "Great Expectations quality suite on the cleaned events of the run's partitions.",
)
clean_events_noise_rules = _suite_check(
    "clean_events_noise_rules",
    NOISE_RULES,
    validate_noise,
    "Great Expectations noise suite: bots, shared review texts, quarantined share.",
)
