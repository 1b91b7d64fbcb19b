"""The model steps' plain logic: the training-inputs file, the model store, promotion records,
and the resources that resolve folders when a step runs (not when the code location loads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from launch_pipeline.model.data import SequenceData
from launch_pipeline.model_pipeline import (
    TrainingInputs,
    read_training_inputs,
    write_training_inputs,
)
from launch_pipeline.model_store import LocalModelStore
from launch_pipeline.promotion import PromotionDecision, recorded_decision

REPO = Path(__file__).resolve().parents[1]


def _inputs(event_types: bool = True) -> TrainingInputs:
    seqs = [np.array([1, 2, 3]), np.array([2, 2]), np.array([4, 1, 2, 3, 5])]
    events = [np.array([1, 1, 3]), np.array([1, 2]), np.array([1, 1, 1, 2, 3])]
    attrs = np.array([[0, 0], [1, 3], [1, 4], [2, 3], [2, 4], [1, 0]])
    return TrainingInputs(
        train=SequenceData(seqs, events if event_types else None, attrs, 5),
        item_ids=("a", "b", "c", "d", "é"),
        attribute_vocab={"category=x": 1, "category=y": 2, "word=ü": 3, "brand=z": 4},
        cutoff="2026-11-14T00:00:00.000000",
        eval_days=7,
    )


@pytest.mark.parametrize("event_types", [True, False])
def test_training_inputs_round_trip_exactly(tmp_path, event_types):
    inputs = _inputs(event_types)
    path = write_training_inputs(inputs, tmp_path / "in" / "training_inputs.npz")
    back = read_training_inputs(path)
    assert [p.name for p in path.parent.iterdir()] == ["training_inputs.npz"]  # no temp left
    assert back.item_ids == inputs.item_ids and back.attribute_vocab == inputs.attribute_vocab
    assert (back.cutoff, back.eval_days) == (inputs.cutoff, inputs.eval_days)
    assert (back.training_users, back.catalog_items) == (3, 5)
    assert len(back.train.sequences) == 3
    for a, b in zip(back.train.sequences, inputs.train.sequences, strict=True):
        assert a.dtype == np.int64 and np.array_equal(a, b)
    if event_types:
        for a, b in zip(back.train.event_types, inputs.train.event_types, strict=True):
            assert np.array_equal(a, b)
    else:
        assert back.train.event_types is None
    assert np.array_equal(back.train.item_attributes, inputs.train.item_attributes)
    assert back.train.n_attributes == 5


def test_missing_training_inputs_say_what_to_materialize(tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize model_training_data"):
        read_training_inputs(tmp_path / "nothing.npz")


def _store_with_versions(tmp_path, n: int) -> LocalModelStore:
    store = LocalModelStore(tmp_path / "models")
    for _ in range(n):
        store.register(lambda folder: (folder / "model.keras").write_bytes(b"m"), {})
    return store


def test_recorded_decision_reads_what_champion_model_recorded(tmp_path):
    store = _store_with_versions(tmp_path, 2)
    first, second = store.get(1), store.get(2)
    store.promote(1, note="first model")
    assert recorded_decision(store) == (second.label, None)  # not decided yet
    decision = PromotionDecision(
        second.label, first.label, first.label, False, "worse than champion", 0.1, 0.2, 30
    )
    assert decision.outcome == "rejected"
    store.set_status(2, "rejected", note="worse", decision=decision.as_record())
    before = (store.root / "registry.json").read_bytes()
    label, record = recorded_decision(store)
    assert label == second.label and record["outcome"] == "rejected"
    assert record["challenger_ndcg"] == 0.1 and record["champion_ndcg"] == 0.2
    assert (store.root / "registry.json").read_bytes() == before  # reading changes nothing
    assert store.champion() == first


def test_promotion_outcomes():
    assert PromotionDecision("m:v2", "m:v1", "m:v2", True, "not worse").outcome == "promoted"
    assert PromotionDecision("m:v2", "m:v2", "m:v2", False, "already champion").outcome == "kept"


def test_resources_resolve_folders_when_a_step_runs(tmp_path, monkeypatch):
    from launch_pipeline.defs.resources import (
        DuckDBWarehouse,
        LaunchPipelineConfig,
        LocalModelStoreResource,
    )

    data = tmp_path / "late" / "data"
    monkeypatch.setenv("LAUNCH_PIPELINE_DATA_DIR", str(data))
    monkeypatch.delenv("LAUNCH_PIPELINE_RAW_DIR", raising=False)
    monkeypatch.setenv("LAUNCH_PIPELINE_MODEL_TIME_BUDGET_S", "7")
    monkeypatch.setenv("LAUNCH_PIPELINE_MODEL_WORK_GCELLS", "2.5")
    settings = LaunchPipelineConfig().settings()
    assert settings.data_dir == data and settings.raw_dir == data / "raw"
    assert settings.model_time_budget_s == 7.0 and settings.model_work_gcells == 2.5
    assert LaunchPipelineConfig(model_work_gcells=0.0).settings().model_work_gcells == 0.0
    # a value set on the resource wins over the environment
    assert LaunchPipelineConfig(model_time_budget_s=3.0, slots=4).settings().planning.slots == 4
    assert not data.exists()  # nothing created until a connection is opened
    with DuckDBWarehouse().get_connection() as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert (data / "warehouse.duckdb").exists()
    store = LocalModelStoreResource().store(settings)
    assert store.root == data / "models" / "preference_model"


def test_loading_the_code_location_creates_nothing(tmp_path):
    """Importing ``launch_pipeline.definitions`` reads the partitions' range and nothing else: no
    folder is created and the resources are left to be resolved when a step runs."""
    data = tmp_path / "not_yet"
    env = {**os.environ, "LAUNCH_PIPELINE_DATA_DIR": str(data)}
    code = (
        "from launch_pipeline.definitions import defs\n"
        "r = defs.resources\n"
        "print(repr(r['pipeline'].data_dir), repr(r['warehouse'].database), "
        "repr(r['model_store'].models_dir))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["''", "''", "''"]
    assert not data.exists()
