from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import duckdb
import pandas as pd
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TQDM_DISABLE", "1")

from launch_pipeline.simulator import EVENT_FILE_COLUMNS  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"

EVENT_HEADER = list(EVENT_FILE_COLUMNS)


def write_events_csv(path: Path, rows: list[dict] | str) -> Path:
    """Write a day file: a list of dicts (missing fields empty) or the literal file text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(rows, str):
        path.write_text(rows)
        return path
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=EVENT_HEADER)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in EVENT_HEADER})
    return path


def write_products(raw_dir: Path, products: list[dict], candidates: list[dict]) -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(products).to_csv(raw_dir / "products.csv", index=False)
    pd.DataFrame(candidates).to_csv(raw_dir / "candidates.csv", index=False)


def ts(day: str, hh: int = 10, mm: int = 0, ss: int = 0) -> str:
    return f"{day}T{hh:02d}:{mm:02d}:{ss:02d}Z"


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    yield c
    c.close()


@pytest.fixture
def tiny_catalog(tmp_path):
    raw = tmp_path / "raw"
    products = [
        {
            "item_id": f"p{i}",
            "title": f"Product {i}",
            "category": "kitchen" if i < 3 else "garden",
            "brand": "acme",
            "price": 10.0 + i,
        }
        for i in range(1, 6)
    ]
    candidates = [
        {"item_id": "n1", "title": "New 1", "category": "kitchen", "brand": "acme", "price": 20.0},
        {"item_id": "n2", "title": "New 2", "category": "garden", "brand": "zeta", "price": 30.0},
    ]
    write_products(raw, products, candidates)
    return raw


DAY = dt.date(2026, 11, 1)
