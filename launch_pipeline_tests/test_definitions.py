"""The code location loads, validates with Dagster's CLI, and schedules the right partition."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from launch_pipeline.definitions import build_definitions
from launch_pipeline.defs.jobs import LAUNCH_JOB_NAME, NIGHTLY_SCHEDULE_NAME
from launch_pipeline.settings import Settings
from launch_pipeline.simulator import SimulatorConfig, generate_shop

REPO = Path(__file__).resolve().parents[1]
ASSETS = {
    "raw_events",
    "product_catalog",
    "launch_candidates",
    "clean_events",
    "quarantined_events",
    "item_features",
    "user_features",
    "user_sequences",
    "activity_profile",
    "model_training_data",
    "preference_model",
    "champion_model",
    "model_evaluation",
    "user_preferences",
    "launch_plan",
    "plan_outcomes",
}


def test_definitions_have_every_asset_check_job_and_schedule(tmp_path):
    defs = build_definitions(Settings.from_env(data_dir=tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys >= ASSETS
    for key in ASSETS:
        node = graph.get(dg.AssetKey(key))
        assert node.description, f"{key} has no description"
        assert node.group_name != "default", f"{key} has no group"
    checks = {k.name for k in graph.asset_check_keys}
    assert {"event_key_unique", "no_bot_left", "quarantined_share_below_limit"} <= checks
    assert defs.resolve_job_def(LAUNCH_JOB_NAME)
    schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE_NAME)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_nightly_schedule_targets_yesterday(tmp_path):
    settings = Settings.from_env(data_dir=tmp_path)
    generate_shop(
        settings.raw_dir,
        SimulatorConfig(
            users=50, days=3, events_per_day=100, end_date=dt.date(2026, 11, 27), candidates=5
        ),
    )
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def(NIGHTLY_SCHEDULE_NAME)
    tick = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.timezone.utc)
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        result = schedule.evaluate_tick(ctx)
    assert [r.partition_key for r in result.run_requests] == ["2026-11-28"]
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone in (None, "UTC")


def test_dagster_definitions_validate_passes(tmp_path):
    env = {**os.environ, "LAUNCH_PIPELINE_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dg_check_and_list_defs_pass(tmp_path):
    """The `dg` CLI (dagster-dg-cli, a dev dependency) loads the project from pyproject.toml's
    [tool.dg] section: definitions validate and every asset is listed."""
    dg_cli = Path(sys.executable).with_name("dg")
    env = {
        **os.environ,
        "LAUNCH_PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path),
        "VIRTUAL_ENV": str(Path(sys.executable).parents[1]),
    }
    check = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "All definitions loaded successfully" in check.stdout + check.stderr
    listed = subprocess.run(
        [str(dg_cli), "list", "defs", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for name in ASSETS)
    assert not (tmp_path / "data").exists()  # loading the code location created nothing
