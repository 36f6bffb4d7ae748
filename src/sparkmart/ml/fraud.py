"""Fraud score: a class-weighted logistic regression on order features.

Labels are the confirmed fraud cases (the generator's ``is_fraud``, standing in for
chargebacks); features come only from the order and the customer's earlier orders. Fraud is
~1% of orders, so each class is weighted by the inverse of its share. The split is by time:
the model is tested on the latest ``test_fraction`` of orders.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.functions import vector_to_array
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkmart.ml.core import (
    ConfigSection,
    InsufficientDataError,
    TrainResult,
    input_schema,
    require_columns,
    require_rows,
)
from sparkmart.ml.evaluation import binary_metrics, threshold_metrics
from sparkmart.ml.features import ORDER_COLUMNS, encoding_stages, order_features

NAME = "fraud"
NUMERIC = (
    "log_amount",
    "amount_vs_history",
    "has_history",
    "orders_prev_24h",
    "orders_prev_7d",
    "log_hours_since_prev_order",
    "hour",
    "is_night",
    "log_account_age_days",
    "is_new_account",
    "quantity_value",
    "discount_value",
)
CATEGORICAL = ("payment_method", "category")
INPUTS = (
    "order_id",
    "log_amount",
    "amount_vs_history",
    "has_history",
    "orders_prev_24h",
    "orders_prev_7d",
    "hours_since_prev_order",
    "hour",
    "is_night",
    "account_age_days",
    "is_new_account",
    "quantity_value",
    "discount_value",
    *CATEGORICAL,
)


@dataclass(frozen=True)
class FraudParams:
    threshold: float = 0.5
    test_fraction: float = 0.25
    reg_params: tuple[float, ...] = (0.0, 0.01)
    cv_folds: int = 3
    max_iter: int = 50
    min_positives: int = 5
    target_roc_auc: float = 0.95
    seed: int = 42

    @classmethod
    def from_config(cls, ml: dict[str, Any]) -> FraudParams:
        section = ConfigSection(ml, NAME, [*asdict(cls()).keys()])
        return cls(
            threshold=section.number("threshold", cls.threshold, 0, 1),
            test_fraction=section.number("test_fraction", cls.test_fraction, 0.05, 0.9),
            reg_params=tuple(section.numbers("reg_params", cls.reg_params, low=0)),
            cv_folds=section.integer("cv_folds", cls.cv_folds, low=2),
            max_iter=section.integer("max_iter", cls.max_iter, low=1),
            min_positives=section.integer("min_positives", cls.min_positives, low=1),
            target_roc_auc=section.number("target_roc_auc", cls.target_roc_auc, 0, 1),
            seed=section.seed,
        )


def build_pipeline(max_iter: int = 50) -> tuple[Pipeline, LogisticRegression]:
    """Log transforms -> one-hot -> assemble -> standardise -> weighted logistic regression."""
    logs = SQLTransformer(
        statement="SELECT *, log1p(greatest(hours_since_prev_order, 0)) AS "
        "log_hours_since_prev_order, log1p(greatest(account_age_days, 0)) AS "
        "log_account_age_days FROM __THIS__"
    )
    classifier = LogisticRegression(
        featuresCol="features", labelCol="label", weightCol="class_weight", maxIter=max_iter
    )
    stages = [logs, *encoding_stages(CATEGORICAL, NUMERIC, scale=True), classifier]
    return Pipeline(stages=stages), classifier


def with_labels(features: DataFrame, truth_orders: DataFrame) -> DataFrame:
    """Features + label (1.0 = fraud), from the truth table: labels only, never features."""
    return features.join(
        truth_orders.select("order_id", F.col("is_fraud").cast("double").alias("label")),
        "order_id",
    )


def class_weights(labelled: DataFrame) -> DataFrame:
    """class_weight: each class weighs half of the total (inverse of its share)."""
    positive_share = labelled.agg(F.avg("label")).first()[0] or 0.0
    if positive_share in (0.0, 1.0):
        raise InsufficientDataError(f"{NAME}: training data holds only one class")
    weight = F.when(F.col("label") == 1.0, 0.5 / positive_share).otherwise(
        0.5 / (1 - positive_share)
    )
    return labelled.withColumn("class_weight", weight)


def time_split(df: DataFrame, test_fraction: float) -> tuple[DataFrame, DataFrame]:
    """Earlier orders train, the latest ``test_fraction`` test (no look-ahead)."""
    cut = df.approxQuantile("order_seconds", [1.0 - test_fraction], 0.001)[0]
    return df.filter(F.col("order_seconds") < cut), df.filter(F.col("order_seconds") >= cut)


def fraud_score(predictions: DataFrame) -> DataFrame:
    return predictions.withColumn("fraud_score", vector_to_array("probability")[1])


def train(
    orders: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    truth_orders: DataFrame,
    params: FraudParams,
) -> TrainResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    features = order_features(orders, customers, products).withColumn(
        "order_seconds", F.unix_seconds("order_ts")
    )
    labelled = with_labels(features, truth_orders).cache()
    counts = labelled.groupBy("label").count().collect()
    by_label = {r["label"]: r["count"] for r in counts}
    require_rows(int(by_label.get(1.0, 0)), params.min_positives, "fraud orders", NAME)
    train_rows, test_rows = time_split(labelled, params.test_fraction)
    train_rows = class_weights(train_rows)
    timings["features"] = time.perf_counter() - started

    started = time.perf_counter()
    pipeline, classifier = build_pipeline(params.max_iter)
    grid = ParamGridBuilder().addGrid(classifier.regParam, list(params.reg_params)).build()
    search = CrossValidator(
        estimator=pipeline,
        estimatorParamMaps=grid,
        evaluator=BinaryClassificationEvaluator(metricName="areaUnderPR"),
        numFolds=params.cv_folds,
        seed=params.seed,
    )
    fitted = search.fit(train_rows)
    model: PipelineModel = fitted.bestModel
    timings["cross_validation"] = time.perf_counter() - started

    started = time.perf_counter()
    scored = fraud_score(model.transform(test_rows))
    metrics = evaluate(scored, params.threshold)
    timings["evaluation"] = time.perf_counter() - started
    chosen = grid[max(range(len(grid)), key=lambda i: fitted.avgMetrics[i])]
    labelled.unpersist()
    return TrainResult(
        name=NAME,
        model=model,
        metrics={
            **metrics,
            "train_orders": int(sum(by_label.values()) - metrics["test_orders"]),
            "fraud_orders": int(by_label.get(1.0, 0)),
            "cv_pr_auc": {
                str(g[classifier.regParam]): m
                for g, m in zip(grid, fitted.avgMetrics, strict=False)
            },
        },
        params={
            **asdict(params),
            "chosen_reg_param": chosen[classifier.regParam],
            "input_schema": input_schema(features, list(INPUTS)),
            "orders_schema": input_schema(orders, list(ORDER_COLUMNS)),
            "coefficients": dict(
                zip(
                    _feature_names(model),
                    model.stages[-1].coefficients.toArray().round(4).tolist(),
                    strict=False,
                )
            ),
        },
        timings=timings,
    )


def _feature_names(model: PipelineModel) -> list[str]:
    """Names of the assembled vector's slots (numeric features, then one-hot levels)."""
    indexer = model.stages[1]
    names = list(NUMERIC)
    for column, labels in zip(CATEGORICAL, indexer.labelsArray, strict=False):
        names += [f"{column}={label}" for label in labels] + [f"{column}=<unknown>"]
    return names


