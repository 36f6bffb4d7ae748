"""Streaming alerts: each kind fires on its planted case and stays quiet on clean data.

Per-event rules run on inline DataFrames; the stateful rules run in a real PostgreSQL
transaction on hand-inserted metric rows; system rules on hand-made progress reports and on a
real (tiny) streaming query; the scorer on hand-made alerts and anomalies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import zlib
from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    BooleanType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)
from pyspark.testing import assertDataFrameEqual

from sparkmart.config import ConfigError, Settings, load_settings
from sparkmart.io.postgres import PgSettings, connect, query_rows
from sparkmart.schemas import ALERT_SCHEMA, ORDER_EVENT_SCHEMA
from sparkmart.stream.alerts import (
    AlertEngine,
    AlertParams,
    HighValueParams,
    SystemAlertListener,
    SystemParams,
    alert_id,
    customer_context,
    insert_alerts,
    open_state_rows,
    product_context,
    system_alerts,
)
from sparkmart.stream.scoring import format_scores, load_and_score, score_alerts
from sparkmart.stream.sinks import BatchContext
from sparkmart.stream.tables import ensure_stream_tables
from tests.conftest import CONFIG_DIR

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


PRODUCT_STATS = StructType(
    [
        StructField("product_id", LongType()),
        StructField("price", DoubleType()),
        StructField("normal_line_amount", DoubleType()),
        StructField("stock_quantity", LongType()),
        StructField("reorder_threshold", LongType()),
    ]
)
CUSTOMER_STATS = StructType(
    [
        StructField("customer_id", LongType()),
        StructField("past_orders", LongType()),
        StructField("median_order_value", DoubleType()),
        StructField("predicted_clv", DoubleType()),
        StructField("is_top_clv", BooleanType()),
        StructField("segment", StringType()),
    ]
)


def make_engine(spark: SparkSession, params: AlertParams | None = None) -> AlertEngine:
    """Two products and three customers with known context (product limit = 8 x normal)."""
    products = spark.createDataFrame(
        [(1, 10.0, 20.0, 100, 10), (2, 100.0, 100.0, 50, 10)], PRODUCT_STATS
    )
    customers = spark.createDataFrame(
        [
            (1, 10, 5.0, 300.0, False, None),  # enough history: customer limit 25 x 5 = 125
            (2, 2, 1.0, 20.0, False, None),  # too few orders for the customer rule
            (3, 50, 1000.0, 90000.0, True, None),  # top CLV
            (5, 8, 50.0, 900.0, False, "champions"),
        ],
        CUSTOMER_STATS,
    )
    return AlertEngine(params or AlertParams(), products, customers)


def event(
    event_id: str,
    customer_id: int,
    product_id: int,
    quantity: int,
    unit_price: str,
    discount: str = "0",
    minute: float = 0.0,
) -> tuple:
    when = at(minute)
    return (
        event_id,
        when,
        zlib.crc32(event_id.encode()),
        customer_id,
        product_id,
        quantity,
        Decimal(unit_price),
        Decimal(discount),
        when,
        "processing",
        "card",
        None,
        None,
        when,
    )


def events_frame(spark: SparkSession, rows: Sequence[tuple]) -> DataFrame:
    return spark.createDataFrame(list(rows), ORDER_EVENT_SCHEMA)


EXPECTED_COLUMNS = ["alert_id", "alert_type", "alert_key", "event_id", "value", "threshold"]


def expected_alerts(spark: SparkSession, rows: Sequence[tuple]) -> DataFrame:
    """(type, key, event_id, value, threshold) -> the expected columns with the hashed id."""
    schema = StructType(
        [
            StructField("alert_id", StringType()),
            StructField("alert_type", StringType()),
            StructField("alert_key", StringType()),
            StructField("event_id", StringType()),
            StructField("value", DoubleType()),
            StructField("threshold", DoubleType()),
        ]
    )
    return spark.createDataFrame(
        [(alert_id(t, k, e), t, k, e, v, th) for t, k, e, v, th in rows], schema
    )


# --- configuration -----------------------------------------------------------------------------


def test_alert_params_from_the_repo_config(settings: Settings) -> None:
    params = AlertParams.from_config(settings.streaming["alerts"])
    assert params.customer_burst.min_orders == 8
    assert params.sales_drop.ratio == 0.5
    assert params.high_value.top_segments == ()


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("sales_drop", "ratio", 1.5, "alerts.sales_drop.ratio should be between 0 and 1"),
        ("sales_drop", "min_baseline_minutes", 9, "alerts.sales_drop.min_baseline_minutes"),
        ("customer_burst", "min_orders", "eight", "key 'alerts.customer_burst.min_orders'"),
        ("system", "severity", "loud", "alerts.system.severity should be one of info"),
        ("low_inventory", "lead_dayz", 3, "unknown key 'alerts.low_inventory.lead_dayz'"),
    ],
)
def test_alert_params_name_the_bad_key(
    settings: Settings, section: str, key: str, value: object, message: str
) -> None:
    alerts = {name: dict(body) for name, body in settings.streaming["alerts"].items()}
    alerts[section][key] = value
    with pytest.raises(ConfigError, match=r"streaming_config\.yaml") as error:
        AlertParams.from_config(alerts)
    assert message in str(error.value)


# --- gold context --------------------------------------------------------------------------------


def test_product_context_normal_amount_and_reorder_threshold(spark: SparkSession) -> None:
    products = spark.createDataFrame(
        [(1, Decimal("10.00"), 500), (2, Decimal("4.00"), 30), (3, Decimal("7.50"), None)],
        "product_id long, price decimal(10,2), stock_quantity int",
    )
    performance = spark.createDataFrame(
        [(1, 80, 40), (2, 40, 10), (3, 0, 0)], "product_id long, units_sold long, orders long"
    )
    # usual quantity: own units/orders (2.0, 4.0); product 3 has no orders -> 120/50 = 2.4.
    # threshold: units / 10 days x 14 lead days = 112, 56; product 3 -> min_threshold 5.
    expected = spark.createDataFrame(
        [(1, 10.0, 20.0, 500, 112), (2, 4.0, 16.0, 30, 56), (3, 7.5, 18.0, None, 5)],
        PRODUCT_STATS,
    )
    actual = product_context(products, performance, history_days=10)
    assertDataFrameEqual(actual, expected, rtol=1e-9)


def test_customer_context_marks_the_top_clv_fraction(spark: SparkSession) -> None:
    customers = spark.createDataFrame(
        [(i, None) for i in range(1, 102)], "customer_id long, segment string"
    )
    ltv = spark.createDataFrame(
        [(i, i % 7 + 1, float(i), float(i * 10)) for i in range(1, 101)],
        "customer_id long, orders long, median_order_value double, predicted_clv double",
    )
    context = customer_context(customers, ltv, HighValueParams(top_clv_fraction=0.05))
    top = {r.customer_id for r in context.filter("is_top_clv").collect()}
    assert top == {96, 97, 98, 99, 100}
    newcomer = context.filter("customer_id = 101").first()
    assert (newcomer.past_orders, newcomer.is_top_clv, newcomer.predicted_clv) == (0, False, None)


# --- per-event rules ---------------------------------------------------------------------------


def test_event_alerts_fire_on_planted_cases_only(spark: SparkSession) -> None:
    engine = make_engine(spark)
    events = events_frame(
        spark,
        [
            event("clean-1", 2, 1, 2, "10.00"),  # 20: normal line
            event("clean-2", 4, 2, 1, "100.00"),  # customer unknown to gold
            event("clean-3", 1, 1, 14, "10.00", "0.5"),  # 70 after discount (140 before)
            event("big-line", 2, 1, 20, "10.00"),  # 200 > 8 x 20
            event("over-median", 1, 2, 3, "150.00"),  # 450 > 25 x 5 and > 2 x 100, < 8 x 100
            event("pricier-line", 1, 2, 1, "150.00"),  # 150 > 25 x 5 but a usual line (< 2 x 100)
            event("top-clv", 3, 1, 1, "10.00"),
            event("huge", 4, 2, 60, "100.00"),  # 6000 > 5000 and > 800
            event("champion", 5, 1, 1, "10.00"),  # segment 'champions' is not configured
        ],
    )
    alerts = engine.event_alerts(events, batch_id=0)
    assert [(f.name, f.dataType) for f in alerts.schema] == [
        (f.name, f.dataType) for f in ALERT_SCHEMA
    ]
    expected = expected_alerts(
        spark,
        [
            ("unusual_amount", "2", "big-line", 200.0, 160.0),
            ("unusual_amount", "1", "over-median", 450.0, 125.0),
            ("high_value_customer", "3", "top-clv", 10.0, None),
            ("large_order", "4", "huge", 6000.0, 5000.0),
            ("unusual_amount", "4", "huge", 6000.0, 800.0),
        ],
    )
    assertDataFrameEqual(alerts.select(*EXPECTED_COLUMNS), expected)
    messages = {
        r.event_id: r.message for r in alerts.filter("alert_type = 'unusual_amount'").collect()
    }
    assert messages["big-line"] == (
        "order big-line: amount 200.00 is 10.0x the normal line amount 20.00 of product 1"
    )
    assert "median order 5.00 of customer 1" in messages["over-median"]
    # a replay raises the same ids, so the insert's ON CONFLICT keeps one of each
    again = {r.alert_id for r in engine.event_alerts(events, batch_id=7).collect()}
    assert again == {r.alert_id for r in expected.collect()}


def test_top_segments_from_config_count_as_high_value(spark: SparkSession) -> None:
    params = dataclasses.replace(
        AlertParams(),
        high_value=dataclasses.replace(AlertParams().high_value, top_segments=("champions",)),
    )
    events = events_frame(spark, [event("champion", 5, 1, 1, "10.00"), event("n", 2, 1, 1, "10")])
    alerts = make_engine(spark, params).event_alerts(events, batch_id=0)
    assert [(r.alert_type, r.alert_key) for r in alerts.collect()] == [("high_value_customer", "5")]


# --- stateful rules (SQL) ----------------------------------------------------------------------


def batch_context(
    batch_id: int,
    previous_watermark: dt.datetime | None,
    new_watermark: dt.datetime | None,
    touched_minutes: Sequence[dt.datetime] = (),
) -> BatchContext:
    """The streaming query's context of one batch (stream/sinks.py)."""
    return BatchContext(
        query_name="orders",
        batch_id=batch_id,
        previous_watermark=previous_watermark,
        new_watermark=new_watermark,
        touched_minutes=tuple(touched_minutes),
        detected_at=T0,
    )


