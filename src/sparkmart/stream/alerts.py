"""Streaming alerts: per-event rules in Spark, stateful rules in SQL, system alerts from a listener.

Three places raise alerts, each where its evidence lives:

- **per event** (``event_alerts``): a micro-batch's orders joined with the gold context (normal
  line amount per product, order history and predicted CLV per customer): ``unusual_amount``,
  ``high_value_customer``, ``large_order``. Built-in Spark functions, broadcast joins.
- **stateful** (``stateful_alerts``): SQL on the streaming query's own transaction, after the
  batch's metric upserts, so it sees the updated per-minute and cumulative tables:
  ``customer_burst``, ``sales_drop``, ``low_inventory``.
- **system** (``listener``): a ``StreamingQueryListener`` judging each progress report:
  ``system_performance``.

Every alert id is a hash of type + key + the window, event or crossing that raised it, and every
insert is ``ON CONFLICT (alert_id) DO NOTHING``: a replayed batch, or a later batch that sees the
same burst or the same crossing again, cannot raise it twice. Thresholds come from the ``alerts``
section of ``config/streaming_config.yaml``; docs/streaming.md (## Alerts) defines each rule.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQueryListener
from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType

from sparkmart.batch.enrich import net_revenue
from sparkmart.config import STREAMING_CONFIG, ConfigError, Settings, validate
from sparkmart.io.postgres import PgSettings, connect, replace_table_atomically, table_exists
from sparkmart.schemas import ALERT_SCHEMA, ALERT_SEVERITIES
from sparkmart.spark_utils import get_logger
from sparkmart.stream.fraud import FraudAlertParams, LiveFraudScorer
from sparkmart.stream.sinks import BatchContext
from sparkmart.stream.tables import (
    ALERTS,
    CUSTOMER_MINUTE,
    INVENTORY,
    PRODUCT_MINUTE,
    PRODUCT_UNITS,
    SALES_PER_MINUTE,
    ensure_stream_tables,
)

_log = get_logger("stream.alerts")

ALERT_COLUMNS: list[str] = ALERT_SCHEMA.fieldNames()
# The per-event rules collect these event columns; anything else in the batch is ignored.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "event_time",
    "customer_id",
    "product_id",
    "quantity",
    "unit_price",
    "discount",
)
USUAL_QUANTITY_MIN_ORDERS = 3  # a product's own units/orders needs this many orders
LOG_ALERTS_PER_RULE = 20  # per rule and batch; the table has them all


# --- parameters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LowInventoryParams:
    lead_days: int = 14
    min_threshold: int = 5
    severity: str = "warning"


@dataclass(frozen=True)
class UnusualAmountParams:
    product_factor: float = 8.0
    customer_factor: float = 25.0
    customer_min_orders: int = 5
    customer_product_factor: float = 2.0
    severity: str = "warning"


@dataclass(frozen=True)
class CustomerBurstParams:
    min_orders: int = 8
    # ... and at least this x the minute's mean orders per active customer: at a high rate over
    # a small catalog every customer orders several times a minute, and 8 is no burst
    mean_factor: float = 6.0
    severity: str = "warning"


@dataclass(frozen=True)
class SalesDropParams:
    baseline_minutes: int = 5
    min_baseline_minutes: int = 3
    ratio: float = 0.5
    severity: str = "critical"
    # The fall must also exceed this many standard deviations of Poisson noise,
    # sqrt(baseline mean): a thin stream (a few orders a minute) does not raise drops at random.
    # Optional in the config.
    noise_sigmas: float = 3.0


@dataclass(frozen=True)
class HighValueParams:
    top_clv_fraction: float = 0.01
    order_amount: float = 5000.0
    severity: str = "info"
    # Segment names (gold customers.segment, filled by the ML segmentation) that count as
    # high value; optional in the config, empty until segments exist.
    top_segments: tuple[str, ...] = ()


@dataclass(frozen=True)
class SystemParams:
    backlog_batches: int = 3
    state_growth_batches: int = 5
    severity: str = "warning"


_SEVERITY = (str, True)
ALERTS_SPEC: Mapping[str, Any] = {
    "low_inventory": {"lead_days": int, "min_threshold": int, "severity": _SEVERITY},
    "unusual_amount": {
        "product_factor": float,
        "customer_factor": float,
        "customer_min_orders": int,
        "customer_product_factor": float,
        "severity": _SEVERITY,
    },
    "customer_burst": {
        "min_orders": int,
        "mean_factor": (float, False),
        "severity": _SEVERITY,
    },
    "sales_drop": {
        "baseline_minutes": int,
        "min_baseline_minutes": int,
        "ratio": float,
        "severity": _SEVERITY,
        "noise_sigmas": (float, False),
    },
    "high_value": {
        "top_clv_fraction": float,
        "order_amount": float,
        "severity": _SEVERITY,
        "top_segments": (list, False),
    },
    "system": {"backlog_batches": int, "state_growth_batches": int, "severity": _SEVERITY},
    "fraud": (
        {"enabled": (bool, False), "threshold": (float, False), "severity": (str, False)},
        False,
    ),
}
FRAUD_ALERT = "suspected_fraud"


@dataclass(frozen=True)
class AlertParams:
    """The ``alerts`` section of streaming_config.yaml, validated."""

    low_inventory: LowInventoryParams = field(default_factory=LowInventoryParams)
    unusual_amount: UnusualAmountParams = field(default_factory=UnusualAmountParams)
    customer_burst: CustomerBurstParams = field(default_factory=CustomerBurstParams)
    sales_drop: SalesDropParams = field(default_factory=SalesDropParams)
    high_value: HighValueParams = field(default_factory=HighValueParams)
    system: SystemParams = field(default_factory=SystemParams)
    fraud: FraudAlertParams = field(default_factory=FraudAlertParams)

    @classmethod
    def from_config(cls, alerts: Mapping[str, Any]) -> AlertParams:
        """Build from the ``alerts`` mapping; ConfigError names the file and ``alerts.<key>``."""
        validate(alerts, ALERTS_SPEC, STREAMING_CONFIG, "alerts.")

        def section(name: str) -> dict[str, Any]:
            return {k: v for k, v in alerts[name].items() if not k.startswith("_")}

        high_value = section("high_value")
        high_value["top_segments"] = tuple(str(s) for s in high_value.get("top_segments", []))
        params = cls(
            low_inventory=LowInventoryParams(**section("low_inventory")),
            unusual_amount=UnusualAmountParams(**section("unusual_amount")),
            customer_burst=CustomerBurstParams(**section("customer_burst")),
            sales_drop=SalesDropParams(**section("sales_drop")),
            high_value=HighValueParams(**high_value),
            system=SystemParams(**section("system")),
            fraud=FraudAlertParams(**section("fraud")) if "fraud" in alerts else FraudAlertParams(),
        )
        params.check()
        return params

    def check(self) -> None:
        """Ranges the spec's types cannot express."""
        ranges: list[tuple[str, bool, str]] = [
            ("low_inventory.lead_days", self.low_inventory.lead_days >= 1, ">= 1"),
            ("low_inventory.min_threshold", self.low_inventory.min_threshold >= 0, ">= 0"),
            ("unusual_amount.product_factor", self.unusual_amount.product_factor > 1, "> 1"),
            ("unusual_amount.customer_factor", self.unusual_amount.customer_factor > 1, "> 1"),
            (
                "unusual_amount.customer_min_orders",
                self.unusual_amount.customer_min_orders >= 1,
                ">= 1",
            ),
            (
                "unusual_amount.customer_product_factor",
                self.unusual_amount.customer_product_factor >= 1,
                ">= 1",
            ),
            ("customer_burst.min_orders", self.customer_burst.min_orders >= 2, ">= 2"),
            ("customer_burst.mean_factor", self.customer_burst.mean_factor >= 1, ">= 1"),
            ("sales_drop.baseline_minutes", self.sales_drop.baseline_minutes >= 1, ">= 1"),
            (
                "sales_drop.min_baseline_minutes",
                1 <= self.sales_drop.min_baseline_minutes <= self.sales_drop.baseline_minutes,
                "between 1 and sales_drop.baseline_minutes",
            ),
            ("sales_drop.ratio", 0 < self.sales_drop.ratio < 1, "between 0 and 1 (exclusive)"),
            ("sales_drop.noise_sigmas", self.sales_drop.noise_sigmas >= 0, ">= 0"),
            (
                "high_value.top_clv_fraction",
                0 < self.high_value.top_clv_fraction < 1,
                "between 0 and 1 (exclusive)",
            ),
            ("high_value.order_amount", self.high_value.order_amount > 0, "> 0"),
            ("system.backlog_batches", self.system.backlog_batches >= 1, ">= 1"),
            ("system.state_growth_batches", self.system.state_growth_batches >= 1, ">= 1"),
            ("fraud.threshold", 0 < self.fraud.threshold <= 1, "in (0, 1]"),
        ]
        sections = ("low_inventory", "unusual_amount", "customer_burst", "sales_drop")
        for name in (*sections, "high_value", "system", "fraud"):
            severity = getattr(self, name).severity
            ranges.append((f"{name}.severity", severity in ALERT_SEVERITIES, _one_of_severities()))
        for key, ok, expected in ranges:
            if not ok:
                value = self._value(key)
                raise ConfigError(
                    f"{STREAMING_CONFIG}: alerts.{key} should be {expected}, got {value!r}"
                )

    def _value(self, dotted: str) -> Any:
        section, name = dotted.split(".")
        return getattr(getattr(self, section), name)


