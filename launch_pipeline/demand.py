"""Expected demand of launch candidates, learned from the shop's own past launches.

The Transformer's ``r_ij`` says which returning customers are likely to buy a new product; on a
wholesale shop such as Online Retail the revenue of a launch is dominated by how much those
customers buy, which ``r_ij`` alone does not see. This module fits, on every run, a small model
of *launch revenue* on the launches the shop itself made before the plan date, and uses it to
value the candidates. Nothing here is tuned per data set: the features and hyper-parameters are
fixed (:class:`DemandConfig`), the coefficients are re-fitted on each run's own history.

Past launch windows
-------------------
A launch window is ``[A, A + L)``: its *cohort* is the products whose first sale (``launched_at``)
falls in it, and their target is their net revenue (purchases minus returns) from launch to the
end of the window, scaled to the planning horizon (``x H / L``). That is exactly what a candidate
of the plan is judged on (revenue from its launch to the end of the horizon), so launch timing
inside the window is part of what the model learns. ``L = min(H, days of history after the
burn-in)``; the windows end at the plan date and every ``window_step_days`` before it, as long
as they start after the burn-in (the first ``burn_in_days`` of the data: a product first seen
there was most likely on sale before the data starts).

Features, all computed *as of the window start* from what was known then (for the candidates:
as of the plan date), never from the cohort's own sales:

==================  =========================================================================
log_price           log of the launch price (candidates: their price; past launches: the price
                    of their first sale)
text_knn5/20        log1p of the mean recent revenue (the ``H`` days before ``A``, scaled to
                    ``H``) of the 5 / 20 existing products with the most similar title (TF-IDF
                    cosine over title words)
text_knn_weighted   the same over 20 neighbours, weighted by similarity
category_revenue    mean log1p recent revenue of the existing products of the same category
collection_size     log1p of how many other products of the same cohort (the candidate list
                    itself, for candidates) have a title at cosine >= 0.3: shops launch
                    collections, and a large collection is a bet the shop makes
transformer_buyers  log1p of the Transformer's expected returning buyers ``sum_i r_ij``
transformer_units   log1p of their expected units (each buyer weighted by their mean units per
                    purchase line); both from a model that never saw the launch sell:
                    past launches are scored by a second Transformer trained as of the
                    oldest window's start (``launch_pipeline/transformer_signal.py``),
                    candidates by the pipeline's model (``user_preferences``)
==================  =========================================================================

Ranker: the features are standardised *within each cohort* and the target is each launch's
revenue relative to its cohort's mean (launch windows differ in season, length and level; what
transfers is which products of a cohort sell more). A Poisson regression (log link, L2 penalty)
is fitted on all cohorts: it estimates the *expected* revenue, which is what the plan maximises
and what a captured revenue share rewards (a model of log revenue would rank by the typical,
not the expected, revenue and under-weight the few launches that sell in bulk). The penalty is
chosen from a fixed grid by purged leave-one-window-out (held-out Poisson deviance; the held-out
window's launches are also left out of the windows that overlap it): validated across
past windows, never on the cohort being planned. The same fit without the Transformer's
features is the ablation ``without_transformer`` (``launch_valuation``); the Transformer's
features are kept only when they lower the held-out deviance by at least 1%
(``min_validated_gain``; so with a single past window, where nothing can be validated, they are
left out).

Level and interval (:func:`fit_demand_model`): the newest window's revenue per launch, times the
change of level to the planned window (:func:`level_change`: the shop's own season a year
earlier when the data has it; the trend of the past windows and a replay bias correction exist
behind ``DemandConfig.level_trend`` / ``level_bias`` and are off, see there); the 80% interval
is split-conformal on realised / predicted of the launches of past windows replayed as the
candidates are predicted (:func:`_conformal_quantiles`), so it carries the level's error too.
Units = revenue / price.

Fallback: with fewer than ``min_launches`` past launches (a young shop, the simulated two
weeks of the tests) :func:`estimate_demand` returns ``None`` and the plan uses the
uncalibrated value ``sum_i r_ij x price x units per purchase`` (see ``planning.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
import pandas as pd

BASE_FEATURES: tuple[str, ...] = (
    "log_price",
    "text_knn5",
    "text_knn20",
    "text_knn_weighted",
    "category_revenue",
    "collection_size",
)
TRANSFORMER_FEATURES: tuple[str, ...] = ("transformer_buyers", "transformer_units")
"""The Transformer's view of a launch: log1p of its expected returning buyers ``sum_i r_ij``
and of their expected units (each buyer weighted by their mean units per purchase line), with
``r_ij = 1 - exp(-n_i p_ij c_j)`` from a model that had not seen the launch sell (see
``scoring.calibrate_on_past_launches``)."""


@dataclass(frozen=True)
class DemandConfig:
    burn_in_days: int = 28
    window_step_days: int = 30
    max_windows: int = 6
    min_window_days: int = 28
    min_cohort: int = 10
    min_launches: int = 60
    neighbours: int = 20
    near_neighbours: int = 5
    collection_similarity: float = 0.3
    poisson_alpha: float = 1.0  # the penalty when there is one window only (no validation)
    poisson_alphas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0)  # chosen leave-one-window-out
    use_transformer: bool = True
    max_level_change: float = 2.0
    interval: float = 0.8
    # off: on Online Retail 2011 (first run, docs/backtest.md) both extrapolated the early
    # windows' rise (old slow sellers first seen there look like weak launches) and overshot
    # the summer level 1.8x-5.7x; the level's uncertainty goes into the conformal interval
    # the Transformer's features must lower the held-out deviance by this share (a chance gain
    # of two noise features is a few tenths of a percent)
    min_validated_gain: float = 0.01
    level_trend: bool = False
    level_bias: bool = False


@dataclass
class DemandModel:
    """What was fitted (for metadata and reports)."""

    features: list[str]
    coefficients: dict[str, float]
    windows: list[dict]
    launches: int
    level: float  # expected revenue per launch over the horizon (newest window x change x bias)
    ratio_quantiles: dict[str, float]  # conformal bounds of realised / predicted
    train_spearman: float
    config: dict = field(default_factory=dict)
    penalty: float = 1.0
    penalty_validation: dict = field(default_factory=dict)
    level_newest_window: float = 0.0
    level_change: float = 1.0
    level_change_from: str = "flat"
    level_bias: float = 1.0
    replay_forecast_ratio: float = float("nan")  # replayed windows: realised / predicted total
    transformer_used: bool = False
    transformer_validation: dict = field(default_factory=dict)  # held-out deviance with/without
    interval_from: str = ""
    # past launches the interval was calibrated on out of sample (replayed as the candidates
    # are predicted); 0: no past window could be replayed, the interval is in-sample
    interval_replayed_launches: int = 0
    coefficients_without_transformer: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# text similarity
# --------------------------------------------------------------------------------------------
SIMILARITY_CHUNK = 512
"""Targets compared with the existing titles per block (memory: block x existing floats)."""


def _vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b[^\W\d_]{2,}\b")


def _clean_titles(titles) -> list[str]:
    return ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in titles]


def similar_products(existing_titles, target_titles, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, similarity)`` arrays of shape ``(n_targets, min(k, n_existing))``: the ``k``
    existing products whose titles are most similar to each target title (TF-IDF of title
    words fitted on the existing titles, cosine), most similar first; ties by position."""
    existing = _clean_titles(existing_titles)
    targets = _clean_titles(target_titles)
    k = min(k, len(existing))
    if k == 0 or not targets:
        return np.zeros((len(targets), 0), dtype=np.int64), np.zeros((len(targets), 0))
    vec = _vectorizer()
    try:
        e = vec.fit_transform(existing)
    except ValueError:  # no word at all in the existing titles
        return (
            np.tile(np.arange(k), (len(targets), 1)),
            np.zeros((len(targets), k)),
        )
    t = vec.transform(targets)
    et = e.T.tocsc()
    order = np.empty((len(targets), k), dtype=np.int64)
    top = np.empty((len(targets), k))
    for a in range(0, len(targets), SIMILARITY_CHUNK):
        # a block of targets at a time: memory is block x existing, not targets x existing
        # (5,000 grocery candidates x 56,000 products would be 2.2 GB per dense copy)
        sims = (t[a : a + SIMILARITY_CHUNK] @ et).toarray()
        order[a : a + len(sims)] = _top_k_stable(sims, k)
        top[a : a + len(sims)] = np.take_along_axis(sims, order[a : a + len(sims)], axis=1)
    return order, top


