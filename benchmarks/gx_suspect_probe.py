#!/usr/bin/env python
"""Where the GX quality stage's time goes on a large range: the whole stage, the SQL that picks
the rows handed to GX (``quality._suspect_frame``), and its duplicate-key grouping over the whole
range at once against day by day. Reads the warehouse a ``bench`` run leaves in its work dir:

    python -m launch_pipeline.bench bench --events 30000000 --no-model --no-backfill \\
        --work-dir /tmp/scale5/w30m --out bench_30m.json
    python benchmarks/gx_suspect_probe.py /tmp/scale5/w30m/warehouse.duckdb
"""

import datetime as dt
import sys
import time

import duckdb

from launch_pipeline import quality
from launch_pipeline.cleaning import CleaningRules


def timed(label: str, fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    print(f"{label}: {time.perf_counter() - w0:.2f} s wall, {time.process_time() - c0:.2f} CPU-s")
    return out


con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET memory_limit = '2GB'")  # the bench's limit
lo, hi, n = con.execute(
    "SELECT min(partition_date), max(partition_date), count(*) FROM clean_events"
).fetchall()[0]
now = dt.datetime.combine(hi + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
print(f"clean_events {lo} .. {hi}: {n:,} rows")
timed("validate_quality (whole stage)", lambda: quality.validate_quality(con, lo, hi, now=now))
checks = quality._quality_checks(CleaningRules(), now)
timed(
    "suspect frame (the SQL before GX)",
    lambda: quality._suspect_frame(
        con, quality.QUALITY_SOURCE, [lo, hi], checks, "event_id",
        "partition_date, source_file, source_row", quality.SAMPLE_ROWS,
        quality.MAX_SUSPECT_ROWS,
    ),
)  # fmt: skip
dup = "SELECT count(*) FROM (SELECT hash(event_id) FROM clean_events {} GROUP BY 1 HAVING count(*) > 1)"
timed("duplicate keys, whole range at once", lambda: con.execute(dup.format("")).fetchall())
days = [r[0] for r in con.execute("SELECT DISTINCT partition_date FROM clean_events").fetchall()]
timed(
    "duplicate keys, day by day",
    lambda: [con.execute(dup.format("WHERE partition_date = ?"), [d]).fetchall() for d in days],
)
