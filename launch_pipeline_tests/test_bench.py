"""The scale benchmark: `launch-pipeline bench` runs on a tiny N and writes the documented keys.

Benchmarks are not timed tests: only the shape of the output and the accounting are checked."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from launch_pipeline.cli import main
from launch_pipeline.features_incremental import INCREMENTAL_TABLES
from launch_pipeline.quality import NOISE_RULES, QUALITY_RULES

DOCUMENTED_KEYS = (
    "events",
    "raw_to_features_seconds",
    "bare_duckdb_seconds",
    "raw_to_features_vs_bare_duckdb",
    "peak_rss_mb",
    "raw_seconds",
    "clean_seconds",
    "gx_seconds",
    "gx_share_of_clean_stage",
    "features_seconds",
    "stages",
    "training",
    "scoring",
    "plan",
    "backfill",
    "machine",
)


@pytest.mark.slow
def test_bench_command_writes_the_documented_keys(tmp_path):
    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "--events",
            "20000",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "work"),
            "--backfill-partitions",
            "3",
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    missing = [k for k in DOCUMENTED_KEYS if k not in res]
    assert not missing, missing
    assert res["events"] > 10_000
    assert res["bare_duckdb_seconds"] > 0
    assert res["raw_to_features_seconds"] > 0
    assert res["raw_to_features_vs_bare_duckdb"] == pytest.approx(
        res["raw_to_features_seconds"] / res["bare_duckdb_seconds"], rel=0.02
    )
    assert res["peak_rss_mb"] > 0
    assert 0 < res["gx_share_of_clean_stage"] < 1
    assert res["pipeline"]["accounting_holds"]
    # one result per rule (at this tiny size a check may fail on the planted noise: a real check
    # result, not a bench failure)
    assert set(res["pipeline"]["checks"]) == set(QUALITY_RULES) | set(NOISE_RULES)
    assert res["pipeline"]["checks_failing_rows"]["event_key_unique"] == 0
    st = res["stages"]
    # the feature stages are the assets' incremental path (every day merged on the fresh
    # warehouse), and give the tables of the whole-history SQL measured after them
    assert {st[f"features.{t}"]["mode"] for t in INCREMENTAL_TABLES} == {"full rebuild"}
    assert all(f"full_sql.{t}" in st for t in INCREMENTAL_TABLES)
    assert res["pipeline"]["full_sql_tables_equal"]
    for stage in ("generate", "bare_duckdb", "raw", "clean", "gx_quality", "gx_noise", "plan"):
        assert st[stage]["seconds"] > 0 and st[stage]["cpu_seconds"] > 0, (stage, st[stage])
        assert st[stage]["peak_rss_mb"] > 0
    # the summary figures are the sums of the stages they name
    features = sum(v["seconds"] for k, v in st.items() if k.startswith("features."))
    assert (
        res["raw_seconds"] == st["raw"]["seconds"]
        and res["clean_seconds"] == st["clean"]["seconds"]
    )
    assert res["raw_to_features_seconds"] == pytest.approx(
        st["raw"]["seconds"] + st["clean"]["seconds"] + res["gx_seconds"] + features, abs=0.01
    )
    # the backfill section: 3 partitions one at a time, then 2 at once, the same files
    bf = res["backfill"]
    assert bf["partitions"] == 3 and bf["parallel"]["writers"] == 2
    assert bf["lock_errors"] == 0 and bf["checksums_equal"], bf
    assert bf["serial"]["failed_partitions"] == bf["parallel"]["failed_partitions"] == 0
    assert bf["checksums"]["raw_events"][0] > 0
    assert res["training"]["sequences_per_second"] > 0
    sc = res["scoring"]
    assert sc["scores_per_second"] > 0
    # the pipeline's own path end to end: every user encoded, then only the changed ones
    full, incr = sc["end_to_end"], sc["incremental"]
    assert full["users_encoded"] == sc["users"] and full["user_vectors_reused"] == 0
    assert incr["users_encoded"] == incr["users_with_new_events"] > 0
    assert incr["user_vectors_reused"] == sc["users"] - incr["users_encoded"]
    assert full["rows"]["candidate_preferences"] == sc["candidates"]
    assert full["rows"]["user_top_candidates"] == sc["users"] * 10
    assert full["rows"]["candidate_audiences"] == sc["candidates"] * full["audience_kept"]
    assert full["mean_r"] > 0 and sc["mean_r_score_only"] > 0
    assert res["scoring_end_to_end_seconds"] == full["seconds"]
    assert res["scoring_1m_x_1k_end_to_end_seconds"] is None  # a smoke run is not the target size
    assert res["plan"]["chosen"] <= res["plan"]["slots"]


def test_quality_counts_are_exact_with_a_sample_and_a_suspect_cap(con):
    """GX sees suspects plus a sample; capped suspects fall back to exact SQL counts."""
    from launch_pipeline import quality
    from launch_pipeline.cleaning import ensure_tables
    from launch_pipeline.settings import CleaningRules

    day = dt.date(2026, 11, 1)
    now = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    ensure_tables(con)
    con.execute(
        """
        INSERT INTO clean_events
        SELECT CASE WHEN i % 500 = 7 THEN 'dup' ELSE 'e' || i END, DATE '2026-11-01',
               'u' || (i % 50), 'p1',
               CASE WHEN i % 100 = 3 THEN 'purchase' ELSE 'view' END,
               TIMESTAMP '2026-11-01 10:00:00' + INTERVAL (i % 3600) SECOND,
               CASE WHEN i % 100 = 3 THEN 1 END,
               CASE WHEN i % 100 = 3 THEN (CASE WHEN i % 300 = 3 THEN -1.0 ELSE 5.0 END) END,
               NULL, NULL, NULL, 's', 'f', i
        FROM range(5000) t(i)
        """
    )
    full = {
        r.rule: r
        for r in quality.validate_quality(con, day, day, CleaningRules(), now, sample_rows=500)
    }
    assert full["purchase_price_positive"].unexpected_count == 17  # i % 300 == 3
    assert full["event_key_unique"].unexpected_count == 10  # i % 500 == 7
    assert full["keys_not_null"].passed
    assert full["purchase_price_positive"].element_count == 5000
    assert full["purchase_price_positive"].gx_rows < 5000
    assert full["purchase_price_positive"].counts_from == "gx"
    capped = {
        r.rule: r
        for r in quality.validate_quality(
            con, day, day, CleaningRules(), now, sample_rows=10, max_suspects=5
        )
    }
    for rule in quality.QUALITY_RULES:
        assert capped[rule].passed == full[rule].passed, rule
        assert capped[rule].unexpected_count == full[rule].unexpected_count, rule
    assert capped["event_key_unique"].counts_from == "sql"
    assert capped["purchase_price_positive"].examples
