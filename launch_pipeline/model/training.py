"""Training, saving, loading and scoring of :class:`~.transformer.SequentialRecommender`.

Training (:func:`train_model`): full softmax cross-entropy over the catalogue at every real
(non-padding) position, batches cut to their longest sequence, a hand-written softmax-CE gradient
(softmax computed once, fused by XLA; bfloat16 matmuls where the CPU has AMX/AVX512-BF16),
id dropout for cold start, early stopping on validation NDCG@10, best weights restored. Training
stops on work (``ModelConfig.work_gcells``: a number of real targets trained, the same rule for
every catalogue) or, without a work cap, on a wall-clock budget; with a work cap the budget is
only a safety stop, and ``TrainResult.stopped`` says which one ended the run.  Afterwards the kNN blend (``logit + alpha * sim(last item, candidate)``) is
tuned on the validation split only and stored in the model.

Scoring: :func:`user_vectors`, :func:`item_vectors`, :func:`score_items` (plain logits: what a
brand-new item gets, since it has no co-occurrence neighbours) and :func:`score_users` (logits +
the kNN blend, for warm catalogue items).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import baselines as bl
from . import metrics as mt
from .config import ModelConfig
from .data import EvalSplit, SequenceData, holdout_last
from .training_loop import (
    STOPPED_BY_THE_CLOCK,
    EarlyStopping,
    TimeBudget,
    WorkCap,
    blend_search_cost,
    catalog_labels,
    length_batches,
    pad_batch,
    stopped_reproducibly,
)

_INFER_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class TrainResult:
    model: Any  # SequentialRecommender
    history: list[dict[str, float]]  # per epoch: epoch, loss, valid_ndcg@10, valid_hr@10, seconds
    best_epoch: int
    epochs: int
    train_seconds: float
    stopped: str  # "patience" | "work_cap" | "max_epochs" | "time_budget" (load-dependent)
    valid_metrics: dict[str, float] = field(default_factory=dict)  # best epoch, model only
    blend: dict[str, Any] = field(default_factory=dict)  # alpha, beta, valid metrics with blend
    config: dict[str, Any] = field(default_factory=dict)
    targets_trained: int = 0  # real targets trained on, all epochs together
    targets_per_epoch: int = 0
    work_targets: float | None = None  # the work cap in targets (None: no work cap)

    @property
    def epochs_trained(self) -> float:
        """Epochs of work done (the last one possibly partial)."""
        return self.targets_trained / max(self.targets_per_epoch, 1)

    @property
    def reproducible(self) -> bool:
        """Whether the run ended on something other than the clock, so that the same data,
        settings and seed give the same model on another machine load."""
        return stopped_reproducibly(self.stopped)

    def summary(self) -> dict[str, Any]:
        """What a report needs to tell how training ended (JSON-ready)."""
        return {
            "epochs": self.epochs,
            "epochs_trained": round(self.epochs_trained, 3),
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "reproducible": self.reproducible,
            "targets_trained": self.targets_trained,
            "targets_per_epoch": self.targets_per_epoch,
            "work_cap_targets": None if self.work_targets is None else round(self.work_targets),
            "work_cap_epochs": None
            if self.work_targets is None
            else round(self.work_targets / max(self.targets_per_epoch, 1), 3),
            "time_budget_s": self.config.get("time_budget_s"),
            "train_seconds": round(self.train_seconds, 1),
        }


# --------------------------------------------------------------------------- array helpers
def _truncate(
    seqs: Sequence[np.ndarray], ev: Sequence[np.ndarray] | None, max_len: int, n_items: int
):
    """Drop ids the model does not know (> n_items or < 1), keep the last ``max_len`` items."""
    out_s, out_e = [], []
    for i, s in enumerate(seqs):
        s = np.asarray(s, dtype=np.int64)
        ok = (s >= 1) & (s <= n_items)
        s = s[ok][-max_len:]
        out_s.append(s)
        if ev is not None:
            out_e.append(np.asarray(ev[i], dtype=np.int64)[ok][-max_len:])
    return out_s, (out_e if ev is not None else None)


def _pad_right(seqs: Sequence[np.ndarray], width: int | None = None) -> np.ndarray:
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    w = int(lens.max(initial=1)) if width is None else width
    w = max(w, 1)
    out = np.zeros((len(seqs), w), dtype=np.int32)
    if lens.sum():
        rows = np.repeat(np.arange(len(seqs)), lens)
        cols = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        out[rows, cols] = np.concatenate([np.asarray(s) for s in seqs if len(s)])
    return out


def training_windows(
    sequences: Sequence[np.ndarray], event_types: Sequence[np.ndarray] | None, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded ``(inputs, targets, events, lengths)`` training rows.

    A sequence ``s`` gives input ``s[:-1]`` and target ``s[1:]``; sequences longer than
    ``max_len + 1`` are cut into consecutive windows from the end so that every transition is
    trained on once per epoch.
    """
    xs, ys, es = [], [], []
    for i, s in enumerate(sequences):
        n = len(s) - 1
        if n < 1:
            continue
        e = event_types[i] if event_types is not None else None
        for end in range(n, 0, -max_len):
            start = max(0, end - max_len)
            xs.append(s[start:end])
            ys.append(s[start + 1 : end + 1])
            es.append(e[start:end] if e is not None else np.zeros(end - start, dtype=np.int64))
    lens = np.fromiter((len(x) for x in xs), dtype=np.int64, count=len(xs))
    return _pad_right(xs, max_len), _pad_right(ys, max_len), _pad_right(es, max_len), lens


