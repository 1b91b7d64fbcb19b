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
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
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
    flat: FlatSequences | None = None  # the same sequences as flat arrays (vectorised helpers)

    @property
    def n_items(self) -> int:
        return self.data.n_items

    def flat_sequences(self) -> FlatSequences:
        """The sequences as flat arrays (built from the per-user lists when not loaded so)."""
        if self.flat is None:
            self.flat = FlatSequences.from_lists(
                self.user_ids, self.data.sequences, self.data.event_types, self.step_ts
            )
        return self.flat


@dataclass
class FlatSequences:
    """Users' step sequences as flat arrays: user ``u``'s steps are
    ``offsets[u]:offsets[u + 1]`` of ``items`` (catalog index ``1..n``), ``events`` (view=1,
    cart=2, purchase=3) and ``ts`` (datetime64[us]), in time order."""

    user_ids: np.ndarray  # (n_users,) object
    offsets: np.ndarray  # (n_users + 1,) int64
    items: np.ndarray  # (n_steps,) int64
    events: np.ndarray  # (n_steps,) int64
    ts: np.ndarray  # (n_steps,) datetime64[us]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def user_of_step(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths)

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """Per-user views of a flat array."""
        o = self.offsets.tolist()
        return [values[a:b] for a, b in zip(o[:-1], o[1:], strict=True)]

    def first_ts(self) -> np.ndarray:
        return np.minimum.reduceat(self.ts, self.offsets[:-1]) if self.n_users else self.ts[:0]

    def last_ts(self) -> np.ndarray:
        return np.maximum.reduceat(self.ts, self.offsets[:-1]) if self.n_users else self.ts[:0]

    @classmethod
    def from_lists(cls, user_ids, sequences, event_types, stamps) -> FlatSequences:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

        def cat(parts, dtype):
            return np.concatenate(parts).astype(dtype) if len(parts) else np.zeros(0, dtype)

        return cls(
            np.asarray(user_ids, dtype=object),
            offsets,
            cat(sequences, np.int64),
            cat(event_types, np.int64),
            cat(stamps, "datetime64[us]"),
        )


# the steps of a sequences table (user_sequences or the same built as of a past time), items
# numbered through the registered index (unknown items dropped), users in user_id order
_FLAT_SEQUENCES_SQL = """
WITH us AS (
    SELECT row_number() OVER (ORDER BY user_id) - 1 AS u, items, event_types, ts FROM {table}
), flat AS (
    SELECT u, unnest(items) AS item_id, unnest(event_types) AS et, unnest(ts) AS t,
           unnest(range(len(items))) AS pos
    FROM us
)
SELECT f.u, i.k,
       CASE f.et WHEN 'view' THEN 1 WHEN 'cart' THEN 2 WHEN 'purchase' THEN 3 END AS e,
       epoch_us(f.t) AS t
FROM flat f JOIN {index} i ON i.item_id = f.item_id
ORDER BY f.u, f.pos
"""


