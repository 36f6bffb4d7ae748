"""Every StructType of the project, in one place.

Raw schemas are what the generator writes and what ingestion reads (explicit, never inferred);
the ground-truth schemas describe the generator's planted structure and defects. Silver and gold
schemas are added by the batch pipeline next to these.
"""

from __future__ import annotations

from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

MONEY = DecimalType(10, 2)
RATE = DecimalType(4, 3)

ENTITIES: tuple[str, ...] = ("customers", "products", "orders")
FORMATS: tuple[str, ...] = ("parquet", "json", "csv", "avro")


def _schema(*fields: tuple[str, DataType, bool]) -> StructType:
    return StructType([StructField(name, dtype, nullable) for name, dtype, nullable in fields])


CUSTOMERS_RAW = _schema(
    ("customer_id", LongType(), False),
    ("first_name", StringType(), True),
    ("last_name", StringType(), True),
    ("email", StringType(), True),
    ("phone", StringType(), True),
    ("city", StringType(), True),
    ("country", StringType(), True),
    ("signup_date", DateType(), True),
    ("updated_at", TimestampType(), True),
)

PRODUCTS_RAW = _schema(
    ("product_id", LongType(), False),
    ("name", StringType(), True),
    ("category", StringType(), True),
    ("brand", StringType(), True),
    ("price", MONEY, True),
    ("cost", MONEY, True),
    ("stock_quantity", IntegerType(), True),
    ("updated_at", TimestampType(), True),
)

ORDERS_RAW = _schema(
    ("order_id", LongType(), False),
    ("customer_id", LongType(), True),
    ("product_id", LongType(), True),
    ("quantity", IntegerType(), True),
    ("unit_price", MONEY, True),
    ("discount", RATE, True),
    ("order_ts", TimestampType(), True),
    ("status", StringType(), True),
    ("payment_method", StringType(), True),
    ("shipped_ts", TimestampType(), True),
    ("delivered_ts", TimestampType(), True),
    ("updated_at", TimestampType(), True),
)

RAW_SCHEMAS: dict[str, StructType] = {
    "customers": CUSTOMERS_RAW,
    "products": PRODUCTS_RAW,
    "orders": ORDERS_RAW,
}

PRIMARY_KEYS: dict[str, str] = {
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
}

# --- ground truth (generator output under <out>/truth/, never joined into features) --------

CUSTOMER_TRUTH = _schema(
    ("customer_id", LongType(), False),
    ("segment", IntegerType(), False),
    ("segment_name", StringType(), False),
    ("is_heavy", BooleanType(), False),
    ("favourite_products", ArrayType(LongType()), False),  # re-bought (generator.md)
)

PRODUCT_TRUTH = _schema(
    ("product_id", LongType(), False),
    ("popularity_rank", LongType(), False),
    ("reorder_threshold", IntegerType(), False),
)

ORDER_TRUTH = _schema(
    ("order_id", LongType(), False),
    ("is_fraud", BooleanType(), False),
    ("satisfaction", DoubleType(), False),
)

# One row per planted defect. `record_id` is the business key of the affected row (null for a
# malformed text line, which has no key); `detail` says what was planted (column, old value...).
DEFECT_TRUTH = _schema(
    ("entity", StringType(), False),
    ("record_id", LongType(), True),
    ("defect", StringType(), False),
    ("column", StringType(), True),
    ("detail", StringType(), True),
)

TRUTH_SCHEMAS: dict[str, StructType] = {
    "customers": CUSTOMER_TRUTH,
    "products": PRODUCT_TRUTH,
    "orders": ORDER_TRUTH,
    "defects": DEFECT_TRUTH,
}


def ddl(schema: StructType) -> str:
    """Schema as a DDL string (for ``DataFrameReader.schema`` and messages)."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in schema.fields)


# --- streaming ---------------------------------------------------------------------------------
# An order event is an order row plus the event's identity and time. `event_time` is when the
# order happened (what windows and the watermark use); the simulator may deliver it late.

ORDER_EVENT_SCHEMA = _schema(
    ("event_id", StringType(), False),
    ("event_time", TimestampType(), False),
    *[(f.name, f.dataType, f.nullable) for f in ORDERS_RAW.fields],
)

# One row per alert, in PostgreSQL `streaming.alerts` and the log. `alert_id` is deterministic
# (type + key + the window or event that raised it), so a replayed batch cannot raise it twice.
ALERT_SCHEMA = _schema(
    ("alert_id", StringType(), False),
    ("alert_type", StringType(), False),
    ("severity", StringType(), False),
    ("alert_key", StringType(), False),
    ("message", StringType(), False),
    ("event_time", TimestampType(), True),
    ("detected_at", TimestampType(), False),
    ("value", DoubleType(), True),
    ("threshold", DoubleType(), True),
    ("event_id", StringType(), True),
)

ALERT_TYPES: tuple[str, ...] = (
    "low_inventory",
    "unusual_amount",
    "customer_burst",
    "sales_drop",
    "high_value_customer",
    "large_order",
    "system_performance",
)
ALERT_SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
