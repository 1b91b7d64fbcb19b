"""The bad-input catalogue (docs/operations.md): every kind of broken delivery is either
quarantined with a reason (row-level problems; ``raw = clean + quarantined`` still holds) or
stops the run at its first step with a message that names the file and says what to do
(file-level problems). Never a bare stack trace, never a silent loss."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os

import dagster as dg
import duckdb
import pandas as pd
import pytest

from launch_pipeline.catalog import load_launch_candidates, load_product_catalog
from launch_pipeline.cleaning import clean_partitions
from launch_pipeline.defs.resources import (
    ENV_ALLOWED_ROOTS,
    LaunchPipelineConfig,
    quote_identifier,
    validate_identifier,
    validate_paths,
)
from launch_pipeline.errors import ConfigurationError, InputFileError
from launch_pipeline.raw_io import MAX_LINE_BYTES, event_day_files, load_event_day, partition_range
from launch_pipeline.runner import run_pipeline
from launch_pipeline.settings import CleaningRules, Settings
from launch_pipeline_tests.conftest import DAY, EVENT_HEADER, ts, write_events_csv

HEADER = ",".join(EVENT_HEADER)
GOOD = f"u1,p1,view,{ts(DAY.isoformat())},,,,,s1"
GOOD2 = f"u2,p2,view,{ts(DAY.isoformat(), 11)},,,,,s2"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _day_file(raw, suffix="csv"):
    return raw / "events" / f"{DAY}.{suffix}"


def land_and_clean(raw, content, suffix="csv"):
    """Land the day file (text, bytes, rows or a DataFrame) and clean it; returns the
    connection and {source_row: reason} of the quarantined rows."""
    path = _day_file(raw, suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, pd.DataFrame):
        content.to_parquet(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_events_csv(path, content)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    load_product_catalog(con, raw)
    load_launch_candidates(con, raw)
    landed = load_event_day(con, raw, DAY, path, lake_dir=raw.parent / "lake")
    stats = clean_partitions(con, DAY, DAY, CleaningRules(), lake_dir=raw.parent / "lake")
    assert stats.raw == landed == stats.clean + stats.quarantined, stats  # no loss
    reasons = dict(
        con.execute("SELECT source_row, reason FROM quarantined_events ORDER BY 1").fetchall()
    )
    return con, reasons


def file_error(raw, content, suffix="csv") -> InputFileError:
    with pytest.raises(InputFileError) as info:
        land_and_clean(raw, content, suffix)
    err = info.value
    assert str(_day_file(raw, suffix)) in str(err) or err.path.endswith(f"{DAY}.{suffix}")
    assert "What to do:" in str(err) and err.fix
    return err


def lines(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


# --------------------------------------------------------------------------------------------
# file-level problems: the run stops with the file and what to do
# --------------------------------------------------------------------------------------------
def test_wrong_column_names(tiny_catalog):
    err = file_error(tiny_catalog, "uid,iid,type,time\nu1,p1,view,2026-11-01T10:00:00Z\n")
    assert "missing required columns" in err.problem and "user_id" in err.problem
    assert "rename or add the columns" in err.fix


def test_semicolon_separated_file(tiny_catalog):
    err = file_error(tiny_catalog, lines(GOOD).replace(",", ";"))
    assert "missing required columns" in err.problem


def test_duplicated_column_names(tiny_catalog):
    err = file_error(tiny_catalog, "user_id,item_id,event_type,ts,USER_ID\nu1,p1,view,x,u2\n")
    assert "duplicated column names" in err.problem


def test_empty_file(tiny_catalog):
    err = file_error(tiny_catalog, "")
    assert "empty (0 bytes)" in err.problem


def test_binary_garbage(tiny_catalog):
    err = file_error(tiny_catalog, os.urandom(4096))
    assert "binary data" in err.problem


def test_parquet_file_named_csv(tiny_catalog):
    frame = pd.DataFrame({"user_id": ["u1"], "item_id": ["p1"], "event_type": ["view"]})
    path = tiny_catalog / "x.parquet"
    frame.to_parquet(path)
    err = file_error(tiny_catalog, path.read_bytes())
    assert "Parquet file with a .csv name" in err.problem and ".parquet" in err.fix


def test_non_utf8_header(tiny_catalog):
    err = file_error(tiny_catalog, "user_id,item_id,event_type,ts,r\xe9sum\xe9\n".encode("latin-1"))
    assert "not UTF-8" in err.problem and "iconv" in err.fix


def test_truncated_parquet(tiny_catalog):
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(200)],
            "item_id": ["p1"] * 200,
            "event_type": ["view"] * 200,
            "ts": [ts(DAY.isoformat())] * 200,
        }
    )
    path = _day_file(tiny_catalog, "parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path)
    data = path.read_bytes()
    err = file_error(tiny_catalog, data[: len(data) // 2], "parquet")
    assert "cannot be read as PARQUET" in err.problem and "truncated" in err.fix


def test_missing_partition_file(tiny_catalog):
    con = duckdb.connect()
    with pytest.raises(InputFileError) as info:
        load_event_day(
            con, tiny_catalog, DAY, _day_file(tiny_catalog), lake_dir=tiny_catalog.parent / "lake"
        )
    assert f"no events file for partition {DAY}" in str(info.value)
    assert "deliver events/" in info.value.fix


def test_two_files_for_one_day(tiny_catalog):
    write_events_csv(_day_file(tiny_catalog), lines(GOOD))
    pd.DataFrame({"user_id": ["u1"]}).to_parquet(_day_file(tiny_catalog, "parquet"))
    with pytest.raises(InputFileError, match="two event files"):
        event_day_files(tiny_catalog)


def test_invalid_manifest(tiny_catalog):
    (tiny_catalog / "dataset.json").write_text("{not json")
    with pytest.raises(InputFileError, match="dataset.json: is not valid JSON"):
        partition_range(tiny_catalog)


def test_candidate_file_without_usable_rows(tiny_catalog):
    pd.DataFrame(
        [{"item_id": "", "title": "x", "category": "c", "brand": "b", "price": -1}]
    ).to_csv(tiny_catalog / "candidates.csv", index=False)
    con = duckdb.connect()
    with pytest.raises(InputFileError, match="has no usable rows") as info:
        load_launch_candidates(con, tiny_catalog)
    assert "candidates.csv" in str(info.value)


def test_symlinked_day_file_outside_raw_dir(tiny_catalog, tmp_path):
    outside = tmp_path / "elsewhere.csv"
    outside.write_text(lines(GOOD))
    link = _day_file(tiny_catalog)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    con = duckdb.connect()
    with pytest.raises(InputFileError, match="outside the raw data directory"):
        load_event_day(con, tiny_catalog, DAY, link, lake_dir=tiny_catalog.parent / "lake")


# --------------------------------------------------------------------------------------------
# configuration problems
# --------------------------------------------------------------------------------------------
def test_configured_path_outside_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("LAUNCH_PIPELINE_RAW_DIR", raising=False)
    monkeypatch.delenv(ENV_ALLOWED_ROOTS, raising=False)
    data = tmp_path / "data"
    with pytest.raises(ConfigurationError, match="outside the data directory"):
        validate_paths(data, data / ".." / ".." / "etc")
    with pytest.raises(ConfigurationError, match="outside the data directory"):
        validate_paths(data, "/etc")
    with pytest.raises(ConfigurationError, match="system folder"):
        validate_paths("/etc/launch", "/etc/launch/raw")
    assert validate_paths(data, data / "raw")[1] == (data / "raw").resolve()
    monkeypatch.setenv(ENV_ALLOWED_ROOTS, str(tmp_path / "shared"))
    assert validate_paths(data, tmp_path / "shared" / "raw")[1].name == "raw"
    # through the resource: a dagster.Failure that says what to change
    cfg = LaunchPipelineConfig(data_dir=str(data), raw_dir="/etc")
    with pytest.raises(dg.Failure, match="invalid configuration of the `pipeline` resource"):
        cfg.settings()


def test_sql_identifiers_from_configuration_are_validated():
    assert validate_identifier("clean_events") == "clean_events"
    for bad in ("clean_events; DROP TABLE x", "1table", "drop", 'a"b', "", "x" * 64):
        with pytest.raises(ConfigurationError):
            validate_identifier(bad)
    assert quote_identifier('we"ird') == '"we""ird"'


# --------------------------------------------------------------------------------------------
# row-level problems: quarantined with a reason
# --------------------------------------------------------------------------------------------
def test_wrong_types_are_quarantined(tiny_catalog):
    day = DAY.isoformat()
    _, reasons = land_and_clean(
        tiny_catalog,
        lines(
            GOOD,
            f"u1,p1,purchase,{ts(day, 12)},1,ten dollars,,,s1",
            f"u1,p1,purchase,{ts(day, 13)},two,10,,,s1",
            f"u1,p1,review,{ts(day, 14)},,,five,nice,s1",
            "u1,p1,view,yesterday at noon,,,,,s1",
        ),
    )
    assert reasons == {
        1: "invalid_price",
        2: "invalid_quantity",
        3: "invalid_rating",
        4: "invalid_timestamp",
    }


def test_parquet_with_other_column_types(tiny_catalog):
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": ["p1", "p2"],
            "event_type": ["view", "purchase"],
            "ts": [pd.Timestamp(f"{DAY} 10:00"), pd.Timestamp(f"{DAY} 11:00")],
            "price": [None, -3.0],
        }
    )
    con, reasons = land_and_clean(tiny_catalog, frame, "parquet")
    assert reasons == {1: "invalid_price"}
    assert con.execute("SELECT user_id FROM clean_events").fetchall() == [("1",)]


def test_huge_single_line(tiny_catalog):
    long_review = "x" * (MAX_LINE_BYTES + 10)
    con, reasons = land_and_clean(
        tiny_catalog,
        lines(GOOD, f"u9,p1,review,{ts(DAY.isoformat())},,,5,{long_review},s9", GOOD2),
    )
    assert reasons == {1: "malformed_row"}
    detail = con.execute("SELECT detail FROM quarantined_events").fetchall()[0][0]
    assert "LINE SIZE OVER MAXIMUM" in detail


def test_non_utf8_row(tiny_catalog):
    bad = f"u3,p1,review,{ts(DAY.isoformat())},,,4,tr\xe8s bon caf\xe9,s3".encode("latin-1")
    content = (HEADER + "\n" + GOOD + "\n").encode() + bad + ("\n" + GOOD2 + "\n").encode()
    con, reasons = land_and_clean(tiny_catalog, content)
    assert reasons == {1: "malformed_row"}
    detail = con.execute("SELECT detail FROM quarantined_events").fetchall()[0][0]
    assert "INVALID ENCODING" in detail


def test_wrong_field_count_and_unterminated_quote(tiny_catalog):
    _, reasons = land_and_clean(
        tiny_catalog,
        lines(GOOD, "x,y", GOOD2, f'u4,p1,review,{ts(DAY.isoformat())},,,5,"never closed,s4'),
    )
    assert reasons == {1: "malformed_row", 3: "malformed_row"}


def test_duplicated_events(tiny_catalog):
    _, reasons = land_and_clean(tiny_catalog, lines(GOOD, GOOD, GOOD2, GOOD))
    assert reasons == {1: "exact_duplicate", 3: "exact_duplicate"}


def test_future_timestamps(tiny_catalog):
    _, reasons = land_and_clean(tiny_catalog, lines(GOOD, "u1,p1,view,2099-01-01T00:00:00Z,,,,,s1"))
    assert reasons == {1: "future_timestamp"}


def test_timestamp_on_another_day(tiny_catalog):
    other = (DAY - dt.timedelta(days=1)).isoformat()
    _, reasons = land_and_clean(tiny_catalog, lines(GOOD, f"u1,p1,view,{ts(other)},,,,,s1"))
    assert reasons == {1: "timestamp_outside_partition"}


def test_unknown_items(tiny_catalog):
    _, reasons = land_and_clean(
        tiny_catalog, lines(GOOD, f"u1,nope,view,{ts(DAY.isoformat())},,,,,s1")
    )
    assert reasons == {1: "unknown_item"}


def test_missing_ids(tiny_catalog):
    day = DAY.isoformat()
    _, reasons = land_and_clean(
        tiny_catalog, lines(GOOD, f",p1,view,{ts(day)},,,,,s1", f"u1,,view,{ts(day)},,,,,s1")
    )
    assert reasons == {1: "missing_user_id", 2: "missing_item_id"}


def test_negative_prices(tiny_catalog):
    pd.DataFrame(
        [
            {"item_id": "p1", "title": "P1", "category": "kitchen", "brand": "a", "price": 11},
            {"item_id": "p2", "title": "P2", "category": "kitchen", "brand": "a", "price": -5},
        ]
    ).to_csv(tiny_catalog / "products.csv", index=False)
    con, reasons = land_and_clean(
        tiny_catalog, lines(GOOD, f"u1,p1,purchase,{ts(DAY.isoformat(), 12)},1,-9.99,,,s1")
    )
    assert reasons == {1: "invalid_price"}
    assert con.execute("SELECT item_id, reason FROM quarantined_products").fetchall() == [
        ("p2", "invalid_price")
    ]


def test_candidate_list_with_duplicate_ids(tiny_catalog):
    pd.DataFrame(
        [
            {"item_id": "n1", "title": "New 1", "category": "kitchen", "brand": "a", "price": 20},
            {
                "item_id": "n1",
                "title": "New 1 again",
                "category": "garden",
                "brand": "b",
                "price": 9,
            },
            {"item_id": "n2", "title": "New 2", "category": "garden", "brand": "b", "price": 30},
        ]
    ).to_csv(tiny_catalog / "candidates.csv", index=False)
    con = duckdb.connect()
    stats = load_launch_candidates(con, tiny_catalog)
    assert stats["rows"] == 2 and stats["quarantine_reasons"] == {"duplicate_item_id": 1}
    assert con.execute("SELECT title FROM launch_candidates WHERE item_id = 'n1'").fetchall() == [
        ("New 1",)
    ]
    assert con.execute("SELECT source_row, reason FROM quarantined_products").fetchall() == [
        (1, "duplicate_item_id")
    ]


def test_ids_and_review_text_that_look_like_sql(tiny_catalog):
    evil_user = "x'); DROP TABLE raw_events; --"
    evil_text = "'; DELETE FROM clean_events WHERE '1'='1"
    row = f'"{evil_user}",p1,review,{ts(DAY.isoformat())},,,4,"{evil_text}",s1'
    con, reasons = land_and_clean(tiny_catalog, lines(GOOD, row))
    assert reasons == {}
    got = con.execute(
        "SELECT user_id, review_text FROM clean_events WHERE event_type = 'review'"
    ).fetchall()
    assert got == [(evil_user, evil_text)]
    assert con.execute("SELECT count(*) FROM raw_events").fetchall()[0][0] == 2


def test_sql_looking_column_name_in_parquet(tiny_catalog):
    frame = pd.DataFrame(
        {
            "user_id": ["u1"],
            "item_id": ["p1"],
            "event_type": ["view"],
            "ts": [ts(DAY.isoformat())],
            'x" AS VARCHAR); DROP TABLE raw_events; --': ["boom"],
        }
    )
    con, reasons = land_and_clean(tiny_catalog, frame, "parquet")
    assert reasons == {}
    assert con.execute("SELECT count(*) FROM clean_events").fetchall()[0][0] == 1


def test_header_only_file_lands_nothing(tiny_catalog):
    con, reasons = land_and_clean(tiny_catalog, HEADER + "\n")
    assert reasons == {}
    assert con.execute("SELECT count(*) FROM raw_events").fetchall()[0][0] == 0


# --------------------------------------------------------------------------------------------
# through the real job: a file-level problem stops the run at the first step, with a message
# --------------------------------------------------------------------------------------------
def _settings(tmp_path, raw):
    settings = Settings.from_env(data_dir=tmp_path / "data", raw_dir=raw)
    return dataclasses.replace(settings, model_time_budget_s=2.0)


@pytest.mark.parametrize(
    "kind", ["binary_garbage", "truncated_parquet", "wrong_columns", "raw_dir_outside"]
)
def test_file_level_problem_stops_the_run_at_the_first_step(tmp_path, kind, monkeypatch):
    monkeypatch.delenv("LAUNCH_PIPELINE_RAW_DIR", raising=False)
    monkeypatch.delenv(ENV_ALLOWED_ROOTS, raising=False)
    data = tmp_path / "data"
    raw = data / "raw" if kind != "raw_dir_outside" else tmp_path / "outside_raw"
    from launch_pipeline_tests.conftest import write_products

    write_products(
        raw,
        [{"item_id": "p1", "title": "P1", "category": "k", "brand": "a", "price": 10.0}],
        [{"item_id": "n1", "title": "N1", "category": "k", "brand": "a", "price": 20.0}],
    )
    day_file = _day_file(raw, "parquet" if kind == "truncated_parquet" else "csv")
    day_file.parent.mkdir(parents=True, exist_ok=True)
    if kind == "binary_garbage":
        day_file.write_bytes(os.urandom(4096))
    elif kind == "truncated_parquet":
        pd.DataFrame({"user_id": ["u1"] * 50, "ts": ["x"] * 50}).to_parquet(day_file)
        day_file.write_bytes(day_file.read_bytes()[:100])
    elif kind == "wrong_columns":
        day_file.write_text("uid,iid,type,time\nu1,p1,view,x\n")
    else:
        day_file.write_text(lines(GOOD))
    (raw / "dataset.json").write_text(
        json.dumps({"start_date": DAY.isoformat(), "end_date": DAY.isoformat()})
    )
    instance = dg.DagsterInstance.ephemeral()
    outcome = run_pipeline(_settings(tmp_path, raw), instance=instance)
    assert not outcome.success
    text = "\n".join(outcome.failures)
    if kind == "raw_dir_outside":
        assert "outside the data directory" in text and "LAUNCH_PIPELINE_ALLOWED_ROOTS" in text
    else:
        assert str(day_file) in text and "What to do:" in text, text
        assert text.startswith("raw_events:"), text
    assert "Traceback" not in text
    for downstream in ("clean_events", "item_features", "preference_model", "launch_plan"):
        assert instance.get_latest_materialization_event(dg.AssetKey(downstream)) is None