STREAM_TABLES = (
    "streaming.alerts",
    "streaming.customer_minute",
    "streaming.sales_per_minute",
    "streaming.product_units",
    "streaming.product_minute_sales",
    "streaming.inventory",
)


@pytest.fixture()
def stream_db(pg: PgSettings) -> Iterator[PgSettings]:
    ensure_stream_tables(pg)
    with connect(pg) as conn:
        conn.execute("TRUNCATE " + ", ".join(STREAM_TABLES))
        conn.commit()
    yield pg


def run_batch(
    pg: PgSettings,
    engine: AlertEngine,
    batch: BatchContext,
    statements: Sequence[tuple[str, tuple]],
) -> int:
    """The batch's metric upserts, then the stateful rules, in ONE transaction."""
    with connect(pg) as conn, conn.cursor() as cursor:
        for statement, params in statements:
            cursor.execute(statement, params)
        inserted = engine.stateful_alerts(cursor, batch)
        conn.commit()
    return inserted


def alerts_in(pg: PgSettings, alert_type: str) -> list[tuple]:
    return query_rows(
        pg,
        "SELECT alert_key, event_time, value, threshold, batch_id FROM streaming.alerts "
        "WHERE alert_type = %s ORDER BY event_time, alert_key",
        (alert_type,),
    )


