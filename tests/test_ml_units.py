"""ML building blocks on hand-made data: metrics, feature steps, config checks, the registry."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from pyspark.ml import Pipeline
from pyspark.ml.feature import SQLTransformer
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.bench.recommendation_tuning import segment_best_sellers
from sparkmart.config import ConfigError
from sparkmart.ml import evaluation as ev
from sparkmart.ml import features as feat
from sparkmart.ml import recommendation as rec
from sparkmart.ml.core import SchemaMismatchError, TrainResult, require_columns
from sparkmart.ml.forecasting import ForecastParams, seasonal_naive, with_intervals
from sparkmart.ml.fraud import FraudParams
from sparkmart.ml.pipeline import MLSummary, ModelOutcome, Target
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


def test_conformal_radius_takes_the_finite_sample_rank_of_the_residuals() -> None:
    residuals = [float(r) for r in range(20, 0, -1)]  # 1..20, any order
    assert ev.conformal_radius(residuals, 0.95) == 20.0  # rank ceil(21 x 0.95) = 20
    assert ev.conformal_radius(residuals, 0.90) == 19.0  # rank ceil(21 x 0.90) = 19
    assert ev.conformal_radius([0.1] * 18 + [5.0], 0.95) == 5.0  # 19: the largest
    with pytest.raises(ValueError, match="needs at least 19 residuals, got 18"):
        ev.conformal_radius([0.1] * 18, 0.95)
    assert ev.min_calibration_size(0.99) == 99


def test_intervals_width_and_coverage(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [(100.0, 90.0, 110.0), (50.0, 60.0, 80.0), (150.0, 140.0, 170.0)],
        "y double, lower double, upper double",
    )
    assert ev.interval_coverage(df, "y", "lower", "upper") == pytest.approx(2 / 3)
    assert ev.interval_width_ratio(df, "y", "lower", "upper") == pytest.approx(70 / 3 / 100)


def test_forecast_intervals_are_the_radius_around_the_prediction(spark: SparkSession) -> None:
    predicted = spark.createDataFrame([(math.log1p(100.0),), (0.05,)], "prediction double")
    logged = with_intervals(predicted, ForecastParams(log_target=True), 0.1).collect()
    assert logged[0]["lower"] == pytest.approx(math.expm1(math.log1p(100.0) - 0.1))
    assert logged[0]["upper"] == pytest.approx(math.expm1(math.log1p(100.0) + 0.1))
    plain = with_intervals(predicted, ForecastParams(log_target=False), 0.1).collect()
    assert (plain[1]["lower"], plain[1]["upper"]) == (0.0, pytest.approx(0.15))  # not below 0


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
    with pytest.raises(ConfigError, match=r"interval_level 0.99 needs at least 99 backtest resid"):
        ForecastParams.from_config({"forecasting": {"interval_level": 0.99, "cv_folds": 3}})


def test_evaluate_exits_non_zero_when_a_target_is_missed() -> None:
    met = ModelOutcome("fraud", "1", {}, [Target("roc_auc", 0.97, 0.95)])
    missed = ModelOutcome("forecasting", "2", {}, [Target("mape", 0.12, 0.1, False)])
    unknown = ModelOutcome("satisfaction", "1", {}, [Target("r2", None, 0.7)])
    assert MLSummary("evaluate", [met]).exit_status == 0
    failed = MLSummary("evaluate", [met, missed, unknown])
    assert failed.exit_status == 1
    assert "targets met: 1 of 3 (missed: forecasting.mape, satisfaction.r2)" in failed.format()
    assert MLSummary("train", [met, missed]).exit_status == 0  # training still saves the model


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


# --- recommendation --------------------------------------------------------------------------

PAIRS_DDL = "customer_id bigint, product_id bigint, purchases float"
CATALOGUE_DDL = "product_id bigint, category string"


def test_category_items_add_each_customers_weighted_purchases_per_category(
    spark: SparkSession,
) -> None:
    products = spark.createDataFrame(
        [(1, "books"), (2, "books"), (3, "toys"), (4, None)], CATALOGUE_DDL
    )
    ids = rec.category_item_ids(products)
    books, toys = rec.FIRST_CATEGORY_ITEM, rec.FIRST_CATEGORY_ITEM + 1
    assert ids == {"books": books, "toys": toys}
    pairs = spark.createDataFrame([(7, 1, 2.0), (7, 2, 1.0), (7, 4, 1.0), (8, 3, 1.0)], PAIRS_DDL)
    expected = spark.createDataFrame(
        [(7, 1, 2.0), (7, 2, 1.0), (7, 4, 1.0), (8, 3, 1.0), (7, books, 30.0), (8, toys, 10.0)],
        PAIRS_DDL,
    )
    assertDataFrameEqual(pairs.transform(rec.with_category_items(products, ids, 10.0)), expected)
    assertDataFrameEqual(pairs.transform(rec.with_category_items(products, ids, 0.0)), pairs)


def test_a_customer_with_an_unshared_purchase_gets_products_of_its_category(
    spark: SparkSession,
) -> None:
    """Customer 9's only book (3) was bought by nobody else: without its category, ALS would
    know nothing about it. Category items are fitted but never recommended."""
    books, toys = [1, 2, 3], [11, 12, 13]
    products = spark.createDataFrame(
        [(p, "books") for p in books] + [(p, "toys") for p in toys], CATALOGUE_DDL
    )
    bought = [(c, p, 1.0) for c in range(1, 5) for p in books[:2]]
    bought += [(c, p, 1.0) for c in range(5, 9) for p in toys[:2]]
    pairs = spark.createDataFrame([*bought, (9, 3, 1.0)], PAIRS_DDL)
    params = rec.RecommendationParams(rank=2, reg_param=0.1, max_iter=5, category_weight=10.0)
    ids = rec.category_item_ids(products)
    model = rec.build_pipeline(params).fit(
        pairs.transform(rec.with_category_items(products, ids, params.category_weight))
    )
    lists = rec.top_n(model, spark.createDataFrame([(9,)], "customer_id bigint"), 3)
    rows = lists.orderBy("rank").collect()
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert {r["product_id"] for r in rows} == set(books)

    # buy again: the products bought before lead the list (most units first), once each
    history = spark.createDataFrame([(9, 3, 1.0), (9, 12, 2.0)], PAIRS_DDL)
    again = rec.top_n(model, spark.createDataFrame([(9,)], "customer_id bigint"), 4, history, 2)
    rows = again.orderBy("rank").collect()
    assert [r["product_id"] for r in rows[:2]] == [12, 3]
    assert [r["score"] for r in rows[:2]] == [None, None]
    assert len({r["product_id"] for r in rows}) == 4
    assert all(r["score"] is not None for r in rows[2:])


def test_windows_split_orders_before_and_within_the_last_days(spark: SparkSession) -> None:
    orders = spark.createDataFrame(
        [
            (1, 10, TS(2025, 1, 5, 23)),  # before the window
            (1, 11, TS(2025, 1, 6, 0)),  # first day of the window
            (1, 12, TS(2025, 1, 10, 12)),  # last day
            (1, 13, TS(2025, 1, 11, 0)),  # after the window
            (2, 11, TS(2025, 1, 7)),  # no purchase before: not evaluated
        ],
        "customer_id bigint, product_id bigint, order_ts timestamp",
    )
    earlier, relevant = rec.split_at(orders, dt.date(2025, 1, 10), 5)
    assert [(r["customer_id"], r["product_id"]) for r in earlier.collect()] == [(1, 10)]
    assertDataFrameEqual(
        relevant.select("customer_id", F.array_sort("relevant").alias("relevant")),
        spark.createDataFrame([(1, [11, 12])], "customer_id bigint, relevant array<bigint>"),
    )


def test_recommendation_grid_expands_the_config_lists() -> None:
    params = rec.RecommendationParams.from_config(
        {"recommendation": {"max_iter": 3, "grid_rank": [2, 4], "grid_alpha": [1, 5]}}
    )
    points = params.grid()
    assert [(p.rank, p.alpha) for p in points] == [(2, 1.0), (2, 5.0), (4, 1.0), (4, 5.0)]
    assert {(p.reg_param, p.category_weight, p.max_iter) for p in points} == {(10.0, 10.0, 3)}
    with pytest.raises(ConfigError, match=r"recommendation\.grid_rank"):
        rec.RecommendationParams.from_config({"recommendation": {"grid_rank": [0]}})
    with pytest.raises(ConfigError, match=r"recommendation\.grid_alpha"):
        rec.RecommendationParams.from_config({"recommendation": {"grid_alpha": []}})


def test_segment_oracle_recommends_the_best_sellers_of_the_segment(spark: SparkSession) -> None:
    earlier = spark.createDataFrame(
        [(1, 5, 1.0), (2, 5, 1.0), (2, 6, 1.0), (3, 7, 1.0), (4, 8, 1.0)], PAIRS_DDL
    )
    segments = spark.createDataFrame(
        [(1, 0), (2, 0), (3, 1), (4, 1)], "customer_id bigint, segment int"
    )
    relevant = spark.createDataFrame(
        [(1, [6]), (3, [7]), (9, [5])], "customer_id bigint, relevant array<bigint>"
    )
    lists = segment_best_sellers(earlier, segments, relevant, 2)
    assertDataFrameEqual(
        lists,
        spark.createDataFrame(
            [(1, [6], [5, 6]), (3, [7], [7, 8]), (9, [5], [])],
            "customer_id bigint, relevant array<bigint>, recommended array<bigint>",
        ),
    )
