"""Training, registering and evaluating the shop's preference model (no Dagster here).

The ``preference_model`` and ``model_evaluation`` assets call these functions; so do the CLI
and the tests. Model internals live in :mod:`launch_pipeline.model`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np

from launch_pipeline.recommender import (
    load_shop_data,
    purchase_prf,
    temporal_split,
)
from launch_pipeline.registry import ModelRegistry, ModelVersion
from launch_pipeline.settings import Settings
from launch_pipeline.warehouse import Rows, replace_atomically

EVAL_DAYS = 7
MODEL_NAME = "preference_model"
PROMOTION_TOLERANCE = 0.005
"""A challenger is promoted unless its validation NDCG@10 is more than this below the champion's
on the same cases."""

MODEL_EVALUATION_DDL = """
CREATE TABLE IF NOT EXISTS model_evaluation (
    model_version VARCHAR, evaluated_at TIMESTAMP, cutoff VARCHAR, method VARCHAR,
    metric VARCHAR, value DOUBLE
)
"""


def pipeline_model_config(settings: Settings):
    from launch_pipeline.model.config import ModelConfig

    return ModelConfig(
        n_event_types=3,
        time_budget_s=settings.model_time_budget_s,
        seed=42,
    )


@dataclass
class TrainingOutcome:
    version: ModelVersion
    status: str
    history: list[dict]
    train_seconds: float
    epochs: int
    best_epoch: int
    stopped: str
    training_users: int
    catalog_items: int
    valid_metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def train_new_version(
    settings: Settings,
    connect: Callable[[], duckdb.DuckDBPyConnection],
    log: Callable[[str], None] = print,
    config=None,
) -> TrainingOutcome:
    """Train on the behaviour before the evaluation window and register a new model version.

    The warehouse connection is only held while reading. The new version is written completely
    (temporary folder, then rename) before the registry points at it. It is registered as a
    *challenger*: only :func:`promote_or_reject` (the ``champion_model`` asset) promotes it, so a
    failed or worse training never replaces a working model.
    """
    from launch_pipeline.model.training import save_model, train_model

    with connect() as con:
        shop = load_shop_data(con)
    split = temporal_split(shop, EVAL_DAYS)
    if split.train.n_users < 2:
        raise ValueError(
            f"only {split.train.n_users} users have two or more interactions before "
            f"{split.cutoff}: not enough behaviour to train on; load more days of events"
        )
    config = config or pipeline_model_config(settings)
    log(
        f"training on {split.train.n_users} users, {shop.n_items} catalog items "
        f"(events before {split.cutoff}), time budget {config.time_budget_s:.0f}s"
    )
    result = train_model(split.train, config, log=log)
    registry = ModelRegistry(settings.models_dir, MODEL_NAME)
    registry.clean_stale_temporaries()
    metadata = {
        "item_ids": [str(i) for i in shop.item_ids[1:]],
        "attribute_vocab": {str(k): int(v) for k, v in shop.attribute_vocab.items()},
        "config": result.config,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "train_seconds": result.train_seconds,
        "stopped": result.stopped,
        "valid_metrics": result.valid_metrics,
        "blend": result.blend,
        "cutoff": str(split.cutoff),
        "eval_days": EVAL_DAYS,
        "training_users": split.train.n_users,
        "metrics": {f"valid_{k}": v for k, v in result.valid_metrics.items()},
    }
    version = registry.register(
        lambda folder: save_model(result.model, folder / "model.keras"), metadata
    )
    registry.set_status(version.version, "challenger")
    return TrainingOutcome(
        version=version,
        status="challenger",
        history=result.history,
        train_seconds=result.train_seconds,
        epochs=result.epochs,
        best_epoch=result.best_epoch,
        stopped=result.stopped,
        training_users=split.train.n_users,
        catalog_items=shop.n_items,
        valid_metrics=result.valid_metrics,
        config=result.config,
    )


def validation_score(version: ModelVersion, con: duckdb.DuckDBPyConnection) -> tuple[float, int]:
    """NDCG@10 of a version on the next-item cases of the current evaluation window."""
    from launch_pipeline.model.training import evaluate_split

    model, meta = load_version(version)
    shop = load_shop_data(con, meta["item_ids"], meta["attribute_vocab"])
    split = temporal_split(shop, int(meta.get("eval_days", EVAL_DAYS)))
    if len(split.next_item) == 0:
        return 0.0, 0
    metrics, _ = evaluate_split(model, split.next_item, blend=True)
    return float(metrics["ndcg@10"]), len(split.next_item)


@dataclass(frozen=True)
class PromotionDecision:
    """What ``champion_model`` decided about the latest trained version (recorded in the
    registry next to that version, so the check and the UI can read it without recomputing)."""

    challenger: str
    champion_before: str | None
    champion: str
    promoted: bool
    reason: str
    challenger_ndcg: float | None = None
    champion_ndcg: float | None = None
    cases: int = 0
    tolerance: float = PROMOTION_TOLERANCE

    @property
    def outcome(self) -> str:
        if self.promoted:
            return "promoted"
        return "kept" if self.challenger == self.champion else "rejected"

    def as_record(self) -> dict:
        return {**asdict(self), "outcome": self.outcome}


def promote_or_reject(
    settings: Settings, con: duckdb.DuckDBPyConnection, tolerance: float = PROMOTION_TOLERANCE
) -> PromotionDecision:
    """Promote the latest challenger if it is not worse than the champion beyond ``tolerance``
    (NDCG@10 on the same held-out cases); otherwise mark it rejected and keep the champion.

    The decision is recorded in the registry with the version it is about. This is the only
    function that changes who the champion is (the ``champion_model`` asset calls it)."""
    registry = ModelRegistry(settings.models_dir, MODEL_NAME)
    latest = registry.latest()
    champion = registry.champion()
    if latest is None:
        raise FileNotFoundError("no model version registered: materialize preference_model first")
    before = champion.label if champion else None
    if champion is not None and champion.version == latest.version:
        return PromotionDecision(latest.label, before, latest.label, False, "already champion")
    challenger_score, cases = validation_score(latest, con)
    scored = dict(challenger_ndcg=challenger_score, cases=cases, tolerance=tolerance)
    if champion is None:
        decision = PromotionDecision(
            latest.label, None, latest.label, True, "no champion yet", **scored
        )
        registry.promote(latest.version, note="first model", decision=decision.as_record())
        return decision
    try:
        champion_score, _ = validation_score(champion, con)
    except Exception as exc:  # noqa: BLE001 - an unloadable champion must not block a good model
        reason = f"champion unusable: {exc}"
        decision = PromotionDecision(latest.label, before, latest.label, True, reason, **scored)
        registry.promote(latest.version, note=reason, decision=decision.as_record())
        return decision
    if challenger_score >= champion_score - tolerance:
        decision = PromotionDecision(
            latest.label, before, latest.label, True, "not worse than champion",
            champion_ndcg=champion_score, **scored,
        )  # fmt: skip
        registry.promote(
            latest.version,
            note=f"ndcg@10 {challenger_score:.4f} vs champion {champion_score:.4f}",
            decision=decision.as_record(),
        )
        return decision
    decision = PromotionDecision(
        latest.label, before, champion.label, False, "worse than champion",
        champion_ndcg=champion_score, **scored,
    )  # fmt: skip
    registry.set_status(
        latest.version,
        "rejected",
        note=f"ndcg@10 {challenger_score:.4f} < champion {champion_score:.4f} - {tolerance}",
        decision=decision.as_record(),
    )
    return decision


def recorded_decision(settings: Settings) -> tuple[str, dict | None]:
    """The latest version's label and the promotion decision recorded for it (``None`` when
    ``champion_model`` has not decided about it yet). Reads only."""
    registry = ModelRegistry(settings.models_dir, MODEL_NAME)
    versions = registry.versions()
    if not versions:
        raise FileNotFoundError("no model version registered: materialize preference_model first")
    latest = versions[-1]
    label = registry.get(latest["version"]).label
    if latest.get("status") == "champion" and "decision" not in latest:
        return label, {"outcome": "promoted", "promoted": True, "reason": latest.get("note", "")}
    return label, latest.get("decision")


def champion_or_fail(settings: Settings) -> ModelVersion:
    version = ModelRegistry(settings.models_dir, MODEL_NAME).champion()
    if version is None:
        raise FileNotFoundError(
            f"no trained model in {settings.models_dir / MODEL_NAME}: materialize preference_model first"
        )
    return version


def load_version(version: ModelVersion):
    from launch_pipeline.model.training import load_model

    return load_model(version.model_path), version.metadata()


def evaluate_version(
    settings: Settings, con: duckdb.DuckDBPyConnection, version: ModelVersion | None = None
) -> dict:
    """Held-out metrics of a model version and of a popularity baseline, same cases."""
    from launch_pipeline.model import baselines
    from launch_pipeline.model.training import evaluate_split, score_users

    version = version or champion_or_fail(settings)
    model, meta = load_version(version)
    shop = load_shop_data(con, meta["item_ids"], meta["attribute_vocab"])
    split = temporal_split(shop, int(meta.get("eval_days", EVAL_DAYS)))
    methods: dict[str, dict] = {}
    n_cases = len(split.next_item)
    if n_cases:
        blended, _ = evaluate_split(model, split.next_item, blend=True)
        plain, _ = evaluate_split(model, split.next_item, blend=False)
    else:
        blended = plain = {"hr@10": 0.0, "ndcg@10": 0.0, "hr@20": 0.0, "ndcg@20": 0.0}

    def model_scores(idx: np.ndarray) -> np.ndarray:
        return score_users(
            model,
            [split.purchase_inputs[i] for i in idx],
            [split.purchase_input_events[i] for i in idx],
        )

    methods["transformer"] = {**blended, **purchase_prf(model_scores, split)}
    methods["transformer_without_knn_blend"] = dict(plain)

    pop = baselines.popularity(split.train.sequences, shop.n_items)
    pop_scores = lambda idx: np.tile(pop, (len(idx), 1))  # noqa: E731
    from launch_pipeline.model import metrics as mt

    if n_cases:
        ranks = mt.rank_split(pop_scores, split.next_item.inputs, split.next_item.targets)
        pop_rank = mt.hit_rate_ndcg(ranks)
    else:
        pop_rank = {"hr@10": 0.0, "ndcg@10": 0.0, "hr@20": 0.0, "ndcg@20": 0.0}
    methods["popularity"] = {**pop_rank, **purchase_prf(pop_scores, split)}

    sim = baselines.item_cosine_similarity(split.train.sequences, shop.n_items)
    if n_cases:
        last = split.next_item.last_items()
        ranks = mt.rank_split(
            lambda idx: baselines.last_item_knn_scores(sim, last[idx]),
            split.next_item.inputs,
            split.next_item.targets,
        )
        knn_rank = mt.hit_rate_ndcg(ranks)
    else:
        knn_rank = {"hr@10": 0.0, "ndcg@10": 0.0, "hr@20": 0.0, "ndcg@20": 0.0}
    buyers_last = np.array([s[-1] for s in split.purchase_inputs], dtype=np.int64)
    methods["last_item_knn"] = {
        **knn_rank,
        **purchase_prf(lambda idx: baselines.last_item_knn_scores(sim, buyers_last[idx]), split),
    }
    for m in methods.values():
        m.pop("buyers_evaluated", None)
    return {
        "model_version": version.label,
        "cutoff": str(split.cutoff),
        "next_item_cases": n_cases,
        "buyers_evaluated": len(split.purchase_truth),
        "methods": methods,
    }


def store_evaluation(
    con: duckdb.DuckDBPyConnection, report: dict, evaluated_at: dt.datetime
) -> None:
    con.execute(MODEL_EVALUATION_DDL)
    rows = [
        (
            report["model_version"],
            evaluated_at.replace(tzinfo=None),
            report["cutoff"],
            method,
            metric,
            float(value),
        )
        for method, vals in report["methods"].items()
        for metric, value in vals.items()
    ]
    version = Rows("model_evaluation", "model_version = ?", [report["model_version"]])
    with replace_atomically(con, version):
        con.executemany("INSERT INTO model_evaluation VALUES (?, ?, ?, ?, ?, ?)", rows)
