"""Tests of the embedded shop simulator (launch_pipeline.simulator)."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from launch_pipeline import simulator
from launch_pipeline.contract import (
    CANDIDATE_OPTIONAL_COLUMNS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    EVENTS_DIRNAME,
    MANIFEST_NAME,
    PRODUCT_REQUIRED_COLUMNS,
)
from launch_pipeline.settings import CleaningRules
from launch_pipeline.simulator import (
    EVENT_FILE_COLUMNS,
    NOISE_KINDS,
    SimulatorConfig,
    generate_shop,
)

END = dt.date(2026, 10, 5)
SMALL = SimulatorConfig(
    seed=11, users=200, days=5, events_per_day=800, end_date=END, catalog_items=120, candidates=15
)
DAYS = [END - dt.timedelta(days=i) for i in range(SMALL.days - 1, -1, -1)]


def _generate(root: Path, name: str, config: SimulatorConfig):
    out = root / name
    return out, generate_shop(out, config)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("sim"), "csv", SMALL)


@pytest.fixture(scope="module")
def events(shop):
    return _load_events(shop[0])


@pytest.fixture(scope="module")
def users(shop):
    return pd.read_parquet(shop[0] / "ground_truth" / "users.parquet")


@pytest.fixture(scope="module")
def planted(shop, events):
    pn = pd.read_parquet(shop[0] / "ground_truth" / "planted_noise.parquet")
    return pn.merge(events, on=["file", "row"], how="left", validate="one_to_one")


def _parse_ts(ts: pd.Series) -> pd.Series:
    """Contract ts forms: ISO 8601 UTC or unix seconds; anything else -> NaT."""
    ts = ts.fillna("")
    unix = ts.str.fullmatch(r"\d+")
    iso = pd.to_datetime(ts.where(~unix), format="%Y-%m-%dT%H:%M:%SZ", errors="coerce", utc=True)
    # only the unix-seconds rows go through the unit conversion: pandas' cast of a float column
    # with NaNs can read uninitialised values and fail at random ("overflow in multiply")
    secs = pd.Series(pd.NaT, index=ts.index, dtype="datetime64[ns, UTC]")
    if unix.any():
        secs[unix] = pd.to_datetime(ts[unix].astype("int64"), unit="s", utc=True)
    return iso.where(~unix, secs)


def _load_events(out: Path) -> pd.DataFrame:
    """Every data row of every event file, with file, row, field count and a parsed ts."""
    frames = []
    for path in sorted((out / EVENTS_DIRNAME).iterdir()):
        rel = f"{EVENTS_DIRNAME}/{path.name}"
        if path.suffix == ".csv":
            with path.open(newline="") as fh:
                lines = list(csv.reader(fh))
            assert lines[0] == list(EVENT_FILE_COLUMNS), path
            body = lines[1:]
            nfields = [len(r) for r in body]
            width = len(EVENT_FILE_COLUMNS)
            df = pd.DataFrame(
                [r if len(r) == width else [None] * width for r in body],
                columns=list(EVENT_FILE_COLUMNS),
                dtype=object,
            ).replace("", None)
            for col in ("quantity", "price", "rating"):
                df[col] = pd.to_numeric(df[col])
            df["nfields"] = nfields
        else:
            df = pd.read_parquet(path)
            assert list(df.columns) == list(EVENT_FILE_COLUMNS), path
            df["nfields"] = len(EVENT_FILE_COLUMNS)
        df["file"] = rel
        df["row"] = np.arange(len(df))
        df["day"] = dt.date.fromisoformat(path.stem)
        frames.append(df)
    ev = pd.concat(frames, ignore_index=True)
    ev["t"] = _parse_ts(ev["ts"])
    return ev


def _genuine(events: pd.DataFrame, planted: pd.DataFrame) -> pd.DataFrame:
    keys = set(zip(planted["file"], planted["row"], strict=True))
    mask = [k not in keys for k in zip(events["file"], events["row"], strict=True)]
    return events[mask]


def _all_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------


def test_layout_follows_contract(shop):
    out, summary = shop
    names = sorted(p.name for p in (out / EVENTS_DIRNAME).iterdir())
    assert names == [f"{d.isoformat()}.csv" for d in DAYS]
    assert summary.files == SMALL.days and summary.start_date == DAYS[0]
    assert summary.end_date == END
    assert set(EVENT_FILE_COLUMNS) <= set(EVENT_COLUMNS) and "flag" not in EVENT_FILE_COLUMNS
    assert list(EVENT_FILE_COLUMNS) == [c for c in EVENT_COLUMNS if c != "flag"]

    products = pd.read_parquet(out / "products.parquet")
    assert list(products.columns) == [*PRODUCT_REQUIRED_COLUMNS, "launched_at"]
    assert len(products) == SMALL.catalog_items and products.item_id.is_unique
    assert products.item_id.str.fullmatch(r"p\d{4}").all()
    assert (products.price > 0).all() and products.launched_at.notna().all()
    assert products.category.nunique() >= 10 and products.brand.nunique() >= 20
    titles_ok = [t.startswith(b + " ") for t, b in zip(products.title, products.brand, strict=True)]
    assert all(titles_ok)
    # price bands differ between categories (log-normal per category)
    medians = products.groupby("category").price.median()
    assert medians.max() / medians.min() > 10

    cands = pd.read_parquet(out / "candidates.parquet")
    assert list(cands.columns) == [*PRODUCT_REQUIRED_COLUMNS, *CANDIDATE_OPTIONAL_COLUMNS]
    assert len(cands) == SMALL.candidates and cands.item_id.str.fullmatch(r"n\d{3}").all()
    assert cands.launched_at.isna().all()
    assert ((cands.unit_cost > 0) & (cands.unit_cost < cands.price)).all()
    assert (cands.stock > 0).all()

    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["source"] == "simulator" and manifest["end_date"] is None
    assert manifest["start_date"] == DAYS[0].isoformat() and manifest["timezone"] == "UTC"
    assert manifest["seed"] == SMALL.seed
    assert manifest["generated_with"]["end_date"] == END.isoformat()
    assert manifest["generated_with"]["users"] == SMALL.users

    gt = out / "ground_truth"
    for name in ("candidate_appeal", "candidate_truth", "planted_noise", "users"):
        assert (gt / f"{name}.parquet").exists()
    assert set(summary.to_dict()) >= {"out_dir", "start_date", "end_date", "events", "files"}


def test_genuine_rows_follow_contract(events, planted):
    g = _genuine(events, planted)
    assert len(g) > 0.8 * SMALL.days * SMALL.events_per_day
    assert len(g) < 1.25 * SMALL.days * SMALL.events_per_day
    assert (g.nfields == len(EVENT_FILE_COLUMNS)).all()
    assert g.event_type.isin(EVENT_TYPES).all()
    assert set(g.event_type) == set(EVENT_TYPES)
    assert g.user_id.str.fullmatch(r"u\d{5}").all() and g.item_id.str.fullmatch(r"p\d{4}").all()
    assert g.session_id.notna().all()
    # ts: ISO 8601 UTC or unix seconds (~10%), inside the file's day
    assert g.t.notna().all()
    assert (g.t.dt.date == g.day).all()
    unix_share = g.ts.str.fullmatch(r"\d+").mean()
    assert 0.05 < unix_share < 0.15
    money = g.event_type.isin(["cart", "purchase", "return"])
    assert (g.loc[money, "quantity"] >= 1).all() and (g.loc[money, "price"] > 0).all()
    assert g.loc[~money, ["quantity", "price"]].isna().all().all()
    rev = g.event_type == "review"
    assert g.loc[rev, "rating"].between(1, 5).all() and g.loc[rev, "review_text"].notna().all()
    assert g.loc[~rev, ["rating", "review_text"]].isna().all().all()
    # genuine review texts rarely repeat
    texts = g.loc[rev, "review_text"]
    assert texts.nunique() >= 0.9 * len(texts)
    # views dominate, then carts, then purchases
    counts = g.event_type.value_counts()
    assert counts["view"] > 5 * counts["cart"] > 0
    assert counts["cart"] > counts["purchase"] > counts["return"]
    # no exact duplicates among genuine rows
    assert not g[list(EVENT_FILE_COLUMNS) + ["file"]].astype(str).duplicated().any()


def test_purchase_prices_and_files_sorted(shop, events, planted):
    g = _genuine(events, planted)
    products = pd.read_parquet(shop[0] / "products.parquet").set_index("item_id")
    buys = g[g.event_type == "purchase"]
    ratio = buys.price.to_numpy() / products.loc[buys.item_id, "price"].to_numpy()
    assert ((ratio > 0.79) & (ratio < 1.0001)).all()
    assert (np.abs(ratio - 1) < 1e-9).mean() > 0.7
    for _, day in g.groupby("file"):
        assert day.t.is_monotonic_increasing


def test_deterministic_bytes(tmp_path, shop):
    out2, _ = _generate(tmp_path, "again", SMALL)
    assert _all_bytes(out2) == _all_bytes(shop[0])
    out3, _ = _generate(tmp_path, "other_seed", SimulatorConfig(**{**SMALL.__dict__, "seed": 12}))
    first = f"{EVENTS_DIRNAME}/{DAYS[0].isoformat()}.csv"
    assert _all_bytes(out3)[first] != _all_bytes(shop[0])[first]


def test_candidates_never_in_events(shop, events):
    cands = pd.read_parquet(shop[0] / "candidates.parquet")
    assert not events.item_id.isin(cands.item_id).any()
    assert not events.item_id.fillna("").str.startswith("n").any()


def test_no_events_before_launch(shop, events, planted):
    g = _genuine(events, planted)
    products = pd.read_parquet(shop[0] / "products.parquet").set_index("item_id")
    launched = products.loc[g.item_id, "launched_at"].to_numpy()
    assert (g.t.to_numpy() >= launched).all()
    start = pd.Timestamp(DAYS[0], tz="UTC")
    during = products[products.launched_at > start]
    assert len(during) > 0 and (products.launched_at < start).sum() > len(during)
    # products launched during the window do get events after their launch
    assert g.item_id.isin(during.index).any()


def test_segment_rhythms_differ(events, planted, users):
    g = _genuine(events, planted).merge(users[["user_id", "segment"]], on="user_id")
    hours = g.groupby("segment").t.apply(lambda t: np.bincount(t.dt.hour, minlength=24) / len(t))
    tv = 0.5 * np.abs(hours["early_bird"] - hours["night_owl"]).sum()
    assert tv > 0.5
    tv2 = 0.5 * np.abs(hours["office_hours"] - hours["evening"]).sum()
    assert tv2 > 0.4
    assert hours["early_bird"][5:9].sum() > 0.4 and hours["night_owl"][5:9].sum() < 0.1
    # activity is long-tailed
    per_user = g.groupby("user_id").size()
    assert per_user.max() > 5 * per_user.median()


def test_sequential_signal(shop, events, planted):
    """After a purchase in cameras/laptops/phones/coffee/outdoor the session goes on in the
    related category far more often than that category's base rate."""
    related = {
        "cameras": "camera_accessories",
        "laptops": "computer_accessories",
        "phones": "phone_accessories",
        "coffee": "kitchen",
        "outdoor": "fitness",
    }
    cat = pd.read_parquet(shop[0] / "products.parquet").set_index("item_id").category
    g = _genuine(events, planted).sort_values(["session_id", "t", "file", "row"])
    g = g.assign(cat=cat[g.item_id].to_numpy())
    bought = g.cat.where(g.event_type == "purchase")
    g["after"] = bought.groupby(g.session_id).ffill().groupby(g.session_id).shift()
    views = g[g.event_type == "view"]
    after = views[views.after.isin(list(related))]
    assert len(after) >= 20
    hit = (after.cat == after.after.map(related)).mean()
    base_share = views.cat.value_counts(normalize=True)
    base = after.after.map(related).map(base_share).mean()
    assert hit > 3 * base


