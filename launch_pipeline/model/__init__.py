"""Sequential recommender for the launch pipeline (pure Python + Keras 3 / TensorFlow; no Dagster).

Cheap to import: config, data, metrics and baselines need only numpy/scipy.  The Keras parts
(:func:`train_model`, :func:`save_model`, :func:`load_model`, :func:`user_vectors`,
:func:`item_vectors`, :func:`score_items`, :func:`score_users`, :func:`evaluate_s3rec`, ...) are
loaded on first access, which imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import baselines, metrics
from .config import ModelConfig
from .data import (
    EvalSplit,
    SequenceData,
    attributes_matrix,
    cold_start_split,
    holdout_last,
    leave_one_out,
    read_s3rec,
)
from .metrics import hit_rate_ndcg, rank_of_targets

_LAZY = {
    "TrainResult": "training",
    "train_model": "training",
    "save_model": "training",
    "load_model": "training",
    "user_vectors": "training",
    "item_vectors": "training",
    "catalog_vectors": "training",
    "score_items": "training",
    "score_users": "training",
    "item_probabilities": "training",
    "attribute_rows": "training",
    "set_item_neighbors": "training",
    "blend_scores": "training",
    "evaluate_split": "training",
    "evaluate_s3rec": "evaluation",
}

__all__ = [
    "EvalSplit",
    "ModelConfig",
    "SequenceData",
    "attributes_matrix",
    "baselines",
    "cold_start_split",
    "hit_rate_ndcg",
    "holdout_last",
    "leave_one_out",
    "metrics",
    "rank_of_targets",
    "read_s3rec",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
