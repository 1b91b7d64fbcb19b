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
expected_buyers     log1p of ``sum_i r_ij`` (the Transformer's calibrated expected number of
                    returning buyers); OFF by default (``use_expected_buyers``), see below
==================  =========================================================================

Why the Transformer's expected buyers is not a feature by default: the past launches can only be
scored with the current model, which was trained on their own sales, so their scores are more
telling than a candidate's will be, and the regression trusts them too much. Measured on the
Online Retail backtest (five cutoffs, ``docs/backtest.md``): with it the captured revenue share
was lower at four of them (mean 0.61 against 0.65). ``r_ij`` still decides the promotion
audience and the launch hour, and values the candidates when there are too few past launches.

Model: the features are standardised *within each cohort* and the target is each launch's
revenue relative to its cohort's mean (launch windows differ in season, length and level; what
transfers is which products of a cohort sell more), and a Poisson regression (log link, a fixed
and deliberately strong L2 penalty, so the weights stay close to an even blend) is fitted on all
cohorts: it estimates the *expected* revenue, which is what the
plan maximises and what a captured revenue share rewards (a model of log revenue would rank by
the typical, not the expected, revenue and under-weight the few launches that sell in bulk). A
candidate's expected revenue is the newest cohort's mean revenue per launch times its predicted
relative revenue; the 80% interval comes from the distribution of realised / predicted on the
past launches (widened by the past changes of level between windows), units from revenue /
price.