UPSERT_CUSTOMER_MINUTE = (
    "INSERT INTO streaming.customer_minute (window_start, customer_id, orders, revenue) "
    "VALUES (%s, %s, %s, 0) ON CONFLICT (window_start, customer_id) "
    "DO UPDATE SET orders = customer_minute.orders + EXCLUDED.orders"
)


@pytest.mark.postgres
def test_customer_burst_across_two_batches_raises_one_alert(
    spark: SparkSession, stream_db: PgSettings
) -> None:
    engine = make_engine(spark)  # min_orders 8, mean_factor 6
    # 40 customers with one order each keep the minute's mean per customer low (8 decides)
    quiet = [(UPSERT_CUSTOMER_MINUTE, (at(0), 100 + i, 1)) for i in range(40)]
    first = [
        *quiet,
        (UPSERT_CUSTOMER_MINUTE, (at(0), 7, 5)),
        (UPSERT_CUSTOMER_MINUTE, (at(0), 8, 3)),
    ]
    assert run_batch(stream_db, engine, batch_context(0, None, None, [at(0)]), first) == 0
    second = [(UPSERT_CUSTOMER_MINUTE, (at(0), 7, 4)), (UPSERT_CUSTOMER_MINUTE, (at(1), 8, 2))]
    assert run_batch(stream_db, engine, batch_context(1, None, None, [at(0), at(1)]), second) == 1
    third = [(UPSERT_CUSTOMER_MINUTE, (at(0), 7, 6))]
    assert run_batch(stream_db, engine, batch_context(2, None, None, [at(0)]), third) == 0
    # a burst in a minute the batch did not touch is not looked at (it was, when touched)
    fourth = [(UPSERT_CUSTOMER_MINUTE, (at(5), 9, 9))]
    assert run_batch(stream_db, engine, batch_context(3, None, None, []), fourth) == 0
    assert alerts_in(stream_db, "customer_burst") == [("7", at(0), 9.0, 8.0, 1)]


