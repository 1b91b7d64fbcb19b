"""Metric, data and baseline code of launch_pipeline.model against hand-computed cases (no TF)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from launch_pipeline.model import baselines as bl
from launch_pipeline.model.data import (
    SequenceData,
    attributes_matrix,
    cold_start_split,
    holdout_last,
    leave_one_out,
    read_s3rec,
)
from launch_pipeline.model.metrics import exclusion_mask, hit_rate_ndcg, rank_of_targets, rank_split


# ----------------------------------------------------------------------------- metrics
def test_import_is_cheap():
    """Importing the package (metrics, baselines, data) must not import TensorFlow."""
    code = (
        "import sys, launch_pipeline.model as m; m.rank_of_targets; m.baselines.popularity; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1]
    )


def test_rank_simple_and_exclusions():
    # items 0..4; column 0 is padding and never ranked even with a huge score
    scores = np.array([[100.0, 0.5, 0.9, 0.1, 0.7]])
    assert rank_of_targets(scores, np.array([1])).tolist() == [2]  # 0.9 and 0.7 above
    assert rank_of_targets(scores, np.array([2])).tolist() == [0]
    assert rank_of_targets(scores, np.array([3])).tolist() == [3]
    # excluding item 2 lifts item 1 by one place; list and mask forms agree
    assert rank_of_targets(scores, np.array([1]), [np.array([2])]).tolist() == [1]
    mask = np.zeros_like(scores, dtype=bool)
    mask[0, 2] = True
    assert rank_of_targets(scores, np.array([1]), mask).tolist() == [1]
    # the target is ranked even when it is in the exclusion list
    assert rank_of_targets(scores, np.array([1]), [np.array([1, 2])]).tolist() == [1]


def test_rank_ties_are_pessimistic_by_default():
    scores = np.array([[0.0, 0.5, 0.5, 0.5, 0.1], [0.0, 1.0, 1.0, 1.0, 1.0]])
    targets = np.array([2, 4])
    assert rank_of_targets(scores, targets).tolist() == [2, 3]
    assert rank_of_targets(scores, targets, ties="optimistic").tolist() == [0, 0]
    # a constant scorer never gets a hit@1 by the default rule
    assert rank_of_targets(np.ones((1, 4)), np.array([1])).tolist() == [2]
    with pytest.raises(ValueError):
        rank_of_targets(scores, targets, ties="random")


def test_rank_candidates_and_batches():
    rng = np.random.default_rng(0)
    scores = rng.random((7, 12))
    targets = rng.integers(1, 12, size=7)
    excl = [rng.choice(np.arange(1, 12), size=3, replace=False) for _ in range(7)]
    full = rank_of_targets(scores, targets, excl)
    # brute force
    for i in range(7):
        others = [j for j in range(1, 12) if j != targets[i] and j not in set(excl[i])]
        assert full[i] == sum(scores[i, j] >= scores[i, targets[i]] for j in others)
    batched = rank_split(lambda idx: scores[idx], excl, targets, batch_size=3)
    assert batched.tolist() == full.tolist()
    # candidates: rank only among items 1..5 (all targets inside)
    t = np.array([3])
    s = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 9.0]])
    assert rank_of_targets(s, t, candidates=np.arange(1, 6)).tolist() == [2]
    with pytest.raises(ValueError):
        rank_of_targets(s, np.array([6]), candidates=np.arange(1, 6))


def test_exclusion_mask():
    m = exclusion_mask(2, 5, [np.array([1, 3]), np.array([], dtype=int)])
    assert m.tolist() == [[False, True, False, True, False], [False] * 5]


def test_hit_rate_ndcg_hand_computed():
    ranks = np.array([0, 1, 9, 10, 25])
    m = hit_rate_ndcg(ranks, ks=(10, 20))
    assert m["hr@10"] == pytest.approx(3 / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert m["hr@20"] == pytest.approx(4 / 5)
    assert m["ndcg@20"] == pytest.approx(
        (1 + 1 / math.log2(3) + 1 / math.log2(11) + 1 / math.log2(12)) / 5
    )
    assert hit_rate_ndcg(np.array([0]), ks=(1,)) == {"hr@1": 1.0, "ndcg@1": 1.0}
    assert set(hit_rate_ndcg(ranks)) == {"hr@10", "ndcg@10", "hr@20", "ndcg@20"}


# ----------------------------------------------------------------------------- data
def _write_s3rec(tmp_path, lines, attrs=None):
    seq = tmp_path / "seq.txt"
    seq.write_text("\n".join(lines) + "\n")
    if attrs is None:
        return seq, None
    att = tmp_path / "attrs.json"
    att.write_text(json.dumps(attrs))
    return seq, att


def test_read_s3rec_and_leave_one_out(tmp_path):
    seq, att = _write_s3rec(
        tmp_path,
        ["1 1 2 3 4", "2 5 6", "3 7", "4 2 3 8 9 1"],
        {"1": [10, 20], "2": [20], "9": [30], "12": [10]},
    )
    data = read_s3rec(seq, att)
    assert data.n_items == 12  # the attribute file knows item 12
    assert data.n_users == 4 and data.user_ids.tolist() == [1, 2, 3, 4]
    assert data.n_attributes == 4  # 10, 20, 30 -> 1, 2, 3 plus padding
    assert data.item_attributes.shape == (13, 2)
    assert data.item_attributes[1].tolist() == [1, 2]
    assert data.item_attributes[12].tolist() == [1, 0]
    assert data.item_attributes[0].tolist() == [0, 0]
    assert data.attribute_names == ["", "10", "20", "30"]

    train, valid, test = leave_one_out(data)
    assert [s.tolist() for s in train.sequences] == [[1, 2], [5], [], [2, 3, 8]]
    assert valid.users.tolist() == [0, 3]
    assert [s.tolist() for s in valid.inputs] == [[1, 2], [2, 3, 8]]
    assert valid.targets.tolist() == [3, 9]
    assert test.users.tolist() == [0, 1, 3]
    assert [s.tolist() for s in test.inputs] == [[1, 2, 3], [5], [2, 3, 8, 9]]
    assert test.targets.tolist() == [4, 6, 1]
    assert test.last_items().tolist() == [3, 5, 9]

    tr, va = holdout_last(data)
    assert [s.tolist() for s in tr.sequences] == [[1, 2, 3], [5], [], [2, 3, 8, 9]]
    assert va.targets.tolist() == [4, 6, 1]


def test_attributes_matrix_strings_and_vocab():
    mat, vocab = attributes_matrix({1: ["brand=a", "cat=x"], 3: ["cat=x"]}, n_items=3)
    assert mat.shape == (4, 2) and mat[2].tolist() == [0, 0]
    assert mat[1, 1] == mat[3, 0] == vocab["cat=x"]
    mat2, _ = attributes_matrix({1: ["brand=new", "cat=x"]}, n_items=1, vocab=vocab)
    assert mat2[1].tolist() == [vocab["cat=x"]]  # unknown attribute dropped


def test_cold_start_split():
    rng = np.random.default_rng(1)
    seqs = [rng.permutation(np.arange(1, 41))[:10] for _ in range(50)]
    data = SequenceData(seqs, None, np.zeros((41, 1), dtype=int), 1)
    cold, warm, ev = cold_start_split(data, fraction=0.1, seed=3)
    assert len(cold) == 4
    assert not np.isin(np.concatenate(warm.sequences), cold).any()
    assert np.isin(ev.targets, cold).all()
    for u, inp, t in zip(ev.users, ev.inputs, ev.targets, strict=True):
        s = data.sequences[u].tolist()
        first = min(s.index(c) for c in cold if c in s)
        assert s[first] == t and inp.tolist() == s[:first] and len(inp) >= 1
    assert ev.candidates.tolist() == cold.tolist()


def test_sequence_data_validation():
    with pytest.raises(ValueError):
        SequenceData([np.array([1, 5])], None, np.zeros((3, 1), dtype=int), 1)
    with pytest.raises(ValueError):
        SequenceData([np.array([1, 2])], [np.array([1])], np.zeros((3, 1), dtype=int), 1)


# ----------------------------------------------------------------------------- baselines
SEQS = [np.array([1, 2, 3]), np.array([1, 2]), np.array([2, 3, 4]), np.array([4])]


def test_popularity():
    assert bl.popularity(SEQS, 5).tolist() == [0, 2, 3, 2, 2, 0]


def test_cosine_similarity_hand_computed():
    sim = bl.item_cosine_similarity(SEQS, 5).toarray()
    # users of items: 1:{0,1} 2:{0,1,2} 3:{0,2} 4:{2,3}
    assert sim[1, 2] == pytest.approx(2 / math.sqrt(2 * 3))
    assert sim[2, 3] == pytest.approx(2 / math.sqrt(3 * 2))
    assert sim[1, 3] == pytest.approx(1 / 2)
    assert sim[1, 4] == 0 and sim[3, 4] == pytest.approx(1 / 2)
    assert np.allclose(np.diag(sim), 0) and np.allclose(sim, sim.T)
    # beta = 0: conditional probability P(j | i) = |U_i & U_j| / |U_i|
    cond = bl.item_similarity(SEQS, 5, beta=0.0).toarray()
    assert cond[1, 2] == pytest.approx(1.0) and cond[2, 1] == pytest.approx(2 / 3)


def test_last_item_knn_and_neighbor_lists():
    sim = bl.item_cosine_similarity(SEQS, 5)
    dense = bl.last_item_knn_scores(sim, np.array([1, 4]))
    assert dense.shape == (2, 6)
    assert np.argmax(dense[0]) == 2  # item 2 is the most similar to item 1
    ids, vals = bl.top_k_neighbors(sim, 2)
    assert ids[1].tolist() == [2, 3] and vals[1, 0] == pytest.approx(dense[0, 2])
    assert ids[5].tolist() == [0, 0] and vals[5].tolist() == [0, 0]  # item 5 never seen
    # ties (items 1 and 4 both 1/2 from item 3... ) broken by the smaller id
    ids3, _ = bl.top_k_neighbors(sim, 3)
    assert ids3[3].tolist() == [2, 1, 4]
    full_ids, full_vals = bl.top_k_neighbors(sim, 6)
    rebuilt = bl.neighbor_scores(full_ids, full_vals, np.array([1, 4]), 6)
    assert np.allclose(rebuilt, dense)
    # knn ranks: user with last item 1, target 3, item 1 excluded
    r = rank_of_targets(dense[:1], np.array([3]), [np.array([1])])
    assert r.tolist() == [1]


def test_attribute_baselines():
    attrs = np.array([[0, 0], [1, 0], [1, 2], [2, 0], [3, 0], [1, 3]])
    pop = np.array([0, 4, 2, 0, 6, 0], dtype=float)  # items 3 and 5 unseen
    # attribute 1: items 1 (4), 2 (2) -> item_mean 3, total 6; attribute 2: item 2 (2) and unseen
    # item 3 -> item_mean 2, total 2; attribute 3: item 4 (6) -> 6
    s = bl.attribute_popularity(attrs, pop, how="item_mean")
    assert s.tolist() == pytest.approx([0, 3, 2.5, 2, 6, 4.5])
    t = bl.attribute_popularity(attrs, pop, how="total")
    assert t.tolist() == pytest.approx([0, 6, 4, 2, 6, 6])
    ov = bl.attribute_overlap_scores(attrs, np.array([1]))
    assert ov.shape == (1, 6)
    assert ov[0, 1] == pytest.approx(1) and ov[0, 2] == pytest.approx(1 / math.sqrt(2))
    assert ov[0, 4] == 0
