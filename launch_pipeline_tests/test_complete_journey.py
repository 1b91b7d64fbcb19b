"""The Complete Journey adapter on small synthetic folders (same schema as the real files):
every bad line kind quarantined with its reason, raw = clean + quarantined, the launch-candidate
rule on hand-made cases, no look-ahead at a cutoff, one-line errors for missing files/columns;
and the real folder (skipped when ../shared is absent)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from launch_pipeline import catalog, cleaning, raw_io
from launch_pipeline.adapters import stage_source
from launch_pipeline.errors import InputFileError
from launch_pipeline.settings import Settings

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
CUTOFF = dt.date(2017, 5, 1)
HORIZON = 30
HI = CUTOFF + dt.timedelta(days=HORIZON)


def week_of(day: dt.date) -> int:
    """The package's week numbers: week 1 is 2017-01-01, weeks start on Mondays after it."""
    return 1 if day < dt.date(2017, 1, 2) else (day - dt.date(2017, 1, 2)).days // 7 + 2


PRODUCTS = [
    # product_id, manufacturer_id, department, brand, product_category, product_type, size
    (101, 69, "GROCERY", "Private", "SOFT DRINKS", "SOFT DRINKS 12/18&15PK CAN CAR", "12 OZ"),
    (102, 400, "GROCERY", "National", "COOKIES/CONES", "SPECIALTY COOKIES", "5.29 OZ"),
    (103, 401, "PRODUCE", "National", "VEGETABLES - ALL OTHERS", "CUCUMBERS", None),
    (104, 402, "DRUG GM", "National", "ORAL HYGIENE PRODUCTS", "TOOTHPASTE", "8.2 OZ"),
    (105, 69, "GROCERY", "Private", "FLUID MILK PRODUCTS", "FLUID MILK WHITE ONLY", "1 GAL"),
    # 2xx: hand-made candidate cases
    (201, 500, "GROCERY", "National", "SOFT DRINKS", "SPARKLING WATER MANGO", "12 OZ"),
    (202, 501, "GROCERY", "National", "COOKIES/CONES", "PROTEIN COOKIES", "4 OZ"),
    (203, 502, "GROCERY", "National", "FROZEN PIZZA", "PIZZA/PREMIUM", "20 OZ"),
    (204, 503, "DRUG GM", "National", "ORAL HYGIENE PRODUCTS", "CHARCOAL TOOTHPASTE", "4 OZ"),
    (205, 504, "GROCERY", "National", "CHEESE", "GOAT CHEESE", "4 OZ"),
    (206, 505, "GROCERY", "National", "CANDY", "SOUR GUMMIES", "5 OZ"),
    (207, 506, "GROCERY", "National", "SOUP", "RAMEN BOWL", "3 OZ"),
    # non-products
    (901, 1, "FUEL", "National", "COUPON/MISC ITEMS", "GASOLINE-REG UNLEADED", None),
    (902, 2, "MISCELLANEOUS", "National", "COUPON/MISC ITEMS", "OUTSIDE VENDORS GIFT CARDS", None),
]
PRODUCT_COLUMNS = ["product_id", "manufacturer_id", "department", "brand", "product_category",
                   "product_type", "package_size"]  # fmt: skip
TX_COLUMNS = ["household_id", "store_id", "basket_id", "product_id", "quantity", "sales_value",
              "retail_disc", "coupon_disc", "coupon_match_disc", "week",
              "transaction_timestamp"]  # fmt: skip


class Lines:
    def __init__(self):
        self.rows: list[dict] = []
        self.basket = 1000

    def add(self, hh, product, when: dt.datetime, qty=1, sales=2.5, basket=None, **extra):
        if basket is None:
            self.basket += 1
            basket = self.basket
        row = dict(household_id=hh, store_id=300, basket_id=basket, product_id=product,
                   quantity=qty, sales_value=sales, retail_disc=0.0, coupon_disc=0.0,
                   coupon_match_disc=0.0, week=week_of(when.date()),
                   transaction_timestamp=when)  # fmt: skip
        row.update(extra)
        self.rows.append(row)
        return row


