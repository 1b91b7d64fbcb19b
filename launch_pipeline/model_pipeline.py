"""The shop's preference model from warehouse to model store (no Dagster here).

Three steps, each an asset: :func:`extract_training_inputs` reads what training needs from the
warehouse and writes it to a file (the only part that holds the warehouse); :func:`train_new_version`
trains from that file and registers a challenger in the model store; after promotion
(:mod:`launch_pipeline.promotion`), :func:`evaluate_version` measures the champion next to the
baselines. Model internals live in :mod:`launch_pipeline.model`."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from launch_pipeline.errors import NotEnoughDataError
from launch_pipeline.model.data import SequenceData
from launch_pipeline.model.metrics import purchase_prf
from launch_pipeline.model_store import ModelStore, ModelVersion
from launch_pipeline.shop_data import load_shop_data
from launch_pipeline.shop_split import temporal_split
from launch_pipeline.warehouse import Rows, replace_atomically

EVAL_DAYS = 7

MODEL_EVALUATION_DDL = """
CREATE TABLE IF NOT EXISTS model_evaluation (
    model_version VARCHAR, evaluated_at TIMESTAMP, cutoff VARCHAR, method VARCHAR,
    metric VARCHAR, value DOUBLE
)
"""


def pipeline_model_config(time_budget_s: float, work_gcells: float = 0.0):
    """The preference model's training settings: stops on ``work_gcells`` (the work cap, see
    :attr:`launch_pipeline.model.config.ModelConfig.work_gcells`; 0 = none), with the time
    budget as a safety stop."""
    from launch_pipeline.model.config import ModelConfig

    return ModelConfig(
        n_event_types=3, time_budget_s=time_budget_s, work_gcells=work_gcells, seed=42
    )


# --------------------------------------------------------------------------- training inputs
@dataclass(frozen=True)
class TrainingInputs:
    """Everything training needs, read from the warehouse once: the pre-cutoff sequences and
    the catalog's vocabulary (stored with the model so later steps number items the same way)."""

    train: SequenceData
    item_ids: tuple[str, ...]  # catalog item ids, index k + 1 = item k + 1 of the model
    attribute_vocab: dict[str, int]
    cutoff: str
    eval_days: int = EVAL_DAYS

    @property
    def training_users(self) -> int:
        return self.train.n_users

    @property
    def catalog_items(self) -> int:
        return len(self.item_ids)


def extract_training_inputs(
    con: duckdb.DuckDBPyConnection, eval_days: int = EVAL_DAYS
) -> TrainingInputs:
    """The behaviour before the evaluation window, as the model will be trained on it."""
    shop = load_shop_data(con)
    split = temporal_split(shop, eval_days)
    if split.train.n_users < 2:
        raise NotEnoughDataError(
            f"only {split.train.n_users} users have two or more interactions before "
            f"{str(split.cutoff)[:10]} (the model keeps the last {eval_days} days of events to "
            "evaluate itself): not enough behaviour to train on. What to do: load more days of "
            f"events (more than {eval_days}) from more than one shopper"
        )
    return TrainingInputs(
        train=split.train,
        item_ids=tuple(str(i) for i in shop.item_ids[1:]),
        attribute_vocab={str(k): int(v) for k, v in shop.attribute_vocab.items()},
        cutoff=str(split.cutoff),
        eval_days=eval_days,
    )


