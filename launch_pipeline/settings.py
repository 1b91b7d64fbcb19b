"""Where the pipeline keeps its files, and the knobs operators may turn.

Everything is configured in one place: :class:`Settings` is built from environment variables
(``LAUNCH_PIPELINE_*``) with sensible defaults, and the Dagster resources in
``launch_pipeline/defs/resources.py`` are made from it. Nothing here reads the environment or
the disk when it is imported: :meth:`Settings.from_env` does, when it is called (by the CLI, or
by a resource when a step runs).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

ENV_DATA_DIR = "LAUNCH_PIPELINE_DATA_DIR"
ENV_RAW_DIR = "LAUNCH_PIPELINE_RAW_DIR"
ENV_MODEL_TIME_BUDGET_S = "LAUNCH_PIPELINE_MODEL_TIME_BUDGET_S"
ENV_MODEL_WORK_GCELLS = "LAUNCH_PIPELINE_MODEL_WORK_GCELLS"
ENV_DUCKDB_MEMORY_LIMIT = "LAUNCH_PIPELINE_DUCKDB_MEMORY_LIMIT"
ENV_AUDIENCE_KEPT = "LAUNCH_PIPELINE_AUDIENCE_KEPT"
DEFAULT_MODEL_TIME_BUDGET_S = 180.0
"""The preference model's wall-clock safety stop (seconds); training normally stops on work."""
DEFAULT_MODEL_WORK_GCELLS = 20.0
"""The preference model's work cap: billions of softmax cells (real targets trained x catalogue
items), so ``20e9 / (targets x catalogue)`` epochs at most; the same rule for every shop, so
the same data and settings give the same model at any machine load (``ModelConfig.work_gcells``;
how it was chosen: docs/backtest.md, "Reproducible training")."""
DEFAULT_DUCKDB_MEMORY_LIMIT = "2GB"
TRAINING_INPUTS_FILE = "training_inputs.npz"
DEFAULT_AUDIENCE_KEPT = 1000
"""Users kept per candidate by the scorer (``candidate_audiences``): the pool the promotion
audiences are chosen from (the default plan needs 250; a scenario that needs more than what
was kept is refused with what to do)."""


def data_dir_from_env() -> Path:
    """``LAUNCH_PIPELINE_DATA_DIR``, default ``./data`` (resolved)."""
    return Path(os.environ.get(ENV_DATA_DIR) or "data").resolve()


def raw_dir_from_env(data_dir: Path | None = None) -> Path:
    """``LAUNCH_PIPELINE_RAW_DIR``, default ``<data dir>/raw`` (resolved)."""
    data = data_dir or data_dir_from_env()
    return Path(os.environ.get(ENV_RAW_DIR) or Path(data) / "raw").resolve()


def duckdb_memory_limit_from_env() -> str:
    """``LAUNCH_PIPELINE_DUCKDB_MEMORY_LIMIT``, default 2GB: DuckDB's buffer cache may otherwise
    grow to 80% of RAM; the cleaning and feature SQL spills to disk past this limit instead."""
    return os.environ.get(ENV_DUCKDB_MEMORY_LIMIT) or DEFAULT_DUCKDB_MEMORY_LIMIT


ENV_PARTITION_WORKERS = "LAUNCH_PIPELINE_PARTITION_WORKERS"
DEFAULT_PARTITION_WORKERS = 2


def partition_workers_from_env() -> int:
    """``LAUNCH_PIPELINE_PARTITION_WORKERS``, default 2: how many days one partition step (raw
    landing, cleaning) works on at once, each on its own DuckDB cursor and files. A
    :class:`~launch_pipeline.errors.ConfigurationError` when it is not a whole number >= 1."""
    from launch_pipeline.errors import ConfigurationError

    text = os.environ.get(ENV_PARTITION_WORKERS) or str(DEFAULT_PARTITION_WORKERS)
    try:
        workers = int(text)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ConfigurationError(
            f"{ENV_PARTITION_WORKERS}={text!r} is not a whole number >= 1: set it to how many "
            "days a partition step may work on at once (e.g. 2), or unset it"
        )
    return workers


@dataclass(frozen=True)
class CleaningRules:
    """Thresholds of the cleaning and noise rules (see ``cleaning.py``)."""

    bot_events_per_minute: int = 30
    """A user with more events than this in any one minute of a day is a bot; all of that
    user's events of that day are quarantined."""
    fake_review_min_accounts: int = 2
    """A review text (normalised) posted by at least this many accounts on one day is fake."""
    review_burst_min_reviews: int = 5
    """At least this many 5-star reviews of one item within one hour, from accounts that did not
    view, cart or buy the item that day, form a fake-review burst."""
    max_quantity: int = 10_000
    """Quantities above this are outliers (typing errors, test orders)."""
    price_outlier_factor: float = 20.0
    """A price more than this factor above or below the catalog price is an outlier."""
    max_quarantined_share: float = 0.5
    """The quarantined share of a partition above which the noise check fails (a source adapter
    may set another limit in ``dataset.json``)."""
    future_tolerance_minutes: int = 10
    """Clock skew allowed before a timestamp counts as being in the future."""
    purchase_price_required: bool = True
    """Whether every clean purchase must carry a price (False for sources without prices, such
    as Taobao UserBehavior: the quality rule then checks price > 0 only where there is one)."""


