"""The launch-plan optimiser, timing, audiences and forecast on hand-checked cases."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from launch_pipeline import planning


def _brute_force(df, slots, cap):
    best, best_set = 0.0, ()
    for k in range(slots + 1):
        for combo in itertools.combinations(range(len(df)), k):
            sub = df.iloc[list(combo)]
            if cap is not None and len(sub) and sub["category"].value_counts().max() > cap:
                continue
            v = sub["expected_revenue"].clip(lower=0).sum()
            if v > best + 1e-9:
                best, best_set = v, tuple(sub["item_id"])
    return best, set(best_set)


def test_milp_hand_checked_optimum():
    df = pd.DataFrame(
        {
            "item_id": list("abcdef"),
            "category": ["x", "x", "x", "y", "y", "z"],
            "expected_revenue": [10.0, 9.0, 8.0, 7.0, 1.0, -1.0],
        }
    )
    res = planning.select_launches(df, slots=4, category_cap=2)
    # x is capped at 2 (a, b), then d and e; f is negative and never chosen
    assert res.chosen == ["a", "b", "d", "e"]
    assert res.objective == pytest.approx(27.0)
    res = planning.select_launches(df, slots=10, category_cap=None)
    assert set(res.chosen) == set("abcde")


@pytest.mark.parametrize("seed", range(5))
def test_milp_matches_brute_force_and_respects_constraints(seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(10)],
            "category": rng.choice(["a", "b", "c"], size=10),
            "expected_revenue": rng.normal(5, 4, size=10),
        }
    )
    slots, cap = 4, 2
    res = planning.select_launches(df, slots=slots, category_cap=cap)
    chosen = df[df["item_id"].isin(res.chosen)]
    assert len(chosen) <= slots
    assert chosen.empty or chosen["category"].value_counts().max() <= cap
    best, _ = _brute_force(df, slots, cap)
    assert res.objective == pytest.approx(best)


def test_selection_edge_cases():
    empty = pd.DataFrame({"item_id": [], "category": [], "expected_revenue": []})
    assert planning.select_launches(empty, 3, 1).chosen == []
    with pytest.raises(ValueError):
        planning.select_launches(empty, -1, 1)


def test_launch_window_follows_the_audience():
    profiles = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c"],
            "hour_of_week": [30, 31, 30, 100],
            "event_share": [0.5, 0.5, 1.0, 1.0],
        }
    )
    audience = pd.DataFrame({"user_id": ["a", "b", "c"], "r": [0.9, 0.8, 0.1]})
    how, weights = planning.best_launch_window(audience, profiles)
    assert how == 30  # Tuesday 06:00
    assert weights.shape == (168,)
    # the plan date is a Sunday: the next Tuesday 06:00
    assert planning.next_launch_time(dt.date(2026, 11, 29), how) == dt.datetime(2026, 12, 1, 6)
    assert planning.next_launch_time(dt.date(2026, 12, 1), how) == dt.datetime(2026, 12, 1, 6)


def test_forecast_interval():
    r = np.full(100, 0.1)
    f = planning.demand_forecast(r, price=10.0, units_per_purchase=2.0)
    assert f["expected_buyers"] == pytest.approx(10.0)
    assert f["expected_units"] == pytest.approx(20.0)
    assert f["expected_revenue"] == pytest.approx(200.0)
    sd = np.sqrt(100 * 0.1 * 0.9)
    assert f["units_p10"] == pytest.approx(2 * (10 - planning.Z80 * sd))
    assert f["units_p90"] == pytest.approx(2 * (10 + planning.Z80 * sd))
    assert planning.demand_forecast(np.array([]), 5.0)["expected_revenue"] == 0.0


def test_make_plan_end_to_end():
    users = [f"u{k}" for k in range(20)]
    prefs = pd.DataFrame(
        [
            (u, item, r)
            for u in users
            for item, r in (("n1", 0.3), ("n2", 0.2), ("n3", 0.25), ("n4", 0.01))
        ],
        columns=["user_id", "item_id", "r"],
    )
    candidates = pd.DataFrame(
        {
            "item_id": ["n1", "n2", "n3", "n4"],
            "title": ["A", "B", "C", "D"],
            "category": ["x", "x", "y", "y"],
            "brand": ["b"] * 4,
            "price": [10.0, 40.0, 10.0, 5.0],
            "units_per_purchase": [1.0] * 4,
        }
    )
    profiles = pd.DataFrame(
        {"user_id": users, "hour_of_week": [50] * 20, "event_share": [1.0] * 20}
    )
    plan, aud, sel = planning.make_plan(
        prefs,
        candidates,
        profiles,
        np.ones(168),
        dt.date(2026, 11, 30),
        slots=2,
        category_cap=1,
        audience_size=5,
    )
    assert sel.chosen == ["n2", "n3"]  # 20*0.2*40 = 160 (x), 20*0.25*10 = 50 (y)
    chosen = plan[plan["chosen"]]
    assert set(chosen["launch_hour_of_week"]) == {50}
    assert (aud.groupby("item_id").size() == 5).all()
    assert chosen.set_index("item_id").loc["n2", "expected_revenue"] == pytest.approx(160.0)


# --------------------------------------------------------------------------------------------
# the demand model and the calibration of r_ij (launch_pipeline/demand.py, recommender.py)
# --------------------------------------------------------------------------------------------
def test_make_plan_uses_the_demand_model_when_given():
    users = [f"u{k}" for k in range(10)]
    prefs = pd.DataFrame(
        [(u, item, 0.2) for u in users for item in ("n1", "n2", "n3")],
        columns=["user_id", "item_id", "r"],
    )
    candidates = pd.DataFrame(
        {
            "item_id": ["n1", "n2", "n3"],
            "title": ["A", "B", "C"],
            "category": ["x", "y", "z"],
            "brand": ["b"] * 3,
            "price": [10.0, 10.0, 10.0],
            "units_per_purchase": [1.0] * 3,
        }
    )
    demand = pd.DataFrame(
        {
            "item_id": ["n1", "n2", "n3"],
            "expected_revenue": [5.0, 500.0, 50.0],
            "revenue_p10": [1.0, 100.0, 10.0],
            "revenue_p90": [9.0, 900.0, 90.0],
            "expected_units": [0.5, 50.0, 5.0],
            "units_p10": [0.1, 10.0, 1.0],
            "units_p90": [0.9, 90.0, 9.0],
            "demand_score": [1.0, 3.0, 2.0],
        }
    )
    profiles = pd.DataFrame({"user_id": users, "hour_of_week": [5] * 10, "event_share": [1.0] * 10})
    args = (prefs, candidates, profiles, np.ones(168), dt.date(2026, 11, 30))
    plan, _, sel = planning.make_plan(
        *args, slots=2, category_cap=1, audience_size=3, demand=demand
    )
    assert sel.chosen == ["n2", "n3"]
    row = plan.set_index("item_id").loc["n2"]
    assert row["expected_revenue"] == pytest.approx(500.0)
    assert row["units_p90"] == pytest.approx(90.0)
    assert row["expected_buyers"] == pytest.approx(2.0)  # still sum of r
    assert (plan["value_source"] == "past_launches").all()
    # without a demand model: the r_ij value (all equal here), source "preferences"
    plan, _, _ = planning.make_plan(*args, slots=2, category_cap=1, audience_size=3)
    assert (plan["value_source"] == "preferences").all()
    assert plan["expected_revenue"].tolist() == pytest.approx([20.0] * 3)


def _history(n_windows_days=150, launches_per_month=40, seed=0):
    """A shop whose launches sell in proportion to the recent sales of existing products with
    the same title word: the demand model must find that (text-kNN features)."""
    from launch_pipeline.demand import ShopHistory

    rng = np.random.default_rng(seed)
    words = ["bag", "mug", "clock", "card", "lamp", "tin"]
    strength = dict(zip(words, [8.0, 4.0, 2.0, 1.0, 0.5, 0.25], strict=True))
    start = pd.Timestamp("2011-01-01")
    items, sales = [], []
    for k in range(60):  # old products, on sale from the start
        w = words[k % len(words)]
        items.append((f"o{k}", f"{w} old {k}", "c", 2.0, pd.NaT))
    n_new = int(launches_per_month * n_windows_days / 30)
    for k in range(n_new):
        w = words[int(rng.integers(0, len(words)))]
        day = start + pd.Timedelta(days=int(rng.integers(20, n_windows_days)))
        items.append((f"n{k}", f"{w} new {k}", "c", 2.0, day))
    items = pd.DataFrame(items, columns=["item_id", "title", "category", "price", "launched_at"])
    for r in items.itertuples():
        w = r.title.split()[0]
        first = start if pd.isna(r.launched_at) else r.launched_at
        n = int(
            rng.poisson(strength[w] * (start + pd.Timedelta(days=n_windows_days) - first).days / 10)
        )
        for t in rng.uniform(0, (start + pd.Timedelta(days=n_windows_days) - first).days, n):
            sales.append(
                (r.item_id, f"u{int(rng.integers(0, 30))}", first + pd.Timedelta(days=t), 1, 2.0)
            )
    sales = pd.DataFrame(sales, columns=["item_id", "user_id", "ts", "units", "revenue"])
    items["is_candidate"] = False
    items["first_price"] = items["price"]
    end = start + pd.Timedelta(days=n_windows_days)
    return ShopHistory(sales, items, start, end)


def test_demand_model_learns_from_past_launches_and_falls_back():
    from launch_pipeline.demand import DemandConfig, fit_demand_model, launch_features

    hist = _history()
    model, predict = fit_demand_model(hist, horizon=30, cfg=DemandConfig())
    assert model is not None and model.launches >= 60
    assert model.coefficients["text_knn5"] > 0
    assert model.ratio_quantiles["p10"] < model.ratio_quantiles["p90"]
    cands = pd.DataFrame(
        {
            "item_id": ["c1", "c2"],
            "title": ["bag new x", "tin new y"],
            "category": ["c", "c"],
            "first_price": [2.0, 2.0],
        }  # fmt: skip
    )
    feats = launch_features(hist, cands, hist.plan_start, 30, DemandConfig())
    revenue = predict(feats)
    assert revenue[0] > revenue[1] > 0  # bags sell more than tins
    # a young shop: too few past launches -> no model (the plan uses sum r_ij x price)
    young = _history(n_windows_days=40, launches_per_month=10)
    assert fit_demand_model(young, horizon=30, cfg=DemandConfig())[0] is None


def test_text_knn_and_collections_hand_checked():
    from launch_pipeline.demand import collection_sizes, text_knn_revenue

    existing = ["jumbo bag red", "jumbo bag pink", "wall clock", "wall clock green"]
    revenue = [100.0, 50.0, 10.0, 30.0]
    pred = text_knn_revenue(existing, revenue, ["jumbo bag apples", "wall clock blue"], k=2)
    assert pred.tolist() == pytest.approx([75.0, 20.0])
    sizes = collection_sizes(["wall art love", "wall art calm", "wall art home", "doormat"], 0.3)
    assert sizes.tolist() == [2.0, 2.0, 2.0, 0.0]


def test_purchase_calibration_learns_who_buys():
    from launch_pipeline.recommender import PurchaseCalibration

    rng = np.random.default_rng(1)
    blocks = []
    for _ in range(2):
        n_u, n_i = 300, 20
        activity = rng.uniform(0, 3, n_u)
        user_x = np.column_stack([activity, rng.normal(size=n_u), rng.normal(size=n_u)])
        p = rng.uniform(1e-4, 1e-2, (n_u, n_i))
        conv = np.full(n_i, 0.5)
        similar = rng.poisson(1.0, (n_u, n_i)).astype(float)
        z = -4 + 1.5 * activity[:, None] + 0.0 * np.log(p) + 0.8 * np.log1p(similar)
        bought = rng.uniform(size=(n_u, n_i)) < 1 / (1 + np.exp(-z))
        blocks.append((user_x, p, conv, similar, bought))
    cal = PurchaseCalibration.fit(blocks)
    assert cal.coef[0] > 1.0 and cal.coef[-1] > 0.4
    r = cal.apply(*blocks[0][:4])
    assert r.shape == (300, 20) and ((r > 0) & (r < 1)).all()
    top = np.argsort(-r[:, 0])[:30]
    assert blocks[0][4][top, 0].mean() > blocks[0][4][:, 0].mean()
    none = [(b[0], b[1], b[2], b[3], np.zeros_like(b[4])) for b in blocks]
    assert PurchaseCalibration.fit(none) is None
