"""How much of a new product's sales comes out of the shop's similar existing products.

Estimated from the shop's own past launches (:func:`estimate_cannibalization`): for each product
launched in the history (first sale at ``t``, with ``window_days`` of data before and after), its
``k`` existing products with the most similar title (TF-IDF cosine >= ``min_similarity``,
launched before ``t``) are its *neighbours*. Their revenue in the ``window_days`` after ``t`` is
compared with what it would have been without the launch: their revenue in the ``window_days``
before ``t`` times the shop-wide change of the other existing products' revenue over the same two
windows (season, trend). The shortfall, summed over launches and divided by the launches' own
revenue in their first ``window_days``, is the cannibalization rate: the share of a similar
launch's revenue taken from existing products. A negative rate (neighbours sold *more* after a
similar launch: a halo) is reported as measured and valued as 0.

A candidate's rate is the shop's rate scaled by how close its own neighbours are (the sum of its
neighbours' similarities relative to the past launches' mean): a product unlike anything on sale
takes nothing from the assortment. Incremental value = gross value x (1 - rate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from launch_pipeline import demand
from launch_pipeline.demand import ShopHistory, _clean_titles, _top_k_stable, _vectorizer


@dataclass(frozen=True)
class CannibalizationEstimate:
    rate: float  # valued share (clipped to 0..1)
    measured_rate: float  # as measured (negative: a halo)
    launches: int  # past launches with neighbours and a full before/after window
    mean_strength: float  # mean sum of neighbour similarities of those launches
    window_days: int
    neighbours: int
    min_similarity: float

    def to_dict(self) -> dict:
        return asdict(self)

    def candidate_rates(self, strength: np.ndarray) -> np.ndarray:
        """Per-candidate rate from the candidates' neighbour strengths."""
        s = np.asarray(strength, dtype=float)
        if self.mean_strength <= 0:
            return np.zeros(len(s))
        return np.clip(self.rate * s / self.mean_strength, 0.0, 1.0)


def _similarity_blocks(existing_titles, target_titles):
    """The ``(len(targets), len(existing))`` TF-IDF cosine matrix, yielded as ``(rows, block)``
    for ``demand.SIMILARITY_CHUNK`` targets at a time (memory: block x existing, never the
    whole matrix: thousands of past launches x tens of thousands of products on a grocery
    log)."""
    existing = _clean_titles(existing_titles)
    targets = _clean_titles(target_titles)
    e = t = None
    if existing and targets:
        vec = _vectorizer()
        try:
            e = vec.fit_transform(existing).T.tocsc()
            t = vec.transform(targets)
        except ValueError:
            e = t = None
    step = demand.SIMILARITY_CHUNK
    for a in range(0, len(targets), step):
        rows = np.arange(a, min(a + step, len(targets)))
        if e is None:
            yield rows, np.zeros((len(rows), len(existing)))
        else:
            yield rows, (t[a : a + step] @ e).toarray()


def _top_k_strength(sims: np.ndarray, allowed: np.ndarray, k: int, min_similarity: float):
    """Per row: indices of the top ``k`` allowed columns with similarity >= ``min_similarity``
    (``-1`` padded) and the sum of their similarities."""
    s = np.where(allowed & (sims >= min_similarity), sims, -1.0)
    k = min(k, s.shape[1])
    if k == 0:
        return np.full((len(s), 0), -1), np.zeros(len(s))
    idx = _top_k_stable(s, k)  # = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, idx, axis=1)
    idx = np.where(top >= 0, idx, -1)
    return idx, np.where(top >= 0, top, 0.0).sum(axis=1)


def _top_k_neighbours(existing_titles, target_titles, allowed, k: int, min_similarity: float):
    """:func:`_top_k_strength` of the whole similarity matrix, block by block; ``allowed(rows)``
    gives the mask of the block's rows (None: every column)."""
    n_t, n_e = len(target_titles), len(existing_titles)
    idx = np.full((n_t, min(k, n_e)), -1, dtype=np.int64)
    strength = np.zeros(n_t)
    for rows, sims in _similarity_blocks(existing_titles, target_titles):
        mask = np.ones(sims.shape, dtype=bool) if allowed is None else allowed(rows)
        idx[rows], strength[rows] = _top_k_strength(sims, mask, k, min_similarity)
    return idx, strength


def neighbour_strength(
    hist: ShopHistory, titles, as_of: pd.Timestamp, k: int = 5, min_similarity: float = 0.3
) -> np.ndarray:
    """Sum of the similarities of each title's ``k`` nearest existing products (launched before
    ``as_of``, similarity >= ``min_similarity``)."""
    items = hist.items[~hist.items["is_candidate"]]
    existing = items[items["launched_at"].isna() | (items["launched_at"] < as_of)]
    _, strength = _top_k_neighbours(existing["title"], titles, None, k, min_similarity)
    return strength


