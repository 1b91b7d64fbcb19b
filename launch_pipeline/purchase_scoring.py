"""From the model to r_ij: the probability that user ``i`` buys candidate ``j`` within the horizon,

    r_ij = 1 - exp(-n_i * p_ij * c_j)

with ``n_i`` the user's expected number of interactions over the horizon (their observed rate),
``p_ij`` the model's softmax probability that the next interaction is with ``j`` (over the
catalog and all candidates, so a candidate competes with what is on sale) and ``c_j`` the
purchase share of interactions in ``j``'s category (:func:`purchase_probabilities`, streamed in
float32 batches).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from launch_pipeline.calibration import PurchaseCalibration
from launch_pipeline.shop_data import PURCHASE, ShopData


def interaction_rates(
    shop: ShopData, horizon_days: int, min_window_days: float = 7.0
) -> np.ndarray:
    """Expected interactions (steps) of each user over the horizon, from their observed rate."""
    f = shop.flat_sequences()
    as_of = np.datetime64(shop.as_of, "us")
    window = np.maximum((as_of - f.first_ts()) / np.timedelta64(1, "D"), min_window_days)
    return f.lengths / window * horizon_days


def category_purchase_share(shop: ShopData) -> dict[str, float]:
    """Purchases per interaction step, by category (and ``"*"`` overall)."""
    f = shop.flat_sequences()
    cats = shop.item_category[f.items]
    df = pd.DataFrame({"category": cats, "purchase": f.events == PURCHASE})
    share = df.groupby("category")["purchase"].mean().to_dict()
    share["*"] = float(df["purchase"].mean()) if len(df) else 0.0
    return share


def _softmax_parts(model, shop: ShopData):
    from launch_pipeline.model.training import catalog_vectors, item_vectors

    cat_vecs = catalog_vectors(model)[1:]
    cand_vecs = (
        item_vectors(model, shop.candidate_attributes, None)
        if len(shop.candidates)
        else np.zeros((0, cat_vecs.shape[1]), dtype=np.float32)
    )
    return np.vstack([cat_vecs, cand_vecs]).astype(np.float32)


def next_probabilities(
    model,
    shop: ShopData,
    sequences: list[np.ndarray],
    event_types: list[np.ndarray],
    item_vecs: np.ndarray,
    included: bool,
    batch_size: int = 4096,
) -> np.ndarray:
    """``p_ij``: probability that user ``i``'s next interaction is with item ``j`` (given by its
    vector), softmax over the catalog and all candidates (``included``: the scored items are the
    candidates), plus the scored item itself when it is not among them. ``(n_users, n_items)``."""
    from launch_pipeline.model.training import user_vectors

    all_vecs = _softmax_parts(model, shop)
    n_users = len(sequences)
    out = np.zeros((n_users, len(item_vecs)))
    for start in range(0, n_users, batch_size):
        sl = slice(start, min(start + batch_size, n_users))
        uv = user_vectors(model, sequences[sl], event_types[sl])
        logits = uv @ all_vecs.T
        own = uv @ item_vecs.T
        top = np.maximum(logits.max(axis=1, keepdims=True), own.max(axis=1, keepdims=True))
        z = np.exp(logits - top).sum(axis=1, keepdims=True)
        ex = np.exp(own - top)
        out[sl] = ex / (z if included else z + ex)
    return out


def category_conversion(shop: ShopData, categories) -> np.ndarray:
    share = category_purchase_share(shop)
    return np.array([share.get(c, share["*"]) for c in categories], dtype=float)


@dataclass
class ScoredBatch:
    """r_ij of one batch of users (rows ``start:start + n`` of the scored users) x all candidates,
    float32 ``(n, n_candidates)``: ``r`` (calibrated when a calibration is given, else
    ``r_model``), ``p`` (next-interaction probability) and ``r_model`` (``1 - exp(-n p c)``)."""

    start: int
    r: np.ndarray
    p: np.ndarray
    r_model: np.ndarray

    def __len__(self) -> int:
        return len(self.r)


def purchase_kernel(
    user_vecs: np.ndarray,
    softmax_t: np.ndarray,
    n_candidates: int,
    rates: np.ndarray,
    conv: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(r_model, p)`` float32 ``(n_users, n_candidates)`` for a batch of user vectors.

    ``softmax_t``: ``(dim, n_catalog + n_candidates)`` float32, candidates last: ``p_ij`` is the
    softmax over all of them (``included``: a candidate competes with what is on sale) and
    ``r_model = 1 - exp(-n_i p_ij c_j)``. Works in place on one ``(n, n_items)`` buffer."""
    logits = np.asarray(user_vecs, dtype=np.float32) @ softmax_t
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    denom = logits.sum(axis=1, keepdims=True)
    p = logits[:, logits.shape[1] - n_candidates :]
    p /= denom
    r = p * (-np.asarray(rates, dtype=np.float32)[:, None])
    r *= np.asarray(conv, dtype=np.float32)[None, :]
    np.expm1(r, out=r)  # = -r_model
    np.negative(r, out=r)
    return r, np.ascontiguousarray(p)


