"""The pieces of the training loop on their own: batching and padding, the learning-rate
schedule, the work cap, the time budget (a fake clock, no waiting) and early stopping."""

from __future__ import annotations

import numpy as np
import pytest

from launch_pipeline.model.config import ModelConfig
from launch_pipeline.model.training_loop import (
    EarlyStopping,
    TimeBudget,
    WorkCap,
    anneal_factor,
    blend_search_cost,
    catalog_labels,
    length_batches,
    pad_batch,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_length_batches_cover_every_row_once_with_about_the_target_tokens():
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 30, size=500)
    batches = length_batches(lens, target_tokens=400, rng=rng)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(500))
    tokens = [int(lens[b].sum()) for b in batches]
    # cut at multiples of the target in cumulative tokens: every batch is within one row of it
    # (the last one, in length order, may be short)
    assert all(abs(t - 400) < lens.max() for t in tokens if t >= 400 - lens.max())
    assert sum(abs(t - 400) >= lens.max() for t in tokens) <= 1
    assert len(batches) == int(np.ceil(lens.sum() / 400))
    # rows of similar length together: a batch spans a narrow range of lengths
    spans = sorted(int(lens[b].max() - lens[b].min()) for b in batches)
    assert spans[len(spans) // 2] <= 1


def test_pad_batch_keeps_real_targets_and_pads_to_the_bucket():
    inputs = np.array([[5, 6, 7, 0], [8, 9, 0, 0], [1, 0, 0, 0]])
    labels = np.array([[2, 3, 4, -1], [5, 6, -1, -1], [7, -1, -1, -1]])
    events = np.ones_like(inputs)
    lens = np.array([3, 2, 1])
    b = pad_batch(inputs, labels, events, lens, np.array([1, 2]), bucket=4)
    assert b.inputs.tolist() == [[8, 9], [1, 0]]  # cut to the longest row of the batch
    assert b.n_real == 3 and len(b.positions) == len(b.labels) == len(b.weights) == 4
    flat = labels[[1, 2], :2].ravel()
    assert flat[b.positions[: b.n_real]].tolist() == b.labels[: b.n_real].tolist() == [5, 6, 7]
    assert b.weights.tolist() == [1.0, 1.0, 1.0, 0.0]


def test_anneal_factor_is_flat_then_linear_to_a_tenth():
    assert anneal_factor(0.0, 100.0, 0.2) == 1.0
    assert anneal_factor(80.0, 100.0, 0.2) == 1.0
    assert anneal_factor(90.0, 100.0, 0.2) == pytest.approx(0.55)
    assert anneal_factor(100.0, 100.0, 0.2) == pytest.approx(0.1)
    assert anneal_factor(500.0, 100.0, 0.2) == 0.1
    assert anneal_factor(90.0, 100.0, 0.0) == 1.0  # switched off


def test_time_budget_decisions_follow_the_clock():
    clock = FakeClock()
    budget = TimeBudget(60.0, clock=clock)
    clock.now += 40.0
    assert budget.elapsed() == 40.0
    assert budget.has_room_for(20.0) and not budget.has_room_for(20.5)
    assert not budget.spent() and budget.spent(keep_back=25.0)
    assert budget.lr_factor(0.2) == 1.0
    clock.now += 15.0  # 55 s: inside the last 20%
    assert budget.lr_factor(0.2) == pytest.approx(1.0 - 0.9 * 7.0 / 12.0)
    clock.now += 5.5
    assert budget.spent()


def test_work_cap_counts_targets_not_seconds():
    cfg = ModelConfig(work_gcells=2.0)
    assert cfg.work_targets(4_000) == pytest.approx(500_000.0)  # 2e9 cells / 4,000 classes
    assert ModelConfig(work_gcells=0.0).work_targets(4_000) is None  # no cap: the clock decides
    work = WorkCap(cfg.work_targets(4_000))
    work.add(300_000)
    assert not work.spent() and work.progress() == pytest.approx(0.6)
    assert work.lr_factor(0.2) == 1.0
    work.add(150_000)  # 90% of the work: half-way through the anneal
    assert work.lr_factor(0.2) == pytest.approx(0.55)
    work.add(50_000)
    assert work.spent() and work.progress() == 1.0
    with pytest.raises(ValueError):
        WorkCap(0.0)


def test_blend_search_cost_counts_the_ranking_passes():
    cfg = ModelConfig(blend_grid=(0.0, 1.0, 2.0), blend_betas=(0.25, 0.5))
    assert blend_search_cost(cfg) == pytest.approx(0.8 * (1 + 2 * 2))


def test_early_stopping_keeps_the_best_epoch_and_halves_on_plateaus():
    stop = EarlyStopping(patience=3, min_delta=0.01, plateau_patience=2, plateau_factor=0.5)
    weights = iter(range(100))
    assert stop.update(1, {"ndcg@10": 0.10}, lambda: next(weights))
    assert not stop.update(2, {"ndcg@10": 0.105}, lambda: next(weights))  # below min_delta
    assert stop.lr_scale == 1.0 and not stop.should_stop(2)
    assert not stop.update(3, {"ndcg@10": 0.09}, lambda: next(weights))
    assert stop.lr_scale == 0.5  # two epochs without a better one
    assert not stop.should_stop(3)
    assert not stop.update(4, {"ndcg@10": 0.10}, lambda: next(weights))
    assert stop.should_stop(4)
    assert (stop.best_epoch, stop.best_score, stop.best_weights) == (1, 0.10, 0)
    assert stop.best_metrics == {"ndcg@10": 0.10}
    assert stop.update(5, {"ndcg@10": 0.2}, lambda: next(weights)) and stop.since_best == 0


def test_catalog_labels_number_the_items_that_exist_at_training_time():
    ids, label_of = catalog_labels(5)
    assert ids.tolist() == [1, 2, 3, 4, 5] and label_of.tolist() == [-1, 0, 1, 2, 3, 4]
    ids, label_of = catalog_labels(5, np.array([4, 2, 2]))
    assert ids.tolist() == [2, 4]
    assert label_of.tolist() == [-1, -1, 0, -1, 1, -1]  # cold items and padding: no class
