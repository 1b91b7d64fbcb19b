"""``launch-pipeline``: the command-line entry point.

Sub-commands: ``generate`` (simulated shop data), ``run`` (materialize every asset and print the
plan), ``eval-model`` (recommender benchmark on S3-Rec files), ``backtest`` (launch decisions at
past cutoffs scored on real sales), ``bench`` (scale benchmark), ``prepare-instance`` (the
persistent Dagster home used by ``make ui``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TQDM_DISABLE", "1")


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def cmd_generate(args) -> int:
    from launch_pipeline.paths import check_folder_for_writing
    from launch_pipeline.simulator import SimulatorConfig, generate_shop

    check_folder_for_writing(args.out, "output folder (--out)")

    cfg = SimulatorConfig(
        seed=args.seed,
        users=args.users,
        days=args.days,
        events_per_day=args.events_per_day,
        end_date=args.end_date,
        file_format=args.format,
        noise=not args.no_noise,
    )
    t0 = time.perf_counter()
    summary = generate_shop(args.out, cfg)
    print(
        json.dumps(
            {**summary.to_dict(), "seconds": round(time.perf_counter() - t0, 2)},
            default=str,
            indent=2,
        )
    )
    return 0


def has_raw_data(raw_dir: Path) -> bool:
    from launch_pipeline.raw_io import event_day_files

    return bool(event_day_files(raw_dir)) and any(raw_dir.glob("products.*"))


def plan_summary(settings, scenario: str = "default") -> str:
    """The latest plan of a scenario as the terminal shows it after a run."""
    import duckdb

    from launch_pipeline.report import plan_table

    if not settings.warehouse_path.exists():
        return "no warehouse yet"
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        if "plan_scenarios" not in tables:
            if (
                "launch_candidates" in tables
                and not con.execute("SELECT count(*) FROM launch_candidates").fetchall()[0][0]
            ):
                from launch_pipeline.defs.planning import NO_CANDIDATES_MESSAGE

                return NO_CANDIDATES_MESSAGE[0].upper() + NO_CANDIDATES_MESSAGE[1:] + "."
            return "no launch plan yet"
        row = con.execute(
            "SELECT plan_date, objective, expected_revenue, expected_gross_profit, "
            "incremental_gross_profit, distinct_users, max_promotions_per_user, report_path "
            "FROM plan_scenarios WHERE scenario = ? ORDER BY plan_date DESC LIMIT 1",
            [scenario],
        ).fetchall()
        if not row:
            return f"no plan for scenario {scenario!r} yet"
        plan_date, objective, revenue, profit, incr, users, cap, report = row[0]
        plan = con.execute(
            "SELECT * FROM launch_plan WHERE plan_date = ? AND scenario = ?", [plan_date, scenario]
        ).df()
    finally:
        con.close()
    money = (
        f"expected revenue {revenue:,.0f}, gross profit {profit:,.0f} "
        f"({incr:,.0f} after cannibalization)"
        if objective == "gross_profit"
        else f"expected revenue {revenue:,.0f}"
    )
    return (
        f"Launch plan for {plan_date}: {int(plan['chosen'].sum())} products, {money}; "
        f"promoted to {users:,} customers, at most {cap} promotions each\n"
        f"{plan_table(plan).to_string(index=False)}\nReport: {report}"
    )


def _source_of(raw_dir: Path) -> tuple | None:
    from launch_pipeline.raw_io import read_manifest

    manifest = read_manifest(raw_dir)
    return (manifest.get("source"), manifest.get("path")) if manifest else None


def archive_outputs(settings) -> Path | None:
    """Move the warehouse, partition files and models of a previous source aside (never mix two
    shops)."""
    import shutil

    moved = [
        p for p in (settings.warehouse_path, settings.lake_dir, settings.models_dir) if p.exists()
    ]
    if not moved:
        return None
    target = settings.data_dir / "archive" / dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    target.mkdir(parents=True, exist_ok=True)
    for p in moved:
        shutil.move(str(p), target / p.name)
    wal = settings.warehouse_path.with_name(settings.warehouse_path.name + ".wal")
    if wal.exists():
        shutil.move(str(wal), target / wal.name)
    return target


def cmd_run(args) -> int:
    from launch_pipeline.errors import ConfigurationError
    from launch_pipeline.paths import check_data_dirs
    from launch_pipeline.runner import run_pipeline
    from launch_pipeline.settings import Settings
    from launch_pipeline.simulator import SimulatorConfig, generate_shop

    settings = Settings.from_env(data_dir=args.data_dir)
    # every folder this command writes, checked before staging deletes or writes anything
    check_data_dirs(args.data_dir or settings.data_dir, settings.raw_dir)
    t0 = time.perf_counter()
    if args.source:
        from launch_pipeline.adapters import stage_source

        if not args.path:
            raise ConfigurationError("--source needs --path (the file or folder to read)")
        print(f"Staging {args.path} ({args.source}) into {settings.raw_dir} ...")
        before = _source_of(settings.raw_dir)
        options = {}
        if args.date_format:
            options["date_format"] = args.date_format
        if args.decimal_comma:
            options["decimal_comma"] = True
        staged = stage_source(args.source, args.path, settings.raw_dir, **options)
        if before is not None and before != _source_of(settings.raw_dir):
            archived = archive_outputs(settings)
            if archived:
                print(
                    f"  the data directory held another source {before}: archived its "
                    f"warehouse and models under {archived}"
                )
        settings = Settings.from_env(data_dir=args.data_dir)  # the source's cleaning thresholds
        print(f"  {staged.summary_line()} ({time.perf_counter() - t0:.0f}s)")
        for line in staged.skipped_lines():
            print(f"  not taken: {line}")
    elif not has_raw_data(settings.raw_dir):
        print(f"No raw data in {settings.raw_dir}: generating the default simulated shop ...")
        summary = generate_shop(settings.raw_dir, SimulatorConfig())
        print(
            f"  {summary.events} events over {summary.files} days ({time.perf_counter() - t0:.0f}s)"
        )
    print(f"Materializing every asset into {settings.warehouse_path} ...")
    log_file = None
    # progress lines and the log in a file need the process's own output streams (an embedding
    # program or a test harness that replaced sys.stdout/sys.stderr gets the full log instead)
    own_streams = sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
    if not args.verbose and own_streams:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        log_file = settings.data_dir / "logs" / f"run_{stamp}.log"
        print(f"  one line per finished step; the full Dagster log goes to {log_file}")
    outcome = run_pipeline(
        settings, first_day=args.first_day, last_day=args.last_day, log_file=log_file
    )
    for run_id in outcome.recovered_runs:
        print(
            f"Run {run_id} was left unfinished by a process that no longer exists (killed?): "
            "marked failed and its pool slot freed.",
            file=sys.stderr,
        )
    elapsed = time.perf_counter() - t0
    if outcome.skipped_files:
        print(
            f"Not read: {len(outcome.skipped_files)} file(s) in {settings.raw_dir / 'events'}:",
            file=sys.stderr,
        )
        for line in outcome.skipped_files:
            print(f"  - {line}", file=sys.stderr)
    for line in outcome.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if not outcome.success:
        print(f"\nRun {outcome.run_id} FAILED after {elapsed:.0f}s:", file=sys.stderr)
        for f in outcome.failures:
            print(f"  - {f}", file=sys.stderr)
        if outcome.root_cause:
            print(f"error: {outcome.root_cause}", file=sys.stderr)
        return 1
    print(
        f"\nRun {outcome.run_id} succeeded in {elapsed:.0f}s (partitions {outcome.partitions[0]}"
        f" .. {outcome.partitions[1]}).\n"
    )
    print(plan_summary(settings))
    return 0


def scenario_summary(settings, scenario: str) -> str:
    """The scenario's plan and every scenario of the same plan date, as printed text."""
    import duckdb

    from launch_pipeline.report import plan_table, scenario_table

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        plan_date = con.execute(
            "SELECT max(plan_date) FROM launch_plan WHERE scenario = ?", [scenario]
        ).fetchall()[0][0]
        plan = con.execute(
            "SELECT * FROM launch_plan WHERE plan_date = ? AND scenario = ?", [plan_date, scenario]
        ).df()
        scenarios = con.execute(
            "SELECT * FROM plan_scenarios WHERE plan_date = ? "
            "ORDER BY scenario = 'default' DESC, scenario",
            [plan_date],
        ).df()
    finally:
        con.close()
    row = scenarios[scenarios["scenario"] == scenario].iloc[0]
    return (
        f"Scenario {scenario!r} for {plan_date}: {int(row['picks'])} products\n"
        f"{plan_table(plan).to_string(index=False)}\n\nScenarios side by side:\n"
        f"{scenario_table(scenarios).to_string(index=False)}\nReport: {row['report_path']}"
    )


