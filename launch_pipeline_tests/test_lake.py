"""Partition files: atomic replace, stamps that change on every write, empty datasets."""

import datetime as dt

import duckdb
import pytest

from launch_pipeline import lake
from launch_pipeline.errors import ConfigurationError

DAY = dt.date(2026, 1, 2)


def test_write_read_replace_and_remove(tmp_path):
    con = duckdb.connect()
    first = lake.write_partition(con, "SELECT range AS x FROM range(5)", tmp_path, "events", DAY)
    assert first.rows == 5 and first.day == DAY
    files = lake.partition_files(tmp_path, "events")
    sql = lake.dataset_relation_sql(
        files, "SELECT 1::BIGINT AS x, DATE '2000-01-01' AS day WHERE false"
    )
    rows = con.execute(f"SELECT count(*), min(day) FROM ({sql})").fetchone()
    assert rows == (5, DAY)

    second = lake.write_partition(con, "SELECT ? AS x", tmp_path, "events", DAY, params=[7])
    assert second.rows == 1 and second.version != first.version
    assert lake.read_stamps(tmp_path, "events") == {DAY: second}
    assert con.execute(f"SELECT x FROM ({lake.dataset_relation_sql(files, '')})").fetchall() == [
        (7,)
    ]
    assert not list(lake.partition_dir(tmp_path, "events", DAY).glob("*.tmp"))

    assert lake.remove_partition(tmp_path, "events", DAY)
    assert lake.read_stamps(tmp_path, "events") == {}
    assert not lake.remove_partition(tmp_path, "events", DAY)


def test_failed_write_keeps_the_old_partition(tmp_path):
    con = duckdb.connect()
    lake.write_partition(con, "SELECT 1 AS x", tmp_path, "events", DAY)
    with pytest.raises(duckdb.Error):
        lake.write_partition(con, "SELECT no_such_column FROM range(3)", tmp_path, "events", DAY)
    files = lake.partition_files(tmp_path, "events")
    assert con.execute(f"SELECT x FROM ({lake.dataset_relation_sql(files, '')})").fetchall() == [
        (1,)
    ]
    assert not list(lake.partition_dir(tmp_path, "events", DAY).glob(".*"))


def test_empty_dataset_uses_the_empty_select_and_bad_names_are_refused(tmp_path):
    empty = "SELECT 1 AS x, DATE '2000-01-01' AS day WHERE false"
    assert lake.dataset_relation_sql(lake.partition_files(tmp_path, "events"), empty) == empty
    with pytest.raises(ConfigurationError):
        lake.partition_dir(tmp_path, "../escape", DAY)