def _top_k_stable(sims: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(-sims, axis=1, kind="stable")[:, :k]`` (largest first, ties by position)
    without sorting whole rows: only the values above each row's k-th largest are sorted, and
    the places left are filled with the values equal to it in column order (what a stable sort
    gives them). A row with fewer than ``k`` non-zero similarities (or fewer than ``k`` allowed
    columns, the others set to -1) ties at its k-th value across most of its columns; sorting
    those ties cost a whole-row sort per row (about 2 s per block of 512 grocery launches)."""
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
    out = np.empty((sims.shape[0], k), dtype=np.int64)
    for r in range(sims.shape[0]):
        row = sims[r]
        above = np.flatnonzero(row > kth[r])
        above = above[np.argsort(-row[above], kind="stable")]
        if len(above) < k:
            ties = np.flatnonzero(row == kth[r])[: k - len(above)]
            above = np.concatenate([above, ties])
        out[r] = above[:k]
    return out


def text_knn_revenue(existing_titles, existing_revenue, target_titles, k: int = 20) -> np.ndarray:
    """Each target's revenue predicted as the mean revenue of the ``k`` existing products with
    the most similar title (the text-kNN baseline of the backtest)."""
    idx, _ = similar_products(existing_titles, target_titles, k)
    rev = np.asarray(existing_revenue, dtype=float)
    if idx.shape[1] == 0:
        return np.zeros(len(_clean_titles(target_titles)))
    return rev[idx].mean(axis=1)


class SimilarPurchases:
    """How many purchase events each user made before ``as_of`` of the ``k`` products launched
    before it whose titles are most similar to each target's, weighted by the similarity
    (TF-IDF cosine): a sparse ``(len(users), len(targets))`` matrix; calling it with user
    positions gives those rows dense (so a scorer can take them batch by batch)."""

    def __init__(
        self,
        hist: ShopHistory,
        targets: pd.DataFrame,
        users: list[str],
        as_of: pd.Timestamp,
        k: int = 20,
    ):
        from scipy.sparse import csr_matrix

        self.shape = (len(users), len(targets))
        self.matrix = None
        items = hist.items[~hist.items["is_candidate"]]
        existing = items[items["launched_at"].isna() | (items["launched_at"] < as_of)]
        existing = existing[~existing["item_id"].isin(targets["item_id"])].reset_index(drop=True)
        if existing.empty or not users or targets.empty:
            return
        idx, sims = similar_products(existing["title"], targets["title"], k)
        if idx.shape[1] == 0:
            return
        w = csr_matrix(
            (sims.ravel(), (idx.ravel(), np.repeat(np.arange(len(targets)), idx.shape[1]))),
            shape=(len(existing), len(targets)),
        )
        s = hist.sales
        bought = s[(s["ts"] < as_of) & (s["units"] > 0)]
        item_pos = pd.Series(np.arange(len(existing)), index=existing["item_id"].astype(str))
        user_pos = pd.Series(np.arange(len(users)), index=[str(u) for u in users])
        i = item_pos.reindex(bought["item_id"].astype(str)).to_numpy()
        u = user_pos.reindex(bought["user_id"].astype(str)).to_numpy()
        ok = ~(np.isnan(i) | np.isnan(u))
        if not ok.any():
            return
        counts = csr_matrix(
            (np.ones(int(ok.sum())), (u[ok].astype(int), i[ok].astype(int))),
            shape=(len(users), len(existing)),
        )
        self.matrix = (counts @ w).tocsr()

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        if self.matrix is None:
            return np.zeros((len(positions), self.shape[1]))
        return self.matrix[positions].toarray()

    def dense(self) -> np.ndarray:
        return self(np.arange(self.shape[0]))


def similar_purchases(
    hist: ShopHistory,
    targets: pd.DataFrame,
    users: list[str],
    as_of: pd.Timestamp,
    k: int = 20,
) -> np.ndarray:
    """``(len(users), len(targets))`` dense :class:`SimilarPurchases`: how many purchase events
    each user made before ``as_of`` of the ``k`` products launched before it whose titles are
    most similar to each target's, weighted by the similarity (TF-IDF cosine)."""
    return SimilarPurchases(hist, targets, users, as_of, k).dense()


def collection_sizes(titles, threshold: float) -> np.ndarray:
    """How many other titles of the same list are at TF-IDF cosine >= ``threshold``."""
    titles = _clean_titles(titles)
    if len(titles) < 2:
        return np.zeros(len(titles))
    vec = _vectorizer()
    try:
        m = vec.fit_transform(titles)
    except ValueError:
        return np.zeros(len(titles))
    mt = m.T.tocsc()
    out = np.empty(len(titles))
    for a in range(0, len(titles), SIMILARITY_CHUNK):  # bounded memory, as above
        s = (m[a : a + SIMILARITY_CHUNK] @ mt).toarray()
        rows = np.arange(s.shape[0])
        s[rows, a + rows] = 0.0
        out[a : a + SIMILARITY_CHUNK] = (s >= threshold).sum(axis=1)
    return out


# --------------------------------------------------------------------------------------------
# history from the warehouse
# --------------------------------------------------------------------------------------------
@dataclass
class ShopHistory:
    sales: pd.DataFrame  # item_id, user_id, ts, units (signed), revenue (signed)
    items: pd.DataFrame  # item_id, title, category, price, launched_at, is_candidate, first_price
    data_start: pd.Timestamp
    plan_start: pd.Timestamp  # 00:00 of the plan date


def load_history(con: duckdb.DuckDBPyConnection) -> ShopHistory:
    sales = con.execute(
        """
        SELECT item_id, user_id, ts,
               CASE WHEN event_type = 'return' THEN -quantity ELSE quantity END AS units,
               CASE WHEN event_type = 'return' THEN -quantity * price ELSE quantity * price END
                   AS revenue
        FROM clean_events
        WHERE event_type IN ('purchase', 'return') AND quantity IS NOT NULL AND price IS NOT NULL
        """
    ).df()
    bounds = con.execute("SELECT min(ts), max(ts) FROM clean_events").fetchall()[0]
    items = con.execute(
        """
        WITH first_sale AS (
            SELECT item_id, first(price ORDER BY ts, price) AS first_price
            FROM clean_events WHERE event_type = 'purchase' AND price > 0 GROUP BY 1
        )
        SELECT f.item_id, f.title, f.category, f.price, f.launched_at, f.is_candidate,
               CASE WHEN f.is_candidate THEN f.price ELSE coalesce(s.first_price, f.price) END
                   AS first_price
        FROM item_features f LEFT JOIN first_sale s USING (item_id)
        ORDER BY f.is_candidate, f.item_id
        """
    ).df()
    start = pd.Timestamp(bounds[0]) if bounds[0] is not None else pd.Timestamp("1970-01-01")
    last = pd.Timestamp(bounds[1]) if bounds[1] is not None else start
    items["launched_at"] = pd.to_datetime(items["launched_at"])
    sales["ts"] = pd.to_datetime(sales["ts"])
    return ShopHistory(sales, items, start.normalize(), last.normalize() + pd.Timedelta(days=1))


def _recent_revenue(hist: ShopHistory, existing: pd.DataFrame, as_of: pd.Timestamp, horizon: int):
    """Net revenue of each existing product over the ``horizon`` days before ``as_of`` (or what
    the data has of them), scaled to ``horizon`` days."""
    lo = max(as_of - pd.Timedelta(days=horizon), hist.data_start)
    days = max((as_of - lo).days, 1)
    s = hist.sales
    win = s[(s["ts"] >= lo) & (s["ts"] < as_of)]
    rev = win.groupby("item_id")["revenue"].sum()
    return rev.reindex(existing["item_id"]).fillna(0.0).to_numpy() * horizon / days


def launch_features(
    hist: ShopHistory,
    targets: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon: int,
    cfg: DemandConfig,
) -> pd.DataFrame:
    """The features of :data:`BASE_FEATURES` for ``targets`` (item_id, title, category,
    first_price), from what was known at ``as_of``: the products launched before it and their
    sales before it."""
    items = hist.items[~hist.items["is_candidate"]]
    existing = items[items["launched_at"].isna() | (items["launched_at"] < as_of)]
    existing = existing[~existing["item_id"].isin(targets["item_id"])].reset_index(drop=True)
    recent = np.clip(_recent_revenue(hist, existing, as_of, horizon), 0.0, None)
    out = pd.DataFrame(index=targets["item_id"].to_numpy())
    price = pd.to_numeric(targets["first_price"], errors="coerce").to_numpy(dtype=float)
    out["log_price"] = np.log(np.where(np.isfinite(price) & (price > 0), price, np.nan))
    idx, sims = similar_products(existing["title"], targets["title"], cfg.neighbours)
    if idx.shape[1]:
        nb = recent[idx]
        near = nb[:, : cfg.near_neighbours]
        w = sims.sum(axis=1)
        out["text_knn5"] = np.log1p(near.mean(axis=1))
        out["text_knn20"] = np.log1p(nb.mean(axis=1))
        out["text_knn_weighted"] = np.log1p(
            np.where(w > 0, (nb * sims).sum(axis=1) / np.where(w > 0, w, 1.0), nb.mean(axis=1))
        )
    else:
        out["text_knn5"] = out["text_knn20"] = out["text_knn_weighted"] = 0.0
    log_recent = pd.Series(np.log1p(recent))
    by_cat = log_recent.groupby(existing["category"].fillna("unknown").to_numpy()).mean()
    overall = float(log_recent.mean()) if len(log_recent) else 0.0
    out["category_revenue"] = [
        float(by_cat.get(c, overall)) for c in targets["category"].fillna("unknown")
    ]
    out["collection_size"] = np.log1p(collection_sizes(targets["title"], cfg.collection_similarity))
    return out


def _zscore(df: pd.DataFrame) -> pd.DataFrame:
    filled = df.fillna(df.mean()).fillna(0.0)
    sd = filled.std(ddof=0)
    return (filled - filled.mean()) / sd.where(sd > 1e-12, 1.0)


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def launch_windows(
    hist: ShopHistory, horizon: int, cfg: DemandConfig
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The past launch windows ``[A, A + L)`` (newest first)."""
    first = hist.data_start + pd.Timedelta(days=cfg.burn_in_days)
    avail = (hist.plan_start - first).days
    length = min(horizon, avail)
    if length < cfg.min_window_days:
        return []
    out = []
    for k in range(cfg.max_windows):
        end = hist.plan_start - pd.Timedelta(days=k * cfg.window_step_days)
        start = end - pd.Timedelta(days=length)
        if start < first:
            break
        out.append((start, end))
    return out


def _past_cohorts(hist: ShopHistory, horizon: int, cfg: DemandConfig, signal: dict | None):
    """The past launch cohorts with their features as of each window start and their target
    (revenue from launch to the window end, scaled to the horizon); ``signal``:
    ``(window start, item_id) -> {feature: value}`` of the Transformer (missing: NaN)."""
    frames = []
    windows = []
    items = hist.items[~hist.items["is_candidate"] & hist.items["launched_at"].notna()]
    for start, end in launch_windows(hist, horizon, cfg):
        cohort = items[(items["launched_at"] >= start) & (items["launched_at"] < end)]
        if len(cohort) < cfg.min_cohort:
            continue
        s = hist.sales
        win = s[(s["ts"] >= start) & (s["ts"] < end) & s["item_id"].isin(cohort["item_id"])]
        length = (end - start).days
        revenue = win.groupby("item_id")["revenue"].sum().reindex(cohort["item_id"]).fillna(0.0)
        f = launch_features(hist, cohort, start, horizon, cfg)
        for name in TRANSFORMER_FEATURES:
            f[name] = [
                (signal or {}).get((start, str(i)), {}).get(name, np.nan) for i in cohort["item_id"]
            ]
        f["target"] = np.clip(revenue.to_numpy() * horizon / length, 0.0, None)
        f["window"] = len(windows)
        frames.append(f)
        windows.append(
            {
                "start": start.date().isoformat(),
                "end": end.date().isoformat(),
                "launches": int(len(cohort)),
                "mean_revenue": float(f["target"].mean()),
            }
        )
    return (pd.concat(frames) if frames else pd.DataFrame()), windows


# --------------------------------------------------------------------------------------------
# the ranker: Poisson on within-window relative revenue, penalty chosen across windows
# --------------------------------------------------------------------------------------------
@dataclass
class _Ranker:
    features: list[str]
    alpha: float
    coef: np.ndarray
    intercept: float
    validation: dict  # alpha -> mean held-out Poisson deviance (leave one window out)

    def relative(self, feats: pd.DataFrame) -> np.ndarray:
        """Predicted revenue relative to the cohort's mean, for one cohort of launches."""
        z = _zscore(feats[self.features]) if len(feats) > 1 else feats[self.features] * 0.0
        return np.exp(self.intercept + z.fillna(0.0).to_numpy() @ self.coef)


def _design(
    data: pd.DataFrame, features: list[str]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per window (0 = newest): within-window standardised features, revenue / window mean and
    the launches' item ids (``data``'s index)."""
    out = []
    for _, g in data.groupby("window", sort=True):
        mean = float(g["target"].mean())
        out.append(
            (
                _zscore(g[features]).to_numpy(),
                g["target"].to_numpy() / (mean if mean > 0 else 1.0),
                g.index.to_numpy(),
            )
        )
    return out


def _purged(blocks, held: int):
    """The blocks other than ``held`` without the launches of ``held``: the windows overlap
    (90 days long, 30 days apart), so a launch is in up to three of them with nearly the same
    features and target; a fit that kept it would be validated on what it was trained on."""
    items = blocks[held][2]
    out = []
    for j, (x, y, ids) in enumerate(blocks):
        if j != held:
            keep = ~np.isin(ids, items)
            if keep.any():
                out.append((x[keep], y[keep], ids[keep]))
    return out


def _poisson(blocks, alpha: float):
    """Newton-Cholesky on one thread: a few thousand rows x 8 features is a millisecond's work,
    which a thread pool per call on a loaded machine turns into a second (measured)."""
    from sklearn.linear_model import PoissonRegressor
    from threadpoolctl import threadpool_limits

    x = np.vstack([b[0] for b in blocks])
    y = np.concatenate([b[1] for b in blocks])
    with threadpool_limits(1):
        return PoissonRegressor(alpha=alpha, max_iter=1000, solver="newton-cholesky").fit(x, y)


def fit_ranker(data: pd.DataFrame, features: list[str], cfg: DemandConfig) -> _Ranker:
    """Poisson regression of each past launch's revenue relative to its window's mean on the
    within-window standardised ``features``. The L2 penalty is chosen from
    ``cfg.poisson_alphas`` by leave-one-window-out (mean Poisson deviance of the held-out
    windows), purged: the launches of the held-out window are left out of the other windows
    too (:func:`_purged`); never tuned on the cohort being planned. One window:
    ``cfg.poisson_alpha``."""
    from sklearn.metrics import mean_poisson_deviance

    blocks = _design(data, features)
    validation: dict[float, float] = {}
    alpha = cfg.poisson_alpha
    if len(blocks) >= 2 and cfg.poisson_alphas:
        for a in cfg.poisson_alphas:
            dev = []
            for k in range(len(blocks)):
                rest = _purged(blocks, k)
                if not rest:
                    continue
                reg = _poisson(rest, a)
                mu = np.maximum(reg.predict(blocks[k][0]), 1e-9)
                dev.append(mean_poisson_deviance(blocks[k][1], mu))
            if dev:
                validation[float(a)] = float(np.mean(dev))
    if validation:
        alpha = min(validation, key=lambda a: (validation[a], -a))
    reg = _poisson(blocks, alpha)
    return _Ranker(
        list(features), float(alpha), reg.coef_.copy(), float(reg.intercept_), validation
    )


# --------------------------------------------------------------------------------------------
# the level: season a year earlier, else the trend of the past windows; conformal intervals
# --------------------------------------------------------------------------------------------
def _daily_revenue(hist: ShopHistory, lo: pd.Timestamp, hi: pd.Timestamp) -> float:
    s = hist.sales
    days = max((hi - lo).days, 1)
    return float(s.loc[(s["ts"] >= lo) & (s["ts"] < hi), "revenue"].sum()) / days


def level_change(
    hist: ShopHistory,
    plan_start: pd.Timestamp,
    window_means: list[tuple[pd.Timestamp, float]],
    length: int,
    horizon: int,
    cfg: DemandConfig,
) -> tuple[float, str]:
    """Factor from the newest past window's level (revenue per launch, the window
    ``[plan_start - length, plan_start)``) to the level of launches in
    ``[plan_start, plan_start + horizon)``, and how it was found.

    * **season**: when the data reaches a year (52 weeks) before that window, the shop's daily
      revenue in the same ``horizon`` days a year earlier / its daily revenue in the ``length``
      days before them (the seasonal swing of the whole shop, same weekdays);
    * **trend** (only with ``cfg.level_trend``): otherwise, with two past windows or more
      (``window_means``: newest first,
      ``(start, mean revenue per launch)``), the median change of log level per day between
      consecutive windows, carried over the distance between the newest window's middle and
      the planned window's middle;
    * **flat** (1.0) otherwise.

    Clipped to ``[1 / cfg.max_level_change, cfg.max_level_change]``."""
    cap = cfg.max_level_change
    year = pd.Timedelta(days=364)
    ly = plan_start - year
    if hist.data_start <= ly - pd.Timedelta(days=length):
        before = _daily_revenue(hist, ly - pd.Timedelta(days=length), ly)
        after = _daily_revenue(hist, ly, ly + pd.Timedelta(days=horizon))
        if before > 0 and after > 0:
            return float(np.clip(after / before, 1 / cap, cap)), "season"
    pts = [(t, m) for t, m in window_means if m > 0]
    if cfg.level_trend and len(pts) >= 2:
        slopes = [
            np.log(m0 / m1) / max((t0 - t1).days, 1)
            for (t0, m0), (t1, m1) in zip(pts[:-1], pts[1:], strict=True)
        ]
        gap = (length + horizon) / 2
        return float(np.clip(np.exp(float(np.median(slopes)) * gap), 1 / cap, cap)), "trend"
    return 1.0, "flat"


def _conformal_quantiles(ratios: np.ndarray, coverage: float) -> tuple[float, float]:
    """Split-conformal bounds of ``realised / predicted`` for a central ``coverage`` interval:
    the ``ceil((n + 1)(1 - a/2)) / n`` order statistics (and the mirrored lower one)."""
    r = np.sort(np.asarray(ratios, dtype=float))
    n = len(r)
    if n == 0:
        return 0.0, np.inf
    a = (1 - coverage) / 2
    lo = int(np.floor(round((n + 1) * a, 9))) - 1
    hi = int(np.ceil(round((n + 1) * (1 - a), 9))) - 1
    return float(r[max(lo, 0)]), float(r[min(hi, n - 1)])


def fit_demand_model(
    hist: ShopHistory,
    horizon: int,
    cfg: DemandConfig = DemandConfig(),
    past_signal: dict | None = None,
):
    """Fit the launch-revenue model on the past launch windows; ``(None, None)`` when there are
    too few past launches. Returns ``(model, predict)`` with
    ``predict(features, use_transformer=True) -> expected revenue over the horizon`` of one
    cohort of candidates launched from the plan date.

    Two rankers are fitted on the same cohorts, with and without the Transformer's features
    (the second is the ablation ``without_transformer``); both share the level, its bias
    correction and the intervals.

    **Level**: the newest window's revenue per launch x :func:`level_change` (x, with
    ``cfg.level_bias``, a bias correction). **Replays**: each past window whose start has a
    complete older window before it is predicted as the candidates are (level of the newest
    window that had ended by its start, times the level change seen from there; relative
    revenue from the ranker fitted without it); ``replay_forecast_ratio`` is their total
    realised / total predicted revenue (the bias correction when it is on). The 80% interval is
    split-conformal on realised / predicted of those replayed launches; without any replayable
    window it comes from the in-sample ratios, widened by the past changes of level between
    windows."""
    data, windows = _past_cohorts(hist, horizon, cfg, past_signal)
    if len(data) < cfg.min_launches:
        return None, None
    base = [c for c in BASE_FEATURES if data[c].notna().any()]
    # the Transformer's features when (nearly) every past launch was scored; a launch that was
    # not (an item the model does not index) gets its window's mean
    tf = (
        [c for c in TRANSFORMER_FEATURES if data[c].notna().mean() >= 0.9]
        if cfg.use_transformer
        else []
    )
    ranker = fit_ranker(data, base + tf, cfg)
    ablation = fit_ranker(data, base, cfg) if tf else ranker
    # the Transformer's features stay only if they lower the held-out deviance across past
    # windows (leave one window out, each at its best penalty); with one window there is no
    # such evidence and they are left out
    transformer_validation = {
        "with": min(ranker.validation.values(), default=float("nan")),
        "without": min(ablation.validation.values(), default=float("nan")),
    }
    gain = 1.0 - transformer_validation["with"] / transformer_validation["without"]
    if tf and not gain >= cfg.min_validated_gain:
        ranker = ablation

    bounds = launch_windows(hist, horizon, cfg)
    by_start = {pd.Timestamp(w["start"]): w for w in windows}
    starts = [a for a, _ in bounds if a in by_start]
    ends = {a: e for a, e in bounds}
    means = [(a, by_start[a]["mean_revenue"]) for a in starts]  # newest first
    length = (ends[starts[0]] - starts[0]).days

    # replays: window k predicted from the windows that had ended by its start
    realised, predicted = [], []
    for k, a in enumerate(starts):
        older = [(t, m) for t, m in means[k + 1 :] if ends[t] <= a]
        if not older:
            continue
        change, _ = level_change(hist, a, older, length, horizon, cfg)
        g = data[data["window"] == k]
        # without window k and without its launches in the windows that overlap it
        rest = data[(data["window"] != k) & ~data.index.isin(g.index)]
        if rest.empty:
            continue
        same = dataclasses.replace(cfg, poisson_alphas=(), poisson_alpha=ranker.alpha)
        held = fit_ranker(rest, ranker.features, same)
        predicted.append(older[0][1] * change * held.relative(g))
        realised.append(g["target"].to_numpy())
    change, how = level_change(hist, hist.plan_start, means, length, horizon, cfg)
    if predicted:
        realised_all, predicted_all = np.concatenate(realised), np.concatenate(predicted)
        replay_ratio = float(realised_all.sum() / max(predicted_all.sum(), 1e-9))
        bias = (
            float(np.clip(replay_ratio, 1 / cfg.max_level_change, cfg.max_level_change))
            if cfg.level_bias
            else 1.0
        )
        ratios = realised_all / np.maximum(predicted_all * bias, 1e-9)
        interval_from = f"split-conformal on {len(ratios)} replayed past launches"
    else:
        bias, replay_ratio = 1.0, float("nan")
        fitted, targets = [], []
        for k, a in enumerate(starts):
            g = data[data["window"] == k]
            fitted.append(by_start[a]["mean_revenue"] * ranker.relative(g))
            targets.append(g["target"].to_numpy())
        ratios = np.concatenate(targets) / np.maximum(np.concatenate(fitted), 1e-9)
        if len(means) >= 2:
            m = np.array([v for _, v in means])
            steps = np.where(m[1:] > 0, m[:-1] / np.where(m[1:] > 0, m[1:], 1.0), 1.0)
            ratios = (ratios[:, None] * np.concatenate([steps, 1.0 / steps])[None, :]).ravel()
        interval_from = "in-sample ratios widened by the past level changes (no replayable window)"
    q10, q90 = _conformal_quantiles(ratios, cfg.interval)
    q50 = float(np.median(ratios))
    level = means[0][1] * change * bias
    fitted = np.concatenate(
        [
            by_start[a]["mean_revenue"] * ranker.relative(data[data["window"] == k])
            for k, a in enumerate(starts)
        ]
    )
    targets = np.concatenate([data.loc[data["window"] == k, "target"] for k in range(len(starts))])
    model = DemandModel(
        features=ranker.features,
        coefficients={f: float(c) for f, c in zip(ranker.features, ranker.coef, strict=True)},
        windows=windows,
        launches=int(len(data)),
        level=level,
        ratio_quantiles={"p10": q10, "p50": q50, "p90": q90},
        train_spearman=_spearman(fitted, targets),
        config=asdict(cfg),
        penalty=ranker.alpha,
        penalty_validation={str(k): v for k, v in ranker.validation.items()},
        level_newest_window=float(means[0][1]),
        level_change=change,
        level_change_from=how,
        level_bias=bias,
        replay_forecast_ratio=replay_ratio,
        transformer_used=bool(set(tf) & set(ranker.features)),
        transformer_validation=transformer_validation,
        interval_from=interval_from,
        interval_replayed_launches=int(len(ratios)) if predicted else 0,
        coefficients_without_transformer={
            f: float(c) for f, c in zip(ablation.features, ablation.coef, strict=True)
        },
    )

    def predict(feats: pd.DataFrame, use_transformer: bool = True) -> np.ndarray:
        """Expected revenue over the horizon of launches with these features (one cohort)."""
        return level * (ranker if use_transformer else ablation).relative(feats)

    return model, predict


VALUATION_DDL = """
CREATE OR REPLACE TABLE launch_valuation (
    plan_date DATE, item_id VARCHAR, expected_revenue DOUBLE,
    expected_revenue_without_transformer DOUBLE, revenue_p10 DOUBLE, revenue_p90 DOUBLE,
    feature_values VARCHAR
)
"""


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return (
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()[0][0]
        > 0
    )


def candidate_signal(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, float]]:
    """The Transformer's features of the candidates, from ``candidate_preferences`` (the
    current model's sums over the active users of ``r_model = 1 - exp(-n_i p_ij c_j)`` and of
    ``r_model`` x the user's mean units per purchase line, see ``scoring.store_preferences``):
    ``item_id -> {transformer_buyers, transformer_units}`` (see :func:`transformer_features`)."""
    if not has_table(con, "candidate_preferences"):
        return {}
    rows = con.execute(
        "SELECT item_id, expected_buyers_model, expected_units_model FROM candidate_preferences "
        "WHERE users_scored > 0"
    ).fetchall()
    return {
        str(i): {"transformer_buyers": float(np.log1p(b)), "transformer_units": float(np.log1p(u))}
        for i, b, u in rows
    }


def transformer_features(r_model: np.ndarray, user_units: np.ndarray, scale: float = 1.0):
    """``(transformer_buyers, transformer_units)`` per item from ``r_model`` ``(users, items)``:
    log1p of the expected returning buyers ``sum_i r_ij`` and of their expected units
    ``sum_i r_ij x (user i's mean units per purchase line)``; ``scale`` undoes a user sample."""
    r = np.asarray(r_model, dtype=float)
    u = np.asarray(user_units, dtype=float)[:, None]
    return np.log1p(r.sum(axis=0) * scale), np.log1p((r * u).sum(axis=0) * scale)


def estimate_demand(
    con: duckdb.DuckDBPyConnection,
    candidates: pd.DataFrame,
    expected_buyers: dict[str, float] | None,
    horizon: int,
    past_buyers: dict | None = None,
    cfg: DemandConfig = DemandConfig(),
) -> tuple[pd.DataFrame | None, DemandModel | None]:
    """Expected revenue and units over the horizon (80% interval) for each candidate, from the
    model fitted on the shop's past launches; ``(None, None)`` when there are too few of them.
    Also writes ``launch_valuation`` (both valuations, with and without the Transformer).

    ``candidates``: ``item_id, title, category, price``; ``expected_buyers``: ``sum_i r_ij``
    per candidate (kept for the report; the Transformer's features come from
    ``candidate_preferences``); ``past_buyers``: ``(window start, item_id) -> {feature: value}`` of
    the past launches, scored by the model trained before the oldest window (see
    ``scoring.calibrate_on_past_launches``)."""
    if candidates.empty:
        return None, None
    hist = load_history(con)
    model, predict = fit_demand_model(hist, horizon, cfg, past_buyers)
    if model is None:
        return None, None
    cands = candidates.rename(columns={"price": "first_price"})
    feats = launch_features(hist, cands, hist.plan_start, horizon, cfg)
    signal = candidate_signal(con)
    for name in TRANSFORMER_FEATURES:
        feats[name] = [signal.get(str(i), {}).get(name, 0.0) for i in cands["item_id"]]
    revenue = predict(feats)
    without = predict(feats, use_transformer=False)
    price = pd.to_numeric(cands["first_price"], errors="coerce").to_numpy(dtype=float)
    price = np.where(np.isfinite(price) & (price > 0), price, np.nan)
    lo = revenue * model.ratio_quantiles["p10"]
    hi = revenue * model.ratio_quantiles["p90"]
    out = pd.DataFrame(
        {
            "item_id": cands["item_id"].to_numpy(),
            "demand_score": np.log(np.maximum(revenue, 1e-9)),
            "expected_revenue": revenue,
            "expected_revenue_without_transformer": without,
            "revenue_p10": lo,
            "revenue_p90": hi,
            "expected_units": np.nan_to_num(revenue / price),
            "units_p10": np.nan_to_num(lo / price),
            "units_p90": np.nan_to_num(hi / price),
        }
    )
    used = sorted(set(model.features) | set(model.coefficients_without_transformer))
    used += [c for c in TRANSFORMER_FEATURES if c not in used]  # shown even when left out
    for c in used:
        out[f"feature_{c}"] = feats[c].to_numpy()
    store_valuation(con, out, hist.plan_start.date(), used, model)
    return out, model


def store_valuation(
    con,
    out: pd.DataFrame,
    plan_date: dt.date,
    features: list[str],
    model: DemandModel | None = None,
) -> None:
    """``launch_valuation``: per candidate the expected revenue with and without the
    Transformer's features (the backtest's ablation reads it), the interval and the features;
    ``launch_valuation_model``: what was fitted (coefficients, penalty, level, interval)."""
    import json

    df = pd.DataFrame(
        {
            "plan_date": plan_date,
            "item_id": out["item_id"].astype(str),
            "expected_revenue": out["expected_revenue"],
            "expected_revenue_without_transformer": out["expected_revenue_without_transformer"],
            "revenue_p10": out["revenue_p10"],
            "revenue_p90": out["revenue_p90"],
            "feature_values": [
                json.dumps({c: round(float(v), 6) for c, v in zip(features, row, strict=True)})
                for row in out[[f"feature_{c}" for c in features]].to_numpy()
            ],
        }
    )
    con.execute(VALUATION_DDL)
    con.register("_valuation_df", df)
    try:
        con.execute("INSERT INTO launch_valuation SELECT * FROM _valuation_df")
    finally:
        con.unregister("_valuation_df")
    if model is not None:
        con.execute(
            "CREATE OR REPLACE TABLE launch_valuation_model AS "
            "SELECT CAST(? AS DATE) AS plan_date, CAST(? AS VARCHAR) AS model",
            [plan_date, json.dumps(model.to_dict(), default=str)],
        )


def plan_start_of(con: duckdb.DuckDBPyConnection) -> dt.date:
    last = con.execute("SELECT max(ts) FROM clean_events").fetchall()[0][0]
    return (pd.Timestamp(last) + pd.Timedelta(days=1)).date()
