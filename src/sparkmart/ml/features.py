"""Feature engineering: pure transforms from gold entities to model inputs.

Steps that need other rows (a customer's history, a day's lags, joins with customers and
products) live here and run before a model's Spark ML pipeline; per-row steps (indexing,
one-hot encoding, scaling) are stages of the saved pipeline. Both run in training and scoring,
so a model always sees features built the same way. Ground truth never enters these functions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from sparkmart.generate.params import CATEGORY_NAMES

# The catalogue's categories, in the generator's fixed order: category_shares uses it so a
# saved model and new data agree on what each vector position means.
CATEGORIES: tuple[str, ...] = CATEGORY_NAMES
HOURS = 3600.0
# Gold columns the models fill: never inputs, and dropped so a model's output can take the name.
SCORE_COLUMNS: tuple[str, ...] = ("fraud_score", "customer_satisfaction")
# Order columns that order_features reads: checked against the training-time types at scoring.
ORDER_COLUMNS: tuple[str, ...] = (
    "order_id",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price",
    "discount",
    "order_ts",
    "payment_method",
    "shipped_ts",
    "delivered_ts",
)


def share_column(category: str) -> str:
    return f"share_{category}"


def order_amount() -> Column:
    """Gross amount of an order line after discount, as a double (for features, not money)."""
    return (
        F.col("quantity").cast("double")
        * F.col("unit_price").cast("double")
        * (F.lit(1.0) - F.coalesce(F.col("discount").cast("double"), F.lit(0.0)))
    )


def _hours_between(start: str, end: str) -> Column:
    return (F.unix_micros(end) - F.unix_micros(start)) / F.lit(HOURS * 1e6)


# --- customers -------------------------------------------------------------------------------


def customer_features(
    orders: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    as_of: dt.date,
    categories: Sequence[str] = CATEGORIES,
) -> DataFrame:
    """One row per customer with at least one order placed on or before ``as_of``.

    recency_days (since the last order), frequency (orders), monetary (gross spend),
    tenure_days (since signup), active_days (first to last order), avg_discount,
    avg_quantity, avg_log_unit_price, one share of orders per category, and the log forms
    log_frequency and log_monetary for scale-free clustering.
    """
    cutoff = F.lit(as_of).cast("date")
    placed = (
        orders.filter(F.to_date("order_ts") <= cutoff)
        .join(products.select("product_id", "category"), "product_id", "left")
        .withColumn("amount", order_amount())
    )
    per_customer = placed.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("frequency"),
        F.sum("amount").alias("monetary"),
        F.min(F.to_date("order_ts")).alias("first_order"),
        F.max(F.to_date("order_ts")).alias("last_order"),
        F.avg(F.coalesce(F.col("discount").cast("double"), F.lit(0.0))).alias("avg_discount"),
        F.avg(F.col("quantity").cast("double")).alias("avg_quantity"),
        F.avg(F.log1p(F.col("unit_price").cast("double"))).alias("avg_log_unit_price"),
        *[
            F.avg(F.when(F.col("category") == c, 1.0).otherwise(0.0)).alias(share_column(c))
            for c in categories
        ],
    )
    return (
        per_customer.join(customers.select("customer_id", "signup_date"), "customer_id", "left")
        .withColumn("recency_days", F.datediff(cutoff, "last_order").cast("double"))
        .withColumn(
            "tenure_days",
            F.greatest(F.datediff(cutoff, F.coalesce("signup_date", "first_order")), F.lit(0)).cast(
                "double"
            ),
        )
        .withColumn("active_days", F.datediff("last_order", "first_order").cast("double"))
        .withColumn("frequency", F.col("frequency").cast("double"))
        .withColumn("monetary", F.coalesce("monetary", F.lit(0.0)))
        .withColumn("log_frequency", F.log1p("frequency"))
        .withColumn("log_monetary", F.log1p("monetary"))
        .drop("signup_date", "first_order", "last_order")
    )


# --- orders ----------------------------------------------------------------------------------


def order_features(orders: DataFrame, customers: DataFrame, products: DataFrame) -> DataFrame:
    """Orders + the fraud and satisfaction features (all from the order and its past).

    amount and log_amount; amount_vs_history: log amount minus the log of the mean amount of
    the customer's earlier orders (0 without history, flagged by has_history); velocity:
    the customer's orders in the 24 h and 7 days before, hours since the previous order; hour,
    is_night (0-6 h), day of week; account_age_days and is_new_account (signed up at most 7
    days before); category and country (joined); processing_hours and delivery_hours.
    """
    by_customer = Window.partitionBy("customer_id").orderBy("order_seconds")
    earlier = by_customer.rowsBetween(Window.unboundedPreceding, -1)

    def within(seconds: int) -> Window:
        return by_customer.rangeBetween(-seconds, -1)

    enriched = (
        orders.drop(*SCORE_COLUMNS)
        .join(products.select("product_id", "category"), "product_id", "left")
        .join(customers.select("customer_id", "signup_date", "country"), "customer_id", "left")
        .withColumn("order_seconds", F.unix_seconds("order_ts"))
        .withColumn("amount", order_amount())
        .withColumn("log_amount", F.log1p("amount"))
    )
    history_mean = F.avg("log_amount").over(earlier)
    account_age = F.datediff(F.to_date("order_ts"), "signup_date")
    hour = F.hour("order_ts")
    return (
        enriched.withColumn("prior_orders", F.count(F.lit(1)).over(earlier).cast("double"))
        .withColumn("has_history", (F.col("prior_orders") > 0).cast("double"))
        .withColumn("amount_vs_history", F.coalesce(F.col("log_amount") - history_mean, F.lit(0.0)))
        .withColumn("orders_prev_24h", F.count(F.lit(1)).over(within(86_400)).cast("double"))
        .withColumn("orders_prev_7d", F.count(F.lit(1)).over(within(7 * 86_400)).cast("double"))
        .withColumn(
            "hours_since_prev_order",
            F.coalesce(
                (F.col("order_seconds") - F.lag("order_seconds").over(by_customer)) / HOURS,
                F.lit(24.0 * 365),
            ),
        )
        .withColumn("hour", hour.cast("double"))
        .withColumn("is_night", (hour < 6).cast("double"))
        .withColumn("day_of_week", F.dayofweek("order_ts").cast("double"))
        .withColumn("account_age_days", F.coalesce(account_age, F.lit(9999)).cast("double"))
        .withColumn("is_new_account", (F.coalesce(account_age, F.lit(9999)) <= 7).cast("double"))
        .withColumn("quantity_value", F.col("quantity").cast("double"))
        .withColumn("discount_value", F.coalesce(F.col("discount").cast("double"), F.lit(0.0)))
        .withColumn("processing_hours", _hours_between("order_ts", "shipped_ts"))
        .withColumn("delivery_hours", _hours_between("shipped_ts", "delivered_ts"))
        .withColumn("category", F.coalesce("category", F.lit("unknown")))
        .withColumn("country", F.coalesce("country", F.lit("unknown")))
        .withColumn("payment_method", F.coalesce("payment_method", F.lit("unknown")))
        .drop("order_seconds", "signup_date")
    )


# --- daily sales -----------------------------------------------------------------------------


def daily_sales(orders: DataFrame) -> DataFrame:
    """Orders placed and gross revenue per calendar day, days without orders included (0)."""
    per_day = orders.groupBy(F.to_date("order_ts").alias("date")).agg(
        F.count(F.lit(1)).cast("double").alias("orders"),
        F.sum(order_amount()).alias("revenue"),
    )
    bounds = per_day.agg(F.min("date").alias("first"), F.max("date").alias("last"))
    calendar = bounds.select(F.explode(F.sequence("first", "last")).alias("date"))
    return calendar.join(per_day, "date", "left").fillna(0.0, subset=["orders", "revenue"])


def extend_calendar(series: DataFrame, days: int) -> DataFrame:
    """The series followed by ``days`` future days whose values are null (to be forecast)."""
    last = series.agg(F.max("date").alias("last"))
    future = last.select(
        F.explode(F.sequence(F.date_add("last", 1), F.date_add("last", days))).alias("date")
    )
    value_columns = [c for c in series.columns if c != "date"]
    return series.unionByName(
        future.select("date", *[F.lit(None).cast("double").alias(c) for c in value_columns])
    )


def black_friday(year: Column) -> Column:
    """The day after the fourth Thursday of November of ``year``."""
    october_31 = F.make_date(year, F.lit(10), F.lit(31))
    return F.date_add(F.next_day(october_31, "Thu"), 22)


def time_features(
    series: DataFrame,
    target: str,
    origin: dt.date,
    lag_days: Sequence[int],
    moving_average_days: Sequence[int],
    horizon_days: int,
    log_target: bool,
) -> DataFrame:
    """Calendar, holiday, lag and moving-average features of a daily series.

    ``label`` is the target (log1p of it with ``log_target``). trend: days since ``origin``.
    Lags and moving averages look back at least ``horizon_days``, so every feature of the
    next ``horizon_days`` is known at the forecast origin: no recursive forecasting, and no
    value from the predicted period leaks into its features. The series must be contiguous.
    """
    too_short = [lag for lag in lag_days if lag < horizon_days]
    if too_short:
        raise ValueError(
            f"lag_days {too_short} are shorter than the {horizon_days}-day horizon: their values "
            "would not be known when forecasting"
        )
    ordered = Window.orderBy("date")
    label = F.log1p(target) if log_target else F.col(target)
    year = F.year("date")
    days_to_black_friday = F.datediff("date", black_friday(year))
    featured = (
        series.withColumn("label", label.cast("double"))
        .withColumn("trend", F.datediff("date", F.lit(origin).cast("date")).cast("double"))
        .withColumn("day_of_week_index", (F.dayofweek("date") - 1).cast("double"))
        .withColumn("month_index", (F.month("date") - 1).cast("double"))
        .withColumn("is_weekend", F.dayofweek("date").isin(1, 7).cast("double"))
        .withColumn(
            "is_black_friday_week", F.abs(days_to_black_friday).between(0, 3).cast("double")
        )
        .withColumn("is_cyber_week", days_to_black_friday.between(4, 10).cast("double"))
        .withColumn(
            "is_christmas_rush",
            ((F.month("date") == 12) & F.dayofmonth("date").between(8, 23)).cast("double"),
        )
        .withColumn(
            "is_holiday_lull",
            (
                ((F.month("date") == 12) & (F.dayofmonth("date") >= 24))
                | ((F.month("date") == 1) & (F.dayofmonth("date") <= 6))
            ).cast("double"),
        )
    )
    for lag in lag_days:
        featured = featured.withColumn(f"lag_{lag}", F.lag("label", lag).over(ordered))
    for width in moving_average_days:
        window = ordered.rowsBetween(-(horizon_days + width - 1), -horizon_days)
        featured = featured.withColumn(
            f"ma_{width}",
            F.when(F.count("label").over(window) == width, F.avg("label").over(window)),
        )
    return featured


def lag_columns(lag_days: Sequence[int], moving_average_days: Sequence[int]) -> list[str]:
    return [f"lag_{lag}" for lag in lag_days] + [f"ma_{w}" for w in moving_average_days]


# --- per-row pipeline stages -----------------------------------------------------------------


def encoding_stages(categorical: Sequence[str], numeric: Sequence[str], scale: bool) -> list:
    """Index and one-hot encode ``categorical``, assemble with ``numeric`` into ``features``.

    Unseen categories at scoring time go to an extra "unknown" slot instead of failing.
    """
    from pyspark.ml.feature import OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler

    indexed = [f"{c}_index" for c in categorical]
    encoded = [f"{c}_onehot" for c in categorical]
    stages: list = []
    if categorical:
        stages += [
            StringIndexer(
                inputCols=list(categorical),
                outputCols=indexed,
                handleInvalid="keep",
                stringOrderType="alphabetAsc",
            ),
            OneHotEncoder(inputCols=indexed, outputCols=encoded, handleInvalid="keep"),
        ]
    assembled = "raw_features" if scale else "features"
    stages.append(VectorAssembler(inputCols=[*numeric, *encoded], outputCol=assembled))
    if scale:
        stages.append(StandardScaler(inputCol=assembled, outputCol="features", withMean=True))
    return stages
