"""Scale benchmark: every stage of the pipeline measured against the bare DuckDB engine.

``launch-pipeline bench --events N [--out FILE.json]`` (:func:`run_bench`):

1. **generate**: the shop simulator writes about N events as Parquet day files (30 days,
   ``N / 50`` users, ``candidate_truth=False``: the users x candidates ground truth is not needed
   here). The simulator writes one day at a time, so its memory is bounded by one day.
2. **bare DuckDB reference**: a fresh file-backed DuckDB reads the same Parquet files and runs one
   ``GROUP BY`` per feature table (items, users, sequences, hour-of-week activity), timestamps
   parsed the way any real feature needs them. Nothing else: no text landing, no cleaning, no
   checks. It is the floor any pipeline on this engine can reach.
3. **raw -> features** through the project's own functions, on a file-backed warehouse in the
   work dir, in the order and with the calls of the Dagster assets (which are thin wrappers):
   ``catalog.load_product_catalog`` / ``load_launch_candidates``, ``raw_io.load_event_day`` per day,
   ``cleaning.clean_partitions`` over the whole range, ``quality.validate_quality`` and
   ``quality.validate_noise`` (the GX checks), ``features_incremental.update_*`` (what the
   feature assets run: on the fresh warehouse every day's partials are computed and merged, the
   cost of a first load or a backfill of the range). Each stage is reported with its seconds,
   its peak RSS and its ratio to the bare reference; ``gx_share_of_clean_stage`` is the GX time
   over (cleaning + GX). For comparison (not in the ratio) the same tables are then built by
   the SQL over the whole history (``features.build_*``, stages ``full_sql.*``,
   ``features_full_sql_seconds``), which is what this benchmark measured before 2026-11-30.
4. **model training throughput**: ``model.training.train_model`` (the pipeline's model config,
   fixed epochs, no validation) on the sequences of a fixed sample of users (default 5,000,
   chosen by a hash of the user id) read from the bench warehouse with
   ``shop_data.load_shop_data``; sequences/s of the epochs after the first (the first one
   includes tracing).
5. **scoring end to end**: 1M users x 1k candidates (fewer users for a small N, see
   :func:`_workload_sizes`) through the pipeline's own path, measured at full size: the
   Transformer encodes every user (through ``user_vector_cache.encode_users``, cold), r_ij by
   ``purchase_scoring.purchase_probabilities`` (streamed float32 batches, calibrated) and
   ``scoring.store_preferences`` (per-candidate sums, each candidate's best users, each user's
   top 10) into a fresh DuckDB file (``scoring_1m_x_1k_end_to_end_seconds``); then the next
   night with one new event for 5% of the users, the cache reused
   (``scoring_1m_x_1k_incremental_5pct_seconds``). Users are the sample shop's real users,
   copied up to 1M with the last item of each copy replaced (:func:`bench_users`); candidate
   vectors come from the model's attribute encoder for 1k synthetic attribute rows.
6. **plan**: ``planning.select_launches`` on 10k random candidates, 1k slots, 20 categories with a
   cap of 60 each.

Memory: a sampling thread reads the process RSS (``/proc/self/statm``) every 10 ms; each stage
reports its own peak, and ``peak_rss_mb`` is the whole process's peak (``getrusage`` maxrss of the
process and of any children). Everything runs in one process, one stage after another.

``python -m launch_pipeline.bench nightly --events-per-day 1000000`` (:func:`run_nightly`)
measures the nightly run: a warehouse already holding the earlier days (loaded with the same
functions), then one new day through the real Dagster job (``runner.run_pipeline`` with
``first_day = last_day = D``: that partition plus everything downstream).

``python -m launch_pipeline.bench nightly-data --history-days 15 60`` (:func:`run_nightly_data`)
measures only the data stages of one new day (catalog, raw, clean, GX checks, the incremental
feature assets) at two history lengths: ``nightly_data_stage_ratio_60_vs_15``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from launch_pipeline.features_incremental import INCREMENTAL_TABLES
from launch_pipeline.runner import step_seconds

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCH_DAYS = 30
EVENTS_PER_USER = 50  # over the 30 days
END_DATE = dt.date(2026, 11, 1)  # fixed so that a bench run is reproducible
TRAIN_SAMPLE_USERS = 5000
TRAIN_EPOCHS = 3
SCORE_USERS = 1_000_000
SCORE_CANDIDATES = 1000
MILP_CANDIDATES = 10_000
MILP_SLOTS = 1000
MILP_CATEGORIES = 20
MILP_CATEGORY_CAP = 60


# --------------------------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads, DuckDB's included) and of its
    waited-for children. Unlike wall time it does not grow when other jobs share the cores."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def process_peak_rss_mb() -> float:
    """Peak RSS of this process and of its waited-for children, in MB (getrusage maxrss)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return max(own, kids) * scale / 2**20


class StageMeter:
    """Wall time and peak RSS per stage (a sampling thread polls the RSS every ``interval`` s)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.stages: dict[str, dict] = {}
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = _rss_bytes()
            with self._lock:
                self._peak = max(self._peak, rss)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)

    @contextlib.contextmanager
    def stage(self, name: str, **extra):
        with self._lock:
            self._peak = _rss_bytes()
        t0 = time.perf_counter()
        c0 = _cpu_seconds()
        rec = {"seconds": None, "cpu_seconds": None, "peak_rss_mb": None, **extra}
        try:
            yield rec
        finally:
            rec["seconds"] = round(time.perf_counter() - t0, 3)
            rec["cpu_seconds"] = round(_cpu_seconds() - c0, 3)
            with self._lock:
                self._peak = max(self._peak, _rss_bytes())
                rec["peak_rss_mb"] = round(self._peak / 2**20, 1)
            self.stages[name] = rec


def duckdb_memory_limit() -> str:
    """The DuckDB ``memory_limit`` the pipeline's warehouse resource uses
    (``LAUNCH_PIPELINE_DUCKDB_MEMORY_LIMIT``, see ``settings.py``)."""
    from launch_pipeline.settings import duckdb_memory_limit_from_env

    return duckdb_memory_limit_from_env()


def warehouse_connection(db_path: Path | str):
    """A file-backed DuckDB connection configured like the pipeline's ``warehouse`` resource
    (``defs/resources.py``: the same ``memory_limit``), so the bench measures what the
    pipeline does."""
    import duckdb

    return duckdb.connect(str(db_path), config={"memory_limit": duckdb_memory_limit()})


def machine_info() -> dict:
    mem = None
    with contextlib.suppress(OSError, ValueError):
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import duckdb

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(mem, 1) if mem else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "duckdb_memory_limit": duckdb_memory_limit(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --------------------------------------------------------------------------------------------
# 1. data
# --------------------------------------------------------------------------------------------
def bench_config(events: int, seed: int = 7, days: int = BENCH_DAYS):
    from launch_pipeline.simulator import SimulatorConfig

    return SimulatorConfig(
        seed=seed,
        users=max(200, events // EVENTS_PER_USER),
        days=days,
        events_per_day=max(1, events // days),
        end_date=END_DATE,
        file_format="parquet",
        candidate_truth=False,
    )


# --------------------------------------------------------------------------------------------
# 2. the bare DuckDB reference
# --------------------------------------------------------------------------------------------
BARE_EVENTS_VIEW = """
CREATE OR REPLACE TEMP VIEW bare_events AS
SELECT user_id, item_id, event_type, quantity, price, rating,
       CASE WHEN regexp_full_match(ts, '[0-9]+') THEN to_timestamp(TRY_CAST(ts AS BIGINT))
            ELSE TRY_CAST(ts AS TIMESTAMPTZ) END AS t
