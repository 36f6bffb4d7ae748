"""The generator's fixed parameters and the per-run plan derived from config and row counts.

Everything here is small driver-side data: segment and category definitions, name lists, and
the arithmetic that lays customers and products out in contiguous index blocks. The row data
itself is produced by Spark from these parameters (see ``entities.py``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def words(text: str) -> tuple[str, ...]:
    """A tuple of the whitespace-separated words of ``text`` (compact constant lists)."""
    return tuple(text.split())


# --- customer segments ---------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One latent customer segment: how big it is, when its members sign up and how they buy.

    Signup windows and lifetimes are fractions of the order history length (``days``) so the
    shape holds for any configured history; negative means before the first order day.
    """

    name: str
    size_share: float  # share of all customers
    order_rate: float  # relative orders per active customer and day
    signup_window: tuple[float, float]  # [from, to) as fractions of `days`
    lifetime: float | None  # active for this fraction of `days` after signup (None: forever)
    extra_quantity: float  # quantity = 1 + floor(Exp(mean extra_quantity)), at most 12
    discount_probability: float  # share of orders with a discount
    discount_range: tuple[float, float]  # discount drawn uniformly from this range
    category_weights: Mapping[str, float]  # preferred categories; the rest share what is left


SEGMENTS: tuple[Segment, ...] = (
    Segment(
        name="champions",
        size_share=0.08,
        order_rate=5.0,
        signup_window=(-1.0, 0.45),
        lifetime=None,
        extra_quantity=1.6,
        discount_probability=0.10,
        discount_range=(0.05, 0.10),
        category_weights={"electronics": 0.80, "jewelry": 0.12},
    ),
    Segment(
        name="loyal",
        size_share=0.20,
        order_rate=2.0,
        signup_window=(-1.0, 0.70),
        lifetime=None,
        extra_quantity=0.6,
        discount_probability=0.55,
        discount_range=(0.05, 0.10),
        category_weights={"home_garden": 0.80, "automotive": 0.12},
    ),
    Segment(
        name="bargain_hunters",
        size_share=0.22,
        order_rate=2.0,
        signup_window=(-0.5, 1.0),
        lifetime=None,
        extra_quantity=1.8,
        discount_probability=0.95,
        discount_range=(0.20, 0.45),
        category_weights={"grocery": 0.80, "beauty": 0.12},
    ),
    Segment(
        name="occasional",
        size_share=0.35,
        order_rate=1.2,
        signup_window=(-0.5, 0.8),
        lifetime=0.6,
        extra_quantity=0.15,
        discount_probability=0.10,
        discount_range=(0.05, 0.05),
        category_weights={"books": 0.80, "toys": 0.12},
    ),
    Segment(
        name="new",
        size_share=0.15,
        order_rate=6.0,
        signup_window=(0.8, 1.0),
        lifetime=None,
        extra_quantity=0.4,
        discount_probability=0.70,
        discount_range=(0.10, 0.15),
        category_weights={"fashion": 0.80, "sports": 0.12},
    ),
)
CHAMPIONS = 0  # index of the segment that holds the heavy customers

# Favourite products: every customer has FAVOURITES_PER_CATEGORY favourites in each of their
# segment's preferred categories (the ones named in ``category_weights``), each a Zipf draw of
# that category keyed by the customer's hash. A regular order in such a category re-buys one
# of them with probability FAVOURITE_SHARE (docs/generator.md). Zipf draws keep every
# product's expected share of orders exactly as without favourites.
FAVOURITES_PER_CATEGORY = 2
FAVOURITE_SHARE = 0.5

