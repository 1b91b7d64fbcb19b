"""The raw input contract: what a data directory must hold for the pipeline to read it.

A *raw data directory* holds:

* ``events/YYYY-MM-DD.csv`` or ``events/YYYY-MM-DD.parquet``: one file per UTC day (one daily
  partition). Columns ``user_id, item_id, event_type, ts`` plus optional ``quantity, price,
  rating, review_text, session_id`` and ``flag`` (a quarantine reason pre-assigned by a source
  adapter, e.g. ``non_product_code``; empty for ordinary rows).
* ``products.csv`` or ``products.parquet``: ``item_id, title, category, brand, price`` and
  optional ``launched_at``.
* ``candidates.csv`` or ``candidates.parquet``: the new products awaiting a launch decision,
  the product columns plus optional ``unit_cost, stock``.
* ``dataset.json`` (optional): ``{"source": ..., "start_date": "YYYY-MM-DD",
  "end_date": "YYYY-MM-DD" | null, "timezone": "UTC"}``: the daily partition range. Without it
  the range is read from the event file names.
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = ("view", "cart", "purchase", "return", "review")

EVENT_REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "ts")
EVENT_OPTIONAL_COLUMNS: tuple[str, ...] = (
    "quantity",
    "price",
    "rating",
    "review_text",
    "session_id",
    "flag",
)
EVENT_COLUMNS: tuple[str, ...] = EVENT_REQUIRED_COLUMNS + EVENT_OPTIONAL_COLUMNS

PRODUCT_REQUIRED_COLUMNS: tuple[str, ...] = ("item_id", "title", "category", "brand", "price")
PRODUCT_OPTIONAL_COLUMNS: tuple[str, ...] = ("launched_at",)
CANDIDATE_OPTIONAL_COLUMNS: tuple[str, ...] = ("launched_at", "unit_cost", "stock")

EVENTS_DIRNAME = "events"
PRODUCTS_STEM = "products"
CANDIDATES_STEM = "candidates"
MANIFEST_NAME = "dataset.json"
SUPPORTED_SUFFIXES: tuple[str, ...] = (".parquet", ".csv")
