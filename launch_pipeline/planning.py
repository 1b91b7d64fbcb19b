"""The launch plan: which candidates to launch, to whom to promote them, and when.

Pure functions over pandas/numpy; :mod:`launch_pipeline.launch_planner` feeds them the warehouse
tables and writes their output.

* **Selection and audiences, one MILP** (:func:`select_and_assign`, ``scipy.optimize.milp`` /
  HiGHS). Binary ``x_j`` (launch candidate ``j``) and ``y_ij`` (promote ``j`` to user ``i``) for
  the ``audience_pool`` users with the highest ``r_ij`` of each candidate. Maximise

      sum_j v_j x_j  +  promotion_lift * sum_ij r_ij u_j y_ij

  where ``v_j`` is the candidate's value under the plan's objective (expected incremental
  revenue or gross profit, stock-capped, see :mod:`launch_pipeline.launch_planner`) and ``u_j``
  the value of one purchase (price or unit margin x units per purchase), subject to:
  at most ``slots`` launches; at most ``category_cap`` per category; the order cost of the picks
  within ``launch_budget``; ``sum_i y_ij <= audience_size * x_j`` (audiences only for picks, of
  at most ``audience_size``); ``sum_j y_ij <= max_promotions_per_user`` (nobody is promoted more
  than that many products). ``promotion_lift`` is the stated assumption of how much of a reached
  user's expected purchase a promotion adds (default 0.1); it is what makes a candidate whose
  best users are already taken by other picks worth a little less.
* **Timing** (:func:`schedule_launches`): each pick, in value order, gets the hour in which its
  audience is most active (their hour-of-week activity weighted by ``r_ij``), from the first hour
  after the plan's creation plus ``lead_time_hours``, and at least ``min_gap_hours`` away from an
  earlier pick whose audience overlaps with its own (shared users >= ``overlap_share`` of the
  smaller audience). Times are UTC; :func:`to_local` gives the shop's time zone.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
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
) -> SelectionResult:
    """Selection only (no audiences): at most ``slots`` candidates, at most ``category_cap`` per
    category, order cost (column ``order_cost``) within ``launch_budget``, maximising the sum of
    ``value_col``. Candidates with a non-positive value are never chosen."""
    empty = pd.DataFrame(columns=["user_id", "item_id", "r"])
    return select_and_assign(
        candidates,
        empty,
        slots,
        category_cap,
        audience_size=0,
        max_promotions_per_user=0,
        value_col=value_col,
        launch_budget=launch_budget,
    )


def select_and_assign(
    candidates: pd.DataFrame,
    prefs: pd.DataFrame,
    slots: int,
    category_cap: int | None,
    audience_size: int,
    max_promotions_per_user: int,
    value_col: str = "value",
    launch_budget: float | None = None,
    promotion_lift: float = 0.1,
    audience_pool: int | None = None,
    time_limit_s: float = 60.0,
) -> SelectionResult:
    """The MILP of the module docstring. ``candidates``: ``item_id, category, value_col`` and,
    with a budget, ``order_cost``; with audiences, ``purchase_value`` (``u_j``). ``prefs``:
    ``user_id, item_id, r``. Returns the picks (decreasing value) and their audiences."""
    _validate(slots, category_cap, launch_budget)
    if max_promotions_per_user < 0:
        raise ValueError(f"max_promotions_per_user must be >= 0, got {max_promotions_per_user}")
    df = candidates.reset_index(drop=True)
    n = len(df)
    no_aud = pd.DataFrame(columns=["item_id", "user_id", "r", "audience_rank"])
    if n == 0 or slots == 0:
        return SelectionResult([], 0.0, "empty", 0.0, no_aud)
    values = np.nan_to_num(df[value_col].to_numpy(dtype=float), nan=0.0)
    # the audience pool: each candidate's best users by r (twice the audience: enough room
    # for the contact cap to push users to their next-best products; measured on the default
    # shop: the same plan as four times the audience, in half the time)
    pool = audience_pool or 2 * audience_size
    edges = pd.DataFrame(columns=["user_id", "item_id", "r"])
    if audience_size > 0 and max_promotions_per_user > 0 and len(prefs):
        sub = prefs[prefs["item_id"].isin(df["item_id"])]
        sub = sub.sort_values(["item_id", "r", "user_id"], ascending=[True, False, True])
        edges = sub.groupby("item_id", sort=False).head(pool).reset_index(drop=True)
    m = len(edges)
    n_vars = n + m
    rows, upper = _constraint_rows(df, slots, category_cap, launch_budget, n_vars)
    weights = np.zeros(m)
    if m:
        cand_pos = pd.Series(np.arange(n), index=df["item_id"].astype(str))
        j = cand_pos.loc[edges["item_id"].astype(str)].to_numpy()
        users, u = np.unique(edges["user_id"].astype(str).to_numpy(), return_inverse=True)
        unit = (
            np.nan_to_num(df["purchase_value"].to_numpy(dtype=float), nan=0.0)
            if "purchase_value" in df
            else np.ones(n)
        )
        weights = promotion_lift * edges["r"].to_numpy(dtype=float) * np.maximum(unit[j], 0.0)
        # sum_i y_ij - audience_size x_j <= 0
        aud = coo_array(
            (
                np.concatenate([np.ones(m), -float(audience_size) * np.ones(n)]),
                (
                    np.concatenate([j, np.arange(n)]),
                    np.concatenate([n + np.arange(m), np.arange(n)]),
                ),
            ),
            shape=(n, n_vars),
        ).tocsr()
        rows.append(aud)
        upper.extend([0.0] * n)
        cap = coo_array((np.ones(m), (u, n + np.arange(m))), shape=(len(users), n_vars)).tocsr()
        rows.append(cap)
        upper.extend([float(max_promotions_per_user)] * len(users))
    a = vstack(rows).tocsr()
    ub = np.concatenate([(values > 0).astype(float), np.ones(m)])  # no launch that adds nothing
    t0 = time.perf_counter()
    res = milp(
        c=-np.concatenate([values, weights]),
        constraints=LinearConstraint(a, -np.inf, np.array(upper)),
        integrality=np.ones(n_vars),
        bounds=Bounds(np.zeros(n_vars), ub),
        options={"disp": False, "time_limit": time_limit_s},
    )
    elapsed = time.perf_counter() - t0
    if res.x is None:
        raise RuntimeError(f"launch selection MILP failed: {res.message}")
    x = res.x[:n] > 0.5
    order = np.argsort(-values[x], kind="stable")
    chosen = [str(i) for i in df.loc[x, "item_id"].to_numpy()[order]]
    audiences = no_aud
    promo = 0.0
    if m:
        y = res.x[n:] > 0.5
        audiences = edges.loc[y, ["item_id", "user_id", "r"]].copy()
        audiences = audiences.sort_values(
            ["item_id", "r", "user_id"], ascending=[True, False, True]
        )
        audiences["audience_rank"] = audiences.groupby("item_id").cumcount() + 1
        audiences = audiences.reset_index(drop=True)
        promo = float(weights[y].sum())
    cost = df["order_cost"].fillna(0.0).to_numpy(dtype=float) if "order_cost" in df else np.zeros(n)
    return SelectionResult(
        chosen=chosen,
        objective=float(values[x].sum()),
        status=_status_words(res),
        solve_seconds=elapsed,
        audiences=audiences,
        promotion_value=promo,
        budget_used=float(cost[x].sum()),
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
