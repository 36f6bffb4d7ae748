"""Every model trains, saves, reloads and scores on `tiny` gold data; scores are written back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch.analytics import build_gold
from sparkmart.batch.export import PARTITION_COLUMNS, with_order_month, write_parquet_atomically
from sparkmart.config import Settings
from sparkmart.generate import generate, resolve_counts, write_generated
from sparkmart.io.postgres import PgSettings, read_table
from sparkmart.ml import fraud, satisfaction, segmentation
from sparkmart.ml.core import InsufficientDataError, SchemaMismatchError
from sparkmart.ml.pipeline import MODELS, read_inputs, run_ml
from sparkmart.ml.registry import ModelNotFoundError, load_model

# Small grids: these tests check that the pipelines work, not how good they are.
TINY_ML = {
    "seed": 7,
    "segmentation": {"k_min": 3, "k_max": 4, "max_iter": 10, "restarts": 1},
    "forecasting": {
        "horizon_days": 30,
        "lag_days": [35],
        "moving_average_days": [7],
        "cv_folds": 1,
        "reg_params": [0.01],
        "elastic_net_params": [0.0],
    },
    "recommendation": {"rank": 2, "max_iter": 2, "top_n": 5, "holdout_days": 120},
    "fraud": {"reg_params": [0.01], "cv_folds": 2, "max_iter": 10, "min_positives": 2},
    "satisfaction": {"reg_params": [0.0], "cv_folds": 2},
}


@pytest.fixture(scope="module")
def tiny_gold(
    spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Gold customers, products and orders of `tiny` data, and the generator's truth.

    Built from the generator's clean rows with the batch's gold transforms (the quality steps
    are tested elsewhere and would only slow these tests down).
    """
    gen_config = settings.pipeline["generate"]
    root = tmp_path_factory.mktemp("ml_tiny")
    data = generate(spark, resolve_counts(settings, "tiny"), gen_config["seed"], gen_config)
    write_generated(data, root / "raw", ["parquet"], None)
    clean = {}
    for entity, frame in data.clean.items():
        frame.write.parquet(str(root / "clean" / entity))
        clean[entity] = spark.read.parquet(str(root / "clean" / entity))
    gold = build_gold(clean["customers"], clean["products"], clean["orders"])
    for name in ("customers", "products", "orders"):
        frame = gold[name].transform(with_order_month) if name == "orders" else gold[name]
        write_parquet_atomically(frame, root / "gold" / name, PARTITION_COLUMNS.get(name))
    return {"gold_dir": root / "gold", "truth_dir": root / "raw" / "truth"}


@pytest.fixture(scope="module")
def tiny_ml(
    spark: SparkSession,
    settings: Settings,
    tiny_gold: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """The five models trained on the `tiny` gold tables."""
    dirs: dict = {**tiny_gold, "models_dir": tmp_path_factory.mktemp("models")}
    tiny_settings = dataclasses.replace(settings, ml=TINY_ML)
    return {**dirs, "summary": run_ml(tiny_settings, spark, "train", None, **dirs)}


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


@pytest.mark.parametrize("name", [segmentation.NAME, fraud.NAME, satisfaction.NAME])
def test_a_reloaded_model_gives_the_same_predictions(
    spark: SparkSession, tiny_ml: dict, name: str
) -> None:
    data = read_inputs(spark, tiny_ml["gold_dir"], tiny_ml["truth_dir"])
    first = load_model(tiny_ml["models_dir"], name)
    second = load_model(tiny_ml["models_dir"], name)
    assert first.model is not second.model

    def predict(model) -> object:
        if name == segmentation.NAME:
            return segmentation.score(
                model, data.customers, data.orders, data.products, first.params
            )
        module = fraud if name == fraud.NAME else satisfaction
        return module.score_orders(model, data.orders, data.customers, data.products, first.params)

    assertDataFrameEqual(predict(first.model), predict(second.model))


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
    assert summary.written["orders"] == orders.count()
    assertDataFrameEqual(read_table(spark, pg, "analytics.customers"), customers)
    assertDataFrameEqual(read_table(spark, pg, "analytics.orders"), orders)
    assert summary.postgres_rows["recommendations"] > 0

    evaluated = run_ml(dataclasses.replace(settings, ml=TINY_ML), spark, "evaluate", None, **dirs)
    assert {o.name for o in evaluated.outcomes} == set(MODELS)


def test_clear_errors_for_missing_model_schema_mismatch_and_too_little_data(
    spark: SparkSession, settings: Settings, tiny_ml: dict, tmp_path: Path
) -> None:
    dirs = {k: tiny_ml[k] for k in ("gold_dir", "truth_dir")}
    with pytest.raises(ModelNotFoundError, match="run `sparkmart ml train --models fraud`"):
        run_ml(settings, spark, "score", ["fraud"], models_dir=tmp_path, **dirs)

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
