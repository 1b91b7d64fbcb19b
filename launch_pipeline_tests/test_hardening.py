"""Issue 13: input hardening. Each example of the issue, reproduced: no row lost or doubled
without a word, no write before a path is checked, one clear line for every refusal.

The catalogue of kinds is docs/operations.md section 5 (kinds 30 and up)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from launch_pipeline import lake
from launch_pipeline.adapters import stage_source
from launch_pipeline.catalog import load_launch_candidates, load_product_catalog
from launch_pipeline.cleaning import clean_partitions, row_accounting
from launch_pipeline.errors import AccountingError, InputFileError
from launch_pipeline.raw_io import (
    event_day_files,
    load_event_day,
    partition_range,
    read_manifest,
    skipped_event_files,
)
from launch_pipeline_tests.conftest import DAY, EVENT_HEADER, ts, write_products

HEADER = ",".join(EVENT_HEADER)


def day_text(day: dt.date, n: int, item: str = "p1") -> str:
    rows = [f"u{i},{item},view,{ts(day.isoformat(), 10, i)},,,,,s{i}" for i in range(n)]
    return "\n".join([HEADER, *rows]) + "\n"


def land_all(raw, days=None):
    """Catalog, candidates, every day file of ``raw`` landed and cleaned; returns (con, stats)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    load_product_catalog(con, raw)
    load_launch_candidates(con, raw)
    files = event_day_files(raw)
    for day, path in files.items():
        if days is None or day in days:
            load_event_day(con, raw, day, path, lake_dir=raw.parent / "lake")
    lo, hi = min(files), max(files)
    return con, clean_partitions(con, lo, hi, lake_dir=raw.parent / "lake")


# --------------------------------------------------------------------------------------------
# 1. accounting that cannot lie
# --------------------------------------------------------------------------------------------
def test_candidate_id_also_in_products_is_quarantined_and_events_not_doubled(tmp_path):
    raw = tmp_path / "raw"
    write_products(
        raw,
        [{"item_id": "p1", "title": "P1", "category": "k", "brand": "a", "price": 10.0}],
        [
            {"item_id": "p1", "title": "P1 again", "category": "k", "brand": "a", "price": 12.0},
            {"item_id": "n1", "title": "N1", "category": "k", "brand": "a", "price": 20.0},
        ],
    )
    (raw / "events").mkdir()
    (raw / "events" / f"{DAY}.csv").write_text(day_text(DAY, 4))
    con, stats = land_all(raw)
    assert (stats.raw, stats.clean, stats.quarantined) == (4, 4, 0)
    assert stats.reasons == {}
    assert con.execute("SELECT item_id, reason FROM quarantined_products").fetchall() == [
        ("p1", "already_in_products")
    ]
    assert con.execute("SELECT item_id FROM launch_candidates").fetchall() == [("n1",)]
    # per (partition, file), counted in the tables
    per_file = stats.per_file
    assert per_file[["raw", "clean", "quarantined", "distinct_rows"]].values.tolist() == [
        [4, 4, 0, 4]
    ]


def test_a_broken_accounting_fails_with_the_file_the_partition_and_the_cause(tiny_catalog):
    (tiny_catalog / "events").mkdir()
    (tiny_catalog / "events" / f"{DAY}.csv").write_text(day_text(DAY, 3))
    con, _ = land_all(tiny_catalog)
    lake_dir = tiny_catalog.parent / "lake"
    doubled = "SELECT * FROM clean_events UNION ALL (SELECT * FROM clean_events LIMIT 1)"
    lake.write_partition(con, doubled, lake_dir, "clean_events", DAY)  # a doubled row
    with pytest.raises(AccountingError) as info:
        row_accounting(con, DAY, DAY)
    msg = str(info.value)
    assert f"events/{DAY}.csv" in msg and f"partition {DAY}" in msg
    assert "3 raw rows became 4 clean + 0 quarantined rows: 1 rows were counted more" in msg
    clean_partitions(con, DAY, DAY, lake_dir=lake_dir)  # the same rows again: holds
    row_accounting(con, DAY, DAY)
    lost = "SELECT * FROM clean_events WHERE source_row <> 2"
    lake.write_partition(con, lost, lake_dir, "clean_events", DAY)  # a lost row
    with pytest.raises(AccountingError, match="in neither table"):
        row_accounting(con, DAY, DAY)


