"""Great Expectations suites: pass on clean rows, fail (with examples) on broken ones."""

from __future__ import annotations

import datetime as dt

from launch_pipeline import quality
from launch_pipeline.cleaning import ensure_tables
from launch_pipeline.settings import CleaningRules

DAY = dt.date(2026, 11, 1)
NOW = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)


def _insert(con, rows):
    ensure_tables(con)
    for k, r in enumerate(rows):
        base = {
            "event_id": f"e{k}",
            "partition_date": DAY,
            "user_id": f"u{k % 3}",
            "item_id": "p1",
            "event_type": "view",
            "ts": dt.datetime(2026, 11, 1, 10, k % 60),
            "quantity": None,
            "price": None,
            "price_imputed": None,
            "rating": None,
            "review_text": None,
            "session_id": "s",
            "source_file": "f",
            "source_row": k,
        }
        base.update(r)
        con.execute(
            "INSERT INTO clean_events VALUES (" + ", ".join("?" for _ in base) + ")",
            list(base.values()),
        )


def _by_rule(results):
    return {r.rule: r for r in results}


def test_quality_rules_pass_on_clean_rows(con):
    _insert(
        con,
        [
            {},
            {"event_type": "purchase", "price": 3.0, "quantity": 1},
            {"event_type": "review", "rating": 4, "review_text": "ok"},
        ],
    )
    res = _by_rule(quality.validate_quality(con, DAY, DAY, CleaningRules(), now=NOW))
    assert set(res) == set(quality.QUALITY_RULES)
    assert all(r.passed for r in res.values()), [r for r in res.values() if not r.passed]


def test_quality_rules_fail_with_examples(con):
    _insert(
        con,
        [
            {"event_type": "purchase", "price": -1.0, "quantity": 1},
            {"event_type": "purchase", "price": 2.0, "quantity": 0},
            {"event_type": "review", "rating": 7},
            {"event_type": "click"},
            {"ts": dt.datetime(2026, 10, 5, 1)},
            {"ts": dt.datetime(2027, 1, 1)},
            {"event_id": "e0"},
        ],
    )
    res = _by_rule(quality.validate_quality(con, DAY, DAY, CleaningRules(), now=NOW))
    failing = {k for k, r in res.items() if not r.passed}
    assert failing == {
        "purchase_price_positive",
        "purchase_quantity_positive",
        "rating_in_1_to_5",
        "allowed_event_types",
        "timestamp_inside_partition",
        "timestamp_not_in_future",
        "event_key_unique",
    }
    assert res["purchase_price_positive"].unexpected_count == 1
    assert res["purchase_price_positive"].examples[0]["price"] == "-1.0"
    assert "failing_examples" in res["rating_in_1_to_5"].as_metadata()


def test_noise_rules(con):
    _insert(con, [{"user_id": "bot", "ts": dt.datetime(2026, 11, 1, 3, 0, s)} for s in range(40)])
    _insert(
        con,
        [
            {"event_type": "review", "rating": 5, "review_text": "Same text", "user_id": f"x{k}"}
            for k in range(2)
        ],
    )
    con.execute(
        "INSERT INTO quarantined_events (partition_date, reason) "
        "SELECT DATE '2026-11-01', 'bot_user' FROM range(100)"
    )
    res = _by_rule(quality.validate_noise(con, DAY, DAY, CleaningRules()))
    assert not res["no_bot_left"].passed
    assert not res["no_review_text_shared_across_accounts"].passed
    assert not res["quarantined_share_below_limit"].passed
    relaxed = CleaningRules(
        bot_events_per_minute=100, fake_review_min_accounts=3, max_quarantined_share=0.9
    )
    res = _by_rule(quality.validate_noise(con, DAY, DAY, relaxed))
    assert all(r.passed for r in res.values())


def test_purchase_price_can_be_optional_for_sources_without_prices(con):
    _insert(con, [{"event_type": "purchase", "price": None, "quantity": 1}])
    strict = _by_rule(quality.validate_quality(con, DAY, DAY, CleaningRules(), now=NOW))
    assert not strict["purchase_price_positive"].passed
    lenient = CleaningRules(purchase_price_required=False)
    res = _by_rule(quality.validate_quality(con, DAY, DAY, lenient, now=NOW))
    assert res["purchase_price_positive"].passed
