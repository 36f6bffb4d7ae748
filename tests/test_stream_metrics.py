"""Streaming metrics without PostgreSQL: parsing, the watermark, and micro-batch deltas that add
up to a batch computation over the same events (exactly, on closed windows)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch.enrich import net_revenue
from sparkmart.io.postgres import PgSettings
from sparkmart.schemas import ORDER_EVENT_SCHEMA
from sparkmart.stream.events import (
    MISSING_PREFIX,
    NOT_JSON,
    NOT_POSITIVE_QUANTITY,
    WRONG_TYPE,
    parse_events,
)
from sparkmart.stream.metrics import (
    METRICS,
    floor_time,
    histogram_percentile,
    latency_histogram,
    mark_late,
    next_watermark,
)
from sparkmart.stream.query import BatchProcessor, StreamOptions
from sparkmart.stream.sinks import BatchDelta

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MINUTE = dt.timedelta(minutes=1)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def iso(moment: dt.datetime) -> str:
    """The simulator's format: milliseconds and Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_line(
    event_id: str,
    moment: dt.datetime,
    customer: int,
    product: int,
    quantity: int = 1,
    price: str = "10.00",
    discount: str | None = "0.000",
) -> str:
    payload: dict[str, Any] = {
        "event_id": event_id,
        "event_time": iso(moment),
        "order_id": abs(hash(event_id)) % 10**9,
        "customer_id": customer,
        "product_id": product,
        "quantity": quantity,
        "unit_price": float(price),
        "discount": None if discount is None else float(discount),
        "order_ts": iso(moment),
        "status": "processing",
        "payment_method": "card",
        "shipped_ts": None,
        "delivered_ts": None,
        "updated_at": iso(moment),
    }
    return json.dumps(payload)


def lines_df(spark: SparkSession, lines: list[str]) -> DataFrame:
    return spark.createDataFrame([(line,) for line in lines], "value string")


# --- parsing ---------------------------------------------------------------------------------


def test_malformed_lines_are_kept_with_their_reason(spark: SparkSession) -> None:
    good = event_line("e1", at(0), 1, 10, quantity=2, price="9.99", discount="0.125")
    lines = [
        good,
        "not json at all",
        "",
        "[1, 2, 3]",
        good[: len(good) // 2],  # truncated
        good.replace('"quantity": 2', '"quantity": "abc"'),
        good.replace(iso(at(0)), "not a time", 1),
        good.replace('"event_id": "e1", ', ""),
        good.replace('"quantity": 2', '"quantity": 0'),
        good.replace('"quantity": 2', '"quantity": -3'),
        good.replace('"discount": 0.125', '"discount": "abc"'),
        good.replace('"customer_id": 1', '"customer_id": null'),
    ]
    parsed = lines_df(spark, lines).transform(parse_events())

    expected = spark.createDataFrame(
        [
            (lines[0], None),
            (lines[1], NOT_JSON),
            (lines[2], NOT_JSON),
            (lines[3], NOT_JSON),
            (lines[4], NOT_JSON),
            (lines[5], MISSING_PREFIX + "quantity"),
            (lines[6], MISSING_PREFIX + "event_time"),
            (lines[7], MISSING_PREFIX + "event_id"),
            (lines[8], NOT_POSITIVE_QUANTITY),
            (lines[9], NOT_POSITIVE_QUANTITY),
            (lines[10], WRONG_TYPE),
            (lines[11], MISSING_PREFIX + "customer_id"),
        ],
        "raw string, reject_reason string",
    )
    assertDataFrameEqual(parsed.select("raw", "reject_reason"), expected)
    assert parsed.select("line_no").distinct().count() == len(lines)


def test_a_valid_line_keeps_its_values_and_net_revenue(spark: SparkSession) -> None:
    moment = dt.datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)
    lines = [
        event_line("e1", moment, 7, 70, quantity=2, price="9.99", discount="0.125"),
        event_line("e2", moment, 8, 80, quantity=1, price="10.05", discount="0.500"),
        event_line("e3", moment, 9, 90, quantity=3, price="1.10", discount=None),
    ]
    parsed = lines_df(spark, lines).transform(parse_events())
    expected = spark.createDataFrame(
        [
            ("e1", moment, 7, 70, 2, Decimal("17.48")),  # 17.4825
            ("e2", moment, 8, 80, 1, Decimal("5.03")),  # 5.025: half-up
            ("e3", moment, 9, 90, 3, Decimal("3.30")),  # no discount
        ],
        "event_id string, event_time timestamp, customer_id long, product_id long, "
        "quantity int, net_revenue decimal(14,2)",
    )
    assertDataFrameEqual(
        parsed.select(
            "event_id", "event_time", "customer_id", "product_id", "quantity", "net_revenue"
        ),
        expected,
    )
    assert parsed.schema["event_time"].dataType == ORDER_EVENT_SCHEMA["event_time"].dataType


