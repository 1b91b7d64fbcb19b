"""Backtest: launch plans made at past cutoffs, scored on what really sold afterwards.

For each cutoff ``T`` (``launch-pipeline backtest``, :func:`run_backtest`):

1. **Staging** (``launch_pipeline/adapters/online_retail.py``, options ``history_before=T`` and
   ``candidates_window=(T, T + H)``): the raw directory holds only the invoice lines dated before
   ``T``; the catalog is derived from them; the candidates are the products first sold in
   ``[T, T + H)``, described only by their first sale line (description, derived category,
   stock family, unit price).
2. **The pipeline itself**: :func:`launch_pipeline.runner.run_pipeline` materializes every asset
   (landing, cleaning, GX checks, features, the Transformer, ``user_preferences``,
   ``launch_plan``) into a fresh data directory per cutoff, with ``slots``, ``category_cap`` and
   ``horizon_days = H`` as its settings. The plan is read from the ``launch_plan`` and
   ``launch_audiences`` tables: exactly what the asset made.
3. **Scoring** against the whole file: *realised revenue* (:func:`realised_by_item`) is the net
   sales (purchases minus returns, quantity x price) of the **clean** events in ``[T, T + H)``,
   where clean means what the pipeline's own cleaning (``launch_pipeline/cleaning.py``, with the
   source's thresholds) keeps when it cleans the whole file. The one definition serves the
   picks, the hindsight best, the baselines and the forecast coverage.

Metrics (per cutoff; the functions are small and tested on hand-computed cases):

* ``captured_revenue_share``: realised revenue of the chosen products / realised revenue of the
  best ``slots`` candidates in hindsight (:func:`captured_share`);
* ``spearman``: rank correlation of the predicted (the plan's ``expected_revenue``) and the
  realised revenue over all candidates;
* ``audience_precision@50``: per chosen product, the share of its promotion audience (the plan's
  top users by ``r_ij`` under its contact cap per customer) who bought it in the window,
  averaged over the chosen products; ``audience_precision@50_uncapped`` the same for the
  model's own top 50 by ``r_ij`` of each pick, before the cap; both next to the same for the 50
  customers with the most purchases before ``T`` ("most active");
* timing: the share of the audience's purchases before ``T`` that fall in the chosen launch
  hour of week and in the three hours around it, against a uniform choice (1/168, 3/168); the
  same share for their purchases in the window (out of sample);
* forecast: the share of candidates whose realised units (and revenue) fall in the plan's 80%
  interval ``[p10, p90]``.

Baselines computed in the same run, from the same history and the same realised revenue, each
with its captured share and Spearman: ``random`` (the expected captured share of ``slots``
random picks), ``text_knn`` (:func:`text_knn_predict`: TF-IDF over the unigrams and bigrams of
the product text; a candidate's revenue = the similarity-weighted net revenue over the 90 days
before ``T`` of its 20 most similar existing products) and ``category_popularity`` (the mean
recent revenue of the existing products of the candidate's category; ties broken at random, in
expectation). ``forecast_to_realised_revenue``: the forecast revenue of all candidates / their
realised revenue.

Ablations, from the same run and the same fitted pieces (``launch_valuation``):
``without_transformer`` ranks the candidates by the demand model fitted without any
Transformer-derived feature (same cohorts, level and selection rule; only the ranker differs),
``full_valuation_top_k`` by the full valuation with the same top-``slots`` rule, so the two are
compared like for like.

Hindsight (``hindsight``, :func:`hindsight_fits`): the valuation's own features fitted on the
candidates' realised revenue, with and without the Transformer's; not a method (it reads the
outcome) but the room the features leave: a model near it has little to gain from weighting
the same features differently; beyond it takes new information.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.demand import (
    SIMILARITY_CHUNK,
    TRANSFORMER_FEATURES,
    DemandConfig,
    _poisson,
    _zscore,
    has_table,
)
from launch_pipeline.errors import ConfigurationError
from launch_pipeline.model.training_loop import STOPPED_BY_THE_CLOCK
from launch_pipeline.settings import DEFAULT_MODEL_WORK_GCELLS

BACKTEST_SOURCES = ("online_retail", "complete_journey")
AUDIENCE_SIZE = 50
KNN_NEIGHBOURS = 20
KNN_DAYS = 90
MODEL_TIME_BUDGET_S = 900.0
"""The Transformer's wall-clock safety stop per cutoff (the as-of model gets a quarter): far
above what the work cap takes, so that only a machine in trouble reaches it; a cutoff whose
training it stopped is reported as not reproducible (``transformer_training``)."""
MODEL_WORK_GCELLS = DEFAULT_MODEL_WORK_GCELLS
"""The Transformer's work cap per cutoff in billions of softmax cells (the as-of model gets a
quarter): the nightly pipeline's default."""