def evaluate(scored: DataFrame, threshold: float) -> dict[str, Any]:
    """ROC AUC, PR AUC, and precision/recall at ``threshold`` against the label column."""
    rows = scored.agg(F.count(F.lit(1)), F.sum("label")).first()
    return {
        **binary_metrics(scored, "label", "fraud_score"),
        **threshold_metrics(scored, "label", "fraud_score", threshold),
        "test_orders": int(rows[0]),
        "test_fraud_orders": int(rows[1] or 0),
        "base_rate": float((rows[1] or 0) / rows[0]) if rows[0] else 0.0,
    }


def score_orders(
    model: PipelineModel,
    orders: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    params: dict[str, Any],
    history: DataFrame | None = None,
) -> DataFrame:
    """order_id -> fraud_score for ``orders``; ``history`` (earlier orders) feeds velocity and
    amount-vs-history features, e.g. gold orders when scoring a streaming micro-batch."""
    pool = orders if history is None else history.unionByName(orders, allowMissingColumns=True)
    require_columns(orders, params["orders_schema"], f"{NAME} scoring (orders)")
    features = order_features(pool, customers, products)
    if history is not None:
        features = features.join(orders.select("order_id"), "order_id", "left_semi")
    require_columns(features, params["input_schema"], f"{NAME} scoring")
    return fraud_score(model.transform(features)).select("order_id", "fraud_score")


def score(
    model: PipelineModel,
    orders_gold: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    params: dict[str, Any],
) -> DataFrame:
    """Gold orders with ``fraud_score`` filled."""
    scores = score_orders(model, orders_gold, customers, products, params)
    columns = orders_gold.columns
    return orders_gold.drop("fraud_score").join(scores, "order_id", "left").select(*columns)
