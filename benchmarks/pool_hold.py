#!/usr/bin/env python
"""Time each step of one pipeline run (the e2e test's simulated shop, 20 s model budget) and
print which steps are in the duckdb_warehouse pool: how long the pool is held per model step."""

import dataclasses
import datetime as dt
import tempfile

import dagster as dg

import launch_pipeline
from launch_pipeline.definitions import build_definitions
from launch_pipeline.runner import run_pipeline
from launch_pipeline.settings import Settings
from launch_pipeline.simulator import SimulatorConfig, generate_shop

END = dt.date(2026, 11, 20)
SIM = SimulatorConfig(seed=11, users=500, days=16, events_per_day=1800, end_date=END, candidates=40)
print("code:", launch_pipeline.__file__)
with tempfile.TemporaryDirectory() as d:
    s = dataclasses.replace(Settings.from_env(data_dir=d), model_time_budget_s=20.0)
    generate_shop(s.raw_dir, SIM)
    inst = dg.DagsterInstance.ephemeral()
    out = run_pipeline(s, instance=inst)
    assert out.success, out.failures
    defs = build_definitions(s)
    pools = {}
    for a in defs.resolve_asset_graph().assets_defs:
        for k in a.keys:
            pools[k.to_user_string()] = a.op.pool
    starts, ends = {}, {}
    for rec in inst.all_logs(out.run_id):
        ev = rec.dagster_event
        if ev is None:
            continue
        if ev.event_type_value == "STEP_START":
            starts[ev.step_key] = rec.timestamp
        elif ev.event_type_value == "STEP_SUCCESS":
            ends[ev.step_key] = rec.timestamp
    for step in ("model_training_data", "preference_model", "champion_model", "model_evaluation"):
        if step in starts:
            print(f"{step:22s} {ends[step] - starts[step]:6.1f} s  pool={pools.get(step)}")
    held = sum(ends[k] - starts[k] for k in starts if k in ends and pools.get(k))
    total = max(ends.values()) - min(starts.values())
    print(f"warehouse pool held by all steps: {held:.1f} s of a {total:.1f} s run")
