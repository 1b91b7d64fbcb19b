"""Incremental feature tables equal the full SQL over the whole history, whatever the order the
clean days arrive in, after a past day is re-cleaned (other rows) and after a day is removed."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launch_pipeline import cleaning, features, lake
from launch_pipeline import features_incremental as fi
from launch_pipeline.simulator import SimulatorConfig
from launch_pipeline_tests.support.checksums import table_checksum
from launch_pipeline_tests.support.shops import cleaned_shop_connection

N_DAYS = 8


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    """A connection holding ``all_clean`` (every clean day of a small simulated shop), the
    catalog and the candidates."""
    con = cleaned_shop_connection(
        tmp_path_factory.mktemp("shop") / "raw",
        SimulatorConfig(
            seed=5,
            users=60,
            days=N_DAYS,
            events_per_day=250,
            end_date=dt.date(2026, 11, 20),
            candidates=6,
        ),
    )
    con.execute("CREATE TABLE all_clean AS SELECT * FROM clean_events")
    con.execute("DELETE FROM clean_events")
    days = [r[0] for r in con.execute("SELECT DISTINCT partition_date FROM all_clean").fetchall()]
    yield con, sorted(days)
    con.close()


def _schema(con, table: str) -> list[tuple]:
    return con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_catalog = current_database() ORDER BY ordinal_position",
        [table],
    ).fetchall()


def _tables_now(con) -> dict[str, tuple]:
    return {t: (table_checksum(con, t), _schema(con, t)) for t in features.FEATURE_TABLES}


def _reference(con, max_len: int) -> dict[str, tuple]:
    """The feature tables built by the full SQL over the same clean rows, in another database."""
    con.execute("DETACH DATABASE IF EXISTS ref")
    con.execute("ATTACH ':memory:' AS ref")
    for t in ("clean_events", "product_catalog", "launch_candidates"):
        con.execute(f"CREATE TABLE ref.main.{t} AS SELECT * FROM memory.main.{t}")
    con.execute("USE ref")
    try:
        features.build_item_features(con)
        features.build_user_features(con)
        features.build_user_sequences(con, max_sequence_length=max_len)
        features.build_activity_profile(con)
        return _tables_now(con)
    finally:
        con.execute("USE memory")


def _reset(con) -> None:
    con.execute("DELETE FROM clean_events")
    for t in (*features.FEATURE_TABLES, "feat_merged_days", "feat_state_info"):
        features.drop_relation(con, t)
    for t in fi.ITEM_TABLES + fi.USER_TABLES + fi.SEQ_TABLES + fi.HOUR_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _put_day(con, day: dt.date, variant: int) -> None:
    """Day ``day`` as cleaned again: variant 4 is every row, 0-3 leave out a quarter of them."""
    con.execute("DELETE FROM clean_events WHERE partition_date = ?", [day])
    keep = "true" if variant == 4 else f"hash(event_id) % 4 <> {variant}"
    con.execute(
        f"INSERT INTO clean_events SELECT * FROM all_clean WHERE partition_date = ? AND {keep}",
        [day],
    )


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "put", "remove"]),
        st.integers(0, N_DAYS - 1),
        st.integers(0, 4),
    ),
    min_size=2,
    max_size=6,
)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations, max_len=st.sampled_from([3, 200]))
def test_incremental_equals_full_sql(master, ops, max_len):
    con, days = master
    _reset(con)
    # a few days first (the nightly case), then the random operations
    for d in days[:3]:
        _put_day(con, d, 4)
    for op, i, variant in [("update", 0, 0), *ops]:
        if op == "put":
            _put_day(con, days[i], variant)
        elif op == "remove":
            con.execute("DELETE FROM clean_events WHERE partition_date = ?", [days[i]])
        results = fi.update_all(con, max_sequence_length=max_len)
        assert {r.mode for r in results} <= {"incremental", "full rebuild", "unchanged"}
        got, want = _tables_now(con), _reference(con, max_len)
        assert got == want, f"after {op} {days[i]} (variant {variant}): " + ", ".join(
            t for t in want if got[t] != want[t]
        )


def test_nightly_appends_are_incremental_and_a_rebuild_gives_the_same(master):
    con, days = master
    _reset(con)
    for d in days[:-1]:
        _put_day(con, d, 4)
    first = fi.update_all(con)
    assert all(r.mode == "full rebuild" for r in first), [r.summary() for r in first]
    _put_day(con, days[-1], 4)
    nightly = fi.update_all(con)
    assert all(r.mode == "incremental" and r.days_added == 1 for r in nightly), [
        r.summary() for r in nightly
    ]
    incremental = _tables_now(con)
    assert all(r.mode == "unchanged" for r in fi.update_all(con))
    assert _tables_now(con) == incremental
    rebuilt = fi.update_all(con, full_rebuild=True)
    assert all(r.mode == "full rebuild" for r in rebuilt)
    assert _tables_now(con) == incremental == _reference(con, 200)


def test_a_warehouse_of_the_table_shapes_gets_the_views(master):
    """A warehouse built before the steps were rows (state format 1: ``user_sequences`` and
    ``activity_profile`` tables) is rebuilt once into the steps table and the two views."""
    con, days = master
    _reset(con)
    for d in days[:4]:
        _put_day(con, d, 4)
    fi.update_all(con)
    for view in features.VIEWS:
        con.execute(f"CREATE OR REPLACE TABLE _old AS SELECT * FROM {view}")
        con.execute(f"DROP VIEW {view}")
        con.execute(f"ALTER TABLE _old RENAME TO {view}")
    con.execute(
        "UPDATE feat_state_info SET settings = replace(settings, ?, 'format=1;')",
        [f"format={fi.STATE_FORMAT};"],
    )
    results = {r.table: r for r in fi.update_all(con)}
    assert all("other settings" in results[t].reason for t in features.VIEWS), results
    assert {features.relation_kind(con, t) for t in features.VIEWS} == {"VIEW"}
    assert _tables_now(con) == _reference(con, 200)


def test_state_with_other_settings_is_rebuilt(master):
    con, days = master
    _reset(con)
    for d in days[:4]:
        _put_day(con, d, 4)
    fi.update_user_sequences(con, max_sequence_length=5)
    again = fi.update_user_sequences(con, max_sequence_length=3)
    assert again.mode == "full rebuild" and "other settings" in again.reason
    con.execute("DROP TABLE feat_part_seq")
    assert fi.update_user_sequences(con, max_sequence_length=3).mode == "full rebuild"


def test_a_step_spanning_midnight_is_one_step():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(cleaning.CLEAN_EVENTS_DDL)
    rows = [
        ("e1", "2026-11-01", "u1", "a", "view", "2026-11-01 23:50:00", 1),
        ("e2", "2026-11-01", "u1", "b", "view", "2026-11-01 23:55:00", 2),
        ("e3", "2026-11-02", "u1", "b", "purchase", "2026-11-02 00:05:00", 1),
        ("e4", "2026-11-02", "u1", "c", "cart", "2026-11-02 00:09:00", 2),
    ]
    for eid, day, user, item, et, ts, row in rows:
        con.execute(
            "INSERT INTO clean_events (event_id, partition_date, user_id, item_id, event_type, "
            "ts, source_file, source_row) VALUES (?, ?, ?, ?, ?, ?, 'f', ?)",
            [eid, day, user, item, et, ts, row],
        )
    only_first = {dt.date(2026, 11, 1): "v1"}
    fi.update_user_sequences(con, only_first)
    both = {**only_first, dt.date(2026, 11, 2): "v1"}
    assert fi.update_user_sequences(con, both).mode == "incremental"
    n, items, types = con.execute(
        "SELECT n_steps, items, event_types FROM user_sequences"
    ).fetchone()
    assert (n, items, types) == (3, ["a", "b", "c"], ["view", "purchase", "cart"])


def test_a_catalog_change_rebuilds_the_user_attribute_counts(master):
    con, days = master
    _reset(con)
    for d in days[:4]:
        _put_day(con, d, 4)
    fi.update_all(con)
    con.execute("CREATE TABLE catalog_before AS SELECT * FROM product_catalog")
    try:
        # the most viewed product moves to another category
        con.execute(
            "UPDATE product_catalog SET category = category || '_moved' WHERE item_id = "
            "(SELECT item_id FROM all_clean GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)"
        )
        _put_day(con, days[4], 4)
        results = {r.table: r for r in fi.update_all(con)}
        assert results["item_features"].mode == "incremental"
        assert results["user_features"].mode == "full rebuild"
        assert "changed category or price band" in results["user_features"].reason
        assert _tables_now(con) == _reference(con, 200)
    finally:
        con.execute("DELETE FROM product_catalog")
        con.execute("INSERT INTO product_catalog SELECT * FROM catalog_before")
        con.execute("DROP TABLE catalog_before")


def test_day_versions_from_partition_stamps(master, tmp_path):
    con, days = master
    lake_dir = tmp_path / "lake"
    query = "SELECT * FROM all_clean WHERE partition_date = ?"
    first = {
        d: lake.write_partition(con, query, lake_dir, "clean_events", d, [d]) for d in days[:2]
    }
    versions = fi.clean_day_versions(con, lake_dir)
    assert versions == {d: s.version for d, s in first.items()}
    again = lake.write_partition(con, query, lake_dir, "clean_events", days[1], [days[1]])
    changes = fi.day_changes(versions, fi.clean_day_versions(con, lake_dir))
    assert changes.recleaned == (days[1],) and again.version != first[days[1]].version
    lake.remove_partition(lake_dir, "clean_events", days[0])
    assert fi.day_changes(versions, fi.clean_day_versions(con, lake_dir)).removed == (days[0],)


def test_many_new_days_are_computed_in_chunks_with_the_same_tables(master, monkeypatch):
    """Partials computed a few days per statement and user lists built by buckets of users
    (small row budgets) give the tables of the full SQL after a first load, a nightly append
    and a re-cleaned day; the chunks cover the days once, in order, each within the budget
    unless one day alone is over it."""
    con, days = master
    _reset(con)
    for d in days:
        _put_day(con, d, 4)
    per_day = dict(
        con.execute("SELECT partition_date, count(*) FROM clean_events GROUP BY 1").fetchall()
    )
    budget = 2 * max(per_day.values()) - 1  # at most one day and a bit: several chunks
    monkeypatch.setattr(fi, "ROWS_PER_STATEMENT", budget)
    chunks = fi._DayFilter(con, days).day_chunks()
    assert 1 < len(chunks) < len(days) + 1
    split = [[dt.date.fromisoformat(x) for x in c[7:-2].split("', DATE '")] for c in chunks]
    assert [d for c in split for d in c] == days
    assert all(len(c) == 1 or sum(per_day[d] for d in c) <= budget for c in split)
    assert fi._DayFilter(con, days[:1]).day_chunks() == [f"(DATE '{days[0].isoformat()}')"]

    monkeypatch.setattr(fi, "ROWS_PER_STATEMENT", 50)  # a statement per day, many buckets
    con.execute("DELETE FROM clean_events WHERE partition_date = ?", [days[-1]])
    assert all(r.mode == "full rebuild" for r in fi.update_all(con))
    assert _tables_now(con) == _reference(con, 200)
    _put_day(con, days[-1], 4)  # the nightly append: stored lists extended
    assert all(r.mode == "incremental" for r in fi.update_all(con))
    assert _tables_now(con) == _reference(con, 200)
    _put_day(con, days[2], 1)  # a past day cleaned again: its users recomputed
    assert all(r.mode == "incremental" for r in fi.update_all(con))
    assert _tables_now(con) == _reference(con, 200)


def _merge_day(con, merged: dict, current: dict, merge) -> None:
    """One merge step of a state helper with the day bookkeeping ``_run`` would set up."""
    fi._prepare(con, fi.day_changes(merged, current), "user_id")
    merge()


def test_sums_and_distinct_pairs_merged_key_by_key_match_a_recount():
    """The nightly key-by-key merges (sums with NULL keys, distinct pairs seen once) give what
    summing and counting every partial row gives; a NULL key is one key, not a new row a night."""
    con = duckdb.connect()
    con.execute("CREATE TABLE part (day DATE, user_id VARCHAR, category VARCHAR, n BIGINT)")
    con.execute("CREATE TABLE pairs (day DATE, user_id VARCHAR, item_id VARCHAR, bought BOOLEAN)")
    con.execute("CREATE TABLE owners (user_id VARCHAR, users BIGINT, buyers BIGINT)")
    d1, d2, d3 = (dt.date(2026, 1, d) for d in (1, 2, 3))
    days = {
        d1: ([("u1", "a", 2), ("u1", None, 1), ("u2", "b", 5)],
             [("u1", "p1", False), ("u1", "p2", True), ("u2", "p1", False)]),
        d2: ([("u1", None, 4), ("u1", "c", 1)],
             [("u1", "p1", True), ("u1", "p3", False), ("u2", "p1", False)]),
        d3: ([("u2", "b", 1), ("u3", None, 7)],
             [("u1", "p1", True), ("u2", "p1", True), ("u3", "p2", False)]),
    }  # fmt: skip
    merged: dict = {}
    for day, (sums, pair_rows) in days.items():
        con.executemany("INSERT INTO part VALUES (?, ?, ?, ?)", [(day, *r) for r in sums])
        con.executemany("INSERT INTO pairs VALUES (?, ?, ?, ?)", [(day, *r) for r in pair_rows])
        con.execute(
            "INSERT INTO owners SELECT DISTINCT user_id, 0, 0 FROM pairs "
            "WHERE user_id NOT IN (SELECT user_id FROM owners)"
        )
        current = {**merged, day: "v1"}

        def merge():
            fi._merge_sums(con, "state", "part", ("user_id", "category"), "user_id", ("n",))
            fi._merge_distinct(
                con, "owners", "pairs", "seen", "user_id", "item_id", "users", "bought", "buyers"
            )

        _merge_day(con, merged, current, merge)
        merged = current
        got = con.execute("SELECT * FROM state ORDER BY ALL").fetchall()
        want = con.execute(
            "SELECT user_id, category, sum(n) FROM part GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        assert got == want, day
        touched = con.execute("SELECT user_id FROM _feat_touched ORDER BY 1").fetchall()
        assert (
            touched
            == con.execute(
                "SELECT DISTINCT user_id FROM part WHERE day = ? ORDER BY 1", [day]
            ).fetchall()
        )
        got = con.execute("SELECT * FROM owners ORDER BY ALL").fetchall()
        want = con.execute(
            "SELECT user_id, count(DISTINCT item_id), count(DISTINCT item_id) FILTER (WHERE bought) "
            "FROM pairs GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        assert got == want, day