def _one_of_severities() -> str:
    return "one of " + ", ".join(ALERT_SEVERITIES)


# --- ids ------------------------------------------------------------------------------------


def alert_id(alert_type: str, key: str, discriminator: str) -> str:
    """md5 of ``type|key|discriminator``: the same scheme as the Spark and SQL rules."""
    return hashlib.md5(f"{alert_type}|{key}|{discriminator}".encode()).hexdigest()


def _alert_id_column(alert_type: Column, key: Column, discriminator: Column) -> Column:
    return F.md5(F.concat_ws("|", alert_type, key, discriminator))


# --- gold context ---------------------------------------------------------------------------


def history_days(customer_ltv: DataFrame) -> int:
    """Days of order history in gold: first to last realized order date, both included."""
    span = customer_ltv.agg(
        (F.datediff(F.max("last_order_date"), F.min("first_order_date")) + 1).alias("days")
    ).first()
    days = span["days"] if span is not None else None
    return max(int(days), 1) if days is not None else 1


def product_context(
    products: DataFrame,
    performance: DataFrame,
    history_days: int,
    params: LowInventoryParams = LowInventoryParams(),
) -> DataFrame:
    """Per product: price, normal_line_amount, stock_quantity, reorder_threshold.

    normal_line_amount = price x usual quantity, the usual quantity being the product's own
    units_sold / orders when it has enough orders, else the mean quantity over all products.
    reorder_threshold = ceil(units_sold / history_days x lead_days), at least min_threshold.
    """
    sales = performance.select("product_id", "units_sold", "orders")
    overall = sales.agg(
        F.try_divide(F.sum("units_sold").cast("double"), F.sum("orders").cast("double")).alias(
            "mean_quantity"
        )
    )
    usual_quantity = F.when(
        F.col("orders") >= USUAL_QUANTITY_MIN_ORDERS,
        F.col("units_sold").cast("double") / F.col("orders"),
    ).otherwise(F.coalesce(F.col("mean_quantity"), F.lit(1.0)))
    daily_units = F.coalesce(F.col("units_sold"), F.lit(0)).cast("double") / F.lit(
        float(max(history_days, 1))
    )
    threshold = F.greatest(
        F.ceil(daily_units * F.lit(params.lead_days)), F.lit(params.min_threshold)
    )
    return (
        products.select("product_id", "price", "stock_quantity")
        .join(sales, "product_id", "left")
        .crossJoin(F.broadcast(overall))
        .select(
            F.col("product_id").cast(LongType()),
            F.col("price").cast(DoubleType()).alias("price"),
            (F.col("price").cast(DoubleType()) * usual_quantity).alias("normal_line_amount"),
            F.col("stock_quantity").cast(LongType()).alias("stock_quantity"),
            threshold.cast(LongType()).alias("reorder_threshold"),
        )
    )


