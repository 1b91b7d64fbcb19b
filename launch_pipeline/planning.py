"""The launch plan: which candidates to launch, to whom to promote them, and when.

Pure functions over pandas/numpy; :mod:`launch_pipeline.launch_planner` feeds them the warehouse
tables and writes their output.

* **Selection** (:func:`select_launches`, a MILP: ``scipy.optimize.milp`` / HiGHS): maximise
  ``sum_j v_j x_j`` over binary ``x_j`` (launch candidate ``j``), where ``v_j`` is the
  candidate's value under the plan's objective (expected incremental revenue or gross profit,
  stock-capped, see :mod:`launch_pipeline.launch_planner`), subject to at most ``slots``
  launches, at most ``category_cap`` per category and the order cost of the picks within
  ``launch_budget``.
* **Audiences** (:func:`assign_audiences`): the promotion audiences of all picks together, as a
  min-cost flow (an LP whose optimum is whole): each pick promoted to at most ``audience_size``
  users among its best by ``r_ij``, nobody promoted more than ``max_promotions_per_user``
  products, maximising ``sum r_ij x value of a purchase`` after every pick got the first half of
  its audience.
* **Timing** (:func:`schedule_launches`): each pick, in value order, gets the hour in which its
  audience is most active (their hour-of-week activity weighted by ``r_ij``), from the first hour
  after the plan's creation plus ``lead_time_hours``, and at least ``min_gap_hours`` away from an
  earlier pick whose audience overlaps with its own (shared users >= ``overlap_share`` of the
  smaller audience). Times are UTC; :func:`to_local` gives the shop's time zone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_array, csr_array, vstack

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class SelectionResult:
    chosen: list[str]  # in decreasing value
    objective: float  # sum of the picks' values (the promotion term excluded)
    status: str
    solve_seconds: float
    audiences: pd.DataFrame = field(default_factory=pd.DataFrame)  # item_id, user_id, r, rank
    promotion_value: float = 0.0  # the promotion term of the MILP objective
    budget_used: float = 0.0


def _constraint_rows(
    df: pd.DataFrame, slots: int, category_cap: int | None, launch_budget: float | None, n_vars
):
    """Rows (sparse, over ``n_vars`` columns, candidates first) of the selection constraints."""
    n = len(df)
    rows, upper = (
        [csr_array((np.ones(n), (np.zeros(n), np.arange(n))), shape=(1, n_vars))],
        [float(slots)],
    )
    if category_cap is not None:
        codes, cats = pd.factorize(df["category"].fillna("unknown"))
        rows.append(csr_array((np.ones(n), (codes, np.arange(n))), shape=(len(cats), n_vars)))
        upper.extend([float(category_cap)] * len(cats))
    if launch_budget is not None:
        cost = df["order_cost"].fillna(0.0).to_numpy(dtype=float)
        rows.append(csr_array((cost, (np.zeros(n), np.arange(n))), shape=(1, n_vars)))
        upper.append(float(launch_budget))
    return rows, upper


def _validate(slots: int, category_cap: int | None, launch_budget: float | None) -> None:
    if slots < 0:
        raise ValueError(f"slots must be >= 0, got {slots}")
    if category_cap is not None and category_cap < 0:
        raise ValueError(f"category_cap must be >= 0, got {category_cap}")
    if launch_budget is not None and launch_budget < 0:
        raise ValueError(f"launch_budget must be >= 0, got {launch_budget}")


def select_launches(
    candidates: pd.DataFrame,
    slots: int,
    category_cap: int | None = None,
    value_col: str = "expected_revenue",
    launch_budget: float | None = None,
    time_limit_s: float = 60.0,
) -> SelectionResult:
    """At most ``slots`` candidates, at most ``category_cap`` per category, order cost (column
    ``order_cost``) within ``launch_budget``, maximising the sum of ``value_col`` (MILP, HiGHS).
    Candidates with a non-positive value are never chosen (launching them adds nothing)."""
    _validate(slots, category_cap, launch_budget)
    df = candidates.reset_index(drop=True)
    n = len(df)
    if n == 0 or slots == 0:
        return SelectionResult([], 0.0, "empty", 0.0, _NO_AUDIENCE.copy())
    values = np.nan_to_num(df[value_col].to_numpy(dtype=float), nan=0.0)
    rows, upper = _constraint_rows(df, slots, category_cap, launch_budget, n)
    t0 = time.perf_counter()
    res = milp(
        c=-values,
        constraints=LinearConstraint(vstack(rows).tocsr(), -np.inf, np.array(upper)),
        integrality=np.ones(n),
        bounds=Bounds(np.zeros(n), (values > 0).astype(float)),
        options={"disp": False, "time_limit": time_limit_s},
    )
    elapsed = time.perf_counter() - t0
    if res.x is None:
        raise RuntimeError(f"launch selection MILP failed: {res.message}")
    x = res.x > 0.5
    order = np.argsort(-values[x], kind="stable")
    cost = df["order_cost"].fillna(0.0).to_numpy(dtype=float) if "order_cost" in df else np.zeros(n)
    return SelectionResult(
        chosen=[str(i) for i in df.loc[x, "item_id"].to_numpy()[order]],
        objective=float(values[x].sum()),
        status=_status_words(res),
        solve_seconds=elapsed,
        audiences=_NO_AUDIENCE.copy(),
        budget_used=float(cost[x].sum()),
    )


_NO_AUDIENCE = pd.DataFrame(columns=["item_id", "user_id", "r", "audience_rank"])


def audience_pool_needed(picks: int, audience_size: int, max_promotions_per_user: int) -> int:
    """How many of each pick's best users :func:`assign_audiences` considers: enough for every
    pick to fill its audience from users nobody else needs (and at least twice the audience).
    The scorer keeps at least this many users per candidate (``candidate_audiences``)."""
    if max_promotions_per_user <= 0 or audience_size <= 0:
        return max(2 * audience_size, 0)
    return max(2 * audience_size, -(-picks * audience_size // max_promotions_per_user))


def assign_audiences(
    picks: pd.DataFrame,
    prefs: pd.DataFrame,
    audience_size: int,
    max_promotions_per_user: int,
    audience_pool: int | None = None,
) -> tuple[pd.DataFrame, float]:
    """The promotion audiences of all picks at once: a min-cost flow (solved as an LP by HiGHS;
    its matrix is a network matrix, so the optimum is whole). Each pick ``j`` sends at most
    ``audience_size`` promotions, each to a different user ``i`` among its ``audience_pool``
    best by ``r``; nobody receives more than ``max_promotions_per_user``. Maximises
    ``sum r_ij x purchase_value_j`` over the promotions sent, after first giving every pick
    the first half of its audience (those places are worth more than any match, so no pick is
    left with a thin audience while another takes its users for a slightly better match).
    ``picks``: ``item_id`` (and ``purchase_value``); returns (``item_id, user_id, r,
    audience_rank``, the matched ``sum r x purchase_value``)."""
    if max_promotions_per_user < 0:
        raise ValueError(f"max_promotions_per_user must be >= 0, got {max_promotions_per_user}")
    n = len(picks)
    if n == 0 or audience_size <= 0 or max_promotions_per_user == 0 or prefs.empty:
        return _NO_AUDIENCE.copy(), 0.0
    pool = audience_pool or audience_pool_needed(n, audience_size, max_promotions_per_user)
    sub = prefs[prefs["item_id"].isin(picks["item_id"])]
    sub = sub.sort_values(["item_id", "r", "user_id"], ascending=[True, False, True])
    edges = sub.groupby("item_id", sort=False).head(pool).reset_index(drop=True)
    m = len(edges)
    pos = pd.Series(np.arange(n), index=picks["item_id"].astype(str).to_numpy())
    j = pos.loc[edges["item_id"].astype(str)].to_numpy()
    users, u = np.unique(edges["user_id"].astype(str).to_numpy(), return_inverse=True)
    unit = (
        np.nan_to_num(picks["purchase_value"].to_numpy(dtype=float), nan=0.0)
        if "purchase_value" in picks
        else np.ones(n)
    )
    w = edges["r"].to_numpy(dtype=float) * np.maximum(unit[j], 0.0)
    fill = (audience_size + 1) // 2
    bonus = 2.0 * float(w.max(initial=0.0)) + 1.0
    # columns: y (m edges), f (n: first places), g (n: the other places)
    # pick rows: f_j + g_j - sum_i y_ij = 0; user rows: sum_j y_ij <= cap
    cols = np.arange(m)
    a_eq = coo_array(
        (
            np.concatenate([-np.ones(m), np.ones(n), np.ones(n)]),
            (np.concatenate([j, np.arange(n), np.arange(n)]),
             np.concatenate([cols, m + np.arange(n), m + n + np.arange(n)])),
        ),
        shape=(n, m + 2 * n),
    ).tocsr()  # fmt: skip
    a_ub = coo_array((np.ones(m), (u, cols)), shape=(len(users), m + 2 * n)).tocsr()
    upper = np.concatenate(
        [np.ones(m), np.full(n, float(fill)), np.full(n, float(audience_size - fill))]
    )
    res = linprog(
        c=-np.concatenate([w, np.full(n, bonus), np.zeros(n)]),
        A_ub=a_ub,
        b_ub=np.full(len(users), float(max_promotions_per_user)),
        A_eq=a_eq,
        b_eq=np.zeros(n),
        bounds=np.column_stack([np.zeros(m + 2 * n), upper]),
        method="highs-ds",
    )
    if res.x is None:
        raise RuntimeError(f"audience assignment failed: {res.message}")
    y = res.x[:m] > 0.5
    aud = edges.loc[y, ["item_id", "user_id", "r"]].copy()
    aud = aud.sort_values(["item_id", "r", "user_id"], ascending=[True, False, True])
    aud["audience_rank"] = aud.groupby("item_id").cumcount() + 1
    return aud.reset_index(drop=True), float(w[y].sum())


def select_and_assign(
    candidates: pd.DataFrame,
    prefs: pd.DataFrame,
    slots: int,
    category_cap: int | None,
    audience_size: int,
    max_promotions_per_user: int,
    value_col: str = "value",
    launch_budget: float | None = None,
    audience_pool: int | None = None,
) -> SelectionResult:
    """The picks (:func:`select_launches`) and their audiences (:func:`assign_audiences`)."""
    sel = select_launches(candidates, slots, category_cap, value_col, launch_budget)
    picks = candidates.set_index(candidates["item_id"].astype(str)).loc[sel.chosen]
    t0 = time.perf_counter()
    aud, matched = assign_audiences(
        picks.reset_index(drop=True), prefs, audience_size, max_promotions_per_user, audience_pool
    )
    return dataclasses.replace(
        sel,
        audiences=aud,
        promotion_value=matched,
        solve_seconds=sel.solve_seconds + time.perf_counter() - t0,
    )


def _status_words(res) -> str:
    """The solver's outcome in words (HiGHS status codes mean nothing to a merchandiser)."""
    if res.status == 0:
        return "optimal"
    if res.status == 1:
        return "best found within the time limit"
    return str(res.message)