# --------------------------------------------------------------------------------------------
# metrics (pure functions)
# --------------------------------------------------------------------------------------------
def best_possible(realised: pd.Series, k: int) -> float:
    """Realised revenue of the best ``k`` products in hindsight (negative ones never help)."""
    return float(realised.sort_values(ascending=False).head(k).clip(lower=0).sum())


def captured_share(picks, realised: pd.Series, k: int) -> float:
    """Realised revenue of ``picks`` / that of the best ``k`` in hindsight (nan if that is 0)."""
    best = best_possible(realised, k)
    if best <= 0:
        return float("nan")
    got = float(realised.reindex(list(picks)).fillna(0.0).sum())
    return got / best


def expected_top_k_share(predicted: pd.Series, realised: pd.Series, k: int) -> float:
    """Captured share of the top ``k`` by ``predicted``, ties broken uniformly at random (in
    expectation): a group of tied products that only partly fits contributes its mean."""
    best = best_possible(realised, k)
    if best <= 0:
        return float("nan")
    df = pd.DataFrame(
        {"p": predicted.fillna(-np.inf), "r": realised.reindex(predicted.index).fillna(0.0)}
    )
    got, room = 0.0, k
    for value in sorted(df["p"].unique(), reverse=True):
        if room <= 0:
            break
        g = df[df["p"] == value]
        take = min(room, len(g))
        got += float(g["r"].mean()) * take
        room -= take
    return got / best


def random_share(realised: pd.Series, k: int) -> float:
    """Expected captured share of ``k`` products picked uniformly at random."""
    best = best_possible(realised, k)
    if best <= 0 or len(realised) == 0:
        return float("nan")
    return min(k, len(realised)) * float(realised.mean()) / best


def spearman(predicted, realised) -> float:
    from scipy.stats import spearmanr

    a = np.asarray(predicted, dtype=float)
    b = np.asarray(realised, dtype=float)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def audience_precision(audiences: dict, buyers: dict) -> float:
    """Mean over products of the share of its audience that bought it (``buyers``: product ->
    set of users who bought it in the window)."""
    shares = [
        len(set(users) & set(buyers.get(item, ()))) / len(users)
        for item, users in audiences.items()
        if len(users)
    ]
    return float(np.mean(shares)) if shares else float("nan")


def hour_window(hour_of_week: int, width: int = 1) -> list[int]:
    """The hour of week and ``width`` hours either side (wrapping around the week)."""
    return [(int(hour_of_week) + d) % 168 for d in range(-width, width + 1)]


def timing_share(purchase_hours, hour_of_week: int, width: int = 0) -> float:
    """Share of purchases (their hours of week) inside the launch window."""
    hours = np.asarray(purchase_hours, dtype=int)
    if len(hours) == 0:
        return float("nan")
    return float(np.isin(hours, hour_window(hour_of_week, width)).mean())


