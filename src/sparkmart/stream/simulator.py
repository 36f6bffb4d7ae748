"""The order-event simulator: a deterministic stream of orders with planted anomalies.

Events are order rows (``schemas.ORDER_EVENT_SCHEMA``) for the catalog's customers and products,
serialised as one JSON object per line. Everything about event ``i`` — customer, product,
quantity, injections — is a function of the seed, the catalog and ``i`` alone: draws are made
with numpy per block of ``BLOCK_EVENTS`` sequence numbers from a generator seeded with
``(seed, block)``, so chunking (which depends on wall-clock timing in realtime mode) never
changes the content. Event ``i`` is due ``schedule.time_of(i)`` seconds after the start; in
``realtime`` mode it is emitted then (its ``event_time`` is that moment), in ``simulated`` mode
as fast as possible.

Every injected anomaly is logged to ``<streaming>/anomalies/`` so alerts can be scored.
See docs/streaming.md, section "Simulator".
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparkmart.config import STREAMING_CONFIG, ConfigError, Settings
from sparkmart.generate.params import PAYMENT_METHODS, PAYMENT_WEIGHTS
from sparkmart.spark_utils import get_logger
from sparkmart.stream.catalog import CATALOG_SOURCES, Catalog, load_catalog

# --- the line format (the streaming query parses with these) ---------------------------------

# Timestamps are written as ISO-8601 UTC with milliseconds and "Z": 2026-11-25T12:00:00.123Z.
EVENT_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
# Add a string column of this name to ORDER_EVENT_SCHEMA when parsing: from_json puts the raw
# line there when a value has the wrong type or the line is not JSON.
EVENT_CORRUPT_COLUMN = "_corrupt_record"
EVENT_JSON_OPTIONS: dict[str, str] = {
    "timestampFormat": EVENT_TIMESTAMP_FORMAT,
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": EVENT_CORRUPT_COLUMN,
}

# --- layout under settings.path("streaming") --------------------------------------------------

INPUT_DIR = "input"
ANOMALIES_DIR = "anomalies"

# --- what normal events look like -------------------------------------------------------------

NORMAL_QUANTITIES = (1, 2, 3, 4)
QUANTITY_WEIGHTS = (0.62, 0.24, 0.10, 0.04)
DISCOUNTS = (0.0, 0.05, 0.10, 0.15, 0.20)
DISCOUNT_WEIGHTS = (0.65, 0.15, 0.10, 0.06, 0.04)
PLACED_STATUS = "processing"  # an order that has just been placed; not shipped yet
# A customer's draw weight is 1 + past orders, capped here: the generator's heavy customers
# (hundreds of past orders) would otherwise look like bursts in the stream.
MAX_CUSTOMER_WEIGHT = 5.0
ORDER_ID_BASE = 10**12  # far above the batch ids; order_id = base * (1 + seed % 1000) + sequence
# Out-of-order events are delayed by between this fraction and all of out_of_order_max_seconds.
MIN_OUT_OF_ORDER_FRACTION = 0.1

ANOMALY_KINDS = ("late", "out_of_order", "malformed", "large_order", "customer_burst", "sales_drop")
MALFORMED_KINDS = ("truncated", "wrong_type", "missing_field", "garbage")
GARBAGE_LINES = (
    "<html><body><h1>502 Bad Gateway</h1></body></html>",
    "ERROR: connection reset by peer",
    "order_id,customer_id,product_id,quantity",
    "{{{{ ~~ }}}}",
)
CLOCKS = ("realtime", "simulated")
SINKS = ("files", "socket")

BLOCK_EVENTS = 8192  # the unit of deterministic generation (and of a simulated-mode chunk)
MIN_TICK_SECONDS = 0.005  # realtime: emit at most every 5 ms (a chunk per tick)
MAX_WAIT_SECONDS = 0.2  # realtime: wake up at least this often (roll files, check stop)

# Event kinds inside the generator (int8 codes).
NORMAL, MALFORMED, LATE, OUT_OF_ORDER, LARGE_ORDER, BURST = range(6)
_KIND_NAMES = {
    MALFORMED: "malformed",
    LATE: "late",
    OUT_OF_ORDER: "out_of_order",
    LARGE_ORDER: "large_order",
}


# --- options -----------------------------------------------------------------------------------


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{STREAMING_CONFIG}: {key} should be {expected}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_number(
    key: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False
) -> None:
    ok = _is_number(value) and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        upper = f" and <= {high:g}" if high != math.inf else ""
        raise _fail(key, f"a number {bound}{upper}", value)


def _check_int(key: str, value: Any, low: int, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _fail(key, f"an integer >= {low}" + (f" and <= {high}" if high else ""), value)
    if high is not None and value > high:
        raise _fail(key, f"an integer >= {low} and <= {high}", value)


def _check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise _fail(key, f"one of {', '.join(choices)}", value)


def _unknown_keys(config: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(k for k in config if k not in allowed and not str(k).startswith("_"))
    if unknown:
        raise ConfigError(
            f"{STREAMING_CONFIG}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}"
            f" (allowed: {', '.join(allowed)})"
        )


def _mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(key, "a mapping", value)
    return value


@dataclass(frozen=True)
class SalesDrop:
    """From ``at_seconds`` after the start, for ``duration_seconds``, the rate is x ``factor``."""

    at_seconds: float | None = None  # None: no drop
    duration_seconds: float = 180.0
    factor: float = 0.2

    def __post_init__(self) -> None:
        where = "simulator.inject.sales_drop"
        if self.at_seconds is not None:
            _check_number(f"{where}.at_seconds", self.at_seconds, 0)
        _check_number(f"{where}.duration_seconds", self.duration_seconds, 0, open_low=True)
        _check_number(f"{where}.factor", self.factor, 0, 1)
        if self.factor == 1:
            raise _fail(f"{where}.factor", "a number >= 0 and < 1 (1 would be no drop)", 1)


@dataclass(frozen=True)
class InjectOptions:
    """What the stream carries besides clean orders (config ``simulator.inject``).

    The per-event kinds (malformed, late, out-of-order, large order) are mutually exclusive:
    one uniform draw per event picks at most one, so their rates must add up to at most 0.5.
    """

    out_of_order_rate: float = 0.02
    out_of_order_max_seconds: float = 20.0
    late_rate: float = 0.002
    late_by_seconds: float = 900.0
    malformed_rate: float = 0.002
    large_order_rate: float = 0.001
    large_order_quantity: tuple[int, int] = (30, 60)
    bursts_per_minute: float = 0.5
    burst_orders: int = 15
    burst_seconds: float = 20.0
    sales_drop: SalesDrop = field(default_factory=SalesDrop)

    def __post_init__(self) -> None:
        where = "simulator.inject"
        for name in ("out_of_order_rate", "late_rate", "malformed_rate", "large_order_rate"):
            _check_number(f"{where}.{name}", getattr(self, name), 0, 1)
        total = self.per_event_rate
        if total > 0.5:
            raise ConfigError(
                f"{STREAMING_CONFIG}: {where}: out_of_order_rate + late_rate + malformed_rate"
                f" + large_order_rate should be at most 0.5, got {total:g}"
            )
        _check_number(
            f"{where}.out_of_order_max_seconds", self.out_of_order_max_seconds, 0, open_low=True
        )
        _check_number(f"{where}.late_by_seconds", self.late_by_seconds, 0, open_low=True)
        if self.late_by_seconds <= self.out_of_order_max_seconds:
            raise _fail(
                f"{where}.late_by_seconds",
                f"more than out_of_order_max_seconds ({self.out_of_order_max_seconds:g})",
                self.late_by_seconds,
            )
        quantity = self.large_order_quantity
        key = f"{where}.large_order_quantity"
        if (
            not isinstance(quantity, (list, tuple))
            or len(quantity) != 2
            or not all(isinstance(q, int) and not isinstance(q, bool) for q in quantity)
            or not max(NORMAL_QUANTITIES) < quantity[0] <= quantity[1]
        ):
            raise _fail(
                key, f"[low, high] integers with {max(NORMAL_QUANTITIES)} < low <= high", quantity
            )
        object.__setattr__(self, "large_order_quantity", (int(quantity[0]), int(quantity[1])))
        _check_number(f"{where}.bursts_per_minute", self.bursts_per_minute, 0, 60)
        _check_int(f"{where}.burst_orders", self.burst_orders, 2)
        _check_number(f"{where}.burst_seconds", self.burst_seconds, 0, open_low=True)
        if not isinstance(self.sales_drop, SalesDrop):
            raise _fail(f"{where}.sales_drop", "a mapping", self.sales_drop)

    @property
    def per_event_rate(self) -> float:
        return self.out_of_order_rate + self.late_rate + self.malformed_rate + self.large_order_rate

    @classmethod
    def none(cls) -> InjectOptions:
        """Clean traffic only: no injection at all."""
        return cls(
            out_of_order_rate=0.0,
            late_rate=0.0,
            malformed_rate=0.0,
            large_order_rate=0.0,
            bursts_per_minute=0.0,
        )


_INJECT_KEYS = tuple(f.name for f in dataclasses.fields(InjectOptions))
_DROP_KEYS = tuple(f.name for f in dataclasses.fields(SalesDrop))


@dataclass(frozen=True)
class SimulatorOptions:
    """The ``simulator:`` section of streaming_config.yaml, validated, plus the run's clock."""

    rate_per_second: float = 100.0
    seed: int = 7
    sink: str = "files"
    socket_host: str = "127.0.0.1"
    socket_port: int = 9999
    roll_seconds: float = 1.0
    catalog: str = "gold"
    inject: InjectOptions = field(default_factory=InjectOptions)
    clock: str = "realtime"  # not a config key: a property of a run (CLI --clock)

    def __post_init__(self) -> None:
        _check_number("simulator.rate_per_second", self.rate_per_second, 0, 1e7, open_low=True)
        _check_int("simulator.seed", self.seed, 0)
        _check_choice("simulator.sink", self.sink, SINKS)
        if not isinstance(self.socket_host, str) or not self.socket_host:
            raise _fail("simulator.socket_host", "a host name or address", self.socket_host)
        _check_int("simulator.socket_port", self.socket_port, 0, 65535)
        _check_number("simulator.roll_seconds", self.roll_seconds, 0, open_low=True)
        _check_choice("simulator.catalog", self.catalog, CATALOG_SOURCES)
        _check_choice("simulator.clock", self.clock, CLOCKS)
        if not isinstance(self.inject, InjectOptions):
            raise _fail("simulator.inject", "a mapping", self.inject)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> SimulatorOptions:
        """Validate the ``simulator`` mapping; keys left out take the defaults above."""
        config = dict(_mapping("simulator", config or {}))
        scalar_keys = [f.name for f in dataclasses.fields(cls) if f.name not in ("inject", "clock")]
        _unknown_keys(config, [*scalar_keys, "inject"], "simulator")
        values: dict[str, Any] = {k: config[k] for k in scalar_keys if k in config}
        if "rate_per_second" in values and isinstance(values["rate_per_second"], int):
            values["rate_per_second"] = float(values["rate_per_second"])
        if "inject" in config:
            inject = dict(_mapping("simulator.inject", config["inject"]))
            _unknown_keys(inject, _INJECT_KEYS, "simulator.inject")
            if "sales_drop" in inject:
                drop = _mapping("simulator.inject.sales_drop", inject["sales_drop"])
                _unknown_keys(drop, _DROP_KEYS, "simulator.inject.sales_drop")
                inject["sales_drop"] = SalesDrop(**{k: drop[k] for k in _DROP_KEYS if k in drop})
            values["inject"] = InjectOptions(**{k: inject[k] for k in _INJECT_KEYS if k in inject})
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> SimulatorOptions:
        """A copy with the given fields replaced (None means "keep"), validated again."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


# --- the schedule: when event i is due ----------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Event ``i`` is due at ``time_of(i)`` seconds: ``rate`` per second, x ``factor`` in the drop.

    The cumulative count N(t) is piecewise linear; ``time_of`` is its inverse, so a sales drop
    stretches the gaps between events instead of removing sequence numbers.
    """

    rate: float
    drop_start: float = math.inf
    drop_end: float = math.inf
    factor: float = 1.0

    @classmethod
    def for_options(cls, options: SimulatorOptions) -> Schedule:
        drop = options.inject.sales_drop
        if drop.at_seconds is None:
            return cls(options.rate_per_second)
        start = float(drop.at_seconds)
        return cls(options.rate_per_second, start, start + drop.duration_seconds, drop.factor)

    @property
    def _events_at_drop(self) -> float:
        return self.rate * self.drop_start

    @property
    def _events_at_recovery(self) -> float:
        return self._events_at_drop + self.rate * self.factor * (self.drop_end - self.drop_start)

    def time_of(self, sequence: np.ndarray | int) -> np.ndarray:
        i = np.asarray(sequence, dtype="float64")
        before, after = self._events_at_drop, self._events_at_recovery
        slow = max(self.rate * self.factor, 1e-300)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.where(
                i < before,
                i / self.rate,
                np.where(
                    i < after,
                    self.drop_start + (i - before) / slow,
                    self.drop_end + (i - after) / self.rate,
                ),
            )

    def cumulative(self, seconds: float | np.ndarray) -> np.ndarray:
        """N(t): how many events are due before ``t`` (fractional)."""
        t = np.asarray(seconds, dtype="float64")
        if self.drop_start == math.inf:
            return self.rate * t
        in_drop = np.clip(t, self.drop_start, self.drop_end) - self.drop_start
        return (
            self.rate * np.minimum(t, self.drop_start)
            + self.rate * self.factor * in_drop
            + self.rate * np.maximum(t - self.drop_end, 0.0)
        )

    def events_before(self, seconds: float | np.ndarray) -> np.ndarray | int:
        """Number of events due strictly before ``seconds`` (the first index at or after it)."""
        counts = np.ceil(self.cumulative(seconds) - 1e-9).astype("int64")
        return np.maximum(counts, 0) if counts.ndim else int(max(counts, 0))