def customer_context(
    customers: DataFrame, customer_ltv: DataFrame, params: HighValueParams = HighValueParams()
) -> DataFrame:
    """Per customer: past_orders, median_order_value, predicted_clv, is_top_clv, segment.

    Top CLV = predicted_clv above its (1 - top_clv_fraction) percentile: one aggregate instead of
    a global sort of every customer.
    """
    ltv = customer_ltv.select(
        "customer_id",
        F.col("orders").alias("past_orders"),
        F.col("median_order_value").cast(DoubleType()).alias("median_order_value"),
        F.col("predicted_clv").cast(DoubleType()).alias("predicted_clv"),
    )
    cutoff = ltv.agg(
        F.percentile_approx("predicted_clv", 1.0 - params.top_clv_fraction, 1_000_000).alias(
            "clv_cutoff"
        )
    )
    segment = F.col("segment") if "segment" in customers.columns else F.lit(None).cast(StringType())
    return (
        customers.select("customer_id", segment.cast(StringType()).alias("segment"))
        .join(ltv, "customer_id", "left")
        .crossJoin(F.broadcast(cutoff))
        .select(
            F.col("customer_id").cast(LongType()),
            F.coalesce(F.col("past_orders"), F.lit(0)).cast(LongType()).alias("past_orders"),
            "median_order_value",
            "predicted_clv",
            F.coalesce(F.col("predicted_clv") > F.col("clv_cutoff"), F.lit(False))
            .cast(BooleanType())
            .alias("is_top_clv"),
            "segment",
        )
    )


def with_order_context(
    product_stats: DataFrame, customer_stats: DataFrame
) -> Callable[[DataFrame], DataFrame]:
    """Events + amount and their product's and customer's context (broadcast joins)."""

    columns = [
        *[F.col(name) for name in EVENT_COLUMNS],
        net_revenue().cast(DoubleType()).alias("amount"),
    ]
    products = F.broadcast(product_stats)
    customers = F.broadcast(customer_stats)

    def transform(events: DataFrame) -> DataFrame:
        return (
            events.select(*columns)
            .join(products, "product_id", "left")
            .join(customers, "customer_id", "left")
        )

    return transform


# --- per-event rules (Spark) ------------------------------------------------------------------
# Each rule is a Column: a struct describing the alert, or null when the rule does not fire.
# One projection evaluates every rule on an event; explode keeps the ones that fired.


def _candidate(
    alert_type: str,
    severity: str,
    fires: Column,
    message: Column,
    value: Column,
    threshold: Column,
) -> Column:
    return F.when(
        F.coalesce(fires, F.lit(False)),
        F.struct(
            F.lit(alert_type).alias("alert_type"),
            F.lit(severity).alias("severity"),
            F.coalesce(F.col("customer_id").cast(StringType()), F.col("event_id")).alias(
                "alert_key"
            ),
            message.alias("message"),
            value.cast(DoubleType()).alias("value"),
            threshold.cast(DoubleType()).alias("threshold"),
        ),
    )


