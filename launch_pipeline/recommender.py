"""The shop's recommender: from warehouse tables to model inputs, and from the model to r_ij.

* :func:`load_shop_data` turns ``item_features`` and ``user_sequences`` into the integer
  inputs of :mod:`launch_pipeline.model` (catalog items ``1..n``; attributes ``category=..``,
  ``brand=..``, ``price_band=..`` and the words of the title, ``word=..``, for the words found in
  at least ``MIN_WORD_PRODUCTS`` catalog titles; event types view=1, cart=2, purchase=3). Launch
  candidates get attribute rows through the same vocabulary, so the model scores them from
  attributes alone, and a new product shares words with the old ones it resembles
  (``JUMBO BAG`` ..., ``WALL ART`` ...).
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
import re
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


MIN_WORD_PRODUCTS = 2
MAX_TITLE_WORDS = 8
STOP_WORDS = frozenset({
    "a", "an", "and", "the", "of", "for", "in", "on", "with", "to", "by", "from", "set", "sets",
    "pack", "box", "assorted", "asst", "design", "small", "large", "medium", "mini", "big", "new",
})  # fmt: skip
_WORD_RE = re.compile(r"[^\W\d_]{3,}")


def title_words(title) -> list[str]:
    """The distinct words of a title (lower case, letters only, 3+ letters, no stop words),
    first ``MAX_TITLE_WORDS`` in order."""
    if title is None or (isinstance(title, float) and np.isnan(title)):
        return []
    words = [w for w in _WORD_RE.findall(str(title).lower()) if w not in STOP_WORDS]
    return list(dict.fromkeys(words))[:MAX_TITLE_WORDS]


def _attribute_values(row, words: set[str] | None = None) -> list[str]:
    values = [f"{c}={row[c]}" for c in ATTRIBUTE_COLUMNS if pd.notna(row[c])]
    if words is not None:
        values += [f"word={w}" for w in title_words(row.get("title")) if w in words]
    return values


def _catalog_words(titles) -> set[str]:
    counts: dict[str, int] = {}
    for t in titles:
        for w in title_words(t):
            counts[w] = counts.get(w, 0) + 1
    return {w for w, n in counts.items() if n >= MIN_WORD_PRODUCTS}


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
    # a trained model's vocabulary already holds the words it knows
    words = (
        _catalog_words(catalog["title"])
        if attribute_vocab is None
        else {str(a)[5:] for a in attribute_vocab if str(a).startswith("word=")}
    )
    mapping = {
        index[r.item_id]: _attribute_values(r._asdict(), words) for r in catalog.itertuples()
    }
    attrs, vocab = attributes_matrix(mapping, len(catalog), vocab=attribute_vocab)
    cand_map = {
        k + 1: _attribute_values(r._asdict(), words) for k, r in enumerate(cands.itertuples())
    }
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


def _softmax_parts(model, shop: ShopData):
    from launch_pipeline.model.training import catalog_vectors, item_vectors

    cat_vecs = catalog_vectors(model)[1:]
    cand_vecs = (
        item_vectors(model, shop.candidate_attributes, None)
        if len(shop.candidates)
        else np.zeros((0, cat_vecs.shape[1]), dtype=np.float32)
    )
    return np.vstack([cat_vecs, cand_vecs]).astype(np.float32)


def next_probabilities(
    model,
    shop: ShopData,
    sequences: list[np.ndarray],
    event_types: list[np.ndarray],
    item_vecs: np.ndarray,
    included: bool,
    batch_size: int = 4096,
) -> np.ndarray:
    """``p_ij``: probability that user ``i``'s next interaction is with item ``j`` (given by its
    vector), softmax over the catalog and all candidates (``included``: the scored items are the
    candidates), plus the scored item itself when it is not among them. ``(n_users, n_items)``."""
    from launch_pipeline.model.training import user_vectors

    all_vecs = _softmax_parts(model, shop)
    n_users = len(sequences)
    out = np.zeros((n_users, len(item_vecs)))
    for start in range(0, n_users, batch_size):
        sl = slice(start, min(start + batch_size, n_users))
        uv = user_vectors(model, sequences[sl], event_types[sl])
        logits = uv @ all_vecs.T
        own = uv @ item_vecs.T
        top = np.maximum(logits.max(axis=1, keepdims=True), own.max(axis=1, keepdims=True))
        z = np.exp(logits - top).sum(axis=1, keepdims=True)
        ex = np.exp(own - top)
        out[sl] = ex / (z if included else z + ex)
    return out


def category_conversion(shop: ShopData, categories) -> np.ndarray:
    share = category_purchase_share(shop)
    return np.array([share.get(c, share["*"]) for c in categories], dtype=float)


def purchase_probabilities(
    model,
    shop: ShopData,
    user_rows: np.ndarray,
    horizon_days: int,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """``(r, p)`` arrays of shape ``(len(user_rows), n_candidates)``: purchase probability within
    the horizon and next-interaction probability, for the given user rows of ``shop``."""
    from launch_pipeline.model.training import item_vectors

    n_c = len(shop.candidates)
    if n_c == 0 or len(user_rows) == 0:
        return np.zeros((len(user_rows), n_c)), np.zeros((len(user_rows), n_c))
    cand_vecs = item_vectors(model, shop.candidate_attributes, None).astype(np.float32)
    p = next_probabilities(
        model,
        shop,
        [shop.data.sequences[u] for u in user_rows],
        [shop.data.event_types[u] for u in user_rows],
        cand_vecs,
        included=True,
        batch_size=batch_size,
    )
    rates = interaction_rates(shop, horizon_days)[user_rows]
    conv = category_conversion(shop, shop.candidates["category"])
    return 1.0 - np.exp(-rates[:, None] * p * conv[None, :]), p


@dataclass
class UsersAsOf:
    """Users as they were at some past time: their last steps before it (active ones only)."""

    rows: np.ndarray  # user rows of the shop
    sequences: list[np.ndarray]
    event_types: list[np.ndarray]
    rates: np.ndarray  # expected interactions over the horizon, from their rate up to as_of
    items_touched: np.ndarray  # distinct items viewed, carted or bought before as_of
    recency_days: np.ndarray  # days from their last event to as_of

    def user_features(self) -> np.ndarray:
        return user_features_matrix(self.rates, self.items_touched, self.recency_days)


def user_features_matrix(rates, items_touched, recency_days) -> np.ndarray:
    """Per user: log expected interactions, log(1 + distinct items touched), log(1 + days since
    the last event)."""
    return np.column_stack(
        [
            np.log(np.maximum(np.asarray(rates, dtype=float), 1e-6)),
            np.log1p(np.maximum(np.asarray(items_touched, dtype=float), 0.0)),
            np.log1p(np.maximum(np.asarray(recency_days, dtype=float), 0.0)),
        ]
    )


CALIBRATION_FEATURES = (
    "log_rate",
    "log_items_touched",
    "log_recency_days",
    "log_p",
    "log_category_conversion",
    "log_similar_purchases",
)


@dataclass
class PurchaseCalibration:
    """Logistic calibration of purchase probabilities on past launches::

        r_ij = sigmoid(b0 + b1 log n_i + b2 log(1 + items_i) + b3 log(1 + recency_i)
                       + b4 log p_ij + b5 log c_j + b6 log(1 + s_ij))

    with ``n_i`` the user's expected interactions over the horizon (their recent rate),
    ``items_i`` the distinct products they touched and ``recency_i`` the days since their last
    event, from their whole history (on invoice-line data one big basket makes a high rate;
    customers who buy across the range are the ones who try a new product), ``p_ij`` the model's next-interaction probability of the (attribute-only) item and
    ``c_j`` its category's purchase share, and ``s_ij`` how often user ``i`` bought the products
    whose titles are most similar to ``j``'s (``launch_pipeline.demand.similar_purchases``).
    Fitted on who really bought the products launched in past windows, scored as they were at
    the window start (see ``scoring.py``)."""

    intercept: float
    coef: tuple[float, ...]
    pairs: int
    positives: int

    @staticmethod
    def features(
        user_x: np.ndarray, p: np.ndarray, conv: np.ndarray, similar: np.ndarray
    ) -> np.ndarray:
        n_u, n_i = p.shape
        return np.column_stack(
            [
                np.repeat(user_x, n_i, axis=0),
                np.log(np.maximum(p, 1e-12)).ravel(),
                np.tile(np.log(np.maximum(conv, 1e-6)), n_u),
                np.log1p(np.maximum(similar, 0.0)).ravel(),
            ]
        )

    def apply(
        self, user_x: np.ndarray, p: np.ndarray, conv: np.ndarray, similar: np.ndarray
    ) -> np.ndarray:
        if p.size == 0:
            return np.zeros_like(p)
        z = self.intercept + self.features(user_x, p, conv, similar) @ np.asarray(self.coef)
        return (1.0 / (1.0 + np.exp(-z))).reshape(p.shape)

    @classmethod
    def fit(cls, blocks: list[tuple]):
        """``blocks``: ``(user features, p, conv, similar, bought)`` per past window, ``bought``
        a boolean ``(n_users, n_items)``. ``None`` without any buyer (nothing to learn from)."""
        from sklearn.linear_model import LogisticRegression

        x = np.vstack([cls.features(u, p, c, s) for u, p, c, s, _ in blocks])
        y = np.concatenate([b.ravel() for *_, b in blocks]).astype(int)
        if y.sum() == 0 or y.sum() == len(y):
            return None
        reg = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
        return cls(
            float(reg.intercept_[0]), tuple(float(c) for c in reg.coef_[0]), len(y), int(y.sum())
        )

    def to_dict(self) -> dict:
        return {
            "intercept": self.intercept,
            **{f"coef_{n}": c for n, c in zip(CALIBRATION_FEATURES, self.coef, strict=True)},
            "pairs": self.pairs,
            "buyers": self.positives,
        }


def attributes_known_at_launch(
    shop: ShopData, item_rows: np.ndarray, catalog_launched_at: np.ndarray, as_of
) -> np.ndarray:
    """Attribute rows of catalog items ``item_rows`` as they would have been known at ``as_of``:
    a word (``word=..``) is kept only if ``MIN_WORD_PRODUCTS`` catalog products with that word
    were launched before ``as_of``, any other attribute (brand, category, price band) if one
    was. That is how a candidate is seen (its new words and a brand-new stock family are
    unknown to the model), so a past launch scored this way is comparable with a candidate.

    ``catalog_launched_at``: ``(n_items + 1,)`` datetime64 launch times of the catalog rows
    (NaT = on sale before the data starts)."""
    attrs = shop.data.item_attributes
    launched = np.asarray(catalog_launched_at, dtype="datetime64[us]")
    old = np.datetime64("1900-01-01", "us")
    times = np.where(np.isnat(launched), old, launched)
    names = {v: str(k) for k, v in shop.attribute_vocab.items()}
    rows, cols = np.nonzero(attrs[1:] > 0)
    rows = rows + 1
    by_attr = pd.DataFrame({"a": attrs[rows, cols], "t": times[rows]}).groupby("a")["t"]
    sorted_times = {int(a): np.sort(g.to_numpy()) for a, g in by_attr}
    before = np.datetime64(as_of, "us")
    out = np.zeros((len(item_rows), attrs.shape[1]), dtype=np.int64)
    for k, j in enumerate(np.asarray(item_rows, dtype=np.int64)):
        kept = [
            a
            for a in attrs[j]
            if a > 0
            and np.searchsorted(sorted_times.get(int(a), np.array([], dtype=times.dtype)), before)
            >= (MIN_WORD_PRODUCTS if names.get(int(a), "").startswith("word=") else 1)
        ]
        out[k, : len(kept)] = kept
    return out
