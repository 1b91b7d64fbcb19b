"""Every asset materialized on a small simulated shop, through the real Dagster job.

One module-scoped run (a few hundred users, two weeks, a 20-second model budget) feeds the
assertions: lineage, row accounting, planted noise in quarantine with the right reason, checks,
plan constraints, and planned products against the simulator's ground truth."""

from __future__ import annotations

import dataclasses
import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest

from launch_pipeline import lake
from launch_pipeline.definitions import build_definitions
from launch_pipeline.runner import run_pipeline
from launch_pipeline.settings import Settings
from launch_pipeline.simulator import SimulatorConfig, generate_shop

pytestmark = pytest.mark.slow

END = dt.date(2026, 11, 20)
SIM = SimulatorConfig(seed=11, users=500, days=16, events_per_day=1800, end_date=END, candidates=40)

EXPECTED_REASON = {
    "bot": "bot_user",
    "fake_review_duplicate_text": "fake_review_duplicate_text",
    "fake_review_burst": "fake_review_burst",
    "exact_duplicate": "exact_duplicate",
    "missing_user_id": "missing_user_id",
    "missing_item_id": "missing_item_id",
    "negative_price": "invalid_price",
    "future_timestamp": "future_timestamp",
    "timestamp_outside_partition": "timestamp_outside_partition",
    "unknown_item": "unknown_item",
    "invalid_event_type": "invalid_event_type",
    "invalid_rating": "invalid_rating",
    "malformed_row": "malformed_row",
    "invalid_timestamp": "invalid_timestamp",
}


def _settings(data_dir) -> Settings:
    base = Settings.from_env(data_dir=data_dir)
    return dataclasses.replace(base, model_time_budget_s=20.0)


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("shop")
    settings = _settings(data_dir)
    generate_shop(settings.raw_dir, SIM)
    instance = dg.DagsterInstance.ephemeral()
    outcome = run_pipeline(settings, instance=instance)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    yield settings, outcome, con, instance
    con.close()


def test_run_succeeds_and_every_check_passes(shop_run):
    settings, outcome, con, instance = shop_run
    assert outcome.success, outcome.failures
    assert outcome.partitions == (
        (END - dt.timedelta(days=SIM.days - 1)).isoformat(),
        END.isoformat(),
    )
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("clean_events"), "event_key_unique"), limit=1
    )
    assert records and records[0].status.value == "SUCCEEDED"


def test_lineage(shop_run):
    settings = shop_run[0]
    graph = build_definitions(settings).resolve_asset_graph()
    upstream = {k.to_user_string() for k in graph.get(dg.AssetKey("launch_plan")).parent_keys}
    assert {
        "user_preferences",
        "activity_profile",
        "item_features",
        "launch_candidates",
    } <= upstream
    all_up = {k.to_user_string() for k in graph.upstream_key_iterator(dg.AssetKey("launch_plan"))}
    ancestors = set()
    frontier = [dg.AssetKey("launch_plan")]
    while frontier:
        key = frontier.pop()
        for parent in graph.get(key).parent_keys:
            if parent not in ancestors:
                ancestors.add(parent)
                frontier.append(parent)
    names = {k.to_user_string() for k in ancestors}
    assert all_up == names  # Dagster's own walk agrees with the parent-by-parent one
    assert {
        "raw_events",
        "product_catalog",
        "launch_candidates",
        "clean_events",
        "item_features",
        "user_features",
        "user_sequences",
        "activity_profile",
        "model_training_data",
        "preference_model",
        "champion_model",
        "model_evaluation",
        "user_preferences",
    } <= names
    daily = graph.get(dg.AssetKey("raw_events")).partitions_def
    assert isinstance(daily, dg.DailyPartitionsDefinition)
    # the shop's first day; a live source (no end date) runs up to yesterday
    assert daily.get_first_partition_key() == (END - dt.timedelta(days=SIM.days - 1)).isoformat()
    assert END.isoformat() in daily.get_partition_keys()


