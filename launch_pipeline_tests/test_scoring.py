"""Scoring at scale: the vectorised model inputs equal the per-user definitions, r_ij is
streamed in float32 batches and reduced batch by batch to what the plan needs (per-candidate
sums, each candidate's best users, each user's top candidates), equal to sorting every pair."""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launch_pipeline import (
    features,
    purchase_scoring,
    scoring,
    shop_data,
    shop_split,
    user_vector_cache,
)
from launch_pipeline.calibration import PurchaseCalibration
from launch_pipeline.cleaning import ensure_tables
from launch_pipeline.model.data import SequenceData
from launch_pipeline.preference_summary import CandidateReducer, user_top
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
    flat = shop_data.read_sequences(con, "user_sequence_steps", ["p1", "p2"])
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
    past = con.execute("SELECT * FROM _past ORDER BY user_id, step").df()
    other = duckdb.connect()
    _clean_events(other, [r for r in rows if r[3] < pd.Timestamp(as_of)])
    features.build_user_sequences(other, 20)
    direct = other.execute("SELECT * FROM user_sequence_steps ORDER BY user_id, step").df()
    pd.testing.assert_frame_equal(past, direct)
    # a hash sample keeps whole users, the same ones every time
    features.build_user_sequences(
        con, 20, as_of=as_of, table="_half", temporary=True, sample_fraction=0.5
    )
    half = con.execute("SELECT * FROM _half ORDER BY user_id, step").df()
    assert 0 < half["user_id"].nunique() < past["user_id"].nunique()
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


def _brute_audiences(r, users, items, k):
    """Each candidate's best ``k`` users by r, ties to the lower user id (the planner's order)."""
    df = pd.DataFrame(
        {
            "item_id": np.tile(items, len(users)),
            "user_id": np.repeat(users, len(items)),
            "r": r.astype(np.float32).astype(np.float64).ravel(),
        }
    )
    df = df.sort_values(["item_id", "r", "user_id"], ascending=[True, False, True])
    top = df.groupby("item_id", sort=False).head(k).reset_index(drop=True)
    top["audience_rank"] = top.groupby("item_id").cumcount() + 1
    return top


