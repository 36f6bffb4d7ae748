"""Live fraud scores: the trained fraud model of ``sparkmart ml train`` applied to every batch.

The model (ml/fraud.py) scores an order from the order and the customer's earlier orders, so a
micro-batch is scored together with the gold order history of its customers only (a semi-join
on the batch's customer ids, never the whole history), through the same ``score_orders`` the
batch scoring uses: a live order gets the score the batch pipeline would give it. Orders at or
above ``alerts.fraud.threshold`` raise a ``suspected_fraud`` alert (stream/alerts.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkmart.ml.features import ORDER_COLUMNS
from sparkmart.ml.fraud import NAME as FRAUD_MODEL
from sparkmart.ml.fraud import score_orders
from sparkmart.ml.registry import ModelNotFoundError, SavedModel, load_model
from sparkmart.spark_utils import get_logger

log = get_logger("stream.fraud")


@dataclass(frozen=True)
class FraudAlertParams:
    """``alerts.fraud`` of streaming_config.yaml (optional; off unless ``enabled``)."""

    enabled: bool = False
    threshold: float = 0.9
    severity: str = "critical"


class LiveFraudScorer:
    """A saved fraud model plus the gold context its features need."""

    def __init__(
        self,
        saved: SavedModel,
        history: DataFrame,
        customers: DataFrame,
        products: DataFrame,
        params: FraudAlertParams,
    ) -> None:
        self.saved = saved
        self.history = history
        self.customers = customers
        self.products = products
        self.params = params

    @classmethod
    def load(
        cls, spark: SparkSession, models_dir: Path, gold_dir: Path, params: FraudAlertParams
    ) -> LiveFraudScorer | None:
        """The latest saved fraud model with cached gold context; None (logged) when scoring
        is off or no model has been trained yet."""
        if not params.enabled:
            return None
        try:
            saved = load_model(models_dir, FRAUD_MODEL)
        except ModelNotFoundError:
            log.info(
                "no fraud model under %s: live fraud scoring is off (run `sparkmart ml train`)",
                models_dir,
            )
            return None
        orders = spark.read.parquet(str(gold_dir / "orders")).select(*ORDER_COLUMNS).cache()
        customers = spark.read.parquet(str(gold_dir / "customers")).cache()
        products = spark.read.parquet(str(gold_dir / "products")).cache()
        log.info(
            "live fraud scoring with %s version %s (alert at score >= %.2f)",
            FRAUD_MODEL,
            saved.version,
            params.threshold,
        )
        return cls(saved, orders, customers, products, params)

    def scores(self, events: DataFrame) -> DataFrame:
        """event_id, order_id, customer_id, event_time, fraud_score of the batch's events
        (orders already in the gold history are scored as new orders, without themselves)."""
        orders = events.select(*ORDER_COLUMNS)
        # Only the batch's customers and products: a broadcast of the batch's keys into scans
        # of the cached gold tables, instead of hashing 100k+ gold rows for every batch.
        buyers = F.broadcast(orders.select("customer_id"))
        history = self.history.join(buyers, "customer_id", "left_semi").join(
            orders.select("order_id"), "order_id", "left_anti"
        )
        scored = score_orders(
            self.saved.model,
            orders,
            self.customers.join(buyers, "customer_id", "left_semi"),
            self.products.join(F.broadcast(orders.select("product_id")), "product_id", "left_semi"),
            self.saved.params,
            history=history,
        )
        return events.select("event_id", "order_id", "customer_id", "event_time").join(
            scored, "order_id"
        )
