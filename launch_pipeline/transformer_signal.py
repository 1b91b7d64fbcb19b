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
CHAIN_STEP_SHARE = 0.25
"""Work cap (and time budget) of each later as-of model of the chain, continued from the one
before, as a share of the first one's."""


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
    initial: AsOfModel | None = None,
) -> AsOfModel | None:
    """Train a Transformer on the events before ``as_of`` only, items numbered as ``shop``'s,
    attributes as known at ``as_of`` (``attributes_known_at_launch``); ``None`` when fewer than
    ``MIN_TRAINING_USERS`` users have two steps before it or the budget is 0. Training stops
    on ``work_gcells`` (the work cap, 0 = none) with ``budget_s`` as a safety stop.
    ``initial``: a model as of an earlier date to continue from (see :func:`train_as_of_chain`)."""
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
    result = train_model(
        data,
        config,
        catalog_items=np.union1d(on_sale, np.unique(flat.items)),
        initial_weights=None if initial is None else initial.model.get_weights(),
    )
    return AsOfModel(
        result.model,
        as_of,
        attrs,
        flat.n_users,
        time.perf_counter() - t0,
        result.epochs,
        {**result.summary(), "as_of": str(as_of), "training_users": int(flat.n_users)},
    )


def train_as_of_chain(
    con: duckdb.DuckDBPyConnection,
    shop: ShopData,
    catalog_launched: np.ndarray,
    dates: list[pd.Timestamp],
    budget_s: float,
    work_gcells: float,
    sample_fraction: float | None = None,
) -> dict[pd.Timestamp, AsOfModel]:
    """One as-of model per date (``dates``: the past windows' starts and the plan date), each
    trained on the behaviour before its date only: the oldest from scratch with
    ``work_gcells``, every later one continued from the one before with ``CHAIN_STEP_SHARE``
    of it (its new data is a month or two more of the same shop). So a past window's launches
    are scored by a model as old as the candidates' is at the plan date, at the cost of about
    ``1 + CHAIN_STEP_SHARE x (len(dates) - 1)`` trainings instead of ``len(dates)``. A date with
    too few users gets no model (its launches stay unscored)."""
    out: dict[pd.Timestamp, AsOfModel] = {}
    last: AsOfModel | None = None
    for date in sorted(set(dates)):
        first = last is None
        model = train_as_of(
            con,
            shop,
            catalog_launched,
            date,
            budget_s if first else budget_s * CHAIN_STEP_SHARE,
            sample_fraction=sample_fraction,
            work_gcells=work_gcells if first else work_gcells * CHAIN_STEP_SHARE,
            initial=last,
        )
        if model is not None:
            out[date] = last = model
    return out


def chain_training(models: dict[pd.Timestamp, AsOfModel]) -> dict | None:
    """How the chain's trainings ended, as one summary: the oldest model's, with every link's
    (``chain``), ``reproducible`` only if every link stopped reproducibly, ``stopped`` the
    clock if any link was stopped by it, and the seconds and targets of all links together."""
    from launch_pipeline.model.training_loop import STOPPED_BY_THE_CLOCK

    if not models:
        return None
    links = [models[d].training for d in sorted(models)]
    out = dict(links[0])
    out["chain"] = [
        {
            k: link.get(k)
            for k in ("as_of", "training_users", "epochs_trained", "stopped", "train_seconds")
        }
        for link in links
    ]
    out["reproducible"] = all(bool(link.get("reproducible")) for link in links)
    if any(link.get("stopped") == STOPPED_BY_THE_CLOCK for link in links):
        out["stopped"] = STOPPED_BY_THE_CLOCK
    out["train_seconds"] = float(sum(float(link.get("train_seconds") or 0.0) for link in links))
    out["targets_trained"] = int(sum(int(link.get("targets_trained") or 0) for link in links))
    return out


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
    rows = np.asarray(item_rows, dtype=np.int64)
    return score_items(
        as_of_model,
        shop,
        users,
        as_of_model.item_attributes[rows],
        shop.item_category[rows],
        user_units,
        scale,
    )


def score_candidates(
    as_of_model: AsOfModel,
    shop: ShopData,
    users,
    catalog_launched: np.ndarray,
    user_units: np.ndarray,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(transformer_buyers, transformer_units)`` of ``shop``'s candidates, computed exactly as
    a past launch's are, as if the plan date were one more window start: the same as-of model,
    the candidates' attributes reduced to what that model knew (the rule of
    :func:`launch_pipeline.shop_data.attributes_known_at_launch` at its ``as_of``), ``users``
    as of the plan date. So the demand model applies its Transformer coefficients to the signal
    they were fitted on, not to another model's."""
    from launch_pipeline.shop_data import known_attributes

    attrs = known_attributes(
        shop, shop.candidate_attributes, catalog_launched, as_of_model.as_of.to_datetime64()
    )
    categories = shop.candidates["category"].to_numpy(dtype=object)
    return score_items(as_of_model, shop, users, attrs, categories, user_units, scale)


def score_items(
    as_of_model: AsOfModel,
    shop: ShopData,
    users,
    attributes: np.ndarray,
    categories: np.ndarray,
    user_units: np.ndarray,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(transformer_buyers, transformer_units)`` of items given by their attribute rows
    ``(n, slots)`` and categories, for ``users`` as of some date, by the as-of model: each
    item's next-interaction probability against the as-of model's catalogue (the item itself
    added to the softmax), ``r_ij = 1 - exp(-n_i p_ij c_j)``."""
    import dataclasses

    from launch_pipeline.demand import transformer_features
    from launch_pipeline.model.training import item_vectors
    from launch_pipeline.purchase_scoring import next_probabilities

    n = len(attributes)
    if n == 0 or len(users.sequences) == 0:
        return np.zeros(n), np.zeros(n)
    vecs = item_vectors(as_of_model.model, np.asarray(attributes, dtype=np.int64), None)
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
    conv = conversion_as_of(shop, users.sequences, users.event_types, categories)
    r = -np.expm1(-np.asarray(users.rates, dtype=float)[:, None] * p * conv[None, :])
    return transformer_features(r, user_units, scale)
