#!/usr/bin/env python
"""How much of a launch's first-``H``-days revenue the demand model's target sees.

The demand model (``launch_pipeline/demand.py``) learns from past launch windows ``[A, A + H)``:
each launch's target is its revenue from its first sale to the window's end, so a launch late in
the window is seen for a few days only. That is what the backtest scores (candidates launch
through the window), but a plan launches its picks in its first days, when they have the whole
horizon to sell. This script measures the gap on Online Retail: per window, the launches' revenue
to the window end against the same launches' revenue in their own first ``H`` days (purchases of
positive quantity and price; products first sold in the window; windows whose launches all have
``H`` days of data after them).

    python benchmarks/launch_timing_factor.py ../shared/datasets/online_retail/online_retail_2010_2011.parquet
"""

import sys

import pandas as pd

H = 90
df = pd.read_parquet(sys.argv[1], columns=["StockCode", "Quantity", "UnitPrice", "InvoiceDate"])
df = df[(df["Quantity"] > 0) & (df["UnitPrice"] > 0)]
df["ts"] = pd.to_datetime(df["InvoiceDate"])
df["revenue"] = df["Quantity"] * df["UnitPrice"]
first = df.groupby("StockCode")["ts"].min()
end_of_data = df["ts"].max()
print(
    f"| window start | launches | revenue to the window end | revenue in their first {H} days | ratio |"
)
print("|---|---:|---:|---:|---:|")
ratios = []
for start in pd.date_range("2011-01-01", end_of_data - pd.Timedelta(days=2 * H), freq="MS"):
    end = start + pd.Timedelta(days=H)
    cohort = first[(first >= start) & (first < end)]
    d = df[df["StockCode"].isin(cohort.index)]
    launch = d["StockCode"].map(cohort)
    to_end = d.loc[d["ts"] < end, "revenue"].sum()
    first_h = d.loc[d["ts"] < launch + pd.Timedelta(days=H), "revenue"].sum()
    ratios.append(to_end / first_h)
    print(f"| {start.date()} | {len(cohort)} | {to_end:,.0f} | {first_h:,.0f} | {ratios[-1]:.2f} |")
print(f"mean ratio {sum(ratios) / len(ratios):.2f}")