def slot_value_curve(
    candidates: pd.DataFrame,
    max_slots: int,
    category_cap: int | None,
    value_col: str = "value",
    launch_budget: float | None = None,
) -> pd.DataFrame:
    """The plan's value with 1..``max_slots`` launch slots (other constraints unchanged; the
    promotion term left out): ``slots, value, marginal_value`` (what the last slot added)."""
    rows, prev = [], 0.0
    for s in range(1, max_slots + 1):
        v = select_launches(candidates, s, category_cap, value_col, launch_budget).objective
        rows.append({"slots": s, "value": v, "marginal_value": v - prev})
        prev = v
    return pd.DataFrame(rows, columns=["slots", "value", "marginal_value"])


def best_launch_window(
    audience: pd.DataFrame, user_profiles: pd.DataFrame, overall_profile: np.ndarray | None = None
) -> tuple[int, np.ndarray]:
    """Hour of week (0 = Monday 00:00 UTC) in which the audience is most active.

    ``audience``: ``user_id, r``; ``user_profiles``: ``user_id, hour_of_week, event_share``.
    Each user's hour-of-week activity shares are weighted by ``r``; the result is smoothed over
    the neighbouring hours (a launch reaches people for a while). Falls back to the overall
    profile for users without history. Returns (hour_of_week, 168-vector of weights)."""
    weights = np.zeros(168)
    prof = user_profiles.merge(audience[["user_id", "r"]], on="user_id")
    if len(prof):
        np.add.at(
            weights,
            prof["hour_of_week"].to_numpy(dtype=int),
            (prof["event_share"] * prof["r"]).to_numpy(dtype=float),
        )
    if weights.sum() <= 0 and overall_profile is not None:
        weights = np.asarray(overall_profile, dtype=float).copy()
    smoothed = 0.5 * weights + 0.25 * np.roll(weights, 1) + 0.25 * np.roll(weights, -1)
    return int(np.argmax(smoothed)), smoothed


