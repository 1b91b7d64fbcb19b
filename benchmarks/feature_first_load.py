#!/usr/bin/env python
"""The four feature tables' first load (every clean day merged into an empty state), on a copy
of the warehouse a ``bench`` run leaves, with the code on ``PYTHONPATH``: CPU-seconds and wall
time per table and the tables' fingerprints, so two versions of ``features_incremental`` can be
compared on the same clean events (the fingerprints must be equal):

    python -m launch_pipeline.bench bench --events 30000000 --no-model --no-backfill \\
        --work-dir /tmp/s6/g_w30000000 --out bench_30m.json
    git worktree add /tmp/old 08f7f79
    for code in /tmp/old .; do
        PYTHONPATH=$code python benchmarks/feature_first_load.py \\
            /tmp/s6/g_w30000000/warehouse.duckdb /tmp/s6/copy.duckdb
    done
"""

import json
import shutil
import sys
import time

import duckdb

from launch_pipeline import features_incremental as fi
from launch_pipeline.bench import _cpu_seconds as cpu_seconds
from launch_pipeline.bench import duckdb_memory_limit, table_fingerprint


def main(source: str, copy: str) -> None:
    shutil.copy(source, copy)
    con = duckdb.connect(copy)
    con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
    derived = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'feat_%' "
        "OR table_name IN ('item_features', 'user_features', 'user_sequences', "
        "'activity_profile', 'price_bands')"
    ).fetchall()
    for (name,) in derived:
        con.execute(f"DROP TABLE IF EXISTS {name}")
    con.execute("CHECKPOINT")
    versions = fi.clean_day_versions(con, None)
    out = {"code": fi.__file__, "tables": {}}
    for name in fi.INCREMENTAL_TABLES:
        c0, w0 = cpu_seconds(), time.perf_counter()
        mode = getattr(fi, f"update_{name}")(con, versions).mode
        out["tables"][name] = {
            "mode": mode,
            "seconds": round(time.perf_counter() - w0, 2),
            "cpu_seconds": round(cpu_seconds() - c0, 2),
            "fingerprint": [str(x) for x in table_fingerprint(con, name)],
        }
    out["cpu_seconds"] = round(sum(t["cpu_seconds"] for t in out["tables"].values()), 2)
    out["seconds"] = round(sum(t["seconds"] for t in out["tables"].values()), 2)
    con.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: feature_first_load.py WAREHOUSE.duckdb COPY.duckdb")
    main(sys.argv[1], sys.argv[2])
