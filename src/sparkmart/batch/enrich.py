"""Order-level enrichment shared by the gold entities and marts.

Everything here is a pure transform (DataFrame in, DataFrame out, parameters passed in) so it can
be chained with ``DataFrame.transform`` and tested on a five-row DataFrame:

- ``order_lines``: one row per order with net revenue, cost, margin, order date and category;
- skew tools: ``key_skew`` (how unevenly a key spreads over shuffle partitions) and
  ``salted_join`` (an explicit alternative to AQE's skew-join handling);
- window functions: ``customer_order_history`` (running spend, order rank, days since the
  previous order) and ``with_moving_averages`` (trailing moving averages of a dense series);
- ``customer_order_value_stats``: robust per-customer order-value statistics (median and median
  absolute deviation), with a pandas (Arrow) implementation and a built-in one.

Definitions of every column are in ``docs/definitions.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DecimalType,
    DoubleType,
    LongType,
    StructField,
    StructType,
)

# Money types of the gold layer. They belong next to MONEY in ``sparkmart.schemas``; they live
# here until that module takes them over.
MONEY_LINE = DecimalType(14, 2)  # one order: quantity x unit price, room for 12 integer digits
MONEY_TOTAL = DecimalType(18, 2)  # sums over many orders

# Statuses whose orders count as a sale (revenue, units sold, lifetime value). ``processing`` is
# not fulfilled yet; ``cancelled`` and ``returned`` never bring money in.
REALIZED_STATUSES: tuple[str, ...] = ("delivered", "shipped")
RETURNED_STATUS = "returned"

# Memory of one product in the broadcast hash relation of (product_id, category, cost): an
# UnsafeRow of three fields, its key and link, and a dense-index slot. Measured: 1M products
# broadcast as 71.6 MiB (rows in one 64 MiB page + an 8 MB index); see docs/definitions.md.
BROADCAST_BYTES_PER_PRODUCT = 64

ORDER_VALUE_STATS_SCHEMA = StructType(
    [
        StructField("customer_id", LongType(), False),
        StructField("median_order_value", DoubleType(), True),
        StructField("order_value_mad", DoubleType(), True),
    ]
)


def select_schema_columns(df: DataFrame, schema: StructType) -> DataFrame:
    """Keep exactly the columns of ``schema``, in its order.

    Silver tables may carry lineage columns (``_source``, ``_ingested_at``...); gold starts from
    the business columns only, so lineage never leaks into marts or exports.
    """
    return df.select(*schema.fieldNames())


def net_revenue(
    quantity: str = "quantity", unit_price: str = "unit_price", discount: str = "discount"
) -> Column:
    """Net revenue of one order: quantity x unit_price x (1 - discount), rounded to cents.

    A null discount means no discount. Exact decimal arithmetic, rounded half-up once per order.
    """
    gross = F.col(quantity) * F.col(unit_price)
    return F.round(gross * (F.lit(1) - F.coalesce(F.col(discount), F.lit(0))), 2).cast(MONEY_LINE)


def is_realized(status: str = "status") -> Column:
    """True when the order counts as a sale (delivered or shipped)."""
    return F.col(status).isin(*REALIZED_STATUSES)


def should_broadcast(product_rows: int, threshold_mb: int = 32) -> bool:
    """Whether to broadcast products into the order-lines join, from a known row count.

    ``threshold_mb`` is the Spark profile's ``broadcast_threshold_mb``; the pipeline knows the
    silver row count from its audit, so the decision costs no extra job. 32 MB allows about
    520k products: the ``medium`` scale (1M products) is not broadcast.
    """
    return product_rows * BROADCAST_BYTES_PER_PRODUCT <= threshold_mb * 1024 * 1024


def order_lines(
    orders: DataFrame, products: DataFrame, broadcast_products: bool | None = None
) -> DataFrame:
    """Orders with order_date, category, unit_cost, net_revenue, cost, margin and is_realized.

    ``broadcast_products`` (decide with ``should_broadcast``): True adds a broadcast hint;
    False a shuffle-merge hint, so the products are never broadcast; None leaves the choice to
    Spark. Spark estimates a Parquet table's size from its files, which understates memory
    here: 1M products are 14 MB of Parquet but a 72 MiB broadcast relation, so left to itself
    Spark broadcasts them under a 32 MB threshold. A left join keeps orders whose product is
    unknown (category and cost null).
    """
    product_costs = products.select("product_id", "category", F.col("cost").alias("unit_cost"))
    if broadcast_products is True:
        product_costs = F.broadcast(product_costs)
    elif broadcast_products is False:
        product_costs = product_costs.hint("shuffle_merge")
    lines = orders.join(product_costs, on="product_id", how="left")
    line_cost = (F.col("quantity") * F.col("unit_cost")).cast(MONEY_LINE)
    return (
        lines.select(*orders.columns, "category", "unit_cost")
        .withColumn("order_date", F.to_date("order_ts"))
        .withColumn("net_revenue", net_revenue())
        .withColumn("cost", line_cost)
        .withColumn("margin", (F.col("net_revenue") - F.col("cost")).cast(MONEY_LINE))
        .withColumn("is_realized", F.coalesce(is_realized(), F.lit(False)))
    )


# --- skew ----------------------------------------------------------------------------------


def key_skew(df: DataFrame, key: str, partitions: int, top_n: int = 5) -> DataFrame:
    """One-row report of how unevenly ``key`` spreads rows, before choosing a skew strategy.

    Columns: rows, distinct_keys, top_keys (array of key/rows/share, largest first),
    top_share (share of rows held by the top ``top_n`` keys), partitions, max_partition_rows,
    median_partition_rows, partition_skew (max / median). Partition sizes are those of a
    shuffle on ``key`` into ``partitions`` partitions: Spark's hash partitioning is
    pmod(murmur3 hash with seed 42, n), which is ``F.hash`` (empty partitions count as 0).
    """
    key_rows = df.groupBy(key).agg(F.count(F.lit(1)).alias("rows"))
    totals = key_rows.agg(F.sum("rows").alias("rows"), F.count(F.lit(1)).alias("distinct_keys"))
    top = (
        key_rows.orderBy(F.desc("rows"), F.asc(key))
        .limit(top_n)
        .agg(
            F.sort_array(
                F.collect_list(F.struct("rows", F.col(key).cast("string").alias("key"))),
                asc=False,
            ).alias("top"),
            F.sum("rows").alias("top_rows"),
        )
    )
    partition_ids = df.sparkSession.range(partitions).withColumnRenamed("id", "partition")
    partition_rows = key_rows.groupBy(
        F.pmod(F.hash(key), F.lit(partitions)).cast("long").alias("partition")
    ).agg(F.sum("rows").alias("partition_rows"))
    partition_sizes = (
        partition_ids.join(partition_rows, "partition", "left")
        .fillna(0, subset=["partition_rows"])
        .agg(
            F.max("partition_rows").alias("max_partition_rows"),
            F.median("partition_rows").alias("median_partition_rows"),
        )
    )
    return (
        totals.crossJoin(top)
        .crossJoin(partition_sizes)
        .select(
            "rows",
            "distinct_keys",
            F.transform(
                "top",
                lambda item: F.struct(
                    item["key"].alias("key"),
                    item["rows"].alias("rows"),
                    (item["rows"] / F.col("rows")).alias("share"),
                ),
            ).alias("top_keys"),
            (F.col("top_rows") / F.col("rows")).alias("top_share"),
            F.lit(partitions).alias("partitions"),
            "max_partition_rows",
            "median_partition_rows",
            F.try_divide("max_partition_rows", "median_partition_rows").alias("partition_skew"),
        )
    )


SALT = "_salt"
SALTABLE_JOINS = ("inner", "left", "left_outer", "left_semi", "left_anti")


def salted_join(
    left: DataFrame,
    right: DataFrame,
    key: str,
    salt_buckets: int,
    how: str = "inner",
    hot_keys: Sequence[object] | None = None,
) -> DataFrame:
    """Join ``left`` (the skewed side) to ``right`` on ``key``, spreading hot keys over buckets.

    Each left row gets a salt in [0, salt_buckets) from a hash of the whole row (deterministic,
    so a recomputed task gives the same result); each right row is replicated once per salt, so
    a hot key's rows are split across ``salt_buckets`` shuffle partitions instead of one. With
    ``hot_keys`` only those keys are salted and replicated (the rest use salt 0), which keeps
    the right side's growth to len(hot_keys) x (salt_buckets - 1) rows.

    The result equals ``left.join(right, key, how)``. Only joins that keep left rows as they are
    can be salted this way (right/full outer joins would duplicate unmatched right rows).
    """
    if how not in SALTABLE_JOINS:
        raise ValueError(f"salted_join supports {', '.join(SALTABLE_JOINS)}; got {how!r}")
    if salt_buckets < 1:
        raise ValueError(f"salt_buckets must be >= 1, got {salt_buckets}")
    if salt_buckets == 1:
        return left.join(right, on=key, how=how)

    row_hash = F.xxhash64(*[F.col(name) for name in left.columns])
    left_salt = F.pmod(row_hash, F.lit(salt_buckets)).cast("int")
    all_salts = F.sequence(F.lit(0), F.lit(salt_buckets - 1))
    if hot_keys is None:
        salted_left = left.withColumn(SALT, left_salt)
        salted_right = right.withColumn(SALT, F.explode(all_salts))
    else:
        is_hot = F.col(key).isin(*hot_keys)
        salted_left = left.withColumn(SALT, F.when(is_hot, left_salt).otherwise(F.lit(0)))
        salted_right = right.withColumn(
            SALT, F.explode(F.when(is_hot, all_salts).otherwise(F.array(F.lit(0))))
        )
    return salted_left.join(salted_right, on=[key, SALT], how=how).drop(SALT)


def attach_customers(
    lines: DataFrame,
    customers: DataFrame,
    columns: Iterable[str] = ("country", "city", "signup_date"),
    salt_buckets: int = 1,
    hot_keys: Sequence[object] | None = None,
) -> DataFrame:
    """Order lines with customer attributes: the join where heavy customers cause skew.

    ``salt_buckets`` > 1 uses ``salted_join``; 1 is a plain join left to Spark (with AQE's
    skew-join splitting when ``spark.sql.adaptive.skewJoin.enabled``).
    """
    customer_attributes = customers.select("customer_id", *columns)
    return salted_join(lines, customer_attributes, "customer_id", salt_buckets, "left", hot_keys)


# --- windows -------------------------------------------------------------------------------


def customer_order_history(lines: DataFrame) -> DataFrame:
    """Order lines with per-customer order_rank, running_spend and days_since_previous_order.

    Orders of a customer are ordered by (order_ts, order_id), so ties in time rank the same way
    on every run. order_rank counts every placed order; running_spend sums net revenue of
    realized orders only (cancelled, returned and processing orders add 0);
    days_since_previous_order is null for a customer's first order.
    """
    by_customer = Window.partitionBy("customer_id").orderBy("order_ts", "order_id")
    to_date = by_customer.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    realized_revenue = F.when(F.col("is_realized"), F.col("net_revenue")).otherwise(F.lit(0))
    return (
        lines.withColumn("order_rank", F.row_number().over(by_customer))
        .withColumn("running_spend", F.sum(realized_revenue).over(to_date).cast(MONEY_TOTAL))
        .withColumn(
            "days_since_previous_order",
            F.datediff("order_date", F.lag("order_date").over(by_customer)),
        )
    )


def with_moving_averages(
    series: DataFrame,
    value: str,
    order_by: str,
    windows: Sequence[int] = (7, 28),
    partition_by: Sequence[str] = (),
) -> DataFrame:
    """Add ``<value>_ma_<n>d``: the mean of the last n rows (this one included), as a double.

    The series must be dense (one row per day, zero-filled) so that n rows are n days. The
    average is null until n rows of history exist, so the first values are not biased low.
    """
    ordered = Window.partitionBy(*partition_by).orderBy(order_by)
    result = series
    for days in windows:
        trailing = ordered.rowsBetween(-(days - 1), Window.currentRow)
        average = F.avg(F.col(value).cast("double")).over(trailing)
        full_window = F.count(F.lit(1)).over(trailing) == days
        result = result.withColumn(f"{value}_ma_{days}d", F.when(full_window, average))
    return result


# --- robust order-value statistics ----------------------------------------------------------


def _median_and_mad_by_customer(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Median and MAD of every customer in one partition, vectorised by pandas groupby.

    The partition holds whole customers (the input is hash-partitioned by customer_id), so one
    groupby over the partition replaces one Python call per customer.
    """
    order_values = pd.concat(list(batches), ignore_index=True)
    if order_values.empty:
        return
    by_customer = order_values.groupby("customer_id", sort=False)["order_value"]
    deviations = (order_values["order_value"] - by_customer.transform("median")).abs()
    yield pd.DataFrame(
        {
            "median_order_value": by_customer.median(),
            "order_value_mad": deviations.groupby(order_values["customer_id"], sort=False).median(),
        }
    ).reset_index()