# --- generation -------------------------------------------------------------------------------


@dataclass
class EventColumns:
    """A run of consecutive events as numpy columns (one row per sequence number)."""

    sequence: np.ndarray  # int64
    due: np.ndarray  # float64 seconds after the start: when the event is emitted
    event_offset: np.ndarray  # float64 seconds: its event_time (earlier when delayed)
    customer_id: np.ndarray
    product_id: np.ndarray
    quantity: np.ndarray
    unit_price: np.ndarray
    discount: np.ndarray
    payment: np.ndarray  # index into PAYMENT_METHODS
    kind: np.ndarray  # NORMAL, MALFORMED, ...
    malformed_kind: np.ndarray  # index into MALFORMED_KINDS
    variant: np.ndarray  # uniform draw that shapes a malformed line

    def __len__(self) -> int:
        return len(self.sequence)

    def slice(self, start: int, stop: int) -> EventColumns:
        return EventColumns(**{f.name: getattr(self, f.name)[start:stop] for f in _COLUMN_FIELDS})

    @classmethod
    def concat(cls, parts: Sequence[EventColumns]) -> EventColumns:
        if len(parts) == 1:
            return parts[0]
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in _COLUMN_FIELDS}
        )


_COLUMN_FIELDS = dataclasses.fields(EventColumns)


