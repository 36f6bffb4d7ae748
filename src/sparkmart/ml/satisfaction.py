"""Customer satisfaction: a regression on fulfilment times and order features.

Labels are the planted satisfaction scores (standing in for survey answers). Only orders with
both a shipped and a delivered time can be scored: satisfaction is about the delivery
experience, and the other orders leave it null. The prediction is clipped to the 1-5 scale.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.regression import LinearRegression
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkmart.ml.core import (
    ConfigSection,
    TrainResult,
    input_schema,
    require_columns,
    require_rows,
)
from sparkmart.ml.evaluation import regression_metrics
from sparkmart.ml.features import ORDER_COLUMNS, encoding_stages, order_features

NAME = "satisfaction"
NUMERIC = (
    "processing_hours",
    "delivery_hours",
    "discount_value",
    "quantity_value",
    "log_amount",
    "is_weekend_order",
)
CATEGORICAL = ("country", "category")
INPUTS = (
    "order_id",
    "processing_hours",
    "delivery_hours",
    "discount_value",
    "quantity_value",
    "log_amount",
    "day_of_week",
    *CATEGORICAL,
)
SCALE_MIN, SCALE_MAX = 1.0, 5.0


@dataclass(frozen=True)
class SatisfactionParams:
    test_fraction: float = 0.25
    reg_params: tuple[float, ...] = (0.0, 0.01)
    elastic_net_params: tuple[float, ...] = (0.0,)
    cv_folds: int = 3
    min_rows: int = 50
    target_r2: float = 0.7
    seed: int = 42

    @classmethod
    def from_config(cls, ml: dict[str, Any]) -> SatisfactionParams:
        section = ConfigSection(ml, NAME, [*asdict(cls()).keys()])
        return cls(
            test_fraction=section.number("test_fraction", cls.test_fraction, 0.05, 0.9),
            reg_params=tuple(section.numbers("reg_params", cls.reg_params, low=0)),
            elastic_net_params=tuple(
                section.numbers("elastic_net_params", cls.elastic_net_params, low=0)
            ),
            cv_folds=section.integer("cv_folds", cls.cv_folds, low=2),
            min_rows=section.integer("min_rows", cls.min_rows, low=2),
            target_r2=section.number("target_r2", cls.target_r2, -1, 1),
            seed=section.seed,
        )


def build_pipeline() -> tuple[Pipeline, LinearRegression]:
    """Weekend flag -> one-hot -> assemble -> linear regression -> clip to the 1-5 scale."""
    weekend = SQLTransformer(
        statement="SELECT *, CAST(day_of_week IN (1, 6, 7) AS DOUBLE) AS is_weekend_order "
        "FROM __THIS__"
    )
    regression = LinearRegression(featuresCol="features", labelCol="label", maxIter=100)
    clip = SQLTransformer(
        statement=f"SELECT *, least(greatest(prediction, {SCALE_MIN}), {SCALE_MAX}) "
        "AS customer_satisfaction FROM __THIS__"
    )
    stages = [weekend, *encoding_stages(CATEGORICAL, NUMERIC, scale=False), regression, clip]
    return Pipeline(stages=stages), regression


def scorable(features: DataFrame) -> DataFrame:
    """Orders with both fulfilment times known."""
    return features.filter(
        F.col("processing_hours").isNotNull() & F.col("delivery_hours").isNotNull()
    )


def holdout_split(
    labelled: DataFrame, test_fraction: float, seed: int
) -> tuple[DataFrame, DataFrame]:
    """(training, hold-out) rows: an order's side is fixed by a hash of its id and the seed,
    whatever the partitioning or the orders added since, so evaluation finds the hold-out of
    training again (randomSplit depends on how the rows are partitioned)."""
    held_out = F.pmod(F.xxhash64("order_id", F.lit(seed)), F.lit(10_000)) < test_fraction * 10_000
    return labelled.filter(~held_out), labelled.filter(held_out)


def train(
    orders: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    truth_orders: DataFrame,
    params: SatisfactionParams,
) -> TrainResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    features = scorable(order_features(orders, customers, products))
    labelled = features.join(
        truth_orders.select("order_id", F.col("satisfaction").alias("label")), "order_id"
    ).cache()
    rows = labelled.count()
    require_rows(rows, params.min_rows, "delivered orders", NAME)
    train_rows, test_rows = holdout_split(labelled, params.test_fraction, params.seed)
    timings["features"] = time.perf_counter() - started

    started = time.perf_counter()
    pipeline, regression = build_pipeline()
    grid = (
        ParamGridBuilder()
        .addGrid(regression.regParam, list(params.reg_params))
        .addGrid(regression.elasticNetParam, list(params.elastic_net_params))
        .build()
    )
    search = CrossValidator(
        estimator=pipeline,
        estimatorParamMaps=grid,
        evaluator=RegressionEvaluator(
            labelCol="label", predictionCol="customer_satisfaction", metricName="rmse"
        ),
        numFolds=params.cv_folds,
        seed=params.seed,
    )
    fitted = search.fit(train_rows)
    model: PipelineModel = fitted.bestModel
    timings["cross_validation"] = time.perf_counter() - started
    best = grid[min(range(len(grid)), key=lambda i: fitted.avgMetrics[i])]

    started = time.perf_counter()
    metrics = evaluate(model.transform(test_rows))
    timings["evaluation"] = time.perf_counter() - started
    labelled.unpersist()
    return TrainResult(
        name=NAME,
        model=model,
        metrics={**metrics, "rows": rows},
        params={
            **asdict(params),
            "chosen_reg_param": best[regression.regParam],
            "chosen_elastic_net_param": best[regression.elasticNetParam],
            "input_schema": input_schema(features, list(INPUTS)),
            "orders_schema": input_schema(orders, list(ORDER_COLUMNS)),
            "coefficients_numeric": dict(
                zip(
                    NUMERIC,
                    model.stages[-2].coefficients.toArray()[: len(NUMERIC)].round(4).tolist(),
                    strict=True,
                )
            ),
            "intercept": round(float(model.stages[-2].intercept), 4),
        },
        timings=timings,
    )


def evaluate(scored: DataFrame) -> dict[str, Any]:
    """R^2, RMSE and MAE of the clipped prediction against ``label``."""
    return {
        **regression_metrics(scored, "label", "customer_satisfaction"),
        "test_rows": scored.count(),
    }


def score_orders(
    model: PipelineModel,
    orders: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    params: dict[str, Any],
) -> DataFrame:
    """order_id -> customer_satisfaction for orders with both fulfilment times."""
    require_columns(orders, params["orders_schema"], f"{NAME} scoring (orders)")
    features = scorable(order_features(orders, customers, products))
    require_columns(features, params["input_schema"], f"{NAME} scoring")
    return model.transform(features).select("order_id", "customer_satisfaction")


def score(
    model: PipelineModel,
    orders_gold: DataFrame,
    customers: DataFrame,
    products: DataFrame,
    params: dict[str, Any],
) -> DataFrame:
    """Gold orders with ``customer_satisfaction`` filled where it can be predicted."""
    scores = score_orders(model, orders_gold, customers, products, params)
    columns = orders_gold.columns
    return (
        orders_gold.drop("customer_satisfaction").join(scores, "order_id", "left").select(*columns)
    )