PLAN_OPTIONS = (
    ("slots", int, "launch slots"),
    ("category_cap", int, "launches per category at most"),
    ("objective", str, "revenue | gross_profit | auto"),
    ("horizon_days", int, "must match the stored preferences (refused otherwise)"),
    ("launch_budget", float, "bound on the summed cost of the initial orders"),
    ("max_promotions_per_user", int, "contact cap per user"),
    ("audience_size", int, "users per promotion"),
    ("lead_time_hours", float, "no launch earlier than this after the plan is made"),
    ("shop_timezone", str, "IANA time zone for launch times, e.g. Europe/London"),
    ("salvage_share", float, "share of unit cost an unsold unit is worth (default 0)"),
)


def cmd_plan(args) -> int:
    import dataclasses

    from launch_pipeline.errors import ConfigurationError
    from launch_pipeline.launch_planner import validate_planning
    from launch_pipeline.runner import plan_scenario
    from launch_pipeline.settings import Settings

    settings = Settings.from_env(data_dir=args.data_dir)
    if not settings.warehouse_path.exists():
        raise ConfigurationError(
            f"no warehouse at {settings.warehouse_path}: run `launch-pipeline run` once first"
        )
    overrides = {k: getattr(args, k) for k, _, _ in PLAN_OPTIONS if getattr(args, k) is not None}
    planning = dataclasses.replace(settings.planning, scenario=args.scenario, **overrides)
    validate_planning(planning)
    settings = settings.with_overrides(planning=planning)
    print(f"Planning scenario {args.scenario!r} from the stored preferences (no retraining) ...")
    outcome = plan_scenario(settings)
    if not outcome.success:
        print(f"Run {outcome.run_id} FAILED after {outcome.seconds:.1f}s:", file=sys.stderr)
        for f in outcome.failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"Run {outcome.run_id} succeeded in {outcome.seconds:.1f}s.\n")
    print(scenario_summary(settings, args.scenario))
    return 0


