"""Lazy TensorFlow / Keras import with quiet logs (imported only by the Keras-dependent modules)."""

from __future__ import annotations

import os


def import_tf():
    """Return ``(tf, keras)``; sets ``TF_CPP_MIN_LOG_LEVEL=2`` first unless already set."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":  # pragma: no cover - environment guard
        raise RuntimeError("launch_pipeline.model needs the Keras TensorFlow backend")
    return tf, keras


def cpu_has_fast_bf16() -> bool:
    """True when the CPU advertises AMX-BF16 or AVX512-BF16 (oneDNN then runs bf16 matmuls fast)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags
