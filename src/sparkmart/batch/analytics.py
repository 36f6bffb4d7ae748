"""The gold layer: extended entities and analytics marts, as of an analysis date.

Inputs are the three silver entities (lineage columns starting with ``_`` are dropped); outputs
are pure DataFrames, built lazily. ``as_of`` (the analysis date, default: the last order date)
fixes every window ("last 90 days", "recency") and cuts off later orders, so the same input and
``as_of`` give the same result on every run. Statuses are those of the silver snapshot: there is
no status history, so an order's status is its latest known one even for a past ``as_of``.

``build_gold`` returns everything by name; ``GOLD_SCHEMAS`` declares each output's columns and
types; ``docs/definitions.md`` defines every column (formula, window, units).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)
from pyspark.sql.window import WindowSpec

from sparkmart.batch.enrich import (
    MONEY_LINE,
    MONEY_TOTAL,
    RETURNED_STATUS,
    customer_order_value_stats,
    is_realized,
    net_revenue,
    order_lines,
    select_schema_columns,
    with_moving_averages,
)
from sparkmart.schemas import CUSTOMERS_RAW, ORDERS_RAW, PRODUCTS_RAW


@dataclass(frozen=True)
class GoldParams:
    """Windows and constants of the gold definitions (see docs/definitions.md)."""

    activity_window_days: int = 365  # activity_score looks at orders in (as_of - this, as_of]
    activity_frequency_cap: int = 12  # this many orders in the window = full frequency score
    popularity_window_days: int = 90  # popularity_score: units sold in (as_of - this, as_of]
    turnover_window_days: int = 365  # inventory_turnover: units sold in (as_of - this, as_of]
    clv_horizon_days: int = 365  # predicted_clv covers the next this-many days
    clv_min_observation_days: int = 30  # purchase rate of new customers: at least this period
    clv_inactivity_scale_days: float = 365.0  # survival = exp(-days_since_last / this)
    order_value_stats: Literal["pandas", "builtin"] = "pandas"  # median/MAD: measured faster


DEFAULT_PARAMS = GoldParams()
GRAINS: tuple[str, ...] = ("day", "week", "month")
MOVING_AVERAGE_DAYS: tuple[int, ...] = (7, 28)  # sales_trends daily revenue_ma_7d, revenue_ma_28d


def _fields(*fields: tuple[str, DataType]) -> list[StructField]:
    return [StructField(name, dtype, True) for name, dtype in fields]


def _extend(base: StructType, *fields: tuple[str, DataType]) -> StructType:
    return StructType(list(base.fields) + _fields(*fields))


# Declared outputs. Nullability is Spark's to infer; names, order and types are the contract.
GOLD_SCHEMAS: dict[str, StructType] = {
    "customers": _extend(
        CUSTOMERS_RAW,
        ("lifetime_value", MONEY_TOTAL),
        ("activity_score", DoubleType()),
        ("preferred_category", StringType()),
        ("segment", StringType()),
    ),
    "products": _extend(
        PRODUCTS_RAW,
        ("popularity_score", DoubleType()),
        ("profit_margin", DoubleType()),
        ("inventory_turnover", DoubleType()),
        ("recommendation_rank", IntegerType()),
    ),
    "orders": _extend(
        ORDERS_RAW,
        ("processing_time", DoubleType()),
        ("revenue_impact", MONEY_LINE),
        ("fraud_score", DoubleType()),
        ("customer_satisfaction", DoubleType()),
    ),
    "customer_ltv": StructType(
        _fields(
            ("customer_id", LongType()),
            ("first_order_date", DateType()),
            ("last_order_date", DateType()),
            ("orders", LongType()),
            ("revenue", MONEY_TOTAL),
            ("avg_order_value", MONEY_TOTAL),
            ("median_order_value", DoubleType()),
            ("order_value_mad", DoubleType()),
            ("tenure_days", IntegerType()),
            ("days_since_last_order", IntegerType()),
            ("purchase_rate_per_year", DoubleType()),
            ("predicted_clv", MONEY_TOTAL),
        )
    ),
    "product_performance": StructType(
        _fields(
            ("product_id", LongType()),
            ("name", StringType()),
            ("category", StringType()),
            ("brand", StringType()),
            ("units_sold", LongType()),
            ("orders", LongType()),
            ("revenue", MONEY_TOTAL),
            ("cost", MONEY_TOTAL),
            ("margin", MONEY_TOTAL),
            ("margin_rate", DoubleType()),
            ("category_rank", IntegerType()),
        )
    ),
    "sales_trends": StructType(
        _fields(
            ("grain", StringType()),
            ("period_start", DateType()),
            ("period_end", DateType()),
            ("is_complete", BooleanType()),
            ("orders_placed", LongType()),
            ("orders", LongType()),
            ("units", LongType()),
            ("revenue", MONEY_TOTAL),
            ("orders_growth", DoubleType()),
            ("revenue_growth", DoubleType()),
            ("revenue_ma_7d", DoubleType()),
            ("revenue_ma_28d", DoubleType()),
        )
    ),
    "cohorts": StructType(
        _fields(
            ("cohort_month", DateType()),
            ("months_since_first", IntegerType()),
            ("cohort_size", LongType()),
            ("active_customers", LongType()),
            ("retention_rate", DoubleType()),
            ("revenue", MONEY_TOTAL),
        )
    ),
}

GOLD_COLUMNS: dict[str, list[str]] = {name: s.fieldNames() for name, s in GOLD_SCHEMAS.items()}


# --- helpers -------------------------------------------------------------------------------


def resolve_as_of(orders: DataFrame, as_of: dt.date | str | None = None) -> dt.date:
    """The analysis date: ``as_of`` when given, else the last order date (one tiny job)."""
    if isinstance(as_of, str):
        return dt.date.fromisoformat(as_of)
    if as_of is not None:
        return as_of
    last = orders.agg(F.max(F.to_date("order_ts")).alias("last")).first()
    if last is None or last["last"] is None:
        raise ValueError("cannot default as_of: orders has no order_ts")
    return last["last"]


def _date(as_of: dt.date) -> Column:
    return F.lit(as_of).cast(DateType())


def _until(lines: DataFrame, as_of: dt.date) -> DataFrame:
    """Lines of orders placed on or before ``as_of``."""
    return lines.filter(F.col("order_date") <= _date(as_of))


def _in_last_days(days: int, as_of: dt.date) -> Column:
    """order_date in (as_of - days, as_of]: the last ``days`` days, as_of included."""
    return (F.col("order_date") > F.date_sub(_date(as_of), days)) & (
        F.col("order_date") <= _date(as_of)
    )


def _ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as a double; null when the denominator is null or 0.

    ``try_divide``: with ANSI mode (Spark 4's default) a plain division by zero fails the job.
    """
    return F.try_divide(numerator.cast("double"), denominator.cast("double"))


def _conform(df: DataFrame, name: str) -> DataFrame:
    """Select and cast to the declared gold schema (names, order, types)."""
    return df.select(*[F.col(f.name).cast(f.dataType) for f in GOLD_SCHEMAS[name].fields])


# --- extended entities ---------------------------------------------------------------------


def customers_gold(
    customers: DataFrame,
    lines: DataFrame,
    as_of: dt.date,
    params: GoldParams = DEFAULT_PARAMS,
) -> DataFrame:
    """Customers + lifetime_value, activity_score, preferred_category, segment (null)."""
    placed = _until(lines, as_of)
    window = params.activity_window_days
    per_customer = placed.groupBy("customer_id").agg(
        F.sum(F.when(F.col("is_realized"), F.col("net_revenue"))).alias("lifetime_value"),
        F.max(F.when(_in_last_days(window, as_of), F.col("order_date"))).alias("last_active"),
        F.count(F.when(_in_last_days(window, as_of), F.lit(1))).alias("window_orders"),
    )
    spend_by_category = (
        placed.filter(F.col("is_realized") & F.col("category").isNotNull())
        .groupBy("customer_id", "category")
        .agg(F.sum("net_revenue").alias("spend"))
    )
    # Most spend wins; equal spend goes to the alphabetically first category. min() of the
    # struct (-spend, category) does both in one aggregation, without a window sort.
    preferred = spend_by_category.groupBy("customer_id").agg(
        F.min(F.struct((-F.col("spend")).alias("neg_spend"), "category"))["category"].alias(
            "preferred_category"
        )
    )
    recency = F.greatest(
        F.lit(0.0), F.lit(1.0) - F.datediff(_date(as_of), "last_active") / F.lit(window)
    )
    frequency = F.least(
        F.lit(1.0),
        F.log1p(F.col("window_orders")) / F.log1p(F.lit(params.activity_frequency_cap)),
    )
    activity = F.round(F.lit(100.0) * (0.5 * F.coalesce(recency, F.lit(0.0)) + 0.5 * frequency), 2)
    gold = (
        select_schema_columns(customers, CUSTOMERS_RAW)
        .join(per_customer, "customer_id", "left")
        .join(preferred, "customer_id", "left")
        .withColumn("lifetime_value", F.coalesce("lifetime_value", F.lit(0)))
        .withColumn("window_orders", F.coalesce("window_orders", F.lit(0)))
        .withColumn("activity_score", activity)
        .withColumn("segment", F.lit(None).cast(StringType()))
    )
    return _conform(gold, "customers")