def text_knn_predict(existing_text, existing_revenue, target_text, k: int = 20) -> np.ndarray:
    """The text-kNN baseline: TF-IDF over the unigrams and bigrams of the product text (fitted
    on the existing products' texts), each target's predicted revenue = the similarity-weighted
    mean revenue of its ``k`` most similar existing products (cosine). A target with no
    similar product at all (every similarity 0) gets the mean revenue of all existing ones."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def clean(texts):
        return [
            "" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in texts
        ]

    existing, targets = clean(existing_text), clean(target_text)
    rev = np.asarray(existing_revenue, dtype=float)
    if not targets:
        return np.zeros(0)
    if not existing:
        return np.zeros(len(targets))
    vec = TfidfVectorizer(lowercase=True, ngram_range=(1, 2))
    try:
        e = vec.fit_transform(existing)
    except ValueError:  # no token at all
        return np.full(len(targets), float(rev.mean()))
    t, et = vec.transform(targets), e.T.tocsc()
    k = min(k, len(existing))
    out = np.zeros(len(targets))
    for a in range(0, len(targets), SIMILARITY_CHUNK):  # memory: a block x existing
        sims = (t[a : a + SIMILARITY_CHUNK] @ et).toarray()
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        w = np.take_along_axis(sims, idx, axis=1)
        total = w.sum(axis=1)
        weighted = (w * rev[idx]).sum(axis=1) / np.where(total > 0, total, 1.0)
        out[a : a + len(sims)] = np.where(total > 0, weighted, float(rev.mean()))
    return out


def forecast_ratio(forecast, realised) -> float:
    """Forecast revenue of all candidates / their realised revenue (nan when nothing sold)."""
    real = float(np.nansum(np.asarray(realised, dtype=float)))
    return float(np.nansum(np.asarray(forecast, dtype=float))) / real if real > 0 else float("nan")


def interval_coverage(realised, lo, hi) -> float:
    r = np.asarray(realised, dtype=float)
    if len(r) == 0:
        return float("nan")
    return float(((r >= np.asarray(lo, dtype=float)) & (r <= np.asarray(hi, dtype=float))).mean())


@dataclasses.dataclass(frozen=True)
class HindsightFit:
    """The valuation's features fitted on the candidates' *realised* revenue: what those
    features could have given with every coefficient known in hindsight. It reads the outcome,
    so it is no method: it says how much room the features leave, not what a model can reach.
    Two linear families, each at every penalty of the grid: a Poisson regression (log link) of
    revenue / mean revenue, as the valuation's ranker, and a ridge regression of the revenue's
    rank; ``captured_revenue_share`` and ``spearman`` are each the best of all those fits
    (possibly two different ones). In-sample fits, not exact maxima: another weighting could
    still do a little better."""

    features: tuple[str, ...]
    captured_revenue_share: float
    spearman: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def hindsight_fit(
    features: pd.DataFrame, realised: pd.Series, k: int, penalties: tuple[float, ...]
) -> HindsightFit | None:
    """:class:`HindsightFit` of the standardised ``features`` (columns; missing values: the
    column mean) on ``realised`` (by the same index), top ``k`` for the captured share.
    ``None`` without features, with fewer than three candidates or no revenue."""
    from scipy.stats import rankdata
    from sklearn.linear_model import Ridge
    from threadpoolctl import threadpool_limits

    real = realised.reindex(features.index).fillna(0.0).astype(float)
    y = real.clip(lower=0.0).to_numpy()
    cols = [c for c in features.columns if features[c].notna().any()]
    if not cols or y.sum() <= 0 or len(y) < 3:
        return None
    x = _zscore(features[cols].astype(float)).to_numpy()
    ranks = rankdata(real.to_numpy())
    preds = []
    for alpha in penalties:
        # the valuation's own Poisson fit, and a ridge regression of the ranks
        preds.append(_poisson([(x, y / y.mean())], alpha).predict(x))
        with threadpool_limits(1):
            preds.append(Ridge(alpha=alpha * len(y)).fit(x, ranks).predict(x))
    shares = [expected_top_k_share(pd.Series(p, index=features.index), real, k) for p in preds]
    rhos = [spearman(p, real) for p in preds]
    return HindsightFit(tuple(cols), float(np.nanmax(shares)), float(np.nanmax(rhos)))


# --------------------------------------------------------------------------------------------
# realised sales: the pipeline's cleaning over the whole file
# --------------------------------------------------------------------------------------------
def realised_sales(source: str, path: Path, lo: dt.date, hi: dt.date, work: Path) -> pd.DataFrame:
    """The clean purchase and return events dated in ``[lo, hi)`` of the whole file: staged
    like any run (all products known) and cleaned by ``launch_pipeline/cleaning.py`` with the
    source's thresholds. Columns: ``item_id, user_id, ts, units, revenue`` (negative for
    returns), ``event_type``."""
    from launch_pipeline import catalog, cleaning, raw_io
    from launch_pipeline.adapters import stage_source
    from launch_pipeline.settings import Settings

    raw = work / "raw"
    staged = stage_source(source, path, raw)  # every product is known: catalog or candidate
    rules = Settings.from_env(data_dir=work, raw_dir=raw).cleaning
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        catalog.load_product_catalog(con, raw)
        catalog.load_launch_candidates(con, raw)
        days = [d for d in raw_io.event_day_files(raw).items() if lo <= d[0] < hi]
        for day, file in days:
            raw_io.load_event_day(con, raw, day, file, lake_dir=work / "lake")
        if not days:
            empty = pd.DataFrame(columns=["item_id", "user_id", "ts", "units", "revenue"])
            empty.attrs["data_range"] = (staged.start_date, staged.end_date)
            return empty
        cleaning.clean_partitions(con, days[0][0], days[-1][0], rules, lake_dir=work / "lake")
        sales = con.execute(
            """
            SELECT item_id, user_id, ts, event_type,
                   CASE WHEN event_type = 'return' THEN -quantity ELSE quantity END AS units,
                   CASE WHEN event_type = 'return' THEN -quantity * price
                        ELSE quantity * price END AS revenue
            FROM clean_events WHERE event_type IN ('purchase', 'return')
            """
        ).df()
    finally:
        con.close()
        shutil.rmtree(raw, ignore_errors=True)
    sales["ts"] = pd.to_datetime(sales["ts"])
    sales.attrs["data_range"] = (staged.start_date, staged.end_date)
    return sales


def check_cutoffs(cutoffs, first_day: dt.date, last_day: dt.date) -> None:
    """Every cutoff needs history before it and sales after it: one clear line otherwise."""
    for cutoff in cutoffs:
        if cutoff <= first_day or cutoff > last_day:
            side = "after the data ends" if cutoff > last_day else "at or before the data starts"
            raise ConfigurationError(
                f"cutoff {cutoff} is {side} (the file covers {first_day} .. {last_day}): a "
                "backtest plans on the history before each cutoff and scores the sales after "
                f"it; choose cutoffs after {first_day} and on or before {last_day}"
            )


def realised_by_item(sales: pd.DataFrame, items, lo: dt.date, hi: dt.date) -> pd.DataFrame:
    """Net revenue and units of each of ``items`` in ``[lo, hi)`` (0 when nothing sold), and
    the set of its buyers."""
    win = sales[(sales["ts"] >= pd.Timestamp(lo)) & (sales["ts"] < pd.Timestamp(hi))]
    win = win[win["item_id"].isin(list(items))]
    agg = win.groupby("item_id").agg(revenue=("revenue", "sum"), units=("units", "sum"))
    out = agg.reindex(list(items)).fillna(0.0)
    buyers = win[win["event_type"] == "purchase"].groupby("item_id")["user_id"].agg(set)
    out["buyers"] = [buyers.get(i, set()) for i in out.index]
    return out


# --------------------------------------------------------------------------------------------
# one cutoff
# --------------------------------------------------------------------------------------------
def _settings(
    data_dir: Path, horizon: int, slots: int, cap: int | None, budget: float, work: float
):
    from launch_pipeline.settings import PlanningSettings, Settings

    base = Settings.from_env(data_dir=data_dir, raw_dir=data_dir / "raw")
    planning = PlanningSettings(
        slots=slots,
        category_cap=cap if cap is not None else max(slots, 1),
        audience_size=AUDIENCE_SIZE,
        horizon_days=horizon,
        plan_details=False,  # no slot-value curve, report or figures: the decision only
    )
    return dataclasses.replace(
        base, planning=planning, model_time_budget_s=budget, model_work_gcells=work
    )


def _history(con: duckdb.DuckDBPyConnection) -> dict:
    purchases = con.execute(
        "SELECT user_id, item_id, ts, (isodow(ts) - 1) * 24 + hour(ts) AS how "
        "FROM clean_events WHERE event_type = 'purchase'"
    ).df()
    return {"purchases": purchases}


def _baseline_inputs(con: duckdb.DuckDBPyConnection, cutoff: dt.date, horizon: int):
    """Existing products with their title, category and net revenue over the ``horizon`` days
    before the cutoff (scaled to ``horizon`` days when the history is shorter)."""
    existing = con.execute(
        """
        WITH bounds AS (SELECT min(ts) AS first FROM clean_events)
        SELECT f.item_id, f.title, f.category,
               coalesce(sum(CASE WHEN e.event_type = 'return' THEN -e.quantity * e.price
                                 ELSE e.quantity * e.price END), 0) AS revenue
        FROM item_features f
        LEFT JOIN clean_events e
          ON e.item_id = f.item_id AND e.event_type IN ('purchase', 'return')
         AND e.ts >= CAST(? AS TIMESTAMP) - to_days(CAST(? AS INTEGER))
         AND e.ts < CAST(? AS TIMESTAMP)
        WHERE NOT f.is_candidate
        GROUP BY ALL ORDER BY f.item_id
        """,
        [cutoff, horizon, cutoff],
    ).df()
    first = con.execute("SELECT min(ts) FROM clean_events").fetchall()[0][0]
    days = min(horizon, max((pd.Timestamp(cutoff) - pd.Timestamp(first)).days, 1))
    existing["revenue"] = existing["revenue"] * horizon / days
    return existing


def model_audiences(con: duckdb.DuckDBPyConnection, items, n: int) -> dict[str, list[str]]:
    """The model's own top ``n`` users by ``r_ij`` of each of ``items`` from
    ``candidate_audiences`` (each candidate's best users, ranked by ``r`` then user id, see
    ``scoring.store_preferences``), before the plan's contact cap shares the users out."""
    items = [str(i) for i in items]
    if not items or not has_table(con, "candidate_audiences"):
        return {i: [] for i in items}
    rows = con.execute(
        """
        SELECT item_id, user_id FROM candidate_audiences
        WHERE item_id IN (SELECT unnest(CAST(? AS VARCHAR[]))) AND audience_rank <= ?
        ORDER BY item_id, audience_rank
        """,
        [items, n],
    ).df()
    got = {str(i): [str(u) for u in g["user_id"]] for i, g in rows.groupby("item_id", sort=False)}
    return {i: got.get(i, []) for i in items}