Fallback: with fewer than ``min_launches`` past launches (a young shop, the simulated two
weeks of the tests) :func:`estimate_demand` returns ``None`` and the plan uses the
uncalibrated value ``sum_i r_ij x price x units per purchase`` (see ``planning.py``).
"""

from __future__ import annotations

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
BUYERS_FEATURE = "expected_buyers"


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
    poisson_alpha: float = 1.0
    use_expected_buyers: bool = False


@dataclass
class DemandModel:
    """What was fitted (for metadata and reports)."""

    features: list[str]
    coefficients: dict[str, float]
    windows: list[dict]
    launches: int
    level: float  # mean revenue per launch of the newest window (over the horizon)
    ratio_quantiles: dict[str, float]  # realised / predicted on past launches
    train_spearman: float
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# text similarity
# --------------------------------------------------------------------------------------------
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
    sims = (vec.transform(targets) @ e.T).toarray()
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


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
    s = (m @ m.T).toarray()
    np.fill_diagonal(s, 0.0)
    return (s >= threshold).sum(axis=1).astype(float)


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


def _past_cohorts(hist: ShopHistory, horizon: int, cfg: DemandConfig, buyers: dict | None):
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
        if buyers is not None:
            f[BUYERS_FEATURE] = np.log1p(
                [max(float(buyers.get((start, str(i)), np.nan)), 0.0) for i in cohort["item_id"]]
            )
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


def fit_demand_model(
    hist: ShopHistory,
    horizon: int,
    cfg: DemandConfig = DemandConfig(),
    past_buyers: dict | None = None,
):
    """Fit the launch-revenue model on the past launch windows; ``None`` when there are too few
    past launches. Returns ``(model, predict)`` where ``predict(features) -> (log revenue, residuals)``.

    The residuals that make the interval and the expected value (smearing) are the in-sample
    ones (each window at its own level), widened, with two windows or more, by the changes of
    level between consecutive windows (both signs)."""
    from sklearn.linear_model import PoissonRegressor

    use_buyers = cfg.use_expected_buyers and past_buyers is not None and len(past_buyers) > 0
    data, windows = _past_cohorts(hist, horizon, cfg, past_buyers if use_buyers else None)
    if len(data) < cfg.min_launches:
        return None, None
    features = list(BASE_FEATURES) + ([BUYERS_FEATURE] if use_buyers else [])
    features = [c for c in features if data[c].notna().any()]
    xs, rels, means = [], [], []
    for _, g in data.groupby("window", sort=True):  # 0 = the newest window
        xs.append(_zscore(g[features]))
        mean = float(g["target"].mean())
        means.append(mean if mean > 0 else 1.0)
        rels.append(g["target"].to_numpy() / means[-1])
    reg = PoissonRegressor(alpha=cfg.poisson_alpha, max_iter=1000).fit(
        pd.concat(xs).to_numpy(), np.concatenate(rels)
    )
    mu = [reg.predict(xw.to_numpy()) for xw in xs]
    ratios = np.concatenate(rels) / np.maximum(np.concatenate(mu), 1e-9)
    if len(xs) >= 2:
        # the candidates' window will not sit exactly at the newest window's level: widen the
        # errors by the past changes of level from one window to the next, both ways (their
        # trend is not used: early windows are polluted by old slow sellers whose first sale in
        # the data only looks like a launch, which looks like growth)
        steps = np.asarray(means[:-1]) / np.asarray(means[1:])
        ratios = (ratios[:, None] * np.concatenate([steps, 1.0 / steps])[None, :]).ravel()
    level = means[0]  # the newest window: closest in season, least polluted
    targets = np.concatenate([g["target"].to_numpy() for _, g in data.groupby("window")])
    fitted = np.concatenate([m * mw for m, mw in zip(means, mu, strict=True)])
    model = DemandModel(
        features=features,
        coefficients={f: float(c) for f, c in zip(features, reg.coef_, strict=True)},
        windows=windows,
        launches=int(len(data)),
        level=level,
        ratio_quantiles={
            "p10": float(np.quantile(ratios, 0.1)),
            "p50": float(np.quantile(ratios, 0.5)),
            "p90": float(np.quantile(ratios, 0.9)),
        },
        train_spearman=_spearman(fitted, targets),
        config=asdict(cfg),
    )

    def predict(feats: pd.DataFrame) -> np.ndarray:
        """Expected revenue over the horizon of launches with these features (one cohort)."""
        z = _zscore(feats[features]) if len(feats) > 1 else feats[features] * 0.0
        return level * reg.predict(z.fillna(0.0).to_numpy())

    return model, predict


def estimate_demand(
    con: duckdb.DuckDBPyConnection,
    candidates: pd.DataFrame,
    expected_buyers: dict[str, float] | None,
    horizon: int,
    past_buyers: dict[str, float] | None = None,
    cfg: DemandConfig = DemandConfig(),
) -> tuple[pd.DataFrame | None, DemandModel | None]:
    """Expected revenue and units over the horizon (80% interval) for each candidate, from the
    model fitted on the shop's past launches; ``(None, None)`` when there are too few of them.

    ``candidates``: ``item_id, title, category, price``; ``expected_buyers``: ``sum_i r_ij`` per
    candidate; ``past_buyers``: the same for the past launches (attribute-only scores)."""
    if candidates.empty:
        return None, None
    hist = load_history(con)
    model, predict = fit_demand_model(hist, horizon, cfg, past_buyers)
    if model is None:
        return None, None
    cands = candidates.rename(columns={"price": "first_price"})
    feats = launch_features(hist, cands, hist.plan_start, horizon, cfg)
    if BUYERS_FEATURE in model.features:
        feats[BUYERS_FEATURE] = np.log1p(
            [max(float((expected_buyers or {}).get(i, 0.0)), 0.0) for i in cands["item_id"]]
        )
    revenue = predict(feats)
    price = pd.to_numeric(cands["first_price"], errors="coerce").to_numpy(dtype=float)
    price = np.where(np.isfinite(price) & (price > 0), price, np.nan)
    lo = revenue * model.ratio_quantiles["p10"]
    hi = revenue * model.ratio_quantiles["p90"]
    out = pd.DataFrame(
        {
            "item_id": cands["item_id"].to_numpy(),
            "demand_score": np.log(np.maximum(revenue, 1e-9)),
            "expected_revenue": revenue,
            "revenue_p10": lo,
            "revenue_p90": hi,
            "expected_units": np.nan_to_num(revenue / price),
            "units_p10": np.nan_to_num(lo / price),
            "units_p90": np.nan_to_num(hi / price),
        }
    )
    for c in model.features:
        out[f"feature_{c}"] = feats[c].to_numpy()
    return out, model


def plan_start_of(con: duckdb.DuckDBPyConnection) -> dt.date:
    last = con.execute("SELECT max(ts) FROM clean_events").fetchall()[0][0]
    return (pd.Timestamp(last) + pd.Timedelta(days=1)).date()