@pytest.mark.postgres
def test_customer_burst_threshold_rises_with_the_orders_per_customer(
    spark: SparkSession, stream_db: PgSettings
) -> None:
    """At a high rate every customer orders often: 20 in a minute is ordinary when the mean
    is 10, and only 6 x the mean (60) is a burst."""
    engine = make_engine(spark)
    busy = [(UPSERT_CUSTOMER_MINUTE, (at(0), 100 + i, 10)) for i in range(50)]
    statements = [
        *busy,
        (UPSERT_CUSTOMER_MINUTE, (at(0), 7, 20)),
        (UPSERT_CUSTOMER_MINUTE, (at(0), 8, 90)),
    ]
    assert run_batch(stream_db, engine, batch_context(0, None, None, [at(0)]), statements) == 1
    # mean (500 + 20 + 90) / 52 = 11.7 -> threshold ceil(6 x 11.7) = 71
    assert alerts_in(stream_db, "customer_burst") == [("8", at(0), 90.0, 71.0, 0)]


def sales_minute(minute: float, orders: int) -> tuple[str, tuple]:
    return (
        "INSERT INTO streaming.sales_per_minute (window_start, window_end, orders, units, "
        "revenue) VALUES (%s, %s, %s, %s, 0) ON CONFLICT (window_start) "
        "DO UPDATE SET orders = sales_per_minute.orders + EXCLUDED.orders",
        (at(minute), at(minute + 1), orders, orders),
    )


@pytest.mark.postgres
def test_sales_drop_on_a_closed_minute_against_its_baseline(
    spark: SparkSession, stream_db: PgSettings
) -> None:
    engine = make_engine(spark)  # baseline 5 minutes, at least 3, ratio 0.5
    # minutes 0..4 at 100 orders, minute 5 at 40, minute 6 at 95; nothing closed yet
    rows = [sales_minute(m, n) for m, n in enumerate([100, 100, 100, 100, 100, 40, 95])]
    assert run_batch(stream_db, engine, batch_context(0, None, None), rows) == 0
    # the watermark passes 10:05:30: minutes 0..4 close (no drop), 5 and 6 still open
    assert run_batch(stream_db, engine, batch_context(1, at(0), at(5.5)), []) == 0
    # minute 5 closes: 40 < 0.5 x 100. Minute 6 (95) closes in the next batch: no alert
    assert run_batch(stream_db, engine, batch_context(2, at(5.5), at(6)), []) == 1
    assert run_batch(stream_db, engine, batch_context(3, at(6), at(7.2)), []) == 0
    # a replayed crossing check raises nothing new
    assert run_batch(stream_db, engine, batch_context(4, at(5.5), at(7.2)), []) == 0
    assert alerts_in(stream_db, "sales_drop") == [("orders_per_minute", at(5), 40.0, 50.0, 2)]


