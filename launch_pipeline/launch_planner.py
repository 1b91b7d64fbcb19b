"""Plan the launches against the warehouse and keep every scenario side by side (no Dagster here).

:func:`load_plan_inputs` reads what a plan needs once (the stored preferences ``r_ij``, the
candidates with unit cost and stock, activity profiles, the shop's history) and fits the demand
model and the cannibalization rate on the shop's past launches; :func:`build_plan` turns them and
one scenario's :class:`~launch_pipeline.settings.PlanningSettings` into the plan (pure);
:func:`store_plan` writes it. :func:`make_and_store_plan` does all three and writes the report:
the ``launch_plan`` asset and ``launch-pipeline plan --scenario NAME`` both call it. Re-planning
never retrains: the preferences are read as stored, and a scenario whose horizon differs from
the one they were scored for is refused (:class:`HorizonMismatchError`).

Per candidate (:func:`value_candidates`): a negative-binomial count of units over the horizon
(:mod:`launch_pipeline.unit_forecast`) around the demand model's expectation, whose 80% range
and median are the demand model's calibrated (split-conformal) bounds; expected units sold
``E[min(D, stock)]``; revenue and gross profit on them; the share taken from similar existing
products (:mod:`launch_pipeline.cannibalization`) and the incremental revenue and profit; the
newsvendor initial order and its cost. The plan maximises the incremental value of the objective
(``gross_profit`` by default when every candidate has a unit cost) in a MILP, then assigns the
promotion audiences of all picks together under the contact cap (a min-cost flow; both in
:mod:`launch_pipeline.planning`).

Tables (kept per ``plan_date`` and ``scenario``; column descriptions are stored as DuckDB column
comments): ``launch_plan``, ``launch_audiences``, ``launch_plan_explanations``,
``plan_scenarios`` (the settings and totals of each scenario), ``plan_slot_values`` (the value of
the plan with 1, 2, ... slots); and ``candidate_demand``, the demand model's forecast kept for
the data, horizon and candidate list it was fitted on (re-planning reads it back).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline.cannibalization import (
    CannibalizationEstimate,
    estimate_cannibalization,
    neighbour_strength,
)
from launch_pipeline.demand import DemandModel, ShopHistory, estimate_demand, load_history
from launch_pipeline.errors import ConfigurationError
from launch_pipeline.explanations import (
    Explanation,
    describe_audience,
    left_out_by,
    similar_past_products,
    value_drivers,
)
from launch_pipeline.planning import (
    WEEKDAYS,
    SelectionResult,
    audience_pool_needed,
    check_timezone,
    earliest_launch,
    schedule_launches,
    select_and_assign,
    slot_value_curve,
    to_local,
)
from launch_pipeline.settings import OBJECTIVES, PlanningSettings, Settings
from launch_pipeline.unit_forecast import (
    MAX_SHAPE,
    forecast_units,
    gamma_shape_from_ratios,
)
from launch_pipeline.warehouse import Rows, replace_atomically

EXPLAIN_NON_PICKS = 5
SLOT_CURVE_EXTRA = 5
SCENARIO_TAG = "launch_pipeline/scenario"


class HorizonMismatchError(ConfigurationError):
    """A scenario asks for another horizon than the stored preferences were scored for."""


# --------------------------------------------------------------------------------------------
# tables: columns, types and descriptions in one place
# --------------------------------------------------------------------------------------------
PLAN_COLUMNS: dict[str, tuple[str, str]] = {
    "plan_date": ("DATE", "Day the plan is for (the day after the last event)"),
    "scenario": ("VARCHAR", "Name of the planning scenario (default: the nightly plan)"),
    "item_id": ("VARCHAR", "Candidate product id"),
    "title": ("VARCHAR", "Product title"),
    "category": ("VARCHAR", "Product category"),
    "brand": ("VARCHAR", "Brand"),
    "price": ("DOUBLE", "Launch price"),
    "unit_cost": ("DOUBLE", "Cost of one unit (from candidates.csv; empty if unknown)"),
    "stock": ("BIGINT", "Units available (from candidates.csv; empty: unlimited)"),
    "units_per_purchase": ("DOUBLE", "Mean units per purchase in the product's category"),
    "expected_demand_units": ("DOUBLE", "Expected units demanded over the horizon (no stock cap)"),
    "expected_units": ("DOUBLE", "Expected units sold over the horizon: E[min(demand, stock)]"),
    "units_p10": ("INTEGER", "Units sold: 10th percentile (whole units)"),
    "units_p50": ("INTEGER", "Units sold: median (whole units)"),
    "units_p90": ("INTEGER", "Units sold: 90th percentile (whole units)"),
    "expected_buyers": ("DOUBLE", "Expected distinct buyers (never above expected units)"),
    "buyers_from_preferences": ("DOUBLE", "Sum over active users of r_ij (analysts)"),
    "expected_revenue": ("DOUBLE", "Expected revenue of the units sold (gross)"),
    "revenue_p10": ("DOUBLE", "Revenue at the 10th percentile of units"),
    "revenue_p90": ("DOUBLE", "Revenue at the 90th percentile of units"),
    "expected_gross_profit": ("DOUBLE", "(price - unit cost) x expected units sold (gross)"),
    "cannibalization_rate": (
        "DOUBLE",
        "Share of its sales expected to come out of similar products",
    ),
    "incremental_revenue": ("DOUBLE", "Expected revenue net of cannibalized sales"),
    "incremental_gross_profit": ("DOUBLE", "Expected gross profit net of cannibalized sales"),
    "value": ("DOUBLE", "What the plan maximises: incremental revenue or gross profit"),
    "objective": ("VARCHAR", "revenue or gross_profit"),
    "order_quantity": ("INTEGER", "Recommended initial order (newsvendor, capped by stock)"),
    "order_cost": ("DOUBLE", "order_quantity x unit cost"),
    "expected_leftover_units": ("DOUBLE", "Expected units of the order unsold after the horizon"),
    "stock_limited": ("BOOLEAN", "Demand exceeds the stock with probability >= 10%"),
    "chosen": ("BOOLEAN", "In the plan"),
    "plan_rank": ("INTEGER", "Rank among the picks (1 = most valuable)"),
    "value_rank": ("INTEGER", "Rank among all candidates by value"),
    "launch_at": ("TIMESTAMP", "Launch time, UTC"),
    "launch_at_local": ("TIMESTAMP", "Launch time in the shop's time zone"),
    "shop_timezone": ("VARCHAR", "The shop's time zone (IANA name)"),
    "launch_weekday": ("VARCHAR", "Weekday of the launch (UTC)"),
    "launch_hour": ("INTEGER", "Hour of the launch (UTC)"),
    "launch_hour_of_week": ("INTEGER", "Hour of week of the launch (0 = Monday 00:00 UTC)"),
    "audience_size": ("INTEGER", "Users the launch is promoted to"),
    "audience_description": ("VARCHAR", "The promotion audience in words"),
    "model_version": ("VARCHAR", "Recommender version that scored the preferences"),
    "horizon_days": ("INTEGER", "Days over which sales are forecast"),
    "created_at": ("TIMESTAMP", "When the plan was made (UTC)"),
    "value_source": ("VARCHAR", "past_launches (demand model) or preferences (sum r_ij)"),
    "demand_score": ("DOUBLE", "Log expected revenue of the demand model (analysts)"),
}
AUDIENCE_COLUMNS: dict[str, tuple[str, str]] = {
    "plan_date": ("DATE", "Day the plan is for"),
    "scenario": ("VARCHAR", "Planning scenario"),
    "item_id": ("VARCHAR", "Launched product"),
    "user_id": ("VARCHAR", "User to promote it to"),
    "r": ("DOUBLE", "Probability the user buys it within the horizon"),
    "audience_rank": ("INTEGER", "Rank of the user in this audience (1 = most likely buyer)"),
    "promotions_for_user": ("INTEGER", "How many of this plan's launches the user is promoted"),
}
EXPLANATION_COLUMNS: dict[str, tuple[str, str]] = {
    "plan_date": ("DATE", "Day the plan is for"),
    "scenario": ("VARCHAR", "Planning scenario"),
    "item_id": ("VARCHAR", "Candidate product"),
    "title": ("VARCHAR", "Product title"),
    "chosen": ("BOOLEAN", "In the plan"),
    "plan_rank": ("INTEGER", "Rank among the picks"),
    "value_rank": ("INTEGER", "Rank among all candidates by value"),
    "value": ("DOUBLE", "Incremental value under the scenario's objective"),
    "drivers": ("VARCHAR", "Main drivers of the value with their contribution"),
    "similar_products": ("VARCHAR", "Most similar existing products and how they sold"),
    "audience": ("VARCHAR", "Who would be promoted to, in words"),
    "left_out_by": ("VARCHAR", "For a non-pick: the constraint that left it out"),
    "drivers_json": ("VARCHAR", "The drivers as JSON [[what, contribution], ...]"),
}
SCENARIO_COLUMNS: dict[str, tuple[str, str]] = {
    "plan_date": ("DATE", "Day the plan is for"),
    "scenario": ("VARCHAR", "Planning scenario"),
    "created_at": ("TIMESTAMP", "When the scenario was planned (UTC)"),
    "run_id": ("VARCHAR", "Dagster run that planned it (empty outside Dagster)"),
    "slots": ("INTEGER", "Launch slots"),
    "category_cap": ("INTEGER", "Launches per category at most"),
    "audience_size": ("INTEGER", "Users per promotion"),
    "horizon_days": ("INTEGER", "Forecast horizon, days"),
    "objective": ("VARCHAR", "What was maximised"),
    "launch_budget": ("DOUBLE", "Bound on the summed order cost (empty: none)"),
    "max_promotions_per_user": ("INTEGER", "Contact cap per user"),
    "lead_time_hours": ("DOUBLE", "Hours between the plan and the first launch"),
    "shop_timezone": ("VARCHAR", "Shop time zone"),
    "settings_json": ("VARCHAR", "All planning settings of the scenario (JSON)"),
    "value_source": ("VARCHAR", "How candidates were valued"),
    "picks": ("INTEGER", "Products launched"),
    "expected_revenue": ("DOUBLE", "Expected revenue of the picks (gross)"),
    "expected_gross_profit": ("DOUBLE", "Expected gross profit of the picks (gross)"),
    "incremental_revenue": ("DOUBLE", "Expected revenue net of cannibalization"),
    "incremental_gross_profit": ("DOUBLE", "Expected gross profit net of cannibalization"),
    "value": ("DOUBLE", "The plan's objective value"),
    "order_cost": ("DOUBLE", "Summed cost of the recommended initial orders"),
    "audience_places": ("INTEGER", "Places in the promotion audiences"),
    "distinct_users": ("INTEGER", "Distinct users promoted to"),
    "max_promotions_seen": ("INTEGER", "Most promotions any one user gets"),
    "solver_status": ("VARCHAR", "Outcome of the optimisation"),
    "plan_seconds": ("DOUBLE", "Seconds to plan this scenario (inputs, MILP, explanations)"),
    "report_path": ("VARCHAR", "The scenario's report"),
}
SLOT_COLUMNS: dict[str, tuple[str, str]] = {
    "plan_date": ("DATE", "Day the plan is for"),
    "scenario": ("VARCHAR", "Planning scenario"),
    "slots": ("INTEGER", "Number of launch slots"),
    "value": ("DOUBLE", "Best plan value with that many slots (other constraints unchanged)"),
    "marginal_value": ("DOUBLE", "Value added by the last slot"),
}
TABLES = {
    "launch_plan": PLAN_COLUMNS,
    "launch_audiences": AUDIENCE_COLUMNS,
    "launch_plan_explanations": EXPLANATION_COLUMNS,
    "plan_scenarios": SCENARIO_COLUMNS,
    "plan_slot_values": SLOT_COLUMNS,
}


def ensure_table(con: duckdb.DuckDBPyConnection, name: str, columns: dict) -> None:
    """Create ``name`` if missing, add the columns an older version lacked (rows planned before
    scenarios existed belong to the ``default`` scenario) and (re)write the column comments."""
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {name} ("
        + ", ".join(
            f"{c} {t}" + (" DEFAULT 'default'" if c == "scenario" else "")
            for c, (t, _) in columns.items()
        )
        + ")"
    )
    have = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [name]
        ).fetchall()
    }
    for c, (t, _) in columns.items():
        if c not in have:
            default = " DEFAULT 'default'" if c == "scenario" else ""
            con.execute(f"ALTER TABLE {name} ADD COLUMN {c} {t}{default}")
    comment_columns(con, name, {c: desc for c, (_, desc) in columns.items()})


def comment_columns(con: duckdb.DuckDBPyConnection, table: str, descriptions: dict) -> None:
    """Store column descriptions with a warehouse table (``COMMENT ON COLUMN``); the asset
    metadata shows them in the column schema. Columns the table lacks are skipped."""
    have = dict(
        con.execute(
            "SELECT column_name, coalesce(comment, '') FROM duckdb_columns() WHERE table_name = ?",
            [table],
        ).fetchall()
    )
    for c, desc in descriptions.items():
        if c in have and have[c] != str(desc):  # only what changed (each comment is a write)
            text = str(desc).replace("'", "''")
            con.execute(f"COMMENT ON COLUMN {table}.{c} IS '{text}'")


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanInputs:
    """Everything a plan is made from, read once; re-planning a scenario reuses it."""

    as_of: pd.Timestamp
    plan_date: dt.date
    model_version: str
    horizon_days: int  # the horizon the stored preferences were scored for
    prefs: pd.DataFrame  # user_id, item_id, r: each candidate's best users by r (all if fewer)
    candidates: pd.DataFrame  # item_id, title, category, brand, price, unit_cost, stock, upp
    profiles: pd.DataFrame
    overall: np.ndarray
    user_info: pd.DataFrame
    hist: ShopHistory
    demand: pd.DataFrame | None
    demand_model: DemandModel | None
    cannibalization: CannibalizationEstimate
    neighbour_strength: np.ndarray  # per candidate, in candidates' order
    # sum_i r_ij over every scored user, users scored and users kept per candidate in
    # ``prefs``; None: ``prefs`` holds every scored pair (sums and counts taken from it)
    expected_buyers: pd.Series | None = None
    users_scored: int | None = None
    audience_kept: int | None = None

    def buyers(self) -> pd.Series:
        """``sum_i r_ij`` per candidate (index item_id) over every scored user."""
        if self.expected_buyers is not None:
            return self.expected_buyers
        return self.prefs.groupby("item_id")["r"].sum()

    def n_users_scored(self) -> int:
        if self.users_scored is not None:
            return int(self.users_scored)
        return int(self.prefs["user_id"].nunique())

    def check_audience_pool(self, p: PlanningSettings) -> None:
        """Refuse a scenario whose audiences need more of each candidate's best users than
        the scorer kept (only when it kept fewer than it scored)."""
        need = audience_pool_needed(p.slots, p.audience_size, p.max_promotions_per_user)
        kept = self.audience_kept
        if kept is None or self.users_scored is None or kept >= self.users_scored:
            return
        if need > kept:
            raise ConfigurationError(
                f"this scenario (slots={p.slots}, audience_size={p.audience_size}, "
                f"max_promotions_per_user={p.max_promotions_per_user}) chooses audiences among "
                f"each candidate's best {need} users, but scoring kept {kept}: set "
                f"LAUNCH_PIPELINE_AUDIENCE_KEPT={need} (or more) and materialize "
                "user_preferences again, or plan with a smaller audience_size"
            )


@dataclass(frozen=True)
class StoredPreferenceSummary:
    """What ``candidate_preferences`` says about the stored scoring run."""

    horizon_days: int | None
    model_version: str | None
    users_scored: int
    audience_kept: int
    expected_buyers: pd.Series  # index item_id


def stored_preferences(con: duckdb.DuckDBPyConnection) -> StoredPreferenceSummary:
    """The scoring run the plan reads (``candidate_preferences``, written by
    ``scoring.store_preferences``); refused with what to do when there is none."""
    if not _has_table(con, "candidate_preferences"):
        raise ConfigurationError(
            "no stored preferences (candidate_preferences) yet: run `launch-pipeline run` once "
            "first (or materialize user_preferences)"
        )
    df = con.execute(
        "SELECT item_id, expected_buyers, users_scored, audience_kept, horizon_days, "
        "model_version FROM candidate_preferences ORDER BY item_id"
    ).df()
    first = df.iloc[0] if len(df) else None
    return StoredPreferenceSummary(
        horizon_days=int(first["horizon_days"]) if first is not None else None,
        model_version=str(first["model_version"]) if first is not None else None,
        users_scored=int(first["users_scored"]) if first is not None else 0,
        audience_kept=int(first["audience_kept"]) if first is not None else 0,
        expected_buyers=pd.Series(
            df["expected_buyers"].to_numpy(dtype=float), index=df["item_id"].astype(str)
        ),
    )


def check_horizon(stored: int, requested: int) -> None:
    if int(stored) != int(requested):
        raise HorizonMismatchError(
            f"the stored preferences were scored for a {stored}-day horizon and this scenario "
            f"asks for {requested} days, and re-planning never re-scores: materialize "
            f"user_preferences and launch_plan together with horizon_days={requested} (launchpad, "
            f"config of the `pipeline` resource), or plan this scenario with --horizon-days {stored}"
        )


def _units_per_purchase(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    rows = con.execute(
        """
        SELECT coalesce(f.category, '*'), avg(e.quantity)
        FROM clean_events e LEFT JOIN item_features f USING (item_id)
        WHERE e.event_type = 'purchase' GROUP BY ROLLUP (f.category)
        """
    ).fetchall()
    return {k: float(v) for k, v in rows if v is not None}


def _past_buyers(con: duckdb.DuckDBPyConnection) -> dict | None:
    """``(window start, item_id) -> {transformer_buyers, transformer_units}`` of the past
    launches, scored by the Transformer trained before the oldest past window (see
    ``launch_pipeline/transformer_signal.py``); ``None`` when not scored."""
    if not _has_table(con, "launch_history_buyers"):
        return None
    rows = con.execute(
        "SELECT window_start, item_id, transformer_buyers, transformer_units "
        "FROM launch_history_buyers WHERE transformer_buyers IS NOT NULL"
    ).fetchall()
    return {
        (pd.Timestamp(w), str(i)): {"transformer_buyers": float(b), "transformer_units": float(u)}
        for w, i, b, u in rows
    } or None


def _has_table(con, name: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()[0][0]
    )


DEMAND_COLUMNS: dict[str, tuple[str, str]] = {
    "data_until": ("TIMESTAMP", "Last event the demand model saw"),
    "horizon_days": ("INTEGER", "Forecast horizon, days"),
    "inputs_key": ("VARCHAR", "Hash of the candidates and the recommender version"),
    "item_id": ("VARCHAR", "Candidate product"),
    "expected_revenue": ("DOUBLE", "Demand model: expected revenue over the horizon"),
    "expected_units": ("DOUBLE", "Demand model: expected units (revenue / price)"),
    "demand_score": ("DOUBLE", "Log expected revenue"),
    "features_json": ("VARCHAR", "The demand model's features of the candidate (JSON)"),
    "model_json": ("VARCHAR", "The fitted demand model (JSON; empty: too few past launches)"),
}


def _inputs_key(candidates: pd.DataFrame, model_version: str) -> str:
    import hashlib

    text = candidates[["item_id", "title", "category", "price"]].to_csv(index=False)
    return hashlib.sha256((text + model_version).encode()).hexdigest()[:16]


def stored_demand(
    con: duckdb.DuckDBPyConnection,
    candidates: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: int,
    model_version: str,
    expected_buyers: dict[str, float] | None = None,
) -> tuple[pd.DataFrame | None, DemandModel | None]:
    """The demand model's forecast of the candidates, fitted once per data, horizon and
    candidate list and kept in ``candidate_demand``: re-planning a scenario reads it back."""
    key = _inputs_key(candidates, model_version)
    ensure_table(con, "candidate_demand", DEMAND_COLUMNS)
    rows = con.execute(
        "SELECT * FROM candidate_demand WHERE data_until = ? AND horizon_days = ? "
        "AND inputs_key = ?",
        [as_of.to_pydatetime(), int(horizon_days), key],
    ).df()
    if len(rows):
        spec = rows["model_json"].iloc[0]
        if not spec:
            return None, None
        model = DemandModel(**json.loads(spec))
        feats = pd.DataFrame([json.loads(f) for f in rows["features_json"]], index=rows.index)
        demand = pd.concat(
            [rows[["item_id", "expected_revenue", "expected_units", "demand_score"]], feats], axis=1
        )
        return demand, model
    demand, model = estimate_demand(
        con,
        candidates[["item_id", "title", "category", "price"]],
        expected_buyers,
        horizon_days,
        past_buyers=_past_buyers(con),
    )
    feature_cols = [
        c for c in (demand.columns if demand is not None else []) if c.startswith("feature_")
    ]
    out = (
        demand[["item_id", "expected_revenue", "expected_units", "demand_score"]].copy()
        if demand is not None
        else pd.DataFrame({"item_id": candidates["item_id"]})
    )
    out["features_json"] = (
        [
            json.dumps({c: float(v) for c, v in r.items()})
            for _, r in demand[feature_cols].iterrows()
        ]
        if demand is not None
        else "{}"
    )
    out["model_json"] = json.dumps(model.to_dict()) if model is not None else ""
    out["data_until"] = as_of.to_pydatetime()
    out["horizon_days"] = int(horizon_days)
    out["inputs_key"] = key
    con.register("_candidate_demand_df", out.reindex(columns=list(DEMAND_COLUMNS)))
    try:
        with replace_atomically(con, Rows("candidate_demand")):
            con.execute("INSERT INTO candidate_demand BY NAME SELECT * FROM _candidate_demand_df")
    finally:
        con.unregister("_candidate_demand_df")
    return demand, model


def load_plan_inputs(con: duckdb.DuckDBPyConnection, horizon_days: int) -> PlanInputs:
    """Read the plan's inputs and fit the demand model and the cannibalization rate.

    Refuses (:class:`HorizonMismatchError`) when ``horizon_days`` is not the horizon the stored
    preferences were scored for."""
    stored = stored_preferences(con)
    check_horizon(stored.horizon_days or horizon_days, horizon_days)
    prefs = con.execute(
        "SELECT user_id, item_id, r FROM candidate_audiences ORDER BY item_id, audience_rank"
    ).df()
    as_of = pd.Timestamp(con.execute("SELECT max(ts) FROM clean_events").fetchall()[0][0])
    plan_date = (as_of + pd.Timedelta(days=1)).date()
    candidates = con.execute(
        "SELECT item_id, title, category, brand, price, unit_cost, stock FROM launch_candidates "
        "ORDER BY item_id"
    ).df()
    upp = _units_per_purchase(con)
    candidates["units_per_purchase"] = (
        candidates["category"].map(upp).fillna(upp.get("*", 1.0)).astype(float)
    )
    profiles = con.execute(
        "SELECT user_id, hour_of_week, event_share FROM activity_profile WHERE scope = 'user'"
    ).df()
    overall = (
        con.execute(
            "SELECT events FROM activity_profile WHERE scope = 'overall' ORDER BY hour_of_week"
        )
        .df()["events"]
        .to_numpy(dtype=float)
    )
    user_info = con.execute(
        "SELECT CAST(user_id AS VARCHAR) AS user_id, top_category, preferred_price_band, "
        "purchases, recency_days FROM user_features"
    ).df()
    hist = load_history(con)
    buyers = stored.expected_buyers.to_dict()
    demand, demand_model = stored_demand(
        con, candidates, as_of, horizon_days, str(stored.model_version), buyers
    )
    cann = estimate_cannibalization(hist)
    strength = neighbour_strength(
        hist, candidates["title"], hist.plan_start, cann.neighbours, cann.min_similarity
    )
    return PlanInputs(
        as_of=as_of,
        plan_date=plan_date,
        model_version=str(stored.model_version),
        horizon_days=int(horizon_days),
        prefs=prefs,
        expected_buyers=stored.expected_buyers,
        users_scored=stored.users_scored,
        audience_kept=stored.audience_kept,
        candidates=candidates,
        profiles=profiles,
        overall=overall,
        user_info=user_info,
        hist=hist,
        demand=demand,
        demand_model=demand_model,
        cannibalization=cann,
        neighbour_strength=strength,
    )


# --------------------------------------------------------------------------------------------
# valuation
# --------------------------------------------------------------------------------------------
def resolve_objective(requested: str, candidates: pd.DataFrame) -> str:
    """``revenue`` or ``gross_profit``; ``auto`` is gross profit when every candidate has a
    unit cost. Asking for gross profit without costs is refused with what to do."""
    if requested not in OBJECTIVES:
        raise ConfigurationError(
            f"unknown objective {requested!r}: use one of {', '.join(OBJECTIVES)}"
        )
    cost = pd.to_numeric(candidates.get("unit_cost"), errors="coerce")
    known = cost.notna().all() if cost is not None and len(candidates) else False
    if requested == "auto":
        return "gross_profit" if known else "revenue"
    if requested == "gross_profit" and not known:
        missing = int(cost.isna().sum()) if cost is not None else len(candidates)
        raise ConfigurationError(
            f"objective gross_profit needs a unit_cost for every candidate ({missing} have none): "
            "add unit_cost to candidates.csv or plan with --objective revenue"
        )
    return requested


def value_candidates(inp: PlanInputs, p: PlanningSettings, objective: str) -> pd.DataFrame:
    """One row per candidate: the count forecast, revenue, gross profit, cannibalization,
    incremental value (column ``value``), the newsvendor order and its cost."""
    cand = inp.candidates.copy().reset_index(drop=True)
    sum_r = inp.buyers()
    cand["buyers_from_preferences"] = cand["item_id"].map(sum_r).fillna(0.0)
    price = pd.to_numeric(cand["price"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    cost = pd.to_numeric(cand["unit_cost"], errors="coerce").to_numpy(dtype=float)
    stock = pd.to_numeric(cand["stock"], errors="coerce").to_numpy(dtype=float)
    upp = cand["units_per_purchase"].to_numpy(dtype=float)
    mean = cand["buyers_from_preferences"].to_numpy(dtype=float) * upp
    shape = np.full(len(cand), MAX_SHAPE)
    calibrated = np.zeros(len(cand), dtype=bool)  # units range from the conformal bounds
    cand["value_source"] = "preferences"
    cand["demand_score"] = np.nan
    if inp.demand is not None and len(inp.demand):
        d = inp.demand.set_index("item_id")
        known = cand["item_id"].isin(d.index).to_numpy()
        mean[known] = d.loc[cand.loc[known, "item_id"], "expected_units"].to_numpy(dtype=float)
        shape[known] = gamma_shape_from_ratios(inp.demand_model.ratio_quantiles)
        calibrated[known] = True
        cand.loc[known, "value_source"] = "past_launches"
        cand.loc[known, "demand_score"] = d.loc[cand.loc[known, "item_id"], "demand_score"].values
    forecasts = [
        forecast_units(
            mean[k],
            shape[k],
            price[k],
            None if np.isnan(cost[k]) else cost[k],
            None if np.isnan(stock[k]) else stock[k],
            upp[k],
            cand["buyers_from_preferences"].iloc[k],
            p.salvage_share,
            inp.demand_model.ratio_quantiles if calibrated[k] else None,
        )
        for k in range(len(cand))
    ]
    f = pd.DataFrame([dataclasses.asdict(x) for x in forecasts], index=cand.index)
    cand["expected_demand_units"] = f["expected_demand"]
    for c in ("expected_units", "units_p10", "units_p50", "units_p90", "order_quantity"):
        cand[c] = f[c]
    cand["expected_buyers"] = f["expected_buyers"]
    cand["expected_leftover_units"] = f["expected_leftover"]
    cand["stock_limited"] = f["stock_limited"]
    cand["expected_revenue"] = price * cand["expected_units"]
    cand["revenue_p10"] = price * cand["units_p10"]
    cand["revenue_p90"] = price * cand["units_p90"]
    margin = price - cost
    cand["unit_margin"] = margin
    cand["expected_gross_profit"] = margin * cand["expected_units"]
    rate = inp.cannibalization.candidate_rates(inp.neighbour_strength)
    cand["cannibalization_rate"] = rate
    cand["incremental_revenue"] = cand["expected_revenue"] * (1.0 - rate)
    cand["incremental_gross_profit"] = cand["expected_gross_profit"] * (1.0 - rate)
    cand["objective"] = objective
    per_unit = margin if objective == "gross_profit" else price
    gross = cand["expected_gross_profit" if objective == "gross_profit" else "expected_revenue"]
    cand["value"] = cand[f"incremental_{objective}"]
    cand["cannibalized_value"] = gross * rate
    cand["stock_lost_value"] = (
        per_unit * (cand["expected_demand_units"] - cand["expected_units"]) * (1.0 - rate)
    )
    cand["purchase_value"] = per_unit * upp
    cand["order_cost"] = cand["order_quantity"] * cost
    cand["value_rank"] = cand["value"].rank(ascending=False, method="first").astype(int)
    return cand


# --------------------------------------------------------------------------------------------
# the plan of one scenario
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlanResult:
    plan: pd.DataFrame
    audiences: pd.DataFrame
    explanations: pd.DataFrame
    selection: SelectionResult
    slot_curve: pd.DataFrame
    summary: dict
    explained: list[Explanation]


def validate_planning(p: PlanningSettings) -> None:
    """Refuse settings that cannot make a plan, with what to use instead."""
    for name in ("slots", "audience_size", "horizon_days", "max_promotions_per_user"):
        if getattr(p, name) < 0:
            raise ConfigurationError(f"{name} must be >= 0, got {getattr(p, name)}")
    if p.category_cap is not None and p.category_cap < 0:
        raise ConfigurationError(f"category_cap must be >= 0, got {p.category_cap}")
    if p.launch_budget is not None and p.launch_budget < 0:
        raise ConfigurationError(f"launch_budget must be >= 0, got {p.launch_budget}")
    if p.lead_time_hours < 0:
        raise ConfigurationError(f"lead_time_hours must be >= 0, got {p.lead_time_hours}")
    if not 0.0 <= p.salvage_share < 1.0:
        raise ConfigurationError(f"salvage_share must be in [0, 1), got {p.salvage_share}")
    if not p.scenario or not all(ch.isalnum() or ch in "-_" for ch in p.scenario):
        raise ConfigurationError(
            f"scenario name {p.scenario!r} is not allowed: use letters, digits, '-' and '_'"
        )
    try:
        check_timezone(p.shop_timezone)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def build_plan(
    inp: PlanInputs, p: PlanningSettings, created_at: dt.datetime | None = None
) -> PlanResult:
    """The plan of one scenario from its inputs (pure: nothing is read or written)."""
    validate_planning(p)
    check_horizon(inp.horizon_days, p.horizon_days)
    inp.check_audience_pool(p)
    created_at = created_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    objective = resolve_objective(p.objective, inp.candidates)
    if p.launch_budget is not None and inp.candidates["unit_cost"].isna().any():
        raise ConfigurationError(
            "launch_budget needs a unit_cost for every candidate (to cost the orders): add "
            "unit_cost to candidates.csv or plan without --launch-budget"
        )
    table = value_candidates(inp, p, objective)
    sel = select_and_assign(
        table,
        inp.prefs,
        p.slots,
        p.category_cap,
        p.audience_size,
        p.max_promotions_per_user,
        value_col="value",
        launch_budget=p.launch_budget,
    )
    audiences = sel.audiences.copy()
    audiences["promotions_for_user"] = audiences.groupby("user_id")["item_id"].transform("size")
    table["chosen"] = table["item_id"].isin(sel.chosen)
    table["plan_rank"] = table["item_id"].map({i: k + 1 for k, i in enumerate(sel.chosen)})
    start = earliest_launch(created_at, inp.plan_date, p.lead_time_hours)
    when = schedule_launches(
        sel.chosen, audiences, inp.profiles, inp.overall, start, p.min_gap_hours
    )
    table["launch_at"] = pd.to_datetime(table["item_id"].map(when))
    table["launch_at_local"] = pd.to_datetime(
        table["item_id"].map({i: to_local(t, p.shop_timezone) for i, t in when.items()})
    )
    table["shop_timezone"] = p.shop_timezone
    how = {i: t.weekday() * 24 + t.hour for i, t in when.items()}
    table["launch_hour_of_week"] = table["item_id"].map(how)
    table["launch_weekday"] = table["item_id"].map(
        {i: WEEKDAYS[t.weekday()] for i, t in when.items()}
    )
    table["launch_hour"] = table["item_id"].map({i: t.hour for i, t in when.items()})
    table["audience_size"] = (
        table["item_id"].map(audiences.groupby("item_id").size()).fillna(0).astype(int)
    )
    words = {
        item: describe_audience(g[["user_id"]], inp.user_info)
        for item, g in audiences.groupby("item_id")
    }
    table["audience_description"] = table["item_id"].map(words)
    table["model_version"] = inp.model_version
    table["horizon_days"] = p.horizon_days
    table["created_at"] = created_at
    table["plan_date"] = inp.plan_date
    table["scenario"] = p.scenario
    table = table.sort_values(["chosen", "value"], ascending=[False, False]).reset_index(drop=True)
    explained = explain(inp, p, table, audiences)
    expl = pd.DataFrame(
        [
            {
                "item_id": e.item_id,
                "chosen": e.chosen,
                "value_rank": e.value_rank,
                "drivers": e.drivers_text(),
                "similar_products": e.similar_text(),
                "audience": e.audience,
                "left_out_by": e.left_out_by,
                "drivers_json": json.dumps([[w, round(v, 2)] for w, v in e.drivers]),
            }
            for e in explained
        ]
    )
    if len(expl):
        expl = expl.merge(table[["item_id", "title", "plan_rank", "value"]], on="item_id")
    expl["plan_date"] = inp.plan_date
    expl["scenario"] = p.scenario
    curve = (
        slot_value_curve(
            table, p.slots + SLOT_CURVE_EXTRA, p.category_cap, "value", p.launch_budget
        )
        if p.plan_details
        else pd.DataFrame(columns=["slots", "value", "marginal_value"])
    )
    audiences.insert(0, "scenario", p.scenario)
    audiences.insert(0, "plan_date", inp.plan_date)
    chosen = table[table["chosen"]]
    summary = {
        "plan_date": inp.plan_date,
        "scenario": p.scenario,
        "created_at": created_at,
        **{
            k: getattr(p, k)
            for k in (
                "slots",
                "category_cap",
                "audience_size",
                "horizon_days",
                "launch_budget",
                "max_promotions_per_user",
                "lead_time_hours",
                "shop_timezone",
            )
        },  # fmt: skip
        "objective": objective,
        "settings_json": json.dumps(dataclasses.asdict(p), default=str),
        "value_source": (
            f"demand model fitted on {inp.demand_model.launches} past launches"
            if inp.demand_model is not None
            else "sum of r_ij x price x units per purchase (too few past launches)"
        ),
        "picks": int(len(chosen)),
        "expected_revenue": float(chosen["expected_revenue"].sum()),
        "expected_gross_profit": float(chosen["expected_gross_profit"].sum(min_count=1))
        if chosen["expected_gross_profit"].notna().any()
        else None,
        "incremental_revenue": float(chosen["incremental_revenue"].sum()),
        "incremental_gross_profit": float(chosen["incremental_gross_profit"].sum())
        if chosen["incremental_gross_profit"].notna().any()
        else None,
        "value": float(sel.objective),
        "order_cost": float(chosen["order_cost"].sum())
        if chosen["order_cost"].notna().any()
        else None,
        "audience_places": int(len(audiences)),
        "distinct_users": int(audiences["user_id"].nunique()),
        "max_promotions_seen": int(audiences["promotions_for_user"].max()) if len(audiences) else 0,
        "solver_status": sel.status,
    }
    return PlanResult(table, audiences, expl, sel, curve, summary, explained)


def explain(
    inp: PlanInputs, p: PlanningSettings, table: pd.DataFrame, audiences: pd.DataFrame
) -> list[Explanation]:
    """Reasons for every pick and the ``EXPLAIN_NON_PICKS`` best non-picks."""
    picks = table[table["chosen"]]
    others = table[~table["chosen"]].sort_values("value", ascending=False).head(EXPLAIN_NON_PICKS)
    rows = pd.concat([picks, others])
    if rows.empty:
        return []
    z = None
    coefs = None
    if inp.demand is not None and inp.demand_model is not None:
        from launch_pipeline.demand import _zscore

        feats = inp.demand.set_index("item_id")[[f"feature_{c}" for c in inp.demand_model.features]]
        feats.columns = inp.demand_model.features
        z = _zscore(feats) if len(feats) > 1 else feats * 0.0
        coefs = inp.demand_model.coefficients
    similar = similar_past_products(inp.hist, rows["title"], inp.hist.plan_start, p.horizon_days)
    out = []
    for (_, row), sim in zip(rows.iterrows(), similar, strict=True):
        if row["chosen"]:
            aud = audiences[audiences["item_id"] == row["item_id"]][["user_id"]]
            reason = None
        else:
            top = inp.prefs[inp.prefs["item_id"] == row["item_id"]].nlargest(p.audience_size, "r")
            aud = top[["user_id"]]
            reason = left_out_by(
                row, picks, p.slots, p.category_cap, p.launch_budget, value_col="value"
            )
        zi = z.loc[row["item_id"]] if z is not None and row["item_id"] in z.index else None
        out.append(
            Explanation(
                item_id=str(row["item_id"]),
                chosen=bool(row["chosen"]),
                value_rank=int(row["value_rank"]),
                drivers=value_drivers(row, "value", coefs if zi is not None else None, zi),
                similar_products=sim,
                audience=describe_audience(aud, inp.user_info)
                + ("" if row["chosen"] else " (its best prospects)"),
                left_out_by=reason,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# storing
# --------------------------------------------------------------------------------------------
def store_plan(con: duckdb.DuckDBPyConnection, result: PlanResult) -> None:
    """Replace this plan date's and scenario's rows in every plan table, in one transaction."""
    s = result.summary
    frames = {
        "launch_plan": result.plan,
        "launch_audiences": result.audiences,
        "launch_plan_explanations": result.explanations,
        "plan_scenarios": pd.DataFrame([s]),
        "plan_slot_values": result.slot_curve.assign(
            plan_date=s["plan_date"], scenario=s["scenario"]
        ),
    }
    for name, cols in TABLES.items():
        ensure_table(con, name, cols)
    key = [s["plan_date"], s["scenario"]]
    selected = [Rows(name, "plan_date = ? AND scenario = ?", key) for name in frames]
    views = []
    try:
        with replace_atomically(con, *selected):
            for name, df in frames.items():
                if df.empty:
                    continue
                view = f"_{name}_df"
                con.register(view, df.reindex(columns=list(TABLES[name])))
                views.append(view)
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {view}")
    finally:
        for view in views:
            con.unregister(view)


def make_and_store_plan(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    context: dict | None = None,
    created_at: dt.datetime | None = None,
    run_id: str | None = None,
    inputs: PlanInputs | None = None,
) -> dict:
    """Plan the scenario of ``settings.planning`` for the day after the last event; store its
    rows, audiences, explanations and totals; write its report (which compares it with the
    other scenarios of the same plan date)."""
    from launch_pipeline.report import write_plan_report

    t0 = time.perf_counter()
    p = settings.planning
    validate_planning(p)
    inp = inputs or load_plan_inputs(con, p.horizon_days)
    result = build_plan(inp, p, created_at)
    result.summary["run_id"] = run_id or ""
    result.summary["plan_seconds"] = time.perf_counter() - t0
    path = report_path(settings, inp.plan_date, p.scenario)
    result.summary["report_path"] = str(path) if p.plan_details else ""
    store_plan(con, result)
    scenarios = con.execute(
        "SELECT * FROM plan_scenarios WHERE plan_date = ? ORDER BY scenario = 'default' DESC, "
        "scenario",
        [inp.plan_date],
    ).df()
    context = {
        **(context or {}),
        "data_until": str(inp.as_of),
        "users_scored": inp.n_users_scored(),
        "model_version": inp.model_version,
        "cannibalization": inp.cannibalization.to_dict(),
        "demand_model": inp.demand_model,
    }
    if p.plan_details:  # the backtest needs the decision only
        write_plan_report(path, result, inp.overall, scenarios, context)
    chosen = result.plan[result.plan["chosen"]]
    return {
        "plan_date": inp.plan_date,
        "scenario": p.scenario,
        "chosen": chosen,
        "plan": result.plan,
        "audiences": result.audiences,
        "explanations": result.explanations,
        "selection": result.selection,
        "slot_curve": result.slot_curve,
        "summary": result.summary,
        "scenarios": scenarios,
        "report_path": path,
        "demand_model": inp.demand_model,
        "cannibalization": inp.cannibalization,
    }


def report_path(settings: Settings, plan_date: dt.date, scenario: str):
    suffix = "" if scenario == "default" else f"_{scenario}"
    return settings.reports_dir / f"launch_plan_{plan_date.isoformat()}{suffix}.md"


def scenario_tags(p: PlanningSettings) -> dict[str, str]:
    """Dagster run tags that name the scenario and its settings."""
    tags = {SCENARIO_TAG: p.scenario}
    for k in ("slots", "category_cap", "objective", "horizon_days", "launch_budget",
              "max_promotions_per_user"):  # fmt: skip
        tags[f"launch_pipeline/{k}"] = str(getattr(p, k))
    return tags
