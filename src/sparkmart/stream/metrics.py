"""The streaming metrics of one micro-batch, as pure transforms (and the watermark arithmetic).

Every metric is stored at the window grain (1 minute by default) and is additive: the rows a
batch produces are *deltas* that the sink adds to what PostgreSQL holds, so a metric over many
batches is the sum of the batches' rows. All of them come out of ONE aggregation job over the
batch's on-time events (GROUPING SETS), told apart by the ``metric`` column; the driver splits
the (small) result with ``split_aggregates``.

The watermark follows Spark's rule, kept by the pipeline itself (docs/streaming.md): the
watermark used for batch N is ``max(previous watermark, max event time of batches < N - delay)``;
an event older than it is late and changes no metric; a window whose end is <= the watermark is
closed and never changes again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from sparkmart.stream.events import REVENUE_COLUMN

MONEY_TOTAL = DecimalType(18, 2)
LATE_COLUMN = "is_late"
METRIC_COLUMN = "metric"

# metric name -> (its key columns, its value columns), in the order the sink writes them.
METRICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sales_per_minute": (("window_start",), ("orders", "units", "revenue", "max_event_time")),
    "product_minute_sales": (("window_start", "product_id"), ("orders", "units", "revenue")),
    "customer_minute": (("window_start", "customer_id"), ("orders", "revenue")),
    "revenue_daily": (("day",), ("orders", "units", "revenue")),
    "product_units": (("product_id",), ("units",)),
    "event_time_buckets": (("event_bucket",), ("orders",)),
}
_GROUP_COLUMNS: tuple[str, ...] = (
    "window_start",
    "product_id",
    "customer_id",
    "day",
    "event_bucket",
)

LATENCY_BUCKET_MS = 100
LATENCY_CAP_MS = 60_000  # latencies above this share one overflow bucket (replays of old data)


# --- window and watermark arithmetic ---------------------------------------------------------


def window_start(event_time: Column, window: dt.timedelta) -> Column:
    """Start of the tumbling window holding ``event_time``, aligned to the epoch like
    ``F.window``."""
    micros = F.unix_micros(event_time)
    width = int(window.total_seconds() * 1_000_000)
    return F.timestamp_micros(micros - F.pmod(micros, F.lit(width)))


def floor_time(moment: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """The driver-side twin of ``window_start``."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return moment - (moment - epoch) % window


def next_watermark(
    previous: dt.datetime | None, max_event_time: dt.datetime | None, delay: dt.timedelta
) -> dt.datetime | None:
    """The watermark after a batch: it never moves back, and is null until an event is seen."""
    candidate = None if max_event_time is None else max_event_time - delay
    if previous is None:
        return candidate
    if candidate is None:
        return previous
    return max(previous, candidate)


def mark_late(watermark: dt.datetime | None) -> Callable[[DataFrame], DataFrame]:
    """Add ``is_late``: the event is older than the watermark in force for this batch."""

    def transform(events: DataFrame) -> DataFrame:
        if watermark is None:
            return events.withColumn(LATE_COLUMN, F.lit(False))
        return events.withColumn(LATE_COLUMN, F.col("event_time") < F.lit(watermark))

    return transform


# --- the aggregation job ---------------------------------------------------------------------