def purchase_probabilities(
    model,
    shop: ShopData,
    user_rows: np.ndarray,
    horizon_days: int,
    batch_size: int = 4096,
    calibration: PurchaseCalibration | None = None,
    user_x: np.ndarray | None = None,
    similar: Callable[[np.ndarray], np.ndarray] | None = None,
    user_vecs: np.ndarray | None = None,
    rates: np.ndarray | None = None,
    threads: int | None = None,
) -> Iterator[ScoredBatch]:
    """r_ij for the given user rows of ``shop`` x its candidates, streamed: yields one
    :class:`ScoredBatch` of float32 arrays per ``batch_size`` users, in order. Memory is
    O(batch x (catalog + candidates)) whatever the number of users.

    ``r_ij = 1 - exp(-n_i p_ij c_j)`` (see the module docstring); with ``calibration`` (and
    ``user_x``, one row of :func:`user_features_matrix` per scored user, and ``similar``,
    ``positions -> (len(positions), n_candidates)`` similar-product purchases, positions into
    ``user_rows``) ``r`` is the calibrated probability and ``r_model`` the uncalibrated one.
    ``user_vecs`` (``(len(user_rows), dim)``): the users' Transformer vectors, already
    encoded (``user_vector_cache.encode_users``, which the pipeline uses so that only users
    with new events are encoded again); without them the Transformer encodes one batch at a
    time. ``rates`` (one per scored user) overrides :func:`interaction_rates`. With given
    vectors the softmax and r math of consecutive batches run on ``threads`` threads (numpy
    releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from launch_pipeline.model.training import user_vectors

    user_rows = np.asarray(user_rows, dtype=np.int64)
    n_c = len(shop.candidates)
    n_u = len(user_rows)
    if n_c == 0 or n_u == 0:
        return
    softmax_t = np.ascontiguousarray(_softmax_parts(model, shop).T)
    rates = (
        interaction_rates(shop, horizon_days)[user_rows]
        if rates is None
        else np.asarray(rates, dtype=np.float64)
    )
    conv = category_conversion(shop, shop.candidates["category"])
    if calibration is not None and user_x is None:
        raise ValueError("a calibration needs user_x (user_features_matrix of the scored users)")

    def vectors(start: int) -> np.ndarray:
        sl = slice(start, min(n_u, start + batch_size))
        if user_vecs is not None:
            return user_vecs[sl]
        rows = user_rows[sl]
        return user_vectors(
            model,
            [shop.data.sequences[u] for u in rows],
            [shop.data.event_types[u] for u in rows],
        )

    def one(args) -> ScoredBatch:
        start, uv = args
        sl = slice(start, start + len(uv))
        r_model, p = purchase_kernel(uv, softmax_t, n_c, rates[sl], conv)
        r = r_model
        if calibration is not None:
            pos = np.arange(sl.start, sl.stop)
            r = calibration.apply(
                user_x[sl], p, conv, similar(pos) if similar is not None else np.zeros_like(p)
            )
        return ScoredBatch(start, r, p, r_model)

    # the Transformer is multi-threaded on its own: with it, one batch is scored while the next
    # one is encoded; with given vectors the batches' numpy math runs on `threads` threads.
    # At most `workers` batches are in flight, so memory stays bounded; results come in order.
    workers = 1 if user_vecs is None else max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for s in range(0, n_u, batch_size):
            pending.append(pool.submit(one, (s, vectors(s))))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
