"""The pieces of the training loop of :func:`launch_pipeline.model.training.train_model`, each
testable on its own: length-bucketed batches and their padding, the learning-rate schedule,
early stopping with plateau halvings, the work cap (targets trained) and the wall-clock time
budget (with an injectable clock).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import ModelConfig

TARGET_BUCKET = 256
"""Real targets of a batch are padded to a multiple of this, so the compiled training step
sees few distinct shapes."""


# --------------------------------------------------------------------------- batching, padding
def catalog_labels(
    n_items: int, catalog_items: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The softmax classes: ``catalog_ids`` (sorted item ids that exist at training time, default
    ``1..n_items``) and ``label_of`` (item id -> class, -1 for padding and items outside)."""
    if catalog_items is None:
        catalog_ids = np.arange(1, n_items + 1)
    else:
        catalog_ids = np.unique(np.asarray(catalog_items, dtype=np.int64))
    label_of = np.full(n_items + 1, -1, dtype=np.int64)
    label_of[catalog_ids] = np.arange(len(catalog_ids))
    return catalog_ids, label_of


def length_batches(
    lens: np.ndarray, target_tokens: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of row indices with about ``target_tokens`` real targets each.

    Rows are sorted by length (random order among equal lengths) and cut into consecutive
    batches, so a batch is cut to its longest row with almost no padding; the batch order is
    shuffled.  The loss is a mean over real targets, so each target weighs the same everywhere.
    """
    order = np.lexsort((rng.random(len(lens)), lens))
    cum = np.cumsum(lens[order])
    cuts = np.searchsorted(cum, np.arange(target_tokens, cum[-1], target_tokens), side="left") + 1
    batches = [b for b in np.split(order, np.unique(cuts)) if len(b)]
    rng.shuffle(batches)
    return batches


@dataclass(frozen=True)
class PaddedBatch:
    """One training batch: inputs and event types cut to the batch's longest row, and the real
    (non-padding) target positions with their labels, padded to a multiple of the bucket
    (padding has weight 0)."""

    inputs: np.ndarray  # (rows, width)
    events: np.ndarray  # (rows, width)
    positions: np.ndarray  # (n_padded,) flat index of each real target in (rows, width)
    labels: np.ndarray  # (n_padded,) catalog label of each target
    weights: np.ndarray  # (n_padded,) 1 for a real target, 0 for padding
    n_real: int


def pad_batch(
    inputs: np.ndarray,
    labels: np.ndarray,
    events: np.ndarray,
    lens: np.ndarray,
    idx: np.ndarray,
    bucket: int = TARGET_BUCKET,
) -> PaddedBatch:
    """The rows ``idx`` of the training windows as a :class:`PaddedBatch` (``labels`` < 0 at
    padding positions)."""
    w = int(lens[idx].max())
    flat = labels[idx, :w].ravel()
    sel = np.flatnonzero(flat >= 0)
    n_real = len(sel)
    n_pad = int(math.ceil(n_real / bucket) * bucket)
    positions = np.zeros(n_pad, dtype=np.int32)
    positions[:n_real] = sel
    lab = np.zeros(n_pad, dtype=np.int32)
    lab[:n_real] = flat[sel]
    weights = np.zeros(n_pad, dtype=np.float32)
    weights[:n_real] = 1.0
    return PaddedBatch(inputs[idx, :w], events[idx, :w], positions, lab, weights, n_real)


# --------------------------------------------------------------------------- learning rate
def anneal_factor(elapsed: float, budget: float, fraction: float) -> float:
    """Learning-rate factor: 1, then linear to 0.1 over the last ``fraction`` of the budget
    (``elapsed`` and ``budget`` in seconds, or in targets trained under a work cap)."""
    if fraction <= 0 or budget <= 0:
        return 1.0
    start = budget * (1.0 - fraction)
    if elapsed <= start:
        return 1.0
    return max(0.1, 1.0 - 0.9 * (elapsed - start) / (budget * fraction))


STOPPED_BY_THE_CLOCK = "time_budget"
"""``TrainResult.stopped`` of a training the wall-clock budget ended: its model depends on the
machine's load."""


def stopped_reproducibly(stopped: str | None) -> bool:
    """Whether a training that ended for ``stopped`` gives the same model for the same data,
    settings and seed at any machine load (not when the clock ended it, nor when unknown)."""
    return stopped is not None and stopped != STOPPED_BY_THE_CLOCK


# --------------------------------------------------------------------------- time budget
class TimeBudget:
    """The wall-clock budget of one training run, counted from when it was created.

    ``clock`` (default :func:`time.perf_counter`) is injectable so the decisions can be tested
    without waiting."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter):
        self.seconds = float(seconds)
        self._clock = clock
        self._start = clock()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def has_room_for(self, seconds: float) -> bool:
        """Whether ``seconds`` more (e.g. another epoch plus the blend search) still fit."""
        return self.elapsed() + seconds <= self.seconds

    def spent(self, keep_back: float = 0.0) -> bool:
        """Whether the budget, less ``keep_back`` seconds kept for later work, is used up."""
        return self.elapsed() > self.seconds - keep_back

    def lr_factor(self, anneal_fraction: float) -> float:
        return anneal_factor(self.elapsed(), self.seconds, anneal_fraction)


class WorkCap:
    """The work cap of one training run: how many real targets may be trained on (from
    :meth:`.config.ModelConfig.work_targets`), and how many have been. Everything it decides
    depends on the data only, never on the clock, so a run stopped by it is reproducible."""

    def __init__(self, targets: float):
        if targets <= 0:
            raise ValueError("a work cap needs a positive number of targets")
        self.targets = float(targets)
        self.done = 0

    def add(self, n_targets: int) -> None:
        self.done += int(n_targets)

    def spent(self) -> bool:
        return self.done >= self.targets

    def progress(self) -> float:
        return min(1.0, self.done / self.targets)

    def lr_factor(self, anneal_fraction: float) -> float:
        return anneal_factor(self.done, self.targets, anneal_fraction)


def blend_search_cost(config: ModelConfig) -> float:
    """The blend search after training, in validation passes: it ranks the validation split once
    per (beta, alpha > 0) pair plus once without the blend; a ranking pass costs a bit less
    than a validation pass."""
    n_alphas = len({float(a) for a in config.blend_grid} - {0.0})
    return 0.8 * (1 + len(config.blend_betas) * n_alphas)


# --------------------------------------------------------------------------- early stopping
@dataclass
class EarlyStopping:
    """Keeps the best epoch (validation NDCG@10 better by more than ``min_delta``) and its
    weights; halves the learning-rate scale (``plateau_factor``) every ``plateau_patience``
    epochs without improvement; says stop after ``patience`` epochs without one."""

    patience: int
    min_delta: float = 0.0
    plateau_patience: int = 0
    plateau_factor: float = 0.5
    best_score: float = -1.0
    best_epoch: int = 0
    best_weights: Any = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    since_best: int = 0
    lr_scale: float = 1.0

    @classmethod
    def from_config(cls, config: ModelConfig) -> EarlyStopping:
        return cls(
            patience=config.patience,
            min_delta=config.min_delta,
            plateau_patience=config.lr_plateau_patience,
            plateau_factor=config.lr_plateau_factor,
        )

    def update(self, epoch: int, metrics: dict[str, float], get_weights: Callable[[], Any]) -> bool:
        """Record an epoch's validation metrics; returns whether it is the new best."""
        if metrics["ndcg@10"] > self.best_score + self.min_delta:
            self.best_score, self.best_epoch = metrics["ndcg@10"], epoch
            self.best_weights = get_weights()
            self.best_metrics = metrics
            self.since_best = 0
            return True
        self.since_best += 1
        if self.plateau_patience > 0 and self.since_best % self.plateau_patience == 0:
            self.lr_scale *= self.plateau_factor
        return False

    def should_stop(self, epoch: int) -> bool:
        return epoch - self.best_epoch >= self.patience
