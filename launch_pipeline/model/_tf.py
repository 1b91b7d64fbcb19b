"""Lazy TensorFlow / Keras import with quiet logs (imported only by the Keras-dependent modules)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

# native start-up notices TensorFlow writes to stderr before its logging is configured (so
# TF_CPP_MIN_LOG_LEVEL cannot silence them); anything else written during the import is kept
_STARTUP_NOTICES = ("oneDNN custom operations are on", "before absl::InitializeLog() is called")


@contextlib.contextmanager
def _without_startup_notices():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreter): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [
                line
                for line in tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not any(n in line for n in _STARTUP_NOTICES)
            ]
            if kept:
                sys.stderr.write("".join(kept))


def import_tf():
    """Return ``(tf, keras)``; sets ``TF_CPP_MIN_LOG_LEVEL=2`` first unless already set."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        with _without_startup_notices():
            import tensorflow  # noqa: F401
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
