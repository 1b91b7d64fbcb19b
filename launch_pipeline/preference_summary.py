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
batches (:class:`launch_pipeline.purchase_scoring.ScoredBatch`): entries above each
candidate's current ``k``-th best are buffered and merged (one ``lexsort``) when the buffer
is full, so after the first batches only a small share of a batch is looked at twice.
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


class CandidateReducer:
    """Accumulates :class:`CandidateSummary` over batches of users x ``n_candidates``.

    ``add(start, r, r_model, units)``: rows ``start:start + n`` of the scored users, float32
    ``(n, n_candidates)`` each; ``units`` (``(n,)``) weights ``r_model`` for the expected
    units. Batches may come in any order; memory is ``O(n_candidates x k)`` plus one batch."""

    def __init__(self, n_candidates: int, k: int):
        if k < 1:
            raise ValueError(f"k (users kept per candidate) must be >= 1, got {k}")
        self.n_c, self.k = int(n_candidates), int(k)
        self.users = 0
        self.sum_r = np.zeros(self.n_c)
        self.sum_r_model = np.zeros(self.n_c)
        self.sum_units = np.zeros(self.n_c)
        self._top_r = np.full((self.n_c, self.k), -np.inf, dtype=np.float32)
        self._top_u = np.full((self.n_c, self.k), -1, dtype=np.int64)
        self._top_m = np.zeros((self.n_c, self.k), dtype=np.float32)
        self._count = np.zeros(self.n_c, dtype=np.int64)
        self._threshold = np.full(self.n_c, -np.inf, dtype=np.float32)
        self._buf: list[tuple[np.ndarray, ...]] = []
        self._buffered = 0

    def add(self, start: int, r: np.ndarray, r_model: np.ndarray, units: np.ndarray) -> None:
        n = len(r)
        if n == 0:
            return
        if r.shape != (n, self.n_c) or r_model.shape != r.shape or len(units) != n:
            raise ValueError(
                f"batch shapes r {r.shape}, r_model {r_model.shape}, units {len(units)} do not "
                f"match {n} users x {self.n_c} candidates"
            )
        self.users += n
        self.sum_r += r.sum(axis=0, dtype=np.float64)
        self.sum_r_model += r_model.sum(axis=0, dtype=np.float64)
        self.sum_units += np.asarray(units, dtype=np.float64) @ r_model.astype(np.float64)
        # entries that can enter a candidate's top k: above its current k-th best (all of them
        # while it has fewer than k); an entry equal to it loses the tie to the earlier user
        rows, cols = np.nonzero(r > self._threshold[None, :])
        if len(rows) == 0:
            return
        self._buf.append((cols, r[rows, cols], r_model[rows, cols], rows + int(start)))
        self._buffered += len(rows)
        if self._buffered >= self.n_c * self.k:
            self._merge()

    def _merge(self) -> None:
        if not self._buf:
            return
        have = np.arange(self.k)[None, :] < self._count[:, None]
        cols = np.concatenate([np.nonzero(have)[0], *(b[0] for b in self._buf)])
        r = np.concatenate([self._top_r[have], *(b[1] for b in self._buf)])
        m = np.concatenate([self._top_m[have], *(b[2] for b in self._buf)])
        u = np.concatenate([self._top_u[have], *(b[3] for b in self._buf)])
        self._buf, self._buffered = [], 0
        order = np.lexsort((u, -r, cols))  # by candidate, best r first, then lower user
        cols, r, m, u = cols[order], r[order], m[order], u[order]
        first = np.searchsorted(cols, np.arange(self.n_c))
        rank = np.arange(len(cols)) - first[cols]
        keep = rank < self.k
        cols, rank = cols[keep], rank[keep]
        self._top_r.fill(-np.inf)
        self._top_u.fill(-1)
        self._top_m.fill(0.0)
        self._top_r[cols, rank] = r[keep]
        self._top_m[cols, rank] = m[keep]
        self._top_u[cols, rank] = u[keep]
        self._count = np.bincount(cols, minlength=self.n_c).astype(np.int64)
        full = self._count >= self.k
        self._threshold = np.where(full, self._top_r[:, -1], -np.inf).astype(np.float32)

    def result(self) -> CandidateSummary:
        self._merge()
        return CandidateSummary(
            users=self.users,
            k=self.k,
            expected_buyers=self.sum_r.copy(),
            expected_buyers_model=self.sum_r_model.copy(),
            expected_units_model=self.sum_units.copy(),
            audience_users=self._top_u.copy(),
            audience_r=self._top_r.copy(),
            audience_r_model=self._top_m.copy(),
            audience_count=self._count.copy(),
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
        np.argpartition(-r, t - 1, axis=1)[:, :t]
        if t < n_c
        else np.broadcast_to(np.arange(n_c), (n, n_c))
    )
    vals = np.take_along_axis(r, cols, axis=1)
    order = np.lexsort((cols, -vals), axis=-1)
    cols = np.take_along_axis(cols, order, axis=1).astype(np.int64)
    return cols, np.broadcast_to(np.arange(1, t + 1, dtype=np.int32), (n, t))