def _most_active(purchases: pd.DataFrame, n: int) -> list[str]:
    counts = purchases.groupby("user_id").size().reset_index(name="n")
    counts = counts.sort_values(["n", "user_id"], ascending=[False, True])
    return counts["user_id"].head(n).astype(str).tolist()


def score_cutoff(
    con: duckdb.DuckDBPyConnection,
    sales: pd.DataFrame,
    cutoff: dt.date,
    horizon: int,
    slots: int,
    category_cap: int | None,
) -> dict:
    """Read the plan the pipeline stored in ``con`` and score it and the baselines against
    ``sales`` (the clean events of the whole file) in ``[cutoff, cutoff + horizon)``."""
    from launch_pipeline.planning import select_launches

    end = cutoff + dt.timedelta(days=horizon)
    plan_date = con.execute("SELECT max(plan_date) FROM launch_plan").fetchall()[0][0]
    plan = con.execute("SELECT * FROM launch_plan WHERE plan_date = ?", [plan_date]).df()
    aud = con.execute(
        "SELECT item_id, user_id, audience_rank FROM launch_audiences WHERE plan_date = ? "
        "ORDER BY item_id, audience_rank",
        [plan_date],
    ).df()
    chosen = plan[plan["chosen"]].sort_values("plan_rank")
    picks = [str(i) for i in chosen["item_id"]]
    audiences = {
        str(item): [str(u) for u in g["user_id"]] for item, g in aud.groupby("item_id", sort=False)
    }
    audiences = {i: audiences.get(i, []) for i in picks}
    cands = plan[["item_id", "title", "category", "price"]].copy()
    truth = realised_by_item(sales, cands["item_id"], cutoff, end)
    realised = truth["revenue"]
    buyers = truth["buyers"].to_dict()
    predicted = plan.set_index("item_id")["expected_revenue"].reindex(realised.index)

    hist = _history(con)
    purchases = hist["purchases"]
    active = _most_active(purchases, AUDIENCE_SIZE)
    by_user_hours = purchases.groupby("user_id")["how"].agg(list)
    win_sales = sales[(sales["ts"] >= pd.Timestamp(cutoff)) & (sales["ts"] < pd.Timestamp(end))]
    win_sales = win_sales[win_sales["event_type"] == "purchase"]
    after_hours = (
        ((win_sales["ts"].dt.dayofweek) * 24 + win_sales["ts"].dt.hour)
        .groupby(win_sales["user_id"])
        .agg(list)
    )

    timing = []
    for rec in chosen.itertuples():
        users = audiences.get(str(rec.item_id), [])
        how = int(rec.launch_hour_of_week)
        before = [h for u in users for h in by_user_hours.get(u, [])]
        after = [h for u in users for h in after_hours.get(u, [])]
        timing.append(
            (
                timing_share(before, how, 0),
                timing_share(before, how, 1),
                timing_share(after, how, 1),
            )
        )
    timing_arr = np.array(timing, dtype=float) if timing else np.full((1, 3), np.nan)

    units = truth["units"]
    p10 = plan.set_index("item_id")["units_p10"].reindex(units.index)
    p90 = plan.set_index("item_id")["units_p90"].reindex(units.index)
    r10 = plan.set_index("item_id")["revenue_p10"].reindex(units.index)
    r90 = plan.set_index("item_id")["revenue_p90"].reindex(units.index)
    chosen_mask = units.index.isin(picks)
    metrics = {
        "captured_revenue_share": captured_share(picks, realised, slots),
        "spearman": spearman(predicted.fillna(0.0), realised),
        f"audience_precision@{AUDIENCE_SIZE}": audience_precision(audiences, buyers),
        f"audience_precision@{AUDIENCE_SIZE}_most_active": audience_precision(
            {i: active for i in picks}, buyers
        ),
        # the model's top 50 per pick before the contact cap (what this metric measured before
        # the plan capped how many audiences one customer is in)
        f"audience_precision@{AUDIENCE_SIZE}_uncapped": audience_precision(
            model_audiences(con, picks, AUDIENCE_SIZE), buyers
        ),
        "timing_share_launch_hour": float(np.nanmean(timing_arr[:, 0])),
        "timing_share_launch_hour_uniform": 1 / 168,
        "timing_share_3h_window": float(np.nanmean(timing_arr[:, 1])),
        "timing_share_3h_window_uniform": 3 / 168,
        "timing_share_3h_window_after_cutoff": float(np.nanmean(timing_arr[:, 2])),
        "interval_coverage_units": interval_coverage(units, p10, p90),
        "interval_coverage_revenue": interval_coverage(realised, r10, r90),
        "interval_coverage_units_chosen": interval_coverage(
            units[chosen_mask], p10[chosen_mask], p90[chosen_mask]
        ),
        "realised_revenue_picks": float(realised.reindex(picks).fillna(0.0).sum()),
        "realised_revenue_best": best_possible(realised, slots),
        "forecast_revenue_picks": float(chosen["expected_revenue"].sum()),
        "realised_revenue_all_candidates": float(realised.sum()),
        "forecast_revenue_all_candidates": float(plan["expected_revenue"].sum()),
        "forecast_to_realised_revenue": forecast_ratio(plan["expected_revenue"], realised),
    }

    existing = _baseline_inputs(con, plan_date, KNN_DAYS)
    knn = pd.Series(
        text_knn_predict(existing["title"], existing["revenue"], cands["title"], KNN_NEIGHBOURS),
        index=cands["item_id"].to_numpy(),
    )
    per_product = existing.groupby(existing["category"].fillna("unknown"))["revenue"].mean()
    catpop = pd.Series(
        [float(per_product.get(c, 0.0)) for c in cands["category"].fillna("unknown")],
        index=cands["item_id"].to_numpy(),
    )

    def baseline(pred: pd.Series) -> dict:
        pred = pred.reindex(realised.index)
        if category_cap is None:
            share = expected_top_k_share(pred, realised, slots)
            order = pred.sort_values(ascending=False, kind="stable").index
            top = [str(i) for i in order[:slots]]
        else:
            df = pd.DataFrame(
                {
                    "item_id": pred.index,
                    "category": cands.set_index("item_id").loc[pred.index, "category"].to_numpy(),
                    "v": pred.to_numpy(),
                }
            )
            top = select_launches(df, slots, category_cap, value_col="v").chosen
            share = captured_share(top, realised, slots)
        return {
            "captured_revenue_share": share,
            "spearman": spearman(pred, realised),
            "picks": top,
        }

    baselines = {
        "random": {
            "captured_revenue_share": random_share(realised, slots),
            "spearman": 0.0,
        },
        "text_knn": baseline(knn),
        "category_popularity": baseline(catpop),
        "most_active_customers": {
            f"audience_precision@{AUDIENCE_SIZE}": metrics[
                f"audience_precision@{AUDIENCE_SIZE}_most_active"
            ],
            "audience": active,
        },
    }
    valuation = _valuation(con, plan_date)
    ablations, hindsight = {}, {}
    if valuation is not None:
        ablations = {
            "without_transformer": baseline(valuation["expected_revenue_without_transformer"]),
            "full_valuation_top_k": baseline(valuation["expected_revenue"]),
        }
        hindsight = hindsight_fits(valuation, realised, slots)
    return {
        "cutoff": cutoff.isoformat(),
        "plan_date": str(plan_date),
        "horizon_end": end.isoformat(),
        "candidates": int(len(cands)),
        "candidates_sold_in_window": int((realised != 0).sum()),
        "value_source": str(chosen["value_source"].iloc[0])
        if "value_source" in chosen and len(chosen)
        else None,
        "picks": picks,
        "audiences": audiences,
        "launch_hours_of_week": {
            str(r.item_id): int(r.launch_hour_of_week) for r in chosen.itertuples()
        },
        "metrics": metrics,
        "baselines": baselines,
        "ablations": ablations,
        "hindsight": hindsight,
        "valuation_model": _valuation_model(con),
        "transformer_training": transformer_training(con),
    }