def test_every_table_exists(shop_run):
    con = shop_run[2]
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    for t in (
        "raw_events",
        "product_catalog",
        "launch_candidates",
        "clean_events",
        "quarantined_events",
        "user_features",
        "item_features",
        "user_sequences",
        "activity_profile",
        "model_evaluation",
        "candidate_preferences",
        "candidate_audiences",
        "user_top_candidates",
        "launch_plan",
        "launch_audiences",
    ):
        assert t in tables, t
        assert con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] > 0, t
    # plans are for the day after the data: nothing sold yet, so no outcome rows, but the table exists
    assert "plan_outcomes" in tables


def test_row_accounting(shop_run):
    con = shop_run[2]
    df = con.execute(
        """
        WITH r AS (SELECT partition_date, count(*) n FROM raw_events GROUP BY 1),
             c AS (SELECT partition_date, count(*) n FROM clean_events GROUP BY 1),
             q AS (SELECT partition_date, count(*) n FROM quarantined_events GROUP BY 1)
        SELECT r.partition_date, r.n AS raw, coalesce(c.n, 0) AS clean, coalesce(q.n, 0) AS quarantined
        FROM r LEFT JOIN c USING (partition_date) LEFT JOIN q USING (partition_date)
        """
    ).df()
    assert len(df) == SIM.days
    assert (df["raw"] == df["clean"] + df["quarantined"]).all()


def test_planted_noise_is_quarantined_with_its_reason(shop_run):
    settings, _, con, _ = shop_run
    planted = pd.read_parquet(settings.ground_truth_dir / "planted_noise.parquet")
    quarantined = con.execute("SELECT source_file, source_row, reason FROM quarantined_events").df()
    m = planted.merge(
        quarantined, left_on=["file", "row"], right_on=["source_file", "source_row"], how="left"
    )
    assert set(planted["kind"]) == set(EXPECTED_REASON)
    assert m["reason"].notna().all(), m[m["reason"].isna()].head()
    wrong = m[m["reason"] != m["kind"].map(EXPECTED_REASON)]
    assert wrong.empty, wrong.head(10)
    # and nothing genuine was quarantined
    extra = quarantined.merge(
        planted, left_on=["source_file", "source_row"], right_on=["file", "row"], how="left"
    )
    assert extra["kind"].isna().sum() == 0


def test_plan_respects_slots_and_caps_and_beats_random(shop_run):
    settings, _, con, _ = shop_run
    plan = con.execute("SELECT * FROM launch_plan").df()
    chosen = plan[plan["chosen"]]
    assert 0 < len(chosen) <= settings.planning.slots
    assert chosen["category"].value_counts().max() <= settings.planning.category_cap
    assert chosen["launch_at"].notna().all()
    assert (chosen["launch_at"] >= pd.Timestamp(plan["plan_date"].iloc[0])).all()
    aud = con.execute("SELECT item_id, count(*) AS n FROM launch_audiences GROUP BY 1").df()
    assert set(aud["item_id"]) == set(chosen["item_id"])
    assert (aud["n"] <= settings.planning.audience_size).all()
    truth = pd.read_parquet(settings.ground_truth_dir / "candidate_truth.parquet")
    m = plan.merge(truth, on="item_id")
    random_pick = m["true_expected_revenue"].mean()
    planned = m.loc[m["chosen"], "true_expected_revenue"].mean()
    assert planned > 1.5 * random_pick, (planned, random_pick)
    report = (
        settings.reports_dir / f"launch_plan_{pd.Timestamp(plan['plan_date'].iloc[0]).date()}.md"
    )
    text = report.read_text()
    assert "Products to launch" in text and ".png" in text
    assert any(settings.reports_dir.glob("*.png"))


def test_model_is_versioned_and_evaluated(shop_run):
    settings, _, con, _ = shop_run
    versions = list((settings.models_dir / "preference_model").glob("v*/model.keras"))
    assert versions
    ev = con.execute("SELECT method, metric, value FROM model_evaluation").df()
    assert {"transformer", "popularity"} <= set(ev["method"])
    assert {"hr@10", "ndcg@10", "precision@10", "recall@10", "f1@10"} <= set(ev["metric"])