def read_sequences(
    con: duckdb.DuckDBPyConnection, table: str, item_ids, min_steps: int = 1
) -> FlatSequences:
    """Read a sequences table (``user_id, items, event_types, ts`` lists, as ``user_sequences``)
    into :class:`FlatSequences`, items numbered ``1..n`` in the order of ``item_ids``; items not
    in ``item_ids`` are left out, and users left with fewer than ``min_steps`` steps too.

    The flattening, the item numbering and the ordering run in DuckDB; Python only cuts the
    flat arrays per user."""
    import pyarrow as pa

    index_name = "_read_sequences_items"
    ids = [str(i) for i in item_ids]
    con.register(
        index_name,
        pa.table(
            {
                "item_id": pa.array(ids, pa.string()),
                "k": pa.array(np.arange(1, len(ids) + 1), pa.int64()),
            }
        ),
    )
    try:
        res = con.execute(_FLAT_SEQUENCES_SQL.format(table=table, index=index_name)).fetchnumpy()
    finally:
        con.unregister(index_name)
    users = con.execute(f"SELECT user_id FROM {table} ORDER BY user_id").fetchnumpy()["user_id"]
    u = np.asarray(res["u"], dtype=np.int64)
    ev = res["e"]
    if np.ma.isMaskedArray(ev) and ev.mask.any():
        raise ValueError(f"{table} holds an event type other than view, cart, purchase")
    counts = np.bincount(u, minlength=len(users))
    keep = np.flatnonzero(counts >= max(min_steps, 1))
    items = np.asarray(res["k"], dtype=np.int64)
    events = np.asarray(ev, dtype=np.int64)
    ts = np.asarray(res["t"], dtype=np.int64).view("datetime64[us]")
    if len(keep) < np.count_nonzero(counts):  # drop the steps of users below min_steps
        sel = np.isin(u, keep)
        items, events, ts = items[sel], events[sel], ts[sel]
    offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
    return FlatSequences(np.asarray(users, dtype=object)[keep], offsets, items, events, ts)


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

    flat = read_sequences(con, "user_sequences", catalog["item_id"])
    as_of = con.execute("SELECT max(ts) FROM clean_events").fetchall()[0][0]
    data = SequenceData(
        sequences=flat.split(flat.items),
        event_types=flat.split(flat.events),
        item_attributes=attrs,
        n_attributes=len(vocab) + 1,
        user_ids=flat.user_ids,
    )
    return ShopData(
        data=data,
        user_ids=flat.user_ids,
        step_ts=flat.split(flat.ts),
        item_ids=np.array([""] + list(catalog["item_id"]), dtype=object),
        item_category=np.array([""] + list(catalog["category"]), dtype=object),
        attribute_vocab=vocab,
        candidates=cands[["item_id", "title", "category", "brand", "price", "price_band"]],
        candidate_attributes=cand_attrs,
        as_of=pd.Timestamp(as_of).to_pydatetime() if as_of is not None else dt.datetime.now(),
        flat=flat,
    )


@dataclass
class TemporalSplit:
    cutoff: np.datetime64
    train: SequenceData  # pre-cutoff sequences of users with >= 2 steps
    next_item: EvalSplit  # first new item after the cutoff
    purchase_inputs: list[np.ndarray]  # per evaluated buyer: pre-cutoff items
    purchase_input_events: list[np.ndarray]
    purchase_truth: list[np.ndarray]  # per evaluated buyer: items bought after the cutoff


def _isin(values: np.ndarray, test: np.ndarray) -> np.ndarray:
    """``np.isin`` for non-negative int keys: a lookup table when the key range is moderate
    (numpy's default hashes, several times slower at millions of keys), else sorting."""
    top = int(max(values.max(initial=0), test.max(initial=0)))
    return np.isin(values, test, kind="table" if top < 1 << 28 else "sort")