def earliest_launch(created_at: dt.datetime, plan_date: dt.date, lead_time_hours: float):
    """The first whole UTC hour at or after both the plan's creation + lead time and the plan
    date (naive UTC datetimes)."""
    t = max(
        created_at + dt.timedelta(hours=float(lead_time_hours)),
        dt.datetime.combine(plan_date, dt.time(0)),
    )
    if t.minute or t.second or t.microsecond:
        t = t.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    return t


def audience_overlap(a: set, b: set) -> float:
    """Shared users as a share of the smaller audience (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def schedule_launches(
    picks: list[str],
    audiences: pd.DataFrame,
    user_profiles: pd.DataFrame,
    overall_profile: np.ndarray,
    earliest: dt.datetime,
    min_gap_hours: int = 24,
    overlap_share: float = 0.1,
    search_days: int = 7,
) -> dict[str, dt.datetime]:
    """Launch time (naive UTC) of each pick, in the given (value) order: the hour of the
    ``search_days`` from ``earliest`` in which its audience is most active, at least
    ``min_gap_hours`` away from every earlier pick whose audience overlaps with its own by
    ``overlap_share`` or more. When no hour of that week is free, the best free hour of the
    week after; failing that, the first free hour after both."""
    hours = [earliest + dt.timedelta(hours=h) for h in range(24 * 2 * search_days)]
    first_week = np.arange(len(hours)) < 24 * search_days
    how = np.array([t.weekday() * 24 + t.hour for t in hours])
    members = {
        item: set(audiences.loc[audiences["item_id"] == item, "user_id"].astype(str))
        for item in picks
    }
    out: dict[str, dt.datetime] = {}
    for item in picks:
        _, weights = best_launch_window(
            audiences[audiences["item_id"] == item], user_profiles, overall_profile
        )
        score = weights[how]
        clashes = [
            out[o] for o in out if audience_overlap(members[item], members[o]) >= overlap_share
        ]
        ok = np.ones(len(hours), dtype=bool)
        for t in clashes:
            gap = np.abs(np.array([(h - t).total_seconds() for h in hours])) / 3600.0
            ok &= gap >= min_gap_hours
        if (ok & first_week).any():
            ok &= first_week
        if ok.any():
            k = int(np.flatnonzero(ok)[np.argmax(score[ok])])
            out[item] = hours[k]
        else:
            t = hours[-1] + dt.timedelta(hours=1)
            while any(abs((t - c).total_seconds()) / 3600.0 < min_gap_hours for c in clashes):
                t += dt.timedelta(hours=1)
            out[item] = t
    return out


def to_local(utc: dt.datetime, timezone: str) -> dt.datetime:
    """A naive UTC datetime in the shop's time zone (naive, local wall clock)."""
    aware = utc.replace(tzinfo=dt.timezone.utc).astimezone(ZoneInfo(timezone))
    return aware.replace(tzinfo=None)


def check_timezone(timezone: str) -> str:
    """The time zone name, or a ``ValueError`` saying what to use instead."""
    try:
        ZoneInfo(timezone)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError
        raise ValueError(
            f"unknown shop time zone {timezone!r}: use an IANA name such as 'Europe/London' or "
            "'UTC'"
        ) from exc
    return timezone


def poisson_binomial_buyers(r: np.ndarray) -> float:
    """Expected buyers ``sum_i r_ij`` (each user buys at most once within the horizon)."""
    return float(np.clip(np.asarray(r, dtype=float), 0.0, 1.0).sum())
