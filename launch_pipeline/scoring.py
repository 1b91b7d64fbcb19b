"""Scoring and planning against the warehouse (no Dagster here).

* :func:`score_preferences` writes ``user_preferences`` (r_ij for active users x candidates,
  see :mod:`launch_pipeline.recommender`) and the view ``user_top_candidates``; and
  ``launch_history_buyers``: the same model's expected buyers ``sum_i r_ij`` of the products the
  shop launched in the past, scored from their attributes only as if they were new, which the
  demand model relates to what they really sold.
* :func:`make_and_store_plan` values the candidates with the demand model fitted on the shop's
  past launches (:mod:`launch_pipeline.demand`; ``sum_i r_ij x price x units per purchase`` when
  the history has too few launches), runs :func:`launch_pipeline.planning.make_plan` and writes
  ``launch_plan`` and ``launch_audiences`` (kept per plan date) and the Markdown report.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.demand import (
    DemandConfig,
    estimate_demand,
    launch_windows,
    load_history,
    similar_purchases,
)
from launch_pipeline.planning import make_plan
from launch_pipeline.recommender import (
    PurchaseCalibration,
    UsersAsOf,
    attributes_known_at_launch,
    category_conversion,
    interaction_rates,
    load_shop_data,
    next_probabilities,
    purchase_probabilities,
    user_features_matrix,
)
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
    horizon_days INTEGER, created_at TIMESTAMP, value_source VARCHAR, demand_score DOUBLE
)
"""
LAUNCH_HISTORY_BUYERS_DDL = """
CREATE OR REPLACE TABLE launch_history_buyers (
    window_start TIMESTAMP, item_id VARCHAR, launched_at TIMESTAMP, expected_buyers DOUBLE,
    buyers BIGINT, model_version VARCHAR, horizon_days INTEGER
)
"""
LAUNCH_AUDIENCES_DDL = """
CREATE TABLE IF NOT EXISTS launch_audiences (
    plan_date DATE, item_id VARCHAR, user_id VARCHAR, r DOUBLE, audience_rank INTEGER
)
"""


