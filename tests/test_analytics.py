"""Gold layer: every transform on hand-made rows, then the marts against DuckDB on shared Parquet.

Expected values below are computed by hand (the arithmetic is in the comments), not by running
the code under test.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch import analytics, enrich
from sparkmart.schemas import CUSTOMERS_RAW, ORDERS_RAW, PRODUCTS_RAW

D = Decimal
UPDATED = dt.datetime(2025, 1, 1)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def order(
    order_id: int,
    customer_id: int,
    product_id: int,
    order_ts: str,
    status: str = "delivered",
    quantity: int = 1,
    unit_price: str = "10.00",
    discount: str | None = "0",
    shipped: str | None = None,
    delivered: str | None = None,
) -> tuple:
    """One ORDERS_RAW row; money as strings so the decimals are exact."""
    return (
        order_id,
        customer_id,
        product_id,
        quantity,
        D(unit_price),
        None if discount is None else D(discount),
        ts(order_ts),
        status,
        "card",
        ts(shipped) if shipped else None,
        ts(delivered) if delivered else None,
        UPDATED,
    )


def product(
    product_id: int,
    category: str,
    price: str = "10.00",
    cost: str = "5.00",
    stock: int | None = 10,
) -> tuple:
    return (product_id, f"p{product_id}", category, "acme", D(price), D(cost), stock, UPDATED)


def customer(customer_id: int) -> tuple:
    return (
        customer_id,
        "Ada",
        "L",
        f"c{customer_id}@x.org",
        "+100",
        "Paris",
        "FR",
        day("2023-01-01"),
        UPDATED,
    )


def orders_df(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, ORDERS_RAW)


def products_df(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, PRODUCTS_RAW)


def customers_df(spark: SparkSession, ids: list[int]) -> DataFrame:
    return spark.createDataFrame([customer(i) for i in ids], CUSTOMERS_RAW)


def lines_of(spark: SparkSession, orders: list[tuple], products: list[tuple]) -> DataFrame:
    return enrich.order_lines(orders_df(spark, orders), products_df(spark, products))


# --- enrich --------------------------------------------------------------------------------


def test_order_lines_net_revenue_cost_margin(spark: SparkSession) -> None:
    products = [product(1, "books", cost="4.00"), product(2, "toys", cost="7.50")]
    orders = [
        order(1, 1, 1, "2024-03-01 10:00:00", "delivered", 3, "10.00", "0.100"),
        order(2, 1, 2, "2024-03-01 23:59:59", "shipped", 1, "19.99", "0.125"),
        order(3, 2, 2, "2024-03-02 00:00:00", "cancelled", 2, "15.55", None),
        order(4, 2, 9, "2024-03-03 08:00:00", "processing", 1, "5.00", "0"),
        order(5, 3, 1, "2024-03-04 08:00:00", "returned", 7, "3.35", "0.333"),
        order(6, 3, 1, "2024-03-05 08:00:00", "delivered", 1, "0.01", "0.500"),
    ]
    lines = lines_of(spark, orders, products).select(
        "order_id", "order_date", "category", "net_revenue", "cost", "margin", "is_realized"
    )
    assertDataFrameEqual(
        lines,
        [
            # 3 x 10.00 x 0.9 = 27.00; cost 3 x 4.00
            Row(1, day("2024-03-01"), "books", D("27.00"), D("12.00"), D("15.00"), True),
            # 19.99 x 0.875 = 17.49125 -> 17.49
            Row(2, day("2024-03-01"), "toys", D("17.49"), D("7.50"), D("9.99"), True),
            # null discount = no discount: 2 x 15.55
            Row(3, day("2024-03-02"), "toys", D("31.10"), D("15.00"), D("16.10"), False),
            # unknown product: kept, no category, no cost
            Row(4, day("2024-03-03"), None, D("5.00"), None, None, False),
            # 7 x 3.35 = 23.45 x 0.667 = 15.64115 -> 15.64
            Row(5, day("2024-03-04"), "books", D("15.64"), D("28.00"), D("-12.36"), False),
            # 0.005 rounds half up to 0.01
            Row(6, day("2024-03-05"), "books", D("0.01"), D("4.00"), D("-3.99"), True),
        ],
    )


def test_order_lines_broadcast_hint_changes_plan_not_values(spark: SparkSession) -> None:
    orders = orders_df(spark, [order(i, i, 1 + i % 2, "2024-03-01 10:00:00") for i in range(8)])
    products = products_df(spark, [product(1, "books"), product(2, "toys")])
    hinted = enrich.order_lines(orders, products, broadcast_products=True)
    plain = enrich.order_lines(orders, products, broadcast_products=False)
    assert "BroadcastHashJoin" in hinted._jdf.queryExecution().executedPlan().toString()
    # two rows would be broadcast by Spark on its own: False must prevent it
    assert "SortMergeJoin" in plain._jdf.queryExecution().executedPlan().toString()
    assertDataFrameEqual(hinted, plain)
    assert enrich.should_broadcast(1_000, threshold_mb=32) is True
    assert enrich.should_broadcast(1_000_000, threshold_mb=32) is False  # ~61 MB
    assert enrich.should_broadcast(1_000_000, threshold_mb=64) is True


def test_salted_join_equals_plain_join(spark: SparkSession) -> None:
    # key 1 is hot (30 rows); key 11 has no partner on the right.
    left = spark.createDataFrame(
        [(1, f"hot{i}") for i in range(30)] + [(k, f"k{k}") for k in range(2, 12)],
        "customer_id long, payload string",
    )
    right = spark.createDataFrame(
        [(k, f"attr{k}") for k in range(1, 11)], "customer_id long, a string"
    )
    for how, hot_keys in (("inner", None), ("left", [1]), ("left_anti", [1])):
        assertDataFrameEqual(
            enrich.salted_join(left, right, "customer_id", 4, how, hot_keys),
            left.join(right, "customer_id", how),
        )
    with pytest.raises(ValueError, match="supports"):
        enrich.salted_join(left, right, "customer_id", 4, "right")


def test_salted_join_spreads_the_hot_key_over_buckets(spark: SparkSession) -> None:
    left = spark.createDataFrame([(1, i) for i in range(400)], "customer_id long, order_id long")
    right = spark.createDataFrame([(1, "x")], "customer_id long, a string")
    salted_left = left.withColumn(
        "_salt", F.pmod(F.xxhash64("customer_id", "order_id"), F.lit(4)).cast("int")
    )
    per_bucket = [row["count"] for row in salted_left.groupBy("_salt").count().collect()]
    assert len(per_bucket) == 4 and min(per_bucket) > 60  # 400 rows over 4 salts, none starved
    assert enrich.salted_join(left, right, "customer_id", 4).count() == 400


def test_key_skew_report(spark: SparkSession) -> None:
    keyed = spark.createDataFrame([("a",)] * 6 + [("b",)] * 3 + [("c",)], "customer_id string")
    report = enrich.key_skew(keyed, "customer_id", partitions=1, top_n=2)
    assertDataFrameEqual(
        report,
        [
            Row(
                rows=10,
                distinct_keys=3,
                top_keys=[Row(key="a", rows=6, share=0.6), Row(key="b", rows=3, share=0.3)],
                top_share=0.9,
                partitions=1,
                max_partition_rows=10,
                median_partition_rows=10.0,
                partition_skew=1.0,
            )
        ],
    )
    # 64 partitions for 3 keys: most are empty, median 0, the ratio is undefined (null).
    many = enrich.key_skew(keyed, "customer_id", partitions=64).first()
    assert many["max_partition_rows"] >= 6
    assert many["median_partition_rows"] == 0 and many["partition_skew"] is None


def test_customer_order_history_running_totals_and_lags(spark: SparkSession) -> None:
    products = [product(1, "books")]
    orders = [
        order(4, 1, 1, "2024-02-01 12:00:00", "returned", unit_price="15.64"),
        order(3, 1, 1, "2024-01-05 09:00:00", "shipped", unit_price="17.49"),
        order(2, 1, 1, "2024-01-05 09:00:00", "cancelled", unit_price="31.10"),
        order(1, 1, 1, "2024-01-01 10:00:00", "delivered", unit_price="27.00"),
        order(5, 2, 1, "2024-01-03 10:00:00", "delivered", unit_price="10.00"),
    ]
    history = enrich.customer_order_history(lines_of(spark, orders, products)).select(
        "order_id", "order_rank", "running_spend", "days_since_previous_order"
    )
    assertDataFrameEqual(
        history,
        [
            Row(1, 1, D("27.00"), None),
            Row(2, 2, D("27.00"), 4),  # cancelled: adds nothing
            Row(3, 3, D("44.49"), 0),  # same time as order 2: order_id breaks the tie
            Row(4, 4, D("44.49"), 27),  # returned: adds nothing
            Row(5, 1, D("10.00"), None),
        ],
    )


def test_moving_averages_need_a_full_window(spark: SparkSession) -> None:
    series = spark.createDataFrame(
        [(day(f"2024-01-0{i}"), D(f"{10 * i}.00")) for i in range(1, 7)],
        "period_start date, revenue decimal(18,2)",
    )
    averaged = enrich.with_moving_averages(series, "revenue", "period_start", windows=(3, 5))
    assertDataFrameEqual(
        averaged.select("period_start", "revenue_ma_3d", "revenue_ma_5d"),
        [
            Row(day("2024-01-01"), None, None),
            Row(day("2024-01-02"), None, None),
            Row(day("2024-01-03"), 20.0, None),  # (10 + 20 + 30) / 3
            Row(day("2024-01-04"), 30.0, None),
            Row(day("2024-01-05"), 40.0, 30.0),  # (10 + ... + 50) / 5
            Row(day("2024-01-06"), 50.0, 40.0),
        ],
    )


@pytest.mark.parametrize("method", ["pandas", "builtin"])
def test_order_value_stats_median_and_mad(spark: SparkSession, method: str) -> None:
    products = [product(1, "books")]
    orders = [
        order(1, 1, 1, "2024-01-01 10:00:00", unit_price="10.00"),
        order(2, 1, 1, "2024-01-02 10:00:00", unit_price="20.00"),
        order(3, 1, 1, "2024-01-03 10:00:00", "shipped", unit_price="30.00"),
        order(4, 1, 1, "2024-01-04 10:00:00", unit_price="100.00"),
        order(5, 1, 1, "2024-01-05 10:00:00", "cancelled", unit_price="1000.00"),
        order(6, 2, 1, "2024-01-01 10:00:00", unit_price="5.00"),
        order(7, 2, 1, "2024-01-02 10:00:00", unit_price="7.00"),
        order(8, 2, 1, "2024-01-03 10:00:00", unit_price="9.00"),
        order(9, 3, 1, "2024-01-03 10:00:00", "returned", unit_price="9.00"),
    ]
    stats = enrich.customer_order_value_stats(lines_of(spark, orders, products), method)
    assertDataFrameEqual(
        stats,
        [
            # 10, 20, 30, 100 -> median 25; deviations 15, 5, 5, 75 -> median 10
            Row(customer_id=1, median_order_value=25.0, order_value_mad=10.0),
            # 5, 7, 9 -> median 7; deviations 2, 0, 2 -> median 2
            Row(customer_id=2, median_order_value=7.0, order_value_mad=2.0),
        ],
    )


# --- gold entities -------------------------------------------------------------------------


def test_customers_gold(spark: SparkSession) -> None:
    as_of = day("2024-12-31")
    products = [product(1, "books"), product(2, "toys"), product(3, "games")]
    orders = [
        # customer 1: books 10 and toys 10 tie -> "books"; games only in cancelled/returned
        order(1, 1, 1, "2024-12-31 09:00:00", "delivered", unit_price="10.00"),
        order(2, 1, 2, "2024-06-01 09:00:00", "shipped", unit_price="10.00"),
        order(3, 1, 3, "2024-07-01 09:00:00", "cancelled", unit_price="50.00"),
        order(4, 1, 3, "2024-08-01 09:00:00", "returned", unit_price="60.00"),
        # customer 2: a single order 535 days before as_of, outside the activity window
        order(5, 2, 2, "2023-07-15 09:00:00", "delivered", unit_price="30.00"),
        # customer 4: processing order 90 days before as_of: active, no value yet
        order(6, 4, 1, "2024-10-02 09:00:00", "processing", unit_price="100.00"),
        # customer 5: only an order after as_of
        order(7, 5, 1, "2025-01-05 09:00:00", "delivered", unit_price="10.00"),
    ]
    customers = customers_df(spark, [1, 2, 3, 4, 5]).withColumn("_source", F.lit("parquet"))
    lines = lines_of(spark, orders, products)
    gold = analytics.customers_gold(customers, lines, as_of)
    assert gold.columns == analytics.GOLD_COLUMNS["customers"]
    assertDataFrameEqual(
        gold.select(
            "customer_id", "lifetime_value", "activity_score", "preferred_category", "segment"
        ),
        [
            # 4 orders in window, last today: 100 x (0.5 x 1 + 0.5 x ln 5 / ln 13) = 81.37
            Row(1, D("20.00"), 81.37, "books", None),
            Row(2, D("30.00"), 0.0, "toys", None),
            Row(3, D("0.00"), 0.0, None, None),
            # 100 x (0.5 x (1 - 90/365) + 0.5 x ln 2 / ln 13) = 51.18
            Row(4, D("0.00"), 51.18, None, None),
            Row(5, D("0.00"), 0.0, None, None),
        ],
    )


def test_products_gold(spark: SparkSession) -> None:
    as_of = day("2024-12-31")  # popularity window: 2024-10-03 .. 2024-12-31
    products = [
        product(1, "books", "10.00", "6.00", 50),
        product(2, "books", "20.00", "15.00", 0),
        product(3, "toys", "3.00", "1.00", 8),
        product(4, "toys", "0.00", "1.00", None),
        product(5, "toys", "5.00", "5.00", 10),
    ]
    orders = [
        order(1, 1, 1, "2024-12-01 10:00:00", "delivered", quantity=3),
        order(2, 1, 1, "2024-06-01 10:00:00", "shipped", quantity=2),
        order(3, 1, 1, "2024-11-01 10:00:00", "cancelled", quantity=5),
        order(4, 1, 2, "2024-12-15 10:00:00", "delivered", quantity=1),
        order(5, 1, 2, "2024-10-02 10:00:00", "delivered", quantity=4),  # 90 days ago: outside
        order(6, 1, 3, "2024-10-03 10:00:00", "delivered", quantity=2),
    ]
    lines = lines_of(spark, orders, products)
    gold = analytics.products_gold(products_df(spark, products), lines, as_of)
    assert gold.columns == analytics.GOLD_COLUMNS["products"]
    assertDataFrameEqual(
        gold.select(
            "product_id",
            "popularity_score",
            "profit_margin",
            "inventory_turnover",
            "recommendation_rank",
        ),
        [
            # units in 90 days: p1 3, p2 1, p3 2, p4 0, p5 0 -> percent rank over 5 products
            Row(1, 100.0, 0.4, 0.1, None),  # 4 below / 4; (10-6)/10; 5 units / 50 in stock
            Row(2, 50.0, 0.25, None, None),  # 2 below / 4; no stock -> no turnover
            Row(3, 75.0, 0.6667, 0.25, None),  # 2 / 8
            Row(4, 0.0, None, None, None),  # price 0: no margin
            Row(5, 0.0, 0.0, 0.0, None),
        ],
    )


def test_orders_gold_processing_time_and_revenue_impact(spark: SparkSession) -> None:
    orders = [
        order(1, 1, 1, "2024-03-01 10:00:00", "delivered", 2, "10.00", "0.100",
              shipped="2024-03-02 12:30:00", delivered="2024-03-04 09:00:00"),
        order(2, 1, 1, "2024-03-01 10:00:00", "processing"),
        order(3, 1, 1, "2024-03-01 23:59:59", "returned", 1, "15.55",
              shipped="2024-03-02 00:00:01", delivered="2024-03-05 00:00:00"),
        order(4, 1, 1, "2024-03-10 10:00:00", "cancelled"),
        order(5, 1, 1, "2024-03-31 23:00:00", "shipped", 3, "9.99", shipped="2024-03-31 23:45:00"),
        order(6, 1, 1, "2024-04-01 00:00:00", "delivered"),  # after as_of
    ]  # fmt: skip
    gold = analytics.orders_gold(orders_df(spark, orders), day("2024-03-31"))
    assert gold.columns == analytics.GOLD_COLUMNS["orders"]
    assertDataFrameEqual(
        gold.select(
            "order_id", "processing_time", "revenue_impact", "fraud_score", "customer_satisfaction"
        ),
        [
            Row(1, 26.5, D("18.00"), None, None),  # 26 h 30 min; 2 x 10.00 x 0.9
            Row(2, None, D("0.00"), None, None),
            Row(3, 2 / 3600, D("-15.55"), None, None),  # 2 seconds; refunded
            Row(4, None, D("0.00"), None, None),
            Row(5, 0.75, D("29.97"), None, None),
        ],
    )


# --- marts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pandas", "builtin"])
def test_customer_ltv(spark: SparkSession, method: str) -> None:
    as_of = day("2024-12-31")
    products = [product(1, "books")]
    orders = [
        order(1, 1, 1, "2024-01-01 10:00:00", unit_price="100.00"),
        order(2, 1, 1, "2024-07-01 10:00:00", "shipped", unit_price="50.00"),
        order(3, 1, 1, "2024-12-01 10:00:00", unit_price="30.00"),
        order(4, 1, 1, "2024-11-01 10:00:00", "cancelled", unit_price="999.00"),
        order(5, 2, 1, "2024-12-31 10:00:00", unit_price="40.00"),
        order(6, 3, 1, "2024-05-01 10:00:00", "returned", unit_price="40.00"),
    ]
    params = analytics.GoldParams(order_value_stats=method)
    ltv = analytics.customer_ltv(lines_of(spark, orders, products), as_of, params)
    assert ltv.columns == analytics.GOLD_COLUMNS["customer_ltv"]
    # customer 1: observed 366 days (2024 is a leap year), last order 30 days ago
    rate_1 = 3 * 365 / 366
    clv_1 = round(60.0 * rate_1 * math.exp(-30 / 365), 2)
    # customer 2: first order today: observed period floored at 30 days
    rate_2 = 365 / 30
    assertDataFrameEqual(
        ltv,
        [
            Row(1, day("2024-01-01"), day("2024-12-01"), 3, D("180.00"), D("60.00"),
                50.0, 20.0, 335, 30, rate_1, D(f"{clv_1:.2f}")),
            Row(2, day("2024-12-31"), day("2024-12-31"), 1, D("40.00"), D("40.00"),
                40.0, 0.0, 0, 0, rate_2, D("486.67")),
        ],
    )  # fmt: skip


def test_product_performance_rank_within_category(spark: SparkSession) -> None:
    products = [
        product(1, "books", cost="20.00"),
        product(2, "books", cost="60.00"),
        product(3, "books", cost="2.00"),
        product(4, "toys", cost="5.00"),
        product(5, "toys", cost="1.00"),
    ]
    orders = [
        order(1, 1, 1, "2024-01-01 10:00:00", quantity=2, unit_price="50.00"),
        order(2, 1, 2, "2024-01-02 10:00:00", quantity=1, unit_price="100.00"),
        order(3, 1, 3, "2024-01-03 10:00:00", quantity=3, unit_price="10.00"),
        order(4, 1, 3, "2024-01-03 11:00:00", "cancelled", quantity=9, unit_price="10.00"),
        order(5, 1, 4, "2024-01-04 10:00:00", "shipped", quantity=4, unit_price="20.00"),
    ]
    performance = analytics.product_performance(
        products_df(spark, products), lines_of(spark, orders, products), day("2024-01-31")
    ).select("product_id", "units_sold", "orders", "revenue", "cost", "margin", "margin_rate",
             "category_rank")  # fmt: skip
    assertDataFrameEqual(
        performance,
        [
            Row(1, 2, 1, D("100.00"), D("40.00"), D("60.00"), 0.6, 1),  # tie with p2: both 1
            Row(2, 1, 1, D("100.00"), D("60.00"), D("40.00"), 0.4, 1),
            Row(3, 3, 1, D("30.00"), D("6.00"), D("24.00"), 0.8, 2),  # dense: 2, not 3
            Row(4, 4, 1, D("80.00"), D("20.00"), D("60.00"), 0.75, 1),
            Row(5, 0, 0, D("0.00"), D("0.00"), D("0.00"), None, 2),  # no sales: kept
        ],
    )


def test_sales_trends_growth_and_moving_averages(spark: SparkSession) -> None:
    as_of = day("2024-03-05")  # a Tuesday
    products = [product(1, "books")]
    orders = [
        order(1, 1, 1, "2024-01-30 10:00:00", unit_price="10.00"),
        order(2, 1, 1, "2024-02-05 10:00:00", quantity=2, unit_price="10.00"),
        order(3, 2, 1, "2024-02-05 11:00:00", "cancelled", unit_price="50.00"),
        order(4, 2, 1, "2024-02-20 10:00:00", "shipped", unit_price="30.00"),
        order(5, 3, 1, "2024-03-04 10:00:00", unit_price="25.00"),
        order(6, 3, 1, "2024-03-05 10:00:00", "processing", unit_price="40.00"),
        order(7, 3, 1, "2024-03-06 10:00:00", unit_price="99.00"),  # after as_of
    ]
    trends = analytics.sales_trends(lines_of(spark, orders, products), as_of).cache()
    assert trends.columns == analytics.GOLD_COLUMNS["sales_trends"]
    columns = ["period_start", "period_end", "is_complete", "orders_placed", "orders", "units",
               "revenue", "orders_growth", "revenue_growth"]  # fmt: skip
    assertDataFrameEqual(
        trends.filter("grain = 'month'").select(*columns),
        [
            Row(day("2024-01-01"), day("2024-01-31"), True, 1, 1, 1, D("10.00"), None, None),
            Row(day("2024-02-01"), day("2024-02-29"), True, 3, 2, 3, D("50.00"), 1.0, 4.0),
            Row(day("2024-03-01"), day("2024-03-31"), False, 2, 1, 1, D("25.00"), -0.5, -0.5),
        ],
    )
    assertDataFrameEqual(
        trends.filter("grain = 'week'").select(*columns),
        [
            Row(day("2024-01-29"), day("2024-02-04"), True, 1, 1, 1, D("10.00"), None, None),
            Row(day("2024-02-05"), day("2024-02-11"), True, 2, 1, 2, D("20.00"), 0.0, 1.0),
            Row(day("2024-02-12"), day("2024-02-18"), True, 0, 0, 0, D("0.00"), -1.0, -1.0),
            Row(day("2024-02-19"), day("2024-02-25"), True, 1, 1, 1, D("30.00"), None, None),
            Row(day("2024-02-26"), day("2024-03-03"), True, 0, 0, 0, D("0.00"), -1.0, -1.0),
            Row(day("2024-03-04"), day("2024-03-10"), False, 2, 1, 1, D("25.00"), None, None),
        ],
    )
    daily = trends.filter("grain = 'day'")
    assert daily.count() == 36  # 2024-01-30 .. 2024-03-05, empty days included
    picked = [day(d) for d in ("2024-01-31", "2024-02-04", "2024-02-05", "2024-02-26",
                               "2024-03-05")]  # fmt: skip
    assertDataFrameEqual(
        daily.filter(F.col("period_start").isin(picked)).select(
            "period_start", "revenue", "revenue_growth", "revenue_ma_7d", "revenue_ma_28d"
        ),
        [
            Row(day("2024-01-31"), D("0.00"), -1.0, None, None),
            Row(day("2024-02-04"), D("0.00"), None, None, None),  # 6 days of history only
            Row(day("2024-02-05"), D("20.00"), None, 30 / 7, None),  # 01-30..02-05: 10 + 20
            Row(day("2024-02-26"), D("0.00"), None, 30 / 7, 60 / 28),  # 28th day: 10 + 20 + 30
            Row(day("2024-03-05"), D("0.00"), -1.0, 25 / 7, 55 / 28),  # 02-07..03-05: 30 + 25
        ],
    )
    trends.unpersist()


def test_cohorts_retention(spark: SparkSession) -> None:
    products = [product(1, "books")]
    orders = [
        order(1, 1, 1, "2024-01-10 10:00:00", unit_price="10.00"),
        order(2, 1, 1, "2024-02-20 10:00:00", unit_price="20.00"),
        order(3, 1, 1, "2024-03-01 10:00:00", unit_price="5.00"),
        order(4, 2, 1, "2024-01-25 10:00:00", unit_price="30.00"),
        order(5, 2, 1, "2024-03-10 10:00:00", "shipped", unit_price="40.00"),
        order(6, 3, 1, "2023-12-20 10:00:00", "cancelled", unit_price="15.00"),
        order(7, 3, 1, "2024-02-02 10:00:00", unit_price="15.00"),
        order(8, 4, 1, "2024-02-28 10:00:00", unit_price="7.00"),
        order(9, 4, 1, "2024-02-29 10:00:00", unit_price="3.00"),
        order(10, 5, 1, "2024-01-05 10:00:00", "returned", unit_price="9.00"),
    ]
    result = analytics.cohorts(lines_of(spark, orders, products), day("2024-03-15"))
    assert result.columns == analytics.GOLD_COLUMNS["cohorts"]
    assertDataFrameEqual(
        result,
        [
            # January cohort: customers 1 and 2
            Row(day("2024-01-01"), 0, 2, 2, 1.0, D("40.00")),
            Row(day("2024-01-01"), 1, 2, 1, 0.5, D("20.00")),
            Row(day("2024-01-01"), 2, 2, 2, 1.0, D("45.00")),
            # February cohort: customer 3 (earlier order cancelled) and customer 4
            Row(day("2024-02-01"), 0, 2, 2, 1.0, D("25.00")),
            Row(day("2024-02-01"), 1, 2, 0, 0.0, D("0.00")),
        ],
    )


# --- the whole gold layer, and an independent check -----------------------------------------

START = dt.datetime(2024, 1, 1)
AS_OF = day("2025-06-30")  # orders run to 2025-12-30: the cut-off is exercised too


def unit(column: str, salt: int) -> F.Column:
    """A deterministic uniform number in [0, 1) from a row id."""
    return (F.abs(F.xxhash64(F.col(column), F.lit(salt))) % 1_000_003) / F.lit(1_000_003.0)


def synthetic_silver(spark: SparkSession, customers: int, products: int, orders: int):
    """Silver-shaped data with heavy customers, Zipf-like products and every order status."""
    customers_silver = spark.range(1, customers + 1).select(
        F.col("id").alias("customer_id"),
        F.lit("first").alias("first_name"),
        F.lit("last").alias("last_name"),
        F.concat(F.lit("c"), F.col("id"), F.lit("@x.org")).alias("email"),
        F.lit("+100").alias("phone"),
        F.lit("Lyon").alias("city"),
        F.lit("FR").alias("country"),
        F.date_add(F.lit(day("2023-01-01")), (unit("id", 1) * 365).cast("int")).alias(
            "signup_date"
        ),
        F.lit(UPDATED).alias("updated_at"),
        F.lit("generated").alias("_source"),  # lineage: must be ignored
    )
    price = (F.lit(2) + F.floor(unit("id", 2) * 20_000) / 100).cast("decimal(10,2)")
    products_silver = spark.range(1, products + 1).select(
        F.col("id").alias("product_id"),
        F.concat(F.lit("product "), F.col("id")).alias("name"),
        F.element_at(
            F.array(*[F.lit(c) for c in ("books", "toys", "games", "garden", "music")]),
            (F.col("id") % 5 + 1).cast("int"),
        ).alias("category"),
        F.lit("acme").alias("brand"),
        price.alias("price"),
        (price * (F.lit(0.4) + unit("id", 3) * 0.5)).cast("decimal(10,2)").alias("cost"),
        (unit("id", 4) * 500).cast("int").alias("stock_quantity"),
        F.lit(UPDATED).alias("updated_at"),
    )
    heavy = unit("id", 5) < 0.2  # 20% of orders belong to 5 heavy customers
    status_draw = unit("id", 6)
    status = (
        F.when(status_draw < 0.70, "delivered")
        .when(status_draw < 0.80, "shipped")
        .when(status_draw < 0.85, "processing")
        .when(status_draw < 0.93, "cancelled")
        .otherwise("returned")
    )
    order_ts = F.timestamp_seconds(
        F.lit(int(START.replace(tzinfo=dt.timezone.utc).timestamp()))
        + (unit("id", 7) * 730 * 86_400).cast("long")
    )
    shipped_ts = F.when(
        F.col("status").isin("delivered", "shipped", "returned"),
        F.col("order_ts") + F.make_interval(hours=(unit("order_id", 8) * 72).cast("int")),
    )
    orders_silver = (
        spark.range(1, orders + 1)
        .select(
            F.col("id").alias("order_id"),
            F.when(heavy, (F.col("id") % 5) + 1)
            .otherwise(F.floor(unit("id", 9) * customers) + 1)
            .cast("long")
            .alias("customer_id"),
            (F.floor(F.pow(unit("id", 10), 3) * products) + 1).cast("long").alias("product_id"),
            (F.floor(unit("id", 11) * 5) + 1).cast("int").alias("quantity"),
            (F.lit(1) + F.floor(unit("id", 12) * 30_000) / 100)
            .cast("decimal(10,2)")
            .alias("unit_price"),
            F.element_at(
                F.array(*[F.lit(D(x)) for x in ("0", "0.05", "0.1", "0.125", "0.333")]),
                (F.floor(unit("id", 13) * 5) + 1).cast("int"),
            )
            .cast("decimal(4,3)")
            .alias("discount"),
            order_ts.alias("order_ts"),
            status.alias("status"),
            F.lit("card").alias("payment_method"),
        )
        .withColumn("shipped_ts", shipped_ts)
        .withColumn(
            "delivered_ts",
            F.when(
                F.col("status").isin("delivered", "returned"),
                F.col("shipped_ts") + F.expr("INTERVAL 2 DAYS"),
            ),
        )
        .withColumn("updated_at", F.lit(UPDATED))
        .withColumn("_ingested_at", F.lit(UPDATED))  # lineage: must be ignored
    )
    return customers_silver, products_silver, orders_silver


@pytest.fixture(scope="module")
def silver_parquet(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mid-sized synthetic silver layer written once as Parquet, read by Spark and DuckDB."""
    root = tmp_path_factory.mktemp("silver")
    frames = synthetic_silver(spark, customers=2_000, products=400, orders=30_000)
    for name, frame in zip(("customers", "products", "orders"), frames, strict=True):
        frame.coalesce(1).write.parquet(str(root / name))
    return root