def test_cleaning_refuses_a_file_whose_rows_did_not_all_land(tiny_catalog, monkeypatch):
    from launch_pipeline import raw_io

    path = tiny_catalog / "events" / f"{DAY}.parquet"
    path.parent.mkdir()
    pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["p1", "p1"], "event_type": ["view"] * 2,
         "ts": [ts(DAY.isoformat())] * 2}
    ).to_parquet(path)  # fmt: skip
    monkeypatch.setattr(raw_io, "count_records", lambda p: 3)  # the footer says 3 rows
    lake_dir = tiny_catalog.parent / "lake"
    con = duckdb.connect()
    load_product_catalog(con, tiny_catalog)
    load_launch_candidates(con, tiny_catalog)
    assert load_event_day(con, tiny_catalog, DAY, path, lake_dir=lake_dir) == 3
    with pytest.raises(AccountingError, match="held 3 records when it was landed but 2 were read"):
        clean_partitions(con, DAY, DAY, lake_dir=lake_dir)
    # nothing was written: the new files are only renamed into place once the counts hold
    assert lake.read_stamps(lake_dir, "clean_events") == {}
    assert lake.read_stamps(lake_dir, "quarantined_events") == {}
    assert not list(lake_dir.rglob("*.tmp"))


def test_purchase_without_price_of_a_product_without_price_is_quarantined(tmp_path):
    raw = tmp_path / "raw"
    write_products(
        raw,
        [
            {"item_id": "p1", "title": "P1", "category": "k", "brand": "a", "price": None},
            {"item_id": "p2", "title": "P2", "category": "k", "brand": "a", "price": 5.0},
        ],
        [{"item_id": "n1", "title": "N1", "category": "k", "brand": "a", "price": 20.0}],
    )
    (raw / "events").mkdir()
    day = DAY.isoformat()
    (raw / "events" / f"{DAY}.csv").write_text(
        "\n".join(
            [
                HEADER,
                f"u1,p1,purchase,{ts(day)},1,,,,s1",  # no price anywhere
                f"u1,p2,purchase,{ts(day, 11)},1,,,,s1",  # catalog price imputed
                f"u1,p1,purchase,{ts(day, 12)},1,7.5,,,s1",  # its own price
            ]
        )
        + "\n"
    )
    con, stats = land_all(raw)
    assert stats.reasons == {"missing_price": 1}
    assert con.execute(
        "SELECT source_row FROM quarantined_events WHERE reason = 'missing_price'"
    ).fetchall() == [(0,)]
    assert con.execute(
        "SELECT count(*) FROM clean_events WHERE event_type = 'purchase' AND price IS NULL"
    ).fetchall() == [(0,)]


# --------------------------------------------------------------------------------------------
# day files that are not read: listed with the reason, never silently dropped
# --------------------------------------------------------------------------------------------
def _folder(tmp_path, manifest=None):
    src = tmp_path / "src"
    write_products(
        src,
        [{"item_id": "p1", "title": "P1", "category": "k", "brand": "a", "price": 10.0}],
        [{"item_id": "n1", "title": "N1", "category": "k", "brand": "a", "price": 20.0}],
    )
    (src / "events").mkdir()
    for i in range(3):
        day = DAY + dt.timedelta(days=i)
        (src / "events" / f"{day}.csv").write_text(day_text(day, 2))
    if manifest is not None:
        (src / "dataset.json").write_text(json.dumps(manifest))
    return src


def test_stray_day_file_with_a_mistyped_year_stops_staging_before_any_write(tmp_path):
    src = _folder(tmp_path)
    stray = DAY.replace(year=2062)
    (src / "events" / f"{stray}.csv").write_text(day_text(stray, 5))
    out = tmp_path / "data" / "raw"
    with pytest.raises(InputFileError) as info:
        stage_source("canonical", src, out)
    assert f"{stray}.csv" in str(info.value) and "mistyped date" in str(info.value)
    assert "What to do:" in str(info.value)
    assert not out.exists()  # nothing created, let alone 13,000 empty partitions