def unusual_amount_rule(params: UnusualAmountParams) -> Column:
    """Amount > product_factor x the product's normal line amount, or > customer_factor x the
    customer's median order value when they have at least customer_min_orders past orders.

    The customer test also needs the amount above customer_product_factor x the product's
    normal line: a usual line of a pricier product is far above a thrifty customer's median
    without being unusual (it was the rule's one false positive in a demo run).
    """
    product_limit = F.lit(params.product_factor) * F.col("normal_line_amount")
    customer_limit = F.when(
        F.col("past_orders") >= params.customer_min_orders,
        F.lit(params.customer_factor) * F.col("median_order_value"),
    )
    bigger_than_a_usual_line = F.coalesce(
        F.col("amount") > F.lit(params.customer_product_factor) * F.col("normal_line_amount"),
        F.lit(True),  # a product without history: the customer test alone decides
    )
    over_product = F.coalesce(F.col("amount") > product_limit, F.lit(False))
    over_customer = F.coalesce(F.col("amount") > customer_limit, F.lit(False)) & (
        bigger_than_a_usual_line
    )
    message = F.when(
        over_product,
        F.format_string(
            "order %s: amount %.2f is %.1fx the normal line amount %.2f of product %s",
            "event_id",
            "amount",
            F.try_divide(F.col("amount"), F.col("normal_line_amount")),
            "normal_line_amount",
            "product_id",
        ),
    ).otherwise(
        F.format_string(
            "order %s: amount %.2f is %.1fx the median order %.2f of customer %s",
            "event_id",
            "amount",
            F.try_divide(F.col("amount"), F.col("median_order_value")),
            "median_order_value",
            "customer_id",
        )
    )
    return _candidate(
        "unusual_amount",
        params.severity,
        over_product | over_customer,
        message,
        F.col("amount"),
        F.when(over_product, product_limit).otherwise(customer_limit),
    )


def high_value_customer_rule(params: HighValueParams) -> Column:
    """An order by a top-CLV customer, or by one in a top segment."""
    top_segment = (
        F.col("segment").isin(*params.top_segments) if params.top_segments else F.lit(False)
    )
    fires = F.coalesce(F.col("is_top_clv"), F.lit(False)) | F.coalesce(top_segment, F.lit(False))
    message = F.format_string(
        "order %s by high-value customer %s (predicted CLV %.2f, segment %s): amount %.2f",
        "event_id",
        "customer_id",
        F.coalesce(F.col("predicted_clv"), F.lit(0.0)),
        F.coalesce(F.col("segment"), F.lit("-")),
        "amount",
    )
    return _candidate(
        "high_value_customer",
        params.severity,
        fires,
        message,
        F.col("amount"),
        F.lit(None),
    )


def large_order_rule(params: HighValueParams) -> Column:
    """A single order whose amount is above order_amount."""
    message = F.format_string(
        "order %s by customer %s: amount %.2f above %.2f",
        "event_id",
        "customer_id",
        "amount",
        F.lit(params.order_amount),
    )
    return _candidate(
        "large_order",
        params.severity,
        F.col("amount") > F.lit(params.order_amount),
        message,
        F.col("amount"),
        F.lit(params.order_amount),
    )


def event_rules(params: AlertParams) -> list[Column]:
    return [
        unusual_amount_rule(params.unusual_amount),
        high_value_customer_rule(params.high_value),
        large_order_rule(params.high_value),
    ]


def raise_event_alerts(
    rules: Sequence[Column], detected_at: Column | None = None
) -> Callable[[DataFrame], DataFrame]:
    """Context-joined events -> alert rows (ALERT_SCHEMA), one per event and rule that fired."""

    # Built once and reused by every micro-batch (see stream/events.py: parse_events).
    fired = F.filter(F.array(*rules), lambda candidate: candidate.isNotNull())
    alert_fields = [
        F.col("event_id"),
        F.col("event_time"),
        F.explode(fired).alias("alert"),
    ]
    output = [
        _alert_id_column(F.col("alert_type"), F.col("alert_key"), F.col("event_id")).alias(
            "alert_id"
        ),
        *[F.col(name) for name in ("alert_type", "severity", "alert_key", "message", "event_time")],
        (detected_at if detected_at is not None else F.current_timestamp()).alias("detected_at"),
        *[F.col(name) for name in ("value", "threshold", "event_id")],
    ]

    def transform(enriched: DataFrame) -> DataFrame:
        return (
            enriched.select(*alert_fields)
            .select("event_id", "event_time", "alert.*")
            .select(*output)
        )

    return transform


def fraud_alerts(params: FraudAlertParams, model_version: str) -> Callable[[DataFrame], DataFrame]:
    """Live fraud scores (stream/fraud.py) -> ``suspected_fraud`` alerts at or above the
    threshold, keyed like the other per-event alerts (customer, event)."""
    key = F.coalesce(F.col("customer_id").cast(StringType()), F.col("event_id"))
    columns = [
        _alert_id_column(F.lit(FRAUD_ALERT), key, F.col("event_id")).alias("alert_id"),
        F.lit(FRAUD_ALERT).alias("alert_type"),
        F.lit(params.severity).alias("severity"),
        key.alias("alert_key"),
        F.format_string(
            "order %s by customer %s: fraud score %.3f >= %.2f (fraud model v%s)",
            "order_id",
            "customer_id",
            "fraud_score",
            F.lit(params.threshold),
            F.lit(model_version),
        ).alias("message"),
        F.col("event_time"),
        F.current_timestamp().alias("detected_at"),
        F.col("fraud_score").alias("value"),
        F.lit(params.threshold).alias("threshold"),
        F.col("event_id"),
    ]

    def transform(scores: DataFrame) -> DataFrame:
        return scores.where(F.col("fraud_score") >= params.threshold).select(*columns)

    return transform


