"""What the plan needs from r_ij, reduced batch by batch instead of storing every pair.

A nightly run scores every active user against every candidate (1M users x 1k candidates is a
billion r_ij). The plan reads only:

* per candidate, the sums over users: expected buyers ``sum_i r_ij`` (the valuation), and the
  Transformer's demand features ``sum_i r_model_ij`` and ``sum_i r_model_ij x units_i``
  (:func:`launch_pipeline.demand.candidate_signal`);
* per candidate, its best users by ``r``: the pool from which
  :func:`launch_pipeline.planning.assign_audiences` draws the promotion audiences (its best
  ``audience_pool`` users) and the "best prospects" of a non-pick (its best ``audience_size``);
* per user, their best candidates (``user_top_candidates``).

:class:`CandidateReducer` keeps the sums and a top-``k`` per candidate over the streamed
batches (:class:`launch_pipeline.purchase_scoring.ScoredBatch`): entries at or above each
candidate's current ``k``-th best are buffered and merged when the buffer is full, so after
the first batches only a small share of a batch is looked at twice.
:func:`user_top` is each user's best candidates of a batch. Ties are broken as the planner
breaks them: the lower user position (users are scored in ``user_id`` order), the lower
candidate position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CandidateSummary:
    """The reduced r_ij of all scored users, per candidate (``n_c`` candidates).

    ``audience_users`` / ``audience_r`` / ``audience_r_model``: ``(n_c, k)``, each candidate's
    best users by ``r`` (positions into the scored users), best first; only the first
    ``audience_count[j]`` entries of row ``j`` are set (``min(k, users)``)."""

    users: int
    k: int
    expected_buyers: np.ndarray  # (n_c,) sum_i r_ij
    expected_buyers_model: np.ndarray  # (n_c,) sum_i r_model_ij
    expected_units_model: np.ndarray  # (n_c,) sum_i r_model_ij x units_i
    audience_users: np.ndarray  # (n_c, k) int64
    audience_r: np.ndarray  # (n_c, k) float32
    audience_r_model: np.ndarray  # (n_c, k) float32
    audience_count: np.ndarray  # (n_c,) int64

    @property
    def mean_r(self) -> float:
        cells = self.users * len(self.expected_buyers)
        return float(self.expected_buyers.sum() / cells) if cells else 0.0


_MAX_USERS = 2**32 - 1


@dataclass(frozen=True)
class BatchReduction:
    """One batch reduced by :meth:`CandidateReducer.prepare`: its sums and the entries that
    may enter a candidate's top k (candidate, key, ``r_model``)."""

    users: int
    sum_r: np.ndarray
    sum_r_model: np.ndarray
    sum_units: np.ndarray
    cols: np.ndarray
    keys: np.ndarray
    r_model: np.ndarray