def score_preferences(settings: Settings, con: duckdb.DuckDBPyConnection) -> dict:
    """r_ij for every active user (an interaction in the last ``ACTIVE_DAYS`` days) and candidate.

    With past launches in the history, r_ij is calibrated on who really bought them
    (:class:`launch_pipeline.recommender.PurchaseCalibration`, fitted by
    :func:`calibrate_on_past_launches`); ``r_model`` keeps the uncalibrated
    ``1 - exp(-n_i p_ij c_j)``."""
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
    r_model, p = purchase_probabilities(model, shop, active, horizon)
    calibration, history = calibrate_on_past_launches(con, model, shop, horizon)
    r = r_model
    if calibration is not None and p.size:
        conv = category_conversion(shop, shop.candidates["category"])
        activity = user_activity(con, pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1))
        known = activity.reindex([str(u) for u in shop.user_ids[active]])
        user_x = user_features_matrix(
            interaction_rates(shop, horizon)[active],
            known["items_touched"].fillna(0.0).to_numpy(),
            known["recency_days"].fillna(0.0).to_numpy(),
        )
        plan_start = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
        similar = similar_purchases(
            load_history(con),
            shop.candidates[["item_id", "title"]],
            [str(u) for u in shop.user_ids[active]],
            plan_start,
        )
        r = calibration.apply(user_x, p, conv, similar)
    n_c = len(shop.candidates)
    df = pd.DataFrame(
        {
            "user_id": np.repeat(shop.user_ids[active], n_c),
            "item_id": np.tile(shop.candidates["item_id"].to_numpy(), len(active)),
            "r": r.ravel(),
            "p_next": p.ravel(),
            "r_model": r_model.ravel(),
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
            "rank_for_user, ? AS model_version, ? AS horizon_days, r_model FROM _prefs_df "
            "ORDER BY user_id, rank_for_user",
            [version.label, horizon],
        )
    finally:
        con.unregister("_prefs_df")
    con.execute(
        f"CREATE OR REPLACE VIEW user_top_candidates AS SELECT * FROM user_preferences "
        f"WHERE rank_for_user <= {TOP_N}"
    )
    _store_history_buyers(con, history, version.label, horizon)
    return {
        "model_version": version.label,
        "users_scored": int(len(active)),
        "users_known": int(len(shop.user_ids)),
        "candidates": int(n_c),
        "rows": int(len(df)),
        "mean_r": float(r.mean()) if r.size else 0.0,
        "as_of": shop.as_of,
        "horizon_days": horizon,
        "past_launches_scored": int(len(history)),
        "calibration": calibration.to_dict() if calibration is not None else None,
    }


def calibrate_on_past_launches(
    con: duckdb.DuckDBPyConnection, model, shop, horizon: int
) -> tuple[PurchaseCalibration | None, pd.DataFrame]:
    """Score the products launched in every past launch window of the demand model
    (:func:`launch_pipeline.demand.launch_windows`) as candidates would have been scored at the
    window start (attributes known then, users' histories up to then), fit the purchase
    calibration on who really bought them in the window, and return it with the past launches'
    expected buyers ``sum_i r_ij`` (calibrated when possible) and real buyers."""
    from launch_pipeline.model.training import item_vectors

    hist = load_history(con)
    windows = launch_windows(hist, horizon, DemandConfig())
    items = hist.items[~hist.items["is_candidate"] & hist.items["launched_at"].notna()]
    index = {str(item): k for k, item in enumerate(shop.item_ids) if k > 0}
    when = hist.items.set_index(hist.items["item_id"].astype(str))["launched_at"]
    catalog_launched = np.concatenate(
        [
            np.array(["NaT"], dtype="datetime64[us]"),
            when.reindex([str(i) for i in shop.item_ids[1:]]).to_numpy(dtype="datetime64[us]"),
        ]
    )
    purchases = hist.sales[hist.sales["units"] > 0][["item_id", "user_id", "ts"]]
    blocks, meta = [], []
    for start, end in windows:
        cohort = items[(items["launched_at"] >= start) & (items["launched_at"] < end)]
        ids = [str(i) for i in cohort["item_id"] if str(i) in index]
        if not ids:
            continue
        as_of = np.datetime64(start.to_datetime64(), "us")
        users = users_as_of(con, shop, start, horizon)
        if len(users.rows) == 0:
            continue
        rows = np.array([index[i] for i in ids], dtype=np.int64)
        attrs = attributes_known_at_launch(shop, rows, catalog_launched, as_of)
        vecs = item_vectors(model, attrs, None).astype(np.float32)
        p = next_probabilities(model, shop, users.sequences, users.event_types, vecs, False)
        conv = category_conversion(shop, shop.item_category[rows])
        sold = purchases[
            (purchases["ts"] >= start) & (purchases["ts"] < end) & purchases["item_id"].isin(ids)
        ]
        user_pos = {str(u): k for k, u in enumerate(shop.user_ids[users.rows])}
        item_pos = {i: k for k, i in enumerate(ids)}
        bought = np.zeros(p.shape, dtype=bool)
        for u, i in zip(sold["user_id"].astype(str), sold["item_id"].astype(str), strict=True):
            if u in user_pos:
                bought[user_pos[u], item_pos[i]] = True
        similar = similar_purchases(
            hist,
            cohort.set_index(cohort["item_id"].astype(str)).loc[ids].reset_index(drop=True),
            [str(u) for u in shop.user_ids[users.rows]],
            start,
        )
        blocks.append((users.user_features(), p, conv, similar, bought))
        meta.append((start, ids, cohort.set_index(cohort["item_id"].astype(str))["launched_at"]))
    calibration = PurchaseCalibration.fit(blocks) if blocks else None
    frames = []
    for (user_x, p, conv, similar, bought), (start, ids, launched) in zip(
        blocks, meta, strict=True
    ):
        r = (
            calibration.apply(user_x, p, conv, similar)
            if calibration is not None
            else 1.0 - np.exp(-np.exp(user_x[:, :1]) * p * conv[None, :])
        )
        frames.append(
            pd.DataFrame(
                {
                    "window_start": start,
                    "item_id": ids,
                    "launched_at": launched.reindex(ids).to_numpy(),
                    "expected_buyers": r.sum(axis=0),
                    "buyers": bought.sum(axis=0),
                }
            )
        )
    history = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=["window_start", "item_id", "launched_at", "expected_buyers", "buyers"]
        )
    )
    return calibration, history


USERS_AS_OF_SQL = """
WITH ev AS (
    SELECT user_id, item_id, ts, source_file, source_row,
           CASE event_type WHEN 'view' THEN 1 WHEN 'cart' THEN 2 WHEN 'purchase' THEN 3 END
               AS strength
    FROM clean_events
    WHERE event_type IN ('view', 'cart', 'purchase') AND ts < $as_of
), ordered AS (
    SELECT *, row_number() OVER w AS k,
           CASE WHEN lag(item_id) OVER w = item_id THEN 0 ELSE 1 END AS new_step
    FROM ev WINDOW w AS (PARTITION BY user_id ORDER BY ts, source_file, source_row)
), stepped AS (
    SELECT *, sum(new_step) OVER (PARTITION BY user_id ORDER BY k) AS step FROM ordered
), steps AS (
    SELECT user_id, step, any_value(item_id) AS item_id, max(strength) AS strength,
           min(ts) AS ts
    FROM stepped GROUP BY user_id, step
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY step DESC) <= $max_len
)
SELECT user_id, list(item_id ORDER BY step) AS items, list(strength ORDER BY step) AS strengths,
       min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n_steps
FROM steps GROUP BY user_id
HAVING max(ts) >= $as_of - to_days(CAST($active_days AS INTEGER))
ORDER BY user_id
"""


