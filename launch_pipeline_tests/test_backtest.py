"""The backtest: staging a cutoff, no look-ahead (poisoned future data), metrics on hand-computed
cases, and the whole command on a tiny synthetic Online-Retail-like file."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from launch_pipeline import backtest as bt
from launch_pipeline.adapters import stage_source
from launch_pipeline.errors import ConfigurationError

CUTOFF = dt.date(2011, 3, 1)
HORIZON = 30
HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
          "CustomerID", "Country"]  # fmt: skip

OLD_TITLES = [
    "JUMBO BAG RED RETROSPOT", "JUMBO BAG PINK POLKADOT", "LUNCH BAG RED RETROSPOT",
    "LUNCH BAG SPACEBOY", "WHITE HANGING HEART T-LIGHT HOLDER", "RED HANGING HEART T-LIGHT HOLDER",
    "REGENCY CAKESTAND 3 TIER", "REGENCY TEACUP AND SAUCER", "PAPER CHAIN KIT VINTAGE CHRISTMAS",
    "PAPER BUNTING RETROSPOT", "HAND WARMER UNION JACK", "HAND WARMER RED POLKA DOT",
    "ALARM CLOCK BAKELIKE RED", "ALARM CLOCK BAKELIKE GREEN", "SET OF 3 CAKE TINS PANTRY",
    "PACK OF 72 RETROSPOT CAKE CASES", "WOODEN PICTURE FRAME WHITE", "DOORMAT HEARTS",
    "GLASS STAR FROSTED T-LIGHT HOLDER", "PARTY BUNTING",
]  # fmt: skip
NEW_TITLES = [
    "JUMBO BAG APPLES", "LUNCH BAG APPLE DESIGN", "REGENCY MILK JUG PINK", "WALL ART BIG LOVE",
    "WALL ART KEEP CALM", "DOORMAT KEEP CALM", "ALARM CLOCK BAKELIKE PINK", "SPOTTY BUNTING",
]  # fmt: skip


PAST_KINDS = ["JUMBO BAG", "LUNCH BAG", "WALL ART", "DOORMAT", "ALARM CLOCK", "CAKE TINS"]
PAST_PRINTS = ["APPLES", "DOLLY GIRL", "SPACEBOY", "VINTAGE LEAF", "ROSES", "STRAWBERRY",
               "SKULLS", "BIRDS", "PAISLEY", "WOODLAND", "SCANDI", "CIRCUS"]  # fmt: skip


def _tiny_lines(seed: int = 3) -> pd.DataFrame:
    """About 4 months of invoices of 40 customers: 20 products on sale from the start, 72
    launched in January and February (the past launches the demand model learns from), 8 new
    ones first sold after the cutoff (some of them before it in no way), returns, guest lines,
    postage."""
    rng = np.random.default_rng(seed)
    old = [(f"{21000 + 7 * k}", t, round(float(rng.choice([0.85, 1.65, 2.1, 4.95])), 2))
           for k, t in enumerate(OLD_TITLES)]  # fmt: skip
    past = [(f"{22000 + k}", f"{kind} {PAST_PRINTS[k % len(PAST_PRINTS)]}",
             round(float(rng.choice([0.85, 1.65, 2.1, 4.95])), 2))
            for k, kind in enumerate(PAST_KINDS * 12)]  # fmt: skip
    new = [(f"{23100 + k}", t, round(float(rng.choice([1.25, 2.08, 4.95, 8.25])), 2))
           for k, t in enumerate(NEW_TITLES)]  # fmt: skip
    launch = {
        code: CUTOFF + dt.timedelta(days=int(2 + 3 * k)) for k, (code, _, _) in enumerate(new)
    }
    for k, (code, _, _) in enumerate(past):
        day = dt.date(2011, 1, 2) + dt.timedelta(days=int(k * 55 / len(past)))
        launch[code] = day + dt.timedelta(days=int(day.weekday() == 5))  # no sales on Saturdays
    rows = []
    inv = 536000
    day = dt.date(2010, 12, 1)
    while day < CUTOFF + dt.timedelta(days=HORIZON + 10):
        if day.weekday() != 5:
            for _ in range(int(rng.integers(3, 7))):
                inv += 1
                cust = int(rng.integers(0, 40))
                hour = int(rng.choice([8, 9, 10, 11, 12, 13, 14, 15]) + (cust % 3))
                when = dt.datetime.combine(day, dt.time(hour, int(rng.integers(0, 60))))
                avail = old + [p for p in past + new if launch[p[0]] <= day]
                pool = rng.choice(len(avail), size=min(len(avail), int(rng.integers(2, 6))),
                                  replace=False)  # fmt: skip
                for j in pool:
                    code, title, price = avail[j]
                    qty = int(rng.choice([1, 2, 6, 12, 24]))
                    rows.append([str(inv), code, title, qty, when, price, 12000.0 + cust, "UK"])
                if rng.random() < 0.3:
                    rows.append([str(inv), "POST", "POSTAGE", 1, when, 18.0, 12000.0 + cust, "UK"])
                if rng.random() < 0.1:
                    code, title, price = avail[int(pool[0])]
                    rows.append([f"C{inv}", code, title, -1, when + dt.timedelta(hours=1), price,
                                 12000.0 + cust, "UK"])  # fmt: skip
            for code, title, price in past:  # a past launch sells on its launch day
                if launch[code] == day:
                    inv += 1
                    when = dt.datetime.combine(day, dt.time(15, 30))
                    rows.append([str(inv), code, title, 6, when, price, 12000.0 + inv % 40, "UK"])
            guest = old[int(rng.integers(0, len(old)))]
            rows.append([str(inv + 1), guest[0], guest[1], 3,
                         dt.datetime.combine(day, dt.time(16)), guest[2], None, "UK"])  # fmt: skip
            inv += 1
        day += dt.timedelta(days=1)
    df = pd.DataFrame(rows, columns=HEADER)
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    return df


def _write(df: pd.DataFrame, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def _first_sale_rows(df: pd.DataFrame) -> set[int]:
    sale = df[(df["Quantity"] > 0) & (df["UnitPrice"] > 0) & ~df["InvoiceNo"].str.startswith("C")]
    sale = sale.assign(_t=pd.to_datetime(sale["InvoiceDate"]), _i=sale.index)
    return set(sale.sort_values(["_t", "_i"]).groupby("StockCode").head(1).index)


def _poison(df: pd.DataFrame) -> pd.DataFrame:
    """Everything at or after the cutoff changed, except the first sale line of each product
    (what is known at a candidate's launch); plus extra lines after the cutoff."""
    out = df.copy()
    keep = _first_sale_rows(df)
    after = pd.to_datetime(out["InvoiceDate"]) >= pd.Timestamp(CUTOFF)
    hit = after & ~out.index.isin(keep)
    out.loc[hit, "Quantity"] = out.loc[hit, "Quantity"] * 50
    out.loc[hit, "UnitPrice"] = out.loc[hit, "UnitPrice"] * 3
    out.loc[hit, "CustomerID"] = 99999.0
    out.loc[hit, "Description"] = "POISONED DESCRIPTION"
    extra = out[after].head(40).copy()
    extra["StockCode"] = "21000"
    extra["Quantity"] = 1000
    extra["CustomerID"] = 12001.0
    late = extra.head(5).copy()
    late["StockCode"] = "99999"
    late["Description"] = "FUTURE PRODUCT"
    late["InvoiceDate"] = "2011-04-05 10:00:00"  # after the window: never a candidate
    return pd.concat([out, extra, late], ignore_index=True)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_or")
    df = _tiny_lines()
    return _write(df, root / "clean.csv"), _write(_poison(df), root / "poisoned.csv")


# --------------------------------------------------------------------------------------------
# staging a cutoff
# --------------------------------------------------------------------------------------------
def _stage(src, raw):
    return stage_source(
        "online_retail",
        src,
        raw,
        history_before=CUTOFF,
        candidates_window=(CUTOFF, CUTOFF + dt.timedelta(days=HORIZON)),
    )


def test_cutoff_staging_keeps_history_only(tmp_path, tiny_files):
    clean, _ = tiny_files
    summary = _stage(clean, tmp_path / "raw")
    assert summary.end_date == CUTOFF - dt.timedelta(days=1)
    events = pd.concat(pd.read_parquet(p) for p in (tmp_path / "raw" / "events").iterdir())
    assert pd.to_datetime(events["ts"]).max() < pd.Timestamp(CUTOFF, tz="UTC")
    cands = pd.read_parquet(tmp_path / "raw" / "candidates.parquet")
    products = pd.read_parquet(tmp_path / "raw" / "products.parquet")
    assert set(cands["title"]) <= set(NEW_TITLES)  # the new products launched in the window
    assert len(cands) >= 6
    assert not set(cands["item_id"]) & set(products["item_id"])
    assert cands["launched_at"].isna().all()
    df = _tiny_lines()
    first = df.loc[sorted(_first_sale_rows(df))].set_index("StockCode")
    for r in cands.itertuples():
        assert float(r.price) == pytest.approx(float(first.loc[r.item_id, "UnitPrice"]))


def test_candidates_window_needs_history_before(tmp_path, tiny_files):
    with pytest.raises(ConfigurationError):
        stage_source(
            "online_retail",
            tiny_files[0],
            tmp_path / "raw",
            candidates_window=(CUTOFF, CUTOFF + dt.timedelta(days=HORIZON)),
        )
    with pytest.raises(ConfigurationError):
        stage_source(
            "online_retail",
            tiny_files[0],
            tmp_path / "raw",
            history_before=CUTOFF,
            candidates_window=(CUTOFF - dt.timedelta(days=1), CUTOFF),
        )


def test_poisoned_future_does_not_change_the_staged_history(tmp_path, tiny_files):
    clean, poisoned = tiny_files
    _stage(clean, tmp_path / "a")
    _stage(poisoned, tmp_path / "b")
    for name in ("products.parquet", "candidates.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / name), pd.read_parquet(tmp_path / "b" / name)
        )
    days_a = sorted(p.name for p in (tmp_path / "a" / "events").iterdir())
    assert days_a == sorted(p.name for p in (tmp_path / "b" / "events").iterdir())
    for name in days_a:
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / "events" / name),
            pd.read_parquet(tmp_path / "b" / "events" / name),
        )