def write_training_inputs(inputs: TrainingInputs, path: Path) -> Path:
    """Write ``inputs`` to ``path`` (``.npz``: flat int64 arrays plus a JSON header; no pickle),
    atomically (temporary file, then rename)."""
    train = inputs.train
    lengths = np.fromiter((len(s) for s in train.sequences), dtype=np.int64)
    header = {
        "item_ids": list(inputs.item_ids),
        "attribute_vocab": inputs.attribute_vocab,
        "cutoff": inputs.cutoff,
        "eval_days": inputs.eval_days,
        "n_attributes": int(train.n_attributes),
        "has_event_types": train.event_types is not None,
    }
    empty = np.zeros(0, dtype=np.int64)
    arrays = {
        "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        "lengths": lengths,
        "items": np.concatenate(train.sequences) if len(lengths) else empty,
        "events": (
            np.concatenate(train.event_types)
            if train.event_types is not None and len(lengths)
            else empty
        ),
        "item_attributes": train.item_attributes,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_training_inputs(path: Path) -> TrainingInputs:
    """Read what :func:`write_training_inputs` wrote (``allow_pickle=False``)."""
    if not Path(path).exists():
        raise FileNotFoundError(
            f"no training inputs at {path}: materialize model_training_data first"
        )
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes().decode())
        cuts = np.cumsum(z["lengths"])[:-1]
        sequences = np.split(z["items"], cuts) if len(z["lengths"]) else []
        events = (
            (np.split(z["events"], cuts) if len(z["lengths"]) else [])
            if header["has_event_types"]
            else None
        )
        train = SequenceData(
            sequences=sequences,
            event_types=events,
            item_attributes=z["item_attributes"],
            n_attributes=int(header["n_attributes"]),
        )
    return TrainingInputs(
        train=train,
        item_ids=tuple(header["item_ids"]),
        attribute_vocab={str(k): int(v) for k, v in header["attribute_vocab"].items()},
        cutoff=header["cutoff"],
        eval_days=int(header["eval_days"]),
    )


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
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
    inputs: TrainingInputs,
    store: ModelStore,
    config,
    log: Callable[[str], None] = print,
) -> TrainingOutcome:
    """Train on the behaviour before the evaluation window and register a new model version.

    Needs no warehouse (``inputs`` were read by :func:`extract_training_inputs`). The new
    version is written completely (temporary folder, then rename) before the store points at
    it. It is registered as a *challenger*: only :func:`launch_pipeline.promotion.promote_or_reject`
    (the ``champion_model`` asset) promotes it, so a failed or worse training never replaces a
    working model."""
    from launch_pipeline.model.training import save_model, train_model

    log(
        f"training on {inputs.training_users} users, {inputs.catalog_items} catalog items "
        f"(events before {inputs.cutoff}), work cap {config.work_gcells:g} Gcells, "
        f"time budget {config.time_budget_s:.0f}s"
    )
    result = train_model(inputs.train, config, log=log)
    store.clean_stale_temporaries()
    metadata = {
        "item_ids": list(inputs.item_ids),
        "attribute_vocab": inputs.attribute_vocab,
        "config": result.config,
        "history": result.history,
        "best_epoch": result.best_epoch,
        "epochs": result.epochs,
        "train_seconds": result.train_seconds,
        "stopped": result.stopped,
        "training": result.summary(),
        "valid_metrics": result.valid_metrics,
        "blend": result.blend,
        "cutoff": inputs.cutoff,
        "eval_days": inputs.eval_days,
        "training_users": inputs.training_users,
        "metrics": {f"valid_{k}": v for k, v in result.valid_metrics.items()},
    }
    version = store.register(
        lambda folder: save_model(result.model, folder / "model.keras"), metadata
    )
    store.set_status(version.version, "challenger")
    return TrainingOutcome(
        version=version,
        status="challenger",
        history=result.history,
        train_seconds=result.train_seconds,
        epochs=result.epochs,
        best_epoch=result.best_epoch,
        stopped=result.stopped,
        training_users=inputs.training_users,
        catalog_items=inputs.catalog_items,
        valid_metrics=result.valid_metrics,
        config=result.config,
    )


# --------------------------------------------------------------------------- champion, evaluation
def champion_or_fail(store: ModelStore) -> ModelVersion:
    version = store.champion()
    if version is None:
        raise FileNotFoundError(
            f"no champion {store.name} in the model store: materialize preference_model and "
            "champion_model first"
        )
    return version


def load_version(version: ModelVersion):
    from launch_pipeline.model.training import load_model

    return load_model(version.model_path), version.metadata()


@dataclass(frozen=True)
class ModelEvaluation:
    """Held-out metrics of one model version and of the baselines on the same cases:
    ``methods[method][metric]`` (methods ``transformer``, ``transformer_without_knn_blend``,
    ``popularity``, ``last_item_knn``)."""

    model_version: str
    cutoff: str
    next_item_cases: int
    buyers_evaluated: int
    methods: dict[str, dict[str, float]]


def evaluate_version(
    store: ModelStore, con: duckdb.DuckDBPyConnection, version: ModelVersion | None = None
) -> ModelEvaluation:
    """Held-out metrics of a model version (default: the champion) and of the popularity and
    last-item kNN baselines, same cases."""
    from launch_pipeline.model import baselines
    from launch_pipeline.model.training import evaluate_split, score_users

    version = version or champion_or_fail(store)
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
    return ModelEvaluation(
        model_version=version.label,
        cutoff=str(split.cutoff),
        next_item_cases=n_cases,
        buyers_evaluated=len(split.purchase_truth),
        methods=methods,
    )


def store_evaluation(
    con: duckdb.DuckDBPyConnection, report: ModelEvaluation, evaluated_at: dt.datetime
) -> None:
    """Replace the rows of ``report``'s model version in ``model_evaluation``."""
    con.execute(MODEL_EVALUATION_DDL)
    rows = [
        (
            report.model_version,
            evaluated_at.replace(tzinfo=None),
            report.cutoff,
            method,
            metric,
            float(value),
        )
        for method, vals in report.methods.items()
        for metric, value in vals.items()
    ]
    version = Rows("model_evaluation", "model_version = ?", [report.model_version])
    with replace_atomically(con, version):
        con.executemany("INSERT INTO model_evaluation VALUES (?, ?, ?, ?, ?, ?)", rows)