def _check_outputs(args) -> None:
    """--out and --work-dir checked before a long command starts (and before it writes)."""
    from launch_pipeline.errors import ConfigurationError
    from launch_pipeline.paths import check_folder_for_writing

    out = getattr(args, "out", None)
    if out is not None:
        if Path(out).is_dir():
            raise ConfigurationError(f"--out {out} is a folder: name the JSON file to write")
        check_folder_for_writing(Path(out).parent, "folder of --out")
    if getattr(args, "work_dir", None) is not None:
        check_folder_for_writing(args.work_dir, "--work-dir")


def _write_json(payload: dict, out: Path | None) -> None:
    text = json.dumps(payload, indent=2, default=str)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"wrote {out}")
    else:
        print(text)


def cmd_eval_model(args) -> int:
    _check_outputs(args)
    from launch_pipeline.model.evaluation import evaluate_s3rec

    result = evaluate_s3rec(
        args.sequences, args.attributes, time_budget_min=args.time_budget_min, seed=args.seed
    )
    _write_json(result, args.out)
    keys = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "train_seconds", "epochs")
    print(
        ", ".join(
            f"{k}={result[k]:.4f}" if isinstance(result[k], float) else f"{k}={result[k]}"
            for k in keys
            if k in result
        )
    )
    return 0


def cmd_backtest(args) -> int:
    _check_outputs(args)
    from launch_pipeline.backtest import run_backtest

    result = run_backtest(
        source=args.source,
        path=args.path,
        cutoffs=args.cutoff,
        horizon_days=args.horizon_days,
        slots=args.slots,
        category_cap=args.category_cap,
        work_dir=args.work_dir,
        model_time_budget_s=args.model_time_budget_s,
        model_work_gcells=args.model_work_gcells,
        on_cutoff=lambda partial: _write_json(partial, args.out),  # keeps what a long run has
    )
    _write_json(result, args.out)
    return 0


def cmd_bench(args) -> int:
    _check_outputs(args)
    from launch_pipeline.bench import run_bench

    result = run_bench(
        events=args.events,
        work_dir=args.work_dir,
        seed=args.seed,
        backfill=args.backfill_partitions != 0,
        backfill_partitions=args.backfill_partitions,
    )
    _write_json(result, args.out)
    return 0