@pytest.mark.postgres
def test_sales_drop_needs_a_baseline(spark: SparkSession, stream_db: PgSettings) -> None:
    engine = make_engine(spark)
    rows = [sales_minute(m, n) for m, n in enumerate([100, 100, 10])]  # 2 baseline minutes
    assert run_batch(stream_db, engine, batch_context(0, at(0), at(3)), rows) == 0
    # a minute with no orders at all (no row) after a full baseline is the strongest drop
    rows = [sales_minute(m, 100) for m in (3, 4, 5)]
    assert run_batch(stream_db, engine, batch_context(1, at(3), at(6)), rows) == 0
    assert run_batch(stream_db, engine, batch_context(2, at(6), at(7)), []) == 1
    # baseline minutes 1..5: (100 + 10 + 3 x 100) / 5 = 82
    assert alerts_in(stream_db, "sales_drop") == [("orders_per_minute", at(6), 0.0, 41.0, 2)]


@pytest.mark.postgres
def test_sales_drop_ignores_the_noise_of_a_thin_stream(
    spark: SparkSession, stream_db: PgSettings
) -> None:
    # 6 orders a minute, then 1: under half the mean, but 5 < 3 x sqrt(6) is within noise
    rows = [sales_minute(m, n) for m, n in enumerate([6, 6, 6, 6, 6, 1])]
    assert run_batch(stream_db, make_engine(spark), batch_context(0, at(5), at(6)), rows) == 0
    without_guard = dataclasses.replace(
        AlertParams(), sales_drop=dataclasses.replace(AlertParams().sales_drop, noise_sigmas=0.0)
    )
    engine = make_engine(spark, without_guard)
    assert run_batch(stream_db, engine, batch_context(1, at(5), at(6)), []) == 1
    assert alerts_in(stream_db, "sales_drop") == [("orders_per_minute", at(5), 1.0, 3.0, 1)]


@pytest.mark.postgres
def test_sales_drop_not_judged_in_the_first_batch(
    spark: SparkSession, stream_db: PgSettings
) -> None:
    # a query's first batch has no watermark before it: what it closes was never watched live
    rows = [sales_minute(m, n) for m, n in enumerate([100, 100, 100, 100, 100, 0])]
    assert run_batch(stream_db, make_engine(spark), batch_context(0, None, at(7)), rows) == 0
    assert alerts_in(stream_db, "sales_drop") == []


def sold(product_id: int, minute: float, units: int) -> list[tuple[str, tuple]]:
    return [
        (
            "INSERT INTO streaming.product_units (product_id, units_sold) VALUES (%s, %s) "
            "ON CONFLICT (product_id) DO UPDATE "
            "SET units_sold = product_units.units_sold + EXCLUDED.units_sold",
            (product_id, units),
        ),
        (
            "INSERT INTO streaming.product_minute_sales (window_start, product_id, orders, "
            "units, revenue) VALUES (%s, %s, 1, %s, 0) ON CONFLICT (window_start, product_id) "
            "DO UPDATE SET units = product_minute_sales.units + EXCLUDED.units",
            (at(minute), product_id, units),
        ),
    ]


@pytest.mark.postgres
def test_low_inventory_one_alert_per_crossing(spark: SparkSession, stream_db: PgSettings) -> None:
    engine = make_engine(spark)
    with connect(stream_db) as conn:
        conn.execute(
            "INSERT INTO streaming.inventory (product_id, stock_quantity, reorder_threshold) "
            "VALUES (1, 20, 10), (2, 100, 10), (3, 3, 5)"
        )
        conn.commit()
    # product 3 starts below its threshold: no crossing, no alert
    first = sold(1, 0, 8) + sold(2, 0, 50) + sold(3, 0, 1)
    assert run_batch(stream_db, engine, batch_context(0, None, None, [at(0)]), first) == 0
    assert run_batch(stream_db, engine, batch_context(1, None, None, [at(1)]), sold(1, 1, 7)) == 1
    second = sold(1, 2, 3) + sold(2, 2, 10)
    assert run_batch(stream_db, engine, batch_context(2, None, None, [at(2)]), second) == 0
    assert alerts_in(stream_db, "low_inventory") == [("1", at(1), 5.0, 10.0, 1)]