# --------------------------------------------------------------------------- model building
def _resolve_dtype(name: str) -> str:
    from ._tf import cpu_has_fast_bf16

    if name == "auto":
        return "bfloat16" if cpu_has_fast_bf16() else "float32"
    if name not in ("float32", "bfloat16"):
        raise ValueError("logits_dtype must be 'auto', 'float32' or 'bfloat16'")
    return name


def build_model(data: SequenceData, config: ModelConfig):
    """A fresh, untrained model for ``data``'s catalogue (attribute table copied in)."""
    from .transformer import SequentialRecommender

    n_events = max(int(config.n_event_types), data.n_event_types)
    model = SequentialRecommender(
        n_items=data.n_items,
        n_attributes=data.n_attributes,
        n_slots=data.item_attributes.shape[1],
        max_len=config.max_len,
        dim=config.dim,
        blocks=config.blocks,
        heads=config.heads,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        n_event_types=n_events,
        use_attributes=config.use_attributes,
        knn_neighbors=config.knn_neighbors,
        train_config=config.to_dict(),
        attribute_names=data.attribute_names,
    )
    model.item_encoder.item_attributes.assign(data.item_attributes.astype(np.int32))
    return model


def _make_train_step(model, optimizer, catalog_ids: np.ndarray, logits_dtype: str):
    from ._tf import import_tf

    tf, _ = import_tf()
    dt = tf.bfloat16 if logits_dtype == "bfloat16" else tf.float32
    cat_ids = tf.constant(catalog_ids, dtype=tf.int32)
    dim = model.dim
    var_list = model.trainable_variables
    pool = model.item_encoder.attribute_pool(model.item_encoder.item_attributes)

    @tf.function(jit_compile=True, autograph=False)
    def softmax_grad(logits, labels, weights):
        z = tf.cast(logits, tf.float32)
        m = tf.reduce_max(z, axis=1, keepdims=True)
        e = tf.exp(z - m)
        s = tf.reduce_sum(e, axis=1, keepdims=True)
        zt = tf.gather(z, labels, batch_dims=1)
        wsum = tf.maximum(tf.reduce_sum(weights), 1.0)
        loss = tf.reduce_sum(weights * (tf.math.log(s[:, 0]) + m[:, 0] - zt)) / wsum
        w = (weights / wsum)[:, None]
        g = w * (e / s - tf.one_hot(labels, tf.shape(z)[1], dtype=tf.float32))
        return loss, tf.cast(g, dt)

    @tf.custom_gradient
    def softmax_ce(h, emb, labels, weights):
        hb = tf.cast(h, dt)
        eb = tf.cast(emb, dt)
        logits = tf.matmul(hb, eb, transpose_b=True)
        loss, g = softmax_grad(logits, labels, weights)

        def grad(dy):
            dh = tf.cast(tf.matmul(g, eb), tf.float32) * dy
            demb = tf.cast(tf.matmul(g, hb, transpose_a=True), tf.float32) * dy
            return dh, demb, None, None

        return loss, grad

    spec = [
        tf.TensorSpec((None, None), tf.int32),  # items
        tf.TensorSpec((None, None), tf.int32),  # events
        tf.TensorSpec((None,), tf.int32),  # flat positions of real targets (padded)
        tf.TensorSpec((None,), tf.int32),  # labels: index into catalog_ids
        tf.TensorSpec((None,), tf.float32),  # weights (0 for padding rows)
        tf.TensorSpec((None,), tf.float32),  # id keep mask over the catalogue
    ]

    @tf.function(input_signature=spec, autograph=False)
    def step(items, events, sel, labels, weights, id_keep):
        with tf.GradientTape() as tape:
            cat = model.item_encoder.catalog(id_keep, pool)
            x = tf.gather(cat, items)
            h = model.encode_vectors(x, items, events, training=True)
            hr = tf.gather(tf.reshape(h, (-1, dim)), sel)
            emb = tf.gather(cat, cat_ids)
            loss = softmax_ce(hr, emb, labels, weights)
        grads = tape.gradient(loss, var_list)
        optimizer.apply_gradients(zip(grads, var_list, strict=True))
        return loss

    return step