def test_day_file_outside_the_declared_range_is_skipped_and_listed(tmp_path):
    end = DAY + dt.timedelta(days=2)
    src = _folder(tmp_path, {"start_date": DAY.isoformat(), "end_date": end.isoformat()})
    stray = DAY.replace(year=2062)
    (src / "events" / f"{stray}.csv").write_text(day_text(stray, 5))
    (src / "events" / "notes.txt").write_text("delivered by hand\n")
    out = tmp_path / "data" / "raw"
    summary = stage_source("canonical", src, out)
    assert summary.days == 3 and summary.rows == 6
    assert len(list((out / "events").iterdir())) == 3
    lines = summary.skipped_lines()
    assert any(f"events/{stray}.csv (5 records)" in x and "outside" in x for x in lines)
    assert any("notes.txt" in x and "name is not YYYY-MM-DD" in x for x in lines)
    assert "2 file(s) not taken (5 records)" in summary.summary_line()
    staged = json.loads((out / "dataset.json").read_text())
    assert {f["file"] for f in staged["skipped_files"]} == {
        f"events/{stray}.csv",
        "events/notes.txt",
    }


def test_upper_case_extension_is_read(tiny_catalog):
    (tiny_catalog / "events").mkdir()
    (tiny_catalog / "events" / f"{DAY}.CSV").write_text(day_text(DAY, 3))
    assert list(event_day_files(tiny_catalog)) == [DAY]
    assert skipped_event_files(tiny_catalog, DAY, DAY) == []
    _, stats = land_all(tiny_catalog)
    assert stats.raw == stats.clean == 3


def test_impossible_date_in_a_file_name_is_one_clear_line(tiny_catalog):
    (tiny_catalog / "events").mkdir()
    (tiny_catalog / "events" / "2026-02-30.csv").write_text(day_text(DAY, 1))
    with pytest.raises(InputFileError) as info:
        event_day_files(tiny_catalog)
    msg = str(info.value)
    assert "2026-02-30 is not a calendar date" in msg and "What to do: rename" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", "is a JSON list, not an object"),
        ('{"start_date": "2026-13-01"}', "start_date '2026-13-01' is not a date"),
        ('{"start_date": "2026-11-05", "end_date": "2026-11-01"}', "is after end_date"),
        (b"\xff\xfe{}", "is not valid JSON"),
    ],
)
def test_malformed_dataset_json_is_one_clear_line(tiny_catalog, text, problem):
    path = tiny_catalog / "dataset.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputFileError, match="dataset.json") as info:
        partition_range(tiny_catalog)
    assert problem in info.value.problem and info.value.fix
    with pytest.raises(InputFileError):
        read_manifest(tiny_catalog)


def test_raw_events_metadata_lists_the_files_it_did_not_read(tiny_catalog, tmp_path):
    from launch_pipeline.defs.partitions import build_daily_partitions
    from launch_pipeline.defs.raw import build_raw_events
    from launch_pipeline.defs.resources import build_resources
    from launch_pipeline.settings import Settings

    events = tiny_catalog / "events"
    events.mkdir()
    (events / f"{DAY}.csv").write_text(day_text(DAY, 2))
    (events / f"{DAY}.csv.bak").write_text(day_text(DAY, 2))
    (events / f"{DAY.replace(year=2062)}.csv").write_text(day_text(DAY, 4))
    (tiny_catalog / "dataset.json").write_text(
        json.dumps({"start_date": DAY.isoformat(), "end_date": DAY.isoformat()})
    )
    data = tmp_path
    settings = Settings.from_env(data_dir=data, raw_dir=tiny_catalog)
    asset = build_raw_events(build_daily_partitions(settings))
    result = dg.materialize(
        [asset],
        partition_key=DAY.isoformat(),
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
    )
    meta = result.asset_materializations_for_node("raw_events")[0].metadata
    assert meta["files_not_read"].value == 2 and meta["records_not_read"].value == 6
    listing = meta["files_not_read_list"].value
    assert f"{DAY}.csv.bak" in listing and "2062" in listing


