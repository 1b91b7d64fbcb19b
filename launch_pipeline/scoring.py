"""Scoring and planning against the warehouse (no Dagster here).

* :func:`score_preferences` scores r_ij for active users x candidates (see
  :mod:`launch_pipeline.purchase_scoring`) and stores what the plan needs
  (:func:`store_preferences`: ``candidate_preferences``, ``candidate_audiences``,
  ``user_top_candidates``), never every pair; and
  ``launch_history_buyers``: the same model's expected buyers ``sum_i r_ij`` of the products the
  shop launched in the past, scored from their attributes only as if they were new, which the
  demand model relates to what they really sold; and ``transformer_training``: how the
  two Transformers' training ended (epochs, why it stopped, whether that is reproducible).

The plan itself (valuation, MILP, scenarios, report) is made by
:mod:`launch_pipeline.launch_planner` from the tables written here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.calibration import PurchaseCalibration, UsersAsOf, user_features_matrix
from launch_pipeline.demand import (
    DemandConfig,
    SimilarPurchases,
    launch_windows,
    load_history,
    similar_purchases,
)
from launch_pipeline.features import build_user_sequences
from launch_pipeline.model.training_loop import stopped_reproducibly
from launch_pipeline.model_pipeline import champion_or_fail, load_version
from launch_pipeline.model_store import LocalModelStore, ModelStore
from launch_pipeline.planning import audience_pool_needed
from launch_pipeline.preference_summary import CandidateReducer, CandidateSummary, user_top
from launch_pipeline.purchase_scoring import (
    ScoredBatch,
    category_conversion,
    interaction_rates,
    next_probabilities,
    purchase_probabilities,
)
from launch_pipeline.settings import Settings
from launch_pipeline.shop_data import attributes_known_at_launch, load_shop_data, read_sequences
from launch_pipeline.transformer_signal import AS_OF_BUDGET_SHARE, score_past_launches, train_as_of
from launch_pipeline.user_vector_cache import encode_users
from launch_pipeline.warehouse import replace_atomically

ACTIVE_DAYS = 30
TOP_N = 10
PREPARE_THREADS = 2
"""Threads that reduce scored batches while the next ones are scored and the last written."""
MAX_REPLAY_USERS = 20_000
"""Users replayed per past launch window (a hash sample above it): bounds the calibration's
cost (Transformer vectors, sequences as of the window start, the fit) on a large shop."""

LAUNCH_HISTORY_BUYERS_DDL = """
CREATE OR REPLACE TABLE launch_history_buyers (
    window_start TIMESTAMP, item_id VARCHAR, launched_at TIMESTAMP, expected_buyers DOUBLE,
    buyers BIGINT, model_version VARCHAR, horizon_days INTEGER, transformer_buyers DOUBLE,
    transformer_units DOUBLE
)
"""


TRANSFORMER_TRAINING_DDL = """
CREATE OR REPLACE TABLE transformer_training (
    model VARCHAR, model_version VARCHAR, stopped VARCHAR, reproducible BOOLEAN, summary VARCHAR
)
"""
"""One row per Transformer behind the plan: ``pipeline`` (the champion preference model) and
``as_of`` (the valuation's model trained before the oldest past window); ``summary`` is the JSON
of :meth:`launch_pipeline.model.training.TrainResult.summary`."""


PREFERENCE_TABLES_DDL = (
    """
CREATE OR REPLACE TABLE candidate_preferences (
    item_id VARCHAR, expected_buyers DOUBLE, expected_buyers_model DOUBLE,
    expected_units_model DOUBLE, max_r DOUBLE, users_scored BIGINT, audience_kept INTEGER,
    model_version VARCHAR, horizon_days INTEGER
)
""",
    """
CREATE OR REPLACE TABLE candidate_audiences (
    item_id VARCHAR, user_id VARCHAR, r DOUBLE, r_model DOUBLE, audience_rank INTEGER,
    model_version VARCHAR, horizon_days INTEGER
)
""",
    """
CREATE OR REPLACE TABLE user_top_candidates (
    user_id VARCHAR, item_id VARCHAR, r DOUBLE, p_next DOUBLE, rank_for_user INTEGER,
    model_version VARCHAR, horizon_days INTEGER, r_model DOUBLE
)
""",
)


@dataclass(frozen=True)
class StoredPreferences:
    """What :func:`store_preferences` wrote."""

    users: int
    candidates: int
    audience_kept: int  # users kept per candidate (all of them when fewer were scored)
    audience_rows: int
    top_rows: int
    mean_r: float
    summary: CandidateSummary
    seconds: dict[str, float]  # waiting for batches (scoring), reducing, writing


def _drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a table or view of that name (an older warehouse may have either)."""
    kinds = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchall()
    for (kind,) in kinds:
        con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {name}")


def store_preferences(
    con: duckdb.DuckDBPyConnection,
    batches: Iterable[ScoredBatch],
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    user_units: np.ndarray,
    model_version: str,
    horizon_days: int,
    audience_kept: int,
    top_n: int = TOP_N,
) -> StoredPreferences:
    """Store what the plan needs from the streamed r_ij batches
    (:func:`launch_pipeline.purchase_scoring.purchase_probabilities`), in one transaction:

    * ``candidate_preferences``: per candidate, ``expected_buyers`` (``sum_i r_ij``), the
      Transformer's ``expected_buyers_model`` (``sum_i r_model_ij``) and
      ``expected_units_model`` (``sum_i r_model_ij x user_units_i``), ``max_r``, the users
      scored and kept;
    * ``candidate_audiences``: each candidate's best ``audience_kept`` users by ``r``
      (``audience_rank`` 1 = best; ties to the lower ``user_id``);
    * ``user_top_candidates``: each user's best ``top_n`` candidates (``rank_for_user``).

    Reduced batch by batch in numpy (:mod:`launch_pipeline.preference_summary`): no users x
    candidates table is written, and the table of every pair of older versions
    (``user_preferences``) is dropped. ``user_units``: each scored user's mean units per
    purchase line (1 when unknown)."""
    import pyarrow as pa

    items = pa.array([str(i) for i in item_ids], pa.string())
    n_c = len(items)
    units = np.asarray(user_units, dtype=np.float64)
    reducer = CandidateReducer(n_c, max(1, int(audience_kept)))
    top_rows = 0
    seconds = {"scoring": 0.0, "reducing": 0.0, "writing": 0.0}
    clock = time.perf_counter()

    def lap(what: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[what] += now - clock
        clock = now

    def prepare(b: ScoredBatch):
        """The numpy work of one batch (run in a worker thread: numpy releases the GIL)."""
        n = len(b)
        sl = slice(b.start, b.start + n)
        part = reducer.prepare(b.start, b.r, b.r_model, units[sl])
        cols, ranks = user_top(b.r, top_n)
        t = cols.shape[1]
        if n == 0 or t == 0:
            return part, None
        users = pa.array([str(u) for u in user_ids[sl]], pa.string())
        top = pa.table(
            {
                "user_id": pa.DictionaryArray.from_arrays(
                    pa.array(np.repeat(np.arange(n, dtype=np.int32), t)), users
                ),
                "item_id": pa.DictionaryArray.from_arrays(
                    pa.array(cols.astype(np.int32).ravel()), items
                ),
                "r": np.take_along_axis(b.r, cols, axis=1).ravel(),
                "p_next": np.take_along_axis(b.p, cols, axis=1).ravel(),
                "rank_for_user": np.ascontiguousarray(ranks).ravel(),
                "r_model": np.take_along_axis(b.r_model, cols, axis=1).ravel(),
            }
        )
        return part, top

    def absorb(future) -> None:
        nonlocal top_rows
        part, top = future.result()
        reducer.absorb(part)
        lap("reducing")
        if top is not None:
            _append(
                con,
                "user_top_candidates",
                top,
                "user_id, item_id, r, p_next, rank_for_user, $version, $horizon, r_model",
                model_version,
                horizon_days,
            )
            top_rows += top.num_rows
        lap("writing")

    with replace_atomically(con), ThreadPoolExecutor(max_workers=PREPARE_THREADS) as pool:
        _drop_relation(con, "user_top_candidates")
        _drop_relation(con, "user_preferences")
        for ddl in PREFERENCE_TABLES_DDL:
            con.execute(ddl)
        lap("writing")
        pending: deque = deque()
        for b in batches:
            lap("scoring")
            pending.append(pool.submit(prepare, b))
            if len(pending) > PREPARE_THREADS:
                absorb(pending.popleft())
        while pending:
            absorb(pending.popleft())
        lap("scoring")
        summary = reducer.result()
        lap("reducing")
        kept = np.arange(summary.k)[None, :] < summary.audience_count[:, None]
        cand, rank = np.nonzero(kept)
        users_at = summary.audience_users[cand, rank]
        _append(
            con,
            "candidate_audiences",
            pa.table(
                {
                    "item_id": pa.DictionaryArray.from_arrays(
                        pa.array(cand.astype(np.int32)), items
                    ),
                    "user_id": pa.array([str(u) for u in user_ids[users_at]], pa.string()),
                    "r": summary.audience_r[cand, rank],
                    "r_model": summary.audience_r_model[cand, rank],
                    "audience_rank": (rank + 1).astype(np.int32),
                }
            ),
            "item_id, user_id, r, r_model, audience_rank, $version, $horizon",
            model_version,
            horizon_days,
        )
        best = np.where(summary.audience_count > 0, summary.audience_r[:, 0], np.nan)
        _append(
            con,
            "candidate_preferences",
            pa.table(
                {
                    "item_id": items,
                    "expected_buyers": summary.expected_buyers,
                    "expected_buyers_model": summary.expected_buyers_model,
                    "expected_units_model": summary.expected_units_model,
                    "max_r": best.astype(np.float64),
                    "users_scored": np.full(n_c, summary.users, dtype=np.int64),
                    "audience_kept": np.full(n_c, summary.k, dtype=np.int32),
                }
            ),
            "item_id, expected_buyers, expected_buyers_model, expected_units_model, "
            "CASE WHEN isnan(max_r) THEN NULL ELSE max_r END, users_scored, audience_kept, "
            "$version, $horizon",
            model_version,
            horizon_days,
        )
    lap("writing")
    return StoredPreferences(
        users=summary.users,
        candidates=n_c,
        audience_kept=min(summary.k, summary.users),
        audience_rows=int(len(cand)),
        top_rows=top_rows,
        mean_r=summary.mean_r,
        summary=summary,
        seconds={k: round(v, 2) for k, v in seconds.items()},
    )


def _append(con, table: str, arrow_table, select: str, version: str, horizon: int) -> None:
    """Insert an Arrow table into ``table`` (``select``: its columns in table order, with
    ``$version`` and ``$horizon`` for the model version and horizon)."""
    view = f"_{table}_batch"
    con.register(view, arrow_table)
    try:
        con.execute(
            f"INSERT INTO {table} SELECT {select} FROM {view}",
            {"version": version, "horizon": int(horizon)},
        )
    finally:
        con.unregister(view)


USER_UNITS_SQL = """
SELECT user_id, avg(quantity) AS units FROM clean_events
WHERE event_type = 'purchase' AND quantity > 0 GROUP BY 1
"""


def user_units(con: duckdb.DuckDBPyConnection, user_ids) -> np.ndarray:
    """Each user's mean units per purchase line (1 for a user without one), in order."""
    df = con.execute(USER_UNITS_SQL).df()
    per_user = pd.Series(df["units"].to_numpy(dtype=float), index=df["user_id"].astype(str))
    return per_user.reindex([str(u) for u in user_ids]).fillna(1.0).to_numpy(dtype=float)


def audience_kept(settings: Settings) -> int:
    """Users kept per candidate: the setting, and at least what the configured plan needs."""
    p = settings.planning
    need = audience_pool_needed(p.slots, p.audience_size, p.max_promotions_per_user)
    return max(int(settings.audience_kept), need, 1)


def score_preferences(
    settings: Settings, con: duckdb.DuckDBPyConnection, store: ModelStore | None = None
) -> dict:
    """r_ij for every active user (an interaction in the last ``ACTIVE_DAYS`` days) and candidate,
    stored as what the plan needs (:func:`store_preferences`).

    With past launches in the history, r_ij is calibrated on who really bought them
    (:class:`launch_pipeline.calibration.PurchaseCalibration`, fitted by
    :func:`calibrate_on_past_launches`); ``r_model`` keeps the uncalibrated
    ``1 - exp(-n_i p_ij c_j)``. User vectors come from the cache of the model version where a
    user's sequence is unchanged since the last run (:mod:`launch_pipeline.user_vector_cache`);
    scored in batches of users, float32: memory does not grow with users x candidates. The
    model is the champion of ``store`` (default: the local store under
    ``settings.models_dir``)."""
    version = champion_or_fail(store or LocalModelStore(settings.models_dir))
    model, meta = load_version(version)
    shop = load_shop_data(con, meta["item_ids"], meta["attribute_vocab"])
    as_of = np.datetime64(shop.as_of, "us")
    flat = shop.flat_sequences()
    active = np.flatnonzero((as_of - flat.last_ts()) <= np.timedelta64(ACTIVE_DAYS, "D"))
    horizon = settings.planning.horizon_days
    calibration, history, as_of_training = calibrate_on_past_launches(
        con,
        model,
        shop,
        horizon,
        as_of_budget_s=settings.model_time_budget_s * AS_OF_BUDGET_SHARE,
        as_of_work_gcells=settings.model_work_gcells * AS_OF_BUDGET_SHARE,
    )
    n_c = len(shop.candidates)
    active_ids = [str(u) for u in shop.user_ids[active]]
    user_x = similar = None
    if calibration is not None and len(active) and n_c:
        plan_start = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
        known = user_activity(con, plan_start).reindex(active_ids)
        user_x = user_features_matrix(
            interaction_rates(shop, horizon)[active],
            known["items_touched"].fillna(0.0).to_numpy(),
            known["recency_days"].fillna(0.0).to_numpy(),
        )
        similar = SimilarPurchases(
            load_history(con), shop.candidates[["item_id", "title"]], active_ids, plan_start
        )
    t0 = time.perf_counter()
    encoded = encode_users(
        model, version.label, shop.user_ids, flat, active, settings.user_vectors_dir
    )
    encode_seconds = time.perf_counter() - t0
    batches = purchase_probabilities(
        model,
        shop,
        active,
        horizon,
        calibration=calibration,
        user_x=user_x,
        similar=similar,
        user_vecs=encoded.vectors,
    )
    t0 = time.perf_counter()
    stored = store_preferences(
        con,
        batches,
        shop.user_ids[active],
        shop.candidates["item_id"].to_numpy(),
        user_units(con, active_ids),
        version.label,
        horizon,
        audience_kept(settings),
    )
    score_seconds = time.perf_counter() - t0
    _store_history_buyers(con, history, version.label, horizon)
    training = {"pipeline": pipeline_training(meta), "as_of": as_of_training}
    _store_transformer_training(con, training, version.label)
    return {
        "model_version": version.label,
        "users_scored": int(len(active)),
        "users_known": int(len(shop.user_ids)),
        "users_encoded": encoded.encoded,
        "user_vectors_reused": encoded.reused,
        "user_vector_cache_note": encoded.cache_note,
        "encode_seconds": round(encode_seconds, 2),
        "score_and_store_seconds": round(score_seconds, 2),
        "candidates": int(n_c),
        "audience_kept": stored.audience_kept,
        "audience_rows": stored.audience_rows,
        "user_top_rows": stored.top_rows,
        "mean_r": stored.mean_r,
        "as_of": shop.as_of,
        "horizon_days": horizon,
        "past_launches_scored": int(len(history)),
        "calibration": calibration.to_dict() if calibration is not None else None,
        "transformer_training": training,
    }


def pipeline_training(meta: dict) -> dict:
    """How the champion's training ended, from its model-store metadata (a version saved before
    the work cap existed has only ``epochs`` and ``stopped``)."""
    if meta.get("training"):
        return dict(meta["training"])
    stopped = meta.get("stopped")
    return {
        "epochs": meta.get("epochs"),
        "best_epoch": meta.get("best_epoch"),
        "stopped": stopped,
        "reproducible": stopped_reproducibly(stopped),
        "train_seconds": meta.get("train_seconds"),
    }


def _store_transformer_training(con, training: dict, version: str) -> None:
    import json

    con.execute(TRANSFORMER_TRAINING_DDL)
    for name, summary in training.items():
        if summary is None:
            continue
        con.execute(
            "INSERT INTO transformer_training VALUES (?, ?, ?, ?, ?)",
            [
                name,
                version,
                summary.get("stopped"),
                bool(summary.get("reproducible")),
                json.dumps(summary, default=str),
            ],
        )


def calibrate_on_past_launches(
    con: duckdb.DuckDBPyConnection,
    model,
    shop,
    horizon: int,
    max_users: int = MAX_REPLAY_USERS,
    as_of_budget_s: float = 0.0,
    as_of_work_gcells: float = 0.0,
) -> tuple[PurchaseCalibration | None, pd.DataFrame, dict | None]:
    """Score the products launched in every past launch window of the demand model
    (:func:`launch_pipeline.demand.launch_windows`) as candidates would have been scored at the
    window start (attributes known then, users' histories up to then), fit the purchase
    calibration on who really bought them in the window, and return it with the past launches'
    expected buyers ``sum_i r_ij`` (calibrated when possible) and real buyers, and how the
    as-of Transformer's training ended (``None`` when none was trained).

    Bounded: a shop with more than ``max_users`` users is replayed on a deterministic sample of
    about ``max_users`` of them (by a hash of the id, the same users in every window); the fit
    is then on the sample's pairs and the expected and real buyers are the sample's, scaled
    up by the sampling share.

    With ``as_of_budget_s > 0`` a second Transformer is trained on the behaviour before the
    oldest window's start (:mod:`launch_pipeline.transformer_signal`) and scores every past
    launch for the demand model (``transformer_buyers``, ``transformer_units``): a model that
    never saw them sell, unlike ``model``; it stops on ``as_of_work_gcells`` (its work cap)
    with ``as_of_budget_s`` as a safety stop."""
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
    n_users = len(shop.user_ids)
    fraction = max_users / n_users if n_users > max_users else None
    scale = 1.0 / fraction if fraction else 1.0
    blocks, meta = [], []
    as_of_model = (
        train_as_of(
            con,
            shop,
            catalog_launched,
            windows[-1][0],
            as_of_budget_s,
            sample_fraction=fraction,
            work_gcells=as_of_work_gcells,
        )
        if windows and as_of_budget_s > 0
        else None
    )
    units_lines = hist.sales[hist.sales["units"] > 0]
    for start, end in windows:
        cohort = items[(items["launched_at"] >= start) & (items["launched_at"] < end)]
        ids = [str(i) for i in cohort["item_id"] if str(i) in index]
        if not ids:
            continue
        as_of = np.datetime64(start.to_datetime64(), "us")
        users = users_as_of(con, shop, start, horizon, sample_fraction=fraction)
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
        signal = (np.full(len(ids), np.nan), np.full(len(ids), np.nan))
        if as_of_model is not None:
            before = units_lines[units_lines["ts"] < start]
            per_user = before.groupby(before["user_id"].astype(str))["units"].mean()
            units = per_user.reindex([str(u) for u in shop.user_ids[users.rows]]).fillna(1.0)
            signal = score_past_launches(
                as_of_model, shop, users, rows, units.to_numpy(dtype=float), scale
            )
        meta.append(
            (start, ids, cohort.set_index(cohort["item_id"].astype(str))["launched_at"], signal)
        )
    calibration = PurchaseCalibration.fit(blocks) if blocks else None
    frames = []
    for (user_x, p, conv, similar, bought), (start, ids, launched, signal) in zip(
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
                    "expected_buyers": r.sum(axis=0) * scale,
                    "buyers": np.round(bought.sum(axis=0) * scale).astype(np.int64),
                    "transformer_buyers": signal[0],
                    "transformer_units": signal[1],
                }
            )
        )
    history = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=[
                "window_start",
                "item_id",
                "launched_at",
                "expected_buyers",
                "buyers",
                "transformer_buyers",
                "transformer_units",
            ]
        )
    )
    return calibration, history, (as_of_model.training if as_of_model is not None else None)


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
    sample_fraction: float | None = None,
) -> UsersAsOf:
    """The users as ``user_sequence_steps`` and :func:`interaction_rates` would have seen them at
    ``as_of``: their last ``max_len`` steps before it (``features.build_user_sequences`` with
    ``as_of``), active ones only (a step in the ``ACTIVE_DAYS`` before it), and their rate over
    those steps. Built from ``clean_events``, because ``user_sequence_steps`` keeps only each user's
    latest steps: a heavy buyer's history before an older date is not in it.
    ``sample_fraction`` keeps a deterministic share of the users (by a hash of the id)."""
    table = "_users_as_of"
    build_user_sequences(
        con,
        max_len,
        as_of=as_of.to_pydatetime(),
        table=table,
        temporary=True,
        sample_fraction=sample_fraction,
    )
    try:
        flat = read_sequences(con, table, shop.item_ids[1:])
        info = con.execute(
            f"SELECT user_id, count(*) AS n_steps, epoch_us(min(ts)) AS first_us, "
            f"epoch_us(max(ts)) AS last_us FROM {table} GROUP BY user_id ORDER BY user_id"
        ).df()
    finally:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    info = info.set_index(info["user_id"].astype(str))
    ids = pd.Index([str(u) for u in flat.user_ids])
    meta = info.reindex(ids)
    as_of_us = pd.Timestamp(as_of).value // 1000
    active_since = as_of_us - ACTIVE_DAYS * 86_400_000_000
    row = pd.Index([str(u) for u in shop.user_ids]).get_indexer(ids)
    keep = np.flatnonzero((row >= 0) & (meta["last_us"].to_numpy() >= active_since))
    activity = user_activity(con, as_of).reindex(ids[keep])
    window = np.maximum(
        (as_of_us - meta["first_us"].to_numpy(dtype=np.int64)[keep]) / 86_400_000_000,
        min_window_days,
    )
    seqs, evs = flat.split(flat.items), flat.split(flat.events)
    return UsersAsOf(
        row[keep].astype(np.int64),
        [seqs[k] for k in keep],
        [evs[k] for k in keep],
        meta["n_steps"].to_numpy(dtype=float)[keep] / window * horizon,
        activity["items_touched"].to_numpy(dtype=float),
        activity["recency_days"].to_numpy(dtype=float),
    )


def _store_history_buyers(con, history: pd.DataFrame, version: str, horizon: int) -> None:
    con.execute(LAUNCH_HISTORY_BUYERS_DDL)
    if history.empty:
        return
    con.register("_hist_buyers_df", history)
    try:
        con.execute(
            "INSERT INTO launch_history_buyers SELECT window_start, item_id, launched_at, "
            "expected_buyers, buyers, ? AS model_version, ? AS horizon_days, transformer_buyers, "
            "transformer_units FROM _hist_buyers_df",
            [version, horizon],
        )
    finally:
        con.unregister("_hist_buyers_df")
