"""Champion/challenger: which model version the night's preferences are made with (no Dagster).

The ``champion_model`` asset calls :func:`promote_or_reject`, the only function that changes who
the champion is; the check on it calls :func:`recorded_decision`, which only reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import duckdb

from launch_pipeline.model_pipeline import EVAL_DAYS, load_version
from launch_pipeline.model_store import ModelStore, ModelVersion
from launch_pipeline.shop_data import load_shop_data
from launch_pipeline.shop_split import temporal_split

PROMOTION_TOLERANCE = 0.005
"""A challenger is promoted unless its validation NDCG@10 is more than this below the champion's
on the same cases."""


@dataclass(frozen=True)
class PromotionDecision:
    """What ``champion_model`` decided about the latest trained version (recorded in the store
    next to that version, so the check and the UI can read it without recomputing)."""

    challenger: str
    champion_before: str | None
    champion: str
    promoted: bool
    reason: str
    challenger_ndcg: float | None = None
    champion_ndcg: float | None = None
    cases: int = 0
    tolerance: float = PROMOTION_TOLERANCE

    @property
    def outcome(self) -> str:
        if self.promoted:
            return "promoted"
        return "kept" if self.challenger == self.champion else "rejected"

    def as_record(self) -> dict:
        return {**asdict(self), "outcome": self.outcome}


def validation_score(version: ModelVersion, con: duckdb.DuckDBPyConnection) -> tuple[float, int]:
    """NDCG@10 of a version on the next-item cases of the current evaluation window."""
    from launch_pipeline.model.training import evaluate_split

    model, meta = load_version(version)
    shop = load_shop_data(con, meta["item_ids"], meta["attribute_vocab"])
    split = temporal_split(shop, int(meta.get("eval_days", EVAL_DAYS)))
    if len(split.next_item) == 0:
        return 0.0, 0
    metrics, _ = evaluate_split(model, split.next_item, blend=True)
    return float(metrics["ndcg@10"]), len(split.next_item)


def promote_or_reject(
    store: ModelStore, con: duckdb.DuckDBPyConnection, tolerance: float = PROMOTION_TOLERANCE
) -> PromotionDecision:
    """Promote the latest challenger if it is not worse than the champion beyond ``tolerance``
    (NDCG@10 on the same held-out cases); otherwise mark it rejected and keep the champion.
    The decision is recorded in the store with the version it is about."""
    latest = store.latest()
    champion = store.champion()
    if latest is None:
        raise FileNotFoundError("no model version registered: materialize preference_model first")
    before = champion.label if champion else None
    if champion is not None and champion.version == latest.version:
        return PromotionDecision(latest.label, before, latest.label, False, "already champion")
    challenger_score, cases = validation_score(latest, con)
    scored = dict(challenger_ndcg=challenger_score, cases=cases, tolerance=tolerance)
    if champion is None:
        decision = PromotionDecision(
            latest.label, None, latest.label, True, "no champion yet", **scored
        )
        store.promote(latest.version, note="first model", decision=decision.as_record())
        return decision
    try:
        champion_score, _ = validation_score(champion, con)
    except Exception as exc:  # noqa: BLE001 - an unloadable champion must not block a good model
        reason = f"champion unusable: {exc}"
        decision = PromotionDecision(latest.label, before, latest.label, True, reason, **scored)
        store.promote(latest.version, note=reason, decision=decision.as_record())
        return decision
    if challenger_score >= champion_score - tolerance:
        decision = PromotionDecision(
            latest.label, before, latest.label, True, "not worse than champion",
            champion_ndcg=champion_score, **scored,
        )  # fmt: skip
        store.promote(
            latest.version,
            note=f"ndcg@10 {challenger_score:.4f} vs champion {champion_score:.4f}",
            decision=decision.as_record(),
        )
        return decision
    decision = PromotionDecision(
        latest.label, before, champion.label, False, "worse than champion",
        champion_ndcg=champion_score, **scored,
    )  # fmt: skip
    store.set_status(
        latest.version,
        "rejected",
        note=f"ndcg@10 {challenger_score:.4f} < champion {champion_score:.4f} - {tolerance}",
        decision=decision.as_record(),
    )
    return decision


def recorded_decision(store: ModelStore) -> tuple[str, dict | None]:
    """The latest version's label and the promotion decision recorded for it (``None`` when
    ``champion_model`` has not decided about it yet). Reads only."""
    versions = store.versions()
    if not versions:
        raise FileNotFoundError("no model version registered: materialize preference_model first")
    latest = versions[-1]
    label = store.get(latest["version"]).label
    if latest.get("status") == "champion" and "decision" not in latest:
        return label, {"outcome": "promoted", "promoted": True, "reason": latest.get("note", "")}
    return label, latest.get("decision")