# --------------------------------------------------------------------------------------------
# 2. every path checked before anything is created, deleted or overwritten
# --------------------------------------------------------------------------------------------
def _cli(argv, capsys) -> tuple[int, str]:
    from launch_pipeline import cli

    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_symlinked_raw_dir_is_refused_before_staging_deletes_anything(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("LAUNCH_PIPELINE_RAW_DIR", raising=False)
    monkeypatch.delenv("LAUNCH_PIPELINE_ALLOWED_ROOTS", raising=False)
    src = _folder(tmp_path)
    elsewhere = tmp_path / "another_teams_folder"
    write_products(elsewhere, [{"item_id": "x"}], [{"item_id": "y"}])
    (elsewhere / "dataset.json").write_text("{}")
    data = tmp_path / "data"
    data.mkdir()
    (data / "raw").symlink_to(elsewhere)
    code, last = _cli(["run", "--source", "canonical", "--path", src, "--data-dir", data], capsys)
    assert code == 2 and last.startswith("error: ") and "outside the data directory" in last
    assert sorted(p.name for p in elsewhere.iterdir()) == [
        "candidates.csv",
        "dataset.json",
        "products.csv",
    ]  # untouched: nothing deleted, no events/ created
    assert sorted(p.name for p in data.iterdir()) == ["raw"]


@pytest.mark.parametrize("kind", ["system_folder", "a_file", "read_only", "glob_characters"])
def test_unusable_data_dir_is_one_clear_line_and_nothing_is_written(
    kind, tmp_path, capsys, monkeypatch
):
    import os

    src = _folder(tmp_path)
    data = {
        "system_folder": "/usr/launch_pipeline_test_data",
        "a_file": tmp_path / "data.txt",
        "read_only": tmp_path / "ro" / "data",
        "glob_characters": tmp_path / "shop[2026]" / "data",
    }[kind]
    if kind == "a_file":
        data.write_text("not a folder")
    if kind == "read_only":
        (tmp_path / "ro").mkdir()
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, m: False if str(p).endswith("ro") else real_access(p, m)
        )
    expected = {
        "system_folder": "system folder",
        "a_file": "is a file, not a folder",
        "read_only": "is not writable",
        "glob_characters": "contains [ ]",
    }[kind]
    code, last = _cli(["run", "--source", "canonical", "--path", src, "--data-dir", data], capsys)
    assert code == 2 and last.startswith("error: ") and expected in last, last
    if kind != "a_file":
        assert not Path(data).exists()
    if kind == "glob_characters":
        return  # only the data directory holds Dagster's instance; a raw folder may have them
    code, last = _cli(["generate", "--out", Path(data) / "raw", "--days", "1"], capsys)
    assert code == 2 and expected in last, last
    assert kind == "a_file" or not Path(data).exists()


# --------------------------------------------------------------------------------------------
# 5. one clear line per refusal: the CLI's last line is the root cause of the failed step
# --------------------------------------------------------------------------------------------
def test_root_cause_of_a_step_error_is_the_users_error_not_the_dagster_wrapper():
    from dagster._utils.error import SerializableErrorInfo

    from launch_pipeline.runner import root_cause

    def info(cls, msg, cause=None):
        return SerializableErrorInfo(f"{cls}: {msg}\n", [], cls.rsplit(".", 1)[-1], cause)

    key_error = info("KeyError", "'category'")
    wrapper = info(
        "dagster._core.errors.DagsterExecutionStepExecutionError",
        'Error occurred while executing op "launch_plan":',
        key_error,
    )
    assert root_cause(wrapper) == "KeyError: 'category'"
    duck = info("_duckdb.InvalidInputException", "No magic bytes")
    ours = info(
        "launch_pipeline.errors.InputFileError", "f.parquet: truncated. What to do: x", duck
    )
    failure = info(
        "dagster._core.definitions.events.Failure", "f.parquet: truncated.\nWhat to do: x", ours
    )
    assert root_cause(failure) == "f.parquet: truncated. What to do: x"