FROM read_parquet({files})
"""
BARE_QUERIES = {
    "item_features": """
        CREATE OR REPLACE TABLE bare_item AS
        SELECT item_id, count(*) FILTER (WHERE event_type = 'view') AS views,
               count(*) FILTER (WHERE event_type = 'cart') AS carts,
               count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
               sum(quantity * price) FILTER (WHERE event_type = 'purchase') AS revenue,
               count(DISTINCT user_id) AS users, avg(rating) AS rating_mean
        FROM bare_events GROUP BY item_id""",
    "user_features": """
        CREATE OR REPLACE TABLE bare_user AS
        SELECT user_id, min(t) AS first_seen, max(t) AS last_seen, count(*) AS events,
               count(*) FILTER (WHERE event_type = 'purchase') AS purchases,
               sum(quantity * price) FILTER (WHERE event_type = 'purchase') AS monetary
        FROM bare_events GROUP BY user_id""",
    "user_sequences": """
        CREATE OR REPLACE TABLE bare_sequences AS
        SELECT user_id, list(item_id ORDER BY t) AS items, list(event_type ORDER BY t) AS types
        FROM bare_events WHERE event_type IN ('view', 'cart', 'purchase') GROUP BY user_id""",
    "activity_profile": """
        CREATE OR REPLACE TABLE bare_activity AS
        SELECT user_id, (isodow(t) - 1) * 24 + hour(t) AS hour_of_week, count(*) AS events,
               count(*) FILTER (WHERE event_type = 'purchase') AS purchases
        FROM bare_events GROUP BY ALL""",
}


def bare_duckdb_reference(raw_dir: Path, db_path: Path) -> dict:
    """Seconds per bare GROUP BY over the Parquet day files (file-backed DuckDB, fresh file)."""

    files = sorted(str(p) for p in (Path(raw_dir) / "events").glob("*.parquet"))
    db_path.unlink(missing_ok=True)
    con = warehouse_connection(db_path)
    out = {}
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(BARE_EVENTS_VIEW.format(files="[" + ", ".join(f"'{f}'" for f in files) + "]"))
        for name, sql in BARE_QUERIES.items():
            t0 = time.perf_counter()
            con.execute(sql)
            out[name] = round(time.perf_counter() - t0, 3)
    finally:
        con.close()
    return out


# --------------------------------------------------------------------------------------------
# 3. raw -> features through the pipeline's functions
# --------------------------------------------------------------------------------------------
def pipeline_raw_to_features(
    meter: StageMeter, raw_dir: Path, db_path: Path, rules=None, now: dt.datetime | None = None
) -> dict:
    """Land, clean, validate and build features like the Dagster assets do; returns accounting
    and check results. Stages go into ``meter`` as raw, clean, gx_quality, gx_noise and one
    ``features.<table>`` per feature table."""

    from launch_pipeline import catalog, cleaning, features, features_incremental, quality
    from launch_pipeline.raw_io import event_day_files, load_event_day
    from launch_pipeline.settings import CleaningRules, partition_workers_from_env

    rules = rules or CleaningRules()
    now = now or dt.datetime.now(dt.timezone.utc)
    db_path.unlink(missing_ok=True)
    lake_dir = db_path.parent / "lake"
    shutil.rmtree(lake_dir, ignore_errors=True)
    workers = partition_workers_from_env()
    files = event_day_files(raw_dir)
    start, end = min(files), max(files)
    con = warehouse_connection(db_path)
    out: dict = {}
    try:
        with meter.stage("raw") as rec:
            catalog.load_product_catalog(con, raw_dir)
            catalog.load_launch_candidates(con, raw_dir)
            rec["rows"] = sum(
                load_event_day(con, raw_dir, d, p, lake_dir=lake_dir)
                for d, p in sorted(files.items())
            )
        with meter.stage("clean") as rec:
            stats = cleaning.clean_partitions(
                con, start, end, rules, now=now, lake_dir=lake_dir, workers=workers
            )
            rec["partition_workers"] = workers
            rec["rows_clean"] = stats.clean
            rec["rows_quarantined"] = stats.quarantined
        with meter.stage("gx_import"):  # a one-off cost per process, reported apart
            import great_expectations  # noqa: F401
        with meter.stage("gx_quality"):
            q = quality.validate_quality(con, start, end, rules, now=now)
        with meter.stage("gx_noise"):
            n = quality.validate_noise(con, start, end, rules)
        # the feature assets' own path (``features_incremental``): on this fresh warehouse every
        # day's partials are computed and merged, what a first load or a backfill of the range
        # costs (a nightly run merges one day: ``run_nightly_data``)
        versions = features_incremental.clean_day_versions(con, lake_dir)
        for name in features_incremental.INCREMENTAL_TABLES:
            update = getattr(features_incremental, f"update_{name}")
            with meter.stage(f"features.{name}") as rec:
                rec["mode"] = update(con, versions).mode
        incremental = {
            t: table_fingerprint(con, t) for t in features_incremental.INCREMENTAL_TABLES
        }
        # for comparison, not in the ratio: the same tables by the SQL over the whole history
        for name, build in (
            ("item_features", features.build_item_features),
            ("user_features", features.build_user_features),
            ("user_sequences", features.build_user_sequences),
            ("activity_profile", features.build_activity_profile),
        ):
            with meter.stage(f"full_sql.{name}"):
                build(con)
        out["full_sql_tables_equal"] = incremental == {
            t: table_fingerprint(con, t) for t in features_incremental.INCREMENTAL_TABLES
        }
        out["accounting_holds"] = stats.accounting_holds
        out["rows"] = {"raw": stats.raw, "clean": stats.clean}
        out["reasons"] = stats.reasons
        out["checks"] = {r.rule: r.passed for r in q + n}
        out["checks_failing_rows"] = {r.rule: r.unexpected_count for r in q + n}
        out["checks_rows_validated_by_gx"] = {
            r.rule: getattr(r, "gx_rows", r.element_count) for r in q + n
        }
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return out


# --------------------------------------------------------------------------------------------
# 3b. a backfill: partition writers one at a time vs side by side
# --------------------------------------------------------------------------------------------
BACKFILL_WRITERS = 2


def backfill_partition(task: tuple) -> dict:
    """What the partition steps of one day do (raw landing, cleaning, both GX suites), on an
    in-memory DuckDB connection of this process, writing that day's own files in ``lake_dir``."""
    import duckdb

    from launch_pipeline import cleaning, lake, quality, raw_io

    raw_dir, lake_dir, day, path, rules, now, threads = task
    t0 = time.perf_counter()
    con = duckdb.connect(config={"memory_limit": duckdb_memory_limit(), "threads": threads})
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name in ("product_catalog", "launch_candidates"):
            src = str(lake.table_file(lake_dir, name)).replace("'", "''")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{src}')")
        rows = raw_io.load_event_day(con, raw_dir, day, path, lake_dir=lake_dir)
        stats = cleaning.clean_partitions(con, day, day, rules, now=now, lake_dir=lake_dir)
        results = quality.validate_quality(con, day, day, rules, now=now)
        results += quality.validate_noise(con, day, day, rules)
    except Exception as exc:  # noqa: BLE001 - counted and reported by the caller
        return {"day": day.isoformat(), "error": f"{type(exc).__name__}: {exc}"}
    finally:
        con.close()
    return {
        "day": day.isoformat(),
        "rows": rows,
        "clean": stats.clean,
        "checks_passed": all(r.passed for r in results),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _lake_checksums(lake_dir: Path) -> dict:
    import duckdb

    from launch_pipeline.cleaning import create_event_views

    con = duckdb.connect()
    try:
        create_event_views(con, lake_dir)
        return {
            # order-independent and without a sort of every row (10M rows in seconds): the
            # count and the sum of a 64-bit hash of each row's text
            t: [
                int(v)
                for v in con.execute(
                    f"SELECT count(*), coalesce(sum(hash(CAST(x AS VARCHAR))::HUGEINT), 0) "
                    f"FROM {t} AS x"
                ).fetchall()[0]
            ]
            for t in ("raw_events", "clean_events", "quarantined_events")
        }
    finally:
        con.close()


def backfill_bench(
    raw_dir: Path,
    work_dir: Path,
    writers: int = BACKFILL_WRITERS,
    rules=None,
    now=None,
    partitions: int | None = None,
) -> dict:
    """Every day file of ``raw_dir`` backfilled twice into fresh partition folders: one partition
    at a time (what the single ``duckdb_warehouse`` pool slot allowed before), then ``writers``
    partitions at once, each partition in its own process (as the multiprocess executor or
    parallel runs do). Wall seconds of both, DuckDB lock errors, and whether the raw, clean and
    quarantined events are equal (checksums)."""
    import multiprocessing

    import duckdb

    from launch_pipeline import catalog, lake
    from launch_pipeline.raw_io import event_day_files
    from launch_pipeline.settings import CleaningRules

    rules = rules or CleaningRules()
    now = now or dt.datetime.now(dt.timezone.utc)
    files = dict(sorted(event_day_files(raw_dir).items())[:partitions])
    out: dict = {"partitions": len(files), "writers": writers}
    sums = {}
    for mode, n in (("serial", 1), ("parallel", writers)):
        lake_dir = Path(work_dir) / f"backfill_{mode}" / "lake"
        shutil.rmtree(lake_dir.parent, ignore_errors=True)
        con = duckdb.connect()
        try:
            for load, name in (
                (catalog.load_product_catalog, "product_catalog"),
                (catalog.load_launch_candidates, "launch_candidates"),
            ):
                load(con, raw_dir)
                lake.write_table(con, f"SELECT * FROM {name}", lake_dir, name)
        finally:
            con.close()
        # writers x DuckDB threads = the cores: side by side, each writer gets its share
        threads = max(1, (os.cpu_count() or 1) // n)
        tasks = [(raw_dir, lake_dir, d, p, rules, now, threads) for d, p in sorted(files.items())]
        t0 = time.perf_counter()
        # forkserver, not fork: a fork of a process that already runs TensorFlow's or DuckDB's
        # threads (the test process, a bench after training) can crash in the child; the
        # server is a fresh process that imports GX once and forks the workers from there
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["great_expectations", "launch_pipeline.bench"])
        with concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            done = list(pool.map(backfill_partition, tasks))
        wall = time.perf_counter() - t0
        errors = [d["error"] for d in done if "error" in d]
        out[mode] = {
            "writers": n,
            "duckdb_threads_per_writer": threads,
            "wall_seconds": round(wall, 3),
            "partition_seconds_sum": round(sum(d.get("seconds", 0) for d in done), 3),
            "failed_partitions": len(errors),
            "errors": errors[:5],
            "lock_errors": sum("Could not set lock" in e for e in errors),
            "checks_passed": all(d.get("checks_passed", False) for d in done),
        }
        sums[mode] = _lake_checksums(lake_dir)
        shutil.rmtree(lake_dir.parent, ignore_errors=True)
    out["lock_errors"] = out["serial"]["lock_errors"] + out["parallel"]["lock_errors"]
    out["checksums_equal"] = sums["serial"] == sums["parallel"]
    out["checksums"] = sums["parallel"]
    out["parallel_vs_serial_wall"] = round(
        out["parallel"]["wall_seconds"] / out["serial"]["wall_seconds"], 3
    )
    return out


# --------------------------------------------------------------------------------------------
# 4. training throughput
# --------------------------------------------------------------------------------------------
def load_sample_shop(db_path: Path, users: int):
    """``shop_data.load_shop_data`` over ``users`` users of the warehouse (hash-chosen, so the
    sample is the same for the same data), through an in-memory DuckDB with views onto the
    warehouse opened read-only."""
    import duckdb

    from launch_pipeline.shop_data import load_shop_data

    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{db_path}' AS wh (READ_ONLY)")
        con.execute("CREATE VIEW item_features AS SELECT * FROM wh.item_features")
        con.execute("CREATE VIEW clean_events AS SELECT ts FROM wh.clean_events")
        con.execute(
            "CREATE VIEW user_sequence_steps AS SELECT * FROM wh.user_sequence_steps "
            "WHERE user_id IN (SELECT DISTINCT user_id FROM wh.user_sequence_steps "
            f"ORDER BY hash(user_id), user_id LIMIT {int(users)})"
        )
        return load_shop_data(con)
    finally:
        con.close()


def training_throughput(shop, epochs: int = TRAIN_EPOCHS, time_budget_s: float = 300.0) -> dict:
    from launch_pipeline.model.config import ModelConfig
    from launch_pipeline.model.data import holdout_last
    from launch_pipeline.model.training import train_model

    cfg = ModelConfig(  # the pipeline's config (training.pipeline_model_config), fixed epochs
        n_event_types=3,
        seed=42,
        max_epochs=epochs,
        time_budget_s=time_budget_s,
        knn_blend=False,
    )
    train, _ = holdout_last(shop.data)
    keep = [k for k, s in enumerate(train.sequences) if len(s) >= 2]
    train = train.with_sequences(
        [train.sequences[k] for k in keep], [train.event_types[k] for k in keep]
    )
    result = train_model(shop.data, cfg, train_inputs=train)
    secs = [h["seconds"] for h in result.history]
    steady = secs[1:] or secs
    per_epoch = float(np.mean(steady))
    steps = int(sum(len(s) - 1 for s in train.sequences))
    return {
        "sequences": len(train.sequences),
        "target_steps_per_epoch": steps,
        "epochs": result.epochs,
        "epoch_seconds": [round(s, 3) for s in secs],
        "sequences_per_second": round(len(train.sequences) / per_epoch, 1),
        "target_steps_per_second": round(steps / per_epoch, 1),
        "train_seconds": round(result.train_seconds, 3),
        "model": result.model,
    }


# --------------------------------------------------------------------------------------------
# 5. scoring throughput
# --------------------------------------------------------------------------------------------
def _synthetic_candidates(shop, n: int, rng: np.random.Generator):
    """``n`` candidate attribute rows drawn from the attribute combinations of the catalogue
    (category, brand and price band drawn independently, as a new product could combine them)."""
    import pandas as pd

    attrs = shop.data.item_attributes[1:]
    rows = np.stack(
        [attrs[rng.integers(0, len(attrs), n), j] for j in range(attrs.shape[1])], axis=1
    )
    cats = shop.item_category[1:][rng.integers(0, len(attrs), n)]
    cands = pd.DataFrame(
        {
            "item_id": [f"bench{k:05d}" for k in range(n)],
            "title": "",
            "category": cats,
            "brand": "",
            "price": rng.lognormal(3.5, 1.0, n).round(2),
            "price_band": "",
        }
    )
    return cands, rows


# a calibration of the size the pipeline fits (coefficients of the default shop's run): the
# bench applies one so that the per-batch cost of calibrating is in the measured path
BENCH_CALIBRATION = (-2.0, (0.6, 0.3, -0.2, 0.5, 0.4, 0.3))


def bench_users(shop, n_users: int, rng: np.random.Generator):
    """``n_users`` users made from the sample shop's real users: copy ``c`` of user ``u`` has
    ``u``'s steps with the last item replaced by a random catalogue item (copy 0 unchanged), so
    every copy gets its own Transformer vector and scores. Returns (``FlatSequences``, rates)."""
    from launch_pipeline.purchase_scoring import interaction_rates
    from launch_pipeline.shop_data import FlatSequences

    f = shop.flat_sequences()
    keep = np.flatnonzero(f.lengths > 0)
    reps = -(-n_users // len(keep))
    src = np.tile(keep, reps)[:n_users]
    lengths = f.lengths[src]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    step = np.repeat(f.offsets[:-1][src] - offsets[:-1], lengths) + np.arange(offsets[-1])
    items = f.items[step]
    copy = np.arange(n_users) // len(keep)
    last = offsets[1:] - 1
    changed = copy > 0
    items[last[changed]] = rng.integers(1, shop.n_items + 1, int(changed.sum()))
    ids = np.array([f"bench{k:07d}" for k in range(n_users)], dtype=object)
    flat = FlatSequences(ids, offsets, items, f.events[step], f.ts[step])
    return flat, interaction_rates(shop, 30)[src]


def with_new_events(flat, share: float, rng: np.random.Generator):
    """The same users with one new step (a view of a random item, one hour after their last
    step) for a random ``share`` of them: what a night adds. Returns (flat, changed users)."""
    from launch_pipeline.shop_data import FlatSequences

    n = flat.n_users
    changed = np.sort(rng.choice(n, int(round(share * n)), replace=False))
    add = np.zeros(n, dtype=np.int64)
    add[changed] = 1
    lengths = flat.lengths + add
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    old_pos = np.repeat(offsets[:-1], flat.lengths) + (
        np.arange(flat.offsets[-1]) - np.repeat(flat.offsets[:-1], flat.lengths)
    )
    items = np.zeros(offsets[-1], dtype=flat.items.dtype)
    events = np.zeros(offsets[-1], dtype=flat.events.dtype)
    ts = np.zeros(offsets[-1], dtype=flat.ts.dtype)
    items[old_pos], events[old_pos], ts[old_pos] = flat.items, flat.events, flat.ts
    new_pos = offsets[1:][changed] - 1
    items[new_pos] = rng.integers(1, int(flat.items.max()) + 1, len(changed))
    events[new_pos] = 1
    ts[new_pos] = flat.ts[flat.offsets[1:][changed] - 1] + np.timedelta64(1, "h")
    return FlatSequences(flat.user_ids, offsets, items, events, ts), changed


def scoring_throughput(
    model,
    shop,
    n_users: int,
    n_candidates: int,
    seed: int,
    work_dir: Path,
    incremental_share: float = 0.05,
) -> dict:
    """The pipeline's scoring path end to end on ``n_users`` x ``n_candidates``, measured at
    full size: user vectors by the pipeline's Transformer through the vector cache
    (``user_vector_cache.encode_users``), r_ij by ``purchase_scoring.purchase_probabilities``
    (streamed float32 batches, calibrated), stored by ``scoring.store_preferences`` (per-candidate
    sums, each candidate's best ``DEFAULT_AUDIENCE_KEPT`` users, each user's top 10) into a
    fresh DuckDB file configured like the warehouse, checkpointed. Then the next night: the same
    users with one new event for ``incremental_share`` of them, through the same path with the
    cache of the first run. Users: :func:`bench_users`; candidates: the model's attribute
    encoder on synthetic attribute rows. Also the scorer alone on the same vectors (no encoding,
    no storing), for comparison with earlier runs."""
    from launch_pipeline.calibration import PurchaseCalibration
    from launch_pipeline.purchase_scoring import purchase_probabilities
    from launch_pipeline.scoring import store_preferences
    from launch_pipeline.settings import DEFAULT_AUDIENCE_KEPT
    from launch_pipeline.user_vector_cache import encode_users

    rng = np.random.default_rng(seed)
    cands, cand_attrs = _synthetic_candidates(shop, n_candidates, rng)
    shop_c = dataclasses.replace(shop, candidates=cands, candidate_attributes=cand_attrs)
    item_ids = cands["item_id"].to_numpy()
    t0 = time.perf_counter()
    flat, rates = bench_users(shop, n_users, rng)
    build_secs = time.perf_counter() - t0
    calibration = PurchaseCalibration(BENCH_CALIBRATION[0], BENCH_CALIBRATION[1], 0, 0)
    user_x = np.column_stack(
        [np.log(np.maximum(rates, 1e-6)), rng.uniform(0, 4, n_users), rng.uniform(0, 3, n_users)]
    ).astype(np.float32)
    units = np.ones(n_users)
    rows = np.arange(n_users)
    cache_dir = work_dir / "user_vectors"
    shutil.rmtree(cache_dir, ignore_errors=True)
    db_path = work_dir / "scoring.duckdb"

    def one_night(flat_now) -> dict:
        for p in (db_path, Path(f"{db_path}.wal")):
            p.unlink(missing_ok=True)
        con = warehouse_connection(db_path)
        try:
            t0 = time.perf_counter()
            enc = encode_users(model, "bench:v0001", flat_now.user_ids, flat_now, rows, cache_dir)
            t1 = time.perf_counter()
            batches = purchase_probabilities(
                model,
                shop_c,
                rows,
                30,
                calibration=calibration,
                user_x=user_x,
                user_vecs=enc.vectors,
                rates=rates,
            )
            stored = store_preferences(
                con, batches, flat_now.user_ids, item_ids, units, "bench:v0001", 30,
                DEFAULT_AUDIENCE_KEPT,
            )  # fmt: skip
            t2 = time.perf_counter()
            con.execute("CHECKPOINT")
            t3 = time.perf_counter()
            counts = {
                t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
                for t in ("candidate_preferences", "candidate_audiences", "user_top_candidates")
            }
        finally:
            con.close()
        return {
            "seconds": round(t3 - t0, 2),
            "encode_seconds": round(t1 - t0, 2),
            "users_encoded": enc.encoded,
            "user_vectors_reused": enc.reused,
            "score_and_store_seconds": round(t2 - t1, 2),
            "score_and_store_split_seconds": stored.seconds,
            "checkpoint_seconds": round(t3 - t2, 2),
            "rows": counts,
            "audience_kept": stored.audience_kept,
            "mean_r": stored.mean_r,
            "table_mb": round(db_path.stat().st_size / 2**20, 1),
            "vectors": enc.vectors,
        }

    full = one_night(flat)
    vectors = full.pop("vectors")
    flat2, changed = with_new_events(flat, incremental_share, rng)
    incr = one_night(flat2)
    incr.pop("vectors")
    incr["users_with_new_events"] = int(len(changed))

    # the scorer alone on the same vectors (comparable with the earlier bench rows)
    t0 = time.perf_counter()
    sum_r = sum(
        float(b.r.sum(dtype=np.float64))
        for b in purchase_probabilities(model, shop_c, rows, 30, user_vecs=vectors, rates=rates)
    )
    score_secs = time.perf_counter() - t0
    for p in (db_path, Path(f"{db_path}.wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return {
        "users": n_users,
        "candidates": n_candidates,
        "build_users_seconds": round(build_secs, 2),
        "end_to_end_seconds": full["seconds"],
        "end_to_end": full,
        "user_vectors_per_second": round(n_users / max(full["encode_seconds"], 1e-9), 1),
        "incremental_share": incremental_share,
        "incremental_end_to_end_seconds": incr["seconds"],
        "incremental": incr,
        "score_seconds": round(score_secs, 3),
        "scores_per_second": round(n_users * n_candidates / score_secs),
        "mean_r_score_only": sum_r / (n_users * n_candidates),
    }


# --------------------------------------------------------------------------------------------
# 6. plan
# --------------------------------------------------------------------------------------------
def milp_bench(n: int, slots: int, n_categories: int, cap: int, seed: int) -> dict:
    import pandas as pd

    from launch_pipeline.planning import select_launches

    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "item_id": [f"c{k:06d}" for k in range(n)],
            "category": [f"cat{k}" for k in rng.integers(0, n_categories, n)],
            "expected_revenue": rng.lognormal(6.0, 1.5, n) * (rng.random(n) > 0.02),
        }
    )
    t0 = time.perf_counter()
    res = select_launches(df, slots=slots, category_cap=cap)
    total = time.perf_counter() - t0
    return {
        "candidates": n,
        "slots": slots,
        "categories": n_categories,
        "category_cap": cap,
        "chosen": len(res.chosen),
        "solve_seconds": round(res.solve_seconds, 3),
        "select_launches_seconds": round(total, 3),
        "status": res.status,
    }


# --------------------------------------------------------------------------------------------
# the bench
# --------------------------------------------------------------------------------------------
def _workload_sizes(events: int) -> dict:
    """Fixed workloads of the issue; a smoke run (N < 1M events) shrinks the scoring users so
    that it stays quick. The sizes used are in the JSON."""
    return {
        "score_users": SCORE_USERS
        if events >= 1_000_000
        else max(10_000, min(events, SCORE_USERS)),
        "score_candidates": SCORE_CANDIDATES,
        "train_users": TRAIN_SAMPLE_USERS,
        "train_epochs": TRAIN_EPOCHS if events >= 1_000_000 else 2,
    }


def run_bench(
    events: int,
    work_dir: Path | str | None = None,
    seed: int = 7,
    *,
    keep: bool | None = None,
    model_stages: bool = True,
    backfill: bool = True,
    backfill_partitions: int | None = None,
) -> dict:
    """Run the whole benchmark for about ``events`` events; returns a JSON-able dict.

    ``work_dir`` (default: a temporary folder, removed afterwards) holds the raw files and the
    warehouses; a given ``work_dir`` is kept (``keep``) so the data can be inspected."""
    if events < 1000:
        raise ValueError("events must be >= 1000")
    tmp = None
    if work_dir is None:
        tmp = tempfile.mkdtemp(prefix="launch_bench_")
        work_dir = Path(tmp)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    keep = (tmp is None) if keep is None else keep
    raw_dir = work_dir / "raw"
    sizes = _workload_sizes(events)
    meter = StageMeter()
    result: dict = {"events_requested": int(events), "machine": machine_info(), "sizes": sizes}
    t_all = time.perf_counter()
    try:
        from launch_pipeline.simulator import generate_shop

        cfg = bench_config(events, seed)
        with meter.stage("generate") as rec:
            summary = generate_shop(raw_dir, cfg)
            rec["events"] = summary.events
        result.update(
            events=summary.events,
            users=cfg.users,
            days=cfg.days,
            events_per_day=cfg.events_per_day,
            raw_parquet_mb=round(
                sum(p.stat().st_size for p in (raw_dir / "events").iterdir()) / 2**20, 1
            ),
        )

        with meter.stage("bare_duckdb_before") as rec:
            rec["tables"] = bare_duckdb_reference(raw_dir, work_dir / "bare.duckdb")

        wh = work_dir / "warehouse.duckdb"
        result["pipeline"] = pipeline_raw_to_features(meter, raw_dir, wh)
        result["warehouse_mb"] = round(wh.stat().st_size / 2**20, 1)
        # the reference again, right after: the mean of both cancels the drift of the load that
        # other jobs put on a shared machine over the minutes the pipeline stages take
        with meter.stage("bare_duckdb_after") as rec:
            rec["tables"] = bare_duckdb_reference(raw_dir, work_dir / "bare.duckdb")
        st = meter.stages
        st["bare_duckdb"] = {
            k: round((st["bare_duckdb_before"][k] + st["bare_duckdb_after"][k]) / 2, 3)
            for k in ("seconds", "cpu_seconds", "peak_rss_mb")
        }
        bare = st["bare_duckdb"]["seconds"]
        bare_cpu = st["bare_duckdb"]["cpu_seconds"]
        feats = [k for k in st if k.startswith("features.")]
        gx = st["gx_quality"]["seconds"] + st["gx_noise"]["seconds"]
        clean_stage = st["clean"]["seconds"] + gx
        features_s = sum(st[k]["seconds"] for k in feats)
        full_sql_s = sum(v["seconds"] for k, v in st.items() if k.startswith("full_sql."))
        r2f = st["raw"]["seconds"] + clean_stage + features_s
        r2f_stages = ("raw", "clean", "gx_quality", "gx_noise", *feats)
        r2f_cpu = sum(st[k]["cpu_seconds"] for k in r2f_stages)
        gx_cpu = st["gx_quality"]["cpu_seconds"] + st["gx_noise"]["cpu_seconds"]
        result.update(
            bare_duckdb_seconds=bare,
            raw_seconds=st["raw"]["seconds"],
            clean_seconds=st["clean"]["seconds"],
            gx_seconds=round(gx, 3),
            clean_stage_seconds=round(clean_stage, 3),
            gx_share_of_clean_stage=round(gx / clean_stage, 4) if clean_stage else None,
            features_seconds=round(features_s, 3),
            features_full_sql_seconds=round(full_sql_s, 3),
            raw_to_features_seconds=round(r2f, 3),
            raw_to_features_vs_bare_duckdb=round(r2f / bare, 2) if bare else None,
            bare_duckdb_cpu_seconds=bare_cpu,
            raw_to_features_cpu_seconds=round(r2f_cpu, 3),
            raw_to_features_vs_bare_duckdb_cpu=round(r2f_cpu / bare_cpu, 2) if bare_cpu else None,
            gx_share_of_clean_stage_cpu=round(gx_cpu / (st["clean"]["cpu_seconds"] + gx_cpu), 4),
            raw_to_features_peak_rss_mb=max(
                st[k]["peak_rss_mb"] for k in ("raw", "clean", "gx_quality", "gx_noise", *feats)
            ),
        )

        if backfill:
            with meter.stage("backfill") as rec:
                rec.update(backfill_bench(raw_dir, work_dir, partitions=backfill_partitions))
            result["backfill"] = dict(meter.stages["backfill"])

        if model_stages:
            with meter.stage("train_model") as rec:
                shop = load_sample_shop(wh, sizes["train_users"])
                tr = training_throughput(shop, epochs=sizes["train_epochs"])
                model = tr.pop("model")
                rec.update(tr)
            result["training"] = dict(meter.stages["train_model"])
            with meter.stage("scoring") as rec:
                rec.update(
                    scoring_throughput(
                        model,
                        shop,
                        sizes["score_users"],
                        sizes["score_candidates"],
                        seed,
                        work_dir,
                    )
                )
            result["scoring"] = dict(meter.stages["scoring"])
            sc = result["scoring"]
            full_size = (sc["users"], sc["candidates"]) == (SCORE_USERS, SCORE_CANDIDATES)
            result["scoring_end_to_end_seconds"] = sc["end_to_end_seconds"]
            result["scoring_1m_x_1k_end_to_end_seconds"] = (
                sc["end_to_end_seconds"] if full_size else None
            )
            result["scoring_1m_x_1k_incremental_5pct_seconds"] = (
                sc["incremental_end_to_end_seconds"] if full_size else None
            )
            del model, shop
        with meter.stage("plan") as rec:
            rec.update(
                milp_bench(MILP_CANDIDATES, MILP_SLOTS, MILP_CATEGORIES, MILP_CATEGORY_CAP, seed)
            )
        result["plan"] = dict(meter.stages["plan"])
    finally:
        meter.close()
        if tmp is not None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    bare_rec = meter.stages.get("bare_duckdb", {})
    for rec in meter.stages.values():
        if bare_rec.get("seconds") and rec.get("seconds") is not None:
            rec["vs_bare_duckdb"] = round(rec["seconds"] / bare_rec["seconds"], 2)
        if bare_rec.get("cpu_seconds") and rec.get("cpu_seconds") is not None:
            rec["vs_bare_duckdb_cpu"] = round(rec["cpu_seconds"] / bare_rec["cpu_seconds"], 2)
    result["stages"] = meter.stages
    result["total_seconds"] = round(time.perf_counter() - t_all, 3)
    result["peak_rss_mb"] = round(process_peak_rss_mb(), 1)
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["work_dir"] = str(work_dir) if keep else None
    return result


# --------------------------------------------------------------------------------------------
# the nightly run
# --------------------------------------------------------------------------------------------
def run_nightly(
    work_dir: Path | str,
    events_per_day: int = 1_000_000,
    history_days: int = 6,
    users: int = 200_000,
    seed: int = 7,
    model_time_budget_s: float | None = None,
) -> dict:
    """One new day of ``events_per_day`` events through the real Dagster job, on a warehouse that
    already holds ``history_days`` earlier days (landed and cleaned with the same functions)."""

    from launch_pipeline import catalog, cleaning
    from launch_pipeline.raw_io import event_day_files, load_event_day
    from launch_pipeline.runner import prepare_instance, run_pipeline
    from launch_pipeline.settings import Settings
    from launch_pipeline.simulator import SimulatorConfig, generate_shop

    work_dir = Path(work_dir).resolve()
    data_dir = work_dir / "data"
    raw_dir = data_dir / "raw"
    meter = StageMeter()
    out: dict = {"machine": machine_info()}
    try:
        cfg = SimulatorConfig(
            seed=seed,
            users=users,
            days=history_days + 1,
            events_per_day=events_per_day,
            end_date=END_DATE,
            file_format="parquet",
            candidate_truth=False,
        )
        with meter.stage("generate") as rec:
            rec["events"] = generate_shop(raw_dir, cfg).events
        files = event_day_files(raw_dir)
        days = sorted(files)
        new_day = days[-1]
        settings = Settings.from_env(data_dir=data_dir, raw_dir=raw_dir)
        if model_time_budget_s is not None:
            settings = settings.with_overrides(model_time_budget_s=model_time_budget_s)
        wh = settings.warehouse_path
        wh.unlink(missing_ok=True)
        with meter.stage("history") as rec:
            con = warehouse_connection(wh)
            try:
                catalog.load_product_catalog(con, raw_dir)
                catalog.load_launch_candidates(con, raw_dir)
                shutil.rmtree(settings.lake_dir, ignore_errors=True)
                for d in days[:-1]:
                    load_event_day(con, raw_dir, d, files[d], lake_dir=settings.lake_dir)
                stats = cleaning.clean_partitions(
                    con, days[0], days[-2], settings.cleaning, lake_dir=settings.lake_dir
                )
                rec["clean_rows"] = stats.clean
            finally:
                con.close()
        home = work_dir / "dagster_home"
        shutil.rmtree(home, ignore_errors=True)
        os.environ["DAGSTER_HOME"] = str(home)
        prepare_instance(settings)
        import dagster as dg

        instance = dg.DagsterInstance.get()
        with meter.stage("nightly_run") as rec:
            outcome = run_pipeline(settings, first_day=new_day, last_day=new_day, instance=instance)
            rec["success"] = outcome.success
            rec["failures"] = outcome.failures[:5]
        out["step_seconds"] = step_seconds(instance, outcome.run_id)
        out.update(
            events_per_day=events_per_day,
            history_days=history_days,
            users=users,
            new_day=new_day.isoformat(),
            nightly_seconds=meter.stages["nightly_run"]["seconds"],
            success=outcome.success,
        )
    finally:
        meter.close()
    out["stages"] = meter.stages
    out["peak_rss_mb"] = round(process_peak_rss_mb(), 1)
    out["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


# --------------------------------------------------------------------------------------------
# the nightly data stages at two history lengths (incremental features)
# --------------------------------------------------------------------------------------------
DATA_ASSETS = (
    "product_catalog",
    "launch_candidates",
    "raw_events",
    "clean_events",
    "quarantined_events",
    *INCREMENTAL_TABLES,
)


def _shop_for_nightly(raw_dir: Path, cfg) -> float:
    """Generate the shop once; a later run with the same config reuses it. Returns the
    seconds spent generating (0 when reused)."""
    from launch_pipeline.simulator import generate_shop

    marker = raw_dir / "_bench_config.json"
    wanted = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)
    if marker.is_file() and marker.read_text() == wanted:
        return 0.0
    shutil.rmtree(raw_dir, ignore_errors=True)
    t0 = time.perf_counter()
    generate_shop(raw_dir, cfg)
    marker.write_text(wanted)
    return time.perf_counter() - t0


def table_fingerprint(con, table: str) -> tuple[int, int]:
    """(rows, sum of row hashes): equal for equal tables whatever their row order; cheap
    enough for the 200k-user tables of the bench (the test suite uses md5 checksums)."""
    n, h = con.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {table} AS t").fetchone()
    return int(n), int(h or 0)


def _nightly_data_case(
    meter: StageMeter,
    work_dir: Path,
    raw_dir: Path,
    files: dict,
    history_days: int,
    compare_full: bool,
) -> dict:
    """History of ``history_days`` days landed, cleaned and merged into the feature state; then
    the next day's data assets through the Dagster job (that partition of raw and clean events
    with its GX checks, then the four feature assets, which merge only the new day)."""
    from launch_pipeline import catalog, cleaning, features, features_incremental
    from launch_pipeline.raw_io import load_event_day
    from launch_pipeline.runner import prepare_instance
    from launch_pipeline.settings import Settings

    days = sorted(files)
    new_day, history = days[-1], days[-1 - history_days : -1]
    if len(history) < history_days:
        raise ValueError(f"the shop has {len(days) - 1} history days, not {history_days}")
    case_dir = work_dir / f"history_{history_days}d"
    shutil.rmtree(case_dir, ignore_errors=True)
    data_dir = case_dir / "data"
    data_dir.mkdir(parents=True)
    settings = Settings.from_env(data_dir=data_dir, raw_dir=raw_dir)
    now = dt.datetime.combine(new_day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    tag = f"history_{history_days}d"
    out: dict = {
        "history_days": history_days,
        "history": [history[0].isoformat(), history[-1].isoformat()],
    }
    with meter.stage(f"{tag}.prepare_history") as rec:
        con = warehouse_connection(settings.warehouse_path)
        try:
            catalog.load_product_catalog(con, raw_dir)
            catalog.load_launch_candidates(con, raw_dir)
            for d in history:
                load_event_day(con, raw_dir, d, files[d], lake_dir=settings.lake_dir)
            stats = cleaning.clean_partitions(
                con, history[0], history[-1], settings.cleaning, now=now, lake_dir=settings.lake_dir
            )
            rec["clean_rows"] = stats.clean
            # the feature state as the previous nightly runs left it
            rec["features"] = [
                r.summary()
                for r in features_incremental.update_all(con, lake_dir=settings.lake_dir)
            ]
            con.execute("CHECKPOINT")
        finally:
            con.close()
    home = case_dir / "dagster_home"
    os.environ["DAGSTER_HOME"] = str(home)
    prepare_instance(settings)
    import dagster as dg

    from launch_pipeline.definitions import build_definitions
    from launch_pipeline.defs.jobs import LAUNCH_JOB_NAME

    instance = dg.DagsterInstance.get()
    job = build_definitions(settings).resolve_job_def(LAUNCH_JOB_NAME)
    with meter.stage(f"{tag}.nightly_data_run") as rec:
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": new_day.isoformat(),
                "dagster/asset_partition_range_end": new_day.isoformat(),
            },
            asset_selection=[dg.AssetKey(k) for k in DATA_ASSETS],
            raise_on_error=False,
        )
        rec["success"] = result.success
    steps = step_seconds(instance, result.run_id)
    # what each feature asset did (metadata of its materialization: incremental, 1 day added)
    out["feature_updates"] = {
        m.asset_key.to_user_string(): {
            k: getattr(m.metadata[k], "value", None)
            for k in ("update_mode", "days_added", "days_recleaned", "update_seconds")
            if k in m.metadata
        }
        for m in (
            e.event_specific_data.materialization for e in result.get_asset_materialization_events()
        )
        if m.asset_key.to_user_string() in INCREMENTAL_TABLES
    }
    out["failures"] = [
        f"{e.step_key}: {e.message}"
        for e in result.all_events
        if e.event_type_value in ("STEP_FAILURE", "RUN_FAILURE")
    ][:5]
    checks = result.get_asset_check_evaluations()
    out.update(
        new_day=new_day.isoformat(),
        success=result.success,
        checks_passed=sum(c.passed for c in checks),
        checks_failed=[c.check_name for c in checks if not c.passed],
        step_seconds=steps,
        data_stage_seconds=round(sum(steps.values()), 2),
        feature_step_seconds=round(sum(v for k, v in steps.items() if k in INCREMENTAL_TABLES), 2),
        run_wall_seconds=meter.stages[f"{tag}.nightly_data_run"]["seconds"],
        run_cpu_seconds=meter.stages[f"{tag}.nightly_data_run"]["cpu_seconds"],
    )
    con = warehouse_connection(settings.warehouse_path)
    try:
        out["days_merged"] = dict(
            con.execute(
                "SELECT feature, count(*) FROM feat_merged_days GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        out["clean_events_rows"] = con.execute("SELECT count(*) FROM clean_events").fetchone()[0]
        if compare_full:
            import duckdb

            incremental = {t: table_fingerprint(con, t) for t in features.FEATURE_TABLES}
            try:
                with meter.stage(f"{tag}.features_full_sql") as rec:
                    features.build_item_features(con)
                    features.build_user_features(con)
                    features.build_user_sequences(con)
                    features.build_activity_profile(con)
            except duckdb.Error as exc:  # e.g. out of memory over a long history: say so
                out["features_full_sql"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            else:
                full = {t: table_fingerprint(con, t) for t in features.FEATURE_TABLES}
                out["features_full_sql_seconds"] = rec["seconds"]
                out["incremental_equals_full_sql"] = incremental == full
                out["tables_differing"] = [t for t in full if full[t] != incremental[t]]
    finally:
        con.close()
    return out


def run_nightly_data(
    work_dir: Path | str,
    events_per_day: int = 1_000_000,
    history_days: tuple[int, ...] = (15, 60),
    users: int = 200_000,
    seed: int = 7,
    compare_full: bool = True,
    progress_path: Path | None = None,
) -> dict:
    """``nightly_data_stage_ratio_60_vs_15``: the data stages (raw + clean + GX checks +
    features) of one new day of ``events_per_day`` events with the longest history over the
    same with the shortest. One simulated shop of ``max(history_days) + 1`` days (generated
    once, reused by later runs with the same settings); each case lands and cleans its history
    with the pipeline's functions, builds the feature state, then runs the same new day (the
    shop's last) through the Dagster job restricted to the data assets. ``compare_full`` also
    times the full-history feature SQL on the same warehouse and checks it gives the same
    tables as the incremental merge."""
    from launch_pipeline.raw_io import event_day_files
    from launch_pipeline.simulator import SimulatorConfig

    work_dir = Path(work_dir).resolve()
    raw_dir = work_dir / "raw"
    meter = StageMeter()
    out: dict = {"machine": machine_info(), "events_per_day": events_per_day, "users": users}
    saved_env = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "LAUNCH_PIPELINE_ALLOWED_ROOTS")}
    # one raw folder shared by the cases, each with its own data folder
    os.environ["LAUNCH_PIPELINE_ALLOWED_ROOTS"] = str(work_dir)
    try:
        cfg = SimulatorConfig(
            seed=seed,
            users=users,
            days=max(history_days) + 1,
            events_per_day=events_per_day,
            end_date=END_DATE,
            file_format="parquet",
            candidate_truth=False,
        )
        with meter.stage("generate") as rec:
            rec["generated_seconds"] = round(_shop_for_nightly(raw_dir, cfg), 1)
        files = event_day_files(raw_dir)
        with meter.stage("warm_up"):
            # one-off per-process costs (imports, GX's first context) kept out of both cases
            import great_expectations as gx
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot  # noqa: F401

            gx.get_context(mode="ephemeral")
        cases = out["cases"] = []
        for h in sorted(history_days):
            cases.append(_nightly_data_case(meter, work_dir, raw_dir, files, h, compare_full))
            if progress_path is not None:  # what is measured so far, should a later case fail
                progress_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
        short, long = cases[0], cases[-1]
        out[f"nightly_data_stage_ratio_{long['history_days']}_vs_{short['history_days']}"] = round(
            long["data_stage_seconds"] / short["data_stage_seconds"], 3
        )
        out["nightly_data_run_cpu_ratio"] = round(
            long["run_cpu_seconds"] / short["run_cpu_seconds"], 3
        )
    finally:
        meter.close()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out["stages"] = meter.stages
    out["peak_rss_mb"] = round(process_peak_rss_mb(), 1)
    out["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


TABLE_STAGES = (
    ("generate", "generate (simulator, Parquet)"),
    ("bare_duckdb", "**bare DuckDB reference** (mean of before/after)"),
    ("raw", "raw: Parquet day files checked in place (`raw_io.load_event_day`)"),
    ("clean", "clean: classify + write day files (`cleaning.clean_partitions`, 2 workers)"),
    ("gx_quality", "GX quality suite"),
    ("gx_noise", "GX noise suite"),
    ("features.item_features", "features: item_features + price_bands (incremental, all days)"),
    ("features.user_features", "features: user_features (incremental, all days)"),
    ("features.user_sequences", "features: user_sequences (incremental, all days)"),
    ("features.activity_profile", "features: activity_profile (incremental, all days)"),
    ("full_sql.item_features", "for comparison: item_features by the whole-history SQL"),
    ("full_sql.user_features", "for comparison: user_features by the whole-history SQL"),
    ("full_sql.user_sequences", "for comparison: user_sequences by the whole-history SQL"),
    ("full_sql.activity_profile", "for comparison: activity_profile by the whole-history SQL"),
)


def _cell(rec: dict | None) -> str:
    if not rec:
        return "-"
    cpu = rec.get("vs_bare_duckdb_cpu")
    cpu_s = f", cpu {cpu:.2f}x" if cpu is not None else ""
    return (
        f"{rec['seconds']:.1f} s ({rec.get('vs_bare_duckdb', 0):.2f}x{cpu_s}, "
        f"{rec['peak_rss_mb'] / 1024:.2f} GB)"
    )


def _summary_rows(r: dict) -> dict[str, str]:
    cpu = r.get("raw_to_features_vs_bare_duckdb_cpu")
    gx_cpu = r.get("gx_share_of_clean_stage_cpu")
    sc, tr, bf = r.get("scoring"), r.get("training"), r.get("backfill")
    return {
        "**raw -> features** (raw + clean + GX + features)": (
            f"**{r['raw_to_features_seconds']:.1f} s ({r['raw_to_features_vs_bare_duckdb']:.2f}x"
            + (f", cpu {cpu:.2f}x" if cpu is not None else "")
            + f", {r['raw_to_features_peak_rss_mb'] / 1024:.2f} GB)**"
        ),
        "GX share of the clean stage (wall / cpu)": f"{100 * r['gx_share_of_clean_stage']:.0f}%"
        + (f" / {100 * gx_cpu:.0f}%" if gx_cpu is not None else ""),
        "training (5k users' sequences, 3 epochs)": (
            f"{tr['sequences_per_second']:.0f} seq/s" if tr else "-"
        ),
        "scoring r_ij, 1M users x 1k candidates (streamed)": (
            f"{sc['score_seconds']:.1f} s ({sc['scores_per_second'] / 1e6:.0f}M/s)" if sc else "-"
        ),
        "scoring end to end (encode, score, store), 1M x 1k": (
            f"{sc['end_to_end_seconds']:.0f} s; next night, 5% new: "
            f"{sc['incremental_end_to_end_seconds']:.0f} s"
            if sc and "end_to_end_seconds" in sc
            else "-"
        ),
        "backfill of 30 partitions (land, clean, GX): serial / 2 writers": (
            f"{bf['serial']['wall_seconds']:.1f} s / {bf['parallel']['wall_seconds']:.1f} s "
            f"({bf['parallel_vs_serial_wall']:.2f}x), lock errors {bf['lock_errors']}, "
            f"checksums {'equal' if bf['checksums_equal'] else 'DIFFER'}"
            if bf
            else "-"
        ),
        "MILP 10k candidates, 1k slots (`select_launches`)": f"{r['plan']['solve_seconds']:.1f} s",
        "whole process peak RSS": f"{r['peak_rss_mb'] / 1024:.2f} GB",
        "load average (start -> end)": (
            f"{r['machine']['load_average'][0]:.1f} -> {r['machine']['load_average_end'][0]:.1f}"
        ),
    }


def markdown_table(results: list[dict]) -> str:
    """The scale table (one column per bench result): seconds, ratio to bare DuckDB (wall and
    CPU), peak RSS."""
    results = sorted(results, key=lambda r: r["events"])
    head = "| stage | " + " | ".join(f"{r['events'] / 1e6:.1f}M events" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for key, label in TABLE_STAGES:
        cells = " | ".join(_cell(r["stages"].get(key)) for r in results)
        lines.append(f"| {label} | {cells} |")
    summaries = [_summary_rows(r) for r in results]
    for label in summaries[0]:
        lines.append(f"| {label} | " + " | ".join(sm[label] for sm in summaries) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m launch_pipeline.bench")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bench", help="same as `launch-pipeline bench`")
    b.add_argument("--events", type=int, required=True)
    b.add_argument("--work-dir", type=Path, default=None)
    b.add_argument("--seed", type=int, default=7)
    b.add_argument("--out", type=Path, default=None)
    b.add_argument("--no-model", action="store_true", help="skip training and scoring")
    b.add_argument("--no-backfill", action="store_true", help="skip the backfill section")
    n = sub.add_parser("nightly", help="one new day through the Dagster job")
    n.add_argument("--work-dir", type=Path, required=True)
    n.add_argument("--events-per-day", type=int, default=1_000_000)
    n.add_argument("--history-days", type=int, default=6)
    n.add_argument("--users", type=int, default=200_000)
    n.add_argument("--seed", type=int, default=7)
    n.add_argument("--model-time-budget-s", type=float, default=None)
    n.add_argument("--out", type=Path, default=None)
    nd = sub.add_parser(
        "nightly-data", help="one new day's data stages at two history lengths (incremental)"
    )
    nd.add_argument("--work-dir", type=Path, required=True)
    nd.add_argument("--events-per-day", type=int, default=1_000_000)
    nd.add_argument("--history-days", type=int, nargs="+", default=[15, 60])
    nd.add_argument("--users", type=int, default=200_000)
    nd.add_argument("--seed", type=int, default=7)
    nd.add_argument("--no-full-compare", action="store_true")
    nd.add_argument("--out", type=Path, default=None)
    t = sub.add_parser("table", help="markdown table from bench JSON files")
    t.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    if args.command == "table":
        print(markdown_table([json.loads(f.read_text()) for f in args.files]))
        return 0
    if args.command == "nightly-data":
        res = run_nightly_data(
            args.work_dir,
            args.events_per_day,
            tuple(args.history_days),
            args.users,
            args.seed,
            compare_full=not args.no_full_compare,
            progress_path=args.out.with_suffix(".partial.json") if args.out else None,
        )
    elif args.command == "bench":
        res = run_bench(
            args.events,
            args.work_dir,
            args.seed,
            keep=True,
            model_stages=not args.no_model,
            backfill=not args.no_backfill,
        )
    else:
        res = run_nightly(
            args.work_dir,
            args.events_per_day,
            args.history_days,
            args.users,
            args.seed,
            args.model_time_budget_s,
        )
    text = json.dumps(res, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
