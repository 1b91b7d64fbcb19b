"""Scoring at scale: the vectorised model inputs equal the per-user definitions, r_ij is
streamed in float32 batches and written batch by batch with the same table, ranks and view."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from launch_pipeline import features, purchase_scoring, scoring, shop_data, shop_split
from launch_pipeline.calibration import PurchaseCalibration
from launch_pipeline.cleaning import ensure_tables
from launch_pipeline.model.data import SequenceData
from launch_pipeline.purchase_scoring import ScoredBatch, purchase_kernel
from launch_pipeline.shop_data import PURCHASE, FlatSequences

AS_OF = dt.datetime(2026, 11, 20, 18, 0)


def _random_shop(rng, n_users=300, n_items=40):
    seqs, evs, stamps = [], [], []
    for _ in range(n_users):
        n = int(rng.integers(1, 30))
        seqs.append(rng.integers(1, n_items + 1, n))
        evs.append(rng.choice([1, 1, 1, 2, 3], n))
        offs = np.sort(rng.integers(0, 40 * 86_400, n)).astype("timedelta64[s]")
        stamps.append((np.datetime64("2026-10-12T00:00:00") + offs).astype("datetime64[us]"))
    data = SequenceData(
        sequences=seqs,
        event_types=evs,
        item_attributes=np.arange(n_items + 1)[:, None],
        n_attributes=n_items + 1,
    )
    users = np.array([f"u{k:04d}" for k in range(n_users)], dtype=object)
    return shop_data.ShopData(
        data=data,
        user_ids=users,
        step_ts=stamps,
        item_ids=np.array([""] + [f"p{k}" for k in range(n_items)], dtype=object),
        item_category=np.array([""] + [f"c{k % 4}" for k in range(n_items)], dtype=object),
        attribute_vocab={},
        candidates=pd.DataFrame(columns=["item_id", "title", "category", "brand", "price"]),
        candidate_attributes=np.zeros((0, 1), dtype=np.int64),
        as_of=AS_OF,
    )


def _reference_split(shop, eval_days):
    """The per-user definition of the temporal split (the loop it replaced)."""
    cutoff = np.datetime64(
        shop.as_of.replace(hour=0, minute=0, second=0, microsecond=0), "us"
    ) - np.timedelta64(eval_days - 1, "D")
    train, users, inputs, targets, p_inputs, p_truth = [], [], [], [], [], []
    for u, (s, e, t) in enumerate(
        zip(shop.data.sequences, shop.data.event_types, shop.step_ts, strict=True)
    ):
        pre = t < cutoff
        s_pre = s[pre]
        if len(s_pre) >= 2:
            train.append(s_pre)
        if len(s_pre) == 0 or pre.all():
            continue
        post_items, post_ev = s[~pre], e[~pre]
        new = ~np.isin(post_items, s_pre)
        if new.any():
            users.append(u)
            inputs.append(s_pre)
            targets.append(post_items[np.argmax(new)])
        bought = np.unique(post_items[(post_ev == PURCHASE) & new])
        if len(bought):
            p_inputs.append(s_pre)
            p_truth.append(bought)
    return train, users, inputs, targets, p_inputs, p_truth


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_temporal_split_and_rates_match_the_per_user_definitions():
    rng = np.random.default_rng(3)
    shop = _random_shop(rng)
    split = shop_split.temporal_split(shop, 7)
    train, users, inputs, targets, p_inputs, p_truth = _reference_split(shop, 7)
    _same(split.train.sequences, train)
    np.testing.assert_array_equal(split.next_item.users, users)
    _same(split.next_item.inputs, inputs)
    np.testing.assert_array_equal(split.next_item.targets, targets)
    _same(split.purchase_inputs, p_inputs)
    _same(split.purchase_truth, p_truth)
    as_of = np.datetime64(AS_OF, "us")
    expected = [
        len(t) / max((as_of - t.min()) / np.timedelta64(1, "D"), 7.0) * 30 for t in shop.step_ts
    ]
    np.testing.assert_allclose(purchase_scoring.interaction_rates(shop, 30), expected, rtol=1e-12)
    flat = FlatSequences.from_lists(
        shop.user_ids, shop.data.sequences, shop.data.event_types, shop.step_ts
    )
    _same(flat.split(flat.items), shop.data.sequences)
    np.testing.assert_array_equal(flat.last_ts(), [t.max() for t in shop.step_ts])


def _clean_events(con, rows):
    ensure_tables(con)
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "ts"])
    df["source_row"] = np.arange(len(df))
    con.register("_rows", df)
    con.execute(
        """
        INSERT INTO clean_events (event_id, partition_date, user_id, item_id, event_type, ts,
                                  source_file, source_row)
        SELECT 'e' || source_row, CAST(ts AS DATE), user_id, item_id, event_type, ts, 'f',
               source_row FROM _rows
        """
    )
    con.unregister("_rows")


def _events(rng, n_users=60, n=3000):
    t0 = pd.Timestamp("2026-10-01")
    return [
        (
            f"u{int(rng.integers(n_users)):03d}",
            f"p{int(rng.integers(12))}",
            str(rng.choice(["view", "view", "cart", "purchase", "review"])),
            t0 + pd.Timedelta(seconds=int(rng.integers(0, 50 * 86_400))),
        )
        for _ in range(n)
    ]


def test_read_sequences_numbers_items_and_drops_unknown_ones(con):
    _clean_events(
        con,
        [
            ("b", "p1", "view", pd.Timestamp("2026-11-01 10:00")),
            ("b", "x9", "view", pd.Timestamp("2026-11-01 10:01")),
            ("b", "p2", "purchase", pd.Timestamp("2026-11-01 10:02")),
            ("a", "p2", "view", pd.Timestamp("2026-11-01 09:00")),
            ("a", "p2", "cart", pd.Timestamp("2026-11-01 09:01")),  # same step, stronger
            ("c", "x9", "view", pd.Timestamp("2026-11-01 09:00")),  # nothing known: left out
        ],
    )
    features.build_user_sequences(con)
    flat = shop_data.read_sequences(con, "user_sequences", ["p1", "p2"])
    assert list(flat.user_ids) == ["a", "b"]
    _same(flat.split(flat.items), [np.array([2]), np.array([1, 2])])
    _same(flat.split(flat.events), [np.array([2]), np.array([1, 3])])
    assert flat.ts[0] == np.datetime64("2026-11-01T09:00:00", "us")


def test_user_sequences_as_of_equal_the_table_built_from_earlier_events(con):
    rng = np.random.default_rng(5)
    rows = _events(rng)
    _clean_events(con, rows)
    as_of = dt.datetime(2026, 11, 2, 12, 0)
    features.build_user_sequences(con, 20, as_of=as_of, table="_past", temporary=True)
    past = con.execute("SELECT * FROM _past ORDER BY user_id").df()
    other = duckdb.connect()
    _clean_events(other, [r for r in rows if r[3] < pd.Timestamp(as_of)])
    features.build_user_sequences(other, 20)
    direct = other.execute("SELECT * FROM user_sequences ORDER BY user_id").df()
    pd.testing.assert_frame_equal(past, direct)
    # a hash sample keeps whole users, the same ones every time
    features.build_user_sequences(
        con, 20, as_of=as_of, table="_half", temporary=True, sample_fraction=0.5
    )
    half = con.execute("SELECT * FROM _half ORDER BY user_id").df()
    assert 0 < len(half) < len(past)
    pd.testing.assert_frame_equal(
        half.reset_index(drop=True),
        past[past["user_id"].isin(half["user_id"])].reset_index(drop=True),
    )


def test_purchase_kernel_matches_the_dense_formula():
    rng = np.random.default_rng(0)
    uv = rng.normal(size=(50, 8)).astype(np.float32)
    cat = rng.normal(size=(30, 8)).astype(np.float32)
    cand = rng.normal(size=(7, 8)).astype(np.float32)
    rates = rng.uniform(1, 20, 50)
    conv = rng.uniform(0.01, 0.2, 7)
    r, p = purchase_kernel(uv, np.vstack([cat, cand]).T.copy(), 7, rates, conv)
    assert r.dtype == np.float32 and p.dtype == np.float32
    logits = uv.astype(np.float64) @ np.vstack([cat, cand]).T
    ex = np.exp(logits - logits.max(axis=1, keepdims=True))
    p_ref = ex[:, -7:] / ex.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, p_ref, rtol=1e-5)
    np.testing.assert_allclose(r, 1 - np.exp(-rates[:, None] * p_ref * conv[None, :]), rtol=1e-5)


def test_calibration_apply_equals_the_feature_matrix_form():
    rng = np.random.default_rng(1)
    cal = PurchaseCalibration(-2.0, (0.4, 0.3, -0.1, 0.8, 0.9, 1.5), 10, 2)
    user_x = rng.normal(size=(20, 3))
    p = rng.uniform(1e-5, 0.1, (20, 6))
    conv = rng.uniform(0.01, 0.3, 6)
    similar = rng.poisson(0.5, (20, 6)).astype(float)
    z = cal.intercept + PurchaseCalibration.features(user_x, p, conv, similar) @ np.array(cal.coef)
    expected = (1 / (1 + np.exp(-z))).reshape(p.shape)
    np.testing.assert_allclose(cal.apply(user_x, p, conv, similar), expected, rtol=1e-12)
    got32 = cal.apply(user_x, p.astype(np.float32), conv, similar)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=1e-5)


def _batches(r: np.ndarray, size: int):
    for start in range(0, len(r), size):
        sl = r[start : start + size].astype(np.float32)
        yield ScoredBatch(start, sl, sl / 2, sl * 0.9)


def test_write_preferences_ranks_per_user_and_keeps_the_columns(con):
    rng = np.random.default_rng(2)
    r = rng.uniform(0, 1, (11, 5))
    r[3, 1] = r[3, 4]  # a tie: the first candidate ranks first
    users = np.array([f"u{k:02d}" for k in range(11)], dtype=object)
    items = np.array(["a", "b", "c", "d", "e"], dtype=object)
    out = scoring.write_preferences(con, _batches(r, 4), users, items, "m:v1", 30)
    assert out["rows"] == 55 and out["users"] == 11
    assert out["mean_r"] == pytest.approx(r.astype(np.float32).mean(), rel=1e-6)
    cols = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'user_preferences' ORDER BY ordinal_position"
    ).fetchall()
    assert cols == [
        ("user_id", "VARCHAR"),
        ("item_id", "VARCHAR"),
        ("r", "DOUBLE"),
        ("p_next", "DOUBLE"),
        ("rank_for_user", "INTEGER"),
        ("model_version", "VARCHAR"),
        ("horizon_days", "INTEGER"),
        ("r_model", "DOUBLE"),
    ]
    got = con.execute("SELECT * FROM user_preferences").df()  # stored in (user, rank) order
    ref = pd.DataFrame(
        {
            "user_id": np.repeat(users, 5),
            "item_id": np.tile(items, 11),
            "r": r.astype(np.float32).astype(np.float64).ravel(),
        }
    )
    ref["rank_for_user"] = ref.groupby("user_id")["r"].rank(method="first", ascending=False)
    ref = ref.sort_values(["user_id", "rank_for_user"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got[["user_id", "item_id", "r"]], ref[["user_id", "item_id", "r"]]
    )
    assert (got["rank_for_user"] == ref["rank_for_user"].astype(int)).all()
    np.testing.assert_allclose(got["p_next"], got["r"] / 2, rtol=1e-6)
    assert set(got["model_version"]) == {"m:v1"} and set(got["horizon_days"]) == {30}
    assert (
        got.loc[(got.user_id == "u03") & (got.item_id == "b"), "rank_for_user"].iloc[0]
        < (got.loc[(got.user_id == "u03") & (got.item_id == "e"), "rank_for_user"].iloc[0])
    )
    top = con.execute("SELECT count(*), max(rank_for_user) FROM user_top_candidates").fetchall()
    assert top == [(55, 5)]  # top 10 of 5 candidates: all of them


def test_write_preferences_is_all_or_nothing(con):
    users = np.array(["u0", "u1", "u2"], dtype=object)
    items = np.array(["a", "b"], dtype=object)
    scoring.write_preferences(con, _batches(np.ones((3, 2)) / 2, 2), users, items, "v1", 30)

    def broken():
        yield from _batches(np.ones((3, 2)) / 4, 1)
        raise RuntimeError("scoring failed half way")

    with pytest.raises(RuntimeError):
        scoring.write_preferences(con, broken(), users, items, "v2", 30)
    assert con.execute(
        "SELECT count(*), any_value(model_version), max(r) FROM user_preferences"
    ).fetchall() == [(6, "v1", 0.5)]