@dataclass(frozen=True)
class Burst:
    """One customer placing orders in quick succession: the sequence numbers it takes over."""

    customer_id: int
    slots: np.ndarray  # sorted unique sequence numbers


def _cdf(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(np.asarray(weights, dtype="float64"))
    cdf = cumulative / cumulative[-1]
    cdf[-1] = 1.0
    return cdf


def _pick(cdf: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Index drawn with the probabilities behind ``cdf`` (zero-weight items are never drawn)."""
    return np.searchsorted(cdf, uniforms, side="right")


def iso_millis(epoch_ms: np.ndarray) -> list[str]:
    """Epoch milliseconds as ISO-8601 UTC strings with milliseconds and "Z"."""
    text = np.datetime_as_string(np.asarray(epoch_ms, dtype="int64").astype("datetime64[ms]"))
    return [f"{value}Z" for value in text.tolist()]


def _epoch_ms(start_ms: int, offsets: np.ndarray) -> np.ndarray:
    return start_ms + np.rint(np.asarray(offsets) * 1000.0).astype("int64")


class Simulator:
    """Generates the events, their JSON lines and the anomaly records of one seed and catalog."""

    def __init__(self, catalog: Catalog, options: SimulatorOptions) -> None:
        self.catalog = catalog
        self.options = options
        self.schedule = Schedule.for_options(options)
        self._seed = options.seed
        self._id_prefix = f"{options.seed}-"
        self._order_base = ORDER_ID_BASE * (1 + options.seed % 1000)
        weights = (
            np.ones(catalog.customers)
            if catalog.customer_orders is None
            else np.minimum(1.0 + np.maximum(catalog.customer_orders, 0), MAX_CUSTOMER_WEIGHT)
        )
        self._customer_cdf = _cdf(weights)
        self.max_customer_share = float(weights.max() / weights.sum())
        self._product_cdf = _cdf(catalog.product_weights)
        self._quantity_cdf = _cdf(QUANTITY_WEIGHTS)
        self._discount_cdf = _cdf(DISCOUNT_WEIGHTS)
        self._payment_cdf = _cdf(PAYMENT_WEIGHTS)
        inject = options.inject
        self._inject_bounds = np.cumsum(
            [inject.malformed_rate, inject.late_rate, inject.out_of_order_rate,
             inject.large_order_rate]
        )  # fmt: skip
        self._payment_names = list(PAYMENT_METHODS)
        self._blocks: dict[int, EventColumns] = {}
        self._bursts: list[Burst] = []
        self._burst_ends: list[int] = []  # last slot of each burst, for bisect
        self._burst_rng = np.random.default_rng(np.random.SeedSequence([self._seed, 2]))
        self._burst_clock = 0.0  # bursts are planned in time order up to here

    # -- expectations, for warnings and docs
    def normal_orders_per_customer_minute(self) -> float:
        """Expected orders per minute of the most-drawn customer in clean traffic."""
        return self.max_customer_share * self.options.rate_per_second * 60.0

    def event_id(self, sequence: int) -> str:
        return f"{self._id_prefix}{sequence}"

    # -- bursts
    def _plan_bursts_until(self, sequence: int) -> None:
        inject = self.options.inject
        if inject.bursts_per_minute <= 0:
            return
        mean_gap = 60.0 / inject.bursts_per_minute
        while not self._bursts or self._bursts[-1].slots[0] < sequence:
            rng = self._burst_rng
            start = self._burst_clock + rng.exponential(mean_gap)
            first, stop = self.schedule.events_before(
                np.array([start, start + inject.burst_seconds])
            )
            # distinct slots in the span (all of them when the rate is too low to fit the burst)
            picked = rng.choice(stop - first, min(inject.burst_orders, stop - first), replace=False)
            customer = self.catalog.customer_ids[rng.integers(self.catalog.customers)]
            if len(picked):
                self._bursts.append(Burst(int(customer), np.sort(first + picked)))
                self._burst_ends.append(int(self._bursts[-1].slots[-1]))
            self._burst_clock = start + inject.burst_seconds

    def bursts_between(self, first: int, stop: int) -> list[Burst]:
        """Bursts with at least one slot in ``[first, stop)``."""
        self._plan_bursts_until(stop)
        found = []
        # bursts never overlap, so their last slots are increasing
        for burst in self._bursts[bisect.bisect_left(self._burst_ends, first) :]:
            if burst.slots[0] >= stop:
                break
            found.append(burst)
        return found

    # -- events
    def _block(self, block: int) -> EventColumns:
        if block in self._blocks:
            return self._blocks[block]
        first = block * BLOCK_EVENTS
        n = BLOCK_EVENTS
        rng = np.random.default_rng(np.random.SeedSequence([self._seed, 1, block]))
        (u_customer, u_product, u_quantity, u_discount, u_payment, u_inject, u_delay, u_large,
         u_malformed, variant) = rng.random((10, n))  # fmt: skip
        catalog, inject = self.catalog, self.options.inject
        sequence = np.arange(first, first + n, dtype="int64")
        due = self.schedule.time_of(sequence)
        product = _pick(self._product_cdf, u_product)
        customer_id = catalog.customer_ids[_pick(self._customer_cdf, u_customer)]
        kind = np.array([MALFORMED, LATE, OUT_OF_ORDER, LARGE_ORDER, NORMAL], dtype="int8")[
            _pick(self._inject_bounds, u_inject)
        ]
        for burst in self.bursts_between(first, first + n):
            slots = burst.slots[(burst.slots >= first) & (burst.slots < first + n)] - first
            kind[slots] = BURST
            customer_id[slots] = burst.customer_id
        low, high = inject.large_order_quantity
        quantity = np.where(
            kind == LARGE_ORDER,
            low + np.floor(u_large * (high - low + 1)).astype("int64"),
            np.asarray(NORMAL_QUANTITIES)[_pick(self._quantity_cdf, u_quantity)],
        )
        ooo_delay = inject.out_of_order_max_seconds * (
            MIN_OUT_OF_ORDER_FRACTION + (1 - MIN_OUT_OF_ORDER_FRACTION) * u_delay
        )
        delay = np.select(
            [kind == OUT_OF_ORDER, kind == LATE], [ooo_delay, inject.late_by_seconds], 0.0
        )
        columns = EventColumns(
            sequence=sequence,
            due=due,
            event_offset=due - delay,
            customer_id=customer_id,
            product_id=catalog.product_ids[product],
            quantity=quantity,
            unit_price=catalog.product_prices[product],
            discount=np.asarray(DISCOUNTS)[_pick(self._discount_cdf, u_discount)],
            payment=_pick(self._payment_cdf, u_payment),
            kind=kind,
            malformed_kind=np.floor(u_malformed * len(MALFORMED_KINDS)).astype("int8"),
            variant=variant,
        )
        if len(self._blocks) >= 4:  # consecutive reads only need the last block or two
            self._blocks.pop(next(iter(self._blocks)))
        self._blocks[block] = columns
        return columns

    def events(self, first: int, stop: int) -> EventColumns:
        """Events ``first`` .. ``stop - 1`` (the same whatever the chunking)."""
        if not 0 <= first <= stop:
            raise ValueError(f"bad event range [{first}, {stop})")
        parts = []
        position = first
        while True:
            block = position // BLOCK_EVENTS
            offset = block * BLOCK_EVENTS
            end = min(stop, offset + BLOCK_EVENTS)
            parts.append(self._block(block).slice(position - offset, end - offset))
            position = end
            if position >= stop:
                return EventColumns.concat(parts)

    # -- encoding
    def encode(self, events: EventColumns, start_ms: int) -> list[str]:
        """One JSON line per event (malformed ones deliberately broken)."""
        times = iso_millis(_epoch_ms(start_ms, events.event_offset))
        prefix, base, payments = self._id_prefix, self._order_base, self._payment_names
        lines = [
            f'{{"event_id":"{prefix}{seq}","event_time":"{ts}","order_id":{base + seq},'
            f'"customer_id":{customer},"product_id":{product},"quantity":{quantity},'
            f'"unit_price":{price:.2f},"discount":{discount:.3f},"order_ts":"{ts}",'
            f'"status":"{PLACED_STATUS}","payment_method":"{payments[payment]}",'
            f'"shipped_ts":null,"delivered_ts":null,"updated_at":"{ts}"}}'
            for seq, ts, customer, product, quantity, price, discount, payment in zip(
                events.sequence.tolist(),
                times,
                events.customer_id.tolist(),
                events.product_id.tolist(),
                events.quantity.tolist(),
                events.unit_price.tolist(),
                events.discount.tolist(),
                events.payment.tolist(),
                strict=True,
            )
        ]
        for index in np.flatnonzero(events.kind == MALFORMED).tolist():
            lines[index] = _break_line(
                lines[index],
                MALFORMED_KINDS[events.malformed_kind[index]],
                float(events.variant[index]),
                int(events.quantity[index]),
                times[index],
            )
        return lines

    # -- the anomaly log
    def event_anomalies(self, events: EventColumns, start_ms: int) -> list[dict[str, Any]]:
        """One record per injected per-event anomaly among ``events``."""
        flagged = np.flatnonzero((events.kind != NORMAL) & (events.kind != BURST))
        if len(flagged) == 0:
            return []
        event_times = iso_millis(_epoch_ms(start_ms, events.event_offset[flagged]))
        due_times = iso_millis(_epoch_ms(start_ms, events.due[flagged]))
        records = []
        for position, index in enumerate(flagged.tolist()):
            kind = int(events.kind[index])
            quantity = int(events.quantity[index])
            if kind == MALFORMED:
                detail = MALFORMED_KINDS[events.malformed_kind[index]]
            elif kind == LARGE_ORDER:
                amount = quantity * float(events.unit_price[index])
                detail = f"quantity {quantity}, amount {amount:.2f}"
            else:
                lag = float(events.due[index] - events.event_offset[index])
                detail = f"delivered {lag:.1f} s after its event_time"
            records.append(
                {
                    "kind": _KIND_NAMES[kind],
                    "event_id": self.event_id(int(events.sequence[index])),
                    "customer_id": int(events.customer_id[index]),
                    "product_id": int(events.product_id[index]),
                    "event_time": event_times[position],
                    "start": event_times[position],
                    "end": due_times[position],
                    "detail": detail,
                }
            )
        return records

    def span_anomalies(
        self, emitted_before: int, stop: int, start_ms: int, final: bool = False
    ) -> list[dict[str, Any]]:
        """Bursts and the sales drop whose span ends in ``[emitted_before, stop)``.

        With ``final`` (the run ends at ``stop``), spans cut short are logged too, trimmed to
        what was emitted.
        """
        records = []
        for burst in self.bursts_between(emitted_before, stop):
            emitted = burst.slots[burst.slots < stop]
            complete = burst.slots[-1] < stop
            if len(emitted) == 0 or not (complete or final):
                continue
            if burst.slots[-1] < emitted_before:
                continue
            span = self.schedule.time_of(emitted[[0, -1]])
            start, end = iso_millis(_epoch_ms(start_ms, span))
            seconds = float(span[1] - span[0])
            records.append(
                {
                    "kind": "customer_burst",
                    "event_id": None,
                    "customer_id": burst.customer_id,
                    "product_id": None,
                    "event_time": start,
                    "start": start,
                    "end": end,
                    "detail": f"{len(emitted)} orders in {seconds:.1f} s",
                }
            )
        schedule = self.schedule
        if schedule.drop_start != math.inf:
            first_in = schedule.events_before(schedule.drop_start)
            first_after = schedule.events_before(schedule.drop_end)
            ends_now = emitted_before < first_after <= stop
            cut_short = final and first_in < stop < first_after
            if ends_now or cut_short:
                end_time = schedule.drop_end if ends_now else float(schedule.time_of(stop - 1))
                start, end = iso_millis(_epoch_ms(start_ms, [schedule.drop_start, end_time]))
                rate = self.options.rate_per_second
                records.append(
                    {
                        "kind": "sales_drop",
                        "event_id": None,
                        "customer_id": None,
                        "product_id": None,
                        "event_time": start,
                        "start": start,
                        "end": end,
                        "detail": f"rate x{schedule.factor:g}: {rate:g} -> "
                        f"{rate * schedule.factor:g} events/s",
                    }
                )
        return records


def _break_line(line: str, how: str, variant: float, quantity: int, event_time: str) -> str:
    """Turn a valid event line into the malformed line of kind ``how``."""
    if how == "truncated":  # cut somewhere between 10% and 90% of the line
        return line[: max(1, int(len(line) * (0.1 + 0.8 * variant)))]
    if how == "wrong_type":
        if variant < 0.5:
            return line.replace(f'"quantity":{quantity},', '"quantity":"abc",', 1)
        return line.replace(f'"event_time":"{event_time}"', '"event_time":"not a time"', 1)
    if how == "missing_field":
        if variant < 0.5:
            return line.replace(f'"event_time":"{event_time}",', "", 1)
        return line[: line.index('"event_id"')] + line[line.index('"event_time"') :]
    return GARBAGE_LINES[min(int(variant * len(GARBAGE_LINES)), len(GARBAGE_LINES) - 1)]


# --- sinks ------------------------------------------------------------------------------------


class Sink(Protocol):
    """Where the lines go. ``tick`` is called regularly, also when nothing was written."""

    def write(self, lines: Sequence[str]) -> None: ...

    def tick(self) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """JSON-lines files rolled into ``directory``: write to a hidden name, rename when closed.

    A roll closes after ``roll_seconds`` of wall time or ``max_lines`` lines. Its temp name
    starts with "." (Spark's file source and ``read_anomalies`` ignore it); the final name is
    ``<prefix>-<seq>-<uuid>.jsonl``, with ``seq`` continuing after the files already there.
    If a write fails, the roll in progress is deleted rather than published half-written.
    """

    def __init__(
        self,
        directory: str | Path,
        roll_seconds: float = 1.0,
        prefix: str = "part",
        max_lines: int = 200_000,
    ) -> None:
        if roll_seconds <= 0:
            raise ValueError(f"roll_seconds should be > 0, got {roll_seconds!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.roll_seconds = roll_seconds
        self.prefix = prefix
        self.max_lines = max_lines
        self.files: list[Path] = []
        self.lines_written = 0
        self._sequence = self._next_sequence()
        self._handle: Any = None
        self._temp: Path | None = None
        self._final: Path | None = None
        self._opened_at = 0.0
        self._lines_in_roll = 0

    def _next_sequence(self) -> int:
        existing = [
            int(parts[1])
            for path in self.directory.glob(f"{self.prefix}-*.jsonl")
            if len(parts := path.name.split("-")) >= 3 and parts[1].isdigit()
        ]
        return max(existing, default=-1) + 1

    def _open(self) -> None:
        name = f"{self.prefix}-{self._sequence:06d}-{uuid.uuid4().hex}.jsonl"
        self._sequence += 1
        self._final = self.directory / name
        self._temp = self.directory / f".{name}.tmp"
        self._handle = open(self._temp, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        self._opened_at = time.monotonic()
        self._lines_in_roll = 0

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        if self._handle is None:
            self._open()
        try:
            self._handle.write("\n".join(lines) + "\n")
        except BaseException:  # a partial roll is never published: drop it, keep the rest
            self.discard()
            raise
        self._lines_in_roll += len(lines)
        self.lines_written += len(lines)
        if self._lines_in_roll >= self.max_lines:
            self.roll()

    def tick(self) -> None:
        if self._handle is not None and time.monotonic() - self._opened_at >= self.roll_seconds:
            self.roll()

    def roll(self) -> None:
        """Close the current file and make it visible (atomically) under its final name."""
        if self._handle is None or self._temp is None or self._final is None:
            return
        handle, temp, final = self._handle, self._temp, self._final
        self._handle = self._temp = self._final = None
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(temp, final)
        self.files.append(final)

    def discard(self) -> None:
        """Delete the roll being written (after a failed write) instead of publishing it."""
        handle, temp = self._handle, self._temp
        self._handle = self._temp = self._final = None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()
        if temp is not None:
            temp.unlink(missing_ok=True)

    def close(self) -> None:
        self.roll()


class SocketSink:
    """A TCP server that sends every line to every connected client (Spark's socket source).

    Never blocks the simulator waiting for a client: while nobody is connected, lines are kept
    in a buffer of at most ``buffer_lines`` (the oldest are dropped beyond that and counted in
    ``dropped_lines``) and sent to the next client(s) to connect. A client that does not take
    its data within ``send_timeout`` seconds is disconnected.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9999,
        buffer_lines: int = 100_000,
        send_timeout: float = 10.0,
    ) -> None:
        self._server = socket.create_server((host, port), reuse_port=False)
        self._server.settimeout(0.2)
        self.host, self.port = self._server.getsockname()[:2]
        self.send_timeout = send_timeout
        self._backlog: deque[str] = deque(maxlen=buffer_lines)
        self._buffer_lines = buffer_lines
        self._clients: list[socket.socket] = []
        self._new_clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self.dropped_lines = 0
        self.clients_served = 0
        self.lines_written = 0
        self._log = get_logger("stream.simulator")
        self._acceptor = threading.Thread(target=self._accept, name="simulator-socket", daemon=True)
        self._acceptor.start()
        self._log.info("socket sink listening on %s:%s", self.host, self.port)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, address = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(self.send_timeout)
            with self._lock:
                self._new_clients.append(client)
                self.clients_served += 1
            self._log.info("socket sink: client %s:%s connected", *address[:2])

    def _send(self, client: socket.socket, payload: bytes) -> bool:
        try:
            client.sendall(payload)
            return True
        except OSError as exc:
            self._log.warning("socket sink: dropping a client (%s)", exc)
            with contextlib.suppress(OSError):
                client.close()
            return False

    def _admit_new_clients(self) -> None:
        with self._lock:
            new, self._new_clients = self._new_clients, []
        if not new:
            return
        if self._backlog:
            payload = ("\n".join(self._backlog) + "\n").encode()
            self._backlog.clear()
            new = [client for client in new if self._send(client, payload)]
        self._clients.extend(new)

    def write(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        self._admit_new_clients()
        self.lines_written += len(lines)
        if not self._clients:
            overflow = len(self._backlog) + len(lines) - self._buffer_lines
            if overflow > 0:
                self.dropped_lines += overflow
            self._backlog.extend(lines)
            return
        payload = ("\n".join(lines) + "\n").encode()
        self._clients = [client for client in self._clients if self._send(client, payload)]

    def tick(self) -> None:
        self._admit_new_clients()

    def close(self) -> None:
        self._admit_new_clients()
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self._acceptor.join(timeout=2)
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                client.close()
        self._clients = []
        self.dropped_lines += len(self._backlog)
        self._backlog.clear()


class AnomalyLog:
    """The injected anomalies as JSON lines under ``directory`` (rolled like the file sink)."""

    def __init__(self, directory: str | Path, roll_seconds: float = 1.0) -> None:
        self._files = FileSink(directory, roll_seconds, prefix="anomalies")
        self.counts: dict[str, int] = dict.fromkeys(ANOMALY_KINDS, 0)

    @property
    def files(self) -> list[Path]:
        return self._files.files

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            self.counts[record["kind"]] += 1
        self._files.write([json.dumps(record, separators=(",", ":")) for record in records])

    def tick(self) -> None:
        self._files.tick()

    def close(self) -> None:
        self._files.close()


def read_anomalies(directory: str | Path) -> list[dict[str, Any]]:
    """Every anomaly record under ``directory`` (finished files only), by start time and kind."""
    records = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        if path.name.startswith((".", "_")):
            continue
        with open(path, encoding="utf-8") as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    return sorted(records, key=lambda r: (r["start"] or "", r["kind"], r["event_id"] or ""))


# --- the run ----------------------------------------------------------------------------------


@dataclass
class SimulatorSummary:
    """What a run emitted. ``events`` are valid event lines; ``lines`` = events + malformed."""

    clock: str
    target_rate: float
    lines: int = 0
    events: int = 0
    malformed: int = 0
    anomalies: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ANOMALY_KINDS, 0))
    seconds: float = 0.0
    started_at: str | None = None
    first_event_time: str | None = None
    last_event_time: str | None = None
    max_lag_seconds: float = 0.0  # realtime: worst delay of an emission behind its due time
    files: list[str] = field(default_factory=list)
    dropped_lines: int = 0  # socket sink: lines nobody received
    stopped_by: str = "running"

    @property
    def achieved_rate(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    @property
    def files_written(self) -> int:
        return len(self.files)

    def as_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "achieved_rate": round(self.achieved_rate, 1),
            "files_written": self.files_written,
        }


@contextlib.contextmanager
def _sigint_sets(stop: threading.Event) -> Iterator[None]:
    """Within the block, Ctrl-C sets ``stop`` (the loop ends at a chunk boundary)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: the user really wants out
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_time(clock: str, start: dt.datetime | None) -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    if start is None:
        return now if clock == "realtime" else now.replace(microsecond=0)
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.timezone.utc)
    return start


def run_simulator(
    simulator: Simulator,
    sink: Sink,
    duration_seconds: float | None = None,
    count: int | None = None,
    progress: Callable[[SimulatorSummary], None] | None = None,
    *,
    stop: threading.Event | None = None,
    anomaly_log: AnomalyLog | None = None,
    start: dt.datetime | None = None,
    progress_every: float = 1.0,
) -> SimulatorSummary:
    """Emit events to ``sink`` until ``count`` events, ``duration_seconds`` or ``stop``.

    ``duration_seconds`` is stream time: events due before it are emitted (in realtime mode
    that is also wall time). ``start`` is the event time of event 0 (default: now; simulated
    runs round it down to the second). Ctrl-C and ``stop`` end the run at a chunk boundary;
    the sink and the anomaly log are closed either way, so no file is left half-written.
    """
    options, schedule = simulator.options, simulator.schedule
    realtime = options.clock == "realtime"
    if count is not None and (not isinstance(count, int) or count < 0):
        raise ValueError(f"count should be a non-negative integer, got {count!r}")
    if duration_seconds is not None and not (_is_number(duration_seconds) and duration_seconds > 0):
        raise ValueError(
            f"duration should be a positive number of seconds, got {duration_seconds!r}"
        )
    if not realtime and count is None and duration_seconds is None:
        raise ValueError("a simulated-clock run needs a count or a duration")
    limit = math.inf if count is None else count
    if duration_seconds is not None:
        limit = min(limit, schedule.events_before(float(duration_seconds)))
    stop = stop or threading.Event()
    log = get_logger("stream.simulator")
    per_customer = simulator.normal_orders_per_customer_minute()
    if per_customer > 4:
        log.warning(
            "at %g events/s over %s customers a customer may place %.1f orders a minute in clean"
            " traffic: burst alerts can fire on it (use a bigger catalog or a lower rate)",
            options.rate_per_second,
            f"{simulator.catalog.customers:,}",
            per_customer,
        )
    started = _start_time(options.clock, start)
    start_ms = round(started.timestamp() * 1000)
    summary = SimulatorSummary(
        clock=options.clock,
        target_rate=options.rate_per_second,
        started_at=iso_millis(np.array([start_ms]))[0],
    )
    emitted = 0
    t0 = time.perf_counter()
    last_progress = t0
    try:
        with _sigint_sets(stop):
            while emitted < limit and not stop.is_set():
                now = time.perf_counter() - t0
                if realtime:
                    due = min(limit, schedule.events_before(now + 1e-9))
                    if due <= emitted:
                        next_due = float(schedule.time_of(emitted))
                        wait = min(max(next_due - now, MIN_TICK_SECONDS), MAX_WAIT_SECONDS)
                        sink.tick()
                        if anomaly_log:
                            anomaly_log.tick()
                        stop.wait(wait)
                        continue
                else:
                    due = min(limit, emitted + BLOCK_EVENTS)
                events = simulator.events(emitted, int(due))
                if realtime:  # the first event of a chunk waited longest
                    lag = time.perf_counter() - t0 - float(events.due[0])
                    summary.max_lag_seconds = max(summary.max_lag_seconds, lag)
                sink.write(simulator.encode(events, start_ms))
                _account(summary, simulator, events, start_ms)
                records = simulator.event_anomalies(events, start_ms)
                records += simulator.span_anomalies(emitted, int(due), start_ms)
                _record(summary, anomaly_log, records)
                emitted = int(due)
                sink.tick()
                if anomaly_log:
                    anomaly_log.tick()
                if realtime:  # let a tick's worth of events come due: chunks, not single lines
                    stop.wait(MIN_TICK_SECONDS)
                if progress and time.perf_counter() - last_progress >= progress_every:
                    last_progress = time.perf_counter()
                    summary.seconds = last_progress - t0
                    progress(summary)
            summary.stopped_by = "stop" if emitted < limit else "completed"
    except KeyboardInterrupt:
        summary.stopped_by = "interrupt"
    finally:
        summary.seconds = time.perf_counter() - t0
        try:
            _record(
                summary, anomaly_log, simulator.span_anomalies(emitted, emitted, start_ms, True)
            )
        finally:
            sink.close()
            if anomaly_log:
                anomaly_log.close()
        summary.files = [str(p) for p in getattr(sink, "files", [])]
        summary.dropped_lines = int(getattr(sink, "dropped_lines", 0))
    log.info(
        "simulator: %s lines (%s malformed) in %.1f s = %s lines/s (target %g/s), anomalies %s",
        f"{summary.lines:,}",
        f"{summary.malformed:,}",
        summary.seconds,
        f"{summary.achieved_rate:,.0f}",
        options.rate_per_second,
        {k: v for k, v in summary.anomalies.items() if v},
    )
    return summary


def _account(
    summary: SimulatorSummary, simulator: Simulator, events: EventColumns, start_ms: int
) -> None:
    malformed = int(np.count_nonzero(events.kind == MALFORMED))
    summary.lines += len(events)
    summary.malformed += malformed
    summary.events += len(events) - malformed
    if summary.first_event_time is None:
        summary.first_event_time = iso_millis(_epoch_ms(start_ms, events.due[:1]))[0]
    summary.last_event_time = iso_millis(_epoch_ms(start_ms, events.due[-1:]))[0]


def _record(
    summary: SimulatorSummary, anomaly_log: AnomalyLog | None, records: list[dict[str, Any]]
) -> None:
    for record in records:
        summary.anomalies[record["kind"]] += 1
    if anomaly_log and records:
        anomaly_log.write(records)


# --- from settings (what the CLI calls) -------------------------------------------------------


def input_dir(settings: Settings) -> Path:
    """Where the file sink writes and the streaming query's file source reads."""
    return settings.path("streaming") / INPUT_DIR


def anomalies_dir(settings: Settings) -> Path:
    return settings.path("streaming") / ANOMALIES_DIR


def open_sink(options: SimulatorOptions, directory: Path) -> FileSink | SocketSink:
    """The sink ``options.sink`` names: files into ``directory``, or the socket server."""
    if options.sink == "files":
        return FileSink(directory, options.roll_seconds)
    return SocketSink(options.socket_host, options.socket_port)


def simulate(
    settings: Settings,
    *,
    rate: float | None = None,
    duration: float | None = None,
    count: int | None = None,
    sink: str | None = None,
    seed: int | None = None,
    clock: str = "realtime",
    progress: Callable[[SimulatorSummary], None] | None = None,
    catalog: str | None = None,
    stop: threading.Event | None = None,
    start: dt.datetime | None = None,
) -> SimulatorSummary:
    """Run the simulator from settings: ``simulator`` config with these overrides (None = config).

    Reads the catalog, writes lines to ``<streaming>/input/`` (or serves them on the socket)
    and the anomaly log to ``<streaming>/anomalies/``.
    """
    options = SimulatorOptions.from_config(settings.streaming.get("simulator")).with_overrides(
        rate_per_second=float(rate) if rate is not None else None,
        seed=seed,
        sink=sink,
        clock=clock,
        catalog=catalog,
    )
    simulator = Simulator(load_catalog(settings, options.catalog), options)
    target = open_sink(options, input_dir(settings))
    anomaly_log = AnomalyLog(anomalies_dir(settings), options.roll_seconds)
    return run_simulator(
        simulator,
        target,
        duration_seconds=duration,
        count=count,
        progress=progress,
        stop=stop,
        anomaly_log=anomaly_log,
        start=start,
    )
