"""plan_outcomes against a hand-computed case."""

from __future__ import annotations

import datetime as dt

import pytest

from launch_pipeline.cleaning import ensure_tables
from launch_pipeline.launch_planner import AUDIENCE_COLUMNS, PLAN_COLUMNS, ensure_table
from launch_pipeline.outcomes import build_plan_outcomes, summarise_outcomes

PLAN_DATE = dt.date(2026, 11, 1)


def _event(con, k, user, item, etype, day, qty=None, price=None):
    con.execute(
        "INSERT INTO clean_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, false, NULL, NULL, 's', 'f', ?)",
        [f"e{k}", day, user, item, etype, dt.datetime.combine(day, dt.time(12)), qty, price, k],
    )


def test_outcomes_hand_computed(con):
    ensure_tables(con)
    ensure_table(con, "launch_plan", PLAN_COLUMNS)
    ensure_table(con, "launch_audiences", AUDIENCE_COLUMNS)
    con.execute("CREATE TABLE user_features AS SELECT 'u' || range AS user_id FROM range(10)")
    # plan: n1 chosen (forecast 30 units / 300 revenue over 30 days), n2 not chosen
    con.execute(
        "INSERT INTO launch_plan (plan_date, item_id, title, category, price, expected_units, units_p10,"
        " units_p90, expected_revenue, chosen, horizon_days) VALUES "
        "(?, 'n1', 'N1', 'c', 10, 30, 15, 45, 300, true, 30),"
        "(?, 'n2', 'N2', 'c', 5, 3, 1, 5, 15, false, 30)",
        [PLAN_DATE, PLAN_DATE],
    )
    con.execute(
        "INSERT INTO launch_audiences (plan_date, item_id, user_id, r, audience_rank) "
        "VALUES (?, 'n1', 'u0', 0.5, 1), (?, 'n1', 'u1', 0.4, 2)",
        [PLAN_DATE, PLAN_DATE],
    )
    d = lambda k: PLAN_DATE + dt.timedelta(days=k)  # noqa: E731
    _event(con, 1, "u0", "n1", "purchase", d(0), 3, 10.0)  # audience buyer
    _event(con, 2, "u5", "n1", "purchase", d(2), 2, 10.0)  # other buyer
    _event(con, 3, "u5", "n1", "return", d(3), 1, 10.0)  # one unit back
    _event(con, 4, "u6", "n1", "purchase", d(-1), 9, 10.0)  # before the plan: ignored
    _event(con, 5, "u7", "n2", "purchase", d(1), 1, 5.0)  # not chosen: ignored
    _event(con, 6, "u8", "p9", "view", d(9), None, None)  # data until day 9 -> 10 days observed
    df = build_plan_outcomes(con)
    assert list(df["item_id"]) == ["n1"]
    row = df.iloc[0]
    assert row["days_observed"] == 10
    assert row["realised_units"] == 4 and row["realised_revenue"] == pytest.approx(40.0)
    assert row["forecast_units_to_date"] == pytest.approx(10.0)
    assert row["forecast_revenue_to_date"] == pytest.approx(100.0)
    assert not row["within_interval"]  # 4 < 15 * 10 / 30 = 5
    assert row["audience_conversion"] == pytest.approx(0.5)
    assert row["other_users_conversion"] == pytest.approx(1 / 8)
    s = summarise_outcomes(df)
    assert s["products_evaluated"] == 1 and s["realised_over_forecast"] == pytest.approx(0.4)


def test_outcomes_without_plans(con):
    ensure_tables(con)
    df = build_plan_outcomes(con)
    assert df.empty and summarise_outcomes(df) == {"plans_evaluated": 0, "products_evaluated": 0}
