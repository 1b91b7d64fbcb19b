"""Source adapters: map a public shop-data format onto the raw input contract.

``stage_source(source, path, raw_dir, **options)`` reads ``path`` in the format ``source`` and
(re)writes ``raw_dir`` in the contract layout (``events/YYYY-MM-DD.parquet`` for every day of
the data, ``products.parquet``, ``candidates.parquet``, ``dataset.json``); the pipeline then reads
``raw_dir`` as usual. ``launch-pipeline run --source NAME --path PATH`` calls it.

======================  =====================================================================
``canonical``           the contract itself: a folder in the contract layout, or one events
                        file (CSV/Parquet) with ``products.*`` and ``candidates.*`` beside it
``online_retail``       UCI Online Retail / Online Retail II invoice lines (CSV, Parquet, xlsx)
``taobao``              Alibaba Taobao UserBehavior (no header: user, item, category,
                        behaviour, unix seconds)
``rees46``              REES46 multi-category store events (``event_time, event_type, ...``)
======================  =====================================================================

Row-level problems never stop staging: rows are kept, and an adapter that knows more than the
contract can express pre-assigns a quarantine reason in the ``flag`` column (cleaning turns it
into the row's reason). File-level problems (unknown source, missing file, missing columns)
raise :class:`~launch_pipeline.errors.ConfigurationError` or
:class:`~launch_pipeline.errors.InputFileError` at once. See ``docs/use_your_own_data.md``.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path

from launch_pipeline.errors import ConfigurationError, InputFileError

SOURCES: tuple[str, ...] = ("canonical", "online_retail", "taobao", "rees46", "complete_journey")


@dataclass
class StagingSummary:
    source: str
    path: str
    raw_dir: Path
    start_date: dt.date
    end_date: dt.date
    days: int
    rows: int
    products: int
    candidates: int
    flagged: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    """Source files staging did not take (:class:`launch_pipeline.raw_io.SkippedFile`)."""

    def summary_line(self) -> str:
        flagged = sum(self.flagged.values())
        flags = ", ".join(f"{k} {v:,}" for k, v in self.flagged.items())
        skipped = ""
        if self.skipped:
            records = sum(f.records or 0 for f in self.skipped)
            skipped = f"; {len(self.skipped)} file(s) not taken ({records:,} records), listed below"
        return (
            f"{self.source}: {self.rows:,} rows over {self.days} days "
            f"({self.start_date} .. {self.end_date}), {self.products:,} products, "
            f"{self.candidates:,} launch candidates, {len(self.categories)} categories; "
            f"{flagged:,} rows pre-flagged for quarantine"
            + (f" ({flags})" if flags else "")
            + skipped
        )

    def skipped_lines(self) -> list[str]:
        """One line per source file not taken: the file, its records and the reason."""
        return [f.line() for f in self.skipped]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "path": self.path,
            "raw_dir": str(self.raw_dir),
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "days": self.days,
            "rows": self.rows,
            "products": self.products,
            "candidates": self.candidates,
            "flagged": dict(self.flagged),
            "categories": dict(self.categories),
            "skipped_files": [
                {"file": f.file, "reason": f.reason, "records": f.records} for f in self.skipped
            ],
            "seconds": round(self.seconds, 2),
        }


def adapter_module(source: str):
    name = str(source or "").strip().lower()
    if name not in SOURCES:
        raise ConfigurationError(
            f"unknown source {source!r}: expected one of {', '.join(SOURCES)} "
            "(see docs/use_your_own_data.md)"
        )
    return importlib.import_module(f"launch_pipeline.adapters.{name}")


def stage_source(source: str, path: str | Path, raw_dir: str | Path, **options) -> StagingSummary:
    """Read ``path`` as ``source`` and (re)write ``raw_dir`` in the raw input contract.

    ``options`` are the adapter's keyword options (e.g. ``candidate_days=30`` for the
    historical logs, ``fav_as="view"`` for Taobao); an unknown option is a
    :class:`ConfigurationError`."""
    module = adapter_module(source)
    name = module.__name__.rsplit(".", 1)[-1]
    path = Path(path).expanduser()
    raw_dir = Path(raw_dir).expanduser()
    if not path.exists():
        raise InputFileError(path, f"not found ({name} source)", "check --path")
    from launch_pipeline.paths import check_folder_for_writing

    # before the adapter deletes a previous staging's files or writes anything
    check_folder_for_writing(raw_dir, "raw data directory")
    accepted = [
        p.name
        for p in inspect.signature(module.stage).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {unknown} for source {name}: accepted {accepted}"
        )
    t0 = time.perf_counter()
    summary: StagingSummary = module.stage(path, raw_dir, **options)
    summary.seconds = time.perf_counter() - t0
    return summary


def summary_from(
    source: str, path: Path, raw_dir: Path, start: dt.date, end: dt.date, written: dict, notes
) -> StagingSummary:
    return StagingSummary(
        source=source,
        path=str(path),
        raw_dir=Path(raw_dir),
        start_date=start,
        end_date=end,
        days=written["days"],
        rows=written["rows"],
        products=written["products"],
        candidates=written["candidates"],
        flagged=written["flagged"],
        categories=written["categories"],
        notes=notes,
    )


__all__ = ["SOURCES", "StagingSummary", "stage_source"]
