"""Honest offline evaluation of the recommender on S3-Rec-format data.

``python -m launch_pipeline.model.evaluation --sequences Beauty.txt --attributes
Beauty_item2attributes.json --out beauty_eval.json`` (the project CLI ``launch-pipeline
eval-model`` calls :func:`evaluate_s3rec` with the same arguments).

Protocol (S3-Rec leave-one-out, full ranking): for every user the last item is the test target,
the second-to-last the validation target, the rest is training data.  Every item is ranked
(item 0 and the items of the user's input sequence excluded, the target always ranked, ties
counted against the target); HR@K and NDCG@K are averaged over all users.  The Transformer is
early-stopped on validation NDCG@10, the kNN blend weight is chosen on validation only; then the
test split is scored once.  Baselines are computed in the same run under the same protocol.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import baselines as bl
from . import metrics as mt
from .config import ModelConfig
from .data import EvalSplit, SequenceData, cold_start_split, holdout_last, leave_one_out, read_s3rec

PUBLISHED = {
    "sasrec_s3rec_paper": {
        "hr@10": 0.0605,
        "ndcg@10": 0.0318,
        "source": "S3-Rec paper (Zhou et al., CIKM 2020), Amazon Beauty, same protocol",
    }
}
KS = (10, 20)


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024.0 if sys.platform != "darwin" else kb / 2**20, 1)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _metrics_of(
    score_fn: Callable[[np.ndarray], np.ndarray], split: EvalSplit, batch: int = 2048
) -> dict[str, float]:
    ranks = mt.rank_split(score_fn, split.inputs, split.targets, split.candidates, batch)
    return {k: round(v, 6) for k, v in mt.hit_rate_ndcg(ranks, KS).items()}


def _baselines(
    data: SequenceData,
    train: SequenceData,
    valid: EvalSplit,
    test: EvalSplit,
    betas: Sequence[float],
) -> dict[str, Any]:
    """Popularity and last-item kNN on valid (fit on train) and test (fit on test inputs)."""
    n = data.n_items
    out: dict[str, Any] = {}
    fits = {"valid": (valid, train.sequences), "test": (test, test.inputs)}
    res: dict[str, dict[str, dict[str, float]]] = {"popularity": {}, "last_item_knn": {}}
    tuned: dict[float, dict[str, dict[str, float]]] = {b: {} for b in betas}
    for name, (split, seqs) in fits.items():
        pop = bl.popularity(seqs, n)
        res["popularity"][name] = _metrics_of(
            lambda idx, pop=pop: np.broadcast_to(pop, (len(idx), n + 1)), split
        )
        last = split.last_items()
        for b in sorted({0.5, *betas}):
            sim = bl.item_similarity(seqs, n, beta=b)
            m = _metrics_of(
                lambda idx, sim=sim, last=last: bl.last_item_knn_scores(sim, last[idx]), split
            )
            if b == 0.5:
                res["last_item_knn"][name] = m
            if b in tuned:
                tuned[b][name] = m
    for key, r in res.items():
        out[key] = {**r["test"], "valid_ndcg@10": r["valid"]["ndcg@10"]}
    out["popularity"]["protocol"] = (
        "interaction counts of the training part (test: all input items)"
    )
    out["last_item_knn"]["protocol"] = (
        "cosine similarity |U_i & U_j| / sqrt(|U_i| |U_j|) of each candidate to the user's last "
        "item, binary user-item co-occurrence of the training part (test: all input items)"
    )
    best_b = max(betas, key=lambda b: tuned[b]["valid"]["ndcg@10"])
    out["last_item_knn_tuned"] = {
        **tuned[best_b]["test"],
        "valid_ndcg@10": tuned[best_b]["valid"]["ndcg@10"],
        "beta": best_b,
        "protocol": (
            "like last_item_knn with sim = |U_i & U_j| / (|U_i|^(1-beta) |U_j|^beta), beta chosen "
            f"on validation NDCG@10 from {list(betas)} (0.5 = cosine)"
        ),
    }
    return out


def _cold_start(
    data: SequenceData,
    cfg: ModelConfig,
    fraction: float,
    seed: int,
    budget_s: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from .training import item_vectors, train_model, user_vectors

    cold, warm, cold_eval = cold_start_split(data, fraction=fraction, seed=seed)
    is_cold = np.zeros(data.n_items + 1, dtype=bool)
    is_cold[cold] = True
    warm_items = np.flatnonzero(~is_cold)[1:]
    warm_train, warm_valid = holdout_last(warm)
    protocol = (
        f"{len(cold)} items ({fraction:.0%} of the items that occur, drawn with seed {seed}) are "
        "removed from every sequence and from the training softmax; a second model with the same "
        "config is trained on the remaining (warm) sequences, last warm item of each user held "
        "out for early stopping. Evaluation: for every user who interacted with a held-out item "
        "and has >= 1 warm item before the first such interaction, input = the warm items before "
        "it, target = that first held-out item, candidates = all held-out items (ranked among "
        "themselves; the user's later held-out items stay candidates), held-out items scored "
        "from their attributes alone (no id embedding). Ties count against the target."
    )
    out: dict[str, Any] = {
        "protocol": protocol,
        "n_cold_items": int(len(cold)),
        "n_users_evaluated": int(len(cold_eval)),
    }
    if len(cold_eval) == 0:
        out["skipped"] = "no user has a warm item before a held-out item"
        return out
    cold_cfg = cfg.replace(time_budget_s=budget_s, knn_blend=False)
    log(f"cold start: {len(cold)} held-out items, {len(cold_eval)} users, budget {budget_s:.0f}s")
    res = train_model(data, cold_cfg, warm_train, warm_valid, catalog_items=warm_items, log=log)
    uv = user_vectors(res.model, cold_eval.inputs, cold_eval.input_event_types)
    iv = np.zeros((data.n_items + 1, res.model.dim), dtype=np.float32)
    iv[cold] = item_vectors(res.model, data.item_attributes[cold], None)
    model_m = _metrics_of(lambda idx: uv[idx] @ iv.T, cold_eval)
    pop = bl.popularity(warm_train.sequences, data.n_items)
    attr_mean = bl.attribute_popularity(data.item_attributes, pop, how="item_mean")
    attr_total = bl.attribute_popularity(data.item_attributes, pop, how="total")
    last = cold_eval.last_items()

    def const(v: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda idx: np.broadcast_to(v, (len(idx), len(v)))

    out.update(
        {
            "model": {
                "hr@10": model_m["hr@10"],
                "ndcg@10": model_m["ndcg@10"],
                "hr@20": model_m["hr@20"],
                "ndcg@20": model_m["ndcg@20"],
            },
            "attribute_popularity": {
                **_metrics_of(const(attr_mean), cold_eval),
                "protocol": "mean over the item's attributes of the mean interaction count of the "
                "warm training items carrying that attribute",
            },
            "attribute_popularity_total": {
                **_metrics_of(const(attr_total), cold_eval),
                "protocol": "mean over the item's attributes of the total interaction count of "
                "warm training items carrying that attribute",
            },
            "last_item_attribute_overlap": {
                **_metrics_of(
                    lambda idx: bl.attribute_overlap_scores(data.item_attributes, last[idx]),
                    cold_eval,
                ),
                "protocol": "cosine overlap of the candidate's attribute set with the user's "
                "last item's attribute set (a personalised content baseline)",
            },
            "random_expected_hr@10": round(min(1.0, 10 / len(cold)), 6),
            "train_seconds": round(res.train_seconds, 1),
            "epochs": res.epochs,
            "best_epoch": res.best_epoch,
            "warm_valid_ndcg@10": round(res.valid_metrics.get("ndcg@10", float("nan")), 6),
        }
    )
    return out


MIN_EVAL_USERS = 10
"""Fewer test users than this give HR@10 / NDCG@10 that say nothing (one user: 0 or 1)."""


def check_evaluable(sequences_file, data: SequenceData, test: EvalSplit) -> None:
    """Refuse a data set on which full-ranking HR@K / NDCG@K cannot mean anything: fewer than
    ``MIN_EVAL_USERS`` users with a test item, or so few items that every ranking puts the
    target in the top ``max(KS)`` (HR@10 = 1.0 for a file with one user and five items)."""
    from launch_pipeline.errors import InputFileError

    users = len(test.targets)
    k = max(KS)
    if users < MIN_EVAL_USERS:
        raise InputFileError(
            sequences_file,
            f"has {users} user(s) with at least 2 items (of {len(data.sequences)} lines): "
            f"leave-one-out HR@K / NDCG@K need at least {MIN_EVAL_USERS} to mean anything",
            "evaluate on a file with more users (one line per user: user item item ...)",
        )
    if data.n_items <= k + 1:
        raise InputFileError(
            sequences_file,
            f"has {data.n_items} item(s): with {k + 1} or fewer, every ranking puts the target "
            f"in the top {k}, so HR@{k} would be 1.0 whatever the model",
            f"evaluate on a file with more than {k + 1} items",
        )


def evaluate_s3rec(
    sequences_file: str | os.PathLike,
    attributes_file: str | os.PathLike | None = None,
    time_budget_min: float = 20,
    seed: int = 42,
    config: ModelConfig | dict | None = None,
    *,
    cold_fraction: float = 0.1,
    cold_time_budget_min: float | None = None,
    model_out: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate on an S3-Rec data set; returns a JSON-able dict (see module docstring).

    ``time_budget_min`` bounds the main model's training loop (validation and the blend search
    included); the cold-start model gets ``cold_time_budget_min`` (default a quarter of it).
    ``config`` (a :class:`ModelConfig` or a dict of overrides) defaults to ``ModelConfig()``;
    ``time_budget_min`` and ``seed`` override its ``time_budget_s`` and ``seed``.
    ``model_out``: optionally save the trained main model (``.keras``, kNN lists rebuilt from all
    pre-test interactions).
    """
    from .training import evaluate_split, save_model, set_item_neighbors, train_model

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    load_start = _load()
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config or {})
    cfg = cfg.replace(time_budget_s=float(time_budget_min) * 60.0, seed=int(seed))
    cold_budget_s = (
        cfg.time_budget_s / 4.0
        if cold_time_budget_min is None
        else float(cold_time_budget_min) * 60
    )

    data = read_s3rec(sequences_file, attributes_file)
    train, valid, test = leave_one_out(data)
    check_evaluable(sequences_file, data, test)
    say(f"data: {data.n_users} users, {data.n_items} items, {len(valid)} valid, {len(test)} test")
    t_b = time.perf_counter()
    baselines = _baselines(data, train, valid, test, cfg.blend_betas)
    baseline_seconds = time.perf_counter() - t_b
    say(f"baselines: {json.dumps({k: v['ndcg@10'] for k, v in baselines.items()})}")

    res = train_model(data, cfg, train, valid, log=say)
    model = res.model
    # the network saw only the training part; the kNN lists used at test time are rebuilt from
    # every interaction before the test item (what the kNN baseline uses too), alpha/beta stay
    # as chosen on validation
    set_item_neighbors(model, test.inputs)
    test_m, _ = evaluate_split(model, test, ks=KS, blend=True)
    test_plain, _ = evaluate_split(model, test, ks=KS, blend=False)
    if model_out is not None:
        save_model(model, model_out)
    say(f"test: {test_m}")

    cold = _cold_start(data, cfg, cold_fraction, seed, cold_budget_s, say)

    valid_final = res.blend.get("valid_with_blend") or res.valid_metrics
    result: dict[str, Any] = {
        "dataset": {
            "sequences_file": str(sequences_file),
            "attributes_file": None if attributes_file is None else str(attributes_file),
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_interactions": int(sum(len(s) for s in data.sequences)),
            "n_attributes": data.n_attributes - 1,
            "n_valid_users": len(valid),
            "n_test_users": len(test),
        },
        "protocol": (
            "S3-Rec leave-one-out: last item = test, second-to-last = validation, rest = training; "
            "all items ranked, item 0 and the user's input items excluded (target always ranked); "
            "ties count against the target; HR@K/NDCG@K averaged over all users with the target. "
            "Model: early stopping on validation NDCG@10 (model logits); kNN blend weight alpha and "
            "similarity exponent beta chosen on validation; test scored once with "
            "logit + alpha * sim(last item, candidate), kNN lists rebuilt from all pre-test "
            "interactions (as for the kNN baseline)."
        ),
        **{k: round(v, 6) for k, v in test_m.items()},
        "valid_ndcg@10": round(valid_final.get("ndcg@10", float("nan")), 6),
        "valid_hr@10": round(valid_final.get("hr@10", float("nan")), 6),
        "model_only": {
            **{k: round(v, 6) for k, v in test_plain.items()},
            "valid_ndcg@10": round(res.valid_metrics.get("ndcg@10", float("nan")), 6),
            "valid_hr@10": round(res.valid_metrics.get("hr@10", float("nan")), 6),
        },
        "blend": {k: v for k, v in res.blend.items() if k not in ("valid_with_blend",)},
        "train_seconds": round(res.train_seconds, 1),
        "epochs": res.epochs,
        "best_epoch": res.best_epoch,
        "stopped": res.stopped,
        "history": [{k: round(float(v), 6) for k, v in h.items()} for h in res.history],
        "baselines": baselines,
        "baseline_seconds": round(baseline_seconds, 1),
        "published": PUBLISHED,
        "cold_start": cold,
        "config": cfg.to_dict(),
        "machine": _machine(),
        "load_average_start": load_start,
        "load_average_end": _load(),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "peak_rss_mb": _peak_rss_mb(),
        "versions": _versions(),
    }
    return result