# --- product categories --------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    """A product category: its share of the catalogue, price level and naming vocabulary."""

    name: str
    product_share: float
    median_price: float
    price_sigma: float
    bulky: bool  # bulky goods take longer to deliver
    nouns: tuple[str, ...]
    brands: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category(
        name="electronics",
        product_share=0.10,
        median_price=220.0,
        price_sigma=0.55,
        bulky=False,
        nouns=words("Headphones Speaker Monitor Camera Tablet Smartwatch"),
        brands=words("Voltix Nordtek Sonara Pixelon"),
    ),
    Category(
        name="fashion",
        product_share=0.16,
        median_price=45.0,
        price_sigma=0.45,
        bulky=False,
        nouns=words("Jacket Sneakers Dress Jeans Scarf Backpack"),
        brands=words("Linea Urbano Threadly Kestrel"),
    ),
    Category(
        name="home_garden",
        product_share=0.12,
        median_price=60.0,
        price_sigma=0.50,
        bulky=True,
        nouns=("Lamp", "Rug", "Planter", "Cookware Set", "Chair", "Shelf"),
        brands=("Hearthwood", "Greenly", "Casa Nova", "Oakridge"),
    ),
    Category(
        name="beauty",
        product_share=0.10,
        median_price=25.0,
        price_sigma=0.40,
        bulky=False,
        nouns=("Serum", "Lipstick", "Shampoo", "Face Cream", "Perfume", "Brush Set"),
        brands=words("Lumiere Petalia Aurea Velvetine"),
    ),
    Category(
        name="sports",
        product_share=0.09,
        median_price=70.0,
        price_sigma=0.50,
        bulky=False,
        nouns=("Yoga Mat", "Football", "Tennis Racket", "Dumbbells", "Bike Helmet", "Tent"),
        brands=words("Stride Peakform Altus Kinetica"),
    ),
    Category(
        name="toys",
        product_share=0.09,
        median_price=30.0,
        price_sigma=0.45,
        bulky=False,
        nouns=("Puzzle", "Robot Kit", "Doll", "Board Game", "Building Blocks", "Kite"),
        brands=("Playnest", "Tinkerly", "Jumbo Joy", "Brightbox"),
    ),
    Category(
        name="books",
        product_share=0.14,
        median_price=15.0,
        price_sigma=0.35,
        bulky=False,
        nouns=words("Novel Cookbook Atlas Biography Comic Guide"),
        brands=words("Inkwell Pageturn Quillhouse Folio"),
    ),
    Category(
        name="grocery",
        product_share=0.10,
        median_price=8.0,
        price_sigma=0.40,
        bulky=False,
        nouns=("Coffee", "Olive Oil", "Tea", "Chocolate", "Pasta", "Honey"),
        brands=words("Harvesta Goodgrain Farmleaf Sunmeadow"),
    ),
    Category(
        name="jewelry",
        product_share=0.04,
        median_price=180.0,
        price_sigma=0.60,
        bulky=False,
        nouns=words("Necklace Ring Bracelet Earrings Watch Brooch"),
        brands=words("Aurelia Gemvale Lustra Orion"),
    ),
    Category(
        name="automotive",
        product_share=0.06,
        median_price=90.0,
        price_sigma=0.55,
        bulky=True,
        nouns=("Car Battery", "Dash Cam", "Tyre Inflator", "Seat Cover", "Tool Kit", "Wiper Set"),
        brands=words("Roadster Motiv Gearline Torqon"),
    ),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)

ADJECTIVES: tuple[str, ...] = words(
    """
    Classic Premium Compact Wireless Deluxe Eco Pro Smart Vintage Essential Ultra Lite
    """
)

# --- people and places (ASCII letters only, so generated emails are always valid) -----------

FIRST_NAMES: tuple[str, ...] = words(
    """
    James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara
    Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa
    Anthony Betty Mark Sandra Paul Ashley Steven Emily Andrew Donna Joshua Michelle Kevin
    Carol Brian Amanda Lucas Sofia Mateo Emma Noah Olivia Liam Mia Hiro Yuki Amir Leila
    Lars Ingrid Pierre Chloe
    """
)
LAST_NAMES: tuple[str, ...] = words(
    """
    Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
    Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson
    White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott
    Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell
    Carter Roberts Tanaka Schmidt Dubois Rossi Larsen Novak
    """
)
EMAIL_DOMAINS = words("example.com example.net example.org shopmail.com inbox.io post.net")


@dataclass(frozen=True)
class Location:
    city: str
    country: str
    zone: int  # shipping zone: 0 domestic, 1 near, 2 far


LOCATIONS: tuple[Location, ...] = (
    Location("New York", "USA", 0),
    Location("Los Angeles", "USA", 0),
    Location("Chicago", "USA", 0),
    Location("Houston", "USA", 0),
    Location("Phoenix", "USA", 0),
    Location("Seattle", "USA", 0),
    Location("Boston", "USA", 0),
    Location("Denver", "USA", 0),
    Location("Atlanta", "USA", 0),
    Location("Miami", "USA", 0),
    Location("Austin", "USA", 0),
    Location("Portland", "USA", 0),
    Location("Toronto", "Canada", 1),
    Location("Vancouver", "Canada", 1),
    Location("Montreal", "Canada", 1),
    Location("Mexico City", "Mexico", 1),
    Location("London", "United Kingdom", 2),
    Location("Manchester", "United Kingdom", 2),
    Location("Berlin", "Germany", 2),
    Location("Munich", "Germany", 2),
    Location("Paris", "France", 2),
    Location("Madrid", "Spain", 2),
    Location("Amsterdam", "Netherlands", 2),
    Location("Sydney", "Australia", 2),
)
ZONE_DELIVERY_HOURS: tuple[float, ...] = (40.0, 90.0, 160.0)  # median delivery time per zone

