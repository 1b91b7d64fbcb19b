"""Scoring and planning against the warehouse (no Dagster here).

* :func:`score_preferences` writes ``user_preferences`` (r_ij for active users x candidates,
  see :mod:`launch_pipeline.recommender`) and the view ``user_top_candidates``.
* :func:`make_and_store_plan` runs :func:`launch_pipeline.planning.make_plan` on those scores and
  writes ``launch_plan`` and ``launch_audiences`` (kept per plan date) and the Markdown report.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.planning import make_plan
from launch_pipeline.recommender import load_shop_data, purchase_probabilities
from launch_pipeline.report import write_plan_report
from launch_pipeline.settings import Settings
from launch_pipeline.training import champion_or_fail, load_version

ACTIVE_DAYS = 30
TOP_N = 10

LAUNCH_PLAN_DDL = """
CREATE TABLE IF NOT EXISTS launch_plan (
    plan_date DATE, item_id VARCHAR, title VARCHAR, category VARCHAR, brand VARCHAR,
    price DOUBLE, units_per_purchase DOUBLE, expected_buyers DOUBLE, expected_units DOUBLE,
    units_p10 DOUBLE, units_p90 DOUBLE, expected_revenue DOUBLE, revenue_p10 DOUBLE,
    revenue_p90 DOUBLE, chosen BOOLEAN, plan_rank INTEGER, launch_hour_of_week INTEGER,
    launch_at TIMESTAMP, launch_weekday VARCHAR, launch_hour INTEGER, model_version VARCHAR,
    horizon_days INTEGER, created_at TIMESTAMP
)
"""
LAUNCH_AUDIENCES_DDL = """
CREATE TABLE IF NOT EXISTS launch_audiences (
    plan_date DATE, item_id VARCHAR, user_id VARCHAR, r DOUBLE, audience_rank INTEGER
)
"""


def score_preferences(settings: Settings, con: duckdb.DuckDBPyConnection) -> dict:
    """r_ij for every active user (an interaction in the last ``ACTIVE_DAYS`` days) and candidate."""
    version = champion_or_fail(settings)
    model, meta = load_version(version)
    shop = load_shop_data(con, meta["item_ids"], meta["attribute_vocab"])
    as_of = np.datetime64(shop.as_of, "us")
    active = np.array(
        [
            u
            for u, t in enumerate(shop.step_ts)
            if (as_of - t.max()) <= np.timedelta64(ACTIVE_DAYS, "D")
        ],
        dtype=np.int64,
    )
    horizon = settings.planning.horizon_days
    r, p = purchase_probabilities(model, shop, active, horizon)
    n_c = len(shop.candidates)
    df = pd.DataFrame(
        {
            "user_id": np.repeat(shop.user_ids[active], n_c),
            "item_id": np.tile(shop.candidates["item_id"].to_numpy(), len(active)),
            "r": r.ravel(),
            "p_next": p.ravel(),
        }
    )
    df["rank_for_user"] = (
        df.groupby("user_id")["r"].rank(method="first", ascending=False).astype("int32")
        if len(df)
        else pd.Series(dtype="int32")
    )
    con.register("_prefs_df", df)
    try:
        con.execute(
            "CREATE OR REPLACE TABLE user_preferences AS SELECT user_id, item_id, r, p_next, "
            "rank_for_user, ? AS model_version, ? AS horizon_days FROM _prefs_df "
            "ORDER BY user_id, rank_for_user",
            [version.label, horizon],
        )
    finally:
        con.unregister("_prefs_df")
    con.execute(
        f"CREATE OR REPLACE VIEW user_top_candidates AS SELECT * FROM user_preferences "
        f"WHERE rank_for_user <= {TOP_N}"
    )
    return {
        "model_version": version.label,
        "users_scored": int(len(active)),
        "users_known": int(len(shop.user_ids)),
        "candidates": int(n_c),
        "rows": int(len(df)),
        "mean_r": float(r.mean()) if r.size else 0.0,
        "as_of": shop.as_of,
        "horizon_days": horizon,
    }


def _units_per_purchase(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    rows = con.execute(
        """
        SELECT coalesce(f.category, '*'), avg(e.quantity)
        FROM clean_events e LEFT JOIN item_features f USING (item_id)
        WHERE e.event_type = 'purchase' GROUP BY ROLLUP (f.category)
        """
    ).fetchall()
    return {k: float(v) for k, v in rows if v is not None}


def make_and_store_plan(
    settings: Settings, con: duckdb.DuckDBPyConnection, context: dict | None = None
) -> dict:
    """Plan the launches for the day after the last event and store plan, audiences, report."""
    context = dict(context or {})
    prefs = con.execute("SELECT user_id, item_id, r FROM user_preferences").df()
    model_version = con.execute("SELECT any_value(model_version) FROM user_preferences").fetchall()[
        0
    ][0]
    as_of = con.execute("SELECT max(ts) FROM clean_events").fetchall()[0][0]
    plan_date = (pd.Timestamp(as_of) + pd.Timedelta(days=1)).date()
    candidates = con.execute(
        "SELECT item_id, title, category, brand, price FROM launch_candidates ORDER BY item_id"
    ).df()
    upp = _units_per_purchase(con)
    candidates["units_per_purchase"] = candidates["category"].map(upp).fillna(upp.get("*", 1.0))
    profiles = con.execute(
        "SELECT user_id, hour_of_week, event_share FROM activity_profile WHERE scope = 'user'"
    ).df()
    overall = (
        con.execute(
            "SELECT events FROM activity_profile WHERE scope = 'overall' ORDER BY hour_of_week"
        )
        .df()["events"]
        .to_numpy(dtype=float)
    )
    p = settings.planning
    plan, audiences, selection = make_plan(
        prefs, candidates, profiles, overall, plan_date, p.slots, p.category_cap, p.audience_size
    )
    plan["model_version"] = model_version
    plan["horizon_days"] = p.horizon_days
    plan["created_at"] = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    con.execute(LAUNCH_PLAN_DDL)
    con.execute(LAUNCH_AUDIENCES_DDL)
    cols = [r[0] for r in con.execute("DESCRIBE launch_plan").fetchall()]
    con.register("_plan_df", plan[cols])
    con.register("_aud_df", audiences)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM launch_plan WHERE plan_date = ?", [plan_date])
        con.execute("DELETE FROM launch_audiences WHERE plan_date = ?", [plan_date])
        con.execute("INSERT INTO launch_plan SELECT * FROM _plan_df")
        con.execute(
            "INSERT INTO launch_audiences SELECT plan_date, item_id, user_id, r, audience_rank FROM _aud_df"
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_plan_df")
        con.unregister("_aud_df")
    context.update(
        {
            "data_until": str(as_of),
            "users_scored": prefs["user_id"].nunique(),
            "model_version": model_version,
            "slots": p.slots,
            "category_cap": p.category_cap,
            "horizon_days": p.horizon_days,
            "solver_status": selection.status,
        }
    )
    report = write_plan_report(settings.reports_dir, plan, audiences, overall, plan_date, context)
    chosen = plan[plan["chosen"]]
    return {
        "plan_date": plan_date,
        "chosen": chosen,
        "plan": plan,
        "audiences": audiences,
        "selection": selection,
        "report_path": report,
    }
