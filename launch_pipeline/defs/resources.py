"""Resources, configured in one place: the pipeline settings and the DuckDB warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from launch_pipeline.errors import ConfigurationError
from launch_pipeline.settings import CleaningRules, PlanningSettings, Settings
from launch_pipeline.warehouse import quote_identifier, validate_identifier  # noqa: F401 - re-exported

ENV_ALLOWED_ROOTS = "LAUNCH_PIPELINE_ALLOWED_ROOTS"
"""Extra folders (``os.pathsep``-separated) a raw data directory may live in, besides the data
directory. Set by whoever deploys the code location; the launchpad cannot change it."""

_SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr")


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def allowed_raw_roots(data_dir: Path) -> list[Path]:
    roots = [data_dir]
    env_raw = os.environ.get("LAUNCH_PIPELINE_RAW_DIR")
    if env_raw:
        roots.append(Path(env_raw).resolve())
    for extra in (os.environ.get(ENV_ALLOWED_ROOTS) or "").split(os.pathsep):
        if extra.strip():
            roots.append(Path(extra.strip()).resolve())
    return roots


def validate_paths(data_dir: str | Path, raw_dir: str | Path) -> tuple[Path, Path]:
    """Resolve (symlinks and ``..`` included) and check the configured folders.

    * the data directory must not be the filesystem root or a system folder;
    * the raw data directory must be inside the data directory, or be the deployment's
      ``LAUNCH_PIPELINE_RAW_DIR``, or lie inside a folder listed in
      ``LAUNCH_PIPELINE_ALLOWED_ROOTS``. A path typed into the launchpad cannot point the
      pipeline at ``/etc`` or at another team's files."""
    data = Path(data_dir).expanduser().resolve()
    raw = Path(raw_dir).expanduser().resolve()
    if data == Path(data.anchor) or any(_is_within(data, Path(d)) for d in _SYSTEM_DIRS):
        raise ConfigurationError(
            f"data_dir {data} is the filesystem root or a system folder: choose a project folder "
            "such as ./data (LAUNCH_PIPELINE_DATA_DIR)"
        )
    roots = allowed_raw_roots(data)
    if not any(_is_within(raw, root) for root in roots):
        raise ConfigurationError(
            f"raw_dir {raw} is outside the data directory {data}: put the raw data under {data} "
            f"(default {data / 'raw'}), or let the deployment allow its folder with "
            f"{ENV_ALLOWED_ROOTS} (or LAUNCH_PIPELINE_RAW_DIR)"
        )
    return data, raw


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
    purchase_price_required: bool = CleaningRules.purchase_price_required
    slots: int = PlanningSettings.slots
    category_cap: int = PlanningSettings.category_cap
    audience_size: int = PlanningSettings.audience_size
    horizon_days: int = PlanningSettings.horizon_days
    objective: str = PlanningSettings.objective
    launch_budget: float | None = PlanningSettings.launch_budget
    max_promotions_per_user: int = PlanningSettings.max_promotions_per_user
    lead_time_hours: float = PlanningSettings.lead_time_hours
    shop_timezone: str = PlanningSettings.shop_timezone
    salvage_share: float = PlanningSettings.salvage_share
    min_gap_hours: int = PlanningSettings.min_gap_hours
    scenario: str = PlanningSettings.scenario
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
        """The settings of this run; a path outside the allowed folders stops the step with a
        :class:`dagster.Failure` that says what to change (see :func:`validate_paths`)."""
        try:
            data_dir, raw_dir = validate_paths(self.data_dir, self.raw_dir)
        except ConfigurationError as exc:
            raise dg.Failure(
                description=f"invalid configuration of the `pipeline` resource: {exc}",
                metadata={"data_dir": self.data_dir, "raw_dir": self.raw_dir},
                allow_retries=False,
            ) from exc
        return Settings(
            data_dir=data_dir,
            raw_dir=raw_dir,
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
        "warehouse": DuckDBResource(
            database=str(settings.warehouse_path),
            # DuckDB's buffer cache may otherwise grow to 80% of RAM; the cleaning and feature
            # SQL spills to disk past this limit instead (measured: no slowdown at 10M events)
            connection_config={"memory_limit": settings.duckdb_memory_limit},
        ),
    }