# --------------------------------------------------------------------------------------------
# metrics on hand-computed cases
# --------------------------------------------------------------------------------------------
def test_captured_share_and_random():
    realised = pd.Series({"a": 100.0, "b": 50.0, "c": 30.0, "d": 20.0, "e": -10.0})
    # best 2 = a + b = 150
    assert bt.captured_share(["a", "c"], realised, 2) == pytest.approx(130 / 150)
    assert bt.captured_share(["e", "zzz"], realised, 2) == pytest.approx(-10 / 150)
    # random 2 of 5: 2 * mean (190 / 5 = 38) / 150
    assert bt.random_share(realised, 2) == pytest.approx(76 / 150)
    assert np.isnan(bt.captured_share(["a"], pd.Series({"a": 0.0}), 1))


def test_expected_top_k_share_breaks_ties_in_expectation():
    realised = pd.Series({"a": 100.0, "b": 50.0, "c": 30.0, "d": 20.0})
    predicted = pd.Series({"a": 1.0, "b": 5.0, "c": 5.0, "d": 5.0})
    # the top 2 are two of the three tied b, c, d: expected 2 * (50 + 30 + 20) / 3
    assert bt.expected_top_k_share(predicted, realised, 2) == pytest.approx((200 / 3) / 150)
    predicted = pd.Series({"a": 9.0, "b": 5.0, "c": 1.0, "d": 0.0})
    assert bt.expected_top_k_share(predicted, realised, 2) == pytest.approx(1.0)


