"""Non-neural baselines, vectorised (numpy / scipy only).

* popularity: interaction counts;
* last-item kNN: cosine item-item similarity (binary user x item co-occurrence, each user counted
  once per item pair) of every candidate to the user's last item;
* attribute popularity (cold start): an unseen item scored by the popularity of its attributes.

The top-k neighbour lists of the kNN are also what the Transformer blends with (see
:mod:`launch_pipeline.model.training`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def popularity(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Interaction count per item, shape ``(n_items + 1,)``; entry 0 is 0."""
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [np.zeros(0, int)])
    counts = np.bincount(flat, minlength=n_items + 1).astype(np.float64)
    counts[0] = 0.0
    return counts[: n_items + 1]


def user_item_matrix(sequences: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Binary ``(n_users, n_items + 1)`` CSR matrix (1 if the user ever interacted with the item)."""
    lens = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    rows = np.repeat(np.arange(len(sequences)), lens)
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences] or [np.zeros(0, int)])
    x = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(sequences), n_items + 1)
    )
    x.data[:] = 1.0  # duplicates were summed: binarise
    return x


def item_similarity(
    sequences: Sequence[np.ndarray], n_items: int, beta: float = 0.5
) -> sp.csr_matrix:
    """Item-item similarity from binary user-item co-occurrence, zero diagonal.

    ``sim[i, j] = |U_i & U_j| / (|U_i| ** (1 - beta) * |U_j| ** beta)`` where ``U_i`` is the set
    of users of item ``i``.  ``beta = 0.5`` is the cosine; a smaller ``beta`` favours popular
    candidates ``j`` (``beta = 0`` is the conditional probability ``P(j | i)``).
    Sparse ``(n_items + 1, n_items + 1)`` float32 CSR, row = the user's (last) item.
    """
    x = user_item_matrix(sequences, n_items)
    co = (x.T @ x).tocsr().astype(np.float32)
    deg = np.asarray(co.diagonal(), dtype=np.float64)
    safe = np.where(deg > 0, deg, 1.0)
    left = np.where(deg > 0, safe ** -(1.0 - beta), 0.0).astype(np.float32)
    right = np.where(deg > 0, safe**-beta, 0.0).astype(np.float32)
    co = (sp.diags(left) @ co @ sp.diags(right)).tocsr()
    co.setdiag(0.0)
    co.eliminate_zeros()
    return co


def item_cosine_similarity(sequences: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Cosine similarity of item columns of the binary user-item matrix, zero diagonal.

    ``sim[i, j] = |U_i & U_j| / sqrt(|U_i| |U_j|)`` where ``U_i`` is the set of users of item ``i``.
    Sparse ``(n_items + 1, n_items + 1)`` float32 CSR.
    """
    return item_similarity(sequences, n_items, beta=0.5)


def last_item_knn_scores(sim: sp.csr_matrix, last_items: np.ndarray) -> np.ndarray:
    """Dense ``(len(last_items), n_items + 1)`` scores: similarity of each item to the last item."""
    return sim[np.asarray(last_items, dtype=np.int64)].toarray()


def top_k_neighbors(sim: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar items of every item: ``(ids, sims)``, both ``(n_items + 1, k)``.

    Missing neighbours are id 0 with similarity 0 (column 0 is never ranked).  Ties are broken by
    the smaller item id.
    """
    sim = sim.tocsr()
    n = sim.shape[0]
    ids = np.zeros((n, k), dtype=np.int64)
    vals = np.zeros((n, k), dtype=np.float32)
    indptr, indices, data = sim.indptr, sim.indices, sim.data
    counts = np.diff(indptr)
    if k <= 0 or len(data) == 0:
        return ids, vals
    # sort each row by (-sim, id) with one global lexsort instead of a loop over rows
    row_of = np.repeat(np.arange(n), counts)
    order = np.lexsort((indices, -data, row_of))
    pos_in_row = np.arange(len(order)) - np.repeat(indptr[:-1], counts)
    keep = pos_in_row < k
    r = row_of[order][keep]
    p = pos_in_row[keep]
    ids[r, p] = indices[order][keep]
    vals[r, p] = data[order][keep]
    return ids, vals


def neighbor_scores(
    nbr_ids: np.ndarray, nbr_sims: np.ndarray, last_items: np.ndarray, n_cols: int
) -> np.ndarray:
    """Dense ``(len(last_items), n_cols)`` kNN scores from top-k neighbour lists."""
    last = np.asarray(last_items, dtype=np.int64)
    out = np.zeros((len(last), n_cols), dtype=np.float32)
    if len(last) and nbr_ids.shape[1]:
        rows = np.repeat(np.arange(len(last)), nbr_ids.shape[1])
        out[rows, nbr_ids[last].ravel()] = nbr_sims[last].ravel()
        out[:, 0] = 0.0
    return out


def attribute_popularity(
    item_attributes: np.ndarray, item_popularity: np.ndarray, how: str = "item_mean"
) -> np.ndarray:
    """Score every item (also unseen ones) from the popularity of its attributes.

    For each attribute ``a``: ``item_mean`` = mean interaction count of the *seen* items carrying
    ``a`` (expected popularity of an item with that attribute); ``total`` = total interaction
    count of items carrying ``a``.  An item's score is the mean over its attributes; items without
    attributes (or with only unseen attributes) score 0.  Returns ``(n_items + 1,)``.
    """
    attrs = np.asarray(item_attributes, dtype=np.int64)
    n_attr = int(attrs.max(initial=0)) + 1
    pop = np.asarray(item_popularity, dtype=np.float64)
    seen = pop > 0
    rows, slots = np.nonzero(attrs)
    a = attrs[rows, slots]
    total = np.bincount(a, weights=pop[rows], minlength=n_attr)
    if how == "total":
        per_attr = total
    elif how == "item_mean":
        n_seen = np.bincount(a, weights=seen[rows].astype(np.float64), minlength=n_attr)
        per_attr = np.divide(total, n_seen, out=np.zeros_like(total), where=n_seen > 0)
    else:
        raise ValueError("how must be 'item_mean' or 'total'")
    per_attr[0] = 0.0
    s = np.bincount(rows, weights=per_attr[a], minlength=attrs.shape[0])
    cnt = np.bincount(rows, minlength=attrs.shape[0])
    return np.divide(s, cnt, out=np.zeros_like(s), where=cnt > 0)


def attribute_overlap_scores(item_attributes: np.ndarray, last_items: np.ndarray) -> np.ndarray:
    """Cosine overlap of each item's attribute set with the last item's attribute set.

    A personalised content baseline for cold start: ``(len(last_items), n_items + 1)``.
    """
    attrs = np.asarray(item_attributes, dtype=np.int64)
    n_attr = int(attrs.max(initial=0)) + 1
    rows, slots = np.nonzero(attrs)
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, attrs[rows, slots])),
        shape=(attrs.shape[0], n_attr),
    )
    m.data[:] = 1.0
    norms = np.sqrt(np.asarray(m.sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    m = (sp.diags(inv) @ m).tocsr()
    return np.asarray((m[np.asarray(last_items, dtype=np.int64)] @ m.T).todense(), dtype=np.float32)