def transformer_training(con: duckdb.DuckDBPyConnection) -> dict:
    """How the plan's two Transformers' training ended (``pipeline``: the preference model,
    ``as_of``: the valuation's model), from ``transformer_training``: epochs, why training
    stopped, whether that is reproducible (a stop on the clock is not)."""
    if not has_table(con, "transformer_training"):
        return {}
    rows = con.execute("SELECT model, summary FROM transformer_training ORDER BY model").fetchall()
    return {name: json.loads(summary) for name, summary in rows}


def _valuation(con: duckdb.DuckDBPyConnection, plan_date) -> pd.DataFrame | None:
    """The plan's two valuations (with and without the Transformer's features), by item, and
    the features they were computed from (one ``feature:<name>`` column each)."""
    if not has_table(con, "launch_valuation"):
        return None
    df = con.execute(
        "SELECT item_id, expected_revenue, expected_revenue_without_transformer, "
        "feature_values FROM launch_valuation WHERE plan_date = ?",
        [plan_date],
    ).df()
    if not len(df):
        return None
    feats = pd.DataFrame([json.loads(v or "{}") for v in df.pop("feature_values")])
    df = pd.concat([df, feats.add_prefix("feature:")], axis=1)
    return df.set_index(df["item_id"].astype(str))


def hindsight_fits(valuation: pd.DataFrame, realised: pd.Series, k: int) -> dict:
    """:func:`hindsight_fit` on the valuation's features, with (``all_features``) and without
    (``without_transformer``) the Transformer's, at the ranker's penalty grid."""
    cols = [c for c in valuation.columns if c.startswith("feature:")]
    feats = valuation[cols].rename(columns=lambda c: c.removeprefix("feature:"))  # index: str
    real = realised.copy()
    real.index = real.index.astype(str)
    base = [c for c in feats.columns if c not in TRANSFORMER_FEATURES]
    out = {}
    for name, use in (("all_features", list(feats.columns)), ("without_transformer", base)):
        fit = hindsight_fit(feats[use], real, k, DemandConfig().poisson_alphas)
        if fit is not None:
            out[name] = fit.to_dict()
    return out