# --- system alerts -----------------------------------------------------------------------------


def progress(
    batch_id: int,
    duration_ms: int = 1000,
    rows: int = 100,
    input_rate: float = 100.0,
    processed_rate: float = 200.0,
    state_rows: int | None = None,
) -> dict:
    return {
        "id": "q-1",
        "name": "orders",
        "batchId": batch_id,
        "timestamp": f"2026-03-02T10:00:{batch_id:02d}.000Z",
        "batchDuration": duration_ms,
        "numInputRows": rows,
        "inputRowsPerSecond": input_rate,
        "processedRowsPerSecond": processed_rate,
        "stateOperators": [] if state_rows is None else [{"numRowsTotal": state_rows}],
    }


SYSTEM = SystemParams(backlog_batches=3, state_growth_batches=3, severity="warning")


def test_system_rules_quiet_on_a_healthy_query() -> None:
    healthy = [progress(i, state_rows=100 + (i % 2)) for i in range(10)]
    assert system_alerts(healthy, SYSTEM, trigger_seconds=5) == []


def test_system_rule_slow_batches_raise_once_per_episode() -> None:
    durations = [1000, 6000, 7000, 2000, 9000]
    raised = system_alerts(
        [progress(i, duration_ms=d) for i, d in enumerate(durations)], SYSTEM, trigger_seconds=5
    )
    assert [(a["alert_key"], a["value"], a["threshold"]) for a in raised] == [
        ("orders:batch_duration", 6000.0, 5000.0),
        ("orders:batch_duration", 9000.0, 5000.0),
    ]
    assert raised[0]["alert_id"] == alert_id("system_performance", "orders:batch_duration", "1")
    assert raised[0]["event_time"] == dt.datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC)


def test_system_rule_duration_falls_back_to_trigger_execution() -> None:
    report = progress(0)
    del report["batchDuration"]
    report["durationMs"] = {"triggerExecution": 8000}
    assert len(system_alerts([report], SYSTEM, trigger_seconds=5)) == 1


def test_system_rule_backlog_needs_batches_in_a_row() -> None:
    behind = {"input_rate": 500.0, "processed_rate": 200.0}
    interrupted = [progress(0, **behind), progress(1, **behind), progress(2), progress(3, **behind)]
    assert system_alerts(interrupted, SYSTEM, trigger_seconds=5) == []
    # idle batches (no input) are not "behind"
    idle = [progress(i, rows=0, **behind) for i in range(5)]
    assert system_alerts(idle, SYSTEM, trigger_seconds=5) == []
    growing = [progress(i, **behind) for i in range(6)]
    raised = system_alerts(growing, SYSTEM, trigger_seconds=5)
    assert [(a["alert_key"], a["event_time"].second) for a in raised] == [("orders:backlog", 2)]


def test_system_rule_state_rows_rising() -> None:
    flat = [progress(i, state_rows=n) for i, n in enumerate([10, 20, 30, 30, 40, 50])]
    assert system_alerts(flat, SYSTEM, trigger_seconds=5) == []
    rising = [progress(i, state_rows=10 * (i + 1)) for i in range(6)]
    raised = system_alerts(rising, SYSTEM, trigger_seconds=5)
    assert [(a["alert_key"], a["value"], a["threshold"]) for a in raised] == [
        ("orders:state_growth", 40.0, 30.0)
    ]


def test_system_rule_reads_the_external_state_figure_without_state_operators() -> None:
    reports = [progress(i) | {"sparkmartOpenStateRows": 10 * (i + 1)} for i in range(4)]
    raised = system_alerts(reports, SYSTEM, trigger_seconds=5)
    assert [a["alert_key"] for a in raised] == ["orders:state_growth"]


