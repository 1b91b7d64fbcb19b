#!/usr/bin/env python
"""Can the forecast's level be read from the candidates' own features?

The plan's forecast level is the newest past launch window's revenue per launch (times a
seasonal change when the data reaches a year back). On Online Retail the spring candidates sold
4-6x that level. This script asks whether anything the valuation already knows would have told:
it fits, on the same past launches as ``demand.fit_demand_model``, a Poisson regression of each
launch's *absolute* revenue (not relative to its window) on its features standardised over all
windows, and compares the forecast total of the candidates with what they really sold:

* ``newest_window_level``: the pipeline's level (newest window's mean x number of candidates);
* ``absolute_all_windows``: the absolute model fitted on every past window;
* ``absolute_newest_window``: the same fitted on the newest window only.

It reads the cutoff directories that ``launch-pipeline backtest ... --work-dir DIR`` keeps (the
history staged before each cutoff; only the base features are used, so the Transformer's budget
of that run does not matter) and the realised sales of the whole file:

    launch-pipeline backtest --source online_retail --path FILE --cutoff ... \\
        --model-work-gcells 0.5 --work-dir /tmp/lv/or --out /tmp/lv/or_tiny.json
    python benchmarks/level_from_features.py --source online_retail --path FILE \\
        --work-dir /tmp/lv/or --out benchmarks/level_from_features_online_retail.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from sklearn.linear_model import PoissonRegressor

from launch_pipeline import backtest, demand


def absolute_total(train: pd.DataFrame, cands: pd.DataFrame, features: list[str]) -> float:
    """Forecast total revenue of ``cands`` from a Poisson fit of absolute revenue on ``train``."""
    x = train[features].fillna(train[features].mean())
    mu, sd = x.mean(), x.std(ddof=0).replace(0.0, 1.0)
    y = train["target"].to_numpy()
    reg = PoissonRegressor(alpha=1.0, max_iter=1000, solver="newton-cholesky")
    reg.fit(((x - mu) / sd).to_numpy(), y / y.mean())
    c = ((cands[features].fillna(x.mean()) - mu) / sd).to_numpy()
    return float(reg.predict(c).sum() * y.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--path", required=True, type=Path)
    ap.add_argument("--work-dir", required=True, type=Path)
    ap.add_argument("--horizon-days", type=int, default=90)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    dirs = sorted(args.work_dir.glob("cutoff_*"))
    if not dirs:
        raise SystemExit(
            f"no cutoff_* directories in {args.work_dir}: run the backtest with --work-dir"
        )
    h = args.horizon_days
    cutoffs = [dt.date.fromisoformat(d.name.removeprefix("cutoff_")) for d in dirs]
    sales = backtest.realised_sales(
        args.source, args.path, min(cutoffs), max(cutoffs) + dt.timedelta(days=h),
        args.work_dir / "realised",
    )  # fmt: skip
    cfg = demand.DemandConfig()
    feats_used = list(demand.BASE_FEATURES)
    rows = []
    for d, cutoff in zip(dirs, cutoffs, strict=True):
        con = duckdb.connect(str(d / "warehouse.duckdb"), read_only=True)
        try:
            hist = demand.load_history(con)
            plan_date = con.execute("SELECT max(plan_date) FROM launch_plan").fetchall()[0][0]
            cands = con.execute(
                "SELECT item_id, title, category, price AS first_price FROM launch_plan "
                "WHERE plan_date = ?",
                [plan_date],
            ).df()
        finally:
            con.close()
        data, windows = demand._past_cohorts(hist, h, cfg, None)
        feats = demand.launch_features(hist, cands, hist.plan_start, h, cfg)
        real = backtest.realised_by_item(
            sales, cands["item_id"], cutoff, cutoff + dt.timedelta(days=h)
        )
        realised = float(real["revenue"].sum())
        newest = data[data["window"] == 0]
        rows.append(
            {
                "cutoff": cutoff.isoformat(),
                "windows": [
                    (w["start"], w["launches"], round(w["mean_revenue"], 1)) for w in windows
                ],
                "candidates": len(cands),
                "realised_per_candidate": round(realised / len(cands), 1),
                "forecast_to_realised": {
                    "newest_window_level": round(
                        float(newest["target"].mean()) * len(cands) / realised, 3
                    ),
                    "absolute_all_windows": round(
                        absolute_total(data, feats, feats_used) / realised, 3
                    ),
                    "absolute_newest_window": round(
                        absolute_total(newest, feats, feats_used) / realised, 3
                    ),
                },
            }
        )
        r = rows[-1]
        print(cutoff, r["realised_per_candidate"], r["forecast_to_realised"], flush=True)
    means = {
        k: round(float(np.mean([r["forecast_to_realised"][k] for r in rows])), 3)
        for k in rows[0]["forecast_to_realised"]
    }
    print("mean forecast / realised:", means)
    if args.out:
        args.out.write_text(
            json.dumps({"cutoffs": rows, "mean_forecast_to_realised": means}, indent=1)
        )


if __name__ == "__main__":
    main()