def test_hindsight_fit_reads_the_outcome_through_the_features():
    rng = np.random.default_rng(0)
    n = 200
    idx = [f"p{i}" for i in range(n)]
    feats = pd.DataFrame({"f": rng.normal(size=n), "noise": rng.normal(size=n)}, index=idx)
    feats.iloc[3, 1] = np.nan  # a missing value takes the column mean
    realised = pd.Series(np.exp(2.0 * feats["f"].to_numpy()), index=idx)
    fit = bt.hindsight_fit(feats, realised, 20, (0.1, 1.0))
    # revenue a function of one feature: the fit finds the best 20 and the whole order
    assert fit.features == ("f", "noise")
    assert fit.captured_revenue_share == pytest.approx(1.0)
    assert fit.spearman > 0.99
    # revenue unrelated to the features: far from the best 20, near random
    unrelated = pd.Series(rng.permutation(realised.to_numpy()), index=idx)
    loose = bt.hindsight_fit(feats, unrelated, 20, (0.1, 1.0))
    assert loose.captured_revenue_share < 0.6 and abs(loose.spearman) < 0.3
    assert bt.hindsight_fit(feats, realised * 0.0, 20, (1.0,)) is None
    assert bt.hindsight_fit(feats[[]], realised, 20, (1.0,)) is None