def products_gold(
    products: DataFrame,
    lines: DataFrame,
    as_of: dt.date,
    params: GoldParams = DEFAULT_PARAMS,
) -> DataFrame:
    """Products + popularity_score, profit_margin, inventory_turnover, recommendation_rank.

    popularity_score is the percent rank of units sold in the popularity window. It is computed
    from the distribution of unit counts (a few hundred distinct values at most) and joined
    back, instead of a window over all products, which would sort every product in a single
    partition (1M rows at the ``medium`` scale).
    """
    units = (
        _until(lines, as_of)
        .filter(F.col("is_realized"))
        .groupBy("product_id")
        .agg(
            F.sum(
                F.when(_in_last_days(params.popularity_window_days, as_of), F.col("quantity"))
            ).alias("units_popular"),
            F.sum(
                F.when(_in_last_days(params.turnover_window_days, as_of), F.col("quantity"))
            ).alias("units_turnover"),
        )
    )
    with_units = (
        select_schema_columns(products, PRODUCTS_RAW)
        .join(units, "product_id", "left")
        .fillna(0, subset=["units_popular", "units_turnover"])
    )
    # Tiny table: one row per distinct unit count, so the unpartitioned window is cheap.
    by_units = Window.orderBy("units_popular")
    distribution = (
        with_units.groupBy("units_popular")
        .agg(F.count(F.lit(1)).alias("products_here"))
        .withColumn(
            "products_below",
            F.coalesce(
                F.sum("products_here").over(by_units.rowsBetween(Window.unboundedPreceding, -1)),
                F.lit(0),
            ),
        )
        .withColumn("products_total", F.sum("products_here").over(Window.partitionBy()))
        .select(
            "units_popular",
            F.round(
                F.coalesce(_ratio(F.col("products_below"), F.col("products_total") - 1), F.lit(0.0))
                * 100,
                2,
            ).alias("popularity_score"),
        )
    )
    positive = F.col("stock_quantity") > 0
    gold = (
        with_units.join(F.broadcast(distribution), "units_popular", "left")
        .withColumn(
            "profit_margin",
            F.when(
                F.col("price") > 0,
                F.round(_ratio(F.col("price") - F.col("cost"), F.col("price")), 4),
            ),
        )
        .withColumn(
            "inventory_turnover",
            F.when(positive, F.round(_ratio(F.col("units_turnover"), F.col("stock_quantity")), 4)),
        )
        .withColumn("recommendation_rank", F.lit(None).cast(IntegerType()))
    )
    return _conform(gold, "products")


def with_order_metrics(orders: DataFrame) -> DataFrame:
    """Orders + processing_time, revenue_impact, fraud_score (null), customer_satisfaction (null).

    processing_time: hours from order_ts to shipped_ts (null until shipped). revenue_impact:
    the order's signed effect on revenue: +net revenue when delivered or shipped, -net revenue
    when returned (the sale is reversed and refunded), 0 when processing or cancelled.
    """
    hours = (F.unix_micros("shipped_ts") - F.unix_micros("order_ts")) / F.lit(3_600_000_000.0)
    impact = (
        F.when(is_realized(), net_revenue())
        .when(F.col("status") == RETURNED_STATUS, -net_revenue())
        .otherwise(F.lit(0))
    )
    return (
        select_schema_columns(orders, ORDERS_RAW)
        .withColumn("processing_time", hours)
        .withColumn("revenue_impact", impact.cast(MONEY_LINE))
        .withColumn("fraud_score", F.lit(None).cast(DoubleType()))
        .withColumn("customer_satisfaction", F.lit(None).cast(DoubleType()))
    )