@pytest.fixture(scope="module")
def gold(spark: SparkSession, silver_parquet: Path) -> dict[str, DataFrame]:
    customers, products, orders = (
        spark.read.parquet(str(silver_parquet / name))
        for name in ("customers", "products", "orders")
    )
    return analytics.build_gold(customers, products, orders, as_of=AS_OF)


def test_build_gold_outputs_match_declared_schemas(gold: dict[str, DataFrame]) -> None:
    assert set(gold) == set(analytics.GOLD_SCHEMAS)
    for name, frame in gold.items():
        declared = [(f.name, f.dataType) for f in analytics.GOLD_SCHEMAS[name].fields]
        assert [(f.name, f.dataType) for f in frame.schema.fields] == declared, name


def test_as_of_defaults_to_the_last_order_date(spark: SparkSession, silver_parquet: Path) -> None:
    orders = spark.read.parquet(str(silver_parquet / "orders"))
    last = orders.agg(F.max(F.to_date("order_ts"))).first()[0]
    assert analytics.resolve_as_of(orders) == last
    assert analytics.resolve_as_of(orders, "2025-01-31") == day("2025-01-31")
    assert last > AS_OF  # so the fixture's as_of really cuts orders off


DUCKDB_LINES = f"""
    CREATE VIEW lines AS
    SELECT o.order_id, o.customer_id, o.product_id, o.quantity, o.status,
           CAST(o.order_ts AS DATE) AS order_date,
           ROUND(o.quantity * o.unit_price * (1 - COALESCE(o.discount, 0)), 2) AS net_revenue,
           o.quantity * p.cost AS cost, p.category
    FROM orders o LEFT JOIN products p USING (product_id)
    WHERE CAST(o.order_ts AS DATE) <= DATE '{AS_OF}'
      AND o.status IN ('delivered', 'shipped')
"""


