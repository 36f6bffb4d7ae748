"""The workload in Spark: the marts are the pipeline's own functions, not a reimplementation.

``ingest_clean`` is the benchmark's subset of the quality rules (see ``workload``), written with
built-in functions; ``prepare`` is ``enrich.order_lines`` (the columns the marts read,
persisted: four marts read them) and ``analytics.resolve_as_of``; each mart step is
``analytics.<mart>`` written as Parquet.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from sparkmart.batch import analytics
from sparkmart.batch.enrich import order_lines, should_broadcast
from sparkmart.bench.engines import workload as W
from sparkmart.bench.engines.timer import StepTimer
from sparkmart.schemas import RAW_SCHEMAS


def dedupe_latest(entity: str) -> Callable[[DataFrame], DataFrame]:
    """Keep one row per key: latest updated_at (nulls last), ties by the other columns.

    A window over every row (a shuffle and sort of the whole table). Sorting only the repeated
    keys (2% of rows: counted on the key column, broadcast, the rest passed through) was
    measured 1.09x slower at 10M orders: it reads the table three times (docs/optimizations.md).
    """
    key = W.PRIMARY_KEYS[entity]
    order = [F.col("updated_at").desc_nulls_last()] + [
        F.col(c).asc_nulls_last() for c in W.sort_columns(entity)
    ]
    by_key = Window.partitionBy(key).orderBy(*order)

    def dedupe(df: DataFrame) -> DataFrame:
        return (
            df.withColumn("_rank", F.row_number().over(by_key))
            .filter(F.col("_rank") == 1)
            .drop("_rank")
        )

    return dedupe


def _ok(condition: Column) -> Column:
    """A rule whose result is null (a null operand) passes."""
    return F.coalesce(condition, F.lit(True))


def _required(*columns: str) -> Column:
    result = F.lit(True)
    for column in columns:
        result = result & F.col(column).isNotNull()
    return result


def clean(raw: dict[str, DataFrame], params: W.WorkloadParams) -> dict[str, DataFrame]:
    """The ingest_clean rules of ``workload`` on raw DataFrames (pure: no I/O)."""
    as_of = F.lit(params.as_of.isoformat(sep=" ")).cast("timestamp")  # session time zone: UTC
    as_of_date = F.lit(params.as_of_date)
    min_date = F.lit(W.MIN_DATE)
    min_ts = min_date.cast("timestamp")
    customers = (
        raw["customers"]
        .transform(dedupe_latest("customers"))
        .filter(
            _required(*W.REQUIRED["customers"])
            & _ok(F.col("email").rlike(W.EMAIL_REGEX))
            & _ok(F.col("signup_date").between(min_date, as_of_date))
            & _ok(F.col("updated_at") <= as_of)
        )
    )
    products = (
        raw["products"]
        .transform(dedupe_latest("products"))
        .filter(
            _required(*W.REQUIRED["products"])
            & _ok(F.col("price") >= 0)
            & _ok(F.col("cost") >= 0)
            & _ok(F.col("stock_quantity") >= 0)
            & _ok(F.col("updated_at") <= as_of)
        )
        .withColumn("category", F.coalesce("category", F.lit(W.UNCATEGORIZED)))
    )
    customer_keys = raw["customers"].select("customer_id").where("customer_id IS NOT NULL")
    product_keys = raw["products"].select("product_id").where("product_id IS NOT NULL")
    orders = (
        raw["orders"]
        .transform(dedupe_latest("orders"))
        .filter(
            _required(*W.REQUIRED["orders"])
            & _ok(F.col("quantity") > 0)
            & _ok(F.col("unit_price") >= 0)
            & _ok(F.col("discount").between(0, 1))
            & _ok(F.col("order_ts").between(min_ts, as_of))
            & _ok(F.col("order_ts") <= F.col("shipped_ts"))
            & _ok(F.col("shipped_ts") <= F.col("delivered_ts"))
            & _ok(F.col("order_ts") <= F.col("updated_at"))
            & _ok(F.col("updated_at") <= as_of)
            & _ok(F.col("status").isin(*W.ORDER_STATUSES))
        )
        .join(customer_keys.distinct(), "customer_id", "left_semi")
        .join(product_keys.distinct(), "product_id", "left_semi")
        .withColumn(
            "discount",
            F.coalesce("discount", F.lit(0)).cast(RAW_SCHEMAS["orders"]["discount"].dataType),
        )
        .select(*RAW_SCHEMAS["orders"].fieldNames())
    )
    return {"customers": customers, "products": products, "orders": orders}


# The order-line columns the four marts read (and order_ts, for ``resolve_as_of``). Only these
# are cached: building and scanning the cache of all 19 columns took twice as long at 10M
# orders (docs/optimizations.md). A mart that reads another column fails here loudly.
MART_INPUTS: tuple[str, ...] = (
    "customer_id",
    "product_id",
    "quantity",
    "order_ts",
    "order_date",
    "net_revenue",
    "cost",
    "is_realized",
)


def _write(df: DataFrame, path: Path) -> None:
    df.write.mode("overwrite").parquet(str(path))


def run(
    raw: Path, out: Path, params: W.WorkloadParams, timer: StepTimer, spark: SparkSession
) -> None:
    """Every step of the workload, timed; ``spark`` is an already started session."""
    with timer.step("ingest_clean"):
        frames = {
            entity: spark.read.schema(RAW_SCHEMAS[entity]).parquet(
                str(W.check_raw_schema(raw, entity))
            )
            for entity in W.ENTITIES
        }
        for entity, df in clean(frames, params).items():
            _write(df, out / f"clean_{entity}")
    with timer.step("prepare"):
        products = spark.read.parquet(str(out / "clean_products")).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        orders = spark.read.parquet(str(out / "clean_orders"))
        threshold = int(spark.conf.get("spark.sql.autoBroadcastJoinThreshold", "-1"))
        broadcast = should_broadcast(products.count(), max(threshold, 0) // (1024 * 1024))
        lines = (
            order_lines(orders, products, broadcast)
            .select(*MART_INPUTS)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        as_of = analytics.resolve_as_of(lines)  # also materialises the persisted lines
    marts = {
        "customer_ltv": lambda: analytics.customer_ltv(lines, as_of),
        "product_performance": lambda: analytics.product_performance(products, lines, as_of),
        "sales_trends": lambda: analytics.sales_trends(lines, as_of),
        "cohorts": lambda: analytics.cohorts(lines, as_of),
    }
    for name, build in marts.items():
        with timer.step(name):
            _write(build(), out / name)
    lines.unpersist()
    products.unpersist()