def orders_gold(orders: DataFrame, as_of: dt.date) -> DataFrame:
    """Orders placed on or before ``as_of`` with their gold metrics."""
    placed = orders.filter(F.to_date("order_ts") <= _date(as_of))
    return _conform(placed.transform(with_order_metrics), "orders")


# --- marts ---------------------------------------------------------------------------------


def customer_ltv(
    lines: DataFrame,
    as_of: dt.date,
    params: GoldParams = DEFAULT_PARAMS,
) -> DataFrame:
    """Historical and predicted customer lifetime value, one row per customer with a sale.

    predicted_clv = avg_order_value x purchase_rate_per_year x horizon (years) x survival,
    survival = exp(-days_since_last_order / inactivity scale): a heuristic, documented in
    docs/definitions.md, to rank customers by expected value, not a fitted BG/NBD model.
    """
    realized = _until(lines, as_of).filter(F.col("is_realized"))
    history = realized.groupBy("customer_id").agg(
        F.min("order_date").alias("first_order_date"),
        F.max("order_date").alias("last_order_date"),
        F.count(F.lit(1)).alias("orders"),
        F.sum("net_revenue").cast(MONEY_TOTAL).alias("revenue"),
    )
    robust = customer_order_value_stats(realized, params.order_value_stats)
    observed_days = F.greatest(
        F.datediff(_date(as_of), "first_order_date") + 1, F.lit(params.clv_min_observation_days)
    )
    survival = F.exp(-F.col("days_since_last_order") / F.lit(params.clv_inactivity_scale_days))
    ltv = (
        history.join(robust, "customer_id", "left")
        .withColumn("avg_order_value", F.round(F.col("revenue") / F.col("orders"), 2))
        .withColumn("tenure_days", F.datediff("last_order_date", "first_order_date"))
        .withColumn("days_since_last_order", F.datediff(_date(as_of), "last_order_date"))
        .withColumn("purchase_rate_per_year", F.col("orders") * 365.0 / observed_days)
        .withColumn(
            "predicted_clv",
            F.round(
                F.col("avg_order_value").cast("double")
                * F.col("purchase_rate_per_year")
                * (params.clv_horizon_days / 365.0)
                * survival,
                2,
            ),
        )
    )
    return _conform(ltv, "customer_ltv")


def product_performance(products: DataFrame, lines: DataFrame, as_of: dt.date) -> DataFrame:
    """Sales of every product up to ``as_of`` and its dense rank by revenue in its category.

    Products without a sale are kept with zeros: dead stock is a finding too.
    """
    sales = (
        _until(lines, as_of)
        .filter(F.col("is_realized"))
        .groupBy("product_id")
        .agg(
            F.sum("quantity").alias("units_sold"),
            F.count(F.lit(1)).alias("orders"),
            F.sum("net_revenue").alias("revenue"),
            F.sum("cost").alias("cost"),
        )
    )
    zero_money = F.lit(0).cast(MONEY_TOTAL)
    by_revenue = Window.partitionBy("category").orderBy(F.desc("revenue"))
    performance = (
        select_schema_columns(products, PRODUCTS_RAW)
        .select("product_id", "name", "category", "brand")
        .join(sales, "product_id", "left")
        .withColumn("units_sold", F.coalesce("units_sold", F.lit(0)))
        .withColumn("orders", F.coalesce("orders", F.lit(0)))
        .withColumn("revenue", F.coalesce(F.col("revenue").cast(MONEY_TOTAL), zero_money))
        .withColumn("cost", F.coalesce(F.col("cost").cast(MONEY_TOTAL), zero_money))
        .withColumn("margin", F.col("revenue") - F.col("cost"))
        .withColumn("margin_rate", F.round(_ratio(F.col("margin"), F.col("revenue")), 4))
        .withColumn("category_rank", F.dense_rank().over(by_revenue))
    )
    return _conform(performance, "product_performance")


def _growth(column: str, previous: WindowSpec) -> Column:
    """(this period - previous period) / previous period; null for the first or after a 0."""
    before = F.lag(column).over(previous)
    return _ratio(F.col(column) - before, before)