def _keys(r: np.ndarray, users: np.ndarray) -> np.ndarray:
    """One uint64 per (r, user): larger for a larger ``r`` and, at equal ``r``, for a lower
    user position. ``r`` >= 0 float32, whose bit patterns order like the numbers."""
    bits = (np.asarray(r, dtype=np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 -> 0.0
    return (bits.astype(np.uint64) << np.uint64(32)) | (
        np.uint64(_MAX_USERS) - np.asarray(users, dtype=np.uint64)
    )


def _key_r(keys: np.ndarray) -> np.ndarray:
    return (keys >> np.uint64(32)).astype(np.uint32).view(np.float32)


def _key_user(keys: np.ndarray) -> np.ndarray:
    return (np.uint64(_MAX_USERS) - (keys & np.uint64(_MAX_USERS))).astype(np.int64)


class CandidateReducer:
    """Accumulates :class:`CandidateSummary` over batches of users x ``n_candidates``.

    ``add(start, r, r_model, units)``: rows ``start:start + n`` of the scored users, float32
    ``(n, n_candidates)`` each, ``r`` >= 0; ``units`` (``(n,)``) weights ``r_model`` for the
    expected units. Batches may come in any order; memory is ``O(n_candidates x k)`` plus one
    batch.

    Each candidate's best ``k`` are kept as one uint64 key per entry (``r``'s float bits, then
    the inverted user position, so that the largest keys are the best by ``r`` with ties to
    the lower user): an entry above the candidate's current ``k``-th best is buffered, and the
    buffer is merged into the kept keys (``argpartition`` per candidate on a dense
    candidates x (k + buffered) matrix) once it holds ``n_candidates x k / 4`` entries."""

    def __init__(self, n_candidates: int, k: int):
        if k < 1:
            raise ValueError(f"k (users kept per candidate) must be >= 1, got {k}")
        self.n_c, self.k = int(n_candidates), int(k)
        self.users = 0
        self.sum_r = np.zeros(self.n_c)
        self.sum_r_model = np.zeros(self.n_c)
        self.sum_units = np.zeros(self.n_c)
        self._keys = np.zeros((self.n_c, 0), dtype=np.uint64)  # 0: no entry
        self._model = np.zeros((self.n_c, 0), dtype=np.float32)
        self._threshold = np.full(self.n_c, -np.inf, dtype=np.float32)
        self._buf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0

    def add(self, start: int, r: np.ndarray, r_model: np.ndarray, units: np.ndarray) -> None:
        self.absorb(self.prepare(start, r, r_model, units))

    def prepare(
        self, start: int, r: np.ndarray, r_model: np.ndarray, units: np.ndarray
    ) -> BatchReduction:
        """The per-batch work of :meth:`add` (sums, the entries that may enter a top k), safe
        to run in several threads at once (it only reads the reducer; a threshold that has
        risen since only lets more entries through); :meth:`absorb` adds the result."""
        n = len(r)
        if r.shape != (n, self.n_c) or r_model.shape != r.shape or len(units) != n:
            raise ValueError(
                f"batch shapes r {r.shape}, r_model {r_model.shape}, units {len(units)} do not "
                f"match {n} users x {self.n_c} candidates"
            )
        if int(start) + n > _MAX_USERS:
            raise ValueError(f"at most {_MAX_USERS} users can be reduced")
        weighted = r_model * np.asarray(units, dtype=np.float32)[:, None]
        # entries that can enter a candidate's top k: at or above its current k-th best (all
        # of them while it has fewer than k); the merge settles ties by the user position
        at = np.flatnonzero(r >= self._threshold[None, :])
        rows, cols = np.divmod(at, self.n_c)
        return BatchReduction(
            users=n,
            sum_r=r.sum(axis=0, dtype=np.float64),
            sum_r_model=r_model.sum(axis=0, dtype=np.float64),
            sum_units=weighted.sum(axis=0, dtype=np.float64),
            cols=cols,
            keys=_keys(r.ravel()[at], rows + int(start)),
            r_model=r_model.ravel()[at],
        )

    def absorb(self, part: BatchReduction) -> None:
        self.users += part.users
        self.sum_r += part.sum_r
        self.sum_r_model += part.sum_r_model
        self.sum_units += part.sum_units
        if len(part.cols) == 0:
            return
        self._buf.append((part.cols, part.keys, part.r_model))
        self._buffered += len(part.cols)
        if self._buffered >= max(self.n_c * self.k // 4, 1):
            self._merge()

    def _merge(self) -> None:
        if not self._buf:
            return
        cols = np.concatenate([b[0] for b in self._buf])
        keys = np.concatenate([b[1] for b in self._buf])
        model = np.concatenate([b[2] for b in self._buf])
        self._buf, self._buffered = [], 0
        order = np.argsort(cols, kind="stable")
        cols, keys, model = cols[order], keys[order], model[order]
        counts = np.bincount(cols, minlength=self.n_c)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        width = self._keys.shape[1]
        dense_k = np.zeros((self.n_c, width + int(counts.max())), dtype=np.uint64)
        dense_m = np.zeros(dense_k.shape, dtype=np.float32)
        dense_k[:, :width], dense_m[:, :width] = self._keys, self._model
        at = width + np.arange(len(cols)) - first[cols]
        dense_k[cols, at], dense_m[cols, at] = keys, model
        if dense_k.shape[1] > self.k:
            keep = np.argpartition(~dense_k, self.k - 1, axis=1)[:, : self.k]
            dense_k = np.take_along_axis(dense_k, keep, axis=1)
            dense_m = np.take_along_axis(dense_m, keep, axis=1)
        self._keys, self._model = dense_k, dense_m
        if self._keys.shape[1] == self.k:
            full = (self._keys > 0).all(axis=1)
            kth = _key_r(self._keys.min(axis=1))
            self._threshold = np.where(full, kth, -np.inf).astype(np.float32)

    def result(self) -> CandidateSummary:
        self._merge()
        order = np.argsort(~self._keys, axis=1, kind="stable")
        keys = np.take_along_axis(self._keys, order, axis=1)
        model = np.take_along_axis(self._model, order, axis=1)
        have = keys > 0
        pad = self.k - keys.shape[1]
        users = np.where(have, _key_user(keys), -1)
        r = np.where(have, _key_r(keys), -np.inf).astype(np.float32)
        model = np.where(have, model, 0.0).astype(np.float32)
        if pad > 0:
            users = np.pad(users, ((0, 0), (0, pad)), constant_values=-1)
            r = np.pad(r, ((0, 0), (0, pad)), constant_values=-np.inf)
            model = np.pad(model, ((0, 0), (0, pad)))
        return CandidateSummary(
            users=self.users,
            k=self.k,
            expected_buyers=self.sum_r.copy(),
            expected_buyers_model=self.sum_r_model.copy(),
            expected_units_model=self.sum_units.copy(),
            audience_users=users,
            audience_r=r,
            audience_r_model=model,
            audience_count=have.sum(axis=1).astype(np.int64),
        )


def user_top(r: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's (row's) best ``top_n`` candidates by ``r``: ``(columns, ranks)``, both
    ``(n, min(top_n, n_candidates))``, best first, ties to the lower candidate position (a tie
    across the ``top_n``-th place keeps any of the tied candidates)."""
    n, n_c = r.shape
    t = min(int(top_n), n_c)
    if t <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.int32)
    cols = (
        np.argpartition(r, n_c - t, axis=1)[:, n_c - t :]
        if t < n_c
        else np.broadcast_to(np.arange(n_c), (n, n_c))
    )
    vals = np.take_along_axis(r, cols, axis=1)
    order = np.lexsort((cols, -vals), axis=-1)
    cols = np.take_along_axis(cols, order, axis=1).astype(np.int64)
    return cols, np.broadcast_to(np.arange(1, t + 1, dtype=np.int32), (n, t))
