"""Source adapters on tiny hand-made files: mapping, flags, day files, catalog, errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from launch_pipeline import catalog, cleaning, raw_io
from launch_pipeline.adapters import SOURCES, StagingSummary, stage_source
from launch_pipeline.adapters.categories import CATEGORIES, categorize, category_counts, explain
from launch_pipeline.adapters.online_retail import fix_mojibake
from launch_pipeline.contract import EVENT_COLUMNS
from launch_pipeline.errors import ConfigurationError, InputFileError
from launch_pipeline.settings import Settings
from launch_pipeline_tests.conftest import write_events_csv, write_products

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)

OR_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
OR_ROWS = [
    # 0 purchase
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2011-01-03 08:26:00,2.55,17850.0,UK",
    # 1 same product, lower-case code variant, another quantity
    "536365,85123a,WHITE HANGING HEART T-LIGHT HOLDER,4,2011-01-03 08:26:00,2.55,17850.0,UK",
    # 2 exact duplicate of 0
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2011-01-03 08:26:00,2.55,17850.0,UK",
    # 3 return (cancellation invoice, negative quantity)
    "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,2011-01-05 09:41:00,2.55,17850.0,UK",
    # 4 postage: non-product code
    "536370,POST,POSTAGE,3,2011-01-05 10:00:00,18.0,12583.0,France",
    # 5 gift voucher (lower-case code): non-product code, mojibake in the description
    "536371,gift_0001_20,Dotcomgiftshop Gift Voucher Â£20.00,1,2011-01-05 10:30:00,16.67,,UK",
    # 6 no customer
    "536372,22633,HAND WARMER UNION JACK,6,2011-01-05 11:00:00,1.85,,UK",
    # 7 price zero
    "536373,22633,HAND WARMER UNION JACK,6,2011-01-05 11:05:00,0.0,12583.0,UK",
    # 8 stock write-off: negative quantity on an ordinary invoice
    "536374,22633,damaged,-10,2011-01-05 12:00:00,0.0,,UK",
    # 9, 10 purchases of 21730 at two prices
    "536375,21730,GLASS STAR FROSTED T-LIGHT HOLDER,6,2011-01-06 09:00:00,4.25,13047.0,UK",
    "536380,21730,GLASS STAR FROSTED T-LIGHT HOLDER,6,2011-01-10 09:00:00,4.75,13047.0,UK",
    # 11 a date that cannot be read: goes to the previous row's day
    "536390,21730,GLASS STAR FROSTED T-LIGHT HOLDER,1,not a date,4.25,13047.0,UK",
    # 12 bad-debt adjustment
    "A563185,B,Adjust bad debt,1,2011-03-20 14:50:00,-11062.06,,UK",
    # 13, 14 a new product first sold in the candidate window
    "536377,23999,SPECIAL MUG Â£5 EDITION,2,2011-03-25 10:00:00,7.95,13047.0,UK",
    "536378,23999,SPECIAL MUG Â£5 EDITION,1,2011-03-26 10:00:00,8.5,12583.0,UK",
    # 15 last day
    "536376,84879,ASSORTED COLOUR BIRD ORNAMENT,8,2011-03-31 10:00:00,1.69,13047.0,UK",
]


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def _events(raw: Path) -> pd.DataFrame:
    frames = []
    for day, path in sorted(raw_io.event_day_files(raw).items()):
        df = pd.read_parquet(path)
        df["day"] = day
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _land_and_clean(raw: Path):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    catalog.load_product_catalog(con, raw)
    catalog.load_launch_candidates(con, raw)
    for day, path in raw_io.event_day_files(raw).items():
        raw_io.load_event_day(con, raw, day, path, lake_dir=raw.parent / "lake")
    start, end = raw_io.partition_range(raw)
    # the source's own cleaning thresholds from dataset.json, as the pipeline applies them
    rules = Settings.from_env(data_dir=raw.parent, raw_dir=raw).cleaning
    stats = cleaning.clean_partitions(con, start, end, rules, now=NOW, lake_dir=raw.parent / "lake")
    return con, stats


@pytest.fixture
def or_csv(tmp_path) -> Path:
    return _write(tmp_path / "src" / "online_retail.csv", "\n".join([OR_HEADER, *OR_ROWS]) + "\n")


# --------------------------------------------------------------------------------------------
# dispatch and errors
# --------------------------------------------------------------------------------------------
def test_unknown_source_names_the_known_ones(tmp_path, or_csv):
    with pytest.raises(ConfigurationError) as err:
        stage_source("shopify", or_csv, tmp_path / "raw")
    msg = str(err.value)
    assert "shopify" in msg
    assert all(s in msg for s in SOURCES)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.parquet"
    for source in SOURCES:
        with pytest.raises(InputFileError) as err:
            stage_source(source, missing, tmp_path / "raw")
        assert str(missing) in str(err.value)


def test_unknown_option(tmp_path, or_csv):
    with pytest.raises(ConfigurationError, match="candidate_dayz"):
        stage_source("online_retail", or_csv, tmp_path / "raw", candidate_dayz=3)


def test_online_retail_missing_columns_message(tmp_path):
    src = _write(tmp_path / "orders.csv", "InvoiceNo,StockCode,Description\n1,2,x\n")
    with pytest.raises(InputFileError) as err:
        stage_source("online_retail", src, tmp_path / "raw")
    msg = str(err.value)
    assert str(src) in msg
    assert "Quantity" in msg and "InvoiceDate" in msg and "CustomerID or Customer ID" in msg
    assert "UnitPrice (or Price)" in msg  # the expected columns
    assert "found ['InvoiceNo', 'StockCode', 'Description']" in msg
    assert not (tmp_path / "raw").exists()  # nothing written


def test_rees46_missing_columns_message(tmp_path):
    src = _write(tmp_path / "oct.csv", "event_time,event_type,product_id\n2019-10-01,view,1\n")
    with pytest.raises(InputFileError) as err:
        stage_source("rees46", src, tmp_path / "raw")
    msg = str(err.value)
    assert str(src) in msg and "user_id" in msg and "price" in msg and "user_session" in msg


def test_taobao_rejects_another_format(tmp_path):
    src = _write(tmp_path / "x.csv", "event_time,event_type,product_id\n2019-10-01,view,1\n")
    with pytest.raises(InputFileError) as err:
        stage_source("taobao", src, tmp_path / "raw")
    assert str(src) in str(err.value) and "behavior_type" in str(err.value)


def test_excel_without_openpyxl_says_what_to_do(tmp_path):
    pytest.importorskip("pandas")
    try:
        import openpyxl  # noqa: F401

        pytest.skip("openpyxl is installed: Excel files are read")
    except ImportError:
        pass
    src = _write(tmp_path / "Online Retail.xlsx", "PK not really a workbook")
    with pytest.raises(InputFileError) as err:
        stage_source("online_retail", src, tmp_path / "raw")
    assert "openpyxl" in str(err.value) and "CSV or Parquet" in str(err.value)


# --------------------------------------------------------------------------------------------
# Online Retail
# --------------------------------------------------------------------------------------------
def test_online_retail_mapping(tmp_path, or_csv):
    raw = tmp_path / "raw"
    summary = stage_source("online_retail", or_csv, raw, candidate_days=10)
    assert isinstance(summary, StagingSummary)
    assert summary.rows == len(OR_ROWS)
    assert (summary.start_date, summary.end_date) == (dt.date(2011, 1, 3), dt.date(2011, 3, 31))
    assert summary.flagged == {"non_product_code": 3, "stock_adjustment": 1}
    ev = _events(raw)
    assert list(ev.columns[:-1]) == list(EVENT_COLUMNS)
    assert len(ev) == len(OR_ROWS)  # nothing dropped, duplicates kept

    def row(session, item=None):
        hits = ev[(ev.session_id == session) & ((ev.item_id == item) if item else True)]
        assert len(hits) >= 1, (session, item)
        return hits.iloc[0]

    first = row("536365")
    assert (first.user_id, first.item_id, first.event_type) == ("17850", "85123A", "purchase")
    assert (first.ts, first.quantity, first.price) == ("2011-01-03T08:26:00Z", "6", "2.55")
    assert first.flag is None
    assert (ev.item_id == "85123a").sum() == 0  # codes upper-cased
    ret = row("C536379")
    assert (ret.event_type, ret.quantity, ret.user_id, ret.item_id) == (
        "return",
        "2",
        "17850",
        "85123A",
    )
    assert row("536370").flag == "non_product_code"
    assert row("536371").flag == "non_product_code"
    assert row("A563185").flag == "non_product_code"
    assert row("536374").flag == "stock_adjustment"
    assert row("536372").user_id is None  # no customer: empty user id
    assert row("536373").price == "0.0"  # price as delivered
    bad_date = row("536390")
    assert bad_date.ts == "not a date" and bad_date.day == dt.date(2011, 1, 10)


def test_online_retail_day_files_cover_the_range(tmp_path, or_csv):
    raw = tmp_path / "raw"
    stage_source("online_retail", or_csv, raw)
    files = raw_io.event_day_files(raw)
    assert min(files) == dt.date(2011, 1, 3) and max(files) == dt.date(2011, 3, 31)
    assert len(files) == (dt.date(2011, 3, 31) - dt.date(2011, 1, 3)).days + 1  # no holes
    empty = pq.read_table(files[dt.date(2011, 2, 1)])
    assert empty.num_rows == 0 and empty.schema.names == list(EVENT_COLUMNS)
    manifest = json.loads((raw / "dataset.json").read_text())
    assert (manifest["start_date"], manifest["end_date"], manifest["timezone"]) == (
        "2011-01-03",
        "2011-03-31",
        "UTC",
    )
    assert manifest["source"] == "online_retail" and manifest["rows"] == len(OR_ROWS)
    assert raw_io.partition_range(raw) == (dt.date(2011, 1, 3), dt.date(2011, 3, 31))


def test_online_retail_catalog_and_candidates(tmp_path, or_csv):
    raw = tmp_path / "raw"
    summary = stage_source("online_retail", or_csv, raw, candidate_days=10)
    products = pd.read_parquet(raw / "products.parquet").set_index("item_id")
    candidates = pd.read_parquet(raw / "candidates.parquet").set_index("item_id")
    assert sorted(products.index) == ["21730", "22633", "85123A"]
    # first sales on 2011-03-25 and 2011-03-31: in the last 10 days
    assert list(candidates.index) == ["23999", "84879"]
    heart = products.loc["85123A"]
    assert heart.title == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert heart.category == "candles & lighting"
    assert heart.brand == "stock family 851xx"
    assert heart.price == "2.55" and heart.launched_at == "2011-01-03T08:26:00Z"
    assert products.loc["21730"].price == "4.25"  # median unit price of 4.25, 4.75, 4.25
    assert products.loc["22633"].title == "HAND WARMER UNION JACK"  # not the write-off note
    mug = candidates.loc["23999"]
    assert mug.title == "SPECIAL MUG £5 EDITION"  # mojibake repaired
    assert mug.category == "kitchen & dining"
    assert mug.price == "7.95"  # the price of its first sale
    assert summary.products == 3 and summary.candidates == 2
    assert summary.categories == {
        "candles & lighting": 2,
        "home decor": 1,
        "home textiles": 1,
        "kitchen & dining": 1,
    }
    # the gift voucher is not a product
    assert "GIFT_0001_20" not in products.index and "GIFT_0001_20" not in candidates.index


def test_online_retail_cleaning_reasons(tmp_path, or_csv):
    raw = tmp_path / "raw"
    stage_source("online_retail", or_csv, raw, candidate_days=10)
    con, stats = _land_and_clean(raw)
    try:
        assert stats.raw == len(OR_ROWS) == stats.clean + stats.quarantined
        assert stats.reasons == {
            "non_product_code": 3,
            "stock_adjustment": 1,
            "missing_user_id": 1,
            "invalid_price": 1,
            "exact_duplicate": 1,
            "invalid_timestamp": 1,
        }
        clean = con.execute(
            "SELECT item_id, event_type, quantity FROM clean_events ORDER BY ts, source_row"
        ).fetchall()
        assert ("85123A", "return", 2) in clean
        assert [r for r in clean if r[0] == "23999"] == [  # candidate events are kept
            ("23999", "purchase", 2),
            ("23999", "purchase", 1),
        ]
    finally:
        con.close()


def test_online_retail_us_dates_and_latin1(tmp_path):
    text = (
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,HEART £1 OFF,6,12/1/2010 8:26,2.55,17850,United Kingdom\n"
        "536366,85123A,HEART £1 OFF,2,12/2/2010 18:05,2.55,17850,United Kingdom\n"
        "536367,85123A,HEART £1 OFF,1,12/13/2010 9:00,2.55,17850,United Kingdom\n"
    )
    src = _write(tmp_path / "data.csv", text, encoding="latin-1")
    raw = tmp_path / "raw"
    summary = stage_source("online_retail", src, raw, candidate_days=0)
    ev = _events(raw)
    assert list(ev.ts) == [
        "2010-12-01T08:26:00Z",
        "2010-12-02T18:05:00Z",
        "2010-12-13T09:00:00Z",
    ]  # 12/13/2010 proves the file month-first
    assert summary.notes["encoding"].startswith("latin-1")
    assert pd.read_parquet(raw / "products.parquet").title.tolist() == ["HEART £1 OFF"]


def test_online_retail_ii_parquet_names(tmp_path):
    df = pd.DataFrame(
        {
            "Invoice": ["489434", "489435"],
            "StockCode": ["85048", "79323P"],
            "Description": ["15CM CHRISTMAS GLASS BALL 20 LIGHTS", "PINK CHERRY LIGHTS"],
            "Quantity": [12, 24],
            "InvoiceDate": pd.to_datetime(["2009-12-01 07:45", "2009-12-03 07:45"]),
            "Price": [6.95, 6.75],
            "Customer ID": [13085.0, None],
            "Country": ["United Kingdom", "United Kingdom"],
        }
    )
    src = tmp_path / "online_retail_II.parquet"
    df.to_parquet(src)
    raw = tmp_path / "raw"
    summary = stage_source("online_retail", src, raw)
    ev = _events(raw)
    assert ev.user_id.tolist() == ["13085", None]
    assert ev.ts.tolist() == ["2009-12-01T07:45:00Z", "2009-12-03T07:45:00Z"]
    assert summary.days == 3
    assert summary.categories == {"candles & lighting": 1, "christmas & seasonal": 1}


def test_stale_files_are_replaced_and_others_kept(tmp_path, or_csv):
    raw = tmp_path / "raw"
    write_events_csv(raw / "events" / "2000-01-01.csv", [{"user_id": "u"}])
    write_products(raw, [{"item_id": "x", "price": 1}], [{"item_id": "y", "price": 1}])
    (raw / "events" / "README.txt").write_text("keep me")
    stage_source("online_retail", or_csv, raw)
    assert not (raw / "events" / "2000-01-01.csv").exists()
    assert not (raw / "products.csv").exists() and not (raw / "candidates.csv").exists()
    assert (raw / "events" / "README.txt").read_text() == "keep me"
    assert min(raw_io.event_day_files(raw)) == dt.date(2011, 1, 3)
    raw_io.read_products(raw)  # exactly one products file


def test_staging_never_deletes_its_own_source(tmp_path):
    raw = tmp_path / "raw"
    rows = [{"user_id": "u1", "item_id": "p1", "event_type": "view", "ts": "2026-11-01T10:00:00Z"}]
    src = write_events_csv(raw / "events" / "2026-11-01.csv", rows)
    item = {"item_id": "p1", "title": "P1", "category": "c", "brand": "b", "price": 1}
    write_products(raw / "events", [item], [{**item, "item_id": "n1"}])
    with pytest.raises(ConfigurationError, match="would replace"):
        stage_source("canonical", src, raw)
    assert src.exists()


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("Gift Voucher Â£20.00", "Gift Voucher £20.00"),
        ("CafÃ© crÃ¨me", "Café crème"),
        ("plain text", "plain text"),
        ("£5 already fine", "£5 already fine"),
        (None, None),
    ],
)
def test_fix_mojibake(broken, fixed):
    assert fix_mojibake(broken) == fixed


# --------------------------------------------------------------------------------------------
# Taobao
# --------------------------------------------------------------------------------------------
def _unix(day: str, hh: int = 10) -> str:
    return str(int(dt.datetime.fromisoformat(f"{day}T{hh:02d}:00:00+00:00").timestamp()))


TAOBAO_LINES = [
    f"1,100,10,pv,{_unix('2017-11-25')}",  # 0
    f"1,101,10,fav,{_unix('2017-11-25', 11)}",  # 1 favourite
    f"2,100,10,buy,{_unix('2017-11-26')}",  # 2
    f"2,102,11,cart,{_unix('2017-11-24', 23)}",  # 3 before the window
    f"3,100,10,pv,{_unix('2017-12-05')}",  # 4 after the window
    "3,101,10,pv,abc",  # 5 unreadable timestamp
    f"2,100,10,pv,{_unix('2017-11-27')}",  # 6
    "",  # blank line
    "4,103,12,pv",  # 8 truncated last line, no newline
]


@pytest.fixture
def taobao_csv(tmp_path) -> Path:
    return _write(tmp_path / "UserBehavior.csv", "\n".join(TAOBAO_LINES))


def test_taobao_mapping_window_and_truncation(tmp_path, taobao_csv):
    raw = tmp_path / "raw"
    summary = stage_source("taobao", taobao_csv, raw)
    assert (summary.start_date, summary.end_date) == (dt.date(2017, 11, 25), dt.date(2017, 12, 3))
    assert summary.days == 9 and len(raw_io.event_day_files(raw)) == 9
    assert summary.rows == 8 and summary.notes["blank_lines_skipped"] == 1
    assert summary.flagged == {"outside_source_window": 2, "malformed_row": 1}
    ev = _events(raw)
    by_user_item = {(r.user_id, r.item_id, r.ts): r for r in ev.itertuples()}
    fav = by_user_item[("1", "101", _unix("2017-11-25", 11))]
    assert fav.event_type == "view"  # fav -> view (documented)
    buy = by_user_item[("2", "100", _unix("2017-11-26"))]
    assert buy.event_type == "purchase" and buy.price is None and buy.quantity is None
    early = by_user_item[("2", "102", _unix("2017-11-24", 23))]
    assert (early.event_type, early.day, early.flag) == (
        "cart",
        dt.date(2017, 11, 25),
        "outside_source_window",
    )
    late = by_user_item[("3", "100", _unix("2017-12-05"))]
    assert (late.day, late.flag) == (dt.date(2017, 12, 3), "outside_source_window")
    unreadable = ev[ev.ts == "abc"].iloc[0]
    assert unreadable.day == dt.date(2017, 12, 3) and unreadable.flag is None  # previous row's day
    truncated = ev[ev.user_id == "4"].iloc[0]
    assert truncated.flag == "malformed_row" and truncated.day == dt.date(2017, 11, 27)
    products = pd.read_parquet(raw / "products.parquet").set_index("item_id")
    assert products.loc["100"].category == "10" and products.loc["100"].price is None
    assert len(pd.read_parquet(raw / "candidates.parquet")) == 0

    con, stats = _land_and_clean(raw)
    try:
        assert stats.raw == 8 == stats.clean + stats.quarantined
        assert stats.reasons == {
            "outside_source_window": 2,
            "malformed_row": 1,
            "invalid_timestamp": 1,
        }
    finally:
        con.close()


def test_taobao_fav_as_cart_and_derived_window(tmp_path, taobao_csv):
    raw = tmp_path / "raw"
    summary = stage_source(
        "taobao", taobao_csv, raw, fav_as="cart", window_start=None, window_end=None
    )
    assert summary.start_date == dt.date(2017, 11, 24)
    assert summary.end_date == dt.date(2017, 12, 5)
    assert summary.flagged == {"malformed_row": 1}
    ev = _events(raw)
    assert ev[(ev.user_id == "1") & (ev.item_id == "101")].event_type.tolist() == ["cart"]
    with pytest.raises(ConfigurationError):
        stage_source("taobao", taobao_csv, raw, fav_as="wishlist")


# --------------------------------------------------------------------------------------------
# REES46
# --------------------------------------------------------------------------------------------
def test_rees46_mapping_and_candidates(tmp_path):
    header = (
        "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,"
        "user_session"
    )
    lines = [
        "2019-10-01 00:00:00 UTC,view,1307067,2053013558920217191,computers.notebook,lenovo,"
        "251.74,550050854,s1",
        "2019-10-02 10:00:00 UTC,cart,1307067,2053013558920217191,computers.notebook,lenovo,"
        "251.74,550050854,s1",
        "2019-10-02 10:05:00 UTC,purchase,1307067,2053013558920217191,computers.notebook,"
        "lenovo,260.00,550050854,s1",
        "2019-10-03 09:00:00 UTC,view,44600062,2103807459595387724,,shiseido,35.79,541312140,s2",
        "2019-10-18 09:00:00 UTC,view,5000001,2053013555631882655,electronics.smartphone,,"
        "99.00,541312140,s3",
        "2019-10-20 09:00:00 UTC,remove_from_cart,1307067,2053013558920217191,"
        "computers.notebook,lenovo,251.74,550050854,s4",
    ]
    src = _write(tmp_path / "2019-Oct.csv", "\n".join([header, *lines]) + "\n")
    raw = tmp_path / "raw"
    summary = stage_source("rees46", src, raw)
    # 20 days: the candidate window is capped at a quarter of them (5 days: Oct 16 .. 20)
    assert (summary.start_date, summary.end_date, summary.days) == (
        dt.date(2019, 10, 1),
        dt.date(2019, 10, 20),
        20,
    )
    products = pd.read_parquet(raw / "products.parquet").set_index("item_id")
    candidates = pd.read_parquet(raw / "candidates.parquet").set_index("item_id")
    assert list(candidates.index) == ["5000001"]
    assert candidates.loc["5000001"].title == "smartphone 5000001"
    notebook = products.loc["1307067"]
    assert (notebook.title, notebook.category, notebook.brand, notebook.price) == (
        "lenovo notebook 1307067",
        "computers.notebook",
        "lenovo",
        "251.74",
    )
    assert products.loc["44600062"].category == "category 2103807459595387724"
    assert products.loc["44600062"].title == "shiseido 44600062"
    ev = _events(raw)
    assert ev.session_id.tolist()[:3] == ["s1", "s1", "s1"]
    assert ev.ts.iloc[0] == "2019-10-01 00:00:00 UTC" and ev.quantity.isna().all()

    con, stats = _land_and_clean(raw)
    try:
        assert stats.raw == 6 == stats.clean + stats.quarantined
        assert stats.reasons == {"invalid_event_type": 1}  # remove_from_cart
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# canonical
# --------------------------------------------------------------------------------------------
def _contract_folder(root: Path) -> Path:
    rows = [
        {"user_id": "u1", "item_id": "p1", "event_type": "view", "ts": "2026-11-01T10:00:00Z"},
        {
            "user_id": "u1",
            "item_id": "p1",
            "event_type": "purchase",
            "ts": "2026-11-01T10:05:00Z",
            "price": "10",
            "quantity": "1",
        },
    ]
    write_events_csv(root / "events" / "2026-11-01.csv", rows)
    write_events_csv(
        root / "events" / "2026-11-04.csv",
        [{"user_id": "u2", "item_id": "n1", "event_type": "view", "ts": "2026-11-04T09:00:00Z"}],
    )
    write_products(
        root,
        [{"item_id": "p1", "title": "P1", "category": "kitchen", "brand": "acme", "price": 10}],
        [{"item_id": "n1", "title": "N1", "category": "garden", "brand": "acme", "price": 20}],
    )
    return root


def test_canonical_folder_is_copied_and_holes_filled(tmp_path):
    src = _contract_folder(tmp_path / "delivery")
    raw = tmp_path / "data" / "raw"
    summary = stage_source("canonical", src, raw)
    assert (summary.rows, summary.days, summary.products, summary.candidates) == (3, 4, 1, 1)
    assert summary.categories == {"garden": 1, "kitchen": 1}
    files = raw_io.event_day_files(raw)
    assert sorted(d.isoformat() for d in files) == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
        "2026-11-04",
    ]
    assert files[dt.date(2026, 11, 1)].read_bytes() == (src / "events/2026-11-01.csv").read_bytes()
    assert pq.read_table(files[dt.date(2026, 11, 2)]).num_rows == 0
    con, stats = _land_and_clean(raw)
    try:
        assert stats.raw == 3 == stats.clean
    finally:
        con.close()
    # the data directory's own raw folder: checked, not rewritten
    again = stage_source("canonical", raw, raw)
    assert again.rows == 3 and again.notes["copied"] is False


def test_canonical_folder_missing_columns_and_files(tmp_path):
    src = _contract_folder(tmp_path / "delivery")
    (src / "events" / "2026-11-04.csv").write_text("user_id,item_id,when\nu,p,x\n")
    with pytest.raises(InputFileError) as err:
        stage_source("canonical", src, tmp_path / "raw")
    msg = str(err.value)
    assert "2026-11-04.csv" in msg and "event_type" in msg and "ts" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="events"):
        stage_source("canonical", empty, tmp_path / "raw")


def test_canonical_single_file(tmp_path):
    folder = tmp_path / "export"
    rows = [
        {"user_id": "u1", "item_id": "p1", "event_type": "view", "ts": "2026-11-02T23:59:00Z"},
        {"user_id": "u1", "item_id": "p1", "event_type": "view", "ts": "garbage"},
        {"user_id": "u2", "item_id": "p1", "event_type": "view", "ts": _unix("2026-11-05")},
        {"user_id": "u2", "item_id": "p1", "event_type": "view", "ts": "2099-01-01T00:00:00Z"},
    ]
    src = write_events_csv(folder / "events.csv", rows)
    with pytest.raises(InputFileError, match="products"):
        stage_source("canonical", src, tmp_path / "raw")
    write_products(
        folder,
        [{"item_id": "p1", "title": "P1", "category": "kitchen", "brand": "acme", "price": 10}],
        [{"item_id": "n1", "title": "N1", "category": "garden", "brand": "acme", "price": 20}],
    )
    raw = tmp_path / "raw"
    summary = stage_source("canonical", src, raw)
    assert (summary.start_date, summary.end_date) == (dt.date(2026, 11, 2), dt.date(2026, 11, 5))
    ev = _events(raw)
    assert ev.day.tolist() == [dt.date(2026, 11, 2)] * 2 + [dt.date(2026, 11, 5)] * 2
    con, stats = _land_and_clean(raw)
    try:
        assert stats.reasons == {"invalid_timestamp": 1, "future_timestamp": 1}
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# the category method
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("title", "category"),
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", "candles & lighting"),
        ("JUMBO BAG RED RETROSPOT", "bags"),
        ("REGENCY CAKESTAND 3 TIER", "kitchen & dining"),
        ("PACK OF 72 RETROSPOT CAKE CASES", "kitchen & dining"),
        ("PAPER CHAIN KIT 50'S CHRISTMAS", "party & gift wrap"),
        ("SET OF 3 CAKE TINS PANTRY DESIGN", "kitchen & dining"),
        ("RED WOOLLY HOTTIE WHITE HEART.", "home textiles"),
        ("IVORY RETRO KITCHEN WALL CLOCK", "home decor"),
        ("PLAYING CARDS VINTAGE DOILY", "toys & games"),
        ("KEY RING BAUBLE", "jewellery & accessories"),
        ("CARDIGAN", "other"),  # whole words only: not CARD
        ("", "other"),
        (None, "other"),
    ],
)
def test_category_examples(title, category):
    assert categorize(title) == category


def test_category_method_is_deterministic():
    titles = ["JUMBO BAG RED RETROSPOT", "CHRISTMAS MUG", "zebra", "BLUE POLKADOT WRAP"] * 3
    first = [explain(t) for t in titles]
    assert first == [explain(t) for t in reversed(titles)][::-1]
    assert explain("CHRISTMAS MUG") == ("christmas & seasonal", "CHRISTMAS")  # seasonal first
    counts = category_counts(titles)
    assert counts == category_counts(list(reversed(titles)))
    assert list(counts.values()) == sorted(counts.values(), reverse=True)
    assert set(counts) <= set(CATEGORIES)


def test_summary_line(tmp_path, or_csv):
    summary = stage_source("online_retail", or_csv, tmp_path / "raw")
    line = summary.summary_line()
    assert line.startswith("online_retail: 16 rows over 88 days (2011-01-03 .. 2011-03-31)")
    assert "non_product_code 3" in line and "stock_adjustment 1" in line
    assert summary.to_dict()["rows"] == 16