def estimate_cannibalization(
    hist: ShopHistory,
    window_days: int = 14,
    k: int = 5,
    min_similarity: float = 0.3,
) -> CannibalizationEstimate:
    """The shop's cannibalization rate from its past launches (see the module docstring)."""
    items = hist.items[~hist.items["is_candidate"]].reset_index(drop=True)
    launched = pd.to_datetime(items["launched_at"])
    day0 = hist.data_start.normalize()
    n_days = max((hist.plan_start - day0).days, 1)
    empty = CannibalizationEstimate(0.0, 0.0, 0, 0.0, window_days, k, min_similarity)
    # daily net revenue per item (items x days) and its running sum
    s = hist.sales
    pos = pd.Series(np.arange(len(items)), index=items["item_id"].astype(str))
    i = pos.reindex(s["item_id"].astype(str)).to_numpy()
    d = ((pd.to_datetime(s["ts"]) - day0).dt.days).to_numpy()
    ok = ~np.isnan(i) & (d >= 0) & (d < n_days)
    if not ok.any():
        return empty
    daily = np.zeros((len(items), n_days))
    np.add.at(daily, (i[ok].astype(int), d[ok].astype(int)), s["revenue"].to_numpy()[ok])
    cum = np.concatenate([np.zeros((len(items), 1)), np.cumsum(daily, axis=1)], axis=1)

    start_day = ((launched - day0).dt.days).to_numpy(dtype=float)
    w = window_days
    is_launch = ~np.isnan(start_day) & (start_day >= w) & (start_day + w <= n_days)
    launches = np.flatnonzero(is_launch)
    if len(launches) == 0:
        return empty
    t = start_day[launches].astype(int)
    columns = np.arange(len(items))

    def allowed(rows: np.ndarray) -> np.ndarray:  # launched before, and not itself
        before_launch = np.isnan(start_day)[None, :] | (start_day[None, :] < t[rows][:, None])
        return before_launch & (columns[None, :] != launches[rows][:, None])

    idx, strength = _top_k_neighbours(
        items["title"], items["title"].iloc[launches], allowed, k, min_similarity
    )
    # every product's revenue in the two windows around a launch day, computed once per launch
    # day (a grocery log has thousands of launches on a few hundred days); per launch, the control
    # sums take the same values in the same order as summing the control rows of ``cum``
    shortfall = np.zeros(len(launches))  # neighbours' expected less actual revenue
    own_revenue = np.zeros(len(launches))
    counted = np.zeros(len(launches), dtype=bool)  # launch with neighbours and a control
    for t0 in np.unique(t):
        on_sale = np.isnan(start_day) | (start_day < t0 - w)  # on sale before the first window
        rev_before = cum[:, t0] - cum[:, t0 - w]
        rev_after = cum[:, t0 + w] - cum[:, t0]
        for row in np.flatnonzero(t == t0):
            nb = idx[row][idx[row] >= 0]
            if len(nb) == 0:
                continue
            # control: existing products on sale before the first window, not neighbours (the
            # neighbours are taken out of the mask for this launch and put back: no copy of it)
            kept = on_sale[nb]
            on_sale[nb] = False
            ctrl_before = rev_before[on_sale].sum()
            ctrl_after = rev_after[on_sale].sum()
            on_sale[nb] = kept
            if ctrl_before <= 0:
                continue
            growth = ctrl_after / ctrl_before
            shortfall[row] = rev_before[nb].sum() * growth - rev_after[nb].sum()
            own_revenue[row] = max(float(rev_after[launches[row]]), 0.0)
            counted[row] = True
    loss, own, used, strengths = 0.0, 0.0, 0, []
    for row in np.flatnonzero(counted):  # summed in launch order
        loss += shortfall[row]
        own += own_revenue[row]
        used += 1
        strengths.append(strength[row])
    if used == 0 or own <= 0:
        return CannibalizationEstimate(
            0.0, 0.0, used, float(np.mean(strengths)) if strengths else 0.0, w, k, min_similarity
        )
    measured = float(loss / own)
    return CannibalizationEstimate(
        rate=float(np.clip(measured, 0.0, 1.0)),
        measured_rate=measured,
        launches=used,
        mean_strength=float(np.mean(strengths)),
        window_days=w,
        neighbours=k,
        min_similarity=min_similarity,
    )