def _valuation_model(con: duckdb.DuckDBPyConnection) -> dict | None:
    """What the plan's demand model fitted (coefficients, penalty, level, interval)."""
    if not has_table(con, "launch_valuation_model"):
        return None
    rows = con.execute("SELECT model FROM launch_valuation_model").fetchall()
    if not rows:
        return None
    model = json.loads(rows[0][0])
    model.pop("config", None)
    return model


def _check_source(source: str) -> None:
    if source not in BACKTEST_SOURCES:
        raise ConfigurationError(
            f"backtest supports the source(s) {', '.join(BACKTEST_SOURCES)} (historical logs "
            f"whose launches can be replayed), not {source!r}"
        )


def run_backtest(
    source: str,
    path,
    cutoffs,
    horizon_days: int = 90,
    slots: int = 20,
    category_cap: int | None = None,
    work_dir: Path | None = None,
    model_time_budget_s: float = MODEL_TIME_BUDGET_S,
    model_work_gcells: float = MODEL_WORK_GCELLS,
    log=print,
    on_cutoff=None,
) -> dict:
    """Plan at every cutoff with the real pipeline on the history before it, score against the
    sales that followed. Returns ``{"cutoffs": [...], "summary": {...}, "settings": {...}}``;
    ``on_cutoff`` (optional) gets the same with the cutoffs done so far (``"complete": False``)
    after each cutoff, so a long run keeps what it has."""
    import dagster as dg

    from launch_pipeline.adapters import stage_source
    from launch_pipeline.runner import run_pipeline, step_seconds

    _check_source(source)
    path = Path(path)
    cutoffs = sorted(
        {c if isinstance(c, dt.date) else dt.date.fromisoformat(str(c)) for c in cutoffs}
    )
    if not cutoffs:
        raise ConfigurationError("backtest needs at least one --cutoff")
    if horizon_days <= 0 or slots <= 0:
        raise ConfigurationError("horizon_days and slots must be positive")
    settings_out = {
        "horizon_days": horizon_days,
        "slots": slots,
        "category_cap": category_cap,
        "audience_size": AUDIENCE_SIZE,
        "model_time_budget_s": model_time_budget_s,
        "model_work_gcells": model_work_gcells,
        "text_knn_neighbours": KNN_NEIGHBOURS,
        "text_knn_days": KNN_DAYS,
    }
    own_tmp = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="backtest_")) if own_tmp else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    try:
        t0 = time.perf_counter()
        lo = cutoffs[0]
        hi = cutoffs[-1] + dt.timedelta(days=horizon_days)
        sales = realised_sales(source, path, lo, hi, work / "realised")
        check_cutoffs(cutoffs, *sales.attrs["data_range"])
        log(
            f"realised sales {lo} .. {hi}: {len(sales):,} clean events "
            f"({time.perf_counter() - t0:.0f}s)"
        )
        results = []
        for cutoff in cutoffs:
            t0 = time.perf_counter()
            data_dir = work / f"cutoff_{cutoff.isoformat()}"
            if data_dir.exists():
                shutil.rmtree(data_dir)
            staged = stage_source(
                source,
                path,
                data_dir / "raw",
                history_before=cutoff,
                candidates_window=(cutoff, cutoff + dt.timedelta(days=horizon_days)),
            )
            log(f"{cutoff}: {staged.summary_line()}")
            settings = _settings(
                data_dir, horizon_days, slots, category_cap, model_time_budget_s, model_work_gcells
            )
            t1 = time.perf_counter()
            instance = dg.DagsterInstance.ephemeral()
            outcome = run_pipeline(settings, instance=instance)
            if not outcome.success:
                raise RuntimeError(
                    f"the pipeline failed on the history before {cutoff}: "
                    + "; ".join(outcome.failures[:5])
                )
            t2 = time.perf_counter()
            con = duckdb.connect(str(settings.warehouse_path), read_only=True)
            try:
                scored = score_cutoff(con, sales, cutoff, horizon_days, slots, category_cap)
            finally:
                con.close()
            scored["seconds"] = {
                "staging": round(t1 - t0, 1),
                "pipeline": round(t2 - t1, 1),
                "scoring": round(time.perf_counter() - t2, 1),
                "pipeline_steps": step_seconds(instance, outcome.run_id),
            }
            m, b = scored["metrics"], scored["baselines"]
            log(
                f"{cutoff}: captured {m['captured_revenue_share']:.3f} (random "
                f"{b['random']['captured_revenue_share']:.3f}, text-kNN "
                f"{b['text_knn']['captured_revenue_share']:.3f}, category "
                f"{b['category_popularity']['captured_revenue_share']:.3f}), spearman "
                f"{m['spearman']:.3f}, without the Transformer "
                f"{scored['ablations'].get('without_transformer', {}).get('captured_revenue_share', float('nan')):.3f}, "
                f"forecast/realised {m['forecast_to_realised_revenue']:.2f}, coverage "
                f"{m['interval_coverage_units']:.2f} ({time.perf_counter() - t0:.0f}s); "
                + training_line(scored["transformer_training"])
            )
            results.append(scored)
            if on_cutoff is not None:
                on_cutoff(_result(source, path, settings_out, results, t_all, complete=False))
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    return _result(source, path, settings_out, results, t_all, complete=True)


