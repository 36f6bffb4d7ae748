"""Order events from text lines: parse with the explicit schema, flag what cannot be used.

The streaming query reads its source as plain text (one JSON object per line), so a line that is
not an event never fails the query: it is kept with its raw text and the reason it was rejected,
and goes to ``quarantine.stream_events``. Parsing and validation are pure transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from sparkmart.batch.enrich import net_revenue
from sparkmart.schemas import ORDER_EVENT_SCHEMA
from sparkmart.stream.simulator import EVENT_CORRUPT_COLUMN, EVENT_JSON_OPTIONS

RAW_COLUMN = "raw"
REASON_COLUMN = "reject_reason"
LINE_COLUMN = "line_no"
REVENUE_COLUMN = "net_revenue"

# A line is an event only when all of these are present (and quantity > 0).
REQUIRED_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_time",
    "order_id",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price",
)

# Reasons written to quarantine.stream_events.reason (and counted per batch).
NOT_JSON = "not a JSON object"
WRONG_TYPE = "a field has the wrong type"
NOT_POSITIVE_QUANTITY = "quantity must be > 0"
MISSING_PREFIX = "missing or invalid: "


def _reject_reason(raw: Column, event: Column) -> Column:
    """Why a parsed line cannot be used, or null when it is a valid event."""
    missing = F.concat_ws(
        ", ", *[F.when(event[name].isNull(), F.lit(name)) for name in REQUIRED_FIELDS]
    )
    # json_object_keys is null for anything but a complete JSON object (truncated lines, arrays,
    # garbage); the second parse only runs for lines from_json could not fully read.
    suspect = event.isNull() | event[EVENT_CORRUPT_COLUMN].isNotNull()
    not_json = F.when(suspect, F.json_object_keys(raw).isNull()).otherwise(F.lit(False))
    return (
        F.when(not_json, F.lit(NOT_JSON))
        .when(missing != "", F.concat(F.lit(MISSING_PREFIX), missing))
        .when(event[EVENT_CORRUPT_COLUMN].isNotNull(), F.lit(WRONG_TYPE))
        .when(event["quantity"] <= 0, F.lit(NOT_POSITIVE_QUANTITY))
    )


def parse_events(
    json_options: Mapping[str, str] | None = None, text_column: str = "value"
) -> Callable[[DataFrame], DataFrame]:
    """Text lines -> one row per line (parsed with the simulator's ``EVENT_JSON_OPTIONS``,
    updated with ``json_options``): ``line_no``, ``raw``, the ORDER_EVENT_SCHEMA columns,
    ``reject_reason`` (null for a valid event) and ``net_revenue`` (of a valid event).

    ``line_no`` only needs to be unique within the micro-batch (it keys the quarantine rows of
    one batch); a wrong-typed field makes the whole line malformed, not just that field null.
    """
    options = {**EVENT_JSON_OPTIONS, **dict(json_options or {})}
    options["columnNameOfCorruptRecord"] = EVENT_CORRUPT_COLUMN
    parse_schema = StructType(
        [*ORDER_EVENT_SCHEMA.fields, StructField(EVENT_CORRUPT_COLUMN, StringType())]
    )

    # Built once: a Column is an unresolved expression that every micro-batch can reuse, which
    # saves hundreds of Python -> JVM calls per batch (most of a small batch's planning time).
    raw = F.col(text_column).alias(RAW_COLUMN)
    event = F.from_json(F.col(text_column), parse_schema, options).alias("event")
    fields = [
        LINE_COLUMN,
        RAW_COLUMN,
        *[F.col("event")[name].alias(name) for name in ORDER_EVENT_SCHEMA.fieldNames()],
        _reject_reason(F.col(RAW_COLUMN), F.col("event")).alias(REASON_COLUMN),
    ]
    revenue = F.when(F.col(REASON_COLUMN).isNull(), net_revenue())

    def transform(lines: DataFrame) -> DataFrame:
        # monotonically_increasing_id is nondeterministic: a fresh expression per batch.
        line_no = F.monotonically_increasing_id().alias(LINE_COLUMN)
        return lines.select(line_no, raw, event).select(*fields).withColumn(REVENUE_COLUMN, revenue)

    return transform


def valid_events(parsed: DataFrame) -> DataFrame:
    """The lines that are events."""
    return parsed.where(F.col(REASON_COLUMN).isNull())
