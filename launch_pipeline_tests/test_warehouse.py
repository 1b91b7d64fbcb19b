"""The one "replace these rows atomically" helper every warehouse writer uses."""

from __future__ import annotations

import pytest

from launch_pipeline.warehouse import Rows, replace_atomically, table_summary


@pytest.fixture
def days(con):
    con.execute("CREATE TABLE t (day INTEGER, v VARCHAR)")
    con.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (2, 'c'), (3, 'd')")
    return con


def _rows(con):
    return con.execute("SELECT day, v FROM t ORDER BY day, v").fetchall()


def test_replaces_only_the_selected_rows(days):
    with replace_atomically(days, Rows("t", "day = ?", [2])):
        days.execute("INSERT INTO t VALUES (2, 'x')")
    assert _rows(days) == [(1, "a"), (2, "x"), (3, "d")]


def test_several_selections_and_a_rerun_give_the_same_rows(days):
    for _ in range(2):
        with replace_atomically(
            days, Rows("t", "day BETWEEN ? AND ?", [1, 2]), Rows("t", "day = ?", [3])
        ):
            days.execute("INSERT INTO t VALUES (1, 'n'), (3, 'm')")
    assert _rows(days) == [(1, "n"), (3, "m")]


def test_an_error_in_the_body_keeps_the_old_rows(days):
    before = _rows(days)
    with (
        pytest.raises(RuntimeError, match="boom"),
        replace_atomically(days, Rows("t", "day = ?", [2])),
    ):
        days.execute("INSERT INTO t VALUES (2, 'half')")
        raise RuntimeError("boom")
    assert _rows(days) == before
    # the connection is usable again (no transaction left open)
    with replace_atomically(days):
        days.execute("CREATE OR REPLACE TABLE u AS SELECT 1 AS one")
    assert days.execute("SELECT one FROM u").fetchall() == [(1,)]


def test_table_summary_counts_describes_and_previews(days):

    s = table_summary(days, "t", preview_rows=2)
    assert s.rows == 4
    assert s.schema == [("day", "INTEGER"), ("v", "VARCHAR")]
    assert list(s.preview.columns) == ["day", "v"] and len(s.preview) == 2