def _history() -> Lines:
    """Five old products bought by 6 households every few days from 2017-01-01 to 2017-06-10."""
    lines = Lines()
    day = dt.date(2017, 1, 1)
    k = 0
    while day < dt.date(2017, 6, 10):
        for hh in range(1, 7):
            if (day.toordinal() + hh) % 3 == 0:
                when = dt.datetime.combine(day, dt.time(9 + hh, 10 + k % 40))
                for j, product in enumerate((101, 102, 103, 104, 105)):
                    if (hh + j + k) % 2 == 0:
                        lines.add(hh, product, when, qty=1 + j % 2, sales=(1.0 + j) * (1 + j % 2),
                                  basket=10_000 + k)  # fmt: skip
                k += 1
        day += dt.timedelta(days=1)
    return lines


def _case_lines(lines: Lines) -> None:
    """The candidate cases (window [CUTOFF, HI)) and one line of each bad kind."""
    at = lambda d, h=10: dt.datetime.combine(d, dt.time(h, 0))  # noqa: E731
    t = CUTOFF
    # 201: first line in the window, several sales -> candidate priced at its first sale (1.75)
    lines.add(1, 201, at(t + dt.timedelta(days=2)), qty=2, sales=3.5)
    lines.add(2, 201, at(t + dt.timedelta(days=5)), qty=1, sales=2.0)
    # 202: first sale in the window but promoted in a week over before the cutoff -> not new
    lines.add(3, 202, at(t + dt.timedelta(days=3)), qty=1, sales=4.0)
    # 203: first sale in the window, promoted only from the cutoff's own week -> candidate
    lines.add(4, 203, at(t + dt.timedelta(days=4)), qty=1, sales=6.0)
    # 204: a zero-quantity line before the cutoff, sales after -> seen before, not new
    lines.add(5, 204, at(t - dt.timedelta(days=20)), qty=0, sales=0.0)
    lines.add(5, 204, at(t + dt.timedelta(days=6)), qty=1, sales=3.0)
    # 205: first sale after the window -> nothing
    lines.add(6, 205, at(HI + dt.timedelta(days=2)), qty=1, sales=5.0)
    # 206: only a zero-sales line in the window -> no sale, not a candidate
    lines.add(1, 206, at(t + dt.timedelta(days=7)), qty=1, sales=0.0)
    # 207: first line in the window without a sale, then a sale -> candidate at the sale's price
    lines.add(2, 207, at(t + dt.timedelta(days=8)), qty=0, sales=0.0)
    lines.add(2, 207, at(t + dt.timedelta(days=9)), qty=3, sales=3.0)


BAD = {  # reason -> line (all before the cutoff, on 2017-03-15)
    "fuel_by_volume": dict(hh=1, product=901, qty=12000, sales=25.4),
    "non_product_line": dict(hh=2, product=902, qty=1, sales=25.0),
    "zero_quantity": dict(hh=3, product=101, qty=0, sales=1.0),
    "zero_sales_value": dict(hh=4, product=102, qty=1, sales=0.0),
    "inconsistent_sign": dict(hh=5, product=103, qty=-1, sales=2.0),
    "missing_user_id": dict(hh=None, product=104, qty=1, sales=4.0),
    "missing_item_id": dict(hh=6, product=None, qty=1, sales=4.0),
    "unknown_item": dict(hh=6, product=999, qty=1, sales=4.0),
}


def _bad_lines(lines: Lines) -> dict[str, int]:
    """Index of the line of each bad kind; plus an exact duplicate and a return."""
    when = dt.datetime(2017, 3, 15, 12, 0)
    index = {}
    for reason, kw in BAD.items():
        lines.add(kw["hh"], kw["product"], when, qty=kw["qty"], sales=kw["sales"])
        index[reason] = len(lines.rows) - 1
    dup = lines.add(1, 105, when.replace(hour=13), qty=1, sales=5.0)
    lines.rows.append(dict(dup))
    index["exact_duplicate"] = len(lines.rows) - 1
    lines.add(2, 105, when.replace(hour=14), qty=-1, sales=-5.0)
    index["return"] = len(lines.rows) - 1
    return index


def _promotions() -> pd.DataFrame:
    cut_week = week_of(CUTOFF)
    rows = [
        (202, 300, "A", "0", week_of(CUTOFF - dt.timedelta(days=30))),  # before: not new
        (203, 300, "A", "0", cut_week),  # the cutoff's own week: not known to be over
        (203, 300, "0", "D", cut_week + 2),
        (101, 300, "A", "0", 3),
    ]
    return pd.DataFrame(rows, columns=["product_id", "store_id", "display_location",
                                       "mailer_location", "week"])  # fmt: skip


