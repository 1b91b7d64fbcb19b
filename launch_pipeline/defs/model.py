"""Model assets: what the model is trained on (``model_training_data``), the versioned
Transformer (``preference_model``), the promotion decision (``champion_model``) and the
champion's evaluation (``model_evaluation``)."""

import datetime as dt
import time

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from pydantic import Field

from launch_pipeline.defs.features import item_features, user_sequences
from launch_pipeline.defs.metadata import markdown_table, png_markdown
from launch_pipeline.defs.raw import WAREHOUSE_POOL
from launch_pipeline.defs.resources import LaunchPipelineConfig, ModelStoreResource
from launch_pipeline.model.training_loop import stopped_reproducibly
from launch_pipeline.model_pipeline import (
    champion_or_fail,
    evaluate_version,
    extract_training_inputs,
    pipeline_model_config,
    read_training_inputs,
    store_evaluation,
    train_new_version,
    write_training_inputs,
)
from launch_pipeline.promotion import PROMOTION_TOLERANCE, promote_or_reject, recorded_decision


@dg.asset(
    deps=[user_sequences, item_features],
    group_name="model",
    kinds={"duckdb", "numpy"},
    pool=WAREHOUSE_POOL,
    description=(
        "What the model is trained on, read from the warehouse once: every user's behaviour "
        "before the evaluation window (the last 7 days) and the catalog's vocabulary, written to "
        "data/model_inputs/training_inputs.npz. The only model step that holds the warehouse "
        "while training data is read, so training itself does not keep other warehouse steps "
        "waiting."
    ),
)
def model_training_data(
    pipeline: LaunchPipelineConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    t0 = time.perf_counter()
    with warehouse.get_connection() as con:
        inputs = extract_training_inputs(con)
    read_s = time.perf_counter() - t0
    path = write_training_inputs(inputs, settings.training_inputs_path)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "training_users": inputs.training_users,
            "catalog_items": inputs.catalog_items,
            "training_steps": int(sum(len(s) for s in inputs.train.sequences)),
            "cutoff": inputs.cutoff,
            "warehouse_read_seconds": round(read_s, 2),
            "file_mb": round(path.stat().st_size / 2**20, 2),
        }
    )


class PreferenceModelConfig(dg.Config):
    """Tunables of one training run (set in the launchpad under ``ops: preference_model``)."""

    time_budget_s: float | None = Field(
        default=None,
        description=(
            "wall-clock budget of the training loop in seconds; empty: the pipeline resource's "
            "model_time_budget_s (LAUNCH_PIPELINE_MODEL_TIME_BUDGET_S, default 180). A safety "
            "stop: training normally ends on the work cap or early stopping"
        ),
    )
    work_gcells: float | None = Field(
        default=None,
        description=(
            "work cap: billions of softmax cells (targets trained x catalogue items); empty: "
            "the pipeline resource's model_work_gcells (LAUNCH_PIPELINE_MODEL_WORK_GCELLS, "
            "default 20); 0: no cap, training stops on the time budget (not reproducible)"
        ),
    )