def test_cli_last_line_after_a_failed_step_names_file_problem_and_fix(
    tmp_path, capsys, monkeypatch
):
    import os

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LAUNCH_PIPELINE_RAW_DIR", raising=False)
    data = tmp_path / "data"
    raw = data / "raw"
    write_products(
        raw,
        [{"item_id": "p1", "title": "P1", "category": "k", "brand": "a", "price": 10.0}],
        [{"item_id": "n1", "title": "N1", "category": "k", "brand": "a", "price": 20.0}],
    )
    day_file = raw / "events" / f"{DAY}.csv"
    day_file.parent.mkdir()
    day_file.write_bytes(os.urandom(4096))
    (raw / "events" / "readme.md").write_text("# notes\n")
    # the real command in its own process: a failed Dagster step run in-process under pytest's
    # output capture leaves the capture's stream closed for the tests after it
    proc = subprocess.run(
        [sys.executable, "-m", "launch_pipeline.cli", "run", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")},
    )
    code, err = proc.returncode, proc.stderr.strip().splitlines()
    last = err[-1] if err else ""
    assert code == 1
    assert last.startswith(f"error: step raw_events failed: {day_file}: is binary data"), last
    assert "What to do:" in last and "DagsterExecutionStepExecutionError" not in last


# --------------------------------------------------------------------------------------------
# 3. ambiguous formats: detected from evidence, else refused with the option to pass
# --------------------------------------------------------------------------------------------
OR_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def _online_retail(tmp_path, dates, prices=None):
    prices = prices or ["2.55"] * len(dates)
    rows = [
        f'53636{i},85123A,HEART,1,{d},"{p}",17850,United Kingdom'
        for i, (d, p) in enumerate(zip(dates, prices, strict=True))
    ]
    src = tmp_path / "or.csv"
    src.write_text("\n".join([OR_HEADER, *rows]) + "\n")
    return src


def _staged_ts(raw):
    frames = [pd.read_parquet(p) for p in sorted((raw / "events").glob("*.parquet"))]
    return [t for f in frames for t in f["ts"]]


def test_online_retail_day_first_dates_are_read_day_first(tmp_path):
    src = _online_retail(tmp_path, ["01/02/2011 10:00", "13/02/2011 11:00"])
    summary = stage_source("online_retail", src, tmp_path / "raw", candidate_days=0)
    # before: 01/02/2011 was read month-first as 2 January (a plan for the wrong date)
    assert _staged_ts(tmp_path / "raw") == ["2011-02-01T10:00:00Z", "2011-02-13T11:00:00Z"]
    assert summary.notes["date_order"].startswith("day-first: 1 of 2 slash dates prove it")


@pytest.mark.parametrize(
    "dates, problem",
    [
        (["01/02/2011 10:00", "03/04/2011 11:00"], "fit both day-first and month-first"),
        (["13/02/2011 10:00", "02/13/2011 11:00"], "mixes day-first dates"),
    ],
)
def test_online_retail_ambiguous_or_mixed_dates_are_refused(tmp_path, dates, problem):
    src = _online_retail(tmp_path, dates)
    with pytest.raises(InputFileError) as info:
        stage_source("online_retail", src, tmp_path / "raw")
    assert problem in info.value.problem and "--date-format" in info.value.fix
    assert not (tmp_path / "raw").exists()
    if "both" in problem:  # an explicit format settles it
        stage_source(
            "online_retail", src, tmp_path / "raw", date_format="%d/%m/%Y %H:%M", candidate_days=0
        )
        assert _staged_ts(tmp_path / "raw")[0] == "2011-02-01T10:00:00Z"


def test_online_retail_decimal_comma_is_refused_without_the_option(tmp_path):
    src = _online_retail(
        tmp_path, ["2011-02-01 10:00", "2011-02-01 11:00"], prices=["2,55", "1.234,50"]
    )
    with pytest.raises(InputFileError, match="UnitPrice has 2 values with a comma") as info:
        stage_source("online_retail", src, tmp_path / "raw")
    assert "--decimal-comma" in info.value.fix
    stage_source("online_retail", src, tmp_path / "raw", decimal_comma=True, candidate_days=0)
    frames = [pd.read_parquet(p) for p in (tmp_path / "raw" / "events").glob("*.parquet")]
    assert sorted(p for f in frames for p in f["price"]) == ["1234.50", "2.55"]


def test_time_zone_offsets_are_converted_and_abbreviations_quarantined(tmp_path, tiny_catalog):
    src = _online_retail(tmp_path, ["2011-02-02 00:30:00+01:00", "2011-02-01 12:00:00 BST"])
    stage_source("online_retail", src, tmp_path / "or_raw", candidate_days=0)
    ts_ = _staged_ts(tmp_path / "or_raw")
    assert ts_[0] == "2011-02-01T23:30:00Z"  # before: the offset was dropped (00:30 on the 2nd)
    assert ts_[1] == "2011-02-01 12:00:00 BST"  # kept as delivered, for cleaning to name
    (tiny_catalog / "events").mkdir()
    (tiny_catalog / "events" / f"{DAY}.csv").write_text(
        "\n".join(
            [
                HEADER,
                f"u1,p1,view,{DAY}T10:00:00 BST,,,,,s1",
                f"u1,p1,view,{DAY}T10:00:00+01:00,,,,,s1",
                f"u1,p1,view,{DAY}T10:00:00 UTC,,,,,s1",
            ]
        )
        + "\n"
    )
    con, stats = land_all(tiny_catalog)
    assert stats.reasons == {"ambiguous_time_zone": 1}
    assert con.execute("SELECT strftime(ts, '%H:%M') FROM clean_events ORDER BY 1").fetchall() == [
        ("09:00",),
        ("10:00",),
    ]


def test_column_names_with_a_quote_are_quoted_safely(tmp_path):
    header = OR_HEADER.replace("CustomerID", '"Customer""ID"')
    src = tmp_path / "or.csv"
    src.write_text(header + "\n536365,85123A,HEART,1,2011-02-01 10:00,2.55,17850,UK\n")
    stage_source("online_retail", src, tmp_path / "raw1", candidate_days=0)
    assert pd.read_parquet(next((tmp_path / "raw1" / "events").glob("*.parquet")))[
        "user_id"
    ].tolist() == ["17850"]
    frame = pd.DataFrame(
        {
            "InvoiceNo": ["536365"],
            "StockCode": ["85123A"],
            "Quantity": ["1"],
            "InvoiceDate": ["2011-02-01 10:00"],
            "UnitPrice": ["2.55"],
            "CustomerID": ["17850"],
            'x" AS VARCHAR); DROP TABLE _or_src; --': ["boom"],
        }
    )
    frame.to_parquet(tmp_path / "or.parquet")
    summary = stage_source("online_retail", tmp_path / "or.parquet", tmp_path / "raw2")
    assert summary.rows == 1


def test_backtest_cutoff_after_the_data_ends_is_one_clear_line(tmp_path, capsys):
    dates = [f"2011-0{m}-0{d} 10:00" for m in (1, 2, 3) for d in (3, 5)]
    src = _online_retail(tmp_path, dates)
    argv = ["backtest", "--source", "online_retail", "--path", src, "--cutoff", "2012-01-01"]
    code, last = _cli([*argv, "--out", tmp_path / "bt.json", "--work-dir", tmp_path / "w"], capsys)
    assert code == 2 and "cutoff 2012-01-01 is after the data ends" in last, last
    assert "2011-01-03 .. 2011-03-05" in last and not (tmp_path / "bt.json").exists()


# --------------------------------------------------------------------------------------------
# 4. catalog edge cases and degenerate inputs: an empty plan, a warning or a clear refusal
# --------------------------------------------------------------------------------------------
def test_empty_candidate_list_gives_an_empty_plan_with_a_clear_message(tiny_catalog, tmp_path):
    from launch_pipeline.defs.planning import NO_CANDIDATES_MESSAGE, launch_plan
    from launch_pipeline.defs.resources import build_resources
    from launch_pipeline.settings import Settings

    (tiny_catalog / "candidates.csv").write_text("item_id,title,category,brand,price\n")
    settings = Settings.from_env(data_dir=tmp_path, raw_dir=tiny_catalog)
    con = duckdb.connect(str(settings.warehouse_path))
    assert load_launch_candidates(con, tiny_catalog)["rows"] == 0  # allowed: nothing new
    con.close()
    result = dg.materialize(
        [launch_plan], resources=build_resources(settings), instance=dg.DagsterInstance.ephemeral()
    )  # before: KeyError in the planner
    meta = result.asset_materializations_for_node("launch_plan")[0].metadata
    assert meta["launched_products"].value == 0
    assert meta["message"].value == NO_CANDIDATES_MESSAGE and "add the new products" in (
        NO_CANDIDATES_MESSAGE
    )


def test_products_without_a_category_get_a_warning(tiny_catalog):
    pd.DataFrame(
        [
            {"item_id": "n1", "title": "New 1", "category": "", "brand": "a", "price": 20},
            {"item_id": "n2", "title": "New 2", "category": None, "brand": "a", "price": 9},
            {"item_id": "n3", "title": "New 3", "category": "garden", "brand": "a", "price": 9},
        ]
    ).to_csv(tiny_catalog / "candidates.csv", index=False)
    stats = load_launch_candidates(duckdb.connect(), tiny_catalog)
    assert stats["uncategorised"] == 2
    assert stats["warnings"] == [
        "2 of 3 launch candidates have no category: they are grouped as one category 'unknown' "
        "(the per-category cap of the plan limits them together, and category affinities "
        "cannot tell them apart); fill the category column"
    ]


def test_single_user_one_day_no_categories_are_warned_about(tmp_path):
    from launch_pipeline.cleaning import degenerate_warnings

    raw = tmp_path / "raw"
    write_products(
        raw,
        [{"item_id": "p1", "title": "P1", "category": "", "brand": "a", "price": 10.0}],
        [{"item_id": "n1", "title": "N1", "category": "k", "brand": "a", "price": 20.0}],
    )
    (raw / "events").mkdir()
    (raw / "events" / f"{DAY}.csv").write_text(
        "\n".join([HEADER, *(f"u1,p1,view,{ts(DAY.isoformat(), 10, i)},,,,,s1" for i in range(5))])
        + "\n"
    )
    con, _ = land_all(raw)
    expected = [
        "the clean events hold only 1 shopper(s)",
        "the clean events cover only 1 day(s)",
        "the products have 0 real categories",
    ]
    assert [w.split(":")[0] for w in degenerate_warnings(con)] == expected
    # the day just cleaned has too few shoppers: the whole history is counted, same warnings
    assert [w.split(":")[0] for w in degenerate_warnings(con, (DAY, DAY))] == expected


def test_shoppers_are_counted_over_the_history_when_the_new_day_has_few(tmp_path):
    """The nightly shortcut (the new day alone has enough shoppers) and the full count agree:
    12 shoppers on the first day and 1 on the second warn about no shopper count either way."""
    from launch_pipeline.cleaning import MIN_USERS, degenerate_warnings

    raw = tmp_path / "raw"
    write_products(
        raw,
        [{"item_id": "p1", "title": "P1", "category": "a", "brand": "a", "price": 10.0},
         {"item_id": "p2", "title": "P2", "category": "b", "brand": "a", "price": 10.0}],
        [{"item_id": "n1", "title": "N1", "category": "k", "brand": "a", "price": 20.0}],
    )  # fmt: skip
    (raw / "events").mkdir()
    day2 = DAY + dt.timedelta(days=1)
    rows = [f"u{u},p1,view,{ts(DAY.isoformat(), 10, u)},,,,,s{u}" for u in range(MIN_USERS + 2)]
    (raw / "events" / f"{DAY}.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    (raw / "events" / f"{day2}.csv").write_text(
        "\n".join([HEADER, f"u0,p2,view,{ts(day2.isoformat(), 10, 0)},,,,,s9"]) + "\n"
    )
    con, _ = land_all(raw)
    for days_run in (None, (day2, day2), (DAY, day2)):
        warnings = degenerate_warnings(con, days_run)
        assert not any("shopper" in w for w in warnings), (days_run, warnings)
        assert any("cover only 2 day(s)" in w for w in warnings), (days_run, warnings)


def test_eval_model_refuses_a_file_with_one_user(tmp_path, capsys):
    seq = tmp_path / "one.txt"
    seq.write_text("1 1 2 3 4\n")  # before: HR@10 = 1.0
    code, last = _cli(["eval-model", "--sequences", seq, "--out", tmp_path / "o.json"], capsys)
    assert code == 2 and "has 1 user(s) with at least 2 items" in last, last
    many = tmp_path / "few_items.txt"
    many.write_text("".join(f"{u} 1 2 3 4 5\n" for u in range(1, 40)))
    code, last = _cli(["eval-model", "--sequences", many, "--out", tmp_path / "o.json"], capsys)
    assert code == 2 and "has 5 item(s)" in last and "HR@20 would be 1.0" in last, last
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 2 x\n")
    code, last = _cli(["eval-model", "--sequences", bad, "--out", tmp_path / "o.json"], capsys)
    assert code == 2 and "bad.txt:1" in last and "whole-number item ids" in last, last
    assert not (tmp_path / "o.json").exists()


def test_a_malformed_catalog_row_is_quarantined_not_the_whole_file(tiny_catalog):
    # found by the fuzz test: a quoted carriage return in a title made DuckDB's sniffer refuse
    # the whole candidates file; a ragged row or invalid UTF-8 in one row did too
    (tiny_catalog / "candidates.csv").write_bytes(
        b"item_id,title,category,brand,price\n"
        b'n1,"Mug\rlarge",kitchen,acme,20\n'
        b"n2,Tea,garden\n"
        b'n3,"Cup, \xff",garden,acme,9\n'
        b"n4,Pot,garden,acme,9\n"
    )
    con = duckdb.connect()
    stats = load_launch_candidates(con, tiny_catalog)
    assert stats["rows"] == 2 and stats["quarantine_reasons"] == {"malformed_row": 2}
    assert con.execute("SELECT item_id, title FROM launch_candidates").fetchall() == [
        ("n1", "Mug\rlarge"),
        ("n4", "Pot"),
    ]
    assert con.execute(
        "SELECT source_row, reason FROM quarantined_products ORDER BY 1"
    ).fetchall() == [(1, "malformed_row"), (2, "malformed_row")]


def test_a_single_parquet_events_file_stages_with_canonical(tmp_path):
    # found by the fuzz test: every single Parquet events file failed with a DuckDB catalog
    # error (a view dropped as a table)
    src = _folder(tmp_path)
    frame = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["p1", "n1"], "event_type": ["view", "view"],
         "ts": [ts(DAY.isoformat()), ts((DAY + dt.timedelta(days=1)).isoformat())]}
    )  # fmt: skip
    frame.to_parquet(src / "events.parquet")
    summary = stage_source("canonical", src / "events.parquet", tmp_path / "raw")
    assert (summary.rows, summary.days) == (2, 2)


