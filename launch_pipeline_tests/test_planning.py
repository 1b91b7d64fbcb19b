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