USER_ACTIVITY_SQL = """
SELECT user_id,
       count(DISTINCT item_id) FILTER (WHERE event_type IN ('view', 'cart', 'purchase'))
           AS items_touched,
       date_diff('hour', max(ts), $as_of) / 24.0 AS recency_days
FROM clean_events WHERE ts < $as_of GROUP BY user_id
"""


def user_activity(con: duckdb.DuckDBPyConnection, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per user (index): distinct items viewed, carted or bought before ``as_of`` and days since
    their last event."""
    df = con.execute(USER_ACTIVITY_SQL, {"as_of": as_of.to_pydatetime()}).df()
    return df.set_index(df["user_id"].astype(str))[["items_touched", "recency_days"]]


def users_as_of(
    con: duckdb.DuckDBPyConnection,
    shop,
    as_of: pd.Timestamp,
    horizon: int,
    max_len: int = 200,
    min_window_days: float = 7.0,
) -> UsersAsOf:
    """The users as ``user_sequences`` and :func:`interaction_rates` would have seen them at
    ``as_of``: their last ``max_len`` steps before it (consecutive events on one item collapsed,
    as in ``features.py``), active ones only (a step in the ``ACTIVE_DAYS`` before it), and their
    rate over those steps. Computed from ``clean_events``, because ``user_sequences`` keeps only
    each user's latest steps: a heavy buyer's history before an older date is not in it."""
    df = con.execute(
        USERS_AS_OF_SQL,
        {"as_of": as_of.to_pydatetime(), "max_len": max_len, "active_days": ACTIVE_DAYS},
    ).df()
    users = {str(u): k for k, u in enumerate(shop.user_ids)}
    items = {str(i): k for k, i in enumerate(shop.item_ids) if k > 0}
    activity = user_activity(con, as_of)
    rows, seqs, evs, rates, days, recency = [], [], [], [], [], []
    for r in df.itertuples(index=False):
        if str(r.user_id) not in users:
            continue
        idx = np.array([items.get(str(i), 0) for i in r.items], dtype=np.int64)
        keep = idx > 0
        if not keep.any():
            continue
        rows.append(users[str(r.user_id)])
        seqs.append(idx[keep])
        evs.append(np.asarray(r.strengths, dtype=np.int64)[keep])
        window = max((as_of - pd.Timestamp(r.first_ts)) / pd.Timedelta(days=1), min_window_days)
        rates.append(r.n_steps / window * horizon)
        days.append(float(activity.at[str(r.user_id), "items_touched"]))
        recency.append(float(activity.at[str(r.user_id), "recency_days"]))
    return UsersAsOf(
        np.array(rows, dtype=np.int64),
        seqs,
        evs,
        np.asarray(rates, dtype=float),
        np.asarray(days, dtype=float),
        np.asarray(recency, dtype=float),
    )


def _store_history_buyers(con, history: pd.DataFrame, version: str, horizon: int) -> None:
    con.execute(LAUNCH_HISTORY_BUYERS_DDL)
    if history.empty:
        return
    con.register("_hist_buyers_df", history)
    try:
        con.execute(
            "INSERT INTO launch_history_buyers SELECT window_start, item_id, launched_at, "
            "expected_buyers, buyers, ? AS model_version, ? AS horizon_days FROM _hist_buyers_df",
            [version, horizon],
        )
    finally:
        con.unregister("_hist_buyers_df")


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
    expected_buyers = prefs.groupby("item_id")["r"].sum().to_dict()
    demand, demand_model = estimate_demand(
        con,
        candidates[["item_id", "title", "category", "price"]],
        expected_buyers,
        p.horizon_days,
        past_buyers=_past_buyers(con),
    )
    plan, audiences, selection = make_plan(
        prefs,
        candidates,
        profiles,
        overall,
        plan_date,
        p.slots,
        p.category_cap,
        p.audience_size,
        demand=demand,
    )
    plan["model_version"] = model_version
    plan["horizon_days"] = p.horizon_days
    plan["created_at"] = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    con.execute(LAUNCH_PLAN_DDL)
    con.execute(LAUNCH_AUDIENCES_DDL)
    cols = [r[0] for r in con.execute("DESCRIBE launch_plan").fetchall()]
    con.register("_plan_df", plan.reindex(columns=cols))
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
            "value_source": (
                f"demand model fitted on {demand_model.launches} past launches"
                if demand_model is not None
                else "sum of r_ij x price x units per purchase (too few past launches)"
            ),
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
        "demand_model": demand_model,
    }


def _past_buyers(con: duckdb.DuckDBPyConnection) -> dict | None:
    """``(window start, item_id) -> expected buyers`` of the past launches, if scored."""
    tables = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    if "launch_history_buyers" not in tables:
        return None
    rows = con.execute(
        "SELECT window_start, item_id, expected_buyers FROM launch_history_buyers"
    ).fetchall()
    return {(pd.Timestamp(w), str(i)): float(v) for w, i, v in rows} or None