def test_a_bare_carriage_return_in_a_day_file_is_one_clear_line(tiny_catalog):
    (tiny_catalog / "events").mkdir()
    (tiny_catalog / "events" / f"{DAY}.csv").write_bytes(
        (HEADER + "\n" + f"u1,p1,review,{ts(DAY.isoformat())},,,5,good\rbad,s1\n").encode()
        + (f"u2,p1,view,{ts(DAY.isoformat())},,,,,s2\n").encode()
    )
    with pytest.raises(InputFileError) as info:  # before: "state machine reached an invalid state"
        land_all(tiny_catalog)
    assert "bare carriage return (\\r) inside line 2" in info.value.problem
    assert "remove the stray carriage returns" in info.value.fix


def test_staging_accounting_is_counted_not_assumed(tmp_path, monkeypatch):
    from launch_pipeline.adapters import staging

    src = _folder(tmp_path)
    events = src / "events.csv"
    events.write_text(day_text(DAY, 3))
    real = staging.write_events

    def lossy(con, table, raw_dir, start, end):  # a writer that loses a row on the way
        con.execute(f"DELETE FROM {table} WHERE seq = (SELECT max(seq) FROM {table})")
        out = real(con, table, raw_dir, start, end)
        con.execute(f"INSERT INTO {table} SELECT * FROM {table} LIMIT 1")
        return out

    monkeypatch.setattr(staging, "write_events", lossy)
    with pytest.raises(AccountingError, match="the source gave 3 rows, 2 were written"):
        stage_source("canonical", events, tmp_path / "raw")


