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


def test_no_launch_before_creation_plus_lead_time():
    """A plan made on Sunday 29 Nov at 15:20 with 24 h lead time: the audience's best hour
    (Sunday 10:00) has passed that day; the launch is the next Sunday 10:00."""
    profiles = pd.DataFrame(
        {
            "user_id": ["a", "a"],
            "hour_of_week": [6 * 24 + 10, 0 * 24 + 20],
            "event_share": [0.9, 0.1],
        }
    )
    aud = pd.DataFrame({"item_id": ["x", "x"], "user_id": ["a", "a"], "r": [0.5, 0.5]})
    created = dt.datetime(2026, 11, 29, 15, 20)
    start = planning.earliest_launch(created, dt.date(2026, 11, 29), lead_time_hours=24)
    assert start == dt.datetime(2026, 11, 30, 16)
    when = planning.schedule_launches(["x"], aud, profiles, np.ones(168), start)
    assert when["x"] >= created + dt.timedelta(hours=24)
    # the audience's best hour is Sunday 10:00: the next one, not the one that has passed
    assert when["x"] == dt.datetime(2026, 12, 6, 10)
    # the plan date in the future: never before its midnight
    later = planning.earliest_launch(created, dt.date(2026, 12, 5), lead_time_hours=1)
    assert later == dt.datetime(2026, 12, 5, 0)


def test_overlapping_audiences_are_staggered_and_local_times_shown():
    profiles = pd.DataFrame(
        {"user_id": ["a", "b"], "hour_of_week": [50, 50], "event_share": [1, 1]}
    )
    aud = pd.DataFrame(
        {"item_id": ["x", "y", "z"], "user_id": ["a", "a", "b"], "r": [0.5, 0.4, 0.3]}
    )
    start = dt.datetime(2026, 11, 30, 0)
    when = planning.schedule_launches(["x", "y", "z"], aud, profiles, np.ones(168), start)
    assert when["x"] == dt.datetime(2026, 12, 2, 2)  # Wednesday 02:00 UTC, the audience's hour
    assert abs((when["y"] - when["x"]).total_seconds()) >= 24 * 3600  # same audience: a day apart
    assert when["z"] == when["x"]  # no shared user: same best hour
    assert planning.to_local(when["x"], "Asia/Tokyo") == dt.datetime(2026, 12, 2, 11)
    with pytest.raises(ValueError, match="IANA"):
        planning.check_timezone("Mars/Olympus")


def test_contact_cap_is_respected_jointly():
    """Three equally good products, the same five best users for all: greedy top-5 audiences
    would promote every user three times; the joint MILP gives nobody more than the cap and
    still fills every audience from the next best users."""
    users = [f"u{k}" for k in range(12)]
    prefs = pd.DataFrame(
        [(u, item, 0.9 - 0.05 * k) for k, u in enumerate(users) for item in ("a", "b", "c")],
        columns=["user_id", "item_id", "r"],
    )
    cands = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "category": ["x", "y", "z"],
            "value": [100.0, 90.0, 80.0],
            "purchase_value": [10.0, 10.0, 10.0],
        }
    )
    sel = planning.select_and_assign(cands, prefs, 3, None, 5, max_promotions_per_user=2)
    assert sel.chosen == ["a", "b", "c"]
    per_user = sel.audiences.groupby("user_id").size()
    assert per_user.max() <= 2
    assert (sel.audiences.groupby("item_id").size() == 5).all()
    assert sel.audiences["user_id"].nunique() == 8  # 15 places, at most 2 each
    # the best users are used (the cap binds, not a poor assignment)
    assert set(per_user[per_user == 2].index) >= {"u0", "u1", "u2", "u3", "u4"} - {"u4"}
    uncapped = planning.select_and_assign(cands, prefs, 3, None, 5, max_promotions_per_user=3)
    assert uncapped.audiences.groupby("user_id").size().max() == 3


def test_budget_constraint_in_the_milp():
    cands = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "category": ["x", "x", "x"],
            "value": [100.0, 60.0, 50.0],
            "order_cost": [900.0, 400.0, 400.0],
        }
    )
    assert planning.select_launches(cands, 3, None, "value").chosen == ["a", "b", "c"]
    res = planning.select_launches(cands, 3, None, "value", launch_budget=1000.0)
    assert res.chosen == ["b", "c"] and res.budget_used == pytest.approx(800.0)
    curve = planning.slot_value_curve(cands, 3, None, "value")
    assert curve["value"].tolist() == [100.0, 160.0, 210.0]
    assert curve["marginal_value"].tolist() == [100.0, 60.0, 50.0]


