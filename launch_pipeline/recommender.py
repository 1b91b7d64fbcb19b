"""The shop's recommender: from warehouse tables to model inputs, and from the model to r_ij.

* :func:`load_shop_data` turns ``item_features`` and ``user_sequences`` into the integer
  inputs of :mod:`launch_pipeline.model` (catalog items ``1..n``; attributes ``category=..``,
  ``brand=..``, ``price_band=..``; event types view=1, cart=2, purchase=3). Launch candidates get
  attribute rows through the same vocabulary, so the model scores them from attributes alone.
* :func:`temporal_split` holds out the last ``eval_days`` of behaviour: the model is trained on
  what happened before, and judged on what each user did next (full ranking over the catalog)
  and on which products each user bought in the held-out days (precision/recall/F1 at 10).
* :func:`purchase_probabilities` turns model scores into ``r_ij``: the probability that user
  ``i`` buys candidate ``j`` within the horizon,
  ``r_ij = 1 - exp(-n_i * p_ij * c_j)`` with ``n_i`` the user's expected number of interactions
  over the horizon (their observed rate), ``p_ij`` the model's softmax probability that the next
  interaction is with ``j`` (over the catalog and all candidates, so a candidate competes with
  what is on sale) and ``c_j`` the purchase share of interactions in ``j``'s category.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.model.data import EvalSplit, SequenceData, attributes_matrix

EVENT_TYPE_IDS = {"view": 1, "cart": 2, "purchase": 3}
PURCHASE = EVENT_TYPE_IDS["purchase"]
ATTRIBUTE_COLUMNS = ("category", "brand", "price_band")


@dataclass
class ShopData:
    data: SequenceData  # all users' sequences over the catalog
    user_ids: np.ndarray  # (n_users,) str
    step_ts: list[np.ndarray]  # per user, datetime64[us] of each step
    item_ids: np.ndarray  # (n_items + 1,) str, [0] = ""
    item_category: np.ndarray  # (n_items + 1,) str
    attribute_vocab: dict
    candidates: pd.DataFrame  # item_id, title, category, brand, price, price_band
    candidate_attributes: np.ndarray  # (n_candidates, n_slots)
    as_of: dt.datetime

    @property
    def n_items(self) -> int:
        return self.data.n_items


def _attribute_values(row) -> list[str]:
    return [f"{c}={row[c]}" for c in ATTRIBUTE_COLUMNS if pd.notna(row[c])]


def load_shop_data(
    con: duckdb.DuckDBPyConnection,
    item_ids: list[str] | None = None,
    attribute_vocab: dict[str, int] | None = None,
) -> ShopData:
    """Model inputs from the warehouse. With ``item_ids``/``attribute_vocab`` (a trained model's
    vocabulary) items and attributes are numbered as that model knows them; products it does not
    know are left out of the sequences, attributes it does not know are ignored."""
    items = con.execute(
        "SELECT item_id, category, brand, price_band, is_candidate, title, price "
        "FROM item_features ORDER BY is_candidate, item_id"
    ).df()
    catalog = items[~items["is_candidate"]].reset_index(drop=True)
    cands = items[items["is_candidate"]].reset_index(drop=True)
    if catalog.empty:
        raise ValueError("item_features has no catalog products: materialize product_catalog first")
    if item_ids is not None:
        known = catalog.set_index("item_id")
        catalog = pd.DataFrame({"item_id": list(item_ids)}).join(known, on="item_id")
    index = {item: k + 1 for k, item in enumerate(catalog["item_id"])}
    mapping = {index[r.item_id]: _attribute_values(r._asdict()) for r in catalog.itertuples()}
    attrs, vocab = attributes_matrix(mapping, len(catalog), vocab=attribute_vocab)
    cand_map = {k + 1: _attribute_values(r._asdict()) for k, r in enumerate(cands.itertuples())}
    cand_attrs, _ = (
        attributes_matrix(cand_map, len(cands), vocab=vocab)
        if len(cands)
        else (np.zeros((1, attrs.shape[1]), dtype=np.int64), vocab)
    )
    cand_attrs = cand_attrs[1:]
    if cand_attrs.shape[1] < attrs.shape[1]:
        cand_attrs = np.pad(cand_attrs, ((0, 0), (0, attrs.shape[1] - cand_attrs.shape[1])))

    seqs = con.execute(
        "SELECT user_id, items, event_types, ts FROM user_sequences ORDER BY user_id"
    ).df()
    users, sequences, events, stamps = [], [], [], []
    for r in seqs.itertuples(index=False):
        idx = np.array([index.get(i, 0) for i in r.items], dtype=np.int64)
        keep = idx > 0
        if not keep.any():
            continue
        users.append(r.user_id)
        sequences.append(idx[keep])
        events.append(np.array([EVENT_TYPE_IDS[e] for e in r.event_types], dtype=np.int64)[keep])
        stamps.append(
            np.asarray(pd.to_datetime(pd.Series(r.ts)).to_numpy(), dtype="datetime64[us]")[keep]
        )
    as_of = con.execute("SELECT max(ts) FROM clean_events").fetchall()[0][0]
    data = SequenceData(
        sequences=sequences,
        event_types=events,
        item_attributes=attrs,
        n_attributes=len(vocab) + 1,
        user_ids=np.array(users, dtype=object),
    )
    return ShopData(
        data=data,
        user_ids=np.array(users, dtype=object),
        step_ts=stamps,
        item_ids=np.array([""] + list(catalog["item_id"]), dtype=object),
        item_category=np.array([""] + list(catalog["category"]), dtype=object),
        attribute_vocab=vocab,
        candidates=cands[["item_id", "title", "category", "brand", "price", "price_band"]],
        candidate_attributes=cand_attrs,
        as_of=pd.Timestamp(as_of).to_pydatetime() if as_of is not None else dt.datetime.now(),
    )


@dataclass
class TemporalSplit:
    cutoff: np.datetime64
    train: SequenceData  # pre-cutoff sequences of users with >= 2 steps
    next_item: EvalSplit  # first new item after the cutoff
    purchase_inputs: list[np.ndarray]  # per evaluated buyer: pre-cutoff items
    purchase_input_events: list[np.ndarray]
    purchase_truth: list[np.ndarray]  # per evaluated buyer: items bought after the cutoff


def temporal_split(shop: ShopData, eval_days: int = 7) -> TemporalSplit:
    cutoff = np.datetime64(
        shop.as_of.replace(hour=0, minute=0, second=0, microsecond=0), "us"
    ) - np.timedelta64(eval_days - 1, "D")
    train_seqs, train_ev = [], []
    users, inputs, in_ev, targets = [], [], [], []
    p_inputs, p_ev, p_truth = [], [], []
    for u, (s, e, t) in enumerate(
        zip(shop.data.sequences, shop.data.event_types, shop.step_ts, strict=True)
    ):
        pre = t < cutoff
        s_pre, e_pre = s[pre], e[pre]
        if len(s_pre) >= 2:
            train_seqs.append(s_pre)
            train_ev.append(e_pre)
        if len(s_pre) == 0 or pre.all():
            continue
        post_items, post_ev = s[~pre], e[~pre]
        new = ~np.isin(post_items, s_pre)
        if new.any():
            users.append(u)
            inputs.append(s_pre)
            in_ev.append(e_pre)
            targets.append(post_items[np.argmax(new)])
        bought = np.unique(post_items[(post_ev == PURCHASE) & new])
        if len(bought):
            p_inputs.append(s_pre)
            p_ev.append(e_pre)
            p_truth.append(bought)
    train = shop.data.with_sequences(train_seqs, train_ev)
    split = EvalSplit(
        users=np.array(users, dtype=np.int64),
        inputs=inputs,
        input_event_types=in_ev,
        targets=np.array(targets, dtype=np.int64),
        notes={"cutoff": str(cutoff), "eval_days": eval_days},
    )
    return TemporalSplit(cutoff, train, split, p_inputs, p_ev, p_truth)


def top_k_items(scores: np.ndarray, exclude: list[np.ndarray], k: int) -> np.ndarray:
    """Top-``k`` item ids per row, never column 0 nor an excluded item."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[:, 0] = -np.inf
    for row, ex in enumerate(exclude):
        s[row, ex] = -np.inf
    k = min(k, s.shape[1] - 1)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def purchase_prf(
    score_fn: Callable[[np.ndarray], np.ndarray],
    split: TemporalSplit,
    k: int = 10,
    batch: int = 2048,
) -> dict[str, float]:
    """Precision, recall and F1 at ``k`` of "the user will buy these" (top-``k`` new items)
    against the items each user really bought after the cutoff, averaged over buyers."""
    n = len(split.purchase_truth)
    if n == 0:
        return {f"precision@{k}": 0.0, f"recall@{k}": 0.0, f"f1@{k}": 0.0, "buyers_evaluated": 0}
    prec, rec = np.zeros(n), np.zeros(n)
    for start in range(0, n, batch):
        idx = np.arange(start, min(n, start + batch))
        top = top_k_items(score_fn(idx), [split.purchase_inputs[i] for i in idx], k)
        for row, i in enumerate(idx):
            hits = np.isin(top[row], split.purchase_truth[i]).sum()
            prec[i] = hits / k
            rec[i] = hits / len(split.purchase_truth[i])
    p, r = float(prec.mean()), float(rec.mean())
    return {
        f"precision@{k}": p,
        f"recall@{k}": r,
        f"f1@{k}": 2 * p * r / (p + r) if p + r > 0 else 0.0,
        "buyers_evaluated": n,
    }