def test_store_preferences_keeps_the_sums_the_audiences_and_the_top_candidates(con):
    rng = np.random.default_rng(2)
    r = rng.uniform(0, 1, (37, 5))
    r[3, 1] = r[3, 4] = 0.99  # a tie within a user: the first candidate ranks first
    r[10:14, 2] = 0.999  # a tie across users at the top of a candidate: lower user id first
    users = np.array([f"u{k:02d}" for k in range(37)], dtype=object)
    items = np.array(["a", "b", "c", "d", "e"], dtype=object)
    units = rng.uniform(1, 3, 37)
    con.execute("CREATE TABLE user_preferences AS SELECT 1 AS stale")  # an older warehouse
    con.execute("CREATE VIEW user_top_candidates AS SELECT 1 AS stale")
    out = scoring.store_preferences(con, _batches(r, 8), users, items, units, "m:v1", 30, 6, 3)
    assert (out.users, out.candidates, out.audience_kept) == (37, 5, 6)
    assert out.audience_rows == 30 and out.top_rows == 37 * 3
    r32 = r.astype(np.float32).astype(np.float64)
    assert out.mean_r == pytest.approx(r32.mean(), rel=1e-9)
    tables = {
        t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert "user_preferences" not in tables  # every pair is no longer stored

    sums = con.execute("SELECT * FROM candidate_preferences ORDER BY item_id").df()
    np.testing.assert_allclose(sums["expected_buyers"], r32.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sums["expected_buyers_model"], (r32 * 0.9).sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        sums["expected_units_model"], (units[:, None] * r32 * 0.9).sum(axis=0), rtol=1e-6
    )
    np.testing.assert_allclose(sums["max_r"], r32.max(axis=0), rtol=1e-12)
    assert set(sums["users_scored"]) == {37} and set(sums["audience_kept"]) == {6}
    assert set(sums["model_version"]) == {"m:v1"} and set(sums["horizon_days"]) == {30}

    got = con.execute(
        "SELECT item_id, user_id, r, audience_rank FROM candidate_audiences "
        "ORDER BY item_id, audience_rank"
    ).df()
    ref = _brute_audiences(r, users, items, 6)
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
    assert list(got[got.item_id == "c"]["user_id"][:4]) == ["u10", "u11", "u12", "u13"]

    top = con.execute("SELECT * FROM user_top_candidates ORDER BY user_id, rank_for_user").df()
    assert list(top.columns) == [
        "user_id", "item_id", "r", "p_next", "rank_for_user", "model_version", "horizon_days",
        "r_model",
    ]  # fmt: skip
    for u in (0, 3, 20):
        mine = top[top.user_id == users[u]]
        order = np.lexsort((np.arange(5), -r32[u]))[:3]
        assert list(mine["item_id"]) == list(items[order])
        np.testing.assert_allclose(mine["p_next"], mine["r"] / 2, rtol=1e-6)
    b_rank, e_rank = (
        top.loc[(top.user_id == "u03") & (top.item_id == x), "rank_for_user"] for x in "be"
    )
    assert (b_rank.iloc[0], e_rank.iloc[0]) == (1, 2)  # tied: the first candidate first


def test_store_preferences_is_all_or_nothing(con):
    users = np.array(["u0", "u1", "u2"], dtype=object)
    items = np.array(["a", "b"], dtype=object)
    ones = np.ones(3)
    scoring.store_preferences(
        con, _batches(np.ones((3, 2)) / 2, 2), users, items, ones, "v1", 30, 5
    )

    def broken():
        yield from _batches(np.ones((3, 2)) / 4, 1)
        raise RuntimeError("scoring failed half way")

    with pytest.raises(RuntimeError):
        scoring.store_preferences(con, broken(), users, items, ones, "v2", 30, 5)
    assert con.execute(
        "SELECT sum(expected_buyers), any_value(model_version) FROM candidate_preferences"
    ).fetchall() == [(3.0, "v1")]
    assert con.execute("SELECT count(*), max(r) FROM candidate_audiences").fetchall() == [(6, 0.5)]


@settings(max_examples=60, deadline=None)
@given(
    n_users=st.integers(1, 60),
    n_c=st.integers(1, 7),
    k=st.integers(1, 12),
    batch=st.integers(1, 17),
    levels=st.integers(2, 50),
    seed=st.integers(0, 2**16),
)
def test_candidate_reducer_equals_sorting_every_pair(n_users, n_c, k, batch, levels, seed):
    """The batched top-k (threshold, buffer, merge) equals sorting all pairs, ties included
    (few distinct values force many), and the sums equal the full sums."""
    rng = np.random.default_rng(seed)
    r = (rng.integers(0, levels, (n_users, n_c)) / levels).astype(np.float32)
    m = (r * 0.5).astype(np.float32)
    units = rng.uniform(1, 2, n_users)
    red = CandidateReducer(n_c, k)
    for s in range(0, n_users, batch):
        red.add(s, r[s : s + batch], m[s : s + batch], units[s : s + batch])
    res = red.result()
    assert res.users == n_users
    np.testing.assert_allclose(res.expected_buyers, r.sum(axis=0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(res.expected_units_model, units @ m.astype(np.float64), rtol=1e-6)
    for j in range(n_c):
        order = np.lexsort((np.arange(n_users), -r[:, j]))[:k]
        count = res.audience_count[j]
        assert count == min(k, n_users)
        assert list(res.audience_users[j, :count]) == list(order)
        np.testing.assert_array_equal(res.audience_r[j, :count], r[order, j])
        np.testing.assert_array_equal(res.audience_r_model[j, :count], m[order, j])


def test_user_top_orders_by_r_then_candidate():
    r = np.array([[0.1, 0.5, 0.5, 0.2], [0.9, 0.1, 0.3, 0.3]], dtype=np.float32)
    cols, ranks = user_top(r, 3)
    assert cols.tolist() == [[1, 2, 3], [0, 2, 3]]
    assert ranks.tolist() == [[1, 2, 3], [1, 2, 3]]
    assert user_top(r, 9)[0].tolist() == [[1, 2, 3, 0], [0, 2, 3, 1]]


def _one_new_event(flat: FlatSequences, user: int) -> FlatSequences:
    """``flat`` with one more step (a cart of item 1, an hour after its last) for ``user``."""
    seqs, evs, ts = (flat.split(a) for a in (flat.items, flat.events, flat.ts))
    seqs[user] = np.append(seqs[user], 1)
    evs[user] = np.append(evs[user], 2)
    ts[user] = np.append(ts[user], ts[user][-1] + np.timedelta64(1, "h"))
    return FlatSequences.from_lists(flat.user_ids, seqs, evs, ts)


def _score_and_store(con, model, shop, flat, cache_dir, label="m:v1"):
    rows = np.arange(flat.n_users)
    enc = user_vector_cache.encode_users(model, label, flat.user_ids, flat, rows, cache_dir)
    batches = purchase_scoring.purchase_probabilities(
        model, shop, rows, 30, batch_size=64, user_vecs=enc.vectors
    )
    items = shop.candidates["item_id"].to_numpy()
    scoring.store_preferences(con, batches, flat.user_ids, items, np.ones(len(rows)), label, 30, 20)
    tables = {
        t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").df()
        for t in ("candidate_preferences", "candidate_audiences", "user_top_candidates")
    }
    return enc, tables


def test_a_second_run_encodes_only_the_user_with_a_new_event(con, tmp_path):
    """The Transformer's user vectors are cached per model version: after one new event only
    that user is encoded again, and the stored preferences equal a full run's; a new model
    version encodes everyone and replaces the old version's file."""
    from launch_pipeline.model.config import ModelConfig
    from launch_pipeline.model.training import build_model

    rng = np.random.default_rng(5)
    shop = _random_shop(rng, n_users=120)
    cands = pd.DataFrame(
        {"item_id": [f"n{k}" for k in range(6)], "title": "", "category": "c1", "brand": "",
         "price": 1.0}
    )  # fmt: skip
    shop = dataclasses.replace(
        shop, candidates=cands, candidate_attributes=np.arange(3, 9)[:, None]
    )
    model = build_model(shop.data, ModelConfig(dim=16, blocks=1, max_len=20))
    flat = shop.flat_sequences()
    cache = tmp_path / "user_vectors"

    first, _ = _score_and_store(con, model, shop, flat, cache)
    assert (first.encoded, first.reused) == (120, 0) and first.cache_path.exists()
    again, _ = _score_and_store(con, model, shop, flat, cache)
    assert (again.encoded, again.reused) == (0, 120)
    np.testing.assert_array_equal(again.vectors, first.vectors)

    changed = _one_new_event(flat, 17)
    fps = user_vector_cache.sequence_fingerprints(changed)
    assert (fps != user_vector_cache.sequence_fingerprints(flat)).tolist() == [
        u == 17 for u in range(120)
    ]
    incremental, got = _score_and_store(con, model, shop, changed, cache)
    assert (incremental.encoded, incremental.reused) == (1, 119)
    full, want = _score_and_store(con, model, shop, changed, None)
    assert full.encoded == 120
    np.testing.assert_allclose(incremental.vectors, full.vectors, atol=1e-5)
    assert not np.allclose(incremental.vectors[17], first.vectors[17])
    for t in want:
        pd.testing.assert_frame_equal(got[t], want[t], check_exact=False, rtol=1e-5)

    newer, _ = _score_and_store(con, model, shop, changed, cache, label="m:v2")
    assert newer.encoded == 120
    assert [p.name for p in cache.iterdir()] == ["m_v2.npz"]
    cache_file = cache / "m_v2.npz"
    cache_file.write_bytes(b"not a cache")
    broken, _ = _score_and_store(con, model, shop, changed, cache, label="m:v2")
    assert broken.encoded == 120 and "unreadable" in broken.cache_note