def _fill_gaps(
    cells: DataFrame,
    by: list[str],
    key: str,
    values: list[str],
    keys: Callable[[Column], Column],
) -> DataFrame:
    """``cells`` (one row per ``by`` + ``key``) densified: a row for every key, gaps as 0.

    ``keys(found)`` is the array of keys a ``by`` group must have; ``found`` is the group's map
    of key -> values. ``cells`` is small (days, cohort cells), so each group is folded into one
    map and looked up once per key. Joining a generated grid back to ``cells`` would reference
    ``cells`` twice, and each reference is its own scan of the order lines: Spark does not
    reuse the exchange when the optimizer prunes the two branches differently. The result keeps
    each group's map as ``_found``, so a caller can read another key's cell (``cohorts`` reads
    month 0 for the cohort size).
    """
    found = F.map_from_entries(F.collect_list(F.struct(key, F.struct(*values))))
    cell = F.col("_found")[F.col(key)]
    return (
        cells.groupBy(*by)
        .agg(found.alias("_found"))
        .select(*by, "_found", F.explode(keys(F.col("_found"))).alias(key))
        .select(*by, key, *[F.coalesce(cell[v], F.lit(0)).alias(v) for v in values], "_found")
    )


SALES_MEASURES = ["orders_placed", "orders", "units", "revenue"]


def sales_trends(lines: DataFrame, as_of: dt.date) -> DataFrame:
    """Orders, units and revenue per day, week (Monday start) and month, with growth rates.

    One DataFrame, a ``grain`` column telling day/week/month apart (one table to export and
    filter). The calendar is dense from the first order date to ``as_of``: days without orders
    are rows with zeros, so growth and moving averages compare neighbouring periods. The last
    week/month is usually cut by ``as_of``: ``is_complete`` says so. The order lines are read
    once: each dense day is exploded into its day, week and month, and one aggregation sums
    all three grains.
    """
    placed = _until(lines, as_of)
    realized = F.col("is_realized")
    daily = placed.groupBy("order_date").agg(
        F.count(F.lit(1)).alias("orders_placed"),
        F.count(F.when(realized, F.lit(1))).alias("orders"),
        F.sum(F.when(realized, F.col("quantity")).otherwise(F.lit(0))).alias("units"),
        F.sum(F.when(realized, F.col("net_revenue")).otherwise(F.lit(0))).alias("revenue"),
    )
    dense_daily = _fill_gaps(
        daily,
        [],
        "order_date",
        SALES_MEASURES,
        lambda found: F.sequence(F.array_min(F.map_keys(found)), _date(as_of)),
    )
    grains = F.array(
        F.struct(F.lit("day").alias("grain"), F.col("order_date").alias("period_start")),
        F.struct(
            F.lit("week").alias("grain"),
            F.to_date(F.date_trunc("week", "order_date")).alias("period_start"),
        ),
        F.struct(
            F.lit("month").alias("grain"), F.trunc("order_date", "month").alias("period_start")
        ),
    )
    periods = (
        dense_daily.select(F.explode(grains).alias("period"), *SALES_MEASURES)
        .groupBy("period.grain", "period.period_start")
        .agg(*[F.sum(m).alias(m) for m in SALES_MEASURES])
    )
    # The moving averages are defined on the dense daily series only.
    moving_averages = [f"revenue_ma_{n}d" for n in MOVING_AVERAGE_DAYS]
    with_averages = with_moving_averages(
        periods, "revenue", "period_start", MOVING_AVERAGE_DAYS, partition_by=["grain"]
    )
    for column in moving_averages:
        with_averages = with_averages.withColumn(
            column, F.when(F.col("grain") == "day", F.col(column))
        )

    period_end = (
        F.when(F.col("grain") == "day", F.col("period_start"))
        .when(F.col("grain") == "week", F.date_add("period_start", 6))
        .otherwise(F.last_day("period_start"))
    )
    previous = Window.partitionBy("grain").orderBy("period_start")
    trends = (
        with_averages.withColumn("period_end", period_end)
        .withColumn("is_complete", F.col("period_end") <= _date(as_of))
        .withColumn("orders_growth", _growth("orders", previous))
        .withColumn("revenue_growth", _growth("revenue", previous))
    )
    return _conform(trends, "sales_trends")


