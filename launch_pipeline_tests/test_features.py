"""Feature tables are a function of their input rows only: not of the order DuckDB stores or
scans them in, nor of its thread count. (Re-materializing a partition appends its rows at the
end of ``clean_events``, so a sum of DOUBLEs or an arg_max with ties would change between runs;
the operations idempotency test relies on this.)"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from launch_pipeline import features
from launch_pipeline.simulator import SimulatorConfig
from launch_pipeline_tests.support.checksums import table_checksum
from launch_pipeline_tests.support.shops import cleaned_shop_connection

INPUTS = ("clean_events", "product_catalog", "launch_candidates")


def build_all(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    features.build_item_features(con)
    features.build_user_features(con)
    features.build_user_sequences(con)
    features.build_activity_profile(con)
    return {t: table_checksum(con, t) for t in features.FEATURE_TABLES}


@pytest.fixture(scope="module")
def cleaned_shop(tmp_path_factory):
    con = cleaned_shop_connection(
        tmp_path_factory.mktemp("shop") / "raw",
        SimulatorConfig(
            seed=3,
            users=150,
            days=10,
            events_per_day=300,
            end_date=dt.date(2026, 11, 20),
            candidates=10,
        ),
    )
    yield con
    con.close()


def test_features_do_not_depend_on_row_order_or_threads(cleaned_shop):
    con = cleaned_shop
    con.execute("SET threads = 1")
    reference = build_all(con)
    assert all(n > 0 for n, _ in reference.values()), reference
    for seed in (1, 2, 3):
        db = f"shuffled_{seed}"
        con.execute(f"ATTACH ':memory:' AS {db}")
        for t in INPUTS:
            con.execute(
                f"CREATE TABLE {db}.main.{t} AS SELECT * FROM memory.main.{t} AS x "
                f"ORDER BY hash(CAST(x AS VARCHAR), {seed})"
            )
        con.execute(f"USE {db}")
        con.execute("SET threads = 4")
        try:
            shuffled = build_all(con)
        finally:
            con.execute("USE memory")
            con.execute("SET threads = 1")
        assert shuffled == reference, (
            f"input order {seed} changed {set(shuffled.items()) ^ set(reference.items())}"
        )


def test_top_category_ties_break_by_name(cleaned_shop):
    con = cleaned_shop
    build_all(con)
    rows = con.execute(
        """
        SELECT u.user_id, u.top_category, list(e.key ORDER BY e.key) AS tied
        FROM user_features u, unnest(map_entries(u.category_affinity)) AS t(e)
        WHERE e.value = list_max(map_values(u.category_affinity))
        GROUP BY ALL
        """
    ).fetchall()
    assert rows
    assert all(top == tied[0] for _, top, tied in rows if tied[0] is not None)
    assert any(len(tied) > 1 for *_, tied in rows), "the shop should hold at least one tie"