def conform_alerts(alerts: DataFrame) -> DataFrame:
    """Cast to ALERT_SCHEMA's types and order."""
    return alerts.select(*_conformed_columns())


def _conformed_columns() -> list[Column]:
    return [F.col(f.name).cast(f.dataType) for f in ALERT_SCHEMA.fields]


# --- stateful rules (SQL in the streaming query's transaction) ---------------------------------


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Aware UTC; a naive value is read as local time, as Spark's ``collect`` returns them."""
    if value is None:
        return None
    return value.astimezone(dt.UTC)


_INSERT = f"""
INSERT INTO {ALERTS} (alert_id, alert_type, severity, alert_key, message, event_time,
                      detected_at, value, threshold, event_id, query_name, batch_id)
"""
_RETURN = " ON CONFLICT (alert_id) DO NOTHING RETURNING alert_type, severity, alert_key, message"

# A burst: at least min_orders in the minute, and at least mean_factor x the minute's mean
# orders per active customer (so the threshold rises with the input rate).
CUSTOMER_BURST_SQL = (
    _INSERT
    + f"""
WITH minutes AS (
    SELECT window_start,
           greatest(%(min_orders)s,
                    ceil(%(mean_factor)s * sum(orders)::float8 / count(*)))::bigint AS threshold
    FROM {CUSTOMER_MINUTE}
    WHERE %(windows)s::timestamptz[] IS NULL OR window_start = ANY(%(windows)s::timestamptz[])
    GROUP BY window_start
)
SELECT md5(concat_ws('|', 'customer_burst', m.customer_id::text,
                      extract(epoch FROM m.window_start)::bigint::text)),
       'customer_burst', %(severity)s, m.customer_id::text,
       format('customer %%s placed %%s orders in the minute from %%s (burst: %%s or more)',
              m.customer_id, m.orders,
              to_char(m.window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
              t.threshold),
       m.window_start, %(detected_at)s, m.orders, t.threshold, NULL,
       %(query_name)s, %(batch_id)s
FROM {CUSTOMER_MINUTE} m JOIN minutes t USING (window_start)
WHERE m.orders >= t.threshold
"""
    + _RETURN
)

# Minutes closed by this batch: window_end in (previous watermark, new watermark], from the
# first minute of the stream on. A closed minute without a row had no orders at all.
SALES_DROP_SQL = (
    _INSERT
    + f"""
WITH first_minute AS (
    SELECT min(window_start) AS minute FROM {SALES_PER_MINUTE}
), closed AS (
    SELECT gs.minute
    FROM first_minute f,
         generate_series(
             greatest(f.minute, date_trunc('minute', %(previous)s::timestamptz
                                           - interval '1 minute') + interval '1 minute'),
             date_trunc('minute', %(new)s::timestamptz - interval '1 minute'),
             interval '1 minute') AS gs(minute)
), judged AS (
    SELECT c.minute, coalesce(s.orders, 0) AS orders, b.minutes, b.mean_orders
    FROM closed c
    LEFT JOIN {SALES_PER_MINUTE} s ON s.window_start = c.minute
    CROSS JOIN LATERAL (
        SELECT count(*) AS minutes, avg(p.orders)::double precision AS mean_orders
        FROM {SALES_PER_MINUTE} p
        WHERE p.window_start >= c.minute - make_interval(mins => %(baseline_minutes)s)
          AND p.window_start < c.minute
    ) b
)
SELECT md5(concat_ws('|', 'sales_drop', 'orders_per_minute',
                      extract(epoch FROM j.minute)::bigint::text)),
       'sales_drop', %(severity)s, 'orders_per_minute',
       format('%%s orders in the minute from %%s, under %%s x the mean %%s of the %%s minutes '
              'before', j.orders, to_char(j.minute AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
              %(ratio)s, round(j.mean_orders::numeric, 1), j.minutes),
       j.minute, %(detected_at)s, j.orders, %(ratio)s * j.mean_orders, NULL,
       %(query_name)s, %(batch_id)s
FROM judged j
WHERE j.minutes >= %(min_baseline_minutes)s AND j.orders < %(ratio)s * j.mean_orders
  AND j.mean_orders - j.orders > %(noise_sigmas)s * sqrt(j.mean_orders)
"""
    + _RETURN
)

