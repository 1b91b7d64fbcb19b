"""Transformer user vectors kept between runs, so a nightly run encodes only the users whose
history changed.

A user's vector depends only on the model and the user's step sequence. The cache holds, for
one model version, every encoded user's id, a 64-bit fingerprint of their sequence (items,
event types, timestamps and positions) and the vector, in one ``.npz`` file per model version
under ``<data_dir>/user_vectors/``. :func:`encode_users` reuses the vector of a user whose
fingerprint is unchanged and encodes the others (new users, users with new or changed events);
a new model version starts from an empty cache (the file of the previous version is removed
once the new one is written). The file is replaced atomically; an unreadable file is treated
as empty (everything is encoded again) and reported in the result.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from launch_pipeline.shop_data import FlatSequences

_C_ITEM = np.uint64(0x9E3779B97F4A7C15)
_C_EVENT = np.uint64(0xC2B2AE3D27D4EB4F)
_C_TS = np.uint64(0x165667B19E3779F9)
_C_POS = np.uint64(0xD6E8FEB86659FD93)
_C_MIX = np.uint64(0xFF51AFD7ED558CCD)


def sequence_fingerprints(
    flat: FlatSequences, rows: np.ndarray | None = None, chunk: int = 100_000
) -> np.ndarray:
    """A 64-bit fingerprint of each user's steps (item, event type, time, position from the
    end): equal sequences give equal fingerprints, any added or changed step a different one
    (up to hash collisions, about 1 in 2^64 per changed user). ``rows``: the users (all by
    default), taken ``chunk`` at a time. ``(len(rows),)`` uint64."""
    rows = np.arange(flat.n_users) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.zeros(len(rows), dtype=np.uint64)
    for s in range(0, len(rows), chunk):
        out[s : s + chunk] = _fingerprints(flat, rows[s : s + chunk])
    return out


def _fingerprints(flat: FlatSequences, rows: np.ndarray) -> np.ndarray:
    lengths = flat.lengths[rows]
    out = np.zeros(len(rows), dtype=np.uint64)
    total = int(lengths.sum())
    if total == 0:
        return out
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    within = np.arange(total) - np.repeat(first, lengths)
    step = np.repeat(flat.offsets[:-1][rows], lengths) + within
    pos_from_end = np.repeat(lengths, lengths) - 1 - within
    with np.errstate(over="ignore"):
        h = flat.items[step].astype(np.uint64) * _C_ITEM
        h ^= flat.events[step].astype(np.uint64) * _C_EVENT
        h ^= flat.ts[step].astype(np.int64).astype(np.uint64) * _C_TS
        h ^= pos_from_end.astype(np.uint64) * _C_POS
        h ^= h >> np.uint64(31)
        h *= _C_MIX
        h ^= h >> np.uint64(29)
        some = lengths > 0
        out[some] = np.add.reduceat(h, first[some])  # wraps modulo 2^64
    return out


@dataclass(frozen=True)
class EncodedUsers:
    """Vectors of the requested users (in their order) and how they were obtained."""

    vectors: np.ndarray  # (n, dim) float32
    encoded: int  # users encoded by the Transformer in this call
    reused: int  # users whose cached vector was reused
    cache_path: Path | None
    cache_note: str  # "" or why the cache could not be used


def cache_path(cache_dir: Path, model_label: str) -> Path:
    return Path(cache_dir) / (re.sub(r"[^A-Za-z0-9_.-]", "_", model_label) + ".npz")


def _read(path: Path, dim: int) -> tuple[pd.Index, np.ndarray, np.ndarray, str]:
    empty = (pd.Index([], dtype=object), np.zeros(0, np.uint64), np.zeros((0, dim), np.float32))
    if not path.exists():
        return (*empty, "")
    try:
        with np.load(path, allow_pickle=False) as z:
            users, fps, vecs = z["user_ids"], z["fingerprints"], z["vectors"]
        if vecs.ndim != 2 or vecs.shape[1] != dim or not len(users) == len(vecs) == len(fps):
            raise ValueError(f"shape {vecs.shape} does not fit dimension {dim}")
    except (OSError, ValueError, KeyError) as exc:
        return (*empty, f"cache {path.name} unreadable ({exc}); every user encoded again")
    return pd.Index(users.astype(str)), fps.astype(np.uint64), vecs.astype(np.float32), ""


def _write(path: Path, user_ids: np.ndarray, fps: np.ndarray, vecs: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, user_ids=np.asarray(user_ids, dtype=str), fingerprints=fps, vectors=vecs)
    os.replace(tmp, path)
    for other in path.parent.glob("*.npz"):
        if other != path:
            other.unlink(missing_ok=True)


def encode_users(
    model,
    model_label: str,
    user_ids: np.ndarray,
    flat: FlatSequences,
    rows: np.ndarray,
    cache_dir: Path | None,
    encode=None,
) -> EncodedUsers:
    """Vectors of users ``rows`` of ``flat`` (ids ``user_ids[rows]``), from the cache of
    ``model_label`` in ``cache_dir`` where the user's sequence is unchanged, else encoded by
    the Transformer (``launch_pipeline.model.training.user_vectors``, or ``encode(rows)``
    returning ``(len(rows), dim)``). Without ``cache_dir`` every user is encoded. The cache is
    then rewritten with the requested users only (users no longer scored drop out)."""
    from launch_pipeline.model.training import user_vectors

    rows = np.asarray(rows, dtype=np.int64)
    ids = np.asarray([str(u) for u in np.asarray(user_ids, dtype=object)[rows]], dtype=object)
    fps = sequence_fingerprints(flat, rows)
    dim = int(model.dim)

    def run(todo: np.ndarray) -> np.ndarray:
        if len(todo) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        if encode is not None:
            return np.asarray(encode(todo), dtype=np.float32)
        o = flat.offsets
        seqs = [flat.items[o[u] : o[u + 1]] for u in todo]
        return user_vectors(model, seqs, [flat.events[o[u] : o[u + 1]] for u in todo])

    if cache_dir is None:
        return EncodedUsers(run(rows), len(rows), 0, None, "")
    path = cache_path(cache_dir, model_label)
    cached_ids, cached_fps, cached_vecs, note = _read(path, dim)
    at = cached_ids.get_indexer(pd.Index(ids)) if len(cached_ids) else np.full(len(ids), -1)
    hit = at >= 0
    hit[hit] = cached_fps[at[hit]] == fps[hit]
    vectors = np.empty((len(rows), dim), dtype=np.float32)
    vectors[hit] = cached_vecs[at[hit]]
    miss = np.flatnonzero(~hit)
    vectors[miss] = run(rows[miss])
    _write(path, ids, fps, vectors)
    return EncodedUsers(vectors, len(miss), int(hit.sum()), path, note)