def _versions() -> dict[str, str]:
    out = {"numpy": np.__version__}
    try:
        import keras
        import tensorflow as tf

        out.update(tensorflow=tf.__version__, keras=keras.__version__)
    except ImportError:  # pragma: no cover
        pass
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m launch_pipeline.model.evaluation",
        description="Train and evaluate the sequential recommender on S3-Rec-format data.",
    )
    p.add_argument("--sequences", required=True, help="S3-Rec file: 'user item item ...' per line")
    p.add_argument("--attributes", default=None, help="JSON: item id -> [attribute ids]")
    p.add_argument("--out", required=True, help="where to write the result JSON")
    p.add_argument("--time-budget-min", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--config", default=None, help="JSON object of ModelConfig overrides")
    p.add_argument("--cold-time-budget-min", type=float, default=None)
    p.add_argument("--model-out", default=None, help="optional .keras path for the trained model")
    a = p.parse_args(argv)
    result = evaluate_s3rec(
        a.sequences,
        a.attributes,
        time_budget_min=a.time_budget_min,
        seed=a.seed,
        config=json.loads(a.config) if a.config else None,
        cold_time_budget_min=a.cold_time_budget_min,
        model_out=a.model_out,
    )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(json.dumps({k: result[k] for k in ("hr@10", "ndcg@10", "hr@20", "ndcg@20")}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
