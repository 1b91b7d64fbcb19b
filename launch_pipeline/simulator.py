"""The embedded shop simulator: a deterministic, vectorised e-commerce world that writes a raw
data directory following :mod:`launch_pipeline.contract`, plus the ground truth to grade it.

The simulated world
===================

*Catalog.* Twelve categories (cameras, camera_accessories, laptops, computer_accessories,
phones, phone_accessories, kitchen, coffee, outdoor, fitness, books, toys), each with its own
nouns, adjectives, review aspects, a popularity weight and a log-normal price distribution
(median and spread per category, so a "cheap camera" and a "cheap book" live in different price
bands). Forty brands each sell in 1-3 categories and carry a hidden quality, a popularity
(exposure) and a price premium. A product is ``"{brand} {adjective} {noun}"`` with a price, a
hidden quality and a hidden popularity. About 70% of the catalog was launched before the
simulated window, the rest launches during it (at 00:00 UTC of its launch day) and has no events
before. Launch candidates (``n000``...) are drawn from the same distributions (half of them from
a uniform category mix, so some sit in niche categories) and never occur in events.

*Shoppers.* Each genuine user has a segment with its own hour-of-day and day-of-week rhythm
(``early_bird`` mornings, ``office_hours`` weekday working hours, ``evening``, ``night_owl``
around midnight, ``weekend`` Saturday/Sunday afternoons), a long-tailed activity level
(log-normal: a few users have dozens of sessions, most a handful), a Dirichlet preference over
categories, brand affinities, a preferred price position within a category (``price_band``, in
standard deviations of the category's log price) with a ``price_sensitivity``, and a buying
propensity (``buy_bias``). All times are UTC.

*Choice model.* The true utility of item *i* for user *u* is built from attributes only::

    u(u,i) = 0.7 * log(C * pref[u, cat_i] + 0.1) + affinity[u, brand_i] + brand_quality[brand_i]
             + quality_i - price_sensitivity[u] * (z_i - price_band[u])**2

where ``z_i`` is the item's standardised log price within its category. Every day each user has
Poisson(activity x day-of-week weight) sessions; a session starts at an hour drawn from the
segment's rhythm, picks a session category from the user's preference and holds 1 + Poisson(4)
views. 75% of views are restricted to the session category, the rest browse the whole shop; an
item is drawn by a softmax over ``u + popularity + new-arrival boost`` among launched items (the
boost is ``1.2 * exp(-days_since_launch / 10)``). Each view converts to a cart with probability
``sigmoid(-3.3 + 0.9 u + buy_bias)`` and a cart to a purchase with ``sigmoid(-0.8 + 0.6 u +
0.5 buy_bias)``. Purchases are returned a few days later with probability ``sigmoid(-1.6 - 0.8
u)`` and reviewed a few days later (25%, 50% after a return) with a rating around ``3.3 + 0.9
u`` (minus 1.2 after a return) and a text assembled from many phrase pieces (rating-dependent
openers/verdicts/closers, the product's noun, adjective, brand and category aspects, numbers),
so genuine texts rarely repeat.

*Sequential signal.* A purchase in cameras, laptops, phones, coffee or outdoor triggers (with
probability 0.6) a follow-up of 1 + Poisson(2) views later in the same session in the related
category (camera_accessories, computer_accessories, phone_accessories, kitchen, fitness).

*Ground truth.* ``ground_truth/candidate_appeal.parquet`` holds, for every genuine user and
candidate, the probability that the user buys the candidate within 30 days if it were launched
alone on the day after the window (``end_date + 1``), computed analytically from the same
choice model (sessions, category mix, softmax with the candidate added, funnel, new-arrival
boost, follow-ups; exact except that follow-up purchases are treated as Poisson), and the
expected units. ``candidate_truth.parquet`` sums them per candidate (revenue = units x price x
the mean discount factor, before returns). ``users.parquet`` and ``items.parquet`` hold the
latent parameters; ``planted_noise.parquet`` lists every planted noisy row as ``(kind, file,
row)``, ``row`` being the 0-based data row (CSV line number = row + 2, the header is line 1).

*Noise* (``noise=True``; kinds as recorded in ``planted_noise.parquet``): ``bot`` (crawler
accounts viewing 120-360 items per minute for 2-5 minutes, scaled down on small days so that a
burst is at most 2% of a day's events, but never below 40 views a minute for 2 minutes, one
burst a day while there are enough days; genuine users never exceed a few events per
minute), ``fake_review_duplicate_text`` (5-20 accounts posting the identical 5-star
text for one item on one day), ``fake_review_burst`` (6-12 distinct 5-star reviews of one item
within an hour from accounts that never viewed or bought it), ``exact_duplicate`` (a byte-equal
copy placed after its original), ``missing_user_id``, ``missing_item_id``, ``negative_price``
(purchase rows), ``future_timestamp`` (10-30 years ahead), ``timestamp_outside_partition`` (a
ts 1-7 days before the file's day), ``unknown_item``, ``invalid_event_type`` (click, wishlist,
...), ``invalid_rating`` (0 or 9) and, in CSV only, ``malformed_row`` (4 or 11 fields instead of
9) and ``invalid_timestamp`` (e.g. ``not-a-date``). Corrupted copies are *extra* rows (the
genuine row stays; copies other than exact duplicates and timestamp kinds are shifted by 1-30 s),
so the genuine events are identical with and without noise, and no two genuine rows share
``(user_id, item_id, event_type, ts)``. There are 2-20 bots (about 2% of rows in bot views on
a large shop, less on a small one),
noise is spread over the days, lighter on the newest day, and bots and fake reviews stay off it.
Noisy accounts (bots, fake reviewers) have ordinary-looking ids;
``ground_truth/users.parquet`` tells them.

Determinism: the world comes from ``SeedSequence(seed, spawn_key=(0,))``, each day's genuine
events from ``(1, date ordinal)`` and its noise from ``(2, date ordinal)``, the noise plan from
``(3,)``. Same config with an explicit ``end_date`` gives byte-identical files. Memory is bounded
by one day of events plus the few pending returns/reviews; utilities are computed in user chunks.
Each day file is written as soon as it is simulated. ``candidate_truth=False`` skips the users x
candidates ground truth (the slow part for many users; the benchmark uses it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from launch_pipeline.contract import (
    CANDIDATES_STEM,
    EVENT_TYPES,
    EVENTS_DIRNAME,
    MANIFEST_NAME,
    PRODUCTS_STEM,
)

__all__ = [
    "EVENT_FILE_COLUMNS",
    "NOISE_KINDS",
    "SimulationSummary",
    "SimulatorConfig",
    "generate_shop",
]

# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------

EVENT_FILE_COLUMNS: tuple[str, ...] = (
    "user_id",
    "item_id",
    "event_type",
    "ts",
    "quantity",
    "price",
    "rating",
    "review_text",
    "session_id",
)
GROUND_TRUTH_DIRNAME = "ground_truth"

# noise kinds copied from genuine rows and corrupted, with their rate per genuine event
_RATE_KINDS: dict[str, float] = {
    "exact_duplicate": 0.0008,
    "missing_user_id": 0.0004,
    "missing_item_id": 0.0004,
    "negative_price": 0.0003,
    "future_timestamp": 0.0003,
    "timestamp_outside_partition": 0.0003,
    "unknown_item": 0.0004,
    "invalid_event_type": 0.0003,
    "invalid_rating": 0.0003,
    "malformed_row": 0.0003,
    "invalid_timestamp": 0.0003,
}
_CSV_ONLY_KINDS = ("malformed_row", "invalid_timestamp")
NOISE_KINDS: tuple[str, ...] = (
    "bot",
    "fake_review_duplicate_text",
    "fake_review_burst",
    *_RATE_KINDS,
)
_KIND_CODE = {k: i for i, k in enumerate(NOISE_KINDS)}


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 7
    users: int = 3000
    days: int = 60
    events_per_day: int = 6000  # approximate mean of genuine events per day
    end_date: dt.date | None = None  # last simulated day (inclusive); None -> yesterday (UTC)
    catalog_items: int = 400  # products launched before or during the window
    candidates: int = 60  # new products awaiting launch (never appear in events)
    file_format: str = "csv"  # "csv" | "parquet" for events/; malformed rows only exist in csv
    noise: bool = True  # plant the noise kinds listed in NOISE_KINDS
    # write ground_truth/candidate_appeal.parquet and candidate_truth.parquet (users x candidates,
    # the expensive part at scale: about 1 s per 1,000 users); False skips them (benchmarks)
    candidate_truth: bool = True


@dataclass
class SimulationSummary:
    out_dir: Path
    start_date: dt.date
    end_date: dt.date
    events: int  # data rows written to events/ (genuine + planted noise)
    files: int  # event files written (one per day)
    noise_counts: dict[str, int]  # planted rows per noise kind
    genuine_events: int = 0  # events/ rows that are not planted noise
    seconds: float = field(default=0.0, compare=False)  # wall time of the generation

    def to_dict(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "events": int(self.events),
            "files": int(self.files),
            "genuine_events": int(self.genuine_events),
            "noise_counts": {k: int(v) for k, v in self.noise_counts.items()},
            "seconds": round(float(self.seconds), 3),
        }


# --------------------------------------------------------------------------------------------
# world vocabulary
# --------------------------------------------------------------------------------------------

# name: (popularity, median price, log-price sigma, extra-quantity lambda, nouns, adjectives,
#        review aspects)
_CATEGORIES: dict[str, tuple] = {
    "cameras": (
        0.6, 450.0, 0.5, 0.02,
        ["mirrorless camera", "compact camera", "action camera", "instant camera",
         "DSLR body", "vlogging camera", "film camera", "360 camera"],
        ["pro", "ultra-sharp", "lightweight", "weatherproof", "retro", "4K", "travel",
         "full-frame"],
        ["image quality", "autofocus", "battery life", "low-light performance"],
    ),
    "camera_accessories": (
        0.5, 35.0, 0.7, 0.25,
        ["tripod", "camera bag", "lens filter", "memory card", "camera strap", "flash unit",
         "lens cap set", "gimbal"],
        ["carbon", "compact", "padded", "heavy-duty", "magnetic", "universal", "slim",
         "quick-release"],
        ["build quality", "fit", "weight", "durability"],
    ),
    "laptops": (
        0.9, 900.0, 0.4, 0.02,
        ["ultrabook", "gaming laptop", "2-in-1 laptop", "notebook", "workstation laptop",
         "chromebook", "student laptop", "creator laptop"],
        ["thin", "high-performance", "14-inch", "16-inch", "fanless", "OLED", "business",
         "featherlight"],
        ["screen", "keyboard", "battery life", "performance"],
    ),
    "computer_accessories": (
        1.0, 30.0, 0.7, 0.2,
        ["wireless mouse", "mechanical keyboard", "USB-C hub", "laptop stand", "webcam",
         "monitor arm", "mouse pad", "docking station"],
        ["ergonomic", "silent", "RGB", "aluminium", "foldable", "plug-and-play", "wireless",
         "low-profile"],
        ["build quality", "connectivity", "comfort", "setup"],
    ),
    "phones": (
        1.6, 500.0, 0.5, 0.02,
        ["smartphone", "flagship phone", "budget phone", "foldable phone", "rugged phone",
         "mini phone", "camera phone", "5G phone"],
        ["sleek", "dual-SIM", "long-battery", "edge-to-edge", "compact", "pro", "titanium",
         "midnight"],
        ["camera", "battery life", "screen", "speed"],
    ),
    "phone_accessories": (
        1.4, 20.0, 0.6, 0.35,
        ["phone case", "screen protector", "charging cable", "wireless charger", "power bank",
         "car mount", "earbuds", "pop grip"],
        ["shockproof", "fast-charge", "braided", "clear", "magnetic", "slim", "tempered",
         "pocket"],
        ["fit", "charging speed", "grip", "durability"],
    ),
    "kitchen": (
        1.3, 45.0, 0.7, 0.15,
        ["chef knife", "frying pan", "blender", "cutting board", "kettle", "toaster",
         "mixing bowl set", "spice rack"],
        ["non-stick", "stainless", "bamboo", "cast-iron", "ceramic", "compact", "professional",
         "heat-resistant"],
        ["sharpness", "heat distribution", "ease of cleaning", "build quality"],
    ),
    "coffee": (
        0.8, 25.0, 0.8, 0.4,
        ["espresso machine", "coffee grinder", "pour-over kettle", "french press",
         "coffee beans", "milk frother", "cold brew maker", "coffee scale"],
        ["single-origin", "burr", "gooseneck", "barista", "dark roast", "precision",
         "double-wall", "manual"],
        ["flavour", "grind consistency", "temperature control", "aroma"],
    ),
    "outdoor": (
        0.8, 60.0, 0.8, 0.1,
        ["tent", "sleeping bag", "hiking backpack", "camping stove", "headlamp",
         "trekking poles", "water filter", "hammock"],
        ["ultralight", "waterproof", "4-season", "packable", "insulated", "trail", "rugged",
         "compact"],
        ["weight", "weather resistance", "packing size", "comfort"],
    ),
    "fitness": (
        1.0, 40.0, 0.8, 0.15,
        ["yoga mat", "dumbbell set", "resistance bands", "jump rope", "kettlebell",
         "foam roller", "fitness tracker", "pull-up bar"],
        ["non-slip", "adjustable", "eco", "heavy-duty", "smart", "cushioned", "home-gym",
         "pro"],
        ["grip", "sturdiness", "comfort", "accuracy"],
    ),
    "books": (
        1.2, 15.0, 0.4, 0.3,
        ["novel", "cookbook", "thriller", "biography", "sci-fi paperback", "travel guide",
         "poetry collection", "graphic novel"],
        ["bestselling", "illustrated", "hardcover", "award-winning", "pocket", "collector's",
         "annotated", "first-edition"],
        ["story", "writing", "print quality", "pacing"],
    ),
    "toys": (
        0.9, 25.0, 0.7, 0.2,
        ["building set", "puzzle", "board game", "plush bear", "remote control car",
         "wooden train", "science kit", "card game"],
        ["colourful", "educational", "family", "classic", "junior", "deluxe", "magnetic",
         "glow-in-the-dark"],
        ["fun factor", "build quality", "instructions", "durability"],
    ),
}  # fmt: skip
_CAT_NAMES: tuple[str, ...] = tuple(_CATEGORIES)
_TRANSITIONS = {
    "cameras": "camera_accessories",
    "laptops": "computer_accessories",
    "phones": "phone_accessories",
    "coffee": "kitchen",
    "outdoor": "fitness",
}
# related category groups, used to give brands coherent assortments
_CAT_GROUPS = (
    ("cameras", "camera_accessories"),
    ("laptops", "computer_accessories", "phones", "phone_accessories"),
    ("kitchen", "coffee"),
    ("outdoor", "fitness"),
    ("books", "toys"),
)
_BRANDS = (
    "Aldervane", "Brightmoor", "Cobaltix", "Dunmore", "Everpeak", "Foxglen", "Granitex",
    "Halcyon", "Ironbark", "Juniper", "Kestrel", "Lumora", "Maplewood", "Northwind",
    "Orbisonic", "Pinecrest", "Quillon", "Redwater", "Silverline", "Tidewell", "Umbra",
    "Vantor", "Wexley", "Xyloform", "Yarrow", "Zenbrook", "Arcadia", "Bluefin", "Cindral",
    "Driftwood", "Emberly", "Fjordic", "Glimmer", "Hollis", "Isotrek", "Jasperton", "Koru",
    "Lindqvist", "Meridian", "Nimbus",
)  # fmt: skip

_SEGMENTS = ("early_bird", "office_hours", "evening", "night_owl", "weekend")
_SEGMENT_SHARES = (0.15, 0.25, 0.30, 0.15, 0.15)
# (centre hour, sd, weight) bumps on the 24-hour circle, and a floor
_HOUR_BUMPS = {
    "early_bird": ([(6.5, 1.2, 1.0), (12.5, 1.0, 0.2)], 0.01),
    "office_hours": ([(10.0, 1.5, 0.8), (13.0, 1.0, 0.6), (15.5, 1.5, 0.6)], 0.01),
    "evening": ([(20.0, 1.6, 1.0)], 0.01),
    "night_owl": ([(0.5, 1.8, 1.0)], 0.01),
    "weekend": ([(14.0, 3.0, 1.0)], 0.02),
}
# Monday .. Sunday
_DOW_WEIGHTS = {
    "early_bird": (1.1, 1.1, 1.1, 1.1, 1.1, 0.8, 0.7),
    "office_hours": (1.3, 1.3, 1.3, 1.3, 1.2, 0.3, 0.3),
    "evening": (1.0, 1.0, 1.0, 1.0, 0.9, 1.0, 1.1),
    "night_owl": (0.9, 0.9, 0.9, 1.0, 1.2, 1.2, 0.9),
    "weekend": (0.4, 0.4, 0.4, 0.4, 0.6, 2.4, 2.4),
}

# --- choice-model constants (shared by the event generator and the ground truth) ---
KAPPA = 0.7  # weight of the category preference in the utility
MEAN_VIEWS = 5.0  # views per session: 1 + Poisson(MEAN_VIEWS - 1)
RHO = 0.75  # share of views restricted to the session category
NEW_BOOST = 1.2  # new-arrival exposure boost (log scale) ...
BOOST_TAU = 10.0  # ... decaying with this many days
CART_A, CART_B = -3.3, 0.9
BUY_A, BUY_B, BUY_BIAS = -0.8, 0.6, 0.5
FOLLOW_P = 0.6  # follow-up probability after a purchase in a transition source category
FOLLOW_EXTRA = 2.0  # follow-up views: 1 + Poisson(FOLLOW_EXTRA)
RET_A, RET_B = -1.6, -0.8
REVIEW_P, REVIEW_P_RETURNED = 0.25, 0.5
RATING_A, RATING_B, RATING_SD, RATING_RETURN_PENALTY = 3.3, 0.9, 0.9, 1.2
VIEW_GAP_S = 35.0  # mean seconds between views of a session
DISCOUNTS = np.array([1.0, 0.95, 0.9, 0.85, 0.8])
DISCOUNT_P = np.array([0.85, 0.05, 0.05, 0.03, 0.02])
MEAN_DISCOUNT = float(DISCOUNTS @ DISCOUNT_P)
UNIX_TS_SHARE = 0.10
HORIZON_DAYS = 30  # candidate appeal horizon
EVENTS_PER_SESSION = 5.9  # calibration: genuine events per session (incl. returns/reviews)
BOT_SHARE = 0.02  # bot views as a share of genuine events (about 1000 views per burst)
BOT_BURST_DAY_SHARE = 0.02  # a burst holds at most this share of a day's events ...
BOT_MIN_PER_MINUTE = 40  # ... but never fewer views a minute than this, for 2 minutes
MAX_BOTS = 20
CHUNK_CELLS = 2_000_000  # user x item cells per utility chunk (memory bound)

_ETYPES = (*EVENT_TYPES, "click", "wishlist", "add_to_cart", "share", "hover")
_VIEW, _CART, _PURCHASE, _RETURN, _REVIEW = (EVENT_TYPES.index(t) for t in EVENT_TYPES)
_N_VALID_ETYPES = len(EVENT_TYPES)
_BAD_TS = ("not-a-date", "2026-13-45T99:99:99Z", "yesterday", "ts_error", "32/13/2026 25:61")

# --- review text pieces ---
_OPENERS = np.array(
    [
        ["Terrible.", "Very disappointed.", "Do not buy.", "Waste of money.",
         "Broke almost immediately.", "Really regret this purchase.", "Awful experience.",
         "Sent it straight back."],
        ["Somewhat disappointed.", "Expected more.", "Not really worth it.", "Meh.",
         "Had some issues.", "Below expectations.", "Not convinced.", "Could be better."],
        ["It is okay.", "Mixed feelings.", "Average at best.", "Not bad, not great.",
         "Does what it says, nothing more.", "Decent but forgettable.", "Fine for the price.",
         "Some ups and downs."],
        ["Very good overall.", "Pretty happy with this.", "Solid choice.",
         "Good value for the money.", "Does the job well.", "Nice surprise.",
         "Happy with it so far.", "Mostly great."],
        ["Absolutely love it.", "Five stars from me.", "Exceeded my expectations.",
         "Could not be happier.", "Fantastic purchase.", "Really impressed.",
         "Best buy this year.", "Wow, just wow."],
    ],
    dtype=object,
)  # fmt: skip
_INTROS = np.array(
    ["The ", "Honestly the ", "This ", "My new ", "For daily use the ",
     "Compared to my old one, this ", "Out of the box the ", "After a few days the ",
     "Overall the ", "So far the "],
    dtype=object,
)  # fmt: skip
_VERDICTS = np.array(
    [
        [" stopped working after a week.", " feels cheap and flimsy.",
         " looks nothing like the photos.", " is not worth the price.",
         " arrived damaged.", " is uncomfortable to use.", " was a letdown from day one.",
         " has obvious quality problems.", " gave me nothing but trouble.",
         " is noticeably worse than advertised."],
        [" is fine for occasional use.", " does the basics.", " is acceptable.",
         " works, but nothing special.", " is a bit smaller than expected.",
         " is okay once you get used to it.", " is average in every way.",
         " could be more polished.", " is neither good nor bad.",
         " is roughly what I expected."],
        [" feels really sturdy.", " works perfectly.", " looks even better than in the photos.",
         " is worth every cent.", " arrived quickly and well packed.",
         " is a joy to use every day.", " beats everything I tried before.",
         " is beautifully made.", " does exactly what I needed.",
         " has become a daily favourite."],
    ],
    dtype=object,
)  # fmt: skip
_ASPECT_Q = np.array(
    [
        [" is poor.", " is a real weak spot.", " disappointed me.", " is below average.",
         " needs work.", " is frankly bad.", " is the biggest problem.", " is unreliable."],
        [" is decent.", " is okay.", " could be better.", " is average.", " is acceptable.",
         " is so-so.", " is fine.", " is middle of the road."],
        [" is excellent.", " is superb.", " is outstanding.", " is better than expected.",
         " is top notch.", " is great.", " is impressive.", " is spot on."],
    ],
    dtype=object,
)  # fmt: skip
_CLOSERS = np.array(
    [
        ["Avoid.", "Returning it.", "Never again.", "One star is generous.", "Save your money.",
         "Not recommended."],
        ["Might buy again.", "Three stars.", "It will do for now.", "Okay for the price.",
         "Neutral overall.", "Hard to say more."],
        ["Would buy again.", "Highly recommended.", "Five stars.", "Great value.",
         "Recommended to friends already.", "Thank you!"],
    ],
    dtype=object,
)  # fmt: skip
_RELATIVES = np.array(
    ["mother", "father", "sister", "brother", "partner", "son", "daughter", "friend",
     "colleague", "grandmother"],
    dtype=object,
)  # fmt: skip
_ORDINALS = np.array(["second", "third", "fourth", "fifth"], dtype=object)
_NUMS = np.array([str(i) for i in range(100)], dtype=object)
_FAKE_TEMPLATES = (
    ("Best ", " ever!!! Highly recommend to everyone, five stars!!!"),
    ("Amazing ", "!!! Buy it now, you will not regret it!!!"),
    ("Perfect ", ", perfect seller, perfect price. 5 stars!!!"),
    ("This ", " changed my life. Everybody needs one. 10/10!!!"),
    ("Wonderful ", ". Top quality, fast shipping, best deal online!!!"),
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def _row_cdf_flat(probs: np.ndarray) -> np.ndarray:
    """Row-wise CDFs with each row offset by its row index, flattened (for _sample_rows)."""
    cum = np.cumsum(probs, axis=1)
    cum = cum / cum[:, -1:]
    cum[:, -1] = 1.0
    return (cum + np.arange(len(probs))[:, None]).ravel()


def _sample_rows(cdf_flat: np.ndarray, k: int, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw one category per entry of ``rows`` from that row's distribution (vectorised)."""
    pos = np.searchsorted(cdf_flat, rows + u, side="right")
    return np.clip(pos - rows * k, 0, k - 1)


