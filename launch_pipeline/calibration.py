"""Calibration of r_ij on the shop's own past launches (:class:`PurchaseCalibration`) and the
users as they were at a past date (:class:`UsersAsOf`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