def test_every_noise_kind_planted_and_real(shop, events, planted, users):
    out, summary = shop
    assert set(planted.kind) == set(NOISE_KINDS)
    assert summary.noise_counts == planted.kind.value_counts().reindex(NOISE_KINDS).to_dict()
    assert summary.events == len(events)
    assert summary.events - summary.genuine_events == len(planted)
    assert planted.row.notna().all() and planted.nfields.notna().all()
    known = set(pd.read_parquet(out / "products.parquet").item_id) | set(
        pd.read_parquet(out / "candidates.parquet").item_id
    )
    by_kind = {k: df for k, df in planted.groupby("kind")}
    kinds_of = users.set_index("user_id").user_type

    bots = by_kind["bot"]
    assert (kinds_of[bots.user_id] == "bot").all() and (bots.event_type == "view").all()
    per_minute = bots.groupby([bots.user_id, bots.t.dt.floor("min")]).size()
    # bursts are scaled to the day's size, yet always above the cleaning rule's rate
    assert per_minute.max() >= simulator.BOT_MIN_PER_MINUTE > CleaningRules().bot_events_per_minute
    g = _genuine(events, planted)
    genuine_rate = g.groupby([g.user_id, g.t.dt.floor("min")]).size()
    assert genuine_rate.max() < 30

    dup = by_kind["fake_review_duplicate_text"]
    assert (dup.event_type == "review").all()
    for _, grp in dup.groupby(["file", "item_id", "review_text"]):
        assert 5 <= grp.user_id.nunique() == len(grp) <= 20
    assert (kinds_of[dup.user_id] == "fake_reviewer").all()

    burst = by_kind["fake_review_burst"]
    assert (burst.event_type == "review").all() and (burst.rating == 5).all()
    for (_, item), grp in burst.groupby(["file", "item_id"]):
        assert len(grp) >= 6 and grp.review_text.is_unique
        assert grp.t.max() - grp.t.min() <= pd.Timedelta(hours=1)
        touched = events[events.user_id.isin(grp.user_id) & (events.item_id == item)]
        assert set(touched.event_type) == {"review"}

    ex = by_kind["exact_duplicate"]
    cols = list(EVENT_FILE_COLUMNS)
    for rec in ex.itertuples():
        same_file = g[g.file == rec.file]
        match = same_file[
            (same_file[cols].astype(str) == pd.Series(rec._asdict())[cols].astype(str)).all(axis=1)
        ]
        assert len(match) == 1 and match.row.iloc[0] < rec.row

    assert by_kind["missing_user_id"].user_id.isna().all()
    assert by_kind["missing_user_id"].item_id.notna().all()
    assert by_kind["missing_item_id"].item_id.isna().all()
    neg = by_kind["negative_price"]
    assert ((neg.event_type == "purchase") & (neg.price < 0)).all()
    fut = by_kind["future_timestamp"]
    assert (fut.t > pd.Timestamp(END, tz="UTC") + pd.Timedelta(days=3650)).all()
    past = by_kind["timestamp_outside_partition"]
    assert (past.t.dt.date < past.day).all()
    unk = by_kind["unknown_item"]
    assert unk.item_id.notna().all() and not unk.item_id.isin(known).any()
    assert unk.item_id.str.fullmatch(r"p\d{4}").all()
    assert not by_kind["invalid_event_type"].event_type.isin(EVENT_TYPES).any()
    bad_rating = by_kind["invalid_rating"]
    assert ((bad_rating.event_type == "review") & bad_rating.rating.isin([0, 9])).all()
    assert (by_kind["malformed_row"].nfields != len(EVENT_FILE_COLUMNS)).all()
    bad_ts = by_kind["invalid_timestamp"]
    assert bad_ts.ts.notna().all() and bad_ts.t.isna().all()

    # noise stays a small share, and the newest day is not its main victim
    assert len(planted) < 0.5 * len(events)
    assert (planted.file == f"{EVENTS_DIRNAME}/{END.isoformat()}.csv").mean() < 0.2