def _write_folder(folder: Path, lines: list[dict], promotions: pd.DataFrame | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    tx = pd.DataFrame(lines, columns=TX_COLUMNS)
    for c in ("household_id", "product_id"):
        tx[c] = tx[c].astype("Int64")
    tx.to_parquet(folder / "transactions.parquet", index=False)
    pd.DataFrame(PRODUCTS, columns=PRODUCT_COLUMNS).to_parquet(
        folder / "products.parquet", index=False
    )
    (_promotions() if promotions is None else promotions).to_parquet(
        folder / "promotions.parquet", index=False
    )
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    lines = _history()
    _case_lines(lines)
    index = _bad_lines(lines)
    root = _write_folder(tmp_path_factory.mktemp("cj") / "src", lines.rows)
    return root, lines.rows, index


def _events(raw: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for _, p in sorted(raw_io.event_day_files(raw).items())],
        ignore_index=True,
    )


def _land_and_clean(raw: Path):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    catalog.load_product_catalog(con, raw)
    catalog.load_launch_candidates(con, raw)
    for day, path in raw_io.event_day_files(raw).items():
        raw_io.load_event_day(con, raw, day, path, lake_dir=raw.parent / "lake")
    start, end = raw_io.partition_range(raw)
    rules = Settings.from_env(data_dir=raw.parent, raw_dir=raw).cleaning
    stats = cleaning.clean_partitions(con, start, end, rules, now=NOW, lake_dir=raw.parent / "lake")
    return con, stats


def _stage_cut(src: Path, raw: Path):
    return stage_source(
        "complete_journey", src, raw, history_before=CUTOFF, candidates_window=(CUTOFF, HI)
    )


# --------------------------------------------------------------------------------------------
# mapping, bad lines, accounting
# --------------------------------------------------------------------------------------------
def test_mapping_and_every_bad_line_quarantined_with_its_reason(tmp_path, folder):
    src, rows, index = folder
    raw = tmp_path / "raw"
    summary = stage_source("complete_journey", src, raw)
    assert summary.rows == len(rows)
    manifest = json.loads((raw / "dataset.json").read_text())
    assert manifest["cleaning"]["bot_events_per_minute"] == 500
    ev = _events(raw)
    first = ev[(ev["item_id"] == "201")].sort_values("ts").iloc[0]
    assert first["event_type"] == "purchase" and first["quantity"] == "2"
    assert float(first["price"]) == pytest.approx(1.75)  # sales_value / quantity
    assert first["ts"] == f"{CUTOFF + dt.timedelta(days=2)}T10:00:00Z"
    assert first["session_id"] is not None and first["user_id"] == "1"

    con, stats = _land_and_clean(raw)
    raw_n = con.execute("SELECT count(*) FROM raw_events").fetchall()[0][0]
    clean_n = con.execute("SELECT count(*) FROM clean_events").fetchall()[0][0]
    quarantined = con.execute("SELECT reason, count(*) FROM quarantined_events GROUP BY 1").df()
    assert raw_n == len(rows) == clean_n + int(quarantined["count_star()"].sum())
    reasons = dict(zip(quarantined["reason"], quarantined["count_star()"], strict=True))
    for reason in BAD:
        assert reasons.get(reason, 0) >= 1, (reason, reasons)
    assert reasons["exact_duplicate"] == 1
    # every bad line of the fixture got exactly its reason (matched by the line's timestamp)
    q = con.execute(
        "SELECT reason, user_id, item_id, quantity, price FROM quarantined_events "
        "WHERE ts LIKE '2017-03-15T12:00:00%'"
    ).df()
    assert sorted(q["reason"]) == sorted(BAD)
    ret = con.execute(
        "SELECT quantity, price FROM clean_events WHERE event_type = 'return'"
    ).fetchall()
    assert ret == [(1, 5.0)]
    con.close()