def test_checks_fail_and_block_downstream_on_broken_data(tmp_path):
    """A day that is mostly garbage: cleaning quarantines it, the noise check fails, and the
    assets downstream of clean_events are not materialized in that run."""
    settings = _settings(tmp_path)
    generate_shop(settings.raw_dir, dataclasses.replace(SIM, users=150, days=3, events_per_day=600))
    day_file = sorted((settings.raw_dir / "events").glob("*.csv"))[-1]
    lines = day_file.read_text().splitlines()
    garbage = ["x,y"] * (3 * len(lines))  # wrong field count: malformed rows
    day_file.write_text("\n".join(lines + garbage) + "\n")
    instance = dg.DagsterInstance.ephemeral()
    outcome = run_pipeline(settings, instance=instance)
    assert not outcome.success
    assert any("quarantined_share_below_limit" in f for f in outcome.failures), outcome.failures
    landed = instance.get_latest_materialization_event(dg.AssetKey("clean_events"))
    assert outcome.partitions[0] <= landed.asset_materialization.partition <= outcome.partitions[1]
    for downstream in ("item_features", "preference_model", "launch_plan"):
        assert instance.get_latest_materialization_event(dg.AssetKey(downstream)) is None, (
            downstream
        )


def test_rejected_challenger_still_yields_a_plan_made_with_the_champion(shop_run):
    """Champion/challenger on the real registry, through the assets: a deliberately worse model
    (one epoch, no blend) is recorded as rejected by ``champion_model``, the check warns without
    changing anything, and the night's preferences and plan are made with the champion."""
    from launch_pipeline.defs import model, planning
    from launch_pipeline.model.config import ModelConfig
    from launch_pipeline.model_pipeline import read_training_inputs, train_new_version
    from launch_pipeline.model_store import LocalModelStore
    from launch_pipeline.promotion import recorded_decision

    settings, _, _, _ = shop_run
    registry = LocalModelStore(settings.models_dir)
    champion = registry.champion()
    assert champion is not None
    connect = lambda: duckdb.connect(str(settings.warehouse_path), read_only=True)  # noqa: E731
    weak = ModelConfig(n_event_types=3, max_epochs=1, knn_blend=False, dim=8, blocks=1, seed=1)
    inputs = read_training_inputs(settings.training_inputs_path)  # what the run trained on
    outcome = train_new_version(inputs, registry, weak, log=lambda _m: None)
    assert outcome.status == "challenger"
    assert recorded_decision(registry) == (outcome.version.label, None)

    shop_run[2].close()  # the module's read-only connection would block the writers
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [model.champion_model, model.challenger_not_worse_than_champion, planning.user_preferences,
         planning.launch_plan],
        resources=build_definitions(settings).resources,
        instance=instance,
    )  # fmt: skip
    assert result.success
    meta = result.asset_materializations_for_node("champion_model")[0].metadata
    assert meta["decision"].value == "rejected"
    assert meta["champion"].value == champion.label
    assert meta["challenger"].value == outcome.version.label
    assert meta["challenger_ndcg@10"].value < meta["champion_ndcg@10"].value
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "challenger_not_worse_than_champion"
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert registry.champion() == champion
    statuses = {v["version"]: v["status"] for v in registry.versions()}
    assert statuses[outcome.version.version] == "rejected"
    # re-reading the decision changes nothing
    registry_file = (registry.root / "registry.json").read_bytes()
    assert recorded_decision(registry)[1]["outcome"] == "rejected"
    assert (registry.root / "registry.json").read_bytes() == registry_file

    prefs = result.asset_materializations_for_node("user_preferences")[0].metadata
    assert prefs["model_version"].value == champion.label
    # the same champion and no new event since the night's run: every user vector is reused
    assert prefs["users_encoded"].value == 0
    assert prefs["user_vectors_reused"].value == prefs["users_scored"].value > 0
    with connect() as con:
        used = con.execute(
            "SELECT DISTINCT model_version FROM candidate_preferences UNION "
            "SELECT DISTINCT model_version FROM candidate_audiences"
        ).fetchall()
        planned = con.execute(
            "SELECT model_version, count(*) FROM launch_plan WHERE chosen GROUP BY 1"
        ).fetchall()
    assert used == [(champion.label,)]
    assert len(planned) == 1 and planned[0][0] == champion.label and planned[0][1] > 0