def test_unplanted_rows_are_clean(shop, events, planted):
    """Everything not listed in planted_noise passes every check a cleaner would make."""
    g = _genuine(events, planted)
    known = set(pd.read_parquet(shop[0] / "products.parquet").item_id)
    assert g.item_id.isin(known).all() and g.user_id.notna().all()
    assert (g.t.dt.date == g.day).all()
    assert ((g.price > 0) | g.price.isna()).all()


def test_ground_truth(shop, users):
    gt = shop[0] / "ground_truth"
    appeal = pd.read_parquet(gt / "candidate_appeal.parquet")
    truth = pd.read_parquet(gt / "candidate_truth.parquet")
    cands = pd.read_parquet(shop[0] / "candidates.parquet")
    genuine = users[users.user_type == "genuine"]
    assert len(genuine) == SMALL.users and users.is_bot.sum() >= 2
    assert (users.is_bot == (users.user_type == "bot")).all()
    assert users.user_id.is_unique
    assert len(appeal) == SMALL.users * SMALL.candidates
    pairs = set(zip(appeal.user_id, appeal.item_id, strict=True))
    assert pairs == {(u, c) for u in genuine.user_id for c in cands.item_id}
    assert appeal.appeal.between(0, 1).all() and (appeal.expected_units >= 0).all()
    assert (appeal.expected_units >= appeal.appeal * 0.99).all()
    per_item = appeal.groupby("item_id").appeal.sum()
    assert per_item.max() > 5 * per_item.min()
    assert appeal.appeal.std() > 0
    t = truth.set_index("item_id")
    units = appeal.groupby("item_id").expected_units.sum()
    assert np.allclose(t.loc[units.index, "true_expected_units"], units)
    price = cands.set_index("item_id").price
    assert (t.true_expected_revenue <= t.true_expected_units * price[t.index] + 1e-9).all()
    assert (t.true_expected_revenue > 0).all()