# A crossing: stock was at or above the threshold when loaded, stock - units sold is now below.
# The id names product, stock and threshold, so the same crossing is raised once however many
# batches see the product below; a reload with new stock allows a new crossing.
LOW_INVENTORY_SQL = (
    _INSERT
    + f"""
WITH touched AS (
    SELECT product_id, max(window_start) AS last_minute
    FROM {PRODUCT_MINUTE}
    WHERE %(windows)s::timestamptz[] IS NULL OR window_start = ANY(%(windows)s::timestamptz[])
    GROUP BY product_id
)
SELECT md5(concat_ws('|', 'low_inventory', i.product_id::text,
                      i.stock_quantity::text || '/' || i.reorder_threshold::text)),
       'low_inventory', %(severity)s, i.product_id::text,
       format('product %%s: stock %%s - %%s sold = %%s left, below its reorder threshold %%s',
              i.product_id, i.stock_quantity, u.units_sold, i.stock_quantity - u.units_sold,
              i.reorder_threshold),
       t.last_minute, %(detected_at)s, i.stock_quantity - u.units_sold, i.reorder_threshold,
       NULL, %(query_name)s, %(batch_id)s
FROM touched t
JOIN {PRODUCT_UNITS} u ON u.product_id = t.product_id
JOIN {INVENTORY} i ON i.product_id = t.product_id
WHERE i.stock_quantity >= i.reorder_threshold
  AND i.stock_quantity - u.units_sold < i.reorder_threshold
"""
    + _RETURN
)


def log_alerts(rows: Iterable[Sequence[Any]], limit: int = LOG_ALERTS_PER_RULE) -> int:
    """Log the alerts one statement inserted (the first ``limit``, then a count); rows are
    (alert_type, severity, alert_key, message), as an insert's ``RETURNING`` gives them."""
    count = 0
    for alert_type, severity, key, message in rows:
        count += 1
        if count > limit:
            continue
        _log.warning(
            "ALERT %s [%s] %s: %s",
            alert_type,
            severity,
            key,
            message,
            extra={"fields": {"alert_type": alert_type, "severity": severity, "alert_key": key}},
        )
    if count > limit:
        _log.warning("... and %d more alerts of this rule (all in %s)", count - limit, ALERTS)
    return count


def run_stateful_rules(cursor: Any, batch: BatchContext, params: AlertParams) -> int:
    """customer_burst, sales_drop, low_inventory for one batch; returns alerts inserted."""
    windows = batch.touched_minutes  # None (in a hand-made context): check every row
    common = {
        "detected_at": _utc(batch.detected_at),
        "query_name": batch.query_name,
        "batch_id": batch.batch_id,
        "windows": None if windows is None else [_utc(w) for w in windows],
    }
    inserted = 0
    cursor.execute(
        CUSTOMER_BURST_SQL,
        {
            **common,
            "severity": params.customer_burst.severity,
            "min_orders": params.customer_burst.min_orders,
            "mean_factor": params.customer_burst.mean_factor,
        },
    )
    inserted += log_alerts(cursor.fetchall())
    # The first batch of a query has no watermark yet, so it takes events of any age and the
    # minutes it closes are a backlog nobody watched live (often a few late events, minutes
    # before the stream began): drops are judged from the second batch on.
    if batch.previous_watermark is not None and batch.new_watermark is not None:
        drop = params.sales_drop
        cursor.execute(
            SALES_DROP_SQL,
            {
                **common,
                "severity": drop.severity,
                "previous": _utc(batch.previous_watermark),
                "new": _utc(batch.new_watermark),
                "baseline_minutes": drop.baseline_minutes,
                "min_baseline_minutes": drop.min_baseline_minutes,
                "ratio": drop.ratio,
                "noise_sigmas": drop.noise_sigmas,
            },
        )
        inserted += log_alerts(cursor.fetchall())
    cursor.execute(LOW_INVENTORY_SQL, {**common, "severity": params.low_inventory.severity})
    inserted += log_alerts(cursor.fetchall())
    return inserted


def insert_alerts(
    cursor: Any,
    alerts: Iterable[Mapping[str, Any]],
    query_name: str | None = None,
    batch_id: int | None = None,
) -> int:
    """Insert alert rows (ALERT_SCHEMA fields) once each, log the new ones; returns how many."""
    rows = [
        (
            *(_utc(a[c]) if isinstance(a[c], dt.datetime) else a[c] for c in ALERT_COLUMNS),
            query_name,
            batch_id,
        )
        for a in alerts
    ]
    if not rows:
        return 0
    placeholders = ", ".join(["%s"] * (len(ALERT_COLUMNS) + 2))
    inserted = 0
    for row in rows:
        cursor.execute(_INSERT + f" VALUES ({placeholders})" + _RETURN, row)
        inserted += log_alerts(cursor.fetchall())
    return inserted


# --- system alerts (StreamingQueryListener) ----------------------------------------------------


# Our streaming query keeps its windowed state in PostgreSQL (foreachBatch upserts), not in a
# Spark state store, so its progress reports have no state operators. The listener then adds
# this figure: rows of the per-minute tables whose minute the watermark has not closed yet,
# i.e. what a state store would hold for the same aggregations.
EXTERNAL_STATE_KEY = "sparkmartOpenStateRows"
OPEN_STATE_ROWS_SQL = f"""
WITH open_minutes AS (SELECT window_start FROM {SALES_PER_MINUTE} WHERE NOT is_closed)
SELECT (SELECT count(*) FROM open_minutes)
     + (SELECT count(*) FROM {CUSTOMER_MINUTE} c JOIN open_minutes o USING (window_start))
     + (SELECT count(*) FROM {PRODUCT_MINUTE} p JOIN open_minutes o USING (window_start))
"""