# --------------------------------------------------------------------------------------------
# the demand model and the calibration of r_ij (launch_pipeline/demand.py, calibration.py)
# --------------------------------------------------------------------------------------------
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
    # how the interval was calibrated, for the report: out of sample on replayed launches
    # (a count) or in-sample (0)
    replayed = model.interval_from.startswith("split-conformal")
    assert (model.interval_replayed_launches > 0) == replayed
    if replayed:
        assert f"on {model.interval_replayed_launches} replayed" in model.interval_from
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
    from launch_pipeline.calibration import PurchaseCalibration

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


def test_conformal_quantiles_hand_checked():
    from launch_pipeline.demand import _conformal_quantiles

    # n = 9, 80%: the floor(10 x 0.1) = 1st and ceil(10 x 0.9) = 9th order statistics
    assert _conformal_quantiles(np.arange(1.0, 10.0), 0.8) == (1.0, 9.0)
    # n = 19: the 2nd and the 18th
    assert _conformal_quantiles(np.arange(19.0, 0.0, -1.0), 0.8) == (2.0, 18.0)


def test_level_change_season_trend_flat():
    from launch_pipeline.demand import DemandConfig, ShopHistory, level_change

    plan = pd.Timestamp("2012-03-01")
    ly = plan - pd.Timedelta(days=364)
    days = pd.date_range(ly - pd.Timedelta(days=200), plan - pd.Timedelta(days=1), freq="D")
    # 100 a day, 150 a day in the 90 days from the same date a year earlier
    revenue = np.where((days >= ly) & (days < ly + pd.Timedelta(days=90)), 150.0, 100.0)
    sales = pd.DataFrame(
        {"item_id": "a", "user_id": "u", "ts": days, "units": 1, "revenue": revenue}
    )
    items = pd.DataFrame(columns=["item_id", "title", "category", "price", "launched_at"])
    cfg = DemandConfig()
    hist = ShopHistory(sales, items, days[0], plan)
    assert level_change(hist, plan, [], 90, 90, cfg) == (pytest.approx(1.5), "season")
    young = ShopHistory(sales, items, plan - pd.Timedelta(days=200), plan)
    assert level_change(young, plan, [(plan, 2.0), (plan, 1.0)], 90, 90, cfg) == (1.0, "flat")
    cfg = DemandConfig(level_trend=True)
    means = [(plan - pd.Timedelta(days=90), 110.0), (plan - pd.Timedelta(days=120), 100.0)]
    # +10% per 30 days, carried 90 days (middle of the newest window to the planned one's)
    assert level_change(young, plan, means, 90, 90, cfg) == (pytest.approx(1.1**3), "trend")
    steep = [(plan - pd.Timedelta(days=90), 400.0), (plan - pd.Timedelta(days=120), 100.0)]
    assert level_change(young, plan, steep, 90, 90, cfg)[0] == pytest.approx(2.0)  # capped
    assert level_change(young, plan, means[:1], 90, 90, cfg) == (1.0, "flat")


def test_transformer_features_hand_checked():
    from launch_pipeline.demand import transformer_features

    r = np.array([[0.5, 0.1], [0.5, 0.0]])
    buyers, units = transformer_features(r, np.array([2.0, 10.0]))
    assert buyers.tolist() == pytest.approx(np.log1p([1.0, 0.1]).tolist())
    assert units.tolist() == pytest.approx(np.log1p([6.0, 0.2]).tolist())
    buyers, _ = transformer_features(r, np.array([2.0, 10.0]), scale=2.0)
    assert buyers.tolist() == pytest.approx(np.log1p([2.0, 0.2]).tolist())


