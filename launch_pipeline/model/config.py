"""Hyper-parameters of the sequential recommender (pure Python, no TensorFlow import)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """Everything that defines a training run of :func:`launch_pipeline.model.train_model`.

    Defaults are the ones used for the benchmark in ``benchmarks/beauty_eval.md``; they were chosen
    on *validation* NDCG@10 and are meant to transfer to other catalogues without retuning
    (early stopping and the kNN blend weight are picked on each data set's own validation split).
    """

    # architecture
    max_len: int = 50  # most recent items a user vector looks at
    dim: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.5  # embedding / residual / feed-forward dropout
    attention_dropout: float = 0.2
    use_attributes: bool = True  # item vector = id embedding + mean of its attribute embeddings
    n_event_types: int = 0  # >0: an embedding per event type id (1..n) is added to the input
    # cold start: probability, per catalogue item and training step, that the item's id part is
    # dropped (item vector = attributes only), so attribute-only vectors of new items are usable
    id_dropout: float = 0.1
    # optimisation
    lr: float = 2e-3
    # learning-rate schedule: halve the rate after ``lr_plateau_patience`` epochs without a better
    # validation NDCG@10 (0 = never), and decay it linearly to 10% over the last
    # ``lr_anneal_fraction`` of the work cap (``work_gcells``), or of the time budget when there
    # is none (0 = never), so a run that is stopped by the cap still ends annealed
    lr_plateau_patience: int = 3
    lr_plateau_factor: float = 0.5
    lr_anneal_fraction: float = 0.2
    weight_decay: float = 0.0  # AdamW decoupled weight decay (0 = plain Adam)
    batch_size: int = 128  # users (training windows) per step
    max_epochs: int = 200
    patience: int = 8  # epochs without a better validation NDCG@10 before stopping
    time_budget_s: float = 1200.0  # wall clock for the whole training loop incl. validation
    # work cap (0 = none): training stops after ``work_gcells`` billion softmax cells (real
    # targets trained x classes of the catalogue softmax), i.e. after
    # ``work_gcells * 1e9 / (targets x catalogue)`` epochs, the last one possibly partial.
    # Unlike the time budget it does not depend on the machine's load: with a work cap the
    # learning-rate anneal follows the work done, and the time budget is only a safety stop
    # (a run stopped by it says ``stopped="time_budget"``: not reproducible).
    work_gcells: float = 0.0
    min_delta: float = 0.0
    seed: int = 42
    # numerics: "auto" = bfloat16 matmuls for the catalogue softmax when the CPU has AMX/AVX512-BF16
    # (about 1.6x faster here), "float32" otherwise.  Inference always runs in float32.
    logits_dtype: str = "auto"
    # kNN blend: score = model logit + alpha * cosine(last item, candidate); alpha picked on the
    # validation split from ``blend_grid`` (0 included, so the blend can only be switched off)
    knn_blend: bool = True
    knn_neighbors: int = 100  # neighbours per item kept inside the saved model
    blend_grid: tuple[float, ...] = field(
        default_factory=lambda: (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    )
    # similarity exponent of the kNN lists (0.5 = cosine, smaller favours popular neighbours)
    blend_betas: tuple[float, ...] = (0.25, 0.5)
    valid_batch_users: int = 2048

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["blend_grid"] = list(self.blend_grid)
        d["blend_betas"] = list(self.blend_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ModelConfig:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}")
        for key in ("blend_grid", "blend_betas"):
            if key in d:
                d[key] = tuple(float(x) for x in d[key])
        return cls(**d)

    def work_targets(self, n_classes: int) -> float | None:
        """Real targets to train on under the work cap (``None``: no work cap)."""
        if self.work_gcells <= 0:
            return None
        return self.work_gcells * 1e9 / max(int(n_classes), 1)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)