def cohorts(lines: DataFrame, as_of: dt.date) -> DataFrame:
    """Monthly acquisition cohorts x months since first purchase: retention and revenue.

    A customer's cohort is the month of their first realized order; a customer is active in a
    month when they have a realized order in it. The grid is dense: every cohort has a row for
    each month from 0 to ``as_of``'s month, zeros included. Per-customer months are aggregated
    before the window, so a heavy customer is at most one row per month (no skew).

    The lines are shuffled once, by customer: the month aggregate and the cohort window both
    run on that partitioning (without it, Spark shuffles by customer and month, then again by
    customer; measured 1.5x slower at 10M orders, docs/optimizations.md).
    """
    monthly = (
        _until(lines, as_of)
        .filter(F.col("is_realized"))
        .repartition("customer_id")
        .groupBy("customer_id", F.trunc("order_date", "month").alias("month"))
        .agg(F.sum("net_revenue").alias("revenue"))
        .withColumn("cohort_month", F.min("month").over(Window.partitionBy("customer_id")))
        .withColumn(
            "months_since_first",
            F.months_between("month", "cohort_month").cast(IntegerType()),
        )
    )
    cells = monthly.groupBy("cohort_month", "months_since_first").agg(
        F.count(F.lit(1)).alias("active_customers"),
        F.sum("revenue").alias("revenue"),
    )
    last_month = F.trunc(_date(as_of), "month")
    months = F.months_between(last_month, "cohort_month").cast(IntegerType())
    result = (
        _fill_gaps(
            cells,
            ["cohort_month"],
            "months_since_first",
            ["active_customers", "revenue"],
            lambda found: F.sequence(F.lit(0), months),
        )
        # Month 0 is never a gap: it is the month of every member's first order.
        .withColumn("cohort_size", F.col("_found")[0]["active_customers"])
        .withColumn("retention_rate", _ratio(F.col("active_customers"), F.col("cohort_size")))
    )
    return _conform(result, "cohorts")


# --- everything ----------------------------------------------------------------------------


def gold_order_lines(
    orders: DataFrame,
    products: DataFrame,
    as_of: dt.date,
    broadcast_products: bool | None = None,
) -> DataFrame:
    """The order lines (``enrich.order_lines``) of orders placed up to ``as_of``: the input
    six gold outputs share. A caller writing all of them persists this once (measured in
    docs/optimizations.md, "Caching the reused DataFrames") and passes it to ``build_gold``."""
    lines = order_lines(
        select_schema_columns(orders, ORDERS_RAW),
        select_schema_columns(products, PRODUCTS_RAW),
        broadcast_products,
    )
    return _until(lines, as_of)


def build_gold(
    customers: DataFrame,
    products: DataFrame,
    orders: DataFrame,
    as_of: dt.date | str | None = None,
    params: GoldParams = DEFAULT_PARAMS,
    broadcast_products: bool | None = None,
    lines: DataFrame | None = None,
) -> dict[str, DataFrame]:
    """All gold outputs by name, from silver customers, products and orders.

    Lazy: nothing runs except, when ``as_of`` is None, one aggregate for the last order date.
    The order lines are shared by six outputs: callers writing all of them should build them
    with ``gold_order_lines`` (same ``as_of``), persist them, and pass them as ``lines``.
    ``broadcast_products``: see ``enrich.order_lines`` and ``enrich.should_broadcast``.
    """
    customers_silver = select_schema_columns(customers, CUSTOMERS_RAW)
    products_silver = select_schema_columns(products, PRODUCTS_RAW)
    orders_silver = select_schema_columns(orders, ORDERS_RAW)
    analysis_date = resolve_as_of(orders_silver, as_of)
    if lines is None:
        lines = gold_order_lines(orders_silver, products_silver, analysis_date, broadcast_products)
    return {
        "customers": customers_gold(customers_silver, lines, analysis_date, params),
        "products": products_gold(products_silver, lines, analysis_date, params),
        "orders": orders_gold(orders_silver, analysis_date),
        "customer_ltv": customer_ltv(lines, analysis_date, params),
        "product_performance": product_performance(products_silver, lines, analysis_date),
        "sales_trends": sales_trends(lines, analysis_date),
        "cohorts": cohorts(lines, analysis_date),
    }