@pytest.mark.postgres
def test_open_state_rows_counts_rows_of_minutes_not_closed(stream_db: PgSettings) -> None:
    with connect(stream_db) as conn:
        for minute, closed in ((0, True), (1, False), (2, False)):
            conn.execute(
                "INSERT INTO streaming.sales_per_minute (window_start, window_end, orders, units, "
                "revenue, is_closed) VALUES (%s, %s, 1, 1, 0, %s)",
                (at(minute), at(minute + 1), closed),
            )
            conn.execute(UPSERT_CUSTOMER_MINUTE, (at(minute), 1, 1))
            conn.execute(UPSERT_CUSTOMER_MINUTE, (at(minute), 2, 1))
        conn.commit()
    assert open_state_rows(stream_db) == 2 + 4  # two open minutes, two customers in each


@pytest.mark.postgres
def test_listener_sees_a_real_query_and_writes_its_alerts(
    spark: SparkSession, stream_db: PgSettings
) -> None:
    # a 1 ms "trigger interval" makes every batch slow, so the rules must raise on batch one
    listener = SystemAlertListener(SYSTEM, trigger_seconds=0.001, pg=stream_db)
    spark.streams.addListener(listener)
    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 20)
        .load()
        .writeStream.format("memory")
        .queryName("alerts_listener_probe")
        .trigger(processingTime="200 milliseconds")
        .start()
    )
    try:
        deadline = time.monotonic() + 120  # a wait for events, not a speed assertion
        while time.monotonic() < deadline and not (listener.progress_seen >= 2 and listener.recent):
            query.processAllAvailable()
            time.sleep(0.5)
    finally:
        query.stop()
        spark.streams.removeListener(listener)
    assert listener.progress_seen >= 2
    first = listener.recent[0]
    assert first["alert_key"] == "alerts_listener_probe:batch_duration"
    stored = query_rows(
        stream_db,
        "SELECT alert_type, alert_key, query_name FROM streaming.alerts WHERE alert_id = %s",
        (first["alert_id"],),
    )
    assert stored == [
        ("system_performance", "alerts_listener_probe:batch_duration", "alerts_listener_probe")
    ]


# --- the engine from gold files -------------------------------------------------------------------


@pytest.mark.postgres
def test_create_loads_gold_context_and_fills_inventory(
    spark: SparkSession, stream_db: PgSettings, tmp_path
) -> None:
    settings = load_settings(CONFIG_DIR, profile="test", data_dir=tmp_path)
    gold = settings.path("gold")
    spark.createDataFrame(
        [(1, Decimal("10.00"), 40), (2, Decimal("99.00"), None)],
        "product_id long, price decimal(10,2), stock_quantity int",
    ).write.parquet(str(gold / "products"))
    spark.createDataFrame(
        [(1, 60, 30), (2, 0, 0)], "product_id long, units_sold long, orders long"
    ).write.parquet(str(gold / "product_performance"))
    spark.createDataFrame([(7, None)], "customer_id long, segment string").write.parquet(
        str(gold / "customers")
    )
    spark.createDataFrame(
        [(7, dt.date(2025, 1, 1), dt.date(2025, 1, 30), 6, 20.0, 900.0)],
        "customer_id long, first_order_date date, last_order_date date, orders long, "
        "median_order_value double, predicted_clv double",
    ).write.parquet(str(gold / "customer_ltv"))

    engine = AlertEngine.create(spark, settings, stream_db)
    # 60 units over 30 days = 2 a day x 14 lead days; product 2 has no stock: not loaded
    assert query_rows(
        stream_db, "SELECT product_id, stock_quantity, reorder_threshold FROM streaming.inventory"
    ) == [(1, 40, 28)]
    events = events_frame(spark, [event("e1", 7, 1, 2, "10.00"), event("e2", 7, 1, 50, "10")])
    # normal line = 10 x 2 = 20, limit 160: e2 (500) is unusual; 500 is not over 25 x 20
    raised = engine.event_alerts(events, 0).select("alert_type", "event_id", "threshold")
    assert [tuple(r) for r in raised.collect()] == [("unusual_amount", "e2", 160.0)]


# --- scoring -----------------------------------------------------------------------------------