def customer_order_value_stats(
    lines: DataFrame, method: Literal["pandas", "builtin"] = "builtin"
) -> DataFrame:
    """Per customer: median_order_value and order_value_mad over realized orders.

    The median absolute deviation, median(|x - median(x)|), is a spread measure that a few huge
    orders cannot inflate (unlike the standard deviation); fraud and segmentation features use
    it. ``builtin``: an exact ``median`` window per customer, then a ``median`` of the
    deviations. ``pandas``: a shuffle by customer, then one vectorised pandas groupby per
    partition (``mapInPandas``, Arrow batches); it holds a whole partition in Python memory.
    Both return the same values; measured costs are in docs/definitions.md.
    """
    order_values = lines.filter(F.col("is_realized")).select(
        "customer_id", F.col("net_revenue").cast("double").alias("order_value")
    )
    if method == "pandas":
        stats = order_values.repartition("customer_id").mapInPandas(
            _median_and_mad_by_customer, schema=ORDER_VALUE_STATS_SCHEMA
        )
    elif method == "builtin":
        by_customer = Window.partitionBy("customer_id")
        stats = (
            order_values.withColumn("median_order_value", F.median("order_value").over(by_customer))
            .groupBy("customer_id", "median_order_value")
            .agg(
                F.median(F.abs(F.col("order_value") - F.col("median_order_value"))).alias(
                    "order_value_mad"
                )
            )
        )
    else:
        raise ValueError(f"method must be 'pandas' or 'builtin', got {method!r}")
    # Medians of cents are exact to the half cent: round away floating-point noise (1e-13).
    return stats.select(
        "customer_id",
        F.round("median_order_value", 3).alias("median_order_value"),
        F.round("order_value_mad", 3).alias("order_value_mad"),
    )