def test_demand_model_uses_an_informative_transformer_signal_and_keeps_the_ablation():
    from launch_pipeline.demand import (
        TRANSFORMER_FEATURES,
        DemandConfig,
        fit_demand_model,
        launch_features,
        launch_windows,
    )

    hist = _history()
    strength = {"bag": 8.0, "mug": 4.0, "clock": 2.0, "card": 1.0, "lamp": 0.5, "tin": 0.25}
    rng = np.random.default_rng(5)
    items = hist.items.set_index("item_id")
    # a signal that knows each launch's strength and, beyond its title, how much it sold (with
    # noise), keyed by window start
    sold = hist.sales.groupby("item_id").size()
    signal = {}
    for start, _ in launch_windows(hist, 30, DemandConfig()):
        for i, title in items["title"].items():
            v = np.log1p(sold.get(i, 0)) + np.log(strength[title.split()[0]]) + rng.normal(0, 0.1)
            signal[(start, str(i))] = {name: v for name in TRANSFORMER_FEATURES}
    model, predict = fit_demand_model(hist, 30, DemandConfig(), past_signal=signal)
    assert set(TRANSFORMER_FEATURES) <= set(model.features) and model.transformer_used
    assert model.transformer_validation["with"] < model.transformer_validation["without"]
    assert set(model.coefficients_without_transformer).isdisjoint(TRANSFORMER_FEATURES)
    assert model.penalty in DemandConfig().poisson_alphas and model.penalty_validation
    assert model.coefficients["transformer_units"] > 0
    cands = pd.DataFrame(
        {
            "item_id": ["c1", "c2"],
            "title": ["card new x", "card new y"],
            "category": ["c", "c"],
            "first_price": [2.0, 2.0],
        }  # fmt: skip
    )
    feats = launch_features(hist, cands, hist.plan_start, 30, DemandConfig())
    for name in TRANSFORMER_FEATURES:
        feats[name] = [2.0, -2.0]  # the model tells the two apart, text cannot
    full, without = predict(feats), predict(feats, use_transformer=False)
    assert full[0] > full[1]
    assert without[0] == pytest.approx(without[1])
    # a signal of pure noise does not validate across windows: left out
    noise = {key: {n: rng.normal() for n in TRANSFORMER_FEATURES} for key in signal}
    model, predict = fit_demand_model(hist, 30, DemandConfig(), past_signal=noise)
    assert not model.transformer_used
    assert set(model.features).isdisjoint(TRANSFORMER_FEATURES)
    assert predict(feats) == pytest.approx(predict(feats, use_transformer=False))
    # the level and the interval come from the same fitted pieces either way
    assert model.level > 0 and model.ratio_quantiles["p10"] < model.ratio_quantiles["p90"]


def test_window_validation_is_purged_of_the_held_out_launches():
    """The past windows overlap, so a launch is in several of them; validating a fit on a window
    whose launches it was also trained on (in a neighbour window) rewards a feature that only
    describes those launches. Windows 0 and 1 hold the same launches, on which ``signal`` tracks
    the revenue; on window 2's launches it is noise. Purged, holding out window 0 or 1 leaves
    only window 2 to learn from, and the signal does not validate."""
    from launch_pipeline.demand import DemandConfig, _design, _purged, fit_ranker

    rng = np.random.default_rng(0)
    shared = [f"s{k}" for k in range(60)]
    own = [f"o{k}" for k in range(60)]
    revenue = rng.gamma(1.0, 100.0, size=60)
    frames = []
    for window, ids, target in ((0, shared, revenue), (1, shared, revenue * 1.1), (2, own, None)):
        y = rng.gamma(1.0, 100.0, size=60) if target is None else target
        signal = rng.normal(size=60) if target is None else np.log(y) + rng.normal(0, 0.1, 60)
        frames.append(
            pd.DataFrame(
                {"base": rng.normal(size=60), "signal": signal, "target": y, "window": window},
                index=ids,
            )
        )
    data = pd.concat(frames)
    blocks = _design(data, ["base", "signal"])
    for k in range(3):
        kept = np.concatenate([b[2] for b in _purged(blocks, k)])
        assert not set(kept) & set(blocks[k][2])
        assert set(kept) == set(data.index[data["window"] != k]) - set(blocks[k][2])
    cfg = DemandConfig()
    with_signal = fit_ranker(data, ["base", "signal"], cfg)
    without = fit_ranker(data, ["base"], cfg)
    gain = 1 - min(with_signal.validation.values()) / min(without.validation.values())
    assert gain < cfg.min_validated_gain, gain
    # what the unpurged leave-one-window-out said: a gain the gate would take, from the
    # shared launches
    from sklearn.metrics import mean_poisson_deviance

    from launch_pipeline.demand import _poisson

    def naive(features):
        b = _design(data, features)
        dev = []
        for k in range(3):
            reg = _poisson([x for j, x in enumerate(b) if j != k], 1.0)
            dev.append(mean_poisson_deviance(b[k][1], np.maximum(reg.predict(b[k][0]), 1e-9)))
        return np.mean(dev)

    assert 1 - naive(["base", "signal"]) / naive(["base"]) > 2 * cfg.min_validated_gain
