#!/usr/bin/env python
"""What a night's ``user_sequences`` update costs whatever the new steps are: on a copy of a
warehouse that ``bench nightly-data`` leaves, the lists of the users active on the last day are
rewritten unchanged (``UPDATE ... SET items = list_concat(items, [])``, twice) and checkpointed.
Reports the table's row groups, list elements and blocks, and the seconds of each UPDATE and
CHECKPOINT, to show how the cost follows the lists already stored:

    for h in 15 60; do
        python benchmarks/sequence_rewrite_probe.py /tmp/nd/history_${h}d/data/warehouse.duckdb \\
            /tmp/copy.duckdb --out sequence_rewrite_$h.json
    done
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import duckdb

from launch_pipeline.bench import duckdb_memory_limit


def main(source: str, copy: str, repeats: int = 2) -> dict:
    shutil.copy(source, copy)
    con = duckdb.connect(copy)
    con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
    con.execute("SET checkpoint_threshold = '100GB'")  # checkpoint only when asked
    con.execute("CHECKPOINT")
    con.execute(
        "CREATE TEMP TABLE active AS SELECT DISTINCT user_id FROM feat_part_seq "
        "WHERE day = (SELECT max(day) FROM feat_part_seq)"
    )
    storage = "FROM pragma_storage_info('user_sequences')"
    res = {
        "warehouse": source,
        "users": con.execute("SELECT count(*) FROM user_sequences").fetchone()[0],
        "active_users": con.execute("SELECT count(*) FROM active").fetchone()[0],
        "list_elements": con.execute("SELECT sum(len(items)) FROM user_sequences").fetchone()[0],
        "row_groups": con.execute(f"SELECT count(DISTINCT row_group_id) {storage}").fetchone()[0],
        "blocks": con.execute(f"SELECT count(DISTINCT block_id) {storage}").fetchone()[0],
        "runs": [],
    }
    for _ in range(repeats):
        t0 = time.perf_counter()
        con.execute(
            "UPDATE user_sequences SET items = list_concat(items, []) "
            "WHERE user_id IN (SELECT user_id FROM active)"
        )
        t1 = time.perf_counter()
        con.execute("CHECKPOINT")
        t2 = time.perf_counter()
        res["runs"].append(
            {"update_seconds": round(t1 - t0, 3), "checkpoint_seconds": round(t2 - t1, 3)}
        )
    con.close()
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("warehouse")
    ap.add_argument("copy", help="where to copy the warehouse (deleted afterwards)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    try:
        result = main(args.warehouse, args.copy)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))
    finally:
        for p in (Path(args.copy), Path(args.copy + ".wal")):
            p.unlink(missing_ok=True)