def cmd_prepare_instance(args) -> int:
    from launch_pipeline.runner import prepare_instance
    from launch_pipeline.settings import Settings

    home = prepare_instance(Settings.from_env(data_dir=args.data_dir))
    print(f"DAGSTER_HOME={home}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch-pipeline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write a simulated shop in the raw input contract")
    g.add_argument("--out", required=True, type=Path)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--users", type=int, default=3000)
    g.add_argument("--days", type=int, default=60)
    g.add_argument("--events-per-day", type=int, default=6000)
    g.add_argument("--end-date", type=_date, default=None, help="last day (default: yesterday UTC)")
    g.add_argument("--format", choices=["csv", "parquet"], default="csv")
    g.add_argument("--no-noise", action="store_true", help="do not plant dirty rows")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="materialize every asset and print the launch plan")
    r.add_argument(
        "--data-dir", type=Path, default=None, help="default: $LAUNCH_PIPELINE_DATA_DIR or ./data"
    )
    r.add_argument(
        "--source",
        default=None,
        help="adapter for --path: canonical, online_retail, taobao, rees46, complete_journey "
        "(default: the data "
        "already in DATA_DIR/raw, or the simulated shop)",
    )
    r.add_argument("--path", type=Path, default=None, help="file or folder the adapter reads")
    r.add_argument(
        "--date-format",
        default=None,
        help="how the source writes dates when the file cannot prove it, e.g. '%%d/%%m/%%Y %%H:%%M' "
        "(online_retail)",
    )
    r.add_argument(
        "--decimal-comma",
        action="store_true",
        help="prices are written with a decimal comma, 1.234,56 (online_retail)",
    )
    r.add_argument("--first-day", type=_date, default=None)
    r.add_argument("--last-day", type=_date, default=None)
    r.add_argument(
        "--verbose", action="store_true", help="print the full Dagster log instead of progress"
    )
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval-model", help="full-ranking leave-one-out evaluation on S3-Rec files")
    e.add_argument("--sequences", required=True, type=Path, help="user item item ... per line")
    e.add_argument("--attributes", type=Path, default=None, help="JSON item -> [attribute ids]")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--time-budget-min", type=float, default=20.0)
    e.add_argument("--seed", type=int, default=42)
    e.set_defaults(func=cmd_eval_model)

    b = sub.add_parser(
        "backtest", help="plan launches at past cutoffs and score them on real sales"
    )
    b.add_argument(
        "--source", required=True, help="the shop's format: online_retail or complete_journey"
    )
    b.add_argument(
        "--path", required=True, type=Path, help="the shop's file (online_retail) or folder"
    )
    b.add_argument(
        "--cutoff",
        required=True,
        action="append",
        type=_date,
        help="YYYY-MM-DD: plan with the history before it, score on the horizon after (repeatable)",
    )
    b.add_argument(
        "--horizon-days", type=int, default=90, help="days after a cutoff whose sales are scored"
    )
    b.add_argument("--slots", type=int, default=20, help="products launched per cutoff")
    b.add_argument(
        "--category-cap", type=int, default=None, help="at most this many picks per category"
    )
    b.add_argument(
        "--work-dir", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    from launch_pipeline.settings import DEFAULT_MODEL_WORK_GCELLS

    b.add_argument(
        "--model-work-gcells",
        type=float,
        default=DEFAULT_MODEL_WORK_GCELLS,
        help=(
            "the Transformer's work cap per cutoff, billions of softmax cells (targets trained x "
            "catalogue items; the as-of model gets a quarter); 0: stop on the time budget only "
            "(not reproducible)"
        ),
    )
    b.add_argument(
        "--model-time-budget-s",
        type=float,
        default=900.0,
        help=(
            "the Transformer's wall-clock safety stop per cutoff (the as-of model gets a "
            "quarter); a training it stops is reported as not reproducible"
        ),
    )
    b.add_argument(
        "--out", type=Path, required=True, help="the JSON file with every cutoff's result"
    )
    b.set_defaults(func=cmd_backtest)

    bn = sub.add_parser("bench", help="scale benchmark of every stage against bare DuckDB")
    bn.add_argument("--events", type=int, required=True)
    bn.add_argument("--out", type=Path, default=None)
    bn.add_argument(
        "--work-dir", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    bn.add_argument("--seed", type=int, default=7)
    bn.add_argument(
        "--backfill-partitions",
        type=int,
        default=None,
        help="days in the backfill section (default: every day file; 0 skips it)",
    )
    bn.set_defaults(func=cmd_bench)

    pl = sub.add_parser(
        "plan",
        help="re-plan a named scenario from the stored preferences (no retraining)",
        description="Re-plan from the stored preferences and demand history with changed "
        "settings, kept side by side with the other scenarios of the plan date.",
    )
    pl.add_argument("--scenario", required=True, help="name (letters, digits, - and _)")
    pl.add_argument("--data-dir", type=Path, default=None)
    for name, typ, text in PLAN_OPTIONS:
        pl.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=text)
    pl.add_argument("--timezone", dest="shop_timezone", type=str, help=argparse.SUPPRESS)
    pl.set_defaults(func=cmd_plan)

    pi = sub.add_parser("prepare-instance", help="create DAGSTER_HOME under the data directory")
    pi.add_argument("--data-dir", type=Path, default=None)
    pi.set_defaults(func=cmd_prepare_instance)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from launch_pipeline.errors import LaunchPipelineError

    try:
        return args.func(args)
    except LaunchPipelineError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder or file the command needs: permissions, disk full, ...
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(
            f"error: {exc.strerror or exc}{where}: check the path and its permissions",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
