"""What a merchandiser sees: the plan as a Dagster table with described columns and rounded
numbers, the report's sections, and one progress line per step in the terminal."""

from __future__ import annotations

import uuid

import dagster as dg
import pandas as pd

from launch_pipeline import launch_planner as lp
from launch_pipeline.defs.planning import PLAN_TABLE_COLUMNS, plan_table_metadata
from launch_pipeline.report import plan_table, write_plan_report
from launch_pipeline.runner import StepWatcher, output_to
from launch_pipeline_tests.test_launch_planner import CREATED, _inputs, _settings


def test_plan_is_a_dagster_table_with_described_columns_and_rounded_numbers():
    res = lp.build_plan(_inputs(), _settings(slots=3, category_cap=None), CREATED)
    meta = plan_table_metadata(res.plan)
    assert isinstance(meta, dg.TableMetadataValue)
    cols = meta.schema.columns
    assert [c.name for c in cols] == [n for n, _, _ in PLAN_TABLE_COLUMNS]
    assert all(c.description for c in cols)
    assert len(meta.records) == 3
    for rec in meta.records:
        data = rec.data
        assert data["revenue"] == round(data["revenue"])  # whole money
        assert isinstance(data["units"], int) and isinstance(data["order"], int)
        assert data["launch_utc"] and data["launch_local"]
    shown = plan_table(res.plan)
    assert shown["units sold (80% range)"].str.fullmatch(r"[\d,]+ \([\d,]+-[\d,]+\)").all()


def test_report_speaks_to_merchandisers_first(tmp_path):
    inp = _inputs()
    res = lp.build_plan(inp, _settings(slots=3, category_cap=1), CREATED)
    res.summary.update(run_id="", plan_seconds=0.1)
    path = write_plan_report(
        tmp_path / "launch_plan_x.md", res, inp.overall, pd.DataFrame([res.summary]), {}
    )
    text = path.read_text()
    merch, analysts = text.split("## For analysts")
    for words in ("Launch 3 new products", "Why these products", "Close alternatives left out",
                  "Scenarios compared", "Value of an extra launch slot", "category cap"):  # fmt: skip
        assert words in merch, words
    assert "usually sells more" not in merch  # no demand model: nothing learned from launches
    for jargon in ("r_ij", "HiGHS", "MILP", "NDCG", "Status 7"):
        assert jargon not in merch, jargon
    assert "MILP" in analysts and "r_ij" in analysts
    assert (tmp_path / "launch_plan_x_slot_value.png").exists()


def test_the_units_range_says_how_far_it_was_checked(tmp_path):
    import dataclasses

    from launch_pipeline.demand import DemandModel
    from launch_pipeline.report import units_range_note

    model = DemandModel(
        features=["text_knn5"], coefficients={"text_knn5": 0.3}, windows=[], launches=120,
        level=10.0, ratio_quantiles={"p10": 0.1, "p50": 1.0, "p90": 4.0}, train_spearman=0.4,
        interval_from="split-conformal on 1234 replayed past launches",
        interval_replayed_launches=1234,
    )  # fmt: skip
    checked = units_range_note(model)
    assert "held 8 in 10" in checked and "1,234" in checked
    in_sample = units_range_note(
        dataclasses.replace(
            model,
            interval_replayed_launches=0,
            interval_from="in-sample ratios widened by the past level changes",
        )
    )
    assert (
        "could not yet be checked" in in_sample and "fewer than 8 launches in 10 may" in in_sample
    )
    assert "too few past launches" in units_range_note(None)
    # a model stored before the count was kept: checked, without the count
    stored = dataclasses.replace(model, interval_replayed_launches=0)
    assert "held 8 in 10 of the shop's past launches when" in units_range_note(stored)
    assert len({checked, in_sample, units_range_note(None)}) == 3
    # the report carries it, and the analysts' section says where the interval came from
    inp = _inputs()
    res = lp.build_plan(inp, _settings(slots=3, category_cap=1), CREATED)
    res.summary.update(run_id="", plan_seconds=0.1)
    path = write_plan_report(
        tmp_path / "launch_plan_x.md", res, inp.overall, pd.DataFrame([res.summary]),
        {"demand_model": model},
    )  # fmt: skip
    merch, analysts = path.read_text().split("## For analysts")
    assert checked in merch and "8 launches in 10. *Order*" not in merch
    # what the forecasts are learned from (past launches seen to the end of their period)
    assert "usually sells more" in merch and "Over the next" in merch
    assert "split-conformal on 1234 replayed past launches" in analysts


def test_one_progress_line_per_step_and_the_log_in_a_file(tmp_path, capfd):
    @dg.asset
    def first() -> int:
        print("noisy library output")
        return 1

    @dg.asset
    def second(first: int) -> int:
        return first + 1

    job = dg.Definitions(assets=[first, second]).resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    lines: list[str] = []
    log = tmp_path / "run.log"
    run_id = str(uuid.uuid4())
    with capfd.disabled(), output_to(log):  # pytest's own capture would take the output
        watcher = StepWatcher(instance, run_id, lines.append, every_s=0.1)
        watcher.start()
        job.execute_in_process(instance=instance, run_id=run_id)
        watcher.stop()
    assert [line.split("] ")[1].split(":")[0] for line in lines] == ["first", "second"]
    assert all(": done in " in line for line in lines)
    text = log.read_text()
    assert "noisy library output" in text and "STEP_SUCCESS" in text