def test_catalog_titles_categories_brands_and_plain_run_candidates(tmp_path, folder):
    src, _, _ = folder
    raw = tmp_path / "raw"
    stage_source("complete_journey", src, raw, candidate_days=45)
    products = pd.read_parquet(raw / "products.parquet").set_index("item_id")
    cands = pd.read_parquet(raw / "candidates.parquet").set_index("item_id")
    title = products.loc["101", "title"]
    assert "soft drinks" in title and "12 oz" in title and "private label" in title
    assert products.loc["101", "category"] == "soft drinks"
    assert products.loc["101", "brand"] == "manufacturer 69"
    assert float(products.loc["102", "price"]) > 0
    # the fuel and gift-card products are not goods: neither products nor candidates
    assert not {"901", "902", "999"} & (set(products.index) | set(cands.index))
    # the last 45 days (from 2017-04-27) hold the first lines of 201, 203, 205, 207 (new) and
    # 202, which was promoted in a week over before that (an existing product); 204 was seen
    # before (a zero line); 206 never sold
    assert set(cands.index) == {"201", "203", "205", "207"}
    assert {"202", "204"} <= set(products.index)
    # launched_at: the first sale only where that first sale was a launch by the same rule
    # (204: first line 100 days into the log, never promoted); else the log's first day
    assert products.loc["204", "launched_at"] == f"{CUTOFF + dt.timedelta(days=6)}T10:00:00Z"
    assert products.loc["202", "launched_at"] == "2017-01-01T00:00:00Z"  # promoted earlier
    assert products.loc["101", "launched_at"] == "2017-01-01T00:00:00Z"  # on sale from day 1
    assert cands["launched_at"].notna().all()  # a plain run keeps the first sale


# --------------------------------------------------------------------------------------------
# candidates at a cutoff, and no look-ahead
# --------------------------------------------------------------------------------------------
def test_cutoff_candidates_hand_made_cases(tmp_path, folder):
    src, _, _ = folder
    summary = _stage_cut(src, tmp_path / "raw")
    assert summary.end_date == CUTOFF - dt.timedelta(days=1)
    cands = pd.read_parquet(tmp_path / "raw" / "candidates.parquet").set_index("item_id")
    products = pd.read_parquet(tmp_path / "raw" / "products.parquet")
    assert set(cands.index) == {"201", "203", "207"}
    assert float(cands.loc["201", "price"]) == pytest.approx(1.75)  # its first sale
    assert float(cands.loc["207", "price"]) == pytest.approx(1.0)
    assert cands["launched_at"].isna().all()
    assert "goat cheese" not in " ".join(cands["title"])  # 205 sells after the window
    # the catalog is what sold before the cutoff: not 202 (no sale before), not the candidates
    assert set(products["item_id"]) == {"101", "102", "103", "104", "105"}
    events = _events(tmp_path / "raw")
    assert pd.to_datetime(events["ts"], errors="coerce").max() < pd.Timestamp(CUTOFF, tz="UTC")


def test_cutoff_needs_enough_history(tmp_path, folder):
    from launch_pipeline.errors import ConfigurationError

    src, _, _ = folder
    early = dt.date(2017, 2, 1)
    with pytest.raises(ConfigurationError, match="days of log before it"):
        stage_source(
            "complete_journey", src, tmp_path / "raw", history_before=early,
            candidates_window=(early, early + dt.timedelta(days=30)),
        )  # fmt: skip


def _poison(rows: list[dict]) -> tuple[list[dict], pd.DataFrame]:
    """Every line at or after the cutoff changed except each product's first sale line (what is
    known at a candidate's launch), extra lines after the cutoff, promotions from the cutoff's
    week on."""
    df = pd.DataFrame(rows)
    ok = (df["quantity"] > 0) & (df["sales_value"] > 0) & df["household_id"].notna()
    first_sale = set(
        df[ok].sort_values(["transaction_timestamp"], kind="stable")
        .groupby("product_id").head(1).index
    )  # fmt: skip
    out = []
    for i, r in enumerate(rows):
        r = dict(r)
        if r["transaction_timestamp"] >= dt.datetime.combine(CUTOFF, dt.time()) and (
            i not in first_sale
        ):
            r["quantity"] = r["quantity"] * 40
            r["sales_value"] = r["sales_value"] * 7  # a sale stays a sale, a zero a zero
            r["household_id"] = 4242
            r["basket_id"] = 777
        out.append(r)
    late = dt.datetime.combine(CUTOFF + dt.timedelta(days=1), dt.time(11))
    lines = Lines()
    for product in (101, 102, 103):  # existing products sell a lot after the cutoff
        lines.add(1, product, late, qty=500, sales=9999.0)
    lines.add(3, 205, late + dt.timedelta(days=40), qty=1, sales=1.0)  # after the window
    promos = pd.concat(
        [
            _promotions(),
            pd.DataFrame(
                [(p, 301, "A", "0", week_of(CUTOFF) + 1) for p in (201, 207, 102, 105)],
                columns=_promotions().columns,
            ),
        ],
        ignore_index=True,
    )
    return out + lines.rows, promos


