#!/usr/bin/env python
"""The floor under issue 14's 2.0x target: what any pipeline that writes each raw partition once
(issue 14 part 1) and computes only the bare reference's four GROUP BYs from what it wrote costs,
against the bare reference on the same day files, in the same process.

No quarantine rule, no GX, no incremental state, no richer feature: each day file is read,
its timestamp parsed (as the reference parses it) and written once as a typed Parquet file with
the clean partition's columns (zstd level 1, the lake's setting), by as many day writers side by
side as the pipeline's cleaning uses (``partition_workers_from_env``, one cursor each); then the
reference's four GROUP BYs (``bench.BARE_QUERIES``) run over those files. The reference is
measured before and after (mean), as in ``bench``. Reads the raw files a ``bench`` run leaves in
its work dir:

    python -m launch_pipeline.bench bench --events 10000000 --no-model --no-backfill \\
        --work-dir /tmp/s6/w10m --out /tmp/s6/base_10m.json
    python benchmarks/floor_probe.py /tmp/s6/w10m --bench-json /tmp/s6/base_10m.json \\
        --out benchmarks/floor_probe_10m.json

With ``--bench-json`` (the ``bench`` run of the same files) the JSON also holds the pipeline's
stages from that run beside the floor, as ratios to that run's reference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from launch_pipeline.bench import (
    BARE_QUERIES,
    StageMeter,
    bare_duckdb_reference,
    machine_info,
    warehouse_connection,
)
from launch_pipeline.settings import partition_workers_from_env

# the columns of a clean partition file (cleaning.CLEAN_COLUMNS), without any rule: the event
# key is the same 64-bit hash of the delivered fields, the time parsed as the reference parses it
_TYPED_DAY_SQL = """
COPY (
    SELECT lpad(to_hex(hash(user_id, item_id, event_type, ts, quantity, price, rating,
                            review_text, session_id)), 16, '0') AS event_id,
           DATE '{day}' AS partition_date, user_id, item_id, event_type,
           CASE WHEN regexp_full_match(ts, '[0-9]+') THEN to_timestamp(TRY_CAST(ts AS BIGINT))
                ELSE TRY_CAST(ts AS TIMESTAMPTZ) END::TIMESTAMP AS ts,
           CAST(quantity AS BIGINT) AS quantity, CAST(price AS DOUBLE) AS price,
           false AS price_imputed, CAST(rating AS INTEGER) AS rating, review_text, session_id,
           '{name}' AS source_file, file_row_number::BIGINT AS source_row
    FROM read_parquet('{src}', file_row_number = true)
) TO '{dst}' (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)
"""


def floor_run(raw_dir: Path, work_dir: Path, meter: StageMeter) -> dict:
    files = sorted((raw_dir / "events").glob("*.parquet"))
    out_dir = work_dir / "floor_days"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    db = work_dir / "floor.duckdb"
    db.unlink(missing_ok=True)
    con = warehouse_connection(db)
    workers = partition_workers_from_env()
    try:
        con.execute("SET TimeZone = 'UTC'")

        def one(path: Path) -> None:
            cur = con.cursor()
            try:
                cur.execute("SET TimeZone = 'UTC'")
                cur.execute(
                    _TYPED_DAY_SQL.format(
                        day=path.stem, name=path.name, src=path, dst=out_dir / path.name
                    )
                )
            finally:
                cur.close()

        with (
            meter.stage("floor_write_each_day_once", workers=workers),
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            list(pool.map(one, files))
        con.execute(
            "CREATE OR REPLACE TEMP VIEW bare_events AS SELECT user_id, item_id, event_type, "
            "quantity, price, rating, ts AS t "
            f"FROM read_parquet('{out_dir}/*.parquet')"
        )
        seconds = {}
        with meter.stage("floor_four_group_bys_over_written_files"):
            for name, sql in BARE_QUERIES.items():
                t0 = time.perf_counter()
                con.execute(sql)
                seconds[name] = round(time.perf_counter() - t0, 3)
        rows = con.execute("SELECT count(*) FROM bare_events").fetchone()[0]
    finally:
        con.close()
    return {"rows": int(rows), "day_files": len(files), "group_by_seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work_dir", type=Path, help="a bench run's --work-dir (holds raw/events)")
    ap.add_argument("--bench-json", type=Path, help="that bench run's JSON, for the comparison")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    raw_dir = args.work_dir / "raw"
    if not (raw_dir / "events").is_dir():
        raise SystemExit(f"{raw_dir / 'events'} does not exist: run the bench command first")
    meter = StageMeter()
    result: dict = {"machine": machine_info(), "work_dir": str(args.work_dir)}
    with open("/proc/loadavg") as fh:
        result["load_start"] = fh.read().split()[:3]
    with meter.stage("bare_duckdb_before") as rec:
        rec["tables"] = bare_duckdb_reference(raw_dir, args.work_dir / "floor_bare.duckdb")
    result["floor"] = floor_run(raw_dir, args.work_dir, meter)
    with meter.stage("bare_duckdb_after") as rec:
        rec["tables"] = bare_duckdb_reference(raw_dir, args.work_dir / "floor_bare.duckdb")
    meter.close()
    with open("/proc/loadavg") as fh:
        result["load_end"] = fh.read().split()[:3]
    st = meter.stages
    bare = {
        k: round((st["bare_duckdb_before"][k] + st["bare_duckdb_after"][k]) / 2, 3)
        for k in ("seconds", "cpu_seconds")
    }
    floor_stages = ("floor_write_each_day_once", "floor_four_group_bys_over_written_files")
    floor = {k: round(sum(st[s][k] for s in floor_stages), 3) for k in ("seconds", "cpu_seconds")}
    result.update(
        stages=st,
        bare_duckdb=bare,
        floor_total=floor,
        floor_vs_bare_duckdb=round(floor["seconds"] / bare["seconds"], 2),
        floor_vs_bare_duckdb_cpu=round(floor["cpu_seconds"] / bare["cpu_seconds"], 2),
    )
    if args.bench_json:
        b = json.loads(args.bench_json.read_text())
        bs = b["stages"]
        ref_w, ref_c = b["bare_duckdb_seconds"], b["bare_duckdb_cpu_seconds"]

        def ratio(names) -> dict:
            w = sum(bs[n]["seconds"] for n in names)
            c = sum(bs[n]["cpu_seconds"] for n in names)
            return {
                "seconds": round(w, 3),
                "cpu_seconds": round(c, 3),
                "vs_bare": round(w / ref_w, 2),
                "vs_bare_cpu": round(c / ref_c, 2),
            }

        feats = [k for k in bs if k.startswith("features.")]
        result["pipeline_same_files"] = {
            "bench_json": str(args.bench_json),
            "bare_duckdb": {"seconds": ref_w, "cpu_seconds": ref_c},
            "clean": ratio(["raw", "clean"]),
            "gx": ratio(["gx_quality", "gx_noise"]),
            "clean_and_gx": ratio(["raw", "clean", "gx_quality", "gx_noise"]),
            "features": ratio(feats),
            "raw_to_features": ratio(["raw", "clean", "gx_quality", "gx_noise", *feats]),
        }
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "bare_duckdb",
                    "floor_total",
                    "floor_vs_bare_duckdb",
                    "floor_vs_bare_duckdb_cpu",
                )
            }
        )
    )
    for k, v in result.get("pipeline_same_files", {}).items():
        if isinstance(v, dict) and "vs_bare" in v:
            print(f"pipeline {k}: {v}")


if __name__ == "__main__":
    main()