# --- watermark -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "latest", "expected"),
    [
        (None, None, None),
        (None, at(10), at(5)),
        (at(2), None, at(2)),
        (at(2), at(10), at(5)),
        (at(7), at(10), at(7)),  # an older batch never moves it back
    ],
)
def test_next_watermark(
    previous: dt.datetime | None, latest: dt.datetime | None, expected: dt.datetime | None
) -> None:
    assert next_watermark(previous, latest, dt.timedelta(minutes=5)) == expected


def test_an_event_is_late_only_when_older_than_the_watermark(spark: SparkSession) -> None:
    watermark = at(3)
    events = spark.createDataFrame(
        [("a", watermark - dt.timedelta(milliseconds=1)), ("b", watermark), ("c", at(4))],
        "event_id string, event_time timestamp",
    )
    expected = spark.createDataFrame(
        [("a", True), ("b", False), ("c", False)], "event_id string, is_late boolean"
    )
    assertDataFrameEqual(
        events.transform(mark_late(watermark)).select("event_id", "is_late"), expected
    )
    assert events.transform(mark_late(None)).where("is_late").count() == 0


def test_floor_time_matches_spark_windows() -> None:
    moment = dt.datetime(2026, 11, 25, 12, 7, 59, 999000, tzinfo=UTC)
    assert floor_time(moment, MINUTE) == dt.datetime(2026, 11, 25, 12, 7, tzinfo=UTC)
    assert floor_time(moment, dt.timedelta(minutes=5)) == dt.datetime(
        2026, 11, 25, 12, 5, tzinfo=UTC
    )


# --- latency ---------------------------------------------------------------------------------


def test_latency_histogram_uses_100ms_buckets_and_an_overflow_bucket() -> None:
    now = T0 + dt.timedelta(seconds=10)
    buckets = [
        (now - dt.timedelta(milliseconds=50), 3),  # 50 ms -> bucket 0
        (now - dt.timedelta(milliseconds=250), 2),  # -> 200
        (now - dt.timedelta(milliseconds=299), 1),  # -> 200
        (now + dt.timedelta(seconds=1), 1),  # stamped in the future: 0
        (now - dt.timedelta(minutes=5), 4),  # beyond the cap
    ]
    histogram = latency_histogram(buckets, now)
    assert histogram == {"0": 4, "200": 3, ">=60000": 4}
    assert list(histogram) == ["0", "200", ">=60000"]
    assert histogram_percentile(histogram, 0.3) == 100.0
    assert histogram_percentile(histogram, 0.5) == 300.0
    assert histogram_percentile(histogram, 0.99) is None
    assert histogram_percentile({}, 0.5) is None


# --- micro-batches against one batch computation -----------------------------------------------

DELAY = dt.timedelta(minutes=5)
NEXT_DAY = dt.datetime(2026, 11, 26, 0, 0, 30, tzinfo=UTC)