def interaction_rates(
    shop: ShopData, horizon_days: int, min_window_days: float = 7.0
) -> np.ndarray:
    """Expected interactions (steps) of each user over the horizon, from their observed rate."""
    as_of = np.datetime64(shop.as_of, "us")
    out = np.zeros(len(shop.step_ts))
    for u, t in enumerate(shop.step_ts):
        window = max((as_of - t.min()) / np.timedelta64(1, "D"), min_window_days)
        out[u] = len(t) / window * horizon_days
    return out


def category_purchase_share(shop: ShopData) -> dict[str, float]:
    """Purchases per interaction step, by category (and ``"*"`` overall)."""
    flat_items = np.concatenate(shop.data.sequences)
    flat_ev = np.concatenate(shop.data.event_types)
    cats = shop.item_category[flat_items]
    df = pd.DataFrame({"category": cats, "purchase": flat_ev == PURCHASE})
    share = df.groupby("category")["purchase"].mean().to_dict()
    share["*"] = float(df["purchase"].mean()) if len(df) else 0.0
    return share


def purchase_probabilities(
    model,
    shop: ShopData,
    user_rows: np.ndarray,
    horizon_days: int,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """``(r, p)`` arrays of shape ``(len(user_rows), n_candidates)``: purchase probability within
    the horizon and next-interaction probability, for the given user rows of ``shop``."""
    from launch_pipeline.model.training import catalog_vectors, item_vectors, user_vectors

    n_c = len(shop.candidates)
    if n_c == 0 or len(user_rows) == 0:
        return np.zeros((len(user_rows), n_c)), np.zeros((len(user_rows), n_c))
    cat_vecs = catalog_vectors(model)[1:]
    cand_vecs = item_vectors(model, shop.candidate_attributes, None)
    all_vecs = np.vstack([cat_vecs, cand_vecs]).astype(np.float32)
    rates = interaction_rates(shop, horizon_days)[user_rows]
    share = category_purchase_share(shop)
    conv = np.array([share.get(c, share["*"]) for c in shop.candidates["category"]])
    r_out = np.zeros((len(user_rows), n_c))
    p_out = np.zeros((len(user_rows), n_c))
    for start in range(0, len(user_rows), batch_size):
        rows = user_rows[start : start + batch_size]
        uv = user_vectors(
            model, [shop.data.sequences[u] for u in rows], [shop.data.event_types[u] for u in rows]
        )
        logits = uv @ all_vecs.T
        logits -= logits.max(axis=1, keepdims=True)
        ex = np.exp(logits)
        p = ex[:, -n_c:] / ex.sum(axis=1, keepdims=True)
        sl = slice(start, start + len(rows))
        p_out[sl] = p
        r_out[sl] = 1.0 - np.exp(-rates[start : start + len(rows), None] * p * conv[None, :])
    return r_out, p_out