def test_what_if_scenarios_side_by_side_without_retraining(shop_run):
    """A what-if re-plans from the stored preferences (no new model version), is tagged with
    its scenario, keeps the nightly plan, and a horizon change is refused with what to do."""
    from launch_pipeline.runner import plan_scenario

    settings, _, con, instance = shop_run
    con.close()  # the writers below need the file
    models_before = sorted(p.name for p in settings.models_dir.rglob("*") if p.is_dir())

    def scenario(**kw):
        return settings.with_overrides(planning=dataclasses.replace(settings.planning, **kw))

    out = plan_scenario(scenario(slots=2, scenario="two_slots"), instance=instance)
    assert out.success, out.failures
    tags = instance.get_run_by_id(out.run_id).tags
    assert tags["launch_pipeline/scenario"] == "two_slots" and tags["launch_pipeline/slots"] == "2"
    refused = plan_scenario(scenario(horizon_days=14, scenario="short"), instance=instance)
    assert not refused.success
    assert any("re-planning never re-scores" in f for f in refused.failures), refused.failures
    assert sorted(p.name for p in settings.models_dir.rglob("*") if p.is_dir()) == models_before

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as c:
        picks = dict(c.execute("SELECT scenario, picks FROM plan_scenarios").fetchall())
        plan = c.execute("SELECT * FROM launch_plan").df()
        aud = c.execute("SELECT * FROM launch_audiences").df()
        expl = c.execute("SELECT * FROM launch_plan_explanations").df()
    assert picks["two_slots"] == 2 and picks["default"] > 2 and "short" not in picks
    chosen = plan[plan["chosen"]]
    assert chosen.groupby("scenario").size().to_dict() == picks
    # no launch before the plan's creation plus the lead time
    lead = pd.Timedelta(hours=settings.planning.lead_time_hours)
    assert (chosen["launch_at"] >= chosen["created_at"] + lead).all()
    # the contact cap, per scenario
    per_user = aud.groupby(["scenario", "user_id"]).size()
    assert per_user.max() <= settings.planning.max_promotions_per_user
    # coherent whole-unit forecasts
    assert (plan["expected_buyers"] <= plan["expected_units"] + 1e-9).all()
    assert (plan["units_p10"] <= plan["units_p90"]).all()
    # reasons for every pick and the best non-picks, per scenario
    for name, n in picks.items():
        e = expl[expl["scenario"] == name]
        assert e["chosen"].sum() == n and (~e["chosen"]).sum() == 5
        assert e.loc[~e["chosen"], "left_out_by"].str.len().gt(0).all()
    report = settings.reports_dir / f"launch_plan_{plan['plan_date'].iloc[0]:%Y-%m-%d}_two_slots.md"
    text = report.read_text()
    assert "Scenarios compared" in text and "default" in text and "two_slots" in text
    assert "For analysts" in text and "slot_value.png" in text


def test_feature_assets_merged_every_clean_partition_by_its_stamp(shop_run):
    settings = shop_run[0]  # its own connection: an earlier test closes the module's one
    stamps = {d: s.version for d, s in lake.read_stamps(settings.lake_dir, "clean_events").items()}
    assert len(stamps) == SIM.days
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for feature in ("item_features", "user_features", "user_sequences", "activity_profile"):
            merged = dict(
                con.execute(
                    "SELECT day, version FROM feat_merged_days WHERE feature = ?", [feature]
                ).fetchall()
            )
            assert merged == stamps, feature
