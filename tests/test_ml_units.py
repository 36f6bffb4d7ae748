"""ML building blocks on hand-made data: metrics, feature steps, config checks, the registry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.ml import Pipeline
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.config import ConfigError
from sparkmart.ml import evaluation as ev
from sparkmart.ml import features as feat
from sparkmart.ml.core import SchemaMismatchError, TrainResult, require_columns
from sparkmart.ml.forecasting import ForecastParams, seasonal_naive
from sparkmart.ml.fraud import FraudParams
from sparkmart.ml.registry import ModelNotFoundError, latest_version, load_model, save_model
from sparkmart.ml.segmentation import SegmentationParams, elbow_k, name_segments

TS = dt.datetime

# --- evaluation ------------------------------------------------------------------------------


def cells(labels_a: list[int], labels_b: list[int]) -> list[tuple[int, int, int]]:
    return [(a, b, 1) for a, b in zip(labels_a, labels_b, strict=True)]


def test_ari_of_identical_labelings_is_one_whatever_the_names() -> None:
    assert ev.adjusted_rand_index_from_counts(cells([0, 0, 1, 1, 2], [0, 0, 1, 1, 2])) == 1.0
    assert ev.adjusted_rand_index_from_counts(cells([0, 0, 1, 1, 2], [7, 7, 3, 3, 5])) == 1.0


def test_ari_matches_a_hand_computed_value() -> None:
    # index 1, expected 2 x 1 / 6, max 1.5: (1 - 1/3) / (1.5 - 1/3) = 4/7
    value = ev.adjusted_rand_index_from_counts(cells([0, 0, 1, 1], [0, 0, 1, 2]))
    assert value == pytest.approx(4 / 7)


def test_ari_of_a_labeling_against_an_unrelated_one_is_not_above_zero() -> None:
    value = ev.adjusted_rand_index_from_counts(cells([0, 0, 1, 1], [0, 1, 0, 1]))
    assert value == pytest.approx(-0.5)


def test_ari_on_spark_columns_ignores_null_labels(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1, "a", 0), (2, "a", 0), (3, "b", 1), (4, "b", 1), (5, None, 0)],
        "id int, cluster string, truth int",
    )
    assert ev.adjusted_rand_index(df, "cluster", "truth") == 1.0


def test_mape_leaves_out_zero_actuals(spark: SparkSession) -> None:
    df = spark.createDataFrame([(100.0, 90.0), (50.0, 55.0), (0.0, 3.0)], "y double, f double")
    assert ev.mean_absolute_percentage_error(df, "y", "f") == pytest.approx(0.1)


def test_binary_metrics_of_a_perfect_score(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(1.0, 0.9), (1.0, 0.8), (0.0, 0.3), (0.0, 0.1), (0.0, 0.2)], "label double, s double"
    )
    metrics = ev.binary_metrics(df, "label", "s")
    assert metrics == {"roc_auc": pytest.approx(1.0), "pr_auc": pytest.approx(1.0)}
    assert ev.threshold_metrics(df, "label", "s", 0.5)["precision"] == 1.0


def test_ranking_metrics_on_hand_made_lists(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [([1, 2], [1]), ([3, 4], [9])], "recommended array<bigint>, relevant array<bigint>"
    )
    metrics = ev.ranking_metrics(df, "recommended", "relevant", 2)
    assert metrics["precision_at_2"] == pytest.approx((1 / 2 + 0) / 2)
    assert metrics["ndcg_at_2"] == pytest.approx((1.0 + 0.0) / 2)


# --- feature steps ---------------------------------------------------------------------------

ORDERS_DDL = (
    "order_id bigint, customer_id bigint, product_id bigint, quantity int, "
    "unit_price double, discount double, order_ts timestamp, "
    "payment_method string, shipped_ts timestamp, delivered_ts timestamp"
)


@pytest.fixture(scope="module")
def shop(spark: SparkSession):
    customers = spark.createDataFrame(
        [(1, dt.date(2024, 1, 1), "USA"), (2, dt.date(2024, 3, 9), "Canada")],
        "customer_id bigint, signup_date date, country string",
    )
    products = spark.createDataFrame(
        [(10, "books"), (20, "electronics")], "product_id bigint, category string"
    )
    orders = spark.createDataFrame(
        [
            (1, 1, 10, 1, 10.0, 0.0, TS(2024, 2, 1, 12), "card", TS(2024, 2, 2), TS(2024, 2, 4)),
            (2, 1, 10, 2, 10.0, 0.5, TS(2024, 3, 1, 12), "card", None, None),
            (3, 2, 20, 1, 300.0, 0.0, TS(2024, 3, 10, 2), "gift", None, None),
            (4, 2, 20, 1, 300.0, 0.0, TS(2024, 3, 10, 3), "gift", None, None),
        ],
        ORDERS_DDL,
    ).withColumns(
        {
            "unit_price": F.col("unit_price").cast("decimal(10,2)"),
            "discount": F.col("discount").cast("decimal(4,3)"),
        }
    )
    return customers, products, orders


def test_customer_features_rfm_and_category_shares(spark: SparkSession, shop) -> None:
    customers, products, orders = shop
    got = feat.customer_features(orders, customers, products, dt.date(2024, 3, 11)).select(
        "customer_id",
        "frequency",
        "monetary",
        "recency_days",
        "tenure_days",
        "share_books",
        "share_electronics",
    )
    expected = spark.createDataFrame(
        [(1, 2.0, 20.0, 10.0, 70.0, 1.0, 0.0), (2, 2.0, 600.0, 1.0, 2.0, 0.0, 1.0)],
        got.schema,
    )
    assertDataFrameEqual(got, expected)


def test_order_features_velocity_history_and_new_account(spark: SparkSession, shop) -> None:
    customers, products, orders = shop
    got = feat.order_features(orders, customers, products).select(
        "order_id",
        "orders_prev_24h",
        "has_history",
        "is_new_account",
        "is_night",
        "category",
        "processing_hours",
        "delivery_hours",
    )
    expected = spark.createDataFrame(
        [
            (1, 0.0, 0.0, 0.0, 0.0, "books", 12.0, 48.0),
            (2, 0.0, 1.0, 0.0, 0.0, "books", None, None),
            (3, 0.0, 0.0, 1.0, 1.0, "electronics", None, None),
            (4, 1.0, 1.0, 1.0, 1.0, "electronics", None, None),
        ],
        got.schema,
    )
    assertDataFrameEqual(got, expected)
    history = feat.order_features(orders, customers, products).filter("order_id = 2").first()
    # 10 after a 50% discount against an earlier 10: the same log amount
    assert history["amount_vs_history"] == pytest.approx(0.0)


def test_daily_sales_fills_days_without_orders(spark: SparkSession, shop) -> None:
    _, _, orders = shop
    series = feat.daily_sales(orders.filter(F.col("order_id") >= 2))
    assert series.count() == 10  # 1 March .. 10 March
    zero_day = series.filter(F.col("date") == dt.date(2024, 3, 5)).first()
    assert (zero_day["orders"], zero_day["revenue"]) == (0.0, 0.0)


def test_black_friday_is_the_day_after_the_fourth_thursday(spark: SparkSession) -> None:
    df = spark.createDataFrame([(2024,), (2025,)], "year int")
    got = [r[0] for r in df.select(feat.black_friday(F.col("year"))).orderBy(1).collect()]
    assert got == [dt.date(2024, 11, 29), dt.date(2025, 11, 28)]


def test_time_features_never_look_inside_the_horizon(spark: SparkSession) -> None:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(12)]
    series = spark.createDataFrame(
        [(d, float(i)) for i, d in enumerate(days)], "date date, y double"
    )
    featured = feat.time_features(series, "y", days[0], [3], [2], 3, log_target=False)
    row = featured.filter(F.col("date") == days[10]).first()
    assert row["lag_3"] == 7.0
    assert row["ma_2"] == pytest.approx((6.0 + 7.0) / 2)  # days t-4 and t-3
    with pytest.raises(ValueError, match="shorter than the 3-day horizon"):
        feat.time_features(series, "y", days[0], [2], [2], 3, log_target=False)


def test_seasonal_naive_repeats_the_last_observed_week(spark: SparkSession) -> None:
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(20)]
    series = spark.createDataFrame(
        [(d, float(i)) for i, d in enumerate(days)], "date date, y double"
    )
    got = seasonal_naive(series, "y", days[9], 9).orderBy("date").collect()
    # origin index 9: days 10..16 copy 3..9, then 17, 18 copy 3, 4 again
    assert [r["baseline"] for r in got] == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 3.0, 4.0]


# --- configuration, names, registry ----------------------------------------------------------


def test_config_errors_name_the_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"ml_params.json: unknown key\(s\) fraud.tresh"):
        FraudParams.from_config({"fraud": {"tresh": 0.5}})
    with pytest.raises(ConfigError, match=r"ml_params.json: segmentation.k_min should be"):
        SegmentationParams.from_config({"segmentation": {"k_min": "three"}})
    with pytest.raises(ConfigError, match=r"forecasting\.target should be one of"):
        ForecastParams.from_config({"forecasting": {"target": "profit"}})


def test_segment_names_are_readable_and_unique() -> None:
    profiles = [
        {"cluster": 0, "mean_spend": 900, "mean_recency_days": 30, "top_categories": {"books": 1}},
        {"cluster": 1, "mean_spend": 20, "mean_recency_days": 500, "top_categories": {"books": 1}},
        {"cluster": 2, "mean_spend": 20, "mean_recency_days": 500, "top_categories": {"books": 1}},
    ]
    names = name_segments(profiles)
    assert names == {
        0: "high-value books buyers",
        1: "lapsed mid-value books buyers",
        2: "lapsed low-value books buyers",
    }


def test_elbow_is_where_the_cost_curve_bends_most() -> None:
    costs = [100.0, 50.0, 40.0, 35.0]
    assert elbow_k([{"k": k, "cost": c} for k, c in zip((2, 3, 4, 5), costs, strict=True)]) == 3


def test_require_columns_lists_every_problem(spark: SparkSession) -> None:
    df = spark.createDataFrame([(1, "x")], "a int, b string")
    with pytest.raises(SchemaMismatchError, match=r"column .b. is string.*missing column .c."):
        require_columns(df, {"a": "int", "b": "double", "c": "int"}, "scoring")


def test_registry_versions_latest_and_missing_models(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="run `sparkmart ml train --models toy`"):
        load_model(tmp_path, "toy")
    df = spark.createDataFrame([(1.0,), (2.0,)], "x double")
    model = Pipeline(stages=[SQLTransformer(statement="SELECT x * 2 AS y FROM __THIS__")]).fit(df)
    for run in (1, 2):
        save_model(tmp_path, TrainResult("toy", model, {"run": run}, {"p": run}, {"fit": 0.1}))
    assert latest_version(tmp_path, "toy") == "2"
    saved = load_model(tmp_path, "toy")
    assert (saved.version, saved.metrics, saved.params) == ("2", {"run": 2}, {"p": 2})
    assertDataFrameEqual(saved.model.transform(df), model.transform(df))
    assert (tmp_path / "toy" / "1" / "report.json").exists()
    with pytest.raises(ModelNotFoundError, match="version 7 not found"):
        load_model(tmp_path, "toy", "7")