def open_state_rows(pg: PgSettings) -> int:
    """Rows of the streaming query's windowed state that can still change (open minutes)."""
    with connect(pg) as conn:
        row = conn.execute(OPEN_STATE_ROWS_SQL).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _state_rows(progress: Mapping[str, Any]) -> int | None:
    """Spark's state store rows (sum of numRowsTotal), else the external figure, else None."""
    operators = progress.get("stateOperators") or []
    if operators:
        return sum(int(op.get("numRowsTotal") or 0) for op in operators)
    external = progress.get(EXTERNAL_STATE_KEY)
    return None if external is None else int(external)


def _batch_duration_ms(progress: Mapping[str, Any]) -> int | None:
    duration = progress.get("batchDuration")
    if duration is None:
        duration = (progress.get("durationMs") or {}).get("triggerExecution")
    return None if duration is None else int(duration)


def _progress_time(progress: Mapping[str, Any]) -> dt.datetime | None:
    stamp = progress.get("timestamp")
    if not stamp:
        return None
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class SystemAlertRules:
    """The system-performance decisions over one query's progress reports, in order.

    Pure (no I/O): feed it progress dicts (``json.loads(progress.json)``), get alert rows back.
    Each condition raises once per episode: when it starts (slow batch), or when its streak
    reaches the configured length (backlog, state growth); it can fire again after it clears.
    """

    params: SystemParams
    trigger_ms: float
    state_rows_of: Callable[[Mapping[str, Any]], int | None] = _state_rows
    _slow: bool = False
    _backlog_streak: int = 0
    _growth_streak: int = 0
    _last_state_rows: int | None = None

    def observe(
        self, progress: Mapping[str, Any], detected_at: dt.datetime | None = None
    ) -> list[dict[str, Any]]:
        detected = detected_at or dt.datetime.now(dt.UTC)
        query = str(progress.get("name") or progress.get("id") or "query")
        batch_id = progress.get("batchId")
        alerts: list[dict[str, Any]] = []

        def raise_alert(condition: str, message: str, value: float, threshold: float) -> None:
            key = f"{query}:{condition}"
            alerts.append(
                {
                    "alert_id": alert_id("system_performance", key, str(batch_id)),
                    "alert_type": "system_performance",
                    "severity": self.params.severity,
                    "alert_key": key,
                    "message": message,
                    "event_time": _progress_time(progress),
                    "detected_at": detected,
                    "value": float(value),
                    "threshold": float(threshold),
                    "event_id": None,
                }
            )

        duration = _batch_duration_ms(progress)
        slow = duration is not None and duration > self.trigger_ms
        if slow and not self._slow:
            raise_alert(
                "batch_duration",
                f"{query} batch {batch_id} took {duration} ms, over the "
                f"{self.trigger_ms:.0f} ms trigger interval",
                duration,
                self.trigger_ms,
            )
        self._slow = slow

        rows_in = progress.get("numInputRows") or 0
        input_rate = progress.get("inputRowsPerSecond")
        processed_rate = progress.get("processedRowsPerSecond")
        behind = (
            rows_in > 0
            and input_rate is not None
            and processed_rate is not None
            and float(input_rate) > float(processed_rate)
        )
        self._backlog_streak = self._backlog_streak + 1 if behind else 0
        if self._backlog_streak == self.params.backlog_batches:
            raise_alert(
                "backlog",
                f"{query}: input rate above processing rate for {self._backlog_streak} batches "
                f"in a row (now {float(input_rate):.0f} > {float(processed_rate):.0f} rows/s): "
                "the backlog grows",
                float(input_rate),
                float(processed_rate),
            )

        state_rows = self.state_rows_of(progress)
        rising = (
            state_rows is not None
            and self._last_state_rows is not None
            and state_rows > self._last_state_rows
        )
        self._growth_streak = self._growth_streak + 1 if rising else 0
        if self._growth_streak == self.params.state_growth_batches:
            raise_alert(
                "state_growth",
                f"{query}: state rows rose {self._growth_streak} batches in a row "
                f"(now {state_rows:,})",
                float(state_rows or 0),
                float(self._last_state_rows or 0),
            )
        if state_rows is not None:
            self._last_state_rows = state_rows
        return alerts