OBJECTIVES = ("auto", "revenue", "gross_profit")


@dataclass(frozen=True)
class PlanningSettings:
    """Launch-plan constraints and horizon: one *scenario* of the plan (see
    ``launch_pipeline/launch_planner.py``). Every field can be changed per scenario with
    ``launch-pipeline plan --scenario NAME --slots N ...`` or in the launchpad."""

    slots: int = 10
    """How many products may be launched."""
    category_cap: int = 3
    """At most this many launches per category."""
    audience_size: int = 50
    """Users promoted to per launched product (at most)."""
    horizon_days: int = 30
    """Days after the launch over which sales are forecast and valued."""
    objective: str = "auto"
    """``revenue`` or ``gross_profit``; ``auto``: gross profit when every candidate has a unit
    cost, revenue otherwise."""
    launch_budget: float | None = None
    """Upper bound on the summed cost of the recommended initial orders (None: no bound)."""
    max_promotions_per_user: int = 2
    """Nobody is in more than this many promotion audiences of one plan."""
    lead_time_hours: float = 24.0
    """No launch earlier than this many hours after the plan is made."""
    shop_timezone: str = os.environ.get("LAUNCH_PIPELINE_SHOP_TIMEZONE", "UTC")
    """IANA time zone in which launch times are shown next to UTC (e.g. ``Europe/London``)."""
    salvage_share: float = 0.0
    """Share of its unit cost an unsold unit of the initial order is worth (0: nothing)."""
    min_gap_hours: int = 24
    """Launches whose audiences overlap are at least this many hours apart."""
    scenario: str = "default"
    """Name under which this plan's rows, audiences and report are kept."""
    plan_details: bool = True
    """Also compute the value of the plan with 1, 2, ... slots (``plan_slot_values``, one MILP
    per slot count) and write the report with its figures. The backtest turns it off: it scores
    the decision only (the picks, audiences and hours are made by the same code either way)."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    raw_dir: Path
    cleaning: CleaningRules = field(default_factory=CleaningRules)
    planning: PlanningSettings = field(default_factory=PlanningSettings)
    model_time_budget_s: float = DEFAULT_MODEL_TIME_BUDGET_S
    model_work_gcells: float = DEFAULT_MODEL_WORK_GCELLS
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    audience_kept: int = DEFAULT_AUDIENCE_KEPT

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def lake_dir(self) -> Path:
        """Partition files (``lake.py``): raw landings, clean and quarantined events per day."""
        return self.data_dir / "lake"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def user_vectors_dir(self) -> Path:
        """Transformer user vectors of the champion model, reused by the next scoring run."""
        return self.data_dir / "user_vectors"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def training_inputs_path(self) -> Path:
        """What the model is trained on, read from the warehouse by ``model_training_data``."""
        return self.data_dir / "model_inputs" / TRAINING_INPUTS_FILE

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def ground_truth_dir(self) -> Path:
        return self.raw_dir / "ground_truth"

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None, raw_dir: str | Path | None = None):
        """Settings for a data directory. A source adapter may record cleaning thresholds that
        suit its data in ``raw/dataset.json`` under ``"cleaning"`` (e.g. Online Retail, where
        guest checkouts without a customer id are a large share of some days); they override
        the defaults."""
        data = Path(data_dir).resolve() if data_dir else data_dir_from_env()
        raw = Path(raw_dir).resolve() if raw_dir else raw_dir_from_env(data)
        cleaning = CleaningRules()
        manifest = raw / "dataset.json"
        if manifest.exists():
            try:
                overrides = json.loads(manifest.read_text()).get("cleaning") or {}
            except (OSError, json.JSONDecodeError):
                overrides = {}  # raw_io reports an unreadable manifest with the file name
            known = {k: v for k, v in overrides.items() if k in CleaningRules.__dataclass_fields__}
            cleaning = replace(cleaning, **known)
        budget = float(os.environ.get(ENV_MODEL_TIME_BUDGET_S) or DEFAULT_MODEL_TIME_BUDGET_S)
        work = float(os.environ.get(ENV_MODEL_WORK_GCELLS) or DEFAULT_MODEL_WORK_GCELLS)
        return cls(
            data_dir=data,
            raw_dir=raw,
            cleaning=cleaning,
            model_time_budget_s=budget,
            model_work_gcells=work,
            duckdb_memory_limit=duckdb_memory_limit_from_env(),
            audience_kept=int(os.environ.get(ENV_AUDIENCE_KEPT) or DEFAULT_AUDIENCE_KEPT),
        )

    def with_overrides(self, **kwargs) -> Settings:
        return replace(self, **kwargs)

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, default=str, indent=2)
