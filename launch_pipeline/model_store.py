"""Where model versions live: the :class:`ModelStore` interface and its local implementation.

:class:`ModelStore` is what the pipeline needs from a model store: numbered versions, each with
its files and metadata, a status (challenger, champion, rejected, retired) and the promotion
decision recorded with it. :class:`LocalModelStore` keeps them in a folder; an object-store
implementation (S3, GCS) fills the same methods, downloading a version's folder to a local
cache for Keras (``ModelVersion.path`` is always a local folder). The Dagster resources in
``defs/resources.py`` hand one of them to the assets.

Layout of the local store under ``<models_dir>/<name>/``::

    registry.json          {"champion": 3, "versions": [{"version": 1, ...}, ...]}
    v0001/model.keras      the Keras model (loaded with safe_mode=True)
    v0001/metadata.json    vocabulary, config, training curve, evaluation metrics

A version folder is written under a temporary name and renamed into place, and
``registry.json`` is replaced atomically, so a crash never leaves a half-written version that the
registry points at. A version becomes champion only through :meth:`ModelStore.promote`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REGISTRY_FILE = "registry.json"
MODEL_NAME = "preference_model"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def metadata_path(self) -> Path:
        return self.path / "metadata.json"

    def metadata(self) -> dict:
        return json.loads(self.metadata_path.read_text())

    @property
    def label(self) -> str:
        return f"{self.name}:v{self.version:04d}"


def _atomic_write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ModelStore(ABC):
    """Versioned models of one name (``preference_model``)."""

    name: str

    @abstractmethod
    def versions(self) -> list[dict]:
        """Every registered version, oldest first: ``version``, ``status``, ``created_at``,
        ``metrics`` and, once decided, ``note`` and ``decision``."""

    @abstractmethod
    def get(self, version: int) -> ModelVersion:
        """A version with its files in a local folder."""

    @abstractmethod
    def champion(self) -> ModelVersion | None: ...

    @abstractmethod
    def register(self, write_files: Callable[[Path], object], metadata: dict) -> ModelVersion:
        """Create the next version: ``write_files(folder)`` writes ``model.keras`` into a local
        folder; the version becomes visible only once complete."""

    @abstractmethod
    def set_status(
        self, version: int, status: str, note: str = "", decision: dict | None = None
    ) -> None:
        """Set a version's status (``champion`` retires the previous champion)."""

    def latest(self) -> ModelVersion | None:
        versions = self.versions()
        return self.get(versions[-1]["version"]) if versions else None

    def promote(self, version: int, note: str = "", decision: dict | None = None) -> None:
        self.set_status(version, "champion", note, decision)

    def clean_stale_temporaries(self) -> int:
        """Remove what a crashed write left behind; returns how many were removed."""
        return 0


class LocalModelStore(ModelStore):
    """Model versions in a local folder ``<models_dir>/<name>/`` (layout in the module doc)."""

    def __init__(self, models_dir: Path, name: str = MODEL_NAME):
        self.name = name
        self.root = Path(models_dir) / name

    # ---------------------------------------------------------------- reading
    def _read(self) -> dict:
        path = self.root / REGISTRY_FILE
        if not path.exists():
            return {"champion": None, "versions": []}
        return json.loads(path.read_text())

    def versions(self) -> list[dict]:
        return self._read()["versions"]

    def get(self, version: int) -> ModelVersion:
        return ModelVersion(self.name, int(version), self.root / f"v{int(version):04d}")

    def champion(self) -> ModelVersion | None:
        champ = self._read().get("champion")
        return self.get(champ) if champ is not None else None

    # ---------------------------------------------------------------- writing
    def register(self, write_files, metadata: dict) -> ModelVersion:
        """Create the next version: ``write_files(folder)`` writes ``model.keras`` into a
        temporary folder, which is renamed into place once complete."""
        self.root.mkdir(parents=True, exist_ok=True)
        reg = self._read()
        existing = [v["version"] for v in reg["versions"]]
        on_disk = [int(p.name[1:]) for p in self.root.glob("v[0-9][0-9][0-9][0-9]") if p.is_dir()]
        version = max(existing + on_disk, default=0) + 1
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".v{version:04d}-"))
        try:
            write_files(tmp)
            if not (tmp / "model.keras").exists():
                raise RuntimeError("write_files did not write model.keras")
            meta = {**metadata, "version": version, "created_at": dt.datetime.now(dt.timezone.utc)}
            _atomic_write_json(tmp / "metadata.json", meta)
            final = self.root / f"v{version:04d}"
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        reg["versions"].append(
            {
                "version": version,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "status": "registered",
                "metrics": metadata.get("metrics", {}),
            }
        )
        _atomic_write_json(self.root / REGISTRY_FILE, reg)
        return self.get(version)

    def set_status(
        self, version: int, status: str, note: str = "", decision: dict | None = None
    ) -> None:
        reg = self._read()
        for v in reg["versions"]:
            if v["version"] == version:
                v["status"] = status
                if note:
                    v["note"] = note
                if decision is not None:
                    v["decision"] = decision
        if status == "champion":
            for v in reg["versions"]:
                if v["version"] != version and v["status"] == "champion":
                    v["status"] = "retired"
            reg["champion"] = version
        _atomic_write_json(self.root / REGISTRY_FILE, reg)

    def clean_stale_temporaries(self) -> int:
        """Remove temporary version folders left by a crashed run."""
        n = 0
        for p in self.root.glob(".v*-*"):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n
