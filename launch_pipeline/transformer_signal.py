"""The Transformer's view of a launch, time-honest: what the valuation may learn from.

The demand model (:mod:`launch_pipeline.demand`) is fitted on the shop's past launches and
applied to the candidates. A feature of a past launch must be computed from what was known at
its window start, or the regression learns from information a candidate will never have. The
pipeline's Transformer is trained on everything before the plan date, the past launches' own
sales included, so its scores of them are not honest. This module trains a second, smaller
Transformer (a quarter of the pipeline model's work cap, ``AS_OF_BUDGET_SHARE``) **as of the oldest past window's start** (the behaviour before it, the attributes
and title words known then) and scores every past launch with it; every window starts at or
after that date, so no past launch's own sales were seen. Candidates are scored by the current
model (``user_preferences``), which has likewise never seen them sell.

Signals per item (:func:`launch_pipeline.demand.transformer_features`): log1p of the expected
returning buyers ``sum_i r_ij`` and of their expected units (each buyer weighted by their mean
units per purchase line), ``r_ij = 1 - exp(-n_i p_ij c_j)`` over the users active in the 30
days before the window start, ``n_i`` their rate, ``c_j`` the category's purchase share, both
as of the window start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.shop_data import PURCHASE, ShopData, attributes_known_at_launch, read_sequences

MIN_TRAINING_USERS = 20
AS_OF_BUDGET_SHARE = 0.25
"""The as-of model's work cap and time budget, as a share of the pipeline model's (it trains on
less data, without the kNN blend)."""


@dataclass
class AsOfModel:
    """A Transformer trained on the behaviour before ``as_of`` and the item attribute rows it
    knows (``(n_items + 1, slots)``, attributes known at ``as_of`` only)."""

    model: object
    as_of: pd.Timestamp
    item_attributes: np.ndarray
    training_users: int
    seconds: float
    epochs: int
    training: dict  # TrainResult.summary(): epochs, why training stopped, reproducible, ...


def train_as_of(
    con: duckdb.DuckDBPyConnection,
    shop: ShopData,
    catalog_launched: np.ndarray,
    as_of: pd.Timestamp,
    budget_s: float,
    max_len: int = 200,
    sample_fraction: float | None = None,
    work_gcells: float = 0.0,
) -> AsOfModel | None:
    """Train a Transformer on the events before ``as_of`` only, items numbered as ``shop``'s,
    attributes as known at ``as_of`` (``attributes_known_at_launch``); ``None`` when fewer than
    ``MIN_TRAINING_USERS`` users have two steps before it or the budget is 0. Training stops
    on ``work_gcells`` (the work cap, 0 = none) with ``budget_s`` as a safety stop."""
    from launch_pipeline.features import build_user_sequences
    from launch_pipeline.model.config import ModelConfig
    from launch_pipeline.model.data import SequenceData
    from launch_pipeline.model.training import train_model

    if budget_s <= 0:
        return None
    t0 = time.perf_counter()
    table = "_sequences_as_of"
    build_user_sequences(
        con,
        max_len,
        as_of=as_of.to_pydatetime(),
        table=table,
        temporary=True,
        sample_fraction=sample_fraction,
    )
    try:
        flat = read_sequences(con, table, shop.item_ids[1:], min_steps=2)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    if flat.n_users < MIN_TRAINING_USERS:
        return None
    rows = np.arange(1, shop.n_items + 1)
    known = attributes_known_at_launch(shop, rows, catalog_launched, as_of.to_datetime64())
    attrs = np.vstack([np.zeros((1, known.shape[1]), dtype=np.int64), known])
    launched = np.asarray(catalog_launched, dtype="datetime64[us]")
    on_sale = rows[np.isnat(launched[1:]) | (launched[1:] < np.datetime64(as_of, "us"))]
    data = SequenceData(
        sequences=flat.split(flat.items),
        event_types=flat.split(flat.events),
        item_attributes=attrs,
        n_attributes=shop.data.n_attributes,
        user_ids=flat.user_ids,
        attribute_names=shop.data.attribute_names,
    )
    config = ModelConfig(
        n_event_types=3,
        time_budget_s=budget_s,
        work_gcells=work_gcells,
        seed=42,
        knn_blend=False,
    )
    result = train_model(data, config, catalog_items=np.union1d(on_sale, np.unique(flat.items)))
    return AsOfModel(
        result.model,
        as_of,
        attrs,
        flat.n_users,
        time.perf_counter() - t0,
        result.epochs,
        {**result.summary(), "as_of": str(as_of), "training_users": int(flat.n_users)},
    )


def conversion_as_of(shop: ShopData, sequences, event_types, categories) -> np.ndarray:
    """Purchase share of interactions per category (``categories``: one per scored item), from
    the given users' steps before a past date (falls back to the overall share)."""
    items = np.concatenate(sequences) if len(sequences) else np.zeros(0, dtype=np.int64)
    events = np.concatenate(event_types) if len(event_types) else np.zeros(0, dtype=np.int64)
    df = pd.DataFrame({"c": shop.item_category[items], "p": events == PURCHASE})
    share = df.groupby("c")["p"].mean().to_dict()
    overall = float(df["p"].mean()) if len(df) else 1.0
    return np.array([share.get(c, overall) for c in categories], dtype=float)


def score_past_launches(
    as_of_model: AsOfModel,
    shop: ShopData,
    users,
    item_rows: np.ndarray,
    user_units: np.ndarray,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(transformer_buyers, transformer_units)`` of past launches ``item_rows`` (catalog rows
    of ``shop``) for ``users`` (:class:`launch_pipeline.calibration.UsersAsOf` at the window
    start), scored by the as-of model from the attributes it knew."""
    import dataclasses

    from launch_pipeline.demand import transformer_features
    from launch_pipeline.model.training import item_vectors
    from launch_pipeline.purchase_scoring import next_probabilities

    rows = np.asarray(item_rows, dtype=np.int64)
    vecs = item_vectors(as_of_model.model, as_of_model.item_attributes[rows], None)
    no_candidates = dataclasses.replace(
        shop,
        candidates=shop.candidates.iloc[:0],
        candidate_attributes=shop.candidate_attributes[:0],
    )
    p = next_probabilities(
        as_of_model.model,
        no_candidates,
        users.sequences,
        users.event_types,
        vecs.astype(np.float32),
        False,
    )
    conv = conversion_as_of(shop, users.sequences, users.event_types, shop.item_category[rows])
    r = -np.expm1(-np.asarray(users.rates, dtype=float)[:, None] * p * conv[None, :])
    return transformer_features(r, user_units, scale)
