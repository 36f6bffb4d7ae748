"""Every model trains, saves, reloads and scores on `tiny` gold data; scores are written back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.config import Settings
from sparkmart.io.postgres import PgSettings, query_rows, read_table
from sparkmart.ml import fraud, satisfaction, segmentation
from sparkmart.ml.core import InsufficientDataError, SchemaMismatchError
from sparkmart.ml.pipeline import MODELS, read_inputs, run_ml
from sparkmart.ml.registry import ModelNotFoundError, load_model
from tests.conftest import TINY_ML


def test_gold_inputs_are_ready(tiny_gold: dict[str, Path]) -> None:
    """Builds the data in its own test, so that no single test carries all the set-up time."""
    assert (tiny_gold["gold_dir"] / "orders").exists()


def test_training_saves_every_model_with_its_report(tiny_ml: dict) -> None:
    summary = tiny_ml["summary"]
    assert [o.name for o in summary.outcomes] == list(MODELS)
    for outcome in summary.outcomes:
        version_dir = tiny_ml["models_dir"] / outcome.name / outcome.version
        for name in ("metrics.json", "params.json", "report.json", "model"):
            assert (version_dir / name).exists(), f"{outcome.name}: {name} missing"
        assert outcome.targets, f"{outcome.name}: no target checked"
        assert "met" in summary.format()
    by_name = {o.name: o.metrics for o in summary.outcomes}
    assert -1.0 <= by_name["segmentation"]["ari"] <= 1.0
    assert 0.0 <= by_name["fraud"]["roc_auc"] <= 1.0
    assert by_name["satisfaction"]["r2"] > 0.3  # the planted score is driven by the times
    assert by_name["forecasting"]["baseline_mape"] > 0


def test_evaluate_checks_every_model_on_the_hold_out_of_its_training(
    spark: SparkSession, settings: Settings, tiny_ml: dict
) -> None:
    """On the training data, evaluate reproduces the training run's validation: the reloaded
    models (segmentation, fraud, satisfaction) score the same hold-out, and the refits with the
    saved hyperparameters (forecasting, recommendation) score theirs the same way."""
    dirs = {k: tiny_ml[k] for k in ("gold_dir", "truth_dir", "models_dir")}
    evaluated = run_ml(dataclasses.replace(settings, ml=TINY_ML), spark, "evaluate", None, **dirs)
    trained = {o.name: o for o in tiny_ml["summary"].outcomes}
    assert [o.name for o in evaluated.outcomes] == list(MODELS)
    for outcome in evaluated.outcomes:
        expected = trained[outcome.name].targets
        assert [t.metric for t in outcome.targets] == [t.metric for t in expected]
        for got, want in zip(outcome.targets, expected, strict=True):
            assert got.value == pytest.approx(want.value, rel=1e-6), f"{outcome.name} {got}"
    metrics = {o.name: o.metrics for o in evaluated.outcomes}["forecasting"]
    assert metrics["interval_level"] == 0.95
    assert metrics["calibration_residuals"] == 30  # one backtest window of 30 days
    assert 0.0 <= metrics["interval_coverage"] <= 1.0
    assert metrics["interval_width_ratio"] > 0


def test_scoring_writes_scores_to_gold_and_postgres(
    spark: SparkSession, settings: Settings, tiny_ml: dict, pg: PgSettings
) -> None:
    dirs = {k: tiny_ml[k] for k in ("gold_dir", "truth_dir", "models_dir")}
    summary = run_ml(dataclasses.replace(settings, ml=TINY_ML), spark, "score", None, pg, **dirs)
    gold = tiny_ml["gold_dir"]
    customers = spark.read.parquet(str(gold / "customers"))
    orders = spark.read.parquet(str(gold / "orders")).drop("order_month")
    products = spark.read.parquet(str(gold / "products"))
    assert customers.filter(F.col("segment").isNull()).count() == 0
    assert orders.filter(F.col("fraud_score").isNull()).count() == 0
    assert orders.filter(F.col("customer_satisfaction").between(1, 5)).count() > 0
    assert products.filter(F.col("recommendation_rank") == 1).count() == 1
    forecast = spark.read.parquet(str(gold / "sales_forecast"))
    assert forecast.count() == 30
    assert forecast.filter(~F.col("forecast").between(F.col("lower"), F.col("upper"))).count() == 0
    # The reloaded model forecasts what the trained one did (saved next to it by training).
    trained = load_model(tiny_ml["models_dir"], "forecasting").path / "outputs" / "sales_forecast"
    assertDataFrameEqual(forecast, spark.read.parquet(str(trained)))
    assert summary.written["orders"] == orders.count()
    assertDataFrameEqual(read_table(spark, pg, "analytics.customers"), customers)
    assertDataFrameEqual(read_table(spark, pg, "analytics.orders"), orders)
    assert summary.postgres_rows["recommendations"] > 0
    # The run is audited like a batch run: its row, its step with Spark's metrics, its UI.
    [(run_id, status, steps, app_id)] = query_rows(
        pg,
        "SELECT run_id, status, steps, spark_app_id FROM audit.pipeline_runs "
        "WHERE pipeline = 'ml' AND mode = 'score'",
    )
    assert status == "succeeded"
    assert [step["name"] for step in steps] == ["score and write back"]
    assert steps[0]["rows_out"] == sum(summary.written.values())
    assert steps[0]["metrics"]["output_rows"] >= summary.written["orders"]
    [(stored,)] = query_rows(
        pg, "SELECT count(*) FROM audit.step_metrics WHERE run_id = %s", (run_id,)
    )
    assert stored == 1
    [(sessions,)] = query_rows(
        pg, "SELECT count(*) FROM audit.spark_sessions WHERE app_id = %s", (app_id,)
    )
    assert sessions == 1


def test_clear_errors_for_missing_model_schema_mismatch_and_too_little_data(
    spark: SparkSession, settings: Settings, tiny_ml: dict, tmp_path: Path, pg: PgSettings
) -> None:
    dirs = {k: tiny_ml[k] for k in ("gold_dir", "truth_dir")}
    with pytest.raises(ModelNotFoundError, match="run `sparkmart ml train --models fraud`"):
        run_ml(settings, spark, "score", ["fraud"], pg, models_dir=tmp_path, **dirs)
    [(status, error)] = query_rows(
        pg,
        "SELECT status, error FROM audit.pipeline_runs "
        "WHERE pipeline = 'ml' AND parameters->>'models_dir' = %s",
        (str(tmp_path),),
    )
    assert status == "failed" and "ModelNotFoundError" in error

    data = read_inputs(spark, tiny_ml["gold_dir"], tiny_ml["truth_dir"])
    saved = load_model(tiny_ml["models_dir"], fraud.NAME)
    retyped = data.orders.withColumn("unit_price", F.col("unit_price").cast("double"))
    with pytest.raises(SchemaMismatchError, match="'unit_price' is double, the model expects dec"):
        fraud.score_orders(saved.model, retyped, data.customers, data.products, saved.params)
    rated = load_model(tiny_ml["models_dir"], satisfaction.NAME)
    with pytest.raises(SchemaMismatchError, match="missing column 'discount'"):
        satisfaction.score_orders(
            rated.model, data.orders.drop("discount"), data.customers, data.products, rated.params
        )

    params = segmentation.SegmentationParams.from_config(TINY_ML)
    with pytest.raises(
        InsufficientDataError, match=r"too little data to train: [0-9] customers with orders"
    ):
        segmentation.train(data.customers, data.orders.limit(3), data.products, params)