def temporal_split(shop: ShopData, eval_days: int = 7) -> TemporalSplit:
    """Per user: the steps before the cutoff (``eval_days`` days before the day after the last
    event) train; the first item after it that the user had not touched before it is their
    next-item case, and the new items they bought after it their purchase truth. Vectorised
    over the flat sequences (one pass of numpy, no per-user Python work)."""
    cutoff = np.datetime64(
        shop.as_of.replace(hour=0, minute=0, second=0, microsecond=0), "us"
    ) - np.timedelta64(eval_days - 1, "D")
    f = shop.flat_sequences()
    n_users = f.n_users
    user = f.user_of_step()
    pre = f.ts < cutoff
    n_pre = np.bincount(user[pre], minlength=n_users)
    n_post = f.lengths - n_pre
    pre_offsets = np.concatenate([[0], np.cumsum(n_pre)]).astype(np.int64)
    items_pre, ev_pre = f.items[pre], f.events[pre]

    def pre_of(rows: np.ndarray, values: np.ndarray) -> list[np.ndarray]:
        return [values[pre_offsets[u] : pre_offsets[u + 1]] for u in rows]

    trained = np.flatnonzero(n_pre >= 2)
    train = shop.data.with_sequences(pre_of(trained, items_pre), pre_of(trained, ev_pre))

    # post-cutoff steps of users with steps on both sides; "new": not touched before the cutoff
    width = np.int64(shop.n_items + 1)
    both = (n_pre > 0) & (n_post > 0)
    post = ~pre & both[user]
    post_user, post_items, post_ev = user[post], f.items[post], f.events[post]
    new = ~_isin(post_user * width + post_items, user[pre] * width + items_pre)
    users, first = np.unique(post_user[new], return_index=True)
    targets = post_items[new][first]
    bought = np.unique(
        post_user[new & (post_ev == PURCHASE)] * width + post_items[new & (post_ev == PURCHASE)]
    )
    buyers, starts = np.unique(bought // width, return_index=True)
    truth = np.split(bought % width, starts[1:]) if len(buyers) else []
    split = EvalSplit(
        users=users.astype(np.int64),
        inputs=pre_of(users, items_pre),
        input_event_types=pre_of(users, ev_pre),
        targets=targets.astype(np.int64),
        notes={"cutoff": str(cutoff), "eval_days": eval_days},
    )
    return TemporalSplit(
        cutoff,
        train,
        split,
        pre_of(buyers, items_pre),
        pre_of(buyers, ev_pre),
        [t.astype(np.int64) for t in truth],
    )


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
    f = shop.flat_sequences()
    as_of = np.datetime64(shop.as_of, "us")
    window = np.maximum((as_of - f.first_ts()) / np.timedelta64(1, "D"), min_window_days)
    return f.lengths / window * horizon_days


def category_purchase_share(shop: ShopData) -> dict[str, float]:
    """Purchases per interaction step, by category (and ``"*"`` overall)."""
    f = shop.flat_sequences()
    cats = shop.item_category[f.items]
    df = pd.DataFrame({"category": cats, "purchase": f.events == PURCHASE})
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


@dataclass
class ScoredBatch:
    """r_ij of one batch of users (rows ``start:start + n`` of the scored users) x all candidates,
    float32 ``(n, n_candidates)``: ``r`` (calibrated when a calibration is given, else
    ``r_model``), ``p`` (next-interaction probability) and ``r_model`` (``1 - exp(-n p c)``)."""

    start: int
    r: np.ndarray
    p: np.ndarray
    r_model: np.ndarray

    def __len__(self) -> int:
        return len(self.r)


def purchase_kernel(
    user_vecs: np.ndarray,
    softmax_t: np.ndarray,
    n_candidates: int,
    rates: np.ndarray,
    conv: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(r_model, p)`` float32 ``(n_users, n_candidates)`` for a batch of user vectors.

    ``softmax_t``: ``(dim, n_catalog + n_candidates)`` float32, candidates last: ``p_ij`` is the
    softmax over all of them (``included``: a candidate competes with what is on sale) and
    ``r_model = 1 - exp(-n_i p_ij c_j)``. Works in place on one ``(n, n_items)`` buffer."""
    logits = np.asarray(user_vecs, dtype=np.float32) @ softmax_t
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    denom = logits.sum(axis=1, keepdims=True)
    p = logits[:, logits.shape[1] - n_candidates :]
    p /= denom
    r = p * (-np.asarray(rates, dtype=np.float32)[:, None])
    r *= np.asarray(conv, dtype=np.float32)[None, :]
    np.expm1(r, out=r)  # = -r_model
    np.negative(r, out=r)
    return r, np.ascontiguousarray(p)


def purchase_probabilities(
    model,
    shop: ShopData,
    user_rows: np.ndarray,
    horizon_days: int,
    batch_size: int = 4096,
    calibration: PurchaseCalibration | None = None,
    user_x: np.ndarray | None = None,
    similar: Callable[[np.ndarray], np.ndarray] | None = None,
    user_vecs: np.ndarray | None = None,
    rates: np.ndarray | None = None,
    threads: int | None = None,
) -> Iterator[ScoredBatch]:
    """r_ij for the given user rows of ``shop`` x its candidates, streamed: yields one
    :class:`ScoredBatch` of float32 arrays per ``batch_size`` users, in order. Memory is
    O(batch x (catalog + candidates)) whatever the number of users.

    ``r_ij = 1 - exp(-n_i p_ij c_j)`` (see the module docstring); with ``calibration`` (and
    ``user_x``, one row of :func:`user_features_matrix` per scored user, and ``similar``,
    ``positions -> (len(positions), n_candidates)`` similar-product purchases, positions into
    ``user_rows``) ``r`` is the calibrated probability and ``r_model`` the uncalibrated one.
    ``user_vecs`` (``(len(user_rows), dim)``) skips the Transformer (benchmarks); ``rates`` (one
    per scored user) overrides :func:`interaction_rates`. The Transformer encodes one batch at a time; the
    softmax and r math of consecutive batches run on ``threads`` threads (numpy releases the
    GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from launch_pipeline.model.training import user_vectors

    user_rows = np.asarray(user_rows, dtype=np.int64)
    n_c = len(shop.candidates)
    n_u = len(user_rows)
    if n_c == 0 or n_u == 0:
        return
    softmax_t = np.ascontiguousarray(_softmax_parts(model, shop).T)
    rates = (
        interaction_rates(shop, horizon_days)[user_rows]
        if rates is None
        else np.asarray(rates, dtype=np.float64)
    )
    conv = category_conversion(shop, shop.candidates["category"])
    if calibration is not None and user_x is None:
        raise ValueError("a calibration needs user_x (user_features_matrix of the scored users)")

    def vectors(start: int) -> np.ndarray:
        sl = slice(start, min(n_u, start + batch_size))
        if user_vecs is not None:
            return user_vecs[sl]
        rows = user_rows[sl]
        return user_vectors(
            model,
            [shop.data.sequences[u] for u in rows],
            [shop.data.event_types[u] for u in rows],
        )

    def one(args) -> ScoredBatch:
        start, uv = args
        sl = slice(start, start + len(uv))
        r_model, p = purchase_kernel(uv, softmax_t, n_c, rates[sl], conv)
        r = r_model
        if calibration is not None:
            pos = np.arange(sl.start, sl.stop)
            r = calibration.apply(
                user_x[sl], p, conv, similar(pos) if similar is not None else np.zeros_like(p)
            )
        return ScoredBatch(start, r, p, r_model)

    # the Transformer is multi-threaded on its own: with it, one batch is scored while the next
    # one is encoded; with given vectors the batches' numpy math runs on `threads` threads.
    # At most `workers` batches are in flight, so memory stays bounded; results come in order.
    workers = 1 if user_vecs is None else max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for s in range(0, n_u, batch_size):
            pending.append(pool.submit(one, (s, vectors(s))))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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
        """Calibrated ``r`` of shape ``p.shape`` in ``p``'s float type (float32 when scoring
        in batches), broadcast over users and items without building the feature matrix."""
        if p.size == 0:
            return np.zeros_like(p)
        dtype = p.dtype if p.dtype in (np.float32, np.float64) else np.float64
        coef = np.asarray(self.coef, dtype=np.float64)
        z = np.log(np.maximum(p, 1e-12), dtype=dtype)
        z *= coef[3]
        z += (self.intercept + np.asarray(user_x, dtype=np.float64) @ coef[:3]).astype(dtype)[
            :, None
        ]
        z += (coef[4] * np.log(np.maximum(np.asarray(conv, dtype=np.float64), 1e-6))).astype(dtype)[
            None, :
        ]
        z += (coef[5] * np.log1p(np.maximum(similar, 0.0))).astype(dtype, copy=False)
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1.0
        np.reciprocal(z, out=z)
        return z

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