# --- orders --------------------------------------------------------------------------------

PAYMENT_METHODS = words("credit_card debit_card paypal apple_pay bank_transfer gift_card")
PAYMENT_WEIGHTS: tuple[float, ...] = (0.38, 0.22, 0.25, 0.09, 0.045, 0.015)
FRAUD_PAYMENT_WEIGHTS: tuple[float, ...] = (0.40, 0.04, 0.05, 0.03, 0.03, 0.45)
FRAUD_CATEGORY_WEIGHTS: Mapping[str, float] = {"electronics": 0.55, "jewelry": 0.35}

ORDER_STATUSES: tuple[str, ...] = ("processing", "shipped", "delivered", "returned", "cancelled")

FRAUD_BURST = 4  # fraud comes in bursts of up to this many consecutive orders
FRAUD_NEW_ACCOUNT_SHARE = 0.7  # share of fraud bursts placed by accounts opened days before
NEW_ACCOUNT_DAYS = 7
FRAUD_NIGHT_HOURS = range(0, 6)
FRAUD_NIGHT_SHARE = 0.5  # share of fraud orders placed at night (normal orders: ~3%)
CANCEL_RATE = 0.03
REORDER_LEAD_DAYS = 14  # stock should cover this many days of expected demand
STREAMING_SEED_DAYS = 7

DEFECT_KINDS: tuple[str, ...] = words(
    """
    null_value exact_duplicate near_duplicate bad_email bad_phone bad_quantity orphan_fk
    bad_date malformed_line
    """
)
BAD_DATE_PAST_YEAR = 1900  # out-of-range dates are planted in 1900..1909


# --- the per-run plan ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A contiguous run of indices ``[start, start + size)`` that shares one segment/category."""

    start: int
    size: int


@dataclass(frozen=True)
class Permutation:
    """``id = (index * a + b) mod n + 1``: a bijection of 0..n-1 onto 1..n that shuffles ids."""

    n: int
    a: int
    b: int


@dataclass(frozen=True)
class GenerationPlan:
    """Everything a run needs besides Spark: counts, dates, rates and the index layouts."""

    seed: int
    n_customers: int
    n_products: int
    n_orders: int
    start_date: dt.date
    days: int
    fraud_rate: float
    heavy_customers: int
    heavy_order_share: float
    defect_rates: Mapping[str, float]
    customer_blocks: tuple[Block, ...]
    product_blocks: tuple[Block, ...]
    customer_ids: Permutation
    product_ids: Permutation

    @property
    def start_epoch(self) -> int:
        """First order day, 00:00 UTC, in epoch seconds."""
        return int(dt.datetime.combine(self.start_date, dt.time(), dt.timezone.utc).timestamp())

    @property
    def end_epoch(self) -> int:
        """End of the order history (exclusive): nothing clean happens at or after it."""
        return self.start_epoch + self.days * 86400

    @property
    def end_date(self) -> dt.date:
        return self.start_date + dt.timedelta(days=self.days)

    def signup_days(self, segment: int) -> tuple[int, int]:
        """Signup window of a segment as (first day, length in days) relative to start_date."""
        low, high = SEGMENTS[segment].signup_window
        first = math.floor(low * self.days)
        return first, max(1, math.floor(high * self.days) - first)

    def lifetime_days(self, segment: int) -> int | None:
        lifetime = SEGMENTS[segment].lifetime
        return None if lifetime is None else max(NEW_ACCOUNT_DAYS, round(lifetime * self.days))

    def rows(self, entity: str) -> int:
        """Clean rows of an entity (before duplicates)."""
        return {
            "customers": self.n_customers,
            "products": self.n_products,
            "orders": self.n_orders,
        }[entity]

    def heavy_count(self) -> int:
        """Heavy customers are the first indices of the champions block."""
        return min(self.heavy_customers, self.customer_blocks[CHAMPIONS].size)