def _result(source, path, settings: dict, results: list[dict], t_all: float, complete: bool):
    return {
        "source": source,
        "path": str(path),
        "settings": settings,
        "cutoffs": results,
        "summary": summarise(results),
        "wall_seconds": round(time.perf_counter() - t_all, 1),
        "complete": complete,
    }


def training_line(training: dict) -> str:
    """``pipeline Transformer 12 epochs (work_cap), as-of 30 epochs (patience)`` for the log."""
    parts = []
    for name in ("pipeline", "as_of"):
        t = training.get(name)
        if t:
            flag = "" if t.get("reproducible") else ", NOT reproducible"
            parts.append(
                f"{name} Transformer {t.get('epochs_trained', t.get('epochs'))} epochs "
                f"({t.get('stopped')}{flag})"
            )
    return ", ".join(parts) or "no Transformer trained"


def summarise(results: list[dict]) -> dict:
    """Means over the cutoffs of every metric, ours and the baselines'."""

    def mean(values):
        vals = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
        return float(np.mean(vals)) if vals else float("nan")

    out: dict = {"ours": {}, "baselines": {}}
    if not results:
        return out
    for key in results[0]["metrics"]:
        out["ours"][key] = mean([r["metrics"][key] for r in results])
    for group in ("baselines", "ablations", "hindsight"):
        out[group] = {}
        for name in results[0].get(group, {}):
            keys = [
                k
                for k, v in results[0][group][name].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            ]
            out[group][name] = {
                k: mean([r[group].get(name, {}).get(k) for r in results]) for k in keys
            }
    knn = [r["baselines"]["text_knn"]["captured_revenue_share"] for r in results]
    ours = [r["metrics"]["captured_revenue_share"] for r in results]
    stops = [
        t.get("stopped")
        for r in results
        for t in (r.get("transformer_training") or {}).values()
        if t is not None
    ]
    out["transformer_trainings_stopped_by_the_clock"] = int(
        sum(s == STOPPED_BY_THE_CLOCK for s in stops)
    )
    out["reproducible"] = bool(stops) and not out["transformer_trainings_stopped_by_the_clock"]
    out["cutoffs_ahead_of_text_knn"] = int(sum(o > k for o, k in zip(ours, knn, strict=True)))
    out["beats_text_knn_at_every_cutoff"] = out["cutoffs_ahead_of_text_knn"] == len(results)
    n = np.array([r["candidates"] for r in results], dtype=float)
    cov = np.array([r["metrics"]["interval_coverage_units"] for r in results], dtype=float)
    ok = np.isfinite(cov)
    out["interval_coverage_units_pooled"] = (
        float((cov[ok] * n[ok]).sum() / n[ok].sum()) if ok.any() else float("nan")
    )
    return out