# Five micro-batches: (event id, time, customer, product, quantity, price, discount) per event,
# plus malformed lines. With a 5 minute delay the watermark is, after each batch: 11:58:59.999,
# 12:03, 12:07:20, 12:09:30, 2026-11-25 23:55:30.
BATCHES: list[list[tuple[str, dt.datetime, int, int, int, str, str] | str]] = [
    [
        ("a1", at(0 + 10 / 60), 1, 100, 1, "10.00", "0.000"),
        ("a2", at(0 + 50 / 60), 2, 100, 2, "10.00", "0.100"),
        ("a3", at(1.5), 1, 200, 1, "99.99", "0.000"),
        ("a4", at(2 + 5 / 60), 3, 300, 5, "1.25", "0.050"),
        ("a5", T0 + dt.timedelta(minutes=4) - dt.timedelta(milliseconds=1), 4, 100, 1, "10", "0"),
        "{broken",
        '{"event_id": "x"}',
    ],
    [
        ("b1", at(5), 1, 100, 3, "10.00", "0.000"),
        ("b2", at(6.5), 5, 400, 1, "250.00", "0.200"),
        ("b3", at(8), 2, 200, 1, "99.99", "0.000"),
        ("b4", at(1.75), 6, 300, 2, "1.25", "0.000"),  # out of order, inside the watermark
        "",
    ],
    [
        ("c1", at(2.5), 7, 100, 1, "10.00", "0.000"),  # late: older than 12:03
        ("c2", at(3), 8, 500, 1, "5.55", "0.000"),  # exactly the watermark: on time
        ("c3", at(12 + 10 / 60), 1, 100, 1, "10.00", "0.000"),
        ("c4", at(12 + 20 / 60), 1, 200, 1, "99.99", "0.000"),
        ("c5", at(9), 9, 300, 4, "1.25", "0.000"),
    ],
    [
        ("d1", at(-10), 3, 100, 1, "10.00", "0.000"),  # late
        ("d2", at(13), 2, 100, 2, "10.00", "0.000"),
        ("d3", at(14.5), 2, 100, 1, "10.00", "0.000"),
        ('{"event_id": "d4", "quantity": 0}'),
    ],
    [
        ("e1", dt.datetime(2026, 11, 25, 23, 59, 59, 999000, tzinfo=UTC), 5, 400, 1, "250", "0"),
        ("e2", NEXT_DAY, 6, 500, 3, "5.55", "0.000"),
        ("e3", at(10), 4, 200, 1, "99.99", "0.000"),  # on time (watermark 12:09:30)
    ],
]
LATE_IDS = {"c1", "d1"}
MALFORMED_COUNT = 4


def _batch_lines(batch: list[Any]) -> list[str]:
    return [
        item
        if isinstance(item, str)
        else event_line(item[0], item[1], item[2], item[3], item[4], item[5], item[6])
        for item in batch
    ]


def _fold(totals: dict[str, dict[tuple, list]], delta: BatchDelta) -> None:
    """What the sink's additive upsert does, in memory."""
    for metric, (keys, values) in METRICS.items():
        if metric == "event_time_buckets":
            continue
        for row in delta.metrics[metric].to_pylist():
            key = tuple(row[k] for k in keys)
            current = totals[metric].setdefault(key, [0] * len(values))
            for index, name in enumerate(values):
                if name == "max_event_time":
                    current[index] = max(current[index] or row[name], row[name])
                else:
                    current[index] += row[name]


def _as_df(spark: SparkSession, rows: dict[tuple, list], schema: str) -> DataFrame:
    return spark.createDataFrame([(*key, *values) for key, values in rows.items()], schema)


@pytest.fixture(scope="module")
def streamed(spark: SparkSession) -> dict[str, Any]:
    """Run the query's per-batch computation over the five batches, folding the deltas."""
    options = StreamOptions(watermark=DELAY)
    processor = BatchProcessor(PgSettings(), options, "metrics_test", progress=None)
    totals: dict[str, dict[tuple, list]] = defaultdict(dict)
    watermark = None
    late, malformed, inputs = [], 0, 0
    closed_when_closed: dict[dt.datetime, list] = {}
    for batch_id, batch in enumerate(BATCHES):
        lines = _batch_lines(batch)
        delta = processor.compute(lines_df(spark, lines), batch_id, watermark)
        assert delta.previous_watermark == watermark
        # a closed window never gets another event
        assert all(m + MINUTE > watermark for m in delta.touched_minutes if watermark)
        _fold(totals, delta)
        watermark = delta.new_watermark
        for (minute,), values in totals["sales_per_minute"].items():
            if minute + MINUTE <= watermark and minute not in closed_when_closed:
                closed_when_closed[minute] = list(values)
        late += delta.late["event_id"].to_pylist()
        malformed += delta.malformed_rows
        inputs += delta.input_rows
        assert delta.input_rows == len(lines)
    return {
        "totals": totals,
        "watermark": watermark,
        "late": late,
        "malformed": malformed,
        "inputs": inputs,
        "closed_when_closed": closed_when_closed,
    }


