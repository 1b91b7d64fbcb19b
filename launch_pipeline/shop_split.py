"""The temporal hold-out of the shop: the model is trained on what happened before the last
``eval_days`` and judged on what each user did next (full ranking over the catalog) and on which
products each user bought in the held-out days (:func:`launch_pipeline.model.metrics.purchase_prf`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from launch_pipeline.model.data import EvalSplit, SequenceData
from launch_pipeline.shop_data import PURCHASE, ShopData


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
