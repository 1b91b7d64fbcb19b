"""Sequence data for the recommender: reading S3-Rec files and the leave-one-out splits.

Conventions used everywhere in :mod:`launch_pipeline.model`:

* items are integers ``1..n_items``; ``0`` is padding and never a real item;
* ``item_attributes`` is an ``(n_items + 1, n_slots)`` int matrix of attribute ids, row ``0`` is
  the padding item, attribute id ``0`` is padding; attribute ids are ``1..n_attributes - 1``;
* ``event_types`` (optional) are small ints ``>= 1`` aligned with the items of each sequence
  (e.g. view=1, cart=2, purchase=3); ``0`` is padding.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from launch_pipeline.errors import InputFileError


@dataclass
class SequenceData:
    """Per-user item sequences plus the item-attribute table."""

    sequences: list[np.ndarray]  # per user, item indices 1..n_items in time order
    event_types: list[np.ndarray] | None  # per user, same lengths, ints >= 1, or None
    item_attributes: np.ndarray  # (n_items + 1, n_slots) attribute ids, row 0 = padding
    n_attributes: int  # attribute vocabulary size including 0
    user_ids: np.ndarray | None = None  # original user ids (optional, for joining back)
    # optional name of every attribute id (index = id, entry 0 = "" for padding); it travels
    # inside the trained model so new items can be encoded with the same vocabulary
    attribute_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.sequences = [np.asarray(s, dtype=np.int64) for s in self.sequences]
        if self.event_types is not None:
            self.event_types = [np.asarray(e, dtype=np.int64) for e in self.event_types]
            if len(self.event_types) != len(self.sequences) or any(
                len(e) != len(s) for e, s in zip(self.event_types, self.sequences, strict=True)
            ):
                raise ValueError("event_types must have the same shape as sequences")
        attrs = np.asarray(self.item_attributes, dtype=np.int64)
        if attrs.ndim != 2 or attrs.shape[0] < 2 or attrs.shape[1] < 1:
            raise ValueError("item_attributes must be (n_items + 1, n_slots) with n_slots >= 1")
        self.item_attributes = attrs
        if int(attrs.max(initial=0)) >= self.n_attributes:
            raise ValueError("attribute id >= n_attributes")
        if self.attribute_names is not None:
            self.attribute_names = [str(a) for a in self.attribute_names]
            if len(self.attribute_names) != self.n_attributes:
                raise ValueError("attribute_names needs one entry per attribute id (incl. 0)")
        top = max((int(s.max()) for s in self.sequences if len(s)), default=0)
        if (
            top > self.n_items
            or min((int(s.min()) for s in self.sequences if len(s)), default=1) < 1
        ):
            raise ValueError("sequence items must be in 1..n_items (item_attributes rows - 1)")

    @property
    def n_items(self) -> int:
        return int(self.item_attributes.shape[0] - 1)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_event_types(self) -> int:
        if self.event_types is None:
            return 0
        return max((int(e.max()) for e in self.event_types if len(e)), default=0)

    def with_sequences(
        self, sequences: list[np.ndarray], event_types: list[np.ndarray] | None
    ) -> SequenceData:
        """Same catalogue, other sequences."""
        return SequenceData(
            sequences=sequences,
            event_types=event_types,
            item_attributes=self.item_attributes,
            n_attributes=self.n_attributes,
            user_ids=self.user_ids,
            attribute_names=self.attribute_names,
        )


@dataclass
class EvalSplit:
    """One next-item prediction per user: ``inputs[i]`` -> ``targets[i]``.

    The items of ``inputs[i]`` are the exclusions of user ``i`` (never ranked); the target itself is
    always ranked, even if it also occurs in the input.
    """

    users: np.ndarray  # row index of each case in the source SequenceData
    inputs: list[np.ndarray]
    input_event_types: list[np.ndarray] | None
    targets: np.ndarray
    candidates: np.ndarray | None = None  # restrict ranking to these items (None = all items)
    notes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.targets)

    def last_items(self) -> np.ndarray:
        return np.array([s[-1] for s in self.inputs], dtype=np.int64)


def attributes_matrix(
    item_attributes: Mapping[int, Iterable[Hashable]],
    n_items: int,
    vocab: Mapping[Hashable, int] | None = None,
) -> tuple[np.ndarray, dict[Hashable, int]]:
    """Build the padded ``(n_items + 1, n_slots)`` attribute-id matrix from ``item -> attributes``.

    Attributes may be any hashable values (ints of an S3-Rec file, strings such as
    ``"brand=Acme"``).  They are mapped to ids ``1..A`` in sorted order of first appearance
    (or with ``vocab`` if given; values missing from ``vocab`` are dropped, which is how a trained
    model treats an attribute it has never seen).  Returns the matrix and the vocabulary.
    """
    if vocab is None:
        values = sorted(
            {a for attrs in item_attributes.values() for a in attrs},
            key=lambda v: (str(type(v)), v),
        )
        vocab = {a: i + 1 for i, a in enumerate(values)}
    rows: dict[int, list[int]] = {}
    for item, attrs in item_attributes.items():
        item = int(item)
        if not 1 <= item <= n_items:
            continue
        ids = list(dict.fromkeys(vocab[a] for a in attrs if a in vocab))
        rows[item] = ids
    n_slots = max((len(v) for v in rows.values()), default=0) or 1
    mat = np.zeros((n_items + 1, n_slots), dtype=np.int64)
    for item, ids in rows.items():
        mat[item, : len(ids)] = ids
    return mat, dict(vocab)


def read_s3rec(
    sequences_file: str | Path, attributes_file: str | Path | None = None
) -> SequenceData:
    """Read an S3-Rec sequence file (``user item item ...`` per line) and optional attributes JSON.

    Items keep their ids (1..n); ``n_items`` is the largest item id found in either file.  Without
    an attributes file every item gets an empty attribute row (the model then uses ids only).
    """
    sequences: list[np.ndarray] = []
    users: list[str] = []
    with open(sequences_file, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                items = np.array([int(x) for x in parts[1:]], dtype=np.int64)
            except ValueError as exc:
                raise InputFileError(
                    f"{sequences_file}:{line_no}",
                    f"is not 'user item item ...' with whole-number item ids ({exc})",
                    "fix or remove the line",
                ) from exc
            if len(items) and items.min() < 1:
                raise InputFileError(
                    f"{sequences_file}:{line_no}", "has an item id below 1", "item ids start at 1"
                )
            users.append(parts[0])
            sequences.append(items)
    mapping: dict[int, list[int]] = {}
    if attributes_file is not None:
        with open(attributes_file, encoding="utf-8") as fh:
            raw = json.load(fh)
        mapping = {int(k): [int(a) for a in v] for k, v in raw.items()}
    n_items = max(
        max((int(s.max()) for s in sequences if len(s)), default=0),
        max(mapping, default=0),
    )
    if n_items < 1:
        raise ValueError(f"{sequences_file}: no items")
    mat, vocab = attributes_matrix(mapping, n_items)
    try:
        user_ids = np.array([int(u) for u in users], dtype=np.int64)
    except ValueError:
        user_ids = np.array(users, dtype=object)
    return SequenceData(
        sequences=sequences,
        event_types=None,
        item_attributes=mat,
        n_attributes=len(vocab) + 1,
        user_ids=user_ids,
        attribute_names=["", *(str(a) for a, _ in sorted(vocab.items(), key=lambda kv: kv[1]))],
    )


def _cut(seqs: Sequence[np.ndarray] | None, users: np.ndarray, end: int) -> list[np.ndarray] | None:
    if seqs is None:
        return None
    return [seqs[u][:end] if end else seqs[u] for u in users]


def leave_one_out(data: SequenceData) -> tuple[SequenceData, EvalSplit, EvalSplit]:
    """The S3-Rec leave-one-out protocol.

    Returns ``(train, valid, test)``:

    * ``train``: every user's sequence without its last two items (users with fewer than 3 items
      keep what is not needed for evaluation: ``seq[:-1]`` for 2 items, nothing for 1);
    * ``valid``: input ``seq[:-2]`` -> target ``seq[-2]`` for users with >= 3 items;
    * ``test``: input ``seq[:-1]`` -> target ``seq[-1]`` for users with >= 2 items.

    Exclusions at ranking time are the input items; item 0 is never ranked.
    """
    lens = np.array([len(s) for s in data.sequences])
    ev = data.event_types
    train_seqs = [s[:-2] if len(s) >= 3 else s[:-1] for s in data.sequences]
    train_ev = None if ev is None else [e[:-2] if len(e) >= 3 else e[:-1] for e in ev]
    train = data.with_sequences(train_seqs, train_ev)

    vu = np.flatnonzero(lens >= 3)
    valid = EvalSplit(
        users=vu,
        inputs=_cut(data.sequences, vu, -2),
        input_event_types=_cut(ev, vu, -2),
        targets=np.array([data.sequences[u][-2] for u in vu], dtype=np.int64),
    )
    tu = np.flatnonzero(lens >= 2)
    test = EvalSplit(
        users=tu,
        inputs=_cut(data.sequences, tu, -1),
        input_event_types=_cut(ev, tu, -1),
        targets=np.array([data.sequences[u][-1] for u in tu], dtype=np.int64),
    )
    return train, valid, test


def holdout_last(data: SequenceData) -> tuple[SequenceData, EvalSplit]:
    """Train on ``seq[:-1]``, validate on the last item (users with >= 2 items).

    What :func:`train_model` uses when it is given no validation split (e.g. the pipeline training
    on all of its own sequences): early stopping still has an honest held-out signal.
    """
    lens = np.array([len(s) for s in data.sequences])
    ev = data.event_types
    train = data.with_sequences(
        [s[:-1] for s in data.sequences], None if ev is None else [e[:-1] for e in ev]
    )
    vu = np.flatnonzero(lens >= 2)
    valid = EvalSplit(
        users=vu,
        inputs=_cut(data.sequences, vu, -1),
        input_event_types=_cut(ev, vu, -1),
        targets=np.array([data.sequences[u][-1] for u in vu], dtype=np.int64),
    )
    return train, valid


def cold_start_split(
    data: SequenceData, fraction: float = 0.1, seed: int = 42
) -> tuple[np.ndarray, SequenceData, EvalSplit]:
    """Hold out ``fraction`` of the items that occur in the sequences, entirely.

    Returns ``(cold_items, warm_data, cold_eval)``:

    * ``cold_items``: the held-out item ids (sorted), drawn uniformly with ``seed``;
    * ``warm_data``: every sequence with all held-out items removed (the model never sees them);
    * ``cold_eval``: one case per user who interacted with a held-out item and has at least one
      warm item before the first such interaction: input = the warm items before it, target =
      that first held-out item, candidates = all held-out items (the user's later held-out items
      stay candidates, i.e. count as misses if ranked above the target).
    """
    present = np.unique(np.concatenate([s for s in data.sequences if len(s)]))
    rng = np.random.default_rng(seed)
    n_cold = max(1, int(round(fraction * len(present))))
    cold = np.sort(rng.choice(present, size=n_cold, replace=False))
    is_cold = np.zeros(data.n_items + 1, dtype=bool)
    is_cold[cold] = True
    warm_seqs, warm_ev = [], [] if data.event_types is not None else None
    users, inputs, in_ev, targets = [], [], [], []
    for u, s in enumerate(data.sequences):
        c = is_cold[s]
        warm_seqs.append(s[~c])
        if warm_ev is not None:
            warm_ev.append(data.event_types[u][~c])
        hits = np.flatnonzero(c)
        if len(hits) and hits[0] > 0:
            users.append(u)
            inputs.append(s[: hits[0]])
            targets.append(s[hits[0]])
            if data.event_types is not None:
                in_ev.append(data.event_types[u][: hits[0]])
    warm = data.with_sequences(warm_seqs, warm_ev)
    ev_split = EvalSplit(
        users=np.array(users, dtype=np.int64),
        inputs=inputs,
        input_event_types=in_ev if data.event_types is not None else None,
        targets=np.array(targets, dtype=np.int64),
        candidates=cold,
        notes={"n_cold_items": int(len(cold)), "fraction": fraction, "seed": seed},
    )
    return cold, warm, ev_split
