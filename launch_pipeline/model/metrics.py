"""Full-ranking metrics for next-item prediction (numpy only).

Tie rule (``ties="pessimistic"``, the default): a candidate whose score *equals* the target's
score is counted as ranked *above* the target.  A scorer that gives every item the same score
therefore gets the worst possible rank, never a free hit.  ``ties="optimistic"`` counts only
strictly greater scores (the flattering convention of some libraries), for comparison only.

Exclusions: column 0 (padding) is never ranked; the excluded items of a user (normally the items
already in the user's input sequence) are never ranked; the target itself is always ranked, even
when it is also in the exclusion set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from launch_pipeline.shop_split import TemporalSplit

TIE_RULES = ("pessimistic", "optimistic")


def exclusion_mask(n_rows: int, n_cols: int, exclude: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean ``(n_rows, n_cols)`` mask with ``True`` at each row's excluded column indices."""
    if len(exclude) != n_rows:
        raise ValueError("one exclusion list per row is required")
    mask = np.zeros((n_rows, n_cols), dtype=bool)
    lens = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=n_rows)
    if lens.sum():
        rows = np.repeat(np.arange(n_rows), lens)
        cols = np.concatenate([np.asarray(e, dtype=np.int64).ravel() for e in exclude])
        mask[rows, cols] = True
    return mask


def rank_of_targets(
    scores: np.ndarray,
    targets: np.ndarray,
    exclude: np.ndarray | Sequence[np.ndarray] | None = None,
    candidates: np.ndarray | None = None,
    ties: str = "pessimistic",
) -> np.ndarray:
    """0-based rank of each row's target among the ranked columns (0 = top of the list).

    ``scores``: ``(n, n_items + 1)``, column ``j`` = item ``j``; ``targets``: ``(n,)`` item ids;
    ``exclude``: ``None``, a boolean ``(n, n_items + 1)`` mask, or one index array per row;
    ``candidates``: optional item ids to rank among (all other columns are excluded; the target
    must be one of them).  See the module docstring for the tie and exclusion rules.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}")
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError("scores must be 2-D")
    n, m = s.shape
    t_idx = np.asarray(targets, dtype=np.int64).ravel()
    if len(t_idx) != n:
        raise ValueError("one target per row is required")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if t_idx.min() < 1 or t_idx.max() >= m:
        raise ValueError("targets must be item ids 1..n_items")
    rows = np.arange(n)
    t = s[rows, t_idx].astype(np.float64 if s.dtype == np.float64 else np.float32)
    # one working copy: excluded / non-candidate columns get -inf, then a single comparison
    work = np.array(s, dtype=t.dtype, copy=True)
    if exclude is not None:
        if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
            if exclude.shape != (n, m):
                raise ValueError("exclusion mask must have the shape of scores")
            work[exclude] = -np.inf
        else:
            if len(exclude) != n:
                raise ValueError("one exclusion list per row is required")
            lens = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=n)
            if lens.sum():
                cols = np.concatenate([np.asarray(e, dtype=np.int64).ravel() for e in exclude])
                work[np.repeat(rows, lens), cols] = -np.inf
    if candidates is not None:
        cand = np.zeros(m, dtype=bool)
        cand[np.asarray(candidates, dtype=np.int64)] = True
        if not cand[t_idx].all():
            raise ValueError("every target must be among the candidates")
        work[:, ~cand] = -np.inf
    work[:, 0] = -np.inf
    work[rows, t_idx] = np.nan  # the target is not its own competitor (NaN never compares)
    tc = t[:, None]
    if ties == "pessimistic":
        # a competitor at -inf (excluded) must not tie with a -inf target
        rank = (work >= tc).sum(axis=1) - ((tc[:, 0] == -np.inf) * (work == -np.inf).sum(axis=1))
    else:
        rank = (work > tc).sum(axis=1)
    # NaN scores never beat the target; a NaN target is ranked below every rankable competitor
    nan_t = np.isnan(t)
    if nan_t.any():
        rank[nan_t] = (work[nan_t] > -np.inf).sum(axis=1)
    return rank.astype(np.int64)


def hit_rate_ndcg(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """``{"hr@K": ..., "ndcg@K": ...}`` averaged over all rows (one relevant item per row).

    HR@K = share of rows with rank < K; NDCG@K = mean of ``1 / log2(rank + 2)`` for rank < K,
    else 0 (the ideal DCG of a single relevant item is 1).
    """
    r = np.asarray(ranks, dtype=np.float64).ravel()
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = float(hit.mean()) if len(r) else 0.0
        out[f"ndcg@{k}"] = (
            float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean()) if len(r) else 0.0
        )
    return out


def rank_split(
    score_fn: Callable[[np.ndarray], np.ndarray],
    inputs: Sequence[np.ndarray],
    targets: np.ndarray,
    candidates: np.ndarray | None = None,
    batch_size: int = 2048,
    ties: str = "pessimistic",
    exclude_inputs: bool = True,
) -> np.ndarray:
    """Ranks for a whole evaluation split, in batches of cases.

    ``score_fn(case_indices)`` returns the ``(len(case_indices), n_items + 1)`` scores of those
    cases (one matmul per batch in the model and the baselines).  The input items of each case
    are excluded unless ``exclude_inputs`` is false.
    """
    n = len(targets)
    out = np.zeros(n, dtype=np.int64)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        scores = score_fn(idx)
        excl = [inputs[i] for i in idx] if exclude_inputs else None
        out[idx] = rank_of_targets(scores, targets[idx], excl, candidates, ties=ties)
    return out


def top_k_items(scores: np.ndarray, exclude: list[np.ndarray], k: int) -> np.ndarray:
    """Top-``k`` item ids per row, never column 0 nor an excluded item."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[:, 0] = -np.inf
    for row, ex in enumerate(exclude):
        s[row, ex] = -np.inf
    k = min(k, s.shape[1] - 1)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def purchase_prf(
    score_fn: Callable[[np.ndarray], np.ndarray],
    split: TemporalSplit,
    k: int = 10,
    batch: int = 2048,
) -> dict[str, float]:
    """Precision, recall and F1 at ``k`` of "the user will buy these" (top-``k`` new items)
    against the items each user really bought after the cutoff, averaged over buyers."""
    n = len(split.purchase_truth)
    if n == 0:
        return {f"precision@{k}": 0.0, f"recall@{k}": 0.0, f"f1@{k}": 0.0, "buyers_evaluated": 0}
    prec, rec = np.zeros(n), np.zeros(n)
    for start in range(0, n, batch):
        idx = np.arange(start, min(n, start + batch))
        top = top_k_items(score_fn(idx), [split.purchase_inputs[i] for i in idx], k)
        for row, i in enumerate(idx):
            hits = np.isin(top[row], split.purchase_truth[i]).sum()
            prec[i] = hits / k
            rec[i] = hits / len(split.purchase_truth[i])
    p, r = float(prec.mean()), float(rec.mean())
    return {
        f"precision@{k}": p,
        f"recall@{k}": r,
        f"f1@{k}": 2 * p * r / (p + r) if p + r > 0 else 0.0,
        "buyers_evaluated": n,
    }