def test_parquet_format(tmp_path):
    cfg = SimulatorConfig(**{**SMALL.__dict__, "file_format": "parquet"})
    out, summary = _generate(tmp_path, "pq", cfg)
    names = sorted(p.name for p in (out / EVENTS_DIRNAME).iterdir())
    assert names == [f"{d.isoformat()}.parquet" for d in DAYS]
    ev = _load_events(out)
    pn = pd.read_parquet(out / "ground_truth" / "planted_noise.parquet")
    assert set(pn.kind) == set(NOISE_KINDS) - {"malformed_row", "invalid_timestamp"}
    assert summary.noise_counts["malformed_row"] == 0
    rows = pn.merge(ev, on=["file", "row"], how="left")
    neg = rows[rows.kind == "negative_price"]
    assert len(neg) and ((neg.event_type == "purchase") & (neg.price < 0)).all()
    assert rows[rows.kind == "missing_user_id"].user_id.isna().all()
    assert ev.t.notna().all()  # no unparseable ts in parquet
    # the genuine world is the same whatever the file format
    csv_out, _ = _generate(tmp_path, "csv", SMALL)
    a = pd.read_parquet(out / "ground_truth" / "candidate_appeal.parquet")
    b = pd.read_parquet(csv_out / "ground_truth" / "candidate_appeal.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_noise_false_plants_nothing(tmp_path, shop, events, planted):
    cfg = SimulatorConfig(**{**SMALL.__dict__, "noise": False})
    out, summary = _generate(tmp_path, "clean", cfg)
    assert sum(summary.noise_counts.values()) == 0
    assert summary.events == summary.genuine_events
    assert len(pd.read_parquet(out / "ground_truth" / "planted_noise.parquet")) == 0
    ev = _load_events(out)
    users = pd.read_parquet(out / "ground_truth" / "users.parquet").set_index("user_id")
    assert (users.user_type[ev.user_id] == "genuine").all()
    assert ev.event_type.isin(EVENT_TYPES).all() and ev.t.notna().all()
    # the genuine events are exactly the noisy run's events minus the planted rows
    cols = list(EVENT_FILE_COLUMNS) + ["file"]
    noisy = _genuine(events, planted)[cols].astype(str).reset_index(drop=True)
    pd.testing.assert_frame_equal(ev[cols].astype(str).reset_index(drop=True), noisy)


def test_default_end_date_is_yesterday_utc(tmp_path):
    before = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    cfg = SimulatorConfig(users=30, days=2, events_per_day=100, catalog_items=30, candidates=3)
    summary = generate_shop(tmp_path / "live", cfg)
    after = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    assert summary.end_date in {before, after}
    assert summary.start_date == summary.end_date - dt.timedelta(days=1)
    manifest = json.loads((tmp_path / "live" / MANIFEST_NAME).read_text())
    assert manifest["end_date"] is None
    assert manifest["generated_with"]["end_date"] == summary.end_date.isoformat()


@pytest.mark.parametrize(
    "change", [{"file_format": "json"}, {"users": 0}, {"days": 0}, {"candidates": -1}]
)
def test_invalid_config_is_rejected(tmp_path, change):
    with pytest.raises(ValueError, match="invalid SimulatorConfig"):
        generate_shop(tmp_path / "bad", SimulatorConfig(**{**SMALL.__dict__, **change}))


def test_bot_bursts_scale_with_the_day():
    """A burst holds at most 2% of a day's events, never fewer than 40 views a minute for 2
    minutes; on a large day the drawn shape is kept."""
    minutes, per_min = np.array([5, 2, 3]), np.array([360, 120, 200])
    big_m, big_p = simulator._bot_burst_shape(minutes, per_min, 1_000_000)
    np.testing.assert_array_equal(big_m, minutes)
    np.testing.assert_array_equal(big_p, per_min)
    small_m, small_p = simulator._bot_burst_shape(minutes, per_min, 6_000)  # cap 120 views
    assert (small_m * small_p <= 120).all()
    assert (small_p >= simulator.BOT_MIN_PER_MINUTE).all() and (small_m >= 2).all()
    tiny_m, tiny_p = simulator._bot_burst_shape(minutes, per_min, 300)  # floor: 2 min x 40
    np.testing.assert_array_equal(tiny_m, [2, 2, 2])
    np.testing.assert_array_equal(tiny_p, [40, 40, 40])