# --------------------------------------------------------------------------- scoring
def _infer_fn(model):
    fn = _INFER_FNS.get(model)
    if fn is None:
        from ._tf import import_tf

        tf, _ = import_tf()

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, None), tf.int32),
                tf.TensorSpec((None, None), tf.int32),
                tf.TensorSpec((None,), tf.int32),
            ],
            autograph=False,
        )
        def fn(items, events, last):
            h = model({"items": items, "events": events}, training=False)
            return tf.gather(h, last, batch_dims=1)

        _INFER_FNS[model] = fn
    return fn


def user_vectors(
    model,
    sequences: Sequence[np.ndarray],
    event_types: Sequence[np.ndarray] | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """``(n_users, dim)`` float32 user vectors (hidden state after each user's last item).

    Only the last ``max_len`` known items are used (ids outside ``1..n_items`` are dropped);
    a user with no known item gets the zero vector (all logits 0).
    """
    seqs, ev = _truncate(sequences, event_types, model.max_len, model.n_items)
    n = len(seqs)
    out = np.zeros((n, model.dim), dtype=np.float32)
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    order = np.argsort(lens, kind="stable")
    order = order[lens[order] > 0]
    fn = _infer_fn(model)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        items = _pad_right([seqs[i] for i in idx])
        events = (
            _pad_right([ev[i] for i in idx], items.shape[1])
            if ev is not None
            else np.zeros_like(items)
        )
        out[idx] = fn(items, events, (lens[idx] - 1).astype(np.int32)).numpy()
    return out


def item_vectors(
    model, item_attributes: np.ndarray, item_ids: np.ndarray | None = None
) -> np.ndarray:
    """``(n, dim)`` float32 vectors of ``n`` items from their attribute rows (``(n, slots)``).

    ``item_ids`` (``(n,)``) adds the trained id embedding; an id of 0 or outside the trained
    catalogue, or ``item_ids=None``, gives the attribute-only vector of a brand-new item.
    Attribute ids the model never saw are ignored.
    """
    attrs = np.atleast_2d(np.asarray(item_attributes, dtype=np.int32))
    ids = None if item_ids is None else np.asarray(item_ids, dtype=np.int32).reshape(-1)
    if ids is not None and len(ids) != attrs.shape[0]:
        raise ValueError("item_ids and item_attributes must have the same number of rows")
    return np.array(model.item_encoder.vectors(attrs, ids), dtype=np.float32)


def attribute_rows(model, item_attributes: Sequence[Iterable[Any]]) -> np.ndarray:
    """Encode new items' attribute *names* with the vocabulary stored in ``model``.

    ``item_attributes[k]`` lists item ``k``'s attributes as named in training (compared as
    strings, e.g. ``"brand=Acme"`` or the S3-Rec attribute id ``"17"``); names the model never
    saw are dropped.  Returns the ``(n, slots)`` int matrix :func:`item_vectors` takes.
    """
    if model.attribute_names is None:
        raise ValueError("this model was trained without attribute_names")
    vocab = {name: i for i, name in enumerate(model.attribute_names) if i > 0}
    rows = [
        list(dict.fromkeys(vocab[str(a)] for a in attrs if str(a) in vocab))
        for attrs in item_attributes
    ]
    out = np.zeros((len(rows), max([len(r) for r in rows] + [1])), dtype=np.int64)
    for k, r in enumerate(rows):
        out[k, : len(r)] = r
    return out


def catalog_vectors(model) -> np.ndarray:
    """``(n_items + 1, dim)`` vectors of the trained catalogue (row 0 = zeros)."""
    return np.array(model.item_encoder.catalog(), dtype=np.float32)


def score_items(user_vecs: np.ndarray, item_vecs: np.ndarray) -> np.ndarray:
    """Logits ``(n_users, n_items)``; a softmax over a row gives next-item probabilities."""
    return np.asarray(user_vecs, dtype=np.float32) @ np.asarray(item_vecs, dtype=np.float32).T


def item_probabilities(
    model, user_vecs: np.ndarray, item_vecs: np.ndarray, batch_size: int = 4096
) -> np.ndarray:
    """``P(next item = new item j | user)`` for items outside the trained catalogue.

    The softmax runs over the trained catalogue plus the given items, so the numbers are
    comparable across users (raw logits are not: a user vector's norm scales all its logits).
    This is what ranks *users* for a brand-new product.  Returns ``(n_users, n_new_items)``.
    """
    uv = np.asarray(user_vecs, dtype=np.float32)
    new = np.asarray(item_vecs, dtype=np.float32)
    cat = catalog_vectors(model)[1:]
    out = np.zeros((len(uv), len(new)), dtype=np.float64)
    for start in range(0, len(uv), batch_size):
        u = uv[start : start + batch_size]
        z = np.concatenate([u @ cat.T, u @ new.T], axis=1).astype(np.float64)
        m = z.max(axis=1, keepdims=True)
        lse = m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        out[start : start + batch_size] = np.exp(z[:, cat.shape[0] :] - lse)
    return out


def blend_state(model) -> dict[str, Any]:
    b = model.blend
    return {
        "alpha": float(np.asarray(b.alpha)),
        "beta": float(np.asarray(b.beta)),
        "neighbors": int(b.k),
    }


def item_neighbors(
    sequences: Sequence[np.ndarray], n_items: int, k: int, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` co-occurrence neighbours (see :func:`.baselines.item_similarity`)."""
    return bl.top_k_neighbors(bl.item_similarity(sequences, n_items, beta=beta), k)


def set_item_neighbors(
    model, sequences: Sequence[np.ndarray], beta: float | None = None, alpha: float | None = None
) -> None:
    """(Re)build the kNN part of the blend from ``sequences`` (no retraining of the network).

    Call it with every sequence the model may know about at scoring time (e.g. the newest
    interaction logs); ``beta``/``alpha`` default to the values chosen on validation.
    """
    b = model.blend
    beta = float(np.asarray(b.beta)) if beta is None else float(beta)
    ids, sims = item_neighbors(sequences, model.n_items, b.k, beta)
    b.neighbor_ids.assign(ids.astype(np.int32))
    b.neighbor_sims.assign(sims.astype(np.float32))
    b.beta.assign(beta)
    if alpha is not None:
        b.alpha.assign(float(alpha))


def blend_scores(model, logits: np.ndarray, last_items: np.ndarray) -> np.ndarray:
    """``logits + alpha * sim(last item, item)`` for catalogue-wide logits ``(n, n_items + 1)``."""
    b = model.blend
    alpha = float(np.asarray(b.alpha))
    if alpha == 0.0:
        return logits
    nbr = bl.neighbor_scores(
        np.asarray(b.neighbor_ids), np.asarray(b.neighbor_sims), last_items, logits.shape[1]
    )
    return logits + alpha * nbr


def score_users(
    model,
    sequences: Sequence[np.ndarray],
    event_types: Sequence[np.ndarray] | None = None,
    item_vecs: np.ndarray | None = None,
) -> np.ndarray:
    """Final scores ``(n_users, n_items + 1)`` over the trained catalogue, kNN blend included.

    Column 0 is padding (ignore it).  This is the path the evaluation ranks with.
    """
    uv = user_vectors(model, sequences, event_types)
    iv = catalog_vectors(model) if item_vecs is None else item_vecs
    last = np.array(
        [
            (
                s[(s >= 1) & (s <= model.n_items)][-1]
                if np.any((s >= 1) & (s <= model.n_items))
                else 0
            )
            for s in (np.asarray(x, dtype=np.int64) for x in sequences)
        ],
        dtype=np.int64,
    )
    return blend_scores(model, score_items(uv, iv), last)


def evaluate_split(
    model,
    split: EvalSplit,
    ks: Sequence[int] = (10, 20),
    blend: bool = True,
    batch_size: int = 2048,
    item_vecs: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Metrics and ranks of ``split`` (full ranking or among ``split.candidates``)."""
    uv = user_vectors(model, split.inputs, split.input_event_types)
    iv = catalog_vectors(model) if item_vecs is None else item_vecs
    last = split.last_items()

    def score(idx: np.ndarray) -> np.ndarray:
        s = score_items(uv[idx], iv)
        return blend_scores(model, s, last[idx]) if blend else s

    ranks = mt.rank_split(score, split.inputs, split.targets, split.candidates, batch_size)
    return mt.hit_rate_ndcg(ranks, ks), ranks


def _tune_blend(
    model,
    train_sequences: Sequence[np.ndarray],
    valid: EvalSplit,
    config: ModelConfig,
) -> dict[str, Any]:
    """Pick ``(beta, alpha)`` on validation NDCG@10; alpha = 0 (no blend) is always a candidate."""
    uv = user_vectors(model, valid.inputs, valid.input_event_types)
    iv = catalog_vectors(model)
    last = valid.last_items()
    k = model.blend.k
    alphas = sorted({0.0, *map(float, config.blend_grid)})
    betas = list(config.blend_betas)
    nbrs = {b: item_neighbors(train_sequences, model.n_items, k, b) for b in betas}
    ranks = {(b, a): np.zeros(len(valid), dtype=np.int64) for b in betas for a in alphas}
    bs = config.valid_batch_users
    for start in range(0, len(valid), bs):
        idx = np.arange(start, min(len(valid), start + bs))
        logits = score_items(uv[idx], iv)
        excl = mt.exclusion_mask(len(idx), logits.shape[1], [valid.inputs[i] for i in idx])
        for b in betas:
            knn = bl.neighbor_scores(nbrs[b][0], nbrs[b][1], last[idx], logits.shape[1])
            for a in alphas:
                if a == 0.0 and b != betas[0]:
                    ranks[(b, a)][idx] = ranks[(betas[0], a)][idx]
                    continue
                ranks[(b, a)][idx] = mt.rank_of_targets(
                    logits + a * knn if a else logits,
                    valid.targets[idx],
                    excl,
                    valid.candidates,
                )
    table = {key: mt.hit_rate_ndcg(r) for key, r in ranks.items()}
    best = max(table, key=lambda key: (table[key]["ndcg@10"], -key[1]))
    b, a = best
    model.blend.neighbor_ids.assign(nbrs[b][0].astype(np.int32))
    model.blend.neighbor_sims.assign(nbrs[b][1].astype(np.float32))
    model.blend.alpha.assign(a)
    model.blend.beta.assign(b)
    return {
        "alpha": a,
        "beta": b,
        "valid_with_blend": table[best],
        "valid_without_blend": table[(betas[0], 0.0)],
        "grid": [
            {"beta": kb, "alpha": ka, "valid_ndcg@10": round(v["ndcg@10"], 6)}
            for (kb, ka), v in sorted(table.items())
        ],
    }


# --------------------------------------------------------------------------- training
def _make_optimizer(keras, model, config: ModelConfig):
    """Adam (AdamW with ``weight_decay``), built for the model's variables."""
    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(
            learning_rate=config.lr, weight_decay=config.weight_decay
        )
    else:
        optimizer = keras.optimizers.Adam(learning_rate=config.lr)
    optimizer.build(model.trainable_variables)
    return optimizer


def _train_epoch(
    step,
    optimizer,
    windows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    target_tokens: int,
    rng: np.random.Generator,
    n_items: int,
    config: ModelConfig,
    budget: TimeBudget,
    lr_scale: float,
    keep_back: float,
    work: WorkCap | None = None,
) -> tuple[float, int, int, str | None]:
    """One pass over the training windows ``(inputs, labels, events, lengths)`` in length
    batches; stops early when the work cap is reached or the time budget less ``keep_back`` is
    spent. Returns the mean loss per real target, the steps and real targets trained and why
    the epoch was cut short (``"work_cap"``, ``"time_budget"`` or ``None``). The learning-rate anneal follows
    the work cap where there is one, else the clock."""
    inputs, labels, events, lens = windows
    losses, weights_n, steps = 0.0, 0, 0
    for idx in length_batches(lens, target_tokens, rng):
        b = pad_batch(inputs, labels, events, lens, idx)
        keep = (rng.random(n_items + 1) >= config.id_dropout).astype(np.float32)
        schedule = work if work is not None else budget
        optimizer.learning_rate.assign(
            config.lr * lr_scale * schedule.lr_factor(config.lr_anneal_fraction)
        )
        loss = step(b.inputs, b.events, b.positions, b.labels, b.weights, keep)
        losses += float(loss) * b.n_real
        weights_n += b.n_real
        steps += 1
        if work is not None:
            work.add(b.n_real)
            if work.spent():
                return losses / max(weights_n, 1), steps, weights_n, "work_cap"
        if budget.spent(keep_back=keep_back):
            # validate what we have
            return losses / max(weights_n, 1), steps, weights_n, STOPPED_BY_THE_CLOCK
    return losses / max(weights_n, 1), steps, weights_n, None


def train_model(
    data: SequenceData,
    config: ModelConfig | None = None,
    train_inputs: SequenceData | None = None,
    valid: EvalSplit | None = None,
    *,
    catalog_items: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a :class:`~.transformer.SequentialRecommender` on ``data``'s catalogue.

    ``train_inputs``: the training sequences (e.g. ``leave_one_out(data)[0]``); ``valid``: the
    split for early stopping and the blend weight.  With neither, the last item of every user
    is held out for validation and the rest trained on (:func:`.data.holdout_last`).  With
    ``train_inputs`` but no ``valid``, training runs ``max_epochs`` (or the time budget) without
    early stopping and without a blend.

    ``catalog_items``: the item ids that exist at training time (softmax candidates and validation
    candidates); default all ``1..n_items``.  Items outside it are never trained (cold items).
    """
    from ._tf import import_tf

    tf, keras = import_tf()
    config = config or ModelConfig()
    say = log or (lambda _msg: None)
    budget = TimeBudget(config.time_budget_s)
    if train_inputs is None:
        if valid is not None:
            raise ValueError("valid without train_inputs: pass both or neither")
        train_inputs, valid = holdout_last(data)
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    catalog_ids, label_of = catalog_labels(data.n_items, catalog_items)
    valid_candidates = None if catalog_items is None else catalog_ids
    if valid is not None and valid_candidates is not None:
        valid = EvalSplit(
            valid.users, valid.inputs, valid.input_event_types, valid.targets, valid_candidates
        )

    x_all, y_all, e_all, lens = training_windows(
        train_inputs.sequences, train_inputs.event_types, config.max_len
    )
    y_lab = np.where(y_all > 0, label_of[y_all], -1)
    if (y_lab[y_all > 0] < 0).any():
        raise ValueError("training targets outside catalog_items")
    if len(x_all) == 0:
        raise ValueError("no training sequence has two or more items")

    model = build_model(data, config)
    optimizer = _make_optimizer(keras, model, config)
    logits_dtype = _resolve_dtype(config.logits_dtype)
    step = _make_train_step(model, optimizer, catalog_ids, logits_dtype)
    say(
        f"train rows={len(x_all)} targets={int((y_all > 0).sum())} items={data.n_items} "
        f"catalog={len(catalog_ids)} logits_dtype={logits_dtype}"
    )

    # batches hold about batch_size * (mean row length) targets, rows of similar length together
    target_tokens = max(1, int(round(config.batch_size * float(lens.mean()))))
    targets_per_epoch = int((y_all > 0).sum())
    cap = config.work_targets(len(catalog_ids))
    work = WorkCap(cap) if cap is not None else None
    if work is not None:
        say(
            f"work cap {config.work_gcells:g} Gcells = {cap:,.0f} targets = "
            f"{cap / targets_per_epoch:.2f} epochs (time budget {config.time_budget_s:.0f}s "
            "as a safety stop)"
        )
    history: list[dict[str, float]] = []
    stopper = EarlyStopping.from_config(config)
    stopped = "max_epochs"
    epoch_secs: list[float] = []
    valid_secs = 0.0
    blend_cost = blend_search_cost(config)
    for epoch in range(1, config.max_epochs + 1):
        # stop when another epoch (plus the blend search) would not fit into the budget
        reserve = blend_cost * valid_secs if (config.knn_blend and valid is not None) else 0.0
        if epoch > 1 and not budget.has_room_for(max(epoch_secs[-3:]) + reserve):
            stopped = STOPPED_BY_THE_CLOCK
            break
        te = time.perf_counter()
        loss, steps, n_targets, cut = _train_epoch(
            step, optimizer, (x_all, y_lab, e_all, lens), target_tokens, rng, data.n_items,
            config, budget, stopper.lr_scale, keep_back=reserve + valid_secs, work=work,
        )  # fmt: skip
        rec: dict[str, float] = {
            "epoch": epoch,
            "loss": loss,
            "steps": steps,
            "targets": n_targets,
            "partial": float(cut is not None),
        }
        if valid is not None:
            tv = time.perf_counter()
            m, _ = evaluate_split(
                model, valid, ks=(10,), blend=False, batch_size=config.valid_batch_users
            )
            valid_secs = time.perf_counter() - tv
            rec["valid_ndcg@10"] = m["ndcg@10"]
            rec["valid_hr@10"] = m["hr@10"]
            stopper.update(epoch, m, model.get_weights)
            rec["lr"] = float(np.asarray(optimizer.learning_rate))
        epoch_secs.append(time.perf_counter() - te)
        rec["seconds"] = epoch_secs[-1]
        history.append(rec)
        say(
            f"epoch {epoch} loss {rec['loss']:.4f} "
            + (
                f"valid ndcg@10 {rec.get('valid_ndcg@10', float('nan')):.5f} "
                if valid is not None
                else ""
            )
            + f"({rec['seconds']:.1f}s, total {budget.elapsed():.0f}s)"
        )
        if valid is not None and stopper.should_stop(epoch):
            stopped = "patience"
            break
        if cut is not None:
            stopped = cut
            break
        if budget.spent():
            stopped = STOPPED_BY_THE_CLOCK
            break

    if stopper.best_weights is not None:
        model.set_weights(stopper.best_weights)
    best_metrics = stopper.best_metrics
    best_epoch = stopper.best_epoch if valid is not None else len(history)
    blend_info: dict[str, Any] = {"alpha": 0.0, "beta": float(np.asarray(model.blend.beta))}
    if config.knn_blend and valid is not None:
        blend_info = _tune_blend(model, train_inputs.sequences, valid, config)
        say(
            f"blend alpha={blend_info['alpha']} beta={blend_info['beta']} "
            f"valid ndcg@10 {blend_info['valid_with_blend']['ndcg@10']:.5f}"
        )
    train_seconds = budget.elapsed()
    return TrainResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        epochs=len(history),
        train_seconds=train_seconds,
        stopped=stopped,
        valid_metrics=best_metrics,
        blend=blend_info,
        config=config.to_dict(),
        targets_trained=int(sum(rec["targets"] for rec in history)),
        targets_per_epoch=targets_per_epoch,
        work_targets=cap,
    )


# --------------------------------------------------------------------------- persistence
def save_model(model, path: str | os.PathLike) -> Path:
    """Save to ``path`` (a ``.keras`` file) atomically: temp file in the same folder + os.replace."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError("the model file name must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{time.monotonic_ns()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_model(path: str | os.PathLike):
    """Load a model saved by :func:`save_model` with ``safe_mode=True`` (no lambdas)."""
    from ._tf import import_tf

    _, keras = import_tf()
    from . import transformer  # noqa: F401  (registers the custom classes)

    return keras.models.load_model(Path(path), safe_mode=True, compile=False)
