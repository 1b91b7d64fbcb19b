"""Plan versus reality: how did earlier launch plans do once their products were on sale?

For every stored plan (``launch_plan``, one per plan date and scenario) whose plan date is on or before the
last event in ``clean_events``, and every product it chose, :func:`build_plan_outcomes` compares
the forecast with what was sold since the plan date (purchases minus returns, up to the plan's
horizon): realised units and revenue, the forecast pro-rated to the days observed so far, and
the conversion of the promotion audience (share of its users who bought the product) next to the
conversion of the other active users. Written to the table ``plan_outcomes``.
"""

from __future__ import annotations

import duckdb
import pandas as pd

PLAN_OUTCOMES_SQL = """
CREATE OR REPLACE TABLE plan_outcomes AS
WITH last_event AS (SELECT max(ts) AS until FROM clean_events),
plans AS (
    SELECT p.plan_date, p.scenario, p.item_id, p.title, p.category, p.price, p.expected_units,
           p.units_p10, p.units_p90, p.expected_revenue, p.horizon_days, p.launch_at,
           least(p.horizon_days,
                 greatest(date_diff('day', p.plan_date, CAST(l.until AS DATE)) + 1, 0)) AS days_observed
    FROM launch_plan p CROSS JOIN last_event l
    WHERE p.chosen AND p.plan_date <= CAST(l.until AS DATE)
),
sales AS (
    SELECT p.plan_date, p.scenario, p.item_id,
           coalesce(sum(CASE e.event_type WHEN 'purchase' THEN e.quantity
                                          WHEN 'return' THEN -e.quantity END), 0) AS units,
           coalesce(sum(CASE e.event_type WHEN 'purchase' THEN e.quantity * e.price
                                          WHEN 'return' THEN -e.quantity * e.price END), 0) AS revenue,
           count(DISTINCT e.user_id) FILTER (WHERE e.event_type = 'purchase') AS buyers
    FROM plans p LEFT JOIN clean_events e
      ON e.item_id = p.item_id AND e.ts >= p.plan_date
     AND e.ts < p.plan_date + to_days(CAST(p.horizon_days AS INTEGER))
    GROUP BY ALL
),
audience AS (
    SELECT a.plan_date, a.scenario, a.item_id, count(*) AS audience_size,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM clean_events e
               WHERE e.user_id = a.user_id AND e.item_id = a.item_id AND e.event_type = 'purchase'
                 AND e.ts >= a.plan_date
                 AND e.ts < a.plan_date + to_days(CAST(p.horizon_days AS INTEGER)))) AS audience_buyers
    FROM launch_audiences a JOIN plans p USING (plan_date, scenario, item_id)
    GROUP BY ALL
)
SELECT p.plan_date, p.scenario, p.item_id, p.title, p.category, p.price, p.launch_at, p.horizon_days,
       p.days_observed,
       p.expected_units * p.days_observed / p.horizon_days AS forecast_units_to_date,
       p.units_p10 * p.days_observed / p.horizon_days AS forecast_units_p10_to_date,
       p.units_p90 * p.days_observed / p.horizon_days AS forecast_units_p90_to_date,
       p.expected_revenue * p.days_observed / p.horizon_days AS forecast_revenue_to_date,
       s.units AS realised_units, s.revenue AS realised_revenue, s.buyers AS realised_buyers,
       s.units BETWEEN p.units_p10 * p.days_observed / p.horizon_days
                   AND p.units_p90 * p.days_observed / p.horizon_days AS within_interval,
       coalesce(a.audience_size, 0) AS audience_size,
       coalesce(a.audience_buyers, 0) AS audience_buyers,
       coalesce(a.audience_buyers, 0) / nullif(a.audience_size, 0) AS audience_conversion,
       (s.buyers - coalesce(a.audience_buyers, 0))
         / nullif((SELECT count(*) FROM user_features) - coalesce(a.audience_size, 0), 0)
         AS other_users_conversion
FROM plans p JOIN sales s USING (plan_date, scenario, item_id)
LEFT JOIN audience a USING (plan_date, scenario, item_id)
ORDER BY p.plan_date, p.scenario, p.item_id
"""

EMPTY_OUTCOMES_SQL = """
CREATE OR REPLACE TABLE plan_outcomes (
    plan_date DATE, scenario VARCHAR, item_id VARCHAR, title VARCHAR, category VARCHAR,
    price DOUBLE, launch_at TIMESTAMP, horizon_days INTEGER, days_observed INTEGER,
    forecast_units_to_date DOUBLE, forecast_units_p10_to_date DOUBLE,
    forecast_units_p90_to_date DOUBLE, forecast_revenue_to_date DOUBLE, realised_units DOUBLE,
    realised_revenue DOUBLE, realised_buyers BIGINT, within_interval BOOLEAN,
    audience_size BIGINT, audience_buyers BIGINT, audience_conversion DOUBLE,
    other_users_conversion DOUBLE
)
"""


OUTCOME_DESCRIPTIONS = {
    "plan_date": "Day the plan was for",
    "scenario": "Planning scenario (default: the nightly plan)",
    "item_id": "Launched product",
    "days_observed": "Days of sales seen since the plan date (at most the horizon)",
    "forecast_units_to_date": "Forecast units pro-rated to the days observed",
    "forecast_revenue_to_date": "Forecast revenue pro-rated to the days observed",
    "realised_units": "Units sold since the plan date (purchases minus returns)",
    "realised_revenue": "Revenue since the plan date (purchases minus returns)",
    "within_interval": "Realised units inside the pro-rated 80% range",
    "audience_conversion": "Share of the promotion audience who bought the product",
    "other_users_conversion": "Share of the other users who bought it",
}


def build_plan_outcomes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """(Re)build ``plan_outcomes`` from all stored plans and the events since; returns it."""
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    if {"launch_plan", "launch_audiences", "clean_events", "user_features"} <= tables:
        con.execute(PLAN_OUTCOMES_SQL)
    else:
        con.execute(EMPTY_OUTCOMES_SQL)
    from launch_pipeline.launch_planner import comment_columns

    comment_columns(con, "plan_outcomes", OUTCOME_DESCRIPTIONS)
    return con.execute("SELECT * FROM plan_outcomes").df()


def summarise_outcomes(df: pd.DataFrame) -> dict:
    """Totals over all evaluated (plan, product) pairs."""
    observed = df[df["days_observed"] > 0]
    if observed.empty:
        return {"plans_evaluated": 0, "products_evaluated": 0}
    forecast = float(observed["forecast_revenue_to_date"].sum())
    realised = float(observed["realised_revenue"].sum())
    return {
        "plans_evaluated": int(observed[["plan_date", "scenario"]].drop_duplicates().shape[0]),
        "products_evaluated": int(len(observed)),
        "forecast_revenue_to_date": forecast,
        "realised_revenue": realised,
        "realised_over_forecast": realised / forecast if forecast > 0 else None,
        "interval_coverage": float(observed["within_interval"].mean()),
        "audience_conversion": float(observed["audience_conversion"].mean()),
        "other_users_conversion": float(observed["other_users_conversion"].mean()),
    }
