"""Live fraud scoring: the streaming query scores each batch with the trained fraud model."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.config import ConfigError
from sparkmart.ml.features import ORDER_COLUMNS
from sparkmart.ml.fraud import score_orders
from sparkmart.ml.registry import load_model
from sparkmart.schemas import ALERT_SCHEMA
from sparkmart.stream.alerts import AlertParams, conform_alerts, fraud_alerts
from sparkmart.stream.fraud import FraudAlertParams, LiveFraudScorer

LIVE_ORDERS = 40


@pytest.fixture(scope="module")
def live(spark: SparkSession, tiny_ml: dict) -> dict:
    """The latest tiny gold orders replayed as live events; the rest is their history."""
    gold: Path = tiny_ml["gold_dir"]
    orders = spark.read.parquet(str(gold / "orders")).select(*ORDER_COLUMNS)
    latest = [
        r["order_id"] for r in orders.orderBy(F.desc("order_ts")).limit(LIVE_ORDERS).collect()
    ]
    events = (
        orders.filter(F.col("order_id").isin(latest))
        .withColumn("event_id", F.concat(F.lit("e-"), F.col("order_id").cast("string")))
        .withColumn("event_time", F.col("order_ts"))
        .cache()
    )
    history = orders.filter(~F.col("order_id").isin(latest))
    return {
        "events": events,
        "history": history,
        "customers": spark.read.parquet(str(gold / "customers")),
        "products": spark.read.parquet(str(gold / "products")),
        "saved": load_model(tiny_ml["models_dir"], "fraud"),
        "models_dir": tiny_ml["models_dir"],
        "gold_dir": gold,
    }


def _scorer(live: dict, threshold: float = 0.9) -> LiveFraudScorer:
    return LiveFraudScorer(
        live["saved"],
        live["history"],
        live["customers"],
        live["products"],
        FraudAlertParams(enabled=True, threshold=threshold),
    )


def test_live_scores_equal_the_batch_scores_over_the_whole_history(live: dict) -> None:
    """Scoring a batch against its customers' history only gives the scores of the batch
    scoring path over every earlier order."""
    saved = live["saved"]
    expected = score_orders(
        saved.model,
        live["events"].select(*ORDER_COLUMNS),
        live["customers"],
        live["products"],
        saved.params,
        history=live["history"],
    )
    scores = _scorer(live).scores(live["events"])
    assert scores.count() == LIVE_ORDERS
    assertDataFrameEqual(scores.select("order_id", "fraud_score"), expected, rtol=1e-9)
    assert scores.filter(~F.col("fraud_score").between(0.0, 1.0)).count() == 0


def test_an_order_already_in_the_history_is_scored_as_new(spark: SparkSession, live: dict) -> None:
    """A replayed gold order must not count itself as its own earlier order."""
    with_itself = _scorer(live)
    with_itself.history = live["history"].unionByName(live["events"].select(*ORDER_COLUMNS))
    assertDataFrameEqual(
        with_itself.scores(live["events"]), _scorer(live).scores(live["events"]), rtol=1e-9
    )


def _alerts(live: dict, threshold: float) -> DataFrame:
    scorer = _scorer(live, threshold)
    return (
        scorer.scores(live["events"])
        .transform(fraud_alerts(scorer.params, live["saved"].version))
        .transform(conform_alerts)
    )


def test_fraud_alerts_fire_at_and_above_the_threshold_only(live: dict) -> None:
    scores = sorted(r["fraud_score"] for r in _scorer(live).scores(live["events"]).collect())
    threshold = scores[len(scores) // 2]  # the median: about half the batch fires
    alerts = _alerts(live, threshold)
    expected = sum(1 for s in scores if s >= threshold)
    assert [(f.name, f.dataType) for f in alerts.schema] == [
        (f.name, f.dataType) for f in ALERT_SCHEMA
    ]
    rows = alerts.collect()
    assert len(rows) == expected > 0
    assert {r["alert_type"] for r in rows} == {"suspected_fraud"}
    assert all(r["value"] >= threshold and r["threshold"] == threshold for r in rows)
    assert len({r["alert_id"] for r in rows}) == len(rows)
    # The same events raise the same ids (a replayed batch cannot raise an alert twice).
    assert {r["alert_id"] for r in _alerts(live, threshold).collect()} == {
        r["alert_id"] for r in rows
    }
    assert _alerts(live, min(1.0, scores[-1] + 1e-9)).count() == 0


def test_no_model_or_scoring_off_means_no_scorer(spark: SparkSession, live: dict, tmp_path) -> None:
    gold = live["gold_dir"]
    on = FraudAlertParams(enabled=True)
    assert LiveFraudScorer.load(spark, tmp_path / "no-models", gold, on) is None
    assert LiveFraudScorer.load(spark, live["models_dir"], gold, FraudAlertParams()) is None
    loaded = LiveFraudScorer.load(spark, live["models_dir"], gold, on)
    assert loaded is not None and loaded.saved.version == live["saved"].version


def test_fraud_alert_config_is_validated(settings) -> None:
    alerts = dict(settings.streaming["alerts"])
    alerts["fraud"] = {"threshold": 1.5}
    with pytest.raises(ConfigError, match=r"alerts\.fraud\.threshold"):
        AlertParams.from_config(alerts)
    alerts["fraud"] = {"enabled": True, "threshold": 0.7, "severity": "critical"}
    assert AlertParams.from_config(alerts).fraud == FraudAlertParams(True, 0.7, "critical")
    del alerts["fraud"]  # optional: scoring off
    assert AlertParams.from_config(alerts).fraud == FraudAlertParams()
