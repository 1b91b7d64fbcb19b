"""Cleaning rules: each kind of bad row ends in quarantine with its reason; accounting holds."""

from __future__ import annotations

import datetime as dt

import pytest

from launch_pipeline import catalog, cleaning, raw_io
from launch_pipeline.settings import CleaningRules
from launch_pipeline_tests.conftest import DAY, ts, write_events_csv

D = DAY.isoformat()
NOW = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)


def _load(con, raw, day=DAY):
    catalog.load_product_catalog(con, raw)
    catalog.load_launch_candidates(con, raw)
    for d, path in raw_io.event_day_files(raw).items():
        raw_io.load_event_day(con, raw, d, path, lake_dir=raw.parent / "lake")
    return cleaning.clean_partitions(
        con, day, day, CleaningRules(), now=NOW, lake_dir=raw.parent / "lake"
    )


def _reasons(con) -> dict[int, str]:
    return dict(con.execute("SELECT source_row, reason FROM quarantined_events").fetchall())


def test_each_bad_row_gets_its_reason(con, tiny_catalog):
    good = {"user_id": "u1", "item_id": "p1", "event_type": "view", "ts": ts(D), "session_id": "s1"}
    rows = [
        good,  # 0 clean
        {**good, "user_id": ""},  # 1 missing user
        {**good, "item_id": " "},  # 2 missing item
        {**good, "event_type": "click"},  # 3 invalid type
        {**good, "ts": "not-a-date"},  # 4 invalid ts
        {**good, "ts": "2099-01-01T00:00:00Z"},  # 5 future
        {**good, "ts": ts("2026-10-30")},  # 6 other day
        {**good, "item_id": "zzz"},  # 7 unknown item
        {**good, "event_type": "purchase", "price": "-3", "quantity": "1"},  # 8 negative price
        {**good, "event_type": "purchase", "price": "11", "quantity": "0"},  # 9 bad quantity
        {**good, "event_type": "review", "rating": "9", "review_text": "x"},  # 10 bad rating
        {**good, "event_type": "purchase", "price": "11", "quantity": "50000"},  # 11 outlier
        good,  # 12 exact duplicate
        {**good, "event_type": "purchase", "price": "11000", "quantity": "1"},  # 13 price outlier
        {**good, "user_id": "u2", "ts": "1793527200"},  # 14 unix seconds, clean
        {**good, "event_type": "purchase", "quantity": "2"},  # 15 price imputed, clean
    ]
    write_events_csv(tiny_catalog / "events" / f"{D}.csv", rows)
    stats = _load(con, tiny_catalog)
    got = _reasons(con)
    assert got == {
        1: "missing_user_id",
        2: "missing_item_id",
        3: "invalid_event_type",
        4: "invalid_timestamp",
        5: "future_timestamp",
        6: "timestamp_outside_partition",
        7: "unknown_item",
        8: "invalid_price",
        9: "invalid_quantity",
        10: "invalid_rating",
        11: "outlier_quantity",
        12: "exact_duplicate",
        13: "outlier_price",
    }
    assert stats.raw == stats.clean + stats.quarantined == len(rows)
    assert stats.exact_duplicates == 1
    clean = con.execute(
        "SELECT source_row, price, price_imputed, ts FROM clean_events ORDER BY 1"
    ).fetchall()
    assert [r[0] for r in clean] == [0, 14, 15]
    assert clean[2][1] == pytest.approx(11.0) and clean[2][2] is True  # catalog price of p1
    assert clean[1][3] == dt.datetime(2026, 11, 1, 10, 0)  # 1793527200 s = 2026-11-01 10:00 UTC


