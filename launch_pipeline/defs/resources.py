"""Resources, configured in one place: the pipeline settings and the DuckDB warehouse."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from launch_pipeline.settings import CleaningRules, PlanningSettings, Settings


class LaunchPipelineConfig(dg.ConfigurableResource):
    """Where the raw data and the outputs live, and the thresholds of cleaning and planning.

    Defaults come from :class:`launch_pipeline.settings.Settings` (environment variables
    ``LAUNCH_PIPELINE_DATA_DIR`` and ``LAUNCH_PIPELINE_RAW_DIR``)."""

    data_dir: str
    raw_dir: str
    bot_events_per_minute: int = CleaningRules.bot_events_per_minute
    fake_review_min_accounts: int = CleaningRules.fake_review_min_accounts
    review_burst_min_reviews: int = CleaningRules.review_burst_min_reviews
    max_quantity: int = CleaningRules.max_quantity
    price_outlier_factor: float = CleaningRules.price_outlier_factor
    max_quarantined_share: float = CleaningRules.max_quarantined_share
    future_tolerance_minutes: int = CleaningRules.future_tolerance_minutes
    slots: int = PlanningSettings.slots
    category_cap: int = PlanningSettings.category_cap
    audience_size: int = PlanningSettings.audience_size
    horizon_days: int = PlanningSettings.horizon_days
    model_time_budget_s: float = Settings.model_time_budget_s

    @classmethod
    def from_settings(cls, settings: Settings) -> LaunchPipelineConfig:
        return cls(
            data_dir=str(settings.data_dir),
            raw_dir=str(settings.raw_dir),
            **{f: getattr(settings.cleaning, f) for f in CleaningRules.__dataclass_fields__},
            **{f: getattr(settings.planning, f) for f in PlanningSettings.__dataclass_fields__},
            model_time_budget_s=settings.model_time_budget_s,
        )

    def settings(self) -> Settings:
        return Settings(
            data_dir=Path(self.data_dir),
            raw_dir=Path(self.raw_dir),
            cleaning=CleaningRules(
                **{f: getattr(self, f) for f in CleaningRules.__dataclass_fields__}
            ),
            planning=PlanningSettings(
                **{f: getattr(self, f) for f in PlanningSettings.__dataclass_fields__}
            ),
            model_time_budget_s=self.model_time_budget_s,
        )


def build_resources(settings: Settings) -> dict:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "pipeline": LaunchPipelineConfig.from_settings(settings),
        "warehouse": DuckDBResource(database=str(settings.warehouse_path)),
    }