def batch_aggregates(window: dt.timedelta) -> Callable[[DataFrame], DataFrame]:
    """On-time valid events -> every metric's delta rows in one GROUPING SETS aggregation.

    Output columns: ``metric`` plus the union of the key and value columns of ``METRICS`` (the
    keys a metric does not group by are null). ``event_time_buckets`` counts events per 100 ms
    of event time, for the latency histogram computed at commit.
    """
    sets = {
        "sales_per_minute": ["window_start"],
        "product_minute_sales": ["window_start", "product_id"],
        "customer_minute": ["window_start", "customer_id"],
        "revenue_daily": ["day"],
        "product_units": ["product_id"],
        "event_time_buckets": ["event_bucket"],
    }

    def grouping_id_of(columns: list[str]) -> int:
        # grouping_id(): one bit per grouping column, first column = highest bit, 1 = not grouped
        bits = [0 if name in columns else 1 for name in _GROUP_COLUMNS]
        return int("".join(map(str, bits)), 2)

    # Built once and reused by every micro-batch (see parse_events).
    bucket_ms = F.unix_millis("event_time")
    keys = [
        window_start(F.col("event_time"), window).alias("window_start"),
        F.col("product_id"),
        F.col("customer_id"),
        F.to_date("event_time").alias("day"),
        F.timestamp_millis(bucket_ms - F.pmod(bucket_ms, F.lit(LATENCY_BUCKET_MS))).alias(
            "event_bucket"
        ),
        F.col("event_time"),
        F.col("quantity"),
        F.col(REVENUE_COLUMN),
    ]
    metric = F.lit(None).cast("string")
    for name, columns in reversed(sets.items()):
        metric = F.when(F.grouping_id() == grouping_id_of(columns), F.lit(name)).otherwise(metric)
    grouping_sets = [[F.col(c) for c in columns] for columns in sets.values()]
    group_columns = [F.col(c) for c in _GROUP_COLUMNS]
    values = [
        metric.alias(METRIC_COLUMN),
        F.count(F.lit(1)).alias("orders"),
        F.sum(F.col("quantity").cast("long")).alias("units"),
        F.sum(REVENUE_COLUMN).cast(MONEY_TOTAL).alias("revenue"),
        F.max("event_time").alias("max_event_time"),
    ]

    def transform(events: DataFrame) -> DataFrame:
        return events.select(*keys).groupingSets(grouping_sets, *group_columns).agg(*values)

    return transform


def split_aggregates(aggregates: pa.Table) -> dict[str, pa.Table]:
    """The Arrow result of ``batch_aggregates`` -> one table per metric, with its own columns,
    sorted by key (so an archive file is the same bytes on a replay)."""
    tables: dict[str, pa.Table] = {}
    for name, (keys, values) in METRICS.items():
        rows = aggregates.filter(pc.equal(aggregates[METRIC_COLUMN], name))
        rows = rows.select([*keys, *values])
        tables[name] = rows.sort_by([(key, "ascending") for key in keys])
    return tables


def max_event_time(tables: Mapping[str, pa.Table]) -> dt.datetime | None:
    """Latest on-time event time of a batch (from its per-minute rows)."""
    column = tables["sales_per_minute"]["max_event_time"]
    latest = pc.max(column).as_py() if len(column) else None
    return latest


def latency_histogram(
    buckets: Iterable[tuple[dt.datetime, int]],
    now: dt.datetime,
    bucket_ms: int = LATENCY_BUCKET_MS,
    cap_ms: int = LATENCY_CAP_MS,
) -> dict[str, int]:
    """Events per latency bucket: ``{"<lower bound in ms>": events}``, latency = ``now`` - event
    time (an event stamped after ``now`` counts as 0). Latencies >= ``cap_ms`` share the key
    ``">=<cap_ms>"``.

    ``buckets`` holds the start of each 100 ms event-time bucket; measured from its start, the
    latency of an event in it is over-stated by less than one bucket.
    """
    histogram: dict[str, int] = {}
    for start, events in buckets:
        latency_ms = max(0, int((now - start).total_seconds() * 1000))
        overflow = latency_ms >= cap_ms
        key = f">={cap_ms}" if overflow else str(latency_ms - latency_ms % bucket_ms)
        histogram[key] = histogram.get(key, 0) + int(events)
    return dict(sorted(histogram.items(), key=lambda item: _bucket_order(item[0])))


def _bucket_order(key: str) -> float:
    return float("inf") if key.startswith(">=") else float(key)


def histogram_percentile(histogram: Mapping[str, int], fraction: float) -> float | None:
    """The bucket bound (ms) below which ``fraction`` of the events fall; None when empty or the
    answer lies in the overflow bucket."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for key in sorted(histogram, key=_bucket_order):
        seen += histogram[key]
        if seen >= fraction * total:
            return None if key.startswith(">=") else float(key) + LATENCY_BUCKET_MS
    return None