def test_malformed_records_are_kept_with_the_raw_line(con, tiny_catalog):
    text = (
        "user_id,item_id,event_type,ts,quantity,price,rating,review_text,session_id\n"
        f"u1,p1,view,{ts(D)},,,,,s1\n"
        "u1,p1,view\n"
        f"u1,p1,view,{ts(D)},,,,,s1,extra,fields\n"
        f"u1,p2,view,{ts(D, 11)},,,,,s1\n"
    )
    write_events_csv(tiny_catalog / "events" / f"{D}.csv", text)
    stats = _load(con, tiny_catalog)
    assert _reasons(con) == {1: "malformed_row", 2: "malformed_row"}
    detail = con.execute("SELECT detail FROM quarantined_events WHERE source_row = 1").fetchall()[
        0
    ][0]
    assert "u1,p1,view" in detail
    assert stats.clean == 2 and stats.raw == 4


def test_bots_fake_reviews_and_bursts(con, tiny_catalog):
    rows = []
    # a bot: 100 views within one minute
    rows += [
        {
            "user_id": "bot",
            "item_id": "p1" if s < 60 else "p2",
            "event_type": "view",
            "ts": ts(D, 3, 0, s % 60),
        }
        for s in range(100)
    ]
    # a human with a few views
    rows += [
        {"user_id": "h1", "item_id": "p1", "event_type": "view", "ts": ts(D, 9, m)}
        for m in range(3)
    ]
    # the same review text from three accounts
    rows += [
        {
            "user_id": f"f{k}",
            "item_id": "p3",
            "event_type": "review",
            "ts": ts(D, 12, k),
            "rating": "5",
            "review_text": "Best product EVER!!",
        }
        for k in range(3)
    ]
    # a burst of 6 five-star reviews of p4 within 40 minutes by accounts that never touched it
    rows += [
        {
            "user_id": f"b{k}",
            "item_id": "p4",
            "event_type": "review",
            "ts": ts(D, 15, 5 * k + 20 if k < 8 else 0),
            "rating": "5",
            "review_text": f"great stuff number {k}",
        }
        for k in range(6)
    ]
    # a genuine review by a buyer (bought the same day)
    rows += [
        {
            "user_id": "h1",
            "item_id": "p5",
            "event_type": "purchase",
            "ts": ts(D, 16),
            "quantity": "1",
            "price": "15",
        },
        {
            "user_id": "h1",
            "item_id": "p5",
            "event_type": "review",
            "ts": ts(D, 17),
            "rating": "5",
            "review_text": "works as described",
        },
    ]
    write_events_csv(tiny_catalog / "events" / f"{D}.csv", rows)
    stats = _load(con, tiny_catalog)
    r = stats.reasons
    assert r["bot_user"] == 100
    assert r["fake_review_duplicate_text"] == 3
    assert r["fake_review_burst"] == 6
    assert stats.clean == 3 + 2


def test_recleaning_a_partition_is_idempotent(con, tiny_catalog):
    rows = [
        {"user_id": f"u{k}", "item_id": "p1", "event_type": "view", "ts": ts(D, 10, k)}
        for k in range(20)
    ]
    write_events_csv(tiny_catalog / "events" / f"{D}.csv", rows + [rows[0]])
    _load(con, tiny_catalog)
    first = con.execute("SELECT * FROM clean_events ORDER BY event_id").fetchall()
    q1 = con.execute("SELECT * FROM quarantined_events ORDER BY source_row").fetchall()
    _load(con, tiny_catalog)
    _load(con, tiny_catalog)
    assert con.execute("SELECT * FROM clean_events ORDER BY event_id").fetchall() == first
    assert con.execute("SELECT * FROM quarantined_events ORDER BY source_row").fetchall() == q1
    assert len(first) == 20 and len(q1) == 1


def test_adapter_flag_becomes_the_reason(con, tiny_catalog):
    text = (
        "user_id,item_id,event_type,ts,quantity,price,flag\n"
        f"u1,p1,purchase,{ts(D)},1,11,\n"
        f"u1,p2,purchase,{ts(D)},1,12,non_product_code\n"
    )
    write_events_csv(tiny_catalog / "events" / f"{D}.csv", text)
    _load(con, tiny_catalog)
    assert _reasons(con) == {1: "non_product_code"}
