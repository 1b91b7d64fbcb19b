"""A small file-based model registry: versioned model folders plus ``registry.json``.

Layout under ``<models_dir>/<name>/``::

    registry.json          {"champion": 3, "versions": [{"version": 1, ...}, ...]}
    v0001/model.keras      the Keras model (loaded with safe_mode=True)
    v0001/metadata.json    vocabulary, config, training curve, evaluation metrics

A version folder is written under a temporary name and renamed into place, and
``registry.json`` is replaced atomically, so a crash never leaves a half-written version that the
registry points at. A version becomes champion only through :func:`promote`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

REGISTRY_FILE = "registry.json"


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


class ModelRegistry:
    def __init__(self, models_dir: Path, name: str = "preference_model"):
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

    def latest(self) -> ModelVersion | None:
        versions = self.versions()
        return self.get(versions[-1]["version"]) if versions else None

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

    def promote(self, version: int, note: str = "", decision: dict | None = None) -> None:
        self.set_status(version, "champion", note, decision)

    def clean_stale_temporaries(self) -> int:
        """Remove temporary version folders left by a crashed run."""
        n = 0
        for p in self.root.glob(".v*-*"):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n