@pytest.fixture(scope="module")
def on_time_events(spark: SparkSession) -> DataFrame:
    """The batch computation's input: every event that is valid and not late."""
    rows = [item for batch in BATCHES for item in batch if not isinstance(item, str)]
    events = spark.createDataFrame(
        [(e, t, c, p, q, Decimal(price), Decimal(d)) for e, t, c, p, q, price, d in rows],
        "event_id string, event_time timestamp, customer_id long, product_id long, "
        "quantity int, unit_price decimal(10,2), discount decimal(4,3)",
    )
    return events.where(~F.col("event_id").isin(*LATE_IDS)).withColumn("net_revenue", net_revenue())


def test_late_and_malformed_events_are_counted(streamed: dict[str, Any]) -> None:
    assert sorted(streamed["late"]) == sorted(LATE_IDS)
    assert streamed["malformed"] == MALFORMED_COUNT
    assert streamed["inputs"] == sum(len(batch) for batch in BATCHES)
    assert streamed["watermark"] == dt.datetime(2026, 11, 25, 23, 55, 30, tzinfo=UTC)


def test_sales_per_minute_equal_the_batch_computation(
    spark: SparkSession, streamed: dict[str, Any], on_time_events: DataFrame
) -> None:
    expected = on_time_events.groupBy(F.window("event_time", "1 minute").start.alias("w")).agg(
        F.count(F.lit(1)).alias("orders"),
        F.sum(F.col("quantity").cast("long")).alias("units"),
        F.sum("net_revenue").cast("decimal(18,2)").alias("revenue"),
        F.max("event_time").alias("max_event_time"),
    )
    actual = _as_df(
        spark,
        streamed["totals"]["sales_per_minute"],
        "w timestamp, orders long, units long, revenue decimal(18,2), max_event_time timestamp",
    )
    closed = F.col("w") + F.expr("interval 1 minute") <= F.lit(streamed["watermark"])
    assertDataFrameEqual(actual.where(closed), expected.where(closed))
    # closed windows are most of them; the two open ones are right too (no late event touched)
    assert actual.where(closed).count() == actual.count() - 2
    assertDataFrameEqual(actual, expected)


def test_a_closed_window_never_changes(streamed: dict[str, Any]) -> None:
    final = streamed["totals"]["sales_per_minute"]
    assert len(streamed["closed_when_closed"]) == len(final) - 2
    for minute, values_when_closed in streamed["closed_when_closed"].items():
        assert final[(minute,)] == values_when_closed, minute


def test_product_customer_and_daily_metrics_equal_the_batch_computation(
    spark: SparkSession, streamed: dict[str, Any], on_time_events: DataFrame
) -> None:
    totals = streamed["totals"]
    minute = F.window("event_time", "1 minute").start.alias("w")
    revenue = F.sum("net_revenue").cast("decimal(18,2)").alias("revenue")
    units = F.sum(F.col("quantity").cast("long")).alias("units")
    orders = F.count(F.lit(1)).alias("orders")
    assertDataFrameEqual(
        _as_df(
            spark,
            totals["product_minute_sales"],
            "w timestamp, product_id long, orders long, units long, revenue decimal(18,2)",
        ),
        on_time_events.groupBy(minute, "product_id").agg(orders, units, revenue),
    )
    assertDataFrameEqual(
        _as_df(
            spark,
            totals["customer_minute"],
            "w timestamp, customer_id long, orders long, revenue decimal(18,2)",
        ),
        on_time_events.groupBy(minute, "customer_id").agg(orders, revenue),
    )
    assertDataFrameEqual(
        _as_df(
            spark,
            totals["revenue_daily"],
            "day date, orders long, units long, revenue decimal(18,2)",
        ),
        on_time_events.groupBy(F.to_date("event_time").alias("day")).agg(orders, units, revenue),
    )
    assertDataFrameEqual(
        _as_df(spark, totals["product_units"], "product_id long, units long"),
        on_time_events.groupBy("product_id").agg(units),
    )
    assert len(totals["revenue_daily"]) == 2