def _hour_profile(bumps, floor) -> np.ndarray:
    h = np.arange(24) + 0.5
    p = np.full(24, floor)
    for centre, sd, weight in bumps:
        d = np.abs(h - centre)
        d = np.minimum(d, 24 - d)
        p += weight * np.exp(-0.5 * (d / sd) ** 2)
    return p / p.sum()


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.array([f"{prefix}{n:0{width}d}" for n in numbers], dtype=object)


def _epoch(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * 86400


def _resolve_end(cfg: SimulatorConfig) -> dt.date:
    if cfg.end_date is not None:
        if isinstance(cfg.end_date, dt.datetime):
            return cfg.end_date.date()
        if isinstance(cfg.end_date, str):
            return dt.date.fromisoformat(cfg.end_date)
        return cfg.end_date
    return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def _validate(cfg: SimulatorConfig) -> None:
    problems = []
    for name in ("users", "days", "events_per_day", "catalog_items"):
        if int(getattr(cfg, name)) < 1:
            problems.append(f"{name} must be >= 1")
    if cfg.candidates < 0:
        problems.append("candidates must be >= 0")
    if cfg.seed < 0:
        problems.append("seed must be >= 0")
    if cfg.file_format not in ("csv", "parquet"):
        problems.append(f"file_format must be 'csv' or 'parquet', not {cfg.file_format!r}")
    if problems:
        raise ValueError("invalid SimulatorConfig: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------
# the world: catalog, candidates, users
# --------------------------------------------------------------------------------------------


@dataclass
class _Items:
    """Item attributes; catalog items are kept sorted by category (internal order)."""

    ids: np.ndarray
    cat: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    z: np.ndarray  # standardised log price within the category
    quality: np.ndarray
    pop: np.ndarray  # exposure (affects views, not conversion)
    noun: np.ndarray
    adj: np.ndarray
    launch_day: np.ndarray  # relative to the window start
    unit_cost: np.ndarray | None = None
    stock: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def titles(self) -> np.ndarray:
        return _BRANDS_ARR[self.brand] + " " + self.adj + " " + self.noun


_BRANDS_ARR = np.array(_BRANDS, dtype=object)


class _World:
    def __init__(self, cfg: SimulatorConfig, start: dt.date):
        self.cfg = cfg
        self.start = start
        self.days = cfg.days
        rng = _rng(cfg.seed, 0)
        C = self.n_cat = len(_CAT_NAMES)
        meta = [_CATEGORIES[c] for c in _CAT_NAMES]
        self.cat_pop = np.array([m[0] for m in meta]) / sum(m[0] for m in meta)
        self.cat_mu = np.log([m[1] for m in meta])
        self.cat_sigma = np.array([m[2] for m in meta])
        self.cat_qty = np.array([m[3] for m in meta])
        self.nouns = [np.array(m[4], dtype=object) for m in meta]
        self.adjs = [np.array(m[5], dtype=object) for m in meta]
        self.aspects = np.array([[a[0].upper() + a[1:] for a in m[6]] for m in meta], dtype=object)
        self.transition = np.full(C, -1)
        for src, dst in _TRANSITIONS.items():
            self.transition[_CAT_NAMES.index(src)] = _CAT_NAMES.index(dst)

        # brands: 1-3 categories each, mostly from one group of related categories
        B = len(_BRANDS)
        self.brand_cats: list[list[int]] = []
        group_of = {c: g for g in _CAT_GROUPS for c in g}
        for _ in range(B):
            first = _CAT_NAMES[rng.choice(C, p=self.cat_pop)]
            k = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
            cats = [first]
            pool = [c for c in group_of[first] if c != first]
            others = [c for c in _CAT_NAMES if c not in group_of[first]]
            while len(cats) < k:
                src = pool if pool and rng.random() < 0.8 else others
                pick = src.pop(int(rng.integers(len(src))))
                cats.append(pick)
            self.brand_cats.append(sorted(_CAT_NAMES.index(c) for c in cats))
        for c in range(C):  # every category gets at least three brands
            while sum(c in bc for bc in self.brand_cats) < 3:
                b = int(rng.integers(B))
                if c not in self.brand_cats[b]:
                    self.brand_cats[b] = sorted([*self.brand_cats[b], c])
        self.brand_quality = rng.normal(0, 0.3, B)
        self.brand_pop = rng.normal(0, 0.5, B)
        self.brand_premium = rng.normal(0, 0.25, B)

        # catalog (internal order sorted by category)
        n = cfg.catalog_items
        cat = np.sort(rng.choice(C, n, p=self.cat_pop))
        items = self._draw_items(rng, cat)
        pre = rng.random(n) < 0.7
        pre[rng.integers(n)] = True
        if self.days <= 1:
            pre[:] = True
        launch = np.where(
            pre,
            -rng.integers(1, 366, n),
            rng.integers(1, max(self.days, 2), n),
        )
        items.launch_day = launch
        width = max(4, len(str(n + 999)))
        numbers = rng.permutation(n)
        items.ids = _ids("p", numbers, width)
        self.items = items
        self.cat_lo = np.searchsorted(cat, np.arange(C), side="left")
        self.cat_hi = np.searchsorted(cat, np.arange(C), side="right")
        self.item_by_id = np.argsort(numbers, kind="stable")  # internal indices in id order
        self.unknown_ids = _ids("p", n + rng.permutation(1000)[:200], width)
        self.item_id_table = pa.array(np.concatenate([items.ids, self.unknown_ids]), pa.string())

        # candidates: half by category popularity, half uniform (niche categories too)
        J = cfg.candidates
        ccat = np.where(
            rng.random(J) < 0.5, rng.choice(C, J, p=self.cat_pop), rng.integers(0, C, J)
        )
        cands = self._draw_items(rng, ccat)
        cands.ids = _ids("n", np.arange(J), max(3, len(str(max(J - 1, 0)))))
        cands.launch_day = np.full(J, self.days)  # would launch the day after the window
        cands.unit_cost = np.round(cands.price * rng.uniform(0.35, 0.7, J), 2)
        cands.stock = (rng.integers(5, 200, J) * 10).astype(np.int64)
        self.cands = cands

        # genuine users
        U = self.n_users = cfg.users
        self.seg = rng.choice(len(_SEGMENTS), U, p=_SEGMENT_SHARES)
        act = rng.lognormal(0.0, 1.1, U)
        self.activity = act / act.mean()
        self.pref = rng.dirichlet(0.5 * C * self.cat_pop, U)
        self.log_pref = np.log(C * self.pref + 0.1)
        self.pref_cdf = _row_cdf_flat(self.pref)
        self.aff = rng.normal(0, 0.5, (U, B))
        self.band = rng.normal(0, 0.8, U)
        self.sens = rng.gamma(2.0, 0.3, U)
        self.bias = rng.normal(0, 0.5, U)
        hours = np.array([_hour_profile(*_HOUR_BUMPS[s]) for s in _SEGMENTS])
        self.hour_p = hours
        self.hour_cdf = _row_cdf_flat(hours)
        dow = np.array([_DOW_WEIGHTS[s] for s in _SEGMENTS], dtype=float)
        self.dow_w = dow / dow.mean(axis=1, keepdims=True)
        sessions_per_day = cfg.events_per_day / EVENTS_PER_SESSION
        self.lam_base = sessions_per_day * self.activity / self.activity.sum()

        # noisy accounts, with ids interleaved among the genuine ones; the id slots depend on
        # `users` only, so genuine ids do not change with days, volume or noise
        budget = cfg.events_per_day * cfg.days
        self.n_bot_bursts = max(2, round(BOT_SHARE * budget / 1000))
        self.n_bots = int(min(MAX_BOTS, max(2, math.ceil(self.n_bot_bursts / 2))))
        self.n_fake = int(min(2000, max(20, U // 30)))
        slots = U + MAX_BOTS + self.n_fake
        perm = rng.permutation(slots)
        used = np.concatenate([perm[: U + self.n_bots], perm[U + MAX_BOTS :]])
        self.account_ids = _ids("u", used, max(5, len(str(slots - 1))))
        self.account_table = pa.array(self.account_ids, pa.string())

    def _draw_items(self, rng: np.random.Generator, cat: np.ndarray) -> _Items:
        n = len(cat)
        brand = np.empty(n, dtype=np.int64)
        for c in np.unique(cat):
            sel = np.flatnonzero(cat == c)
            sellers = np.array([b for b, cs in enumerate(self.brand_cats) if c in cs])
            w = np.exp(self.brand_pop[sellers])
            brand[sel] = rng.choice(sellers, len(sel), p=w / w.sum())
        logp = (
            self.cat_mu[cat] + self.brand_premium[brand] + self.cat_sigma[cat] * rng.normal(0, 1, n)
        )
        price = np.maximum(np.round(np.exp(logp)) - 0.01, 0.99)
        z = (np.log(price) - self.cat_mu[cat]) / self.cat_sigma[cat]
        noun = np.empty(n, dtype=object)
        adj = np.empty(n, dtype=object)
        for c in np.unique(cat):
            sel = np.flatnonzero(cat == c)
            noun[sel] = self.nouns[c][rng.integers(0, len(self.nouns[c]), len(sel))]
            adj[sel] = self.adjs[c][rng.integers(0, len(self.adjs[c]), len(sel))]
        return _Items(
            ids=np.empty(n, dtype=object),
            cat=cat.astype(np.int64),
            brand=brand,
            price=price,
            z=z,
            quality=rng.normal(0, 0.5, n),
            pop=self.brand_pop[brand] + rng.normal(0, 0.4, n),
            noun=noun,
            adj=adj,
            launch_day=np.zeros(n, dtype=np.int64),
        )

    # --- the choice model -------------------------------------------------------------------

    def utility(self, users: np.ndarray, items: _Items) -> np.ndarray:
        """True utility, users x items (only item attributes + per-item quality)."""
        u = KAPPA * self.log_pref[users][:, items.cat]
        u += self.aff[users][:, items.brand]
        u += self.brand_quality[items.brand] + items.quality
        u -= self.sens[users, None] * (items.z[None, :] - self.band[users, None]) ** 2
        return u

    @staticmethod
    def boost(launch_day: np.ndarray, day: int) -> np.ndarray:
        age = day - launch_day
        return np.where(age >= 0, NEW_BOOST * np.exp(-np.maximum(age, 0) / BOOST_TAU), 0.0)

    @staticmethod
    def p_purchase_per_view(u: np.ndarray, bias: np.ndarray) -> np.ndarray:
        return _sigmoid(CART_A + CART_B * u + bias) * _sigmoid(BUY_A + BUY_B * u + BUY_BIAS * bias)

    def chunk_size(self, width: int) -> int:
        return max(1, CHUNK_CELLS // max(width, 1))


# --------------------------------------------------------------------------------------------
# review texts
# --------------------------------------------------------------------------------------------


def _review_texts(
    w: _World,
    items: np.ndarray,
    ratings: np.ndarray,
    rng: np.random.Generator,
    opener_k: np.ndarray | None = None,
    verdict_k: np.ndarray | None = None,
) -> np.ndarray:
    n = len(items)
    if n == 0:
        return np.empty(0, dtype=object)
    it = w.items
    band = np.where(ratings >= 4, 2, np.where(ratings == 3, 1, 0))
    if opener_k is None:
        opener_k = rng.integers(0, _OPENERS.shape[1], n)
    if verdict_k is None:
        verdict_k = rng.integers(0, _VERDICTS.shape[1], n)
    noun = it.noun[items]
    brand = _BRANDS_ARR[it.brand[items]]
    intro_k = rng.integers(0, len(_INTROS) + 1, n)
    with_adj = rng.random(n) < 0.5
    intro = np.where(
        intro_k == len(_INTROS),
        "The " + brand + " " + noun,
        _INTROS[np.minimum(intro_k, len(_INTROS) - 1)]
        + np.where(with_adj, it.adj[items] + " ", "")
        + noun,
    )
    aspect = w.aspects[it.cat[items], rng.integers(0, w.aspects.shape[1], n)]
    aspect_s = np.where(
        rng.random(n) < 0.6,
        " " + aspect + _ASPECT_Q[band, rng.integers(0, _ASPECT_Q.shape[1], n)],
        "",
    )
    num = _NUMS[rng.integers(2, 13, n)]
    extra_kind = rng.integers(0, 7, n)
    extras = np.select(
        [extra_kind == 0, extra_kind == 1, extra_kind == 2, extra_kind == 3],
        [
            " Used it for " + num + " weeks now.",
            " Delivery took " + num + " days.",
            " Bought it as a gift for my " + _RELATIVES[rng.integers(0, len(_RELATIVES), n)] + ".",
            " This is my "
            + _ORDINALS[rng.integers(0, len(_ORDINALS), n)]
            + " "
            + brand
            + " product.",
        ],
        "",
    )
    closer = np.where(
        rng.random(n) < 0.5, " " + _CLOSERS[band, rng.integers(0, _CLOSERS.shape[1], n)], ""
    )
    return (
        _OPENERS[ratings - 1, opener_k]
        + " "
        + intro
        + _VERDICTS[band, verdict_k]
        + aspect_s
        + extras
        + closer
    )


# --------------------------------------------------------------------------------------------
# one day of genuine events
# --------------------------------------------------------------------------------------------

_FIELDS = (
    ("user", np.int64, -1),
    ("item", np.int64, -1),
    ("etype", np.int8, 0),
    ("sec", np.int64, 0),  # absolute unix seconds
    ("unix", np.bool_, False),  # render ts as unix seconds
    ("qty", np.int32, -1),
    ("price", np.float64, np.nan),
    ("rating", np.int8, -1),
    ("text", object, None),
    ("sess", np.int64, -1),
    ("badts", np.int8, -1),  # index into _BAD_TS
    ("malformed", np.int8, 0),  # 1: truncated line, 2: extra fields
)


def _rows(n: int, **cols) -> dict[str, np.ndarray]:
    out = {}
    for name, dtype, fill in _FIELDS:
        if name in cols:
            v = np.asarray(cols[name])
            out[name] = np.full(n, v, dtype=dtype) if v.ndim == 0 else v.astype(dtype, copy=False)
        else:
            out[name] = np.full(n, fill, dtype=dtype)
    return out


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if len(p["sec"])]
    if not parts:
        return _rows(0)
    return {name: np.concatenate([p[name] for p in parts]) for name, _, _ in _FIELDS}


def _take(rows: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in rows.items()}


def _pick_items(cum, excl, n_items, cat_lo, cat_hi, local, cat, u) -> np.ndarray:
    """Softmax draw per view among the row's (category-restricted) launched items."""
    restricted = cat >= 0
    lo = np.where(restricted, cat_lo[np.maximum(cat, 0)], 0)
    hi = np.where(restricted, cat_hi[np.maximum(cat, 0)], n_items)
    base = local * n_items
    lo_v = excl[base + lo]
    hi_v = cum[base + np.maximum(hi - 1, lo)]
    empty = (hi <= lo) | (hi_v <= lo_v)
    if empty.any():  # nothing launched in that category yet: browse the whole shop
        lo = np.where(empty, 0, lo)
        hi = np.where(empty, n_items, hi)
        lo_v = excl[base + lo]
        hi_v = cum[base + hi - 1]
    target = np.minimum(lo_v + u * (hi_v - lo_v), np.nextafter(hi_v, -np.inf))
    pos = np.searchsorted(cum, target, side="right")
    return np.clip(pos, base + lo, base + hi - 1) - base


def _funnel(w: _World, item, u, bias, off, rng):
    n = len(item)
    r = rng.random((2, n))
    cart = r[0] < _sigmoid(CART_A + CART_B * u + bias)
    buy = cart & (r[1] < _sigmoid(BUY_A + BUY_B * u + BUY_BIAS * bias))
    c_off = off + 5 + np.floor(rng.exponential(20.0, n)).astype(np.int64)
    b_off = c_off + 10 + np.floor(rng.exponential(60.0, n)).astype(np.int64)
    qty = 1 + rng.poisson(w.cat_qty[w.items.cat[item]])
    disc = DISCOUNTS[rng.choice(len(DISCOUNTS), n, p=DISCOUNT_P)]
    price = np.round(w.items.price[item] * disc, 2)
    return cart, buy, c_off, b_off, qty, price


def _browse_chunk(w: _World, users, n_sess, launched, logw_item, rng):
    """Sessions, views, carts, purchases and follow-ups of one chunk of active users."""
    items = w.items
    A, n_items = len(users), len(items)
    U = w.utility(users, items)
    W = np.exp(U + logw_item)
    W[:, ~launched] = 0.0
    cum = np.cumsum(W.ravel())
    excl = np.concatenate([[0.0], cum[:-1]])
    del W
    bias = w.bias[users]

    s_local = np.repeat(np.arange(A), n_sess)
    S = len(s_local)
    s_user = users[s_local]
    s_cat = _sample_rows(w.pref_cdf, w.n_cat, s_user, rng.random(S))
    s_nv = 1 + rng.poisson(MEAN_VIEWS - 1, S)
    s_hour = _sample_rows(w.hour_cdf, 24, w.seg[s_user], rng.random(S))
    s_start = s_hour * 3600 + rng.integers(0, 3600, S)

    # base views
    v_sess = np.repeat(np.arange(S), s_nv)
    V = len(v_sess)
    v_local = s_local[v_sess]
    v_cat = np.where(rng.random(V) < RHO, s_cat[v_sess], -1)
    v_item = _pick_items(cum, excl, n_items, w.cat_lo, w.cat_hi, v_local, v_cat, rng.random(V))
    gaps = 1 + np.floor(rng.exponential(VIEW_GAP_S, V)).astype(np.int64)
    cs = np.cumsum(gaps)
    first = np.cumsum(s_nv) - s_nv
    v_off = cs - cs[first][v_sess]
    v_u = U[v_local, v_item]
    cart, buy, c_off, b_off, qty, price = _funnel(w, v_item, v_u, bias[v_local], v_off, rng)

    # follow-up views in the related category after a purchase
    tgt = w.transition[items.cat[v_item]]
    parents = np.flatnonzero(buy & (tgt >= 0) & (rng.random(V) < FOLLOW_P))
    nf = 1 + rng.poisson(FOLLOW_EXTRA, len(parents))
    f_par = np.repeat(parents, nf)
    F = len(f_par)
    f_local = v_local[f_par]
    f_item = _pick_items(cum, excl, n_items, w.cat_lo, w.cat_hi, f_local, tgt[f_par], rng.random(F))
    fg = 1 + np.floor(rng.exponential(VIEW_GAP_S, F)).astype(np.int64)
    fcs = np.cumsum(fg)
    f_group = np.repeat(np.arange(len(parents)), nf)
    f_start = (fcs - fg)[np.cumsum(nf) - nf]
    f_off = b_off[f_par] + fcs - f_start[f_group]
    f_u = U[f_local, f_item]
    f_cart, f_buy, f_coff, f_boff, f_qty, f_price = _funnel(
        w, f_item, f_u, bias[f_local], f_off, rng
    )

    # assemble: views, carts, purchases (base + follow-up)
    a_local = np.concatenate([v_local, f_local])
    a_sess = np.concatenate([v_sess, v_sess[f_par]])
    a_item = np.concatenate([v_item, f_item])
    a_u = np.concatenate([v_u, f_u])
    a_cart = np.concatenate([cart, f_cart])
    a_buy = np.concatenate([buy, f_buy])
    a_qty = np.concatenate([qty, f_qty])
    a_price = np.concatenate([price, f_price])
    ci, bi = np.flatnonzero(a_cart), np.flatnonzero(a_buy)
    e_local = np.concatenate([a_local, a_local[ci], a_local[bi]])
    e_sess = np.concatenate([a_sess, a_sess[ci], a_sess[bi]])
    e_item = np.concatenate([a_item, a_item[ci], a_item[bi]])
    e_off = np.concatenate(
        [v_off, f_off, np.concatenate([c_off, f_coff])[ci], np.concatenate([b_off, f_boff])[bi]]
    )
    nv = len(a_local)
    e_type = np.concatenate(
        [np.full(nv, _VIEW), np.full(len(ci), _CART), np.full(len(bi), _PURCHASE)]
    )
    e_qty = np.concatenate([np.full(nv, -1), a_qty[ci], a_qty[bi]])
    e_price = np.concatenate([np.full(nv, np.nan), a_price[ci], a_price[bi]])

    # keep sessions inside the day: shift late sessions earlier
    max_off = np.zeros(S, dtype=np.int64)
    np.maximum.at(max_off, e_sess, e_off)
    start = np.maximum(np.minimum(s_start, 86399 - max_off), 0)
    sec = np.minimum(start[e_sess] + e_off, 86399)
    rows = _rows(
        len(e_sess),
        user=users[e_local],
        item=e_item,
        etype=e_type,
        sec=sec,
        qty=e_qty,
        price=e_price,
        sess=e_sess,
    )
    bought = {
        "user": users[a_local[bi]],
        "item": a_item[bi],
        "qty": a_qty[bi],
        "price": a_price[bi],
        "u": a_u[bi],
    }
    return rows, S, bought


def _schedule_after_purchase(w: _World, day: int, bought: dict, rng, pending: dict) -> None:
    """Decide returns and reviews of today's purchases and queue them for their later day."""
    n = len(bought["user"])
    if n == 0:
        return
    u = bought["u"]
    ret = rng.random(n) < _sigmoid(RET_A + RET_B * u)
    ret_day = day + 1 + rng.poisson(3.0, n)
    rev = rng.random(n) < np.where(ret, REVIEW_P_RETURNED, REVIEW_P)
    rev_day = day + 2 + rng.poisson(4.0, n)
    latent = RATING_A + RATING_B * u + rng.normal(0, RATING_SD, n) - RATING_RETURN_PENALTY * ret
    rating = np.clip(np.rint(latent), 1, 5).astype(np.int64)
    ri = np.flatnonzero(rev)
    texts = _review_texts(w, bought["item"][ri], rating[ri], rng)
    text_all = np.full(n, None, dtype=object)
    text_all[ri] = texts
    for mask, days, etype in ((ret, ret_day, _RETURN), (rev, rev_day, _REVIEW)):
        for target in np.unique(days[mask]):
            if target >= w.days:
                continue
            sel = np.flatnonzero(mask & (days == target))
            if etype == _RETURN:
                part = _rows(
                    len(sel),
                    user=bought["user"][sel],
                    item=bought["item"][sel],
                    etype=_RETURN,
                    qty=bought["qty"][sel],
                    price=bought["price"][sel],
                )
            else:
                part = _rows(
                    len(sel),
                    user=bought["user"][sel],
                    item=bought["item"][sel],
                    etype=_REVIEW,
                    rating=rating[sel],
                    text=text_all[sel],
                )
            pending.setdefault(int(target), []).append(part)


def _genuine_day(w: _World, day: int, rng, pending: dict):
    date = w.start + dt.timedelta(days=day)
    lam = w.lam_base * w.dow_w[w.seg, date.weekday()]
    n_sess = rng.poisson(lam)
    active = np.flatnonzero(n_sess)
    launched = w.items.launch_day <= day
    logw_item = w.items.pop + w.boost(w.items.launch_day, day)
    parts, bought_parts, n_sessions = [], [], 0
    ch = w.chunk_size(len(w.items))
    for lo in range(0, len(active), ch):
        users = active[lo : lo + ch]
        rows, S, bought = _browse_chunk(w, users, n_sess[users], launched, logw_item, rng)
        rows["sess"] += n_sessions
        n_sessions += S
        parts.append(rows)
        bought_parts.append(bought)

    # returns and reviews due today, each in its own short session at the user's usual hours
    due = _concat(pending.pop(day, []))
    n_due = len(due["sec"])
    if n_due:
        hour = _sample_rows(w.hour_cdf, 24, w.seg[due["user"]], rng.random(n_due))
        due["sec"] = hour * 3600 + rng.integers(0, 3600, n_due)
        due["sess"] = n_sessions + np.arange(n_due)
        n_sessions += n_due
        parts.append(due)
    if bought_parts:
        bought = {k: np.concatenate([b[k] for b in bought_parts]) for k in bought_parts[0]}
        _schedule_after_purchase(w, day, bought, rng, pending)

    rows = _concat(parts)
    n = len(rows["sec"])
    # no two genuine rows share (user, item, event_type, second): nudge the rare collisions
    for _ in range(20):
        order = np.lexsort((rows["sec"], rows["etype"], rows["item"], rows["user"]))
        key = [rows[k][order] for k in ("user", "item", "etype", "sec")]
        same = np.ones(max(n - 1, 0), dtype=bool)
        for k in key:
            same &= k[1:] == k[:-1]
        if not same.any():
            break
        dup = order[1:][same]
        rows["sec"][dup] = np.where(rows["sec"][dup] < 86399, rows["sec"][dup] + 1, 0)
    rows = _take(rows, np.argsort(rows["sec"], kind="stable"))
    rows["sec"] += _epoch(date)
    rows["unix"] = rng.random(n) < UNIX_TS_SHARE
    return rows, n_sessions


# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------


@dataclass
class _NoisePlan:
    counts: dict[str, np.ndarray]  # kind -> rows per day
    bursts: np.ndarray  # bot bursts: (day, bot, start_sec, minutes, per_minute)
    dup_groups: np.ndarray  # fake duplicate-text groups per day
    fake_bursts: np.ndarray  # fake 5-star bursts per day


def _plan_noise(w: _World) -> _NoisePlan:
    cfg = w.cfg
    rng = _rng(cfg.seed, 3)
    D = cfg.days
    day_w = np.ones(D)
    if D > 1:
        day_w[-1] = 0.3  # go easy on the last (newest) day
    day_w /= day_w.sum()
    total = cfg.events_per_day * D
    counts = {}
    for kind, rate in _RATE_KINDS.items():
        counts[kind] = rng.multinomial(max(3, round(rate * total)), day_w)
        if kind in _CSV_ONLY_KINDS and cfg.file_format != "csv":
            counts[kind][:] = 0  # drawn anyway: the rest of the plan is format-independent
    # the big structured kinds (bots, fake reviews) stay off the last day
    big_w = np.ones(D)
    if D > 1:
        big_w[-1] = 0.0
    big_w /= big_w.sum()
    n_bursts = w.n_bot_bursts
    # one burst a day while there are enough days, so that a small day never holds several
    b_day = rng.choice(D, n_bursts, p=big_w, replace=n_bursts > np.count_nonzero(big_w))
    b_bot = np.concatenate(
        [np.arange(w.n_bots), rng.integers(0, w.n_bots, max(0, n_bursts - w.n_bots))]
    )[:n_bursts]
    minutes, per_min = _bot_burst_shape(
        rng.integers(2, 6, n_bursts), rng.integers(120, 361, n_bursts), cfg.events_per_day
    )
    start = rng.integers(0, 86400 - minutes * 60)
    bursts = np.stack([b_day, b_bot, start, minutes, per_min], axis=1)
    groups = rng.multinomial(max(1, round(total / 40000)), big_w)
    fake_bursts = rng.multinomial(max(1, round(total / 40000)), big_w)
    return _NoisePlan(counts, bursts, groups, fake_bursts)


def _bot_burst_shape(
    minutes: np.ndarray, per_min: np.ndarray, events_per_day: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scale bot bursts to the size of a day: a burst holds at most ``BOT_BURST_DAY_SHARE`` of a
    day's events (first the rate comes down, to no less than ``BOT_MIN_PER_MINUTE``, then the
    duration, to no less than 2 minutes), so planted bots stay a small share of a small day;
    at a large day nothing changes. 2 minutes at 40 a minute always fill one whole clock
    minute above the cleaning rule's 30 events a minute."""
    cap = max(2 * BOT_MIN_PER_MINUTE, int(BOT_BURST_DAY_SHARE * events_per_day))
    per_min = np.where(
        minutes * per_min > cap, np.maximum(BOT_MIN_PER_MINUTE, cap // minutes), per_min
    )
    minutes = np.where(minutes * per_min > cap, np.maximum(2, cap // per_min), minutes)
    return minutes, per_min


def _noise_day(w: _World, plan: _NoisePlan, day: int, G: dict, next_sess: int, rng):
    """Planted noisy rows for one day, each with its kind code and its sort position."""
    date = w.start + dt.timedelta(days=day)
    day0, day_end = _epoch(date), _epoch(date) + 86399
    n = len(G["sec"])
    parts, kinds, pos = [], [], []

    def add(rows, kind, position):
        parts.append(rows)
        kinds.append(np.full(len(rows["sec"]), _KIND_CODE[kind], dtype=np.int8))
        pos.append(np.asarray(position, dtype=np.int64))

    def jitter(rows):
        rows["sec"] = np.minimum(rows["sec"] + rng.integers(1, 31, len(rows["sec"])), day_end)
        return rows

    for kind in _RATE_KINDS:
        k = int(plan.counts[kind][day])
        if k == 0 or n == 0:
            continue
        if kind == "exact_duplicate":
            src = rng.choice(n, min(k, n), replace=False)
            rows = _take(G, src)
            add(rows, kind, rows["sec"])
            continue
        if kind in ("negative_price", "invalid_rating"):
            want = _PURCHASE if kind == "negative_price" else _REVIEW
            pool = np.flatnonzero(G["etype"] == want)
            src = rng.choice(pool if len(pool) else np.arange(n), k)
        else:
            src = rng.choice(n, k)
        rows = _take(G, src)
        orig = rows["sec"].copy()
        if kind == "missing_user_id":
            rows["user"][:] = -1
            jitter(rows)
        elif kind == "missing_item_id":
            rows["item"][:] = -1
            jitter(rows)
        elif kind == "unknown_item":
            rows["item"] = len(w.items) + rng.integers(0, len(w.unknown_ids), k)
            jitter(rows)
        elif kind == "invalid_event_type":
            rows["etype"] = rng.integers(_N_VALID_ETYPES, len(_ETYPES), k).astype(np.int8)
            jitter(rows)
        elif kind == "negative_price":
            fix = rows["etype"] != _PURCHASE
            rows["qty"] = np.where(fix, 1, rows["qty"])
            rows["price"] = np.where(fix, w.items.price[np.maximum(rows["item"], 0)], rows["price"])
            rows["etype"][:] = _PURCHASE
            rows["rating"][fix] = -1
            rows["text"][fix] = None
            rows["price"] = -np.abs(rows["price"])
            jitter(rows)
        elif kind == "invalid_rating":
            fix = rows["etype"] != _REVIEW
            if fix.any():
                rows["etype"][fix] = _REVIEW
                rows["qty"][fix] = -1
                rows["price"][fix] = np.nan
                rows["text"][fix] = _review_texts(
                    w, rows["item"][fix], np.full(int(fix.sum()), 3), rng
                )
            rows["rating"] = np.where(rng.random(k) < 0.5, 0, 9).astype(np.int8)
            jitter(rows)
        elif kind == "future_timestamp":
            years = rng.integers(10, 31, k)
            rows["sec"] = rows["sec"] + years * 31_557_600 + rng.integers(0, 86400, k)
        elif kind == "timestamp_outside_partition":
            rows["sec"] = rows["sec"] - rng.integers(1, 8, k) * 86400 + rng.integers(-3600, 3600, k)
            rows["sec"] = np.minimum(rows["sec"], day0 - 1)
        elif kind == "malformed_row":
            rows["malformed"] = rng.integers(1, 3, k).astype(np.int8)
            jitter(rows)
        elif kind == "invalid_timestamp":
            rows["badts"] = rng.integers(0, len(_BAD_TS), k).astype(np.int8)
        position = (
            rows["sec"] if kind not in ("future_timestamp", "timestamp_outside_partition") else orig
        )
        add(rows, kind, np.clip(position, day0, day_end))

    launched = np.flatnonzero(w.items.launch_day <= day)
    # bots: crawl the launched catalog in id order at a fixed rate for a few minutes
    launched_by_id = w.item_by_id[w.items.launch_day[w.item_by_id] <= day]
    for b_day, bot, start, minutes, per_min in plan.bursts:
        if b_day != day:
            continue
        m = int(minutes * per_min)
        sec = day0 + start + (np.arange(m) * 60) // per_min
        first = rng.integers(len(launched_by_id))
        item = launched_by_id[(first + np.arange(m)) % len(launched_by_id)]
        rows = _rows(m, user=w.n_users + bot, item=item, etype=_VIEW, sec=sec, sess=next_sess)
        rows["unix"] = rng.random(m) < UNIX_TS_SHARE
        next_sess += 1
        add(rows, "bot", sec)

    fake0 = w.n_users + w.n_bots
    # fake reviews: one identical text from many accounts, same item, same day
    for _ in range(int(plan.dup_groups[day])):
        k = int(min(rng.integers(5, 21), w.n_fake))
        item = int(rng.choice(launched))
        pre, post = _FAKE_TEMPLATES[rng.integers(len(_FAKE_TEMPLATES))]
        text = pre + _BRANDS[w.items.brand[item]] + " " + w.items.noun[item] + post
        sec = day0 + np.sort(rng.integers(0, 86400, k))
        rows = _rows(
            k,
            user=fake0 + rng.choice(w.n_fake, k, replace=False),
            item=item,
            etype=_REVIEW,
            sec=sec,
            rating=5,
            text=np.full(k, text, dtype=object),
            sess=next_sess + np.arange(k),
        )
        rows["unix"] = rng.random(k) < UNIX_TS_SHARE
        next_sess += k
        add(rows, "fake_review_duplicate_text", sec)
    # fake reviews: a burst of distinct 5-star texts within one hour
    for _ in range(int(plan.fake_bursts[day])):
        k = int(min(rng.integers(6, 13), w.n_fake))
        item = int(rng.choice(launched))
        start = rng.integers(0, 86400 - 3600)
        sec = day0 + start + np.sort(rng.integers(0, 3000, k))
        combo = rng.choice(_OPENERS.shape[1] * _VERDICTS.shape[1], k, replace=False)
        text = _review_texts(
            w,
            np.full(k, item),
            np.full(k, 5),
            rng,
            opener_k=combo // _VERDICTS.shape[1],
            verdict_k=combo % _VERDICTS.shape[1],
        )
        rows = _rows(
            k,
            user=fake0 + rng.choice(w.n_fake, k, replace=False),
            item=item,
            etype=_REVIEW,
            sec=sec,
            rating=5,
            text=text,
            sess=next_sess + np.arange(k),
        )
        rows["unix"] = rng.random(k) < UNIX_TS_SHARE
        next_sess += k
        add(rows, "fake_review_burst", sec)

    if not parts:
        return _rows(0), np.zeros(0, np.int8), np.zeros(0, np.int64)
    return _concat(parts), np.concatenate(kinds), np.concatenate(pos)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _masked(values: np.ndarray, null: np.ndarray) -> pa.Array:
    return pa.array(values, mask=null)


def _event_columns(w: _World, rows: dict, date: dt.date) -> dict[str, pa.Array]:
    """Typed columns (strings for ids/ts) in EVENT_FILE_COLUMNS order."""
    user = w.account_table.take(_masked(rows["user"], rows["user"] < 0))
    item = w.item_id_table.take(_masked(rows["item"], rows["item"] < 0))
    etype = pa.array(_ETYPES, pa.string()).take(pa.array(rows["etype"].astype(np.int32)))
    sec = pa.array(rows["sec"], pa.int64())
    iso = pc.binary_join_element_wise(
        pc.replace_substring(
            sec.cast(pa.timestamp("s")).cast(pa.string()), " ", "T", max_replacements=1
        ),
        "Z",
        "",
    )
    ts = pc.if_else(pa.array(rows["unix"]), sec.cast(pa.string()), iso)
    bad = rows["badts"] >= 0
    if bad.any():
        ts = pc.replace_with_mask(
            ts, pa.array(bad), pa.array(np.array(_BAD_TS, dtype=object)[rows["badts"][bad]])
        )
    qty = _masked(rows["qty"], rows["qty"] < 0).cast(pa.int32())
    price = pa.array(rows["price"], pa.float64(), from_pandas=True)
    rating = _masked(rows["rating"].astype(np.int32), rows["rating"] < 0)
    text = pa.array(rows["text"], pa.string())
    prefix = f"s{date:%Y%m%d}-"
    sess = pc.binary_join_element_wise(
        prefix,
        pc.utf8_lpad(
            _masked(rows["sess"], rows["sess"] < 0).cast(pa.string()), width=5, padding="0"
        ),
        "",
    )
    return dict(
        zip(
            EVENT_FILE_COLUMNS, (user, item, etype, ts, qty, price, rating, text, sess), strict=True
        )
    )


def _csv_bytes(cols: dict[str, pa.Array], malformed: np.ndarray) -> bytes:
    price = cols["price"].to_numpy(zero_copy_only=False)
    cents = np.rint(np.nan_to_num(price) * 100).astype(np.int64)
    mag = np.abs(cents)
    price_s = pc.binary_join_element_wise(
        pa.array(np.where(cents < 0, "-", "").astype(object)),
        pa.array(mag // 100).cast(pa.string()),
        ".",
        pc.utf8_lpad(pa.array(mag % 100).cast(pa.string()), width=2, padding="0"),
        "",
    )
    price_s = pc.if_else(pa.array(np.isnan(price)), pa.nulls(len(price), pa.string()), price_s)
    text = cols["review_text"]
    text_s = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
    fields = [
        cols["user_id"],
        cols["item_id"],
        cols["event_type"],
        cols["ts"],
        cols["quantity"].cast(pa.string()),
        price_s,
        cols["rating"].cast(pa.string()),
        text_s,
        cols["session_id"],
    ]
    lines = pc.binary_join_element_wise(*fields, ",", null_handling="replace", null_replacement="")
    bad = malformed > 0
    if bad.any():
        idx = np.flatnonzero(bad)
        sub = [pc.take(f, pa.array(idx)) for f in fields]
        truncated = pc.binary_join_element_wise(
            *sub[:4], ",", null_handling="replace", null_replacement=""
        )
        extra = pc.binary_join_element_wise(
            pc.take(lines, pa.array(idx)),
            "EXTRA,1",
            ",",
            null_handling="replace",
            null_replacement="",
        )
        alt = pc.if_else(pa.array(malformed[idx] == 1), truncated, extra)
        lines = pc.replace_with_mask(lines, pa.array(bad), alt)
    header = ",".join(EVENT_FILE_COLUMNS) + "\n"
    if len(lines) == 0:
        return header.encode()
    body = pc.binary_join_element_wise(lines, "", "\n").cast(pa.large_string())
    if isinstance(body, pa.ChunkedArray):
        body = body.combine_chunks()
    offsets = np.frombuffer(body.buffers()[1], dtype=np.int64)[
        body.offset : body.offset + len(body) + 1
    ]
    data = body.buffers()[2]
    return header.encode() + data.to_pybytes()[offsets[0] : offsets[-1]]


_EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("ts", pa.string()),
        ("quantity", pa.int32()),
        ("price", pa.float64()),
        ("rating", pa.int32()),
        ("review_text", pa.string()),
        ("session_id", pa.string()),
    ]
)


def _write_events(path: Path, w: _World, rows: dict, date: dt.date, fmt: str) -> None:
    cols = _event_columns(w, rows, date)
    if fmt == "csv":
        path.write_bytes(_csv_bytes(cols, rows["malformed"]))
    else:
        table = pa.Table.from_arrays(list(cols.values()), schema=_EVENT_SCHEMA)
        pq.write_table(table, path)


def _ts_array(w: _World, launch_day: np.ndarray | None, n: int) -> pa.Array:
    if launch_day is None:
        return pa.nulls(n, pa.timestamp("us", tz="UTC"))
    secs = _epoch(w.start) + launch_day.astype(np.int64) * 86400
    return pa.array(secs * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _item_table(w: _World, items: _Items, candidates: bool) -> pa.Table:
    order = np.argsort(items.ids.astype(str), kind="stable")
    it = dataclasses.replace(
        items,
        **{
            f.name: getattr(items, f.name)[order]
            for f in dataclasses.fields(items)
            if getattr(items, f.name) is not None
        },
    )
    cols = {
        "item_id": pa.array(it.ids, pa.string()),
        "title": pa.array(it.titles, pa.string()),
        "category": pa.array(np.array(_CAT_NAMES, dtype=object)[it.cat], pa.string()),
        "brand": pa.array(_BRANDS_ARR[it.brand], pa.string()),
        "price": pa.array(it.price, pa.float64()),
        "launched_at": _ts_array(w, None if candidates else it.launch_day, len(it)),
    }
    if candidates:
        cols["unit_cost"] = pa.array(it.unit_cost, pa.float64())
        cols["stock"] = pa.array(it.stock, pa.int64())
    return pa.table(cols)


# --------------------------------------------------------------------------------------------
# ground truth
# --------------------------------------------------------------------------------------------


def _expected_purchases(
    w: _World,
    users: np.ndarray,
    new: _Items,
    launch_day: int,
    horizon: int,
    catalog_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """P(user buys new item j within ``horizon`` days of ``launch_day``) and E[#purchases].

    Each new item is added alone to the catalog (the items in ``catalog_mask``, default all,
    launched by then). It follows the generator exactly: Poisson sessions per day, a session
    category from the user's preference, 1 + Poisson(MEAN_VIEWS - 1) views of which RHO are
    restricted to the session category (falling back to the whole shop when it has nothing
    launched), a softmax over utility + popularity + new-arrival boost, the view->cart->purchase
    funnel and follow-up views after purchases in the transition source category (the only
    approximation: follow-up purchases of j within a session are treated as Poisson).

    Session categories only matter through four groups (the item's own category, its
    follow-up source category, other categories, other categories with nothing launched), so
    the work per day is a few users x new-items arrays.
    """
    it = w.items
    C = w.n_cat
    mask = np.ones(len(it), dtype=bool) if catalog_mask is None else catalog_mask
    onehot = np.zeros((len(it), C))
    onehot[np.arange(len(it)), it.cat] = 1.0
    bias = w.bias[users][:, None]
    Ucat = w.utility(users, it)
    E = np.exp(Ucat + it.pop)  # A x I (boost and launch mask applied per day)
    EX = E * w.p_purchase_per_view(Ucat, bias)
    del Ucat
    Un = w.utility(users, new)
    wn0 = np.exp(Un + new.pop)  # A x J
    x = w.p_purchase_per_view(Un, bias)
    q = w.pref[users]  # A x C
    cj = new.cat
    src_of = np.full(C, -1)
    src_of[w.transition[w.transition >= 0]] = np.flatnonzero(w.transition >= 0)
    sj = src_of[cj]
    has_src = (sj >= 0).astype(float)
    sj0 = np.maximum(sj, 0)
    q_own = q[:, cj]
    q_src = q[:, sj0] * has_src
    follow_k = FOLLOW_P * (1 + FOLLOW_EXTRA) * has_src  # follow-up views per source purchase

    def p_buy(h, f):  # P(at least one purchase of j in a session), precise for tiny h
        return -np.expm1(np.log1p(-h) - (MEAN_VIEWS - 1) * h - f)

    # Per-category sums of catalog weights for every day of the horizon. The boost factor of
    # an item launched by day d0 is exp(b_i r^k) with b_i its boost on d0 and r = e^(-1/TAU):
    # expanded as sum_n b_i^n r^(nk) / n! (truncated below 1e-13), one wide matmul serves all
    # days. Items launching inside the horizon (validation only) are added exactly per day.
    d0 = launch_day
    live0 = mask & (it.launch_day <= d0)
    late = np.flatnonzero(mask & (it.launch_day > d0) & (it.launch_day < d0 + horizon))
    b = np.where(live0, w.boost(it.launch_day, d0), 0.0)
    n_terms = 1
    while n_terms < 60 and b.max() ** n_terms / math.factorial(n_terms) > 1e-13:
        n_terms += 1
    coef = np.stack([b**n / math.factorial(n) for n in range(n_terms)], axis=1) * live0[:, None]
    P = (onehot[:, None, :] * coef[:, :, None]).reshape(len(it), n_terms * C)
    series = (np.vstack([E, EX]) @ P).reshape(2, len(users), n_terms, C)
    r = math.exp(-1.0 / BOOST_TAU)

    hazard = np.zeros(wn0.shape)
    mean = np.zeros(wn0.shape)
    for k in range(horizon):
        d = launch_day + k
        date = w.start + dt.timedelta(days=d)
        decay = r ** (np.arange(n_terms) * k)
        Wc = np.tensordot(series[0], decay, axes=([1], [0]))  # A x C
        WXc = np.tensordot(series[1], decay, axes=([1], [0]))  # sum of weight x buy-per-view
        if len(late):
            f = np.where(it.launch_day[late] <= d, np.exp(w.boost(it.launch_day[late], d)), 0.0)
            M = onehot[late] * f[:, None]
            Wc = Wc + E[:, late] @ M
            WXc = WXc + EX[:, late] @ M
        launched = mask & (it.launch_day <= d)
        Wt = Wc.sum(axis=1, keepdims=True)  # A x 1
        empty = onehot[launched].sum(axis=0) == 0  # C: nothing launched in the category
        e_own, e_src = empty[cj], empty[sj0]
        wn = wn0 * np.exp(NEW_BOOST * np.exp(-k / BOOST_TAU))  # A x J
        lam = (w.lam_base[users] * w.dow_w[w.seg[users], date.weekday()])[:, None]
        p_same = wn / (Wc[:, cj] + wn)  # a restricted view in its own category picks j
        p_glob = wn / (Wt + wn)  # a whole-shop view picks j
        # expected purchases in the source category s per view: restricted and whole-shop
        Ws = Wc[:, sj0]
        pr_s = np.where(e_src, 0.0, WXc[:, sj0] / np.where(Ws > 0, Ws, 1.0))
        pg_s = WXc[:, sj0] / (Wt + wn)
        per_follow = follow_k * p_same * x * MEAN_VIEWS  # j-purchases per (src purchase / view)
        # group 1: session in j's own category
        h1 = (RHO * p_same + (1 - RHO) * p_glob) * x
        f1 = per_follow * (1 - RHO) * pg_s
        # group 2: session in the follow-up source category
        fac_s = np.where(e_src, 1.0, 1 - RHO)
        h2 = fac_s * p_glob * x
        f2 = per_follow * (fac_s * pg_s + RHO * pr_s)
        # group 3: any other category (restricted views stay there)
        h3, f3 = (1 - RHO) * p_glob * x, per_follow * (1 - RHO) * pg_s
        q_ne = q[:, ~empty].sum(axis=1, keepdims=True)
        w3 = np.maximum(q_ne - q_own * ~e_own - q_src * ~e_src, 0.0)
        hz = q_own * p_buy(h1, f1) + q_src * p_buy(h2, f2) + w3 * p_buy(h3, f3)
        mn = q_own * (MEAN_VIEWS * h1 + f1) + q_src * (MEAN_VIEWS * h2 + f2)
        mn += w3 * (MEAN_VIEWS * h3 + f3)
        if empty.any():  # group 4: other categories with nothing launched (whole-shop views)
            h4, f4 = p_glob * x, per_follow * pg_s
            q_e = q[:, empty].sum(axis=1, keepdims=True)
            w4 = np.maximum(q_e - q_own * e_own - q_src * e_src, 0.0)
            hz += w4 * p_buy(h4, f4)
            mn += w4 * (MEAN_VIEWS * h4 + f4)
        hazard += lam * hz
        mean += lam * mn
    return -np.expm1(-hazard), mean


_APPEAL_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("appeal", pa.float64()),
        ("expected_units", pa.float64()),
    ]
)


def _write_candidate_truth(w: _World, gt_dir: Path) -> None:
    """candidate_appeal.parquet (streamed per user chunk) and candidate_truth.parquet."""
    c = w.cands
    J = len(c)
    buyers = np.zeros(J)
    tot_units = np.zeros(J)
    units_per_buy = (1 + w.cat_qty[c.cat])[None, :]
    ch = w.chunk_size(max(len(w.items), J * w.n_cat))
    with pq.ParquetWriter(gt_dir / "candidate_appeal.parquet", _APPEAL_SCHEMA) as writer:
        for lo in range(0, w.n_users, ch):
            users = np.arange(lo, min(lo + ch, w.n_users))
            appeal, buys = _expected_purchases(w, users, c, w.days, HORIZON_DAYS)
            units = buys * units_per_buy
            buyers += appeal.sum(axis=0)
            tot_units += units.sum(axis=0)
            chunk = pa.table(
                {
                    "user_id": pa.array(np.repeat(w.account_ids[users], J), pa.string()),
                    "item_id": pa.array(np.tile(c.ids, len(users)), pa.string()),
                    "appeal": pa.array(appeal.ravel(), pa.float64()),
                    "expected_units": pa.array(units.ravel(), pa.float64()),
                },
                schema=_APPEAL_SCHEMA,
            )
            writer.write_table(chunk)
    truth = pa.table(
        {
            "item_id": pa.array(c.ids, pa.string()),
            "category": pa.array(np.array(_CAT_NAMES, dtype=object)[c.cat], pa.string()),
            "brand": pa.array(_BRANDS_ARR[c.brand], pa.string()),
            "price": pa.array(c.price, pa.float64()),
            "true_expected_buyers": pa.array(buyers, pa.float64()),
            "true_expected_units": pa.array(tot_units, pa.float64()),
            "true_expected_revenue": pa.array(tot_units * c.price * MEAN_DISCOUNT, pa.float64()),
        }
    )
    pq.write_table(truth, gt_dir / "candidate_truth.parquet")


def _users_table(w: _World) -> pa.Table:
    U, nb, nf = w.n_users, w.n_bots, w.n_fake
    total = U + nb + nf
    kind = np.array(["genuine"] * U + ["bot"] * nb + ["fake_reviewer"] * nf, dtype=object)

    def pad(values, fill):
        out = np.full(total, fill, dtype=np.asarray(values).dtype if fill is not None else object)
        out[:U] = values
        return out

    cols = {
        "user_id": pa.array(w.account_ids, pa.string()),
        "user_type": pa.array(kind, pa.string()),
        "is_bot": pa.array(kind == "bot"),
        "segment": pa.array(pad(np.array(_SEGMENTS, dtype=object)[w.seg], None), pa.string()),
        "activity": pa.array(pad(w.activity, np.nan), pa.float64(), from_pandas=True),
        "expected_sessions_per_day": pa.array(
            pad(w.lam_base, np.nan), pa.float64(), from_pandas=True
        ),
        "price_band": pa.array(pad(w.band, np.nan), pa.float64(), from_pandas=True),
        "price_sensitivity": pa.array(pad(w.sens, np.nan), pa.float64(), from_pandas=True),
        "buy_bias": pa.array(pad(w.bias, np.nan), pa.float64(), from_pandas=True),
        "favourite_category": pa.array(
            pad(np.array(_CAT_NAMES, dtype=object)[w.pref.argmax(axis=1)], None), pa.string()
        ),
        "favourite_brand": pa.array(pad(_BRANDS_ARR[w.aff.argmax(axis=1)], None), pa.string()),
    }
    for ci, name in enumerate(_CAT_NAMES):
        cols[f"pref_{name}"] = pa.array(pad(w.pref[:, ci], np.nan), pa.float64(), from_pandas=True)
    return pa.table(cols)


def _items_truth_table(w: _World) -> pa.Table:
    parts = []
    for items, is_cand in ((w.items, False), (w.cands, True)):
        parts.append(
            pa.table(
                {
                    "item_id": pa.array(items.ids, pa.string()),
                    "is_candidate": pa.array(np.full(len(items), is_cand)),
                    "category": pa.array(
                        np.array(_CAT_NAMES, dtype=object)[items.cat], pa.string()
                    ),
                    "brand": pa.array(_BRANDS_ARR[items.brand], pa.string()),
                    "price": pa.array(items.price, pa.float64()),
                    "price_z": pa.array(items.z, pa.float64()),
                    "quality": pa.array(items.quality, pa.float64()),
                    "popularity": pa.array(items.pop, pa.float64()),
                    "launch_day": pa.array(items.launch_day.astype(np.int64), pa.int64()),
                }
            )
        )
    return pa.concat_tables(parts)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------

_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.(csv|parquet)$")


def generate_shop(
    out_dir: str | Path, config: SimulatorConfig = SimulatorConfig()
) -> SimulationSummary:
    """Simulate the shop and write a raw data directory (plus ``ground_truth/``) to out_dir.

    Existing ``events/YYYY-MM-DD.*`` files in out_dir are removed first so that no stale day
    of an earlier run survives.
    """
    import time

    t0 = time.perf_counter()
    _validate(config)
    end = _resolve_end(config)
    cfg = dataclasses.replace(config, end_date=end)
    start = end - dt.timedelta(days=cfg.days - 1)
    out = Path(out_dir)
    events_dir = out / EVENTS_DIRNAME
    gt_dir = out / GROUND_TRUTH_DIRNAME
    events_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    for p in events_dir.iterdir():
        if p.is_file() and _DAY_FILE.match(p.name):
            p.unlink()

    w = _World(cfg, start)
    pq.write_table(_item_table(w, w.items, candidates=False), out / f"{PRODUCTS_STEM}.parquet")
    pq.write_table(_item_table(w, w.cands, candidates=True), out / f"{CANDIDATES_STEM}.parquet")

    plan = _plan_noise(w) if cfg.noise else None
    pending: dict[int, list] = {}
    noise_kind, noise_file, noise_row = [], [], []
    events = genuine = 0
    suffix = ".csv" if cfg.file_format == "csv" else ".parquet"
    for day in range(cfg.days):
        date = start + dt.timedelta(days=day)
        G, n_sess = _genuine_day(w, day, _rng(cfg.seed, 1, date.toordinal()), pending)
        n = len(G["sec"])
        if plan is not None:
            N, kinds, pos = _noise_day(w, plan, day, G, n_sess, _rng(cfg.seed, 2, date.toordinal()))
            allrows = _concat([G, N]) if len(kinds) else G
            key = np.concatenate([G["sec"], pos])
            order = np.argsort(key, kind="stable")
            rows = _take(allrows, order)
            where = np.empty(len(order), dtype=np.int64)
            where[order] = np.arange(len(order))
            rel = f"{EVENTS_DIRNAME}/{date.isoformat()}{suffix}"
            noise_kind.append(kinds)
            noise_row.append(where[n:])
            noise_file.append(np.full(len(kinds), rel, dtype=object))
        else:
            rows = G
        _write_events(events_dir / f"{date.isoformat()}{suffix}", w, rows, date, cfg.file_format)
        events += len(rows["sec"])
        genuine += n

    # ground truth
    if cfg.candidate_truth:
        _write_candidate_truth(w, gt_dir)
    else:
        for name in ("candidate_appeal.parquet", "candidate_truth.parquet"):
            (gt_dir / name).unlink(missing_ok=True)
    kinds = np.concatenate(noise_kind) if noise_kind else np.zeros(0, np.int8)
    files = np.concatenate(noise_file) if noise_file else np.zeros(0, object)
    rownos = np.concatenate(noise_row) if noise_row else np.zeros(0, np.int64)
    order = np.lexsort((rownos, files.astype(str))) if len(kinds) else np.zeros(0, np.int64)
    planted = pa.table(
        {
            "kind": pa.array(np.array(NOISE_KINDS, dtype=object)[kinds[order]], pa.string()),
            "file": pa.array(files[order], pa.string()),
            "row": pa.array(rownos[order], pa.int64()),
        }
    )
    pq.write_table(planted, gt_dir / "planted_noise.parquet")
    pq.write_table(_users_table(w), gt_dir / "users.parquet")
    pq.write_table(_items_truth_table(w), gt_dir / "items.parquet")

    generated_with = dataclasses.asdict(cfg)
    generated_with["end_date"] = end.isoformat()
    if cfg.candidate_truth:  # the default: keep the manifest as it always was
        generated_with.pop("candidate_truth")
    manifest = {
        "source": "simulator",
        "start_date": start.isoformat(),
        "end_date": None,
        "timezone": "UTC",
        "seed": cfg.seed,
        "generated_with": generated_with,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    counts = np.bincount(kinds.astype(np.int64), minlength=len(NOISE_KINDS))
    return SimulationSummary(
        out_dir=out,
        start_date=start,
        end_date=end,
        events=events,
        files=cfg.days,
        noise_counts={k: int(counts[i]) for i, k in enumerate(NOISE_KINDS)},
        genuine_events=genuine,
        seconds=time.perf_counter() - t0,
    )
