"""Resources, configured in one place: the pipeline settings, the DuckDB warehouse and the model
store."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from launch_pipeline.errors import ConfigurationError
from launch_pipeline.model_store import LocalModelStore, ModelStore
from launch_pipeline.settings import (
    CleaningRules,
    PlanningSettings,
    Settings,
    duckdb_memory_limit_from_env,
)
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

    A field left empty (``""`` / ``None``) is resolved when a step runs, not when the code
    location loads: folders from ``LAUNCH_PIPELINE_DATA_DIR`` / ``LAUNCH_PIPELINE_RAW_DIR``
    (defaults ``./data``, ``<data>/raw``), cleaning thresholds from the source's ``dataset.json``
    or the defaults of :class:`~launch_pipeline.settings.CleaningRules`, the model's work cap from
    ``LAUNCH_PIPELINE_MODEL_WORK_GCELLS`` (20) and its time budget (a safety stop) from
    ``LAUNCH_PIPELINE_MODEL_TIME_BUDGET_S`` (180 s); see :meth:`Settings.from_env`."""

    data_dir: str = ""
    raw_dir: str = ""
    bot_events_per_minute: int | None = None
    fake_review_min_accounts: int | None = None
    review_burst_min_reviews: int | None = None
    max_quantity: int | None = None
    price_outlier_factor: float | None = None
    max_quarantined_share: float | None = None
    future_tolerance_minutes: int | None = None
    purchase_price_required: bool | None = None
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
    plan_details: bool = PlanningSettings.plan_details
    model_time_budget_s: float | None = None
    model_work_gcells: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LaunchPipelineConfig:
        return cls(
            data_dir=str(settings.data_dir),
            raw_dir=str(settings.raw_dir),
            **{f: getattr(settings.cleaning, f) for f in CleaningRules.__dataclass_fields__},
            **{f: getattr(settings.planning, f) for f in PlanningSettings.__dataclass_fields__},
            model_time_budget_s=settings.model_time_budget_s,
            model_work_gcells=settings.model_work_gcells,
        )

    def _set(self, fields) -> dict:
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}

    def settings(self) -> Settings:
        """The settings of this run; a path outside the allowed folders stops the step with a
        :class:`dagster.Failure` that says what to change (see :func:`validate_paths`)."""
        base = Settings.from_env(data_dir=self.data_dir or None, raw_dir=self.raw_dir or None)
        try:
            data_dir, raw_dir = validate_paths(base.data_dir, base.raw_dir)
        except ConfigurationError as exc:
            raise dg.Failure(
                description=f"invalid configuration of the `pipeline` resource: {exc}",
                metadata={"data_dir": str(base.data_dir), "raw_dir": str(base.raw_dir)},
                allow_retries=False,
            ) from exc
        return replace(
            base,
            data_dir=data_dir,
            raw_dir=raw_dir,
            cleaning=replace(base.cleaning, **self._set(CleaningRules.__dataclass_fields__)),
            planning=PlanningSettings(
                **{f: getattr(self, f) for f in PlanningSettings.__dataclass_fields__}
            ),
            **self._set(["model_time_budget_s", "model_work_gcells"]),
        )


# DuckDB's default (16 MiB) did not trigger for a nightly user_sequences update, whose UPDATE of
# 78k users' lists then wrote 338 MB of write-ahead log at commit and the same data again at
# the connection's checkpoint (1.0 + 1.1 s at 60 days of 1M events); at 1MB the commit
# checkpoints and skips the log (benchmarks/scale.md, seventh session)
WAREHOUSE_CHECKPOINT_THRESHOLD = "1MB"


class DuckDBWarehouse(DuckDBResource):
    """The DuckDB warehouse (a :class:`DuckDBResource`, so every asset's ``warehouse`` works
    as before). ``database`` left empty means ``<data dir>/warehouse.duckdb``, resolved when a
    step opens a connection (its folder is created then, not when the code location loads);
    ``memory_limit`` empty means ``LAUNCH_PIPELINE_DUCKDB_MEMORY_LIMIT`` (2GB). Another DuckDB
    (e.g. MotherDuck, ``md:...``) is another ``database`` string."""

    database: str = Field(
        default="", description="path of the DuckDB file; empty: <data dir>/warehouse.duckdb"
    )
    memory_limit: str = Field(
        default="",
        description="DuckDB memory_limit; empty: LAUNCH_PIPELINE_DUCKDB_MEMORY_LIMIT or 2GB",
    )

    lake_dir: str = Field(
        default="",
        description="folder of the partition files; empty: 'lake' beside the database file",
    )
    checkpoint_threshold: str = Field(
        default=WAREHOUSE_CHECKPOINT_THRESHOLD,
        description=(
            "DuckDB checkpoint_threshold: a commit whose changes pass it is written to the "
            "database file at once instead of to the write-ahead log first"
        ),
    )

    def resolved_database(self) -> str:
        return self.database or str(Settings.from_env().warehouse_path)

    def resolved_lake_dir(self) -> Path | None:
        database = self.resolved_database()
        if self.lake_dir:
            return Path(self.lake_dir)
        if database == ":memory:" or database.startswith("md:"):
            return None
        return Path(database).parent / "lake"

    @contextmanager
    def get_connection(self):
        database = self.resolved_database()
        if database != ":memory:" and not database.startswith("md:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        config = {
            "checkpoint_threshold": self.checkpoint_threshold,
            **self.connection_config,
            "memory_limit": self.memory_limit or duckdb_memory_limit_from_env(),
        }
        with DuckDBResource(database=database, connection_config=config).get_connection() as con:
            lake_dir = self.resolved_lake_dir()
            if lake_dir is not None:
                # the partition files as the views raw_events, clean_events, quarantined_events
                from launch_pipeline.cleaning import create_event_views

                create_event_views(con, lake_dir)
            yield con


class ModelStoreResource(dg.ConfigurableResource, ABC):
    """Where model versions live: the interface the model assets use. :meth:`store` returns a
    :class:`~launch_pipeline.model_store.ModelStore`; :class:`LocalModelStoreResource` keeps the
    versions in a folder. An object-store resource (S3, GCS) subclasses this with its bucket
    settings and returns a store whose versions are cached locally for Keras."""

    @abstractmethod
    def store(self, settings: Settings) -> ModelStore:
        """The store of ``preference_model`` versions for a run with these settings."""


class LocalModelStoreResource(ModelStoreResource):
    """Model versions in a local folder (``registry.json`` plus one folder per version)."""

    models_dir: str = Field(
        default="", description="folder of the model store; empty: <data dir>/models"
    )

    def store(self, settings: Settings) -> ModelStore:
        return LocalModelStore(Path(self.models_dir) if self.models_dir else settings.models_dir)


def build_resources(settings: Settings | None = None) -> dict:
    """The resources of the code location. With ``settings`` (the CLI, the tests) every value is
    fixed now; without (``dagster dev``, ``dg``), folders and thresholds are resolved when a
    step runs, so loading the code location reads no environment and creates nothing."""
    if settings is None:
        return {
            "pipeline": LaunchPipelineConfig(),
            "warehouse": DuckDBWarehouse(),
            "model_store": LocalModelStoreResource(),
        }
    return {
        "pipeline": LaunchPipelineConfig.from_settings(settings),
        "warehouse": DuckDBWarehouse(
            database=str(settings.warehouse_path),
            memory_limit=settings.duckdb_memory_limit,
            lake_dir=str(settings.lake_dir),
        ),
        "model_store": LocalModelStoreResource(models_dir=str(settings.models_dir)),
    }
