#!/usr/bin/env python
"""What the readers of ``user_sequences`` and ``activity_profile`` pay now that the first is
stored as steps (``user_sequence_steps``) and the second is a view computed when read: on a copy
of a warehouse that ``bench nightly-data`` leaves, the model's read of every user's steps
(``shop_data.read_sequences``) and the planner's read of the users' hour shares, against the same
reads of tables of the seventh session's shapes, materialised here from the views (so both hold
the same rows): the list table flattened by the seventh session's SQL, a stored ``activity_profile``:

    python benchmarks/reader_cost_probe.py /tmp/nd/history_60d/data/warehouse.duckdb \\
        /tmp/copy.duckdb --out reader_cost_60d.json
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np

from launch_pipeline import shop_data
from launch_pipeline.bench import duckdb_memory_limit

# the seventh session's read of a list table (shop_data._FLAT_SEQUENCES_SQL at faa807f)
LISTS_SQL = """
WITH us AS (
    SELECT row_number() OVER (ORDER BY user_id) - 1 AS u, items, event_types, ts FROM {table}
), flat AS (
    SELECT u, unnest(items) AS item_id, unnest(event_types) AS et, unnest(ts) AS t,
           unnest(range(len(items))) AS pos
    FROM us
)
SELECT f.u, i.k,
       CASE f.et WHEN 'view' THEN 1 WHEN 'cart' THEN 2 WHEN 'purchase' THEN 3 END AS e,
       epoch_us(f.t) AS t
FROM flat f JOIN {index} i ON i.item_id = f.item_id
ORDER BY f.u, f.pos
"""
SHARES_SQL = (
    "SELECT user_id, hour_of_week, event_share FROM {table} WHERE scope = 'user' "
    "ORDER BY user_id, hour_of_week"
)


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return round(best, 3), out


def main(source: str, copy: str) -> dict:
    shutil.copy(source, copy)
    con = duckdb.connect(copy)
    con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
    con.execute("CREATE TABLE old_user_sequences AS SELECT * FROM user_sequences ORDER BY user_id")
    con.execute("CREATE TABLE old_activity_profile AS SELECT * FROM activity_profile")
    con.execute("CHECKPOINT")
    items = [r[0] for r in con.execute("SELECT item_id FROM item_features").fetchall()]
    steps_s, flat = timed(lambda: shop_data.read_sequences(con, "user_sequence_steps", items))

    def read_lists():
        import pyarrow as pa

        con.register("_idx", pa.table({"item_id": items, "k": np.arange(1, len(items) + 1)}))
        try:
            return con.execute(
                LISTS_SQL.format(table="old_user_sequences", index="_idx")
            ).fetchnumpy()
        finally:
            con.unregister("_idx")

    lists_s, res = timed(read_lists)
    same = bool(
        np.array_equal(np.asarray(res["k"]), flat.items)
        and np.array_equal(np.asarray(res["e"]), flat.events)
    )
    view_s, shares = timed(lambda: con.execute(SHARES_SQL.format(table="activity_profile")).df())
    table_s, old = timed(lambda: con.execute(SHARES_SQL.format(table="old_activity_profile")).df())
    out = {
        "warehouse": source,
        "steps": int(len(flat.items)),
        "users": int(flat.n_users),
        "read_sequences_from_steps_seconds": steps_s,
        "read_sequences_from_lists_seconds": lists_s,
        "same_arrays": same,
        "activity_user_shares_from_view_seconds": view_s,
        "activity_user_shares_from_table_seconds": table_s,
        "same_shares": bool(shares.equals(old)),
        "activity_user_rows": int(len(shares)),
    }
    con.close()
    Path(copy).unlink()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("warehouse")
    ap.add_argument("copy")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    res = main(args.warehouse, args.copy)
    print(json.dumps(res, indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
