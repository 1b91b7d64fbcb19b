#!/usr/bin/env python
"""Would the Transformer's learned item space add what its two valuation features do not?

A probe, not part of the pipeline: for each cutoff directory of an Online Retail backtest run
with ``--work-dir`` (the pipeline's own champion model and warehouse), each candidate's 20
nearest catalogue products by cosine in the model's item space (the candidate's vector from its
attributes, the catalogue's trained vectors) give a similarity-weighted recent revenue
(``emb_knn``, and the plain mean of the nearest 5, ``emb_knn5``), the text-kNN features' twin
in the model's space. The valuation's features are then fitted in hindsight
(``backtest.hindsight_fit``) with and without them. If they added much even in hindsight,
building them time-honestly for past launches (as-of item spaces per window) would be worth it.

    launch-pipeline backtest --source online_retail --path FILE --cutoff 2011-05-01 \
        --cutoff 2011-07-01 --cutoff 2011-09-01 --horizon-days 90 --slots 20 \
        --work-dir /tmp/lv/orfull --out /tmp/lv/orfull.json
    python benchmarks/embedding_knn_hindsight.py /tmp/lv/orfull FILE
"""

import datetime as dt
import glob
import pathlib
import sys

import duckdb
import numpy as np
import pandas as pd

from launch_pipeline import backtest as B
from launch_pipeline import demand as D
from launch_pipeline.model.training import catalog_vectors, item_vectors
from launch_pipeline.model_pipeline import champion_or_fail, load_version
from launch_pipeline.model_store import LocalModelStore
from launch_pipeline.settings import Settings
from launch_pipeline.shop_data import load_shop_data

root = sys.argv[1]
DATA = pathlib.Path(sys.argv[2])


def _span(r):
    cs = [dt.date.fromisoformat(p.split("_")[-1]) for p in glob.glob(r + "/cutoff_*")]
    return min(cs), max(cs) + dt.timedelta(days=90)


sales = B.realised_sales("online_retail", DATA, *_span(root), pathlib.Path(root) / "realised")
rows = {}
for d in sorted(glob.glob(root + "/cutoff_*")):
    c = dt.date.fromisoformat(d.split("_")[-1])
    s = Settings.from_env(data_dir=d, raw_dir=d + "/raw")
    model, meta = load_version(champion_or_fail(LocalModelStore(s.models_dir)))
    con = duckdb.connect(d + "/warehouse.duckdb", read_only=True)
    shop = load_shop_data(con, meta["item_ids"], meta["attribute_vocab"])
    hist = D.load_history(con)
    pdate = con.execute("SELECT max(plan_date) FROM launch_plan").fetchall()[0][0]
    val = B._valuation(con, pdate)
    con.close()
    cat = catalog_vectors(model)[1:]
    ids = np.asarray(shop.item_ids[1:]).astype(str)
    cand = item_vectors(model, shop.candidate_attributes, None)
    rec = D._recent_revenue(hist, pd.DataFrame({"item_id": ids}), hist.plan_start, 90).clip(0)

    def norm(x):
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)

    sim = norm(cand) @ norm(cat).T
    top = np.argsort(-sim, axis=1)[:, :20]
    w = np.take_along_axis(sim, top, 1).clip(0)
    nb = rec[top]
    feat = np.log1p((nb * w).sum(1) / np.maximum(w.sum(1), 1e-9))
    feat5 = np.log1p(nb[:, :5].mean(1))
    emb = pd.DataFrame(
        {"feature:emb_knn": feat, "feature:emb_knn5": feat5},
        index=shop.candidates["item_id"].astype(str).to_numpy(),
    )
    v = val.join(emb)
    truth = B.realised_by_item(sales, list(v.index), c, c + dt.timedelta(days=90))["revenue"]
    truth.index = truth.index.astype(str)
    cols = [x for x in v.columns if x.startswith("feature:")]
    base = [x for x in cols if "transformer" not in x and "emb" not in x]
    r = {}
    for name, cs in [
        ("base", base),
        ("base+tf", base + ["feature:transformer_buyers", "feature:transformer_units"]),
        ("base+emb", base + ["feature:emb_knn", "feature:emb_knn5"]),
        ("all", cols),
    ]:
        h = B.hindsight_fit(
            v[cs].rename(columns=lambda name: name.removeprefix("feature:")),
            truth,
            20,
            D.DemandConfig().poisson_alphas,
        )
        r[name] = (round(h.captured_revenue_share, 3), round(h.spearman, 3))
    r["emb_alone_captured"] = round(
        B.expected_top_k_share(
            pd.Series(feat, index=emb.index), truth.reindex(emb.index).fillna(0), 20
        ),
        3,
    )
    r["emb_alone_spearman"] = round(B.spearman(feat, truth.reindex(emb.index).fillna(0)), 3)
    r["corr_emb_textknn"] = round(
        float(np.corrcoef(v["feature:emb_knn"], v["feature:text_knn_weighted"])[0, 1]), 3
    )
    rows[str(c)] = r
    print(c, r, flush=True)
