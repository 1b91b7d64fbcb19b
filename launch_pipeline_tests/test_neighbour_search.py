"""The nearest-title search and the cannibalization estimate give exactly what the plain
definitions give (whole-row stable sorts; one control set per launch), on random inputs with
many ties and few valid neighbours: the shape of a grocery log, where the fast paths matter."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from launch_pipeline.cannibalization import (
    CannibalizationEstimate,
    _top_k_neighbours,
    estimate_cannibalization,
)
from launch_pipeline.demand import ShopHistory, _top_k_stable


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 40),
    k=st.integers(1, 8),
    valid_share=st.floats(0.0, 1.0),
    levels=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_k_equals_a_stable_sort_of_whole_rows(rows, cols, k, valid_share, levels, seed):
    """Ties (few distinct values) and rows with fewer valid columns than k (the others -1, as
    the cannibalization search masks them) take the order a stable sort gives them."""
    rng = np.random.default_rng(seed)
    k = min(k, cols)
    sims = rng.integers(0, levels + 1, size=(rows, cols)) / levels
    sims = np.where(rng.random((rows, cols)) < valid_share, sims, -1.0)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(_top_k_stable(sims, k), expected)


def _reference_cannibalization(hist: ShopHistory, w: int, k: int, min_similarity: float):
    """The estimate written as its definition: per launch, the control products' sums over
    the rows of the running revenue (what ``estimate_cannibalization`` did before it computed
    the windows once per launch day)."""
    items = hist.items[~hist.items["is_candidate"]].reset_index(drop=True)
    day0 = hist.data_start.normalize()
    n_days = max((hist.plan_start - day0).days, 1)
    s = hist.sales
    pos = pd.Series(np.arange(len(items)), index=items["item_id"].astype(str))
    i = pos.reindex(s["item_id"].astype(str)).to_numpy()
    d = ((pd.to_datetime(s["ts"]) - day0).dt.days).to_numpy()
    ok = ~np.isnan(i) & (d >= 0) & (d < n_days)
    daily = np.zeros((len(items), n_days))
    np.add.at(daily, (i[ok].astype(int), d[ok].astype(int)), s["revenue"].to_numpy()[ok])
    cum = np.concatenate([np.zeros((len(items), 1)), np.cumsum(daily, axis=1)], axis=1)
    start_day = ((pd.to_datetime(items["launched_at"]) - day0).dt.days).to_numpy(dtype=float)
    launches = np.flatnonzero(~np.isnan(start_day) & (start_day >= w) & (start_day + w <= n_days))
    t = start_day[launches].astype(int)
    columns = np.arange(len(items))

    def allowed(rows):
        before = np.isnan(start_day)[None, :] | (start_day[None, :] < t[rows][:, None])
        return before & (columns[None, :] != launches[rows][:, None])

    idx, strength = _top_k_neighbours(
        items["title"], items["title"].iloc[launches], allowed, k, min_similarity
    )

    def window(rows, lo, hi):
        return cum[rows, hi] - cum[rows, lo]

    loss, own, used, strengths = 0.0, 0.0, 0, []
    for row, (lid, t0) in enumerate(zip(launches, t, strict=True)):
        nb = idx[row][idx[row] >= 0]
        if len(nb) == 0:
            continue
        control = np.flatnonzero(
            (np.isnan(start_day) | (start_day < t0 - w)) & ~np.isin(np.arange(len(items)), nb)
        )
        ctrl_before = window(control, t0 - w, t0).sum()
        ctrl_after = window(control, t0, t0 + w).sum()
        if ctrl_before <= 0:
            continue
        growth = ctrl_after / ctrl_before
        loss += window(nb, t0 - w, t0).sum() * growth - window(nb, t0, t0 + w).sum()
        own += max(float(window(np.array([lid]), t0, t0 + w)[0]), 0.0)
        used += 1
        strengths.append(strength[row])
    if used == 0 or own <= 0:
        mean = float(np.mean(strengths)) if strengths else 0.0
        return CannibalizationEstimate(0.0, 0.0, used, mean, w, k, min_similarity)
    measured = float(loss / own)
    return CannibalizationEstimate(
        float(np.clip(measured, 0.0, 1.0)), measured, used, float(np.mean(strengths)), w, k,
        min_similarity,
    )  # fmt: skip


def _random_shop(seed: int) -> ShopHistory:
    """Products with titles from a small vocabulary (many ties), some on sale from the start,
    some launched on shared days (several launches a day), some before the log starts; daily
    sales with returns (negative revenue) and quiet days."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01")
    words = ["milk", "oat", "soup", "tomato", "cola", "diet", "bread", "rye", "cheese", "goat"]
    n = int(rng.integers(30, 90))
    launch_days = rng.integers(-10, 80, size=n)
    launched = [
        pd.NaT if rng.random() < 0.4 else start + pd.Timedelta(days=int(day)) for day in launch_days
    ]
    items = pd.DataFrame(
        {
            "item_id": [f"p{j:03d}" for j in range(n)],
            "title": [" ".join(rng.choice(words, size=int(rng.integers(1, 4)))) for _ in range(n)],
            "category": "food",
            "launched_at": launched,
            "price": 2.0,
            "first_price": 2.0,
            "is_candidate": False,
        }
    )
    rows = []
    for j in range(n):
        first = 0 if pd.isna(launched[j]) else max((launched[j] - start).days, 0)
        for day in range(first, 90):
            if rng.random() < 0.6:
                revenue = float(rng.integers(-2, 12)) * 1.25
                rows.append((items["item_id"][j], start + pd.Timedelta(days=day, hours=9), revenue))
    sales = pd.DataFrame(rows, columns=["item_id", "ts", "revenue"])
    sales["user_id"] = "u"
    sales["units"] = 1
    return ShopHistory(sales, items, start, start + pd.Timedelta(days=90))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), w=st.sampled_from([7, 14]), k=st.integers(1, 6))
def test_cannibalization_equals_its_definition(seed, w, k):
    hist = _random_shop(seed)
    got = estimate_cannibalization(hist, window_days=w, k=k, min_similarity=0.3)
    assert got == _reference_cannibalization(hist, w, k, 0.3)  # bit for bit


def test_the_random_shops_have_launches_to_measure():
    """The property above compares real estimates: launches with neighbours and a control."""
    est = estimate_cannibalization(_random_shop(0), window_days=14, k=5, min_similarity=0.3)
    assert est.launches > 20 and est.measured_rate != 0