@dg.asset(
    deps=[model_training_data],
    group_name="model",
    kinds={"tensorflow", "keras"},
    # no warehouse pool: it reads the file model_training_data wrote and writes the model store
    description=(
        "A Keras 3 Transformer (causal self-attention over a user's recent items; an item is its "
        "id embedding plus embeddings of category, brand, price band and title words, so a "
        "brand-new product gets a vector from its attributes). Trained on model_training_data "
        "with early stopping and a work cap (the time budget is a safety stop), without "
        "holding the warehouse; saved as a new "
        "version (a challenger) in the model store (data/models/preference_model/); "
        "champion_model decides whether it is used."
    ),
)
def preference_model(
    context: dg.AssetExecutionContext,
    config: PreferenceModelConfig,
    pipeline: LaunchPipelineConfig,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    budget = (
        config.time_budget_s if config.time_budget_s is not None else settings.model_time_budget_s
    )
    work = config.work_gcells if config.work_gcells is not None else settings.model_work_gcells
    inputs = read_training_inputs(settings.training_inputs_path)
    outcome = train_new_version(
        inputs,
        model_store.store(settings),
        pipeline_model_config(budget, work),
        log=context.log.info,
    )
    history = pd.DataFrame(outcome.history)
    meta = {
        "version": outcome.version.label,
        "path": dg.MetadataValue.path(str(outcome.version.model_path)),
        "status": outcome.status,
        "train_seconds": round(outcome.train_seconds, 1),
        "epochs": outcome.epochs,
        "best_epoch": outcome.best_epoch,
        "stopped_because": outcome.stopped,
        "reproducible": stopped_reproducibly(outcome.stopped),
        "training_users": outcome.training_users,
        "catalog_items": outcome.catalog_items,
        "valid_ndcg@10": outcome.valid_metrics.get("ndcg@10", float("nan")),
        "valid_hr@10": outcome.valid_metrics.get("hr@10", float("nan")),
        "config": outcome.config,
        "training_curve": markdown_table(history, max_rows=60),
    }
    if len(history) > 1:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(history["epoch"], history["loss"], label="training loss", color="#2c3e50")
        ax2 = ax.twinx()
        ax2.plot(history["epoch"], history["valid_ndcg@10"], label="valid NDCG@10", color="#e67e22")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax2.set_ylabel("NDCG@10")
        ax.set_title("Training curve")
        meta["training_plot"] = png_markdown(fig)
    return dg.MaterializeResult(metadata=meta)


class PromotionConfig(dg.Config):
    tolerance: float = Field(
        default=PROMOTION_TOLERANCE,
        description="a challenger is promoted unless its NDCG@10 is more than this below the champion's",
    )


@dg.asset(
    deps=[preference_model],
    group_name="model",
    kinds={"tensorflow"},
    pool=WAREHOUSE_POOL,  # reads the held-out cases from the warehouse
    description=(
        "The model version the night's preferences are made with. Champion/challenger: the "
        "version just trained is compared with the current champion on the same held-out cases "
        "(NDCG@10) and promoted only if it is not worse beyond a tolerance; otherwise it is "
        "recorded as rejected and the champion stays. Either way this asset names the champion, "
        "so preferences and the plan are made every night."
    ),
)
def champion_model(
    config: PromotionConfig,
    pipeline: LaunchPipelineConfig,
    warehouse: DuckDBResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    settings = pipeline.settings()
    store = model_store.store(settings)
    with warehouse.get_connection() as con:
        decision = promote_or_reject(store, con, tolerance=config.tolerance)
    champion = champion_or_fail(store)
    meta = {
        "champion": champion.label,
        "path": dg.MetadataValue.path(str(champion.model_path)),
        "decision": decision.outcome,
        "challenger": decision.challenger,
        "champion_before": decision.champion_before or "none",
        "reason": decision.reason,
        "cases": decision.cases,
        "tolerance": decision.tolerance,
    }
    if decision.challenger_ndcg is not None:
        meta["challenger_ndcg@10"] = round(decision.challenger_ndcg, 4)
    if decision.champion_ndcg is not None:
        meta["champion_ndcg@10"] = round(decision.champion_ndcg, 4)
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(champion.label))


@dg.asset_check(
    asset=champion_model,
    blocking=False,
    description=(
        "Reads the promotion decision recorded for the latest trained version (changes "
        "nothing): passes when it was promoted (or already champion); a rejected challenger is a "
        "warning with both NDCG@10 values. The champion stays in use, so the night's plan is "
        "still made."
    ),
)
def challenger_not_worse_than_champion(
    pipeline: LaunchPipelineConfig, model_store: ModelStoreResource
) -> dg.AssetCheckResult:
    label, decision = recorded_decision(model_store.store(pipeline.settings()))
    if decision is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "challenger": label,
                "reason": "no promotion decision recorded yet: materialize champion_model",
            },
        )
    shown = {k: v for k, v in decision.items() if v is not None and k != "promoted"}
    return dg.AssetCheckResult(
        passed=decision["outcome"] != "rejected",
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"challenger": label, **shown},
    )


@dg.asset(
    deps=[champion_model],
    group_name="model",
    kinds={"duckdb", "tensorflow"},
    pool=WAREHOUSE_POOL,
    description=(
        "Held-out evaluation of the champion model version: next-item HR@10/NDCG@10 (full ranking "
        "over the catalog, items already seen excluded) on the first new product each user "
        "touched in the evaluation window, and precision/recall/F1@10 of the products each user "
        "bought there, next to popularity and last-item kNN baselines computed in the same run. Table "
        "model_evaluation (one row per model version, method and metric)."
    ),
)
def model_evaluation(
    pipeline: LaunchPipelineConfig, warehouse: DuckDBResource, model_store: ModelStoreResource
) -> dg.MaterializeResult:
    store = model_store.store(pipeline.settings())
    with warehouse.get_connection() as con:
        report = evaluate_version(store, con)
        store_evaluation(con, report, evaluated_at=dt.datetime.now(dt.timezone.utc))
    table = pd.DataFrame([{"method": m, **vals} for m, vals in report.methods.items()])
    tm = report.methods["transformer"]
    pop = report.methods["popularity"]
    knn = report.methods["last_item_knn"]
    return dg.MaterializeResult(
        metadata={
            "model_version": report.model_version,
            "hr@10": tm["hr@10"],
            "ndcg@10": tm["ndcg@10"],
            "precision@10": tm["precision@10"],
            "recall@10": tm["recall@10"],
            "f1@10": tm["f1@10"],
            "popularity_hr@10": pop["hr@10"],
            "popularity_ndcg@10": pop["ndcg@10"],
            "last_item_knn_hr@10": knn["hr@10"],
            "last_item_knn_ndcg@10": knn["ndcg@10"],
            "next_item_cases": report.next_item_cases,
            "buyers_evaluated": report.buyers_evaluated,
            "cutoff": report.cutoff,
            "metrics": markdown_table(table.round(4)),
            "dagster/row_count": len(table) * (len(table.columns) - 1),
        }
    )