def test_hindsight_fits_with_and_without_the_transformer_features():
    rng = np.random.default_rng(1)
    n = 60
    idx = [str(i) for i in range(n)]
    valuation = pd.DataFrame(
        {
            "expected_revenue": rng.random(n),
            "feature:text_knn5": rng.normal(size=n),
            "feature:transformer_buyers": rng.normal(size=n),
        },
        index=idx,
    )
    # only the Transformer's feature knows the outcome
    realised = pd.Series(np.exp(2.0 * valuation["feature:transformer_buyers"]), index=idx)
    fits = bt.hindsight_fits(valuation, realised, 10)
    assert fits["all_features"]["features"] == ("text_knn5", "transformer_buyers")
    assert fits["without_transformer"]["features"] == ("text_knn5",)
    assert fits["all_features"]["captured_revenue_share"] == pytest.approx(1.0)
    assert fits["without_transformer"]["captured_revenue_share"] < 0.8


def test_spearman_audience_timing_coverage():
    assert bt.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bt.spearman([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert np.isnan(bt.spearman([1, 1, 1], [1, 2, 3]))
    audiences = {"x": ["u1", "u2", "u3", "u4"], "y": ["u1", "u5"]}
    buyers = {"x": {"u1", "u9"}, "y": {"u1", "u5"}}
    # x: 1 of 4, y: 2 of 2 -> mean (0.25 + 1) / 2
    assert bt.audience_precision(audiences, buyers) == pytest.approx(0.625)
    assert bt.hour_window(0, 1) == [167, 0, 1]
    hours = [10, 10, 11, 12, 50]
    assert bt.timing_share(hours, 10, 0) == pytest.approx(2 / 5)
    assert bt.timing_share(hours, 11, 1) == pytest.approx(4 / 5)
    assert bt.interval_coverage([1, 5, 10], [0, 6, 9], [2, 8, 10]) == pytest.approx(2 / 3)


def test_model_audiences_are_the_uncapped_top_n_by_r():
    import duckdb
    import numpy as np

    from launch_pipeline.purchase_scoring import ScoredBatch
    from launch_pipeline.scoring import store_preferences

    con = duckdb.connect()
    assert bt.model_audiences(con, ["x"], 2) == {"x": []}  # no preferences stored yet
    users = np.array(["u1", "u2", "u3", "u4", "u5"], dtype=object)
    r = np.array(
        [[0.9, 0.8, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.1, 0.2, 0.0], [0.0, 0.0, 0.7]],
        dtype=np.float32,
    )  # users x (x, y, z)
    batch = ScoredBatch(0, r, r, r)
    items = np.array(["x", "y", "z"], dtype=object)
    store_preferences(con, [batch], users, items, np.ones(5), "m:v1", 30, audience_kept=3)
    # u1 is in both top lists (no contact cap); the tie at 0.5 goes to the smaller user id
    got = bt.model_audiences(con, ["x", "y", "w"], 2)
    assert got == {"x": ["u1", "u2"], "y": ["u1", "u4"], "w": []}


def test_realised_by_item_nets_returns():
    sales = pd.DataFrame(
        {
            "item_id": ["a", "a", "a", "b", "b"],
            "user_id": ["u1", "u2", "u1", "u1", "u3"],
            "ts": pd.to_datetime(
                [
                    "2011-03-01 10:00",
                    "2011-03-05 00:00",
                    "2011-03-06 00:00",
                    "2011-02-28 00:00",
                    "2011-03-30 23:00",
                ]
            ),
            "event_type": ["purchase", "purchase", "return", "purchase", "purchase"],
            "units": [6, 2, -1, 5, 1],
            "revenue": [12.0, 4.0, -2.0, 10.0, 3.0],
        }
    )
    out = bt.realised_by_item(sales, ["a", "b", "c"], CUTOFF, CUTOFF + dt.timedelta(days=30))
    assert out.loc["a", "revenue"] == pytest.approx(14.0)
    assert out.loc["a", "units"] == pytest.approx(7.0)
    assert out.loc["b", "revenue"] == pytest.approx(3.0)  # 2011-02-28 is before the window
    assert out.loc["c", "revenue"] == 0.0
    assert out.loc["a", "buyers"] == {"u1", "u2"}


def test_backtest_rejects_other_sources(tmp_path):
    with pytest.raises(ConfigurationError):
        bt.run_backtest("taobao", tmp_path / "x.csv", [CUTOFF])


# --------------------------------------------------------------------------------------------
# the whole backtest on the tiny file (the real pipeline), clean and poisoned
# --------------------------------------------------------------------------------------------
def _run(src, work):
    return bt.run_backtest(
        "online_retail",
        src,
        [CUTOFF],
        horizon_days=HORIZON,
        slots=3,
        work_dir=work,
        model_time_budget_s=600.0,
        log=lambda _msg: None,
    )


@pytest.fixture(scope="module")
def tiny_runs(tiny_files, tmp_path_factory):
    clean, poisoned = tiny_files
    works = (tmp_path_factory.mktemp("bt_clean"), tmp_path_factory.mktemp("bt_poisoned"))
    return [(_run(src, work), work) for src, work in zip((clean, poisoned), works, strict=True)]


@pytest.fixture(scope="module")
def tiny_backtests(tiny_runs):
    return tuple(result for result, _ in tiny_runs)


def _warehouse_table(work, sql: str) -> pd.DataFrame:
    import duckdb

    (db,) = list(work.glob("cutoff_*/**/*.duckdb"))
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


@pytest.mark.slow
def test_tiny_backtest_output_shape(tiny_backtests):
    result = tiny_backtests[0]
    json.dumps(result)  # serialisable as the CLI writes it
    assert result["complete"] is True
    (c,) = result["cutoffs"]
    assert c["cutoff"] == CUTOFF.isoformat()
    assert 0 < len(c["picks"]) <= 3 and all(isinstance(p, str) for p in c["picks"])
    assert set(c["audiences"]) == set(c["picks"])
    # the plan caps how many audiences one customer is in: with 40 customers a pick can be
    # left without one
    assert all(len(u) <= bt.AUDIENCE_SIZE for u in c["audiences"].values())
    assert any(len(u) for u in c["audiences"].values())
    m = c["metrics"]
    for key in (
        "captured_revenue_share",
        "spearman",
        "audience_precision@50",
        "audience_precision@50_uncapped",
    ):
        assert key in m
    assert -1.0 <= m["captured_revenue_share"] <= 1.0
    assert set(c["baselines"]) >= {"random", "text_knn", "category_popularity"}
    assert 0 <= m["interval_coverage_units"] <= 1
    assert m["forecast_to_realised_revenue"] > 0
    # the demand model valued the candidates, with the Transformer's signal and without it
    assert c["value_source"] == "past_launches"
    for name in ("without_transformer", "full_valuation_top_k"):
        assert set(c["ablations"][name]) >= {"captured_revenue_share", "spearman", "picks"}
    assert "without_transformer" in result["summary"]["ablations"]
    # the valuation's own features fitted in hindsight: room left by the features
    for name in ("all_features", "without_transformer"):
        h = c["hindsight"][name]
        assert -1.0 <= h["captured_revenue_share"] <= 1.0 and -1.0 <= h["spearman"] <= 1.0
    assert set(c["hindsight"]["all_features"]["features"]) > set(
        c["hindsight"]["without_transformer"]["features"]
    )
    assert "all_features" in result["summary"]["hindsight"]
    # how both Transformers' training ended: epochs and why it stopped (on work, not the clock)
    training = c["transformer_training"]
    assert set(training) == {"pipeline", "as_of"}
    for t in training.values():
        assert t["epochs"] >= 1 and t["epochs_trained"] > 0 and t["targets_trained"] > 0
        assert t["stopped"] in ("patience", "work_cap", "max_epochs")
        assert t["reproducible"] is True and t["work_cap_targets"] > 0
    assert result["settings"]["model_work_gcells"] == bt.MODEL_WORK_GCELLS
    assert result["summary"]["reproducible"] is True
    # seconds of every pipeline step, from the run's event log
    steps = c["seconds"]["pipeline_steps"]
    assert {"preference_model", "user_preferences", "launch_plan"} <= set(steps)
    assert all(v >= 0 for v in steps.values())
    assert sum(steps.values()) <= c["seconds"]["pipeline"] * 1.05


@pytest.mark.slow
def test_poisoned_future_does_not_change_the_plan(tiny_backtests, tiny_runs):
    clean, poisoned = (r["cutoffs"][0] for r in tiny_backtests)
    assert clean["picks"] == poisoned["picks"]
    assert clean["audiences"] == poisoned["audiences"]
    assert clean["launch_hours_of_week"] == poisoned["launch_hours_of_week"]
    assert clean["metrics"]["forecast_revenue_all_candidates"] == pytest.approx(
        poisoned["metrics"]["forecast_revenue_all_candidates"]
    )
    # the Transformer's signals of the past launches (scored by the model trained before the
    # oldest window) and of the candidates, and both valuations, are the same too
    clean_work, poisoned_work = (work for _, work in tiny_runs)
    sql = (
        "SELECT window_start, item_id, transformer_buyers, transformer_units "
        "FROM launch_history_buyers ORDER BY ALL"
    )
    past = _warehouse_table(clean_work, sql)
    assert past["transformer_buyers"].notna().all() and len(past) >= 60
    pd.testing.assert_frame_equal(past, _warehouse_table(poisoned_work, sql))
    sql = "SELECT * FROM launch_valuation ORDER BY item_id"
    valuation = _warehouse_table(clean_work, sql)
    assert valuation["feature_values"].str.contains("transformer_units").all()
    pd.testing.assert_frame_equal(valuation, _warehouse_table(poisoned_work, sql))
    # while what really happened did change
    assert (
        clean["metrics"]["realised_revenue_all_candidates"]
        != poisoned["metrics"]["realised_revenue_all_candidates"]
    )


# --------------------------------------------------------------------------------------------
# the text-kNN baseline, forecast ratio and the summary over cutoffs (hand-computed)
# --------------------------------------------------------------------------------------------
def test_text_knn_is_similarity_weighted_over_unigrams_and_bigrams():
    existing = ["red bag", "blue bag", "green clock"]
    revenue = [100.0, 50.0, 10.0]
    # smooth idf over the 3 existing texts: ln(4 / (1 + df)) + 1
    rare, bag = np.log(4 / 2) + 1, np.log(4 / 3) + 1
    # "red bag" = (red, bag, "red bag"); "blue bag" shares only "bag"
    cos = bag**2 / (2 * rare**2 + bag**2)
    got = bt.text_knn_predict(existing, revenue, ["red bag", "zebra", "red bag"], k=2)
    assert got[0] == pytest.approx((1.0 * 100 + cos * 50) / (1.0 + cos))
    assert got[1] == pytest.approx(160 / 3)  # nothing similar: the mean of all existing
    # k = 1: the most similar product only; the bigram "red bag" makes "red bag" closer than
    # "red clock" to the target "red bag lamp"
    got = bt.text_knn_predict(["red clock", "red bag"], [7.0, 3.0], ["red bag lamp"], k=1)
    assert got.tolist() == pytest.approx([3.0])
    assert bt.text_knn_predict([], [], ["x"], k=20).tolist() == [0.0]


def test_forecast_ratio_and_summary():
    assert bt.forecast_ratio([10.0, 20.0], [15.0, 15.0]) == pytest.approx(1.0)
    assert np.isnan(bt.forecast_ratio([1.0], [0.0]))

    def one(ours, knn, cov, n, abl):
        return {
            "candidates": n,
            "metrics": {
                "captured_revenue_share": ours,
                "spearman": 0.5,
                "interval_coverage_units": cov,
            },
            "baselines": {
                "text_knn": {"captured_revenue_share": knn, "spearman": 0.1, "picks": ["a"]}
            },
            "ablations": {"without_transformer": {"captured_revenue_share": abl, "spearman": 0.2}},
        }

    s = bt.summarise([one(0.6, 0.5, 0.9, 100, 0.4), one(0.4, 0.5, 0.7, 300, 0.2)])
    assert s["ours"]["captured_revenue_share"] == pytest.approx(0.5)
    assert s["ablations"]["without_transformer"]["captured_revenue_share"] == pytest.approx(0.3)
    assert s["baselines"]["text_knn"]["spearman"] == pytest.approx(0.1)
    assert s["cutoffs_ahead_of_text_knn"] == 1
    assert not s["beats_text_knn_at_every_cutoff"]
    assert s["interval_coverage_units_pooled"] == pytest.approx((90 + 210) / 400)
    assert s["reproducible"] is False  # no training reported: nothing to vouch for


def test_summary_and_log_say_when_a_training_stopped_on_the_clock():
    def one(pipeline_stop, as_of_stop):
        def t(stop, epochs):
            return {"epochs": epochs, "epochs_trained": epochs - 0.5, "stopped": stop,
                    "reproducible": stop != "time_budget"}  # fmt: skip

        return {
            "candidates": 10,
            "metrics": {"captured_revenue_share": 0.5, "interval_coverage_units": 0.8},
            "baselines": {"text_knn": {"captured_revenue_share": 0.4}},
            "transformer_training": {"pipeline": t(pipeline_stop, 12), "as_of": t(as_of_stop, 30)},
        }

    ok = bt.summarise([one("work_cap", "patience"), one("patience", "work_cap")])
    assert ok["reproducible"] is True and ok["transformer_trainings_stopped_by_the_clock"] == 0
    bad = bt.summarise([one("work_cap", "patience"), one("work_cap", "time_budget")])
    assert bad["reproducible"] is False and bad["transformer_trainings_stopped_by_the_clock"] == 1
    line = bt.training_line(one("work_cap", "time_budget")["transformer_training"])
    assert line == (
        "pipeline Transformer 11.5 epochs (work_cap), "
        "as_of Transformer 29.5 epochs (time_budget, NOT reproducible)"
    )
    assert bt.training_line({}) == "no Transformer trained"