def test_control_characters_in_a_small_catalog_file_are_not_binary_data(tiny_catalog):
    # found by the fuzz test: three control characters in a title made a 49-byte candidates
    # file "binary data" (and the message spoke of day's events)
    (tiny_catalog / "candidates.csv").write_bytes(
        b"item_id,title,category,brand,price\nn1,\x01\x02\x03,,,10\n"
    )
    stats = load_launch_candidates(duckdb.connect(), tiny_catalog)
    assert stats["rows"] == 1


def test_long_commands_check_out_and_work_dir_before_they_start(tmp_path, capsys):
    seq = tmp_path / "s.txt"
    seq.write_text("1 1 2 3\n")
    code, last = _cli(["eval-model", "--sequences", seq, "--out", "/usr/lp_test/o.json"], capsys)
    assert code == 2 and "folder of --out /usr/lp_test" in last and "system folder" in last
    argv = ["backtest", "--source", "online_retail", "--path", seq, "--cutoff", "2011-01-01"]
    code, last = _cli([*argv, "--out", tmp_path / "o.json", "--work-dir", "/etc/lp"], capsys)
    assert code == 2 and "--work-dir /etc/lp" in last, last
    code, last = _cli([*argv, "--out", tmp_path], capsys)
    assert code == 2 and "is a folder: name the JSON file" in last, last
    assert not Path("/usr/lp_test").exists() and not Path("/etc/lp").exists()