def test_poisoned_future_does_not_change_the_staged_history(tmp_path, folder):
    src, rows, _ = folder
    poisoned_rows, promos = _poison(rows)
    poisoned = _write_folder(tmp_path / "poisoned", poisoned_rows, promos)
    _stage_cut(src, tmp_path / "a")
    _stage_cut(poisoned, tmp_path / "b")
    for name in ("products.parquet", "candidates.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / name), pd.read_parquet(tmp_path / "b" / name)
        )
    days_a = sorted(p.name for p in (tmp_path / "a" / "events").iterdir())
    assert days_a == sorted(p.name for p in (tmp_path / "b" / "events").iterdir())
    for name in days_a:
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "a" / "events" / name),
            pd.read_parquet(tmp_path / "b" / "events" / name),
        )


# --------------------------------------------------------------------------------------------
# file-level errors: one line, naming the file and what to do
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["transactions", "products", "promotions"])
def test_missing_file_is_named(tmp_path, folder, name):
    src, rows, _ = folder
    copy = _write_folder(tmp_path / "src", rows)
    (copy / f"{name}.parquet").unlink()
    with pytest.raises(InputFileError) as err:
        stage_source("complete_journey", copy, tmp_path / "raw")
    msg = str(err.value)
    assert f"{name}.parquet" in msg and "What to do" in msg and "\n" not in msg


def test_missing_column_is_named(tmp_path, folder):
    src, rows, _ = folder
    copy = _write_folder(tmp_path / "src", rows)
    tx = pd.read_parquet(copy / "transactions.parquet").drop(columns=["sales_value"])
    tx.to_parquet(copy / "transactions.parquet", index=False)
    with pytest.raises(InputFileError) as err:
        stage_source("complete_journey", copy, tmp_path / "raw")
    msg = str(err.value)
    assert "transactions.parquet" in msg and "sales_value" in msg and "\n" not in msg


def test_a_file_instead_of_the_folder(tmp_path, folder):
    src, _, _ = folder
    other = tmp_path / "notes.parquet"
    other.write_bytes(b"x")
    with pytest.raises(InputFileError, match="is a folder"):
        stage_source("complete_journey", other, tmp_path / "raw")
    # the transactions file itself stands for its folder
    summary = stage_source("complete_journey", src / "transactions.parquet", tmp_path / "raw")
    assert summary.rows > 0


# --------------------------------------------------------------------------------------------
# the real folder
# --------------------------------------------------------------------------------------------
REAL = (
    Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "grocery_complete_journey"
)


@pytest.mark.real_data
@pytest.mark.timeout(300)
def test_real_complete_journey_row_accounting(tmp_path):
    """Stage the whole real folder (every line staged, flags counted), then land and clean one
    month (September 2017) and check raw = clean + quarantined there: about a minute."""
    if not (REAL / "transactions.parquet").exists():
        pytest.skip(f"real dataset not available: {REAL} (see ../shared/datasets/README.md)")
    raw = tmp_path / "raw"
    summary = stage_source("complete_journey", REAL, raw)
    assert summary.rows == 1_469_307
    assert summary.start_date == dt.date(2017, 1, 1) and summary.end_date == dt.date(2018, 1, 1)
    assert summary.flagged["fuel_by_volume"] > 10_000
    assert summary.flagged["zero_quantity"] > 5_000
    assert 500 < summary.candidates < 5_000
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    catalog.load_product_catalog(con, raw)
    catalog.load_launch_candidates(con, raw)
    lo, hi = dt.date(2017, 9, 1), dt.date(2017, 9, 30)
    staged = 0
    for day, path in raw_io.event_day_files(raw).items():
        if lo <= day <= hi:
            staged += raw_io.load_event_day(con, raw, day, path, lake_dir=raw.parent / "lake")
    rules = Settings.from_env(data_dir=tmp_path, raw_dir=raw).cleaning
    cleaning.clean_partitions(con, lo, hi, rules, now=NOW, lake_dir=raw.parent / "lake")
    raw_n = con.execute("SELECT count(*) FROM raw_events").fetchall()[0][0]
    clean_n = con.execute("SELECT count(*) FROM clean_events").fetchall()[0][0]
    reasons = dict(
        con.execute("SELECT reason, count(*) FROM quarantined_events GROUP BY 1").fetchall()
    )
    assert raw_n == staged > 100_000
    assert raw_n == clean_n + sum(reasons.values())
    assert {"fuel_by_volume", "zero_quantity"} <= set(reasons)
    assert "bot_user" not in reasons  # baskets are not bots (500 lines a minute)
    big = con.execute("SELECT max(quantity) FROM clean_events").fetchall()[0][0]
    assert big < 1_000  # no fuel volumes left
    con.close()