def system_alerts(
    progresses: Iterable[Mapping[str, Any]],
    params: SystemParams,
    trigger_seconds: float,
    detected_at: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Every system alert a sequence of one query's progress reports raises."""
    rules = SystemAlertRules(params, trigger_seconds * 1000.0)
    return [alert for progress in progresses for alert in rules.observe(progress, detected_at)]


class SystemAlertListener(StreamingQueryListener):
    """Raises ``system_performance`` alerts from the progress of every streaming query.

    Writes each alert with its own short PostgreSQL connection (when ``pg`` is given) and logs
    it; keeps the last alerts in ``recent`` for a caller or a test to look at. A query without
    Spark state operators is judged on ``open_state_rows`` (read from ``pg``). A failure here is
    logged, never raised: a listener must not break the query it watches.
    """

    def __init__(
        self,
        params: SystemParams,
        trigger_seconds: float,
        pg: PgSettings | None = None,
        state_rows_of: Callable[[Mapping[str, Any]], int | None] = _state_rows,
        keep: int = 100,
    ) -> None:
        self.params = params
        self.trigger_ms = trigger_seconds * 1000.0
        self.pg = pg
        self.state_rows_of = state_rows_of
        self.progress_seen = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._rules: dict[str, SystemAlertRules] = {}
        self._lock = threading.Lock()

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        try:
            progress = json.loads(event.progress.json)
            if self.pg is not None and not progress.get("stateOperators"):
                progress[EXTERNAL_STATE_KEY] = open_state_rows(self.pg)
            with self._lock:
                self.progress_seen += 1
                rules = self._rules.setdefault(
                    str(progress.get("id")),
                    SystemAlertRules(self.params, self.trigger_ms, self.state_rows_of),
                )
                alerts = rules.observe(progress)
                self.recent.extend(alerts)
            if alerts:
                self._write(alerts, progress)
        except Exception:  # a listener failure must never reach the query
            _log.exception("system alert listener failed on a progress report")

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        with self._lock:
            self._rules.pop(str(event.id), None)

    def _write(self, alerts: list[dict[str, Any]], progress: Mapping[str, Any]) -> None:
        if self.pg is None:
            for alert in alerts:
                _log.warning(
                    "ALERT system_performance %s: %s", alert["alert_key"], alert["message"]
                )
            return
        with connect(self.pg) as conn, conn.cursor() as cursor:
            insert_alerts(cursor, alerts, progress.get("name"), progress.get("batchId"))
            conn.commit()


# --- the engine ---------------------------------------------------------------------------------


class AlertEngine:
    """The gold context and the rules: what the streaming query calls for every batch."""

    def __init__(
        self,
        params: AlertParams,
        product_stats: DataFrame,
        customer_stats: DataFrame,
        *,
        trigger_seconds: float = 5.0,
        pg: PgSettings | None = None,
        fraud: LiveFraudScorer | None = None,
    ) -> None:
        self.params = params
        self.fraud = fraud
        self.product_stats = product_stats
        self.customer_stats = customer_stats
        self.trigger_seconds = trigger_seconds
        self.pg = pg
        # The per-event path is built once: every micro-batch reuses the same expressions.
        self._with_context = with_order_context(product_stats, customer_stats)
        self._raise = raise_event_alerts(event_rules(params))
        self._conformed = _conformed_columns()
        self._fraud_alerts = (
            fraud_alerts(fraud.params, fraud.saved.version) if fraud is not None else None
        )

    @classmethod
    def create(cls, spark: SparkSession, settings: Settings, pg: PgSettings) -> AlertEngine:
        """Load the gold context once (cached), and fill ``streaming.inventory`` from it."""
        params = AlertParams.from_config(settings.streaming["alerts"])
        gold = settings.path("gold")
        frames = {}
        for name in ("products", "product_performance", "customers", "customer_ltv"):
            path = gold / name
            if not path.exists():
                raise FileNotFoundError(
                    f"alerts need the batch gold layer: {path} is missing (run `sparkmart batch`)"
                )
            frames[name] = spark.read.parquet(str(path))
        days = history_days(frames["customer_ltv"])
        products = product_context(
            frames["products"], frames["product_performance"], days, params.low_inventory
        ).cache()
        customers = customer_context(
            frames["customers"], frames["customer_ltv"], params.high_value
        ).cache()
        if not table_exists(pg, INVENTORY):
            ensure_stream_tables(pg)
        stocked = products.filter(F.col("stock_quantity").isNotNull()).select(
            "product_id", "stock_quantity", "reorder_threshold"
        )
        loaded = replace_table_atomically(stocked, pg, INVENTORY, "product_id")
        _log.info(
            "alert context: %d products in %s, %d customers, %d days of gold history",
            loaded,
            INVENTORY,
            customers.count(),
            days,
        )
        trigger = float(settings.streaming["query"].get("trigger_seconds", 5))
        fraud = LiveFraudScorer.load(spark, settings.path("models"), gold, params.fraud)
        return cls(params, products, customers, trigger_seconds=trigger, pg=pg, fraud=fraud)

    def event_alerts(self, events: DataFrame, batch_id: int) -> DataFrame:
        """Per-event alerts of one micro-batch (ALERT_SCHEMA rows); lazy, nothing is written.

        ``batch_id`` is not part of any id: an event raises the same alert in whichever batch
        it arrives.
        """
        return events.transform(self._with_context).transform(self._raise).select(*self._conformed)

    def fraud_alerts(self, events: DataFrame) -> DataFrame | None:
        """``suspected_fraud`` alerts of one micro-batch from the live fraud scores (ALERT_SCHEMA
        rows), or None when live scoring is off. A job of its own: the streaming query runs it
        beside the metric and rule jobs."""
        if self.fraud is None or self._fraud_alerts is None:
            return None
        return self.fraud.scores(events).transform(self._fraud_alerts).select(*self._conformed)

    def stateful_alerts(self, cursor: Any, batch: BatchContext) -> int:
        """customer_burst, sales_drop and low_inventory inside the caller's transaction."""
        return run_stateful_rules(cursor, batch, self.params)

    def listener(self, trigger_seconds: float | None = None) -> StreamingQueryListener:
        """A listener for ``spark.streams.addListener``: system alerts, written to ``pg``.

        ``trigger_seconds``: the query's actual trigger interval when a flag overrides the
        config's ``query.trigger_seconds``.
        """
        trigger = self.trigger_seconds if trigger_seconds is None else trigger_seconds
        return SystemAlertListener(self.params.system, trigger, self.pg)
