"""The Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from __future__ import annotations

import os

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import dagster as dg  # noqa: E402

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from launch_pipeline.defs import checks, features, model, planning, raw  # noqa: E402
from launch_pipeline.defs.cleaning import build_cleaning_assets  # noqa: E402
from launch_pipeline.defs.jobs import build_launch_job, build_nightly_schedule  # noqa: E402
from launch_pipeline.defs.partitions import build_daily_partitions  # noqa: E402
from launch_pipeline.defs.resources import build_resources  # noqa: E402
from launch_pipeline.settings import Settings  # noqa: E402


def build_data_assets(partitions: dg.DailyPartitionsDefinition) -> list:
    """The data side of the pipeline: raw inputs, cleaned and quarantined events, features."""
    raw_events = raw.build_raw_events(partitions)
    return [
        raw.product_catalog,
        raw.launch_candidates,
        raw_events,
        build_cleaning_assets(partitions, raw_events),
        features.item_features,
        features.user_features,
        features.user_sequences,
        features.activity_profile,
    ]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """All assets, checks, jobs, schedules and resources for one data directory.

    With ``settings`` (the CLI, the tests) the resources are fixed to them. Without (the code
    location that ``dagster dev`` / ``dg`` load), the resources resolve folders and thresholds
    when a step runs, and loading creates no folder. Only the daily partitions are read at load
    time (Dagster needs the partition set to load the code location): from the raw data's
    ``dataset.json`` or event file names, read-only (see ``defs/partitions.py``)."""
    partitions = build_daily_partitions(settings)
    job = build_launch_job(partitions)
    return dg.Definitions(
        assets=[
            *build_data_assets(partitions),
            model.model_training_data,
            model.preference_model,
            model.champion_model,
            model.model_evaluation,
            planning.user_preferences,
            planning.launch_plan,
            planning.plan_outcomes,
        ],
        asset_checks=[
            checks.clean_events_quality_rules,
            checks.clean_events_noise_rules,
            model.challenger_not_worse_than_champion,
        ],
        jobs=[job],
        schedules=[build_nightly_schedule(job)],
        resources=build_resources(settings),
    )


defs = build_definitions()