# --------------------------------------------------------------------------------------------
# bounded-memory title similarity (the grocery data has ~5,000 candidates x ~56,000 products)
# --------------------------------------------------------------------------------------------
def test_blockwise_similarity_equals_the_whole_matrix(monkeypatch):
    import numpy as np

    from launch_pipeline import demand

    rng = np.random.default_rng(0)
    sims = rng.integers(0, 4, size=(50, 30)).astype(float) / 4  # many ties
    for k in (1, 5, 30):
        expected = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(demand._top_k_stable(sims, k), expected)

    words = ["cola", "diet", "cookies", "oat", "milk", "whole", "cheese", "goat", "soup", "pizza"]
    existing = [" ".join(rng.choice(words, size=3)) for _ in range(120)]
    targets = [" ".join(rng.choice(words, size=2)) for _ in range(37)] + [""]
    idx_all, sim_all = demand.similar_products(existing, targets, 20)
    titles = demand._clean_titles(targets)
    vec = demand._vectorizer()
    e = vec.fit_transform(existing)
    dense = (vec.transform(titles) @ e.T).toarray()
    np.testing.assert_array_equal(idx_all, np.argsort(-dense, axis=1, kind="stable")[:, :20])
    sizes_all = demand.collection_sizes(targets, 0.3)
    m = demand._vectorizer().fit_transform(titles)
    whole = (m @ m.T).toarray()
    np.fill_diagonal(whole, 0.0)
    np.testing.assert_array_equal(sizes_all, (whole >= 0.3).sum(axis=1).astype(float))
    monkeypatch.setattr(demand, "SIMILARITY_CHUNK", 7)
    idx, sim = demand.similar_products(existing, targets, 20)
    np.testing.assert_array_equal(idx, idx_all)
    np.testing.assert_array_equal(sim, sim_all)
    np.testing.assert_array_equal(demand.collection_sizes(targets, 0.3), sizes_all)


def test_blockwise_cannibalization_equals_the_whole_matrix(monkeypatch):
    import numpy as np

    from launch_pipeline import cannibalization as cb
    from launch_pipeline import demand
    from launch_pipeline_tests.test_launch_planner import _lamp_shop

    rng = np.random.default_rng(1)
    words = ["lamp", "desk", "red", "blue", "sock", "wool", "mug", "tea", "oak", "shelf"]
    existing = [" ".join(rng.choice(words, size=3)) for _ in range(90)]
    targets = [" ".join(rng.choice(words, size=2)) for _ in range(23)]
    allowed = rng.random((23, 90)) < 0.7
    vec = demand._vectorizer()
    e = vec.fit_transform(existing)
    whole = (vec.transform(targets) @ e.T).toarray()
    s = np.where(allowed & (whole >= 0.3), whole, -1.0)
    ref_idx = np.argsort(-s, axis=1, kind="stable")[:, :5]
    top = np.take_along_axis(s, ref_idx, axis=1)
    ref_idx = np.where(top >= 0, ref_idx, -1)
    ref_strength = np.where(top >= 0, top, 0.0).sum(axis=1)
    monkeypatch.setattr(demand, "SIMILARITY_CHUNK", 4)
    idx, strength = cb._top_k_neighbours(existing, targets, lambda rows: allowed[rows], 5, 0.3)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(strength, ref_strength, rtol=0, atol=1e-12)

    shop = _lamp_shop(1.0)
    small = cb.estimate_cannibalization(shop, window_days=14, k=5, min_similarity=0.3)
    monkeypatch.setattr(demand, "SIMILARITY_CHUNK", 512)
    assert cb.estimate_cannibalization(shop, window_days=14, k=5, min_similarity=0.3) == small
