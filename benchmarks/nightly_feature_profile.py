#!/usr/bin/env python
"""One night's feature updates, statement by statement, as the assets run them, on a copy of a
warehouse that ``bench nightly-data`` leaves (``<work-dir>/history_<N>d/data``), with the code
on ``PYTHONPATH``. Per table: the last clean day is first taken out (an untimed update without
it: a removal, or a full rebuild over the other days when a state table of this code is
missing), then merged again, timed: connect, update (its statements, COMMIT included), the
asset's metadata queries, close (the checkpoint). Then the tables' fingerprints, which must be
equal between two versions of ``features_incremental`` on the same warehouse:

    python -m launch_pipeline.bench nightly-data --work-dir /tmp/nd --events-per-day 1000000 \\
        --users 200000 --history-days 15 60 --no-full-compare --out nightly.json
    git worktree add /tmp/old 38d6b48
    for code in /tmp/old .; do for h in 15 60; do
        PYTHONPATH=$code python benchmarks/nightly_feature_profile.py /tmp/nd/history_${h}d/data \\
            /tmp/copy.duckdb --out profile_$(basename $code)_$h.json
    done; done
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import duckdb

from launch_pipeline import cleaning
from launch_pipeline import features_incremental as fi
from launch_pipeline.bench import duckdb_memory_limit, table_fingerprint
from launch_pipeline.defs.metadata import table_metadata

TABLES = ("activity_profile", "item_features", "user_sequences", "user_features")
# the queries each asset runs for its metadata besides table_metadata (defs/features.py)
ASSET_QUERIES = {
    "user_sequences": "SELECT min(n_steps), median(n_steps), max(n_steps), sum(n_steps) "
    "FROM user_sequences",
    "activity_profile": "SELECT hour_of_week, events FROM activity_profile "
    "WHERE scope = 'overall' ORDER BY hour_of_week",
    "user_features": "SELECT count(*), count(*) FILTER (WHERE purchases > 0), "
    "median(recency_days), avg(events) FROM user_features",
    "item_features": "SELECT * FROM price_bands ORDER BY band_no",
}
VIEWS = hasattr(fi, "sequence_lengths")  # user_sequences / activity_profile are views (eba48c1)


def asset_metadata(con, name: str, rows: int) -> None:
    """The metadata queries of the asset (defs/features.py) of the code on PYTHONPATH."""
    if VIEWS and name == "user_sequences":
        table_metadata(con, name, rows=rows, preview_where=fi.sequence_preview_where(con))
        fi.sequence_lengths(con)
    elif VIEWS and name == "activity_profile":
        table_metadata(con, name, rows=rows, preview_where="scope = 'overall'")
        con.execute(ASSET_QUERIES[name]).fetchall()
    else:
        table_metadata(con, name)
        con.execute(ASSET_QUERIES[name]).fetchall()


FINGERPRINTED = (*TABLES, "feat_user_category_affinity", "feat_user_band_affinity")


class TimedConnection:
    """A DuckDB connection that records every statement's wall time (COMMIT included)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list) -> None:
        self._con, self._log = con, log

    def execute(self, sql: str, *args):
        t0 = time.perf_counter()
        result = self._con.execute(sql, *args)
        self._log.append((time.perf_counter() - t0, " ".join(sql.split())[:140]))
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def connect(path: str) -> duckdb.DuckDBPyConnection:
    """A connection configured as the warehouse resource of the code under test configures it
    (the checkpoint threshold where that code sets one)."""
    con = duckdb.connect(path)
    con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
    try:
        from launch_pipeline.defs.resources import WAREHOUSE_CHECKPOINT_THRESHOLD
    except ImportError:  # code before the threshold: DuckDB's default
        return con
    con.execute(f"SET checkpoint_threshold = '{WAREHOUSE_CHECKPOINT_THRESHOLD}'")
    return con


def main(data_dir: Path, copy: str, out: Path | None) -> dict:
    shutil.copy(data_dir / "warehouse.duckdb", copy)
    lake = data_dir / "lake"
    con = connect(copy)
    cleaning.create_event_views(con, lake, raw=False)
    con.close()
    tables = {}
    for name in TABLES:
        update = getattr(fi, f"update_{name}")
        con = connect(copy)
        versions = fi.clean_day_versions(con, lake)
        last = max(versions)
        t0 = time.perf_counter()
        before = update(con, {d: v for d, v in versions.items() if d != last})
        con.close()
        print(f"{name}: without {last}: {before.mode}, {time.perf_counter() - t0:.1f} s")
        log: list = []
        times = {}
        t0 = time.perf_counter()
        con = connect(copy)
        times["connect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = update(TimedConnection(con, log), fi.clean_day_versions(con, lake))
        times["update"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        asset_metadata(con, name, result.rows)
        times["metadata"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        con.close()
        times["close"] = time.perf_counter() - t0
        times["total"] = sum(times.values())
        top = sorted(log, reverse=True)[:8]
        tables[name] = {
            "mode": result.mode,
            **{f"{k}_seconds": round(v, 3) for k, v in times.items()},
            "statements": len(log),
            "slowest_statements": [[round(w, 3), sql] for w, sql in top],
        }
        print(f"  {result.mode}: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
        for w, sql in top[:5]:
            print(f"    {w:6.2f}  {sql}")
    con = duckdb.connect(copy, read_only=True)
    res = {
        "warehouse": str(data_dir),
        "days": len(fi.clean_day_versions(con, lake)),
        "tables": tables,
        "four_tables_seconds": round(sum(t["total_seconds"] for t in tables.values()), 2),
        "fingerprints": {t: [str(x) for x in table_fingerprint(con, t)] for t in FINGERPRINTED},
    }
    con.close()
    print(f"four tables: {res['four_tables_seconds']} s")
    if out:
        out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path, help="history_<N>d/data of a nightly-data work dir")
    ap.add_argument("copy", help="where to copy the warehouse (deleted afterwards)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    try:
        main(args.data_dir, args.copy, args.out)
    finally:
        for p in (Path(args.copy), Path(args.copy + ".wal")):
            p.unlink(missing_ok=True)
