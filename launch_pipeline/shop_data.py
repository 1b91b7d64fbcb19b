"""The shop as model inputs: warehouse tables (``item_features``, ``user_sequence_steps``) turned into
the integer inputs of :mod:`launch_pipeline.model`.

:func:`load_shop_data` numbers catalog items ``1..n``; attributes ``category=..``, ``brand=..``,
``price_band=..`` and the words of the title, ``word=..``, for the words found in at least
``MIN_WORD_PRODUCTS`` catalog titles; event types view=1, cart=2, purchase=3. Launch candidates
get attribute rows through the same vocabulary, so the model scores them from attributes alone,
and a new product shares words with the old ones it resembles (``JUMBO BAG`` ..., ``WALL ART``
...). :func:`attributes_known_at_launch` gives a past launch's attributes as known at a date.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.model.data import SequenceData, attributes_matrix

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


# the steps of a steps table (user_sequence_steps or the same built as of a past time), items
# numbered through the registered index (unknown items dropped), users through the registered
# users (numbered in user_id order)
_FLAT_SEQUENCES_SQL = """
SELECT us.u, i.k,
       CASE s.event_type WHEN 'view' THEN 1 WHEN 'cart' THEN 2 WHEN 'purchase' THEN 3 END AS e,
       epoch_us(s.ts) AS t
FROM {table} s JOIN {users} us USING (user_id) JOIN {index} i ON i.item_id = s.item_id
ORDER BY us.u, s.step
"""


def read_sequences(
    con: duckdb.DuckDBPyConnection, table: str, item_ids, min_steps: int = 1
) -> FlatSequences:
    """Read a steps table (``user_id, step, item_id, event_type, ts``, one row per step, as
    ``user_sequence_steps``) into :class:`FlatSequences`, items numbered ``1..n`` in the order
    of ``item_ids``; items not in ``item_ids`` are left out, and users left with fewer than
    ``min_steps`` steps too.

    The item numbering and the ordering run in DuckDB; Python only cuts the flat arrays per
    user."""
    import pyarrow as pa

    index_name, users_name = "_read_sequences_items", "_read_sequences_users"
    ids = [str(i) for i in item_ids]
    users = con.execute(f"SELECT DISTINCT user_id FROM {table} ORDER BY user_id").fetchnumpy()[
        "user_id"
    ]
    con.register(
        index_name,
        pa.table(
            {
                "item_id": pa.array(ids, pa.string()),
                "k": pa.array(np.arange(1, len(ids) + 1), pa.int64()),
            }
        ),
    )
    con.register(
        users_name,
        pa.table(
            {
                "user_id": pa.array([str(x) for x in users], pa.string()),
                "u": pa.array(np.arange(len(users)), pa.int64()),
            }
        ),
    )
    try:
        res = con.execute(
            _FLAT_SEQUENCES_SQL.format(table=table, index=index_name, users=users_name)
        ).fetchnumpy()
    finally:
        con.unregister(index_name)
        con.unregister(users_name)
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

    flat = read_sequences(con, "user_sequence_steps", catalog["item_id"])
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