def allocate(total: int, shares: Sequence[float], minimum: int = 0) -> tuple[Block, ...]:
    """Split ``total`` indices into contiguous blocks proportional to ``shares``.

    Largest-remainder rounding keeps the sizes summing exactly to ``total``; ``minimum`` is
    granted first (when there are enough indices) so no block is empty at small counts.
    """
    weights = [s / sum(shares) for s in shares]
    floor_each = minimum if total >= minimum * len(shares) else 0
    rest = total - floor_each * len(shares)
    raw = [w * rest for w in weights]
    sizes = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (sizes[i] - raw[i], i))
    for i in by_remainder[: rest - sum(sizes)]:
        sizes[i] += 1
    blocks, start = [], 0
    for size in sizes:
        blocks.append(Block(start, size + floor_each))
        start += size + floor_each
    return tuple(blocks)


def permutation(n: int, seed: int, salt: int) -> Permutation:
    """A seed-dependent multiplier coprime with ``n`` in the middle of the range."""
    if n <= 2:
        return Permutation(n, 1, 0)
    mix = (seed * 0x9E3779B1 + salt * 0x85EBCA6B) & 0xFFFFFFFF
    a = n // 4 + mix % max(1, n // 2)
    while math.gcd(a, n) != 1:
        a += 1
    return Permutation(n, a, (mix >> 7) % n)


def check_rate(name: str, value: Any, upper: float = 1.0) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= upper:
        raise ValueError(f"generate.{name} should be a number in [0, {upper}], got {value!r}")
    return float(value)


def make_plan(
    counts: Mapping[str, int], seed: int, gen_config: Mapping[str, Any]
) -> GenerationPlan:
    """Validate the inputs and lay out the index blocks for one run."""
    minimum = {"customers": len(SEGMENTS), "products": len(CATEGORIES), "orders": 1}
    for entity, least in minimum.items():
        value = counts.get(entity)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(
                f"{entity}: row count should be an integer of at least {least}"
                f" (one per segment or category), got {value!r}"
            )
    days = int(gen_config["days"])
    if days < 2 * NEW_ACCOUNT_DAYS:
        raise ValueError(f"generate.days should be at least {2 * NEW_ACCOUNT_DAYS}, got {days}")
    try:
        start = dt.date.fromisoformat(str(gen_config["start_date"]))
    except ValueError as exc:
        raise ValueError(f"generate.start_date: {exc}") from exc
    rates = {}
    for kind, rate in dict(gen_config.get("defects", {})).items():
        if kind not in DEFECT_KINDS:
            raise ValueError(
                f"generate.defects: unknown defect '{kind}' (known: {', '.join(DEFECT_KINDS)})"
            )
        rates[kind] = check_rate(f"defects.{kind}", rate, 0.2)
    if sum(rates.values()) > 0.5:
        raise ValueError("generate.defects: the rates add up to more than 0.5")
    return GenerationPlan(
        seed=int(seed),
        n_customers=counts["customers"],
        n_products=counts["products"],
        n_orders=counts["orders"],
        start_date=start,
        days=days,
        fraud_rate=check_rate("fraud_rate", gen_config["fraud_rate"], 0.05),
        heavy_customers=max(0, int(gen_config["heavy_customers"])),
        heavy_order_share=check_rate(
            "heavy_customer_order_share", gen_config["heavy_customer_order_share"], 0.5
        ),
        defect_rates=rates,
        customer_blocks=allocate(counts["customers"], [s.size_share for s in SEGMENTS], 1),
        product_blocks=allocate(counts["products"], [c.product_share for c in CATEGORIES], 1),
        customer_ids=permutation(counts["customers"], seed, 1),
        product_ids=permutation(counts["products"], seed, 2),
    )


def preferred_categories(segment: Segment) -> tuple[int, ...]:
    """Indices into CATEGORIES of a segment's preferred categories, main category first."""
    ranked = sorted(segment.category_weights.items(), key=lambda item: -item[1])
    return tuple(CATEGORY_NAMES.index(name) for name, _ in ranked)


def category_weights(preferred: Mapping[str, float]) -> tuple[float, ...]:
    """Full weight vector over CATEGORIES: preferred ones as given, the rest share the remainder."""
    rest = 1.0 - sum(preferred.values())
    others = [c for c in CATEGORY_NAMES if c not in preferred]
    return tuple(preferred.get(c, rest / len(others)) for c in CATEGORY_NAMES)


def cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    """Normalised cumulative sums; the last is exactly 1.0 so a uniform in [0,1) always lands."""
    total = float(sum(weights))
    running, out = 0.0, []
    for w in weights:
        running += w
        out.append(running / total)
    out[-1] = 1.0
    return tuple(out)
