"""End-to-end evaluation harness on a tiny generated S3-Rec file, plus a real-data parse check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from launch_pipeline.model.config import ModelConfig
from launch_pipeline.model.data import read_s3rec

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BEAUTY = DATASETS / "amazon_beauty"

TINY_CONFIG = {
    "dim": 16,
    "blocks": 1,
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "lr": 5e-3,
    "batch_size": 64,
    "max_epochs": 4,
    "patience": 2,
    "knn_neighbors": 10,
    "valid_batch_users": 128,
}


def write_tiny_s3rec(folder: Path, n_users: int = 150, n_items: int = 60, seed: int = 0):
    """Noisy successor pattern (i -> i + 1 mostly) and 2 attributes per item."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        i = int(rng.integers(1, n_items + 1))
        seq = []
        for _ in range(int(rng.integers(5, 12))):
            seq.append(i)
            i = i % n_items + 1 if rng.random() < 0.8 else int(rng.integers(1, n_items + 1))
        seq = list(dict.fromkeys(seq))  # S3-Rec sequences have no repeats
        lines.append(" ".join(map(str, [u, *seq])))
    seq_file = folder / "tiny.txt"
    seq_file.write_text("\n".join(lines) + "\n")
    attrs = {str(i): [i % 5 + 1, 6 + i % 3] for i in range(1, n_items + 1)}
    attr_file = folder / "tiny_item2attributes.json"
    attr_file.write_text(json.dumps(attrs))
    return seq_file, attr_file


METRIC_KEYS = {"hr@10", "ndcg@10", "hr@20", "ndcg@20"}


def test_evaluate_s3rec_end_to_end(tmp_path):
    from launch_pipeline.model.evaluation import main

    seq_file, attr_file = write_tiny_s3rec(tmp_path)
    out = tmp_path / "bench" / "eval.json"
    model_out = tmp_path / "model.keras"
    rc = main(
        [
            "--sequences", str(seq_file),
            "--attributes", str(attr_file),
            "--out", str(out),
            "--time-budget-min", "0.2",
            "--cold-time-budget-min", "0.1",
            "--seed", "3",
            "--config", json.dumps(TINY_CONFIG),
            "--model-out", str(model_out),
        ]
    )  # fmt: skip
    assert rc == 0 and model_out.exists()
    res = json.loads(out.read_text())
    required = METRIC_KEYS | {
        "valid_ndcg@10",
        "train_seconds",
        "epochs",
        "peak_rss_mb",
        "config",
        "machine",
        "baselines",
        "cold_start",
        "protocol",
    }
    assert required <= set(res)
    for k in METRIC_KEYS:
        assert 0.0 <= res[k] <= 1.0
    assert res["ndcg@10"] <= res["hr@10"]
    assert res["config"]["seed"] == 3 and res["config"]["time_budget_s"] == pytest.approx(12.0)
    assert res["config"]["dim"] == 16
    assert 1 <= res["epochs"] <= 4 and res["train_seconds"] > 0 and res["peak_rss_mb"] > 0
    assert res["machine"]["cpu_count"] >= 1 and res["machine"]["platform"]
    for name in ("popularity", "last_item_knn", "last_item_knn_tuned"):
        assert set(res["baselines"][name]) >= METRIC_KEYS, name
    cold = res["cold_start"]
    assert "protocol" in cold and cold["n_cold_items"] == 6
    assert cold["n_users_evaluated"] > 0
    for name in ("model", "attribute_popularity", "last_item_attribute_overlap"):
        assert {"hr@10", "ndcg@10"} <= set(cold[name]), name
    # the kNN blend weight is a grid point, and the one with the best validation NDCG@10
    blend = res["blend"]
    assert blend["alpha"] in ModelConfig().blend_grid and blend["beta"] in ModelConfig().blend_betas
    (chosen,) = [
        g for g in blend["grid"] if (g["alpha"], g["beta"]) == (blend["alpha"], blend["beta"])
    ]
    assert chosen["valid_ndcg@10"] == max(g["valid_ndcg@10"] for g in blend["grid"])
    assert res["dataset"]["n_items"] == 60


@pytest.mark.real_data
def test_beauty_files_parse():
    if not BEAUTY.is_dir():
        pytest.skip(f"real data not available: {BEAUTY} is absent")
    data = read_s3rec(BEAUTY / "Beauty.txt", BEAUTY / "Beauty_item2attributes.json")
    assert data.n_users == 22363
    assert data.n_items == 12101
    assert sum(len(s) for s in data.sequences) == 198502
    assert min(len(s) for s in data.sequences) >= 5
    assert data.item_attributes.shape[0] == 12102
    assert (data.item_attributes[1:] > 0).any(axis=1).all()  # every item has an attribute