def planted() -> list[dict]:
    return [
        {"kind": "large_order", "event_id": "e1", "customer_id": 1, "event_time": at(1)},
        {"kind": "large_order", "event_id": "e2", "customer_id": 2, "event_time": at(2.2)},
        {"kind": "customer_burst", "customer_id": 3, "start": at(3.8), "end": at(4.1)},
        {"kind": "sales_drop", "start": "2026-03-02T10:10:00Z", "end": "2026-03-02T10:13:00Z"},
        {"kind": "late", "event_id": "e9"},
    ]


def caught() -> list[dict]:
    return [
        {"alert_type": "unusual_amount", "alert_key": "1", "event_id": "e1", "event_time": at(1)},
        # another order of the same customer in the same minute also counts
        {"alert_type": "unusual_amount", "alert_key": "2", "event_id": "x", "event_time": at(2.5)},
        {"alert_type": "customer_burst", "alert_key": "3", "event_time": at(3)},
        {"alert_type": "sales_drop", "alert_key": "orders_per_minute", "event_time": at(11)},
        {"alert_type": "sales_drop", "alert_key": "orders_per_minute", "event_time": at(12)},
        {"alert_type": "high_value_customer", "alert_key": "5", "event_time": at(1)},
    ]


def test_score_perfect() -> None:
    scores = score_alerts(caught(), planted())
    assert {k: (s.precision, s.recall) for k, s in scores.items()} == {
        "large_order": (1.0, 1.0),
        "customer_burst": (1.0, 1.0),
        "sales_drop": (1.0, 1.0),
    }
    assert all(s.meets_target for s in scores.values())


def test_score_false_positive_lowers_precision_and_miss_lowers_recall() -> None:
    alerts = caught()
    alerts.append({"alert_type": "customer_burst", "alert_key": "3", "event_time": at(9)})
    alerts.append({"alert_type": "sales_drop", "alert_key": "x", "event_time": at(13)})  # outside
    alerts = [a for a in alerts if a.get("event_id") != "e1"]  # the first large order is missed
    scores = score_alerts(alerts, planted())
    assert (scores["customer_burst"].precision, scores["customer_burst"].recall) == (0.5, 1.0)
    assert scores["sales_drop"].precision == pytest.approx(2 / 3)
    assert (scores["large_order"].precision, scores["large_order"].recall) == (1.0, 0.5)
    assert not scores["large_order"].meets_target
    table = format_scores(scores)
    assert "large_order" in table and "0.500" in table and "MISSED" in table


def test_score_nothing_planted_nothing_raised() -> None:
    scores = score_alerts([], [])
    assert all(s.precision is None and s.recall is None for s in scores.values())


@pytest.mark.postgres
def test_load_and_score_reads_the_alerts_table_and_the_log(stream_db: PgSettings, tmp_path) -> None:
    with connect(stream_db) as conn, conn.cursor() as cursor:
        rows = [
            {
                **{c: None for c in ALERT_SCHEMA.fieldNames()},
                **alert,
                "alert_id": alert_id(alert["alert_type"], alert["alert_key"], str(i)),
                "severity": "warning",
                "message": "m",
                "detected_at": at(20),
            }
            for i, alert in enumerate(caught())
        ]
        assert insert_alerts(cursor, rows, "orders", 3) == len(rows)
        assert insert_alerts(cursor, rows, "orders", 4) == 0  # raised once only
        conn.commit()
    log = tmp_path / "anomalies"
    log.mkdir()
    fields = ("kind", "event_id", "customer_id", "product_id", "event_time", "start", "end")
    records = [dict.fromkeys(fields) | {"detail": ""} | record for record in planted()]
    (log / "anomalies-0.jsonl").write_text(
        "\n".join(json.dumps(r, default=dt.datetime.isoformat) for r in records) + "\n"
    )
    scores = load_and_score(stream_db, log)
    assert {k: (s.planted, s.alerts, s.recall) for k, s in scores.items()} == {
        "large_order": (2, 2, 1.0),
        "customer_burst": (1, 1, 1.0),
        "sales_drop": (1, 2, 1.0),
    }