@pytest.fixture(scope="module")
def duck(silver_parquet: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute("SET TimeZone = 'UTC'")
    for name in ("customers", "products", "orders"):
        connection.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{silver_parquet / name}/*.parquet')"
        )
    connection.execute(DUCKDB_LINES)
    return connection


def _as_datetimes(frame: pd.DataFrame) -> pd.DataFrame:
    """Spark gives dates as datetime.date objects, DuckDB as datetime64: align them."""
    for column in frame.columns:
        sample = frame[column].dropna()
        if len(sample) and isinstance(sample.iloc[0], dt.date):
            frame[column] = pd.to_datetime(frame[column])
    return frame


def compare(spark_frame: DataFrame, duck_frame: pd.DataFrame, keys: list[str]) -> None:
    """Same keys, same values (money exact to the cent, rates to 1e-9 relative)."""
    ours = _as_datetimes(spark_frame.toPandas())
    theirs_all = _as_datetimes(duck_frame)
    assert len(ours) == len(theirs_all) > 0
    merged = ours.merge(theirs_all, on=keys, suffixes=("", "_duck"), validate="one_to_one")
    assert len(merged) == len(ours)
    for column in theirs_all.columns:
        if column in keys:
            continue
        mine, theirs = merged[column], merged[f"{column}_duck"]
        if pd.api.types.is_datetime64_any_dtype(theirs):
            assert (mine == theirs).all(), column
            continue
        mine, theirs = mine.astype("float64"), theirs.astype("float64")
        both_null = mine.isna() & theirs.isna()
        close = (mine - theirs).abs() <= 1e-9 + 1e-9 * theirs.abs()
        assert (both_null | close).all(), (column, merged[~(both_null | close)].head())


def test_product_performance_matches_duckdb(gold, duck) -> None:
    expected = duck.sql(
        """
        SELECT p.product_id,
               COALESCE(SUM(l.quantity), 0) AS units_sold,
               COUNT(l.order_id) AS orders,
               COALESCE(SUM(l.net_revenue), 0) AS revenue,
               COALESCE(SUM(l.cost), 0) AS cost,
               COALESCE(SUM(l.net_revenue), 0) - COALESCE(SUM(l.cost), 0) AS margin,
               DENSE_RANK() OVER (
                   PARTITION BY p.category ORDER BY COALESCE(SUM(l.net_revenue), 0) DESC
               ) AS category_rank
        FROM products p LEFT JOIN lines l USING (product_id)
        GROUP BY p.product_id, p.category
        """
    ).df()
    columns = ["product_id", "units_sold", "orders", "revenue", "cost", "margin", "category_rank"]
    compare(gold["product_performance"].select(*columns), expected, ["product_id"])


def test_customer_ltv_revenue_matches_duckdb(gold, duck) -> None:
    expected = duck.sql(
        """
        SELECT customer_id, MIN(order_date) AS first_order_date,
               MAX(order_date) AS last_order_date, COUNT(*) AS orders,
               SUM(net_revenue) AS revenue,
               -- exact half-up rounding in integer cents (DuckDB divides decimals as doubles)
               ((2 * CAST(SUM(net_revenue) * 100 AS HUGEINT) + COUNT(*)) // (2 * COUNT(*)))
                   / 100 AS avg_order_value,
               -- on doubles: a DECIMAL median is rounded to the column scale
               MEDIAN(CAST(net_revenue AS DOUBLE)) AS median_order_value
        FROM lines GROUP BY customer_id
        """
    ).df()
    columns = ["customer_id", "first_order_date", "last_order_date", "orders", "revenue",
               "avg_order_value", "median_order_value"]  # fmt: skip
    compare(gold["customer_ltv"].select(*columns), expected, ["customer_id"])


def test_monthly_sales_trends_match_duckdb(gold, duck) -> None:
    expected = duck.sql(
        """
        WITH months AS (
            SELECT DATE_TRUNC('month', order_date) AS period_start, COUNT(*) AS orders,
                   SUM(quantity) AS units, SUM(net_revenue) AS revenue
            FROM lines GROUP BY 1
        )
        SELECT period_start, orders, units, revenue,
               (revenue - LAG(revenue) OVER w) / LAG(revenue) OVER w AS revenue_growth
        FROM months WINDOW w AS (ORDER BY period_start)
        """
    ).df()
    monthly = gold["sales_trends"].filter("grain = 'month'")
    assert monthly.count() == 18  # 2024-01 .. 2025-06, every month has sales here
    compare(
        monthly.select("period_start", "orders", "units", "revenue", "revenue_growth"),
        expected,
        ["period_start"],
    )


def test_cohorts_match_duckdb(gold, duck) -> None:
    expected = duck.sql(
        """
        WITH active AS (
            SELECT DISTINCT customer_id, DATE_TRUNC('month', order_date) AS month FROM lines
        ), firsts AS (
            SELECT customer_id, MIN(month) AS cohort_month FROM active GROUP BY customer_id
        ), sizes AS (
            SELECT cohort_month, COUNT(*) AS cohort_size FROM firsts GROUP BY cohort_month
        ), revenue AS (
            SELECT f.cohort_month, DATE_TRUNC('month', l.order_date) AS month,
                   COUNT(DISTINCT l.customer_id) AS active_customers,
                   SUM(l.net_revenue) AS revenue
            FROM lines l JOIN firsts f USING (customer_id) GROUP BY 1, 2
        )
        SELECT r.cohort_month, CAST(DATE_DIFF('month', r.cohort_month, r.month) AS INTEGER)
                   AS months_since_first,
               s.cohort_size, r.active_customers,
               r.active_customers / s.cohort_size AS retention_rate, r.revenue
        FROM revenue r JOIN sizes s USING (cohort_month)
        """
    ).df()
    ours = gold["cohorts"].filter("active_customers > 0")  # DuckDB's side has no empty cells
    compare(ours, expected, ["cohort_month", "months_since_first"])
    # the grid is dense: each cohort has one row per month up to AS_OF's month
    months = pd.to_datetime(pd.Series(expected.cohort_month.unique()))
    dense_cells = sum((AS_OF.year - m.year) * 12 + AS_OF.month - m.month + 1 for m in months)
    assert gold["cohorts"].count() == dense_cells
