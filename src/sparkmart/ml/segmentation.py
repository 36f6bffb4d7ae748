"""Customer segmentation: K-means on RFM, tenure and category-share features.

k is chosen by the silhouette over ``k_min..k_max``; the within-cluster cost of each k (the
elbow curve) is reported next to it. Each cluster gets a profile and a readable name, and the
saved pipeline ends with a step that writes that name, so scoring yields names directly.
Customers without orders cannot be placed by behaviour and get ``NO_ORDERS_SEGMENT``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import SQLTransformer, StandardScaler, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkmart.batch.analytics import resolve_as_of
from sparkmart.ml.core import (
    ConfigSection,
    TrainResult,
    input_schema,
    require_columns,
    require_rows,
)
from sparkmart.ml.evaluation import adjusted_rand_index
from sparkmart.ml.features import CATEGORIES, customer_features, share_column

NAME = "segmentation"
NO_ORDERS_SEGMENT = "no orders yet"
CATEGORY_SHARES = "category_shares"
FEATURE_CHOICES = (
    "recency_days",
    "frequency",
    "log_frequency",
    "monetary",
    "log_monetary",
    "tenure_days",
    "active_days",
    "avg_discount",
    "avg_quantity",
    "avg_log_unit_price",
    CATEGORY_SHARES,
)
DEFAULT_FEATURES = (
    "recency_days",
    "log_frequency",
    "log_monetary",
    "tenure_days",
    "avg_discount",
    "avg_quantity",
    "avg_log_unit_price",
    CATEGORY_SHARES,
)


@dataclass(frozen=True)
class SegmentationParams:
    k_min: int = 3
    k_max: int = 8
    max_iter: int = 20
    restarts: int = 2  # K-means runs per k (seeds seed, seed+1...); the lowest cost is kept
    features: tuple[str, ...] = DEFAULT_FEATURES
    min_customers: int = 20
    target_ari: float = 0.8
    seed: int = 42

    @classmethod
    def from_config(cls, ml: dict[str, Any]) -> SegmentationParams:
        section = ConfigSection(ml, NAME, [*asdict(cls()).keys()])
        params = cls(
            k_min=section.integer("k_min", cls.k_min, low=2),
            k_max=section.integer("k_max", cls.k_max, low=2),
            max_iter=section.integer("max_iter", cls.max_iter, low=1),
            restarts=section.integer("restarts", cls.restarts, low=1),
            features=tuple(section.strings("features", cls.features, FEATURE_CHOICES)),
            min_customers=section.integer("min_customers", cls.min_customers, low=2),
            target_ari=section.number("target_ari", cls.target_ari, 0, 1),
            seed=section.seed,
        )
        if params.k_max < params.k_min:
            section.integer("k_max", params.k_max, low=params.k_min)  # raises with the key
        return params

    def feature_columns(self) -> list[str]:
        columns: list[str] = []
        for name in self.features:
            if name == CATEGORY_SHARES:
                columns += [share_column(c) for c in CATEGORIES]
            else:
                columns.append(name)
        return columns


def build_pipeline(params: SegmentationParams, k: int, seed: int | None = None) -> Pipeline:
    """Assemble -> standardise -> K-means (cluster in column ``cluster``)."""
    return Pipeline(
        stages=[
            VectorAssembler(inputCols=params.feature_columns(), outputCol="raw_features"),
            StandardScaler(
                inputCol="raw_features", outputCol="features", withMean=True, withStd=True
            ),
            KMeans(
                k=k,
                seed=params.seed if seed is None else seed,
                maxIter=params.max_iter,
                featuresCol="features",
                predictionCol="cluster",
            ),
        ]
    )


def naming_step(names: dict[int, str]) -> SQLTransformer:
    """The pipeline's last stage: cluster number -> segment name."""
    cases = " ".join(f"WHEN {cluster} THEN '{name}'" for cluster, name in sorted(names.items()))
    return SQLTransformer(statement=f"SELECT *, CASE cluster {cases} END AS segment FROM __THIS__")


def segment_profiles(clustered: DataFrame, top_categories: int = 2) -> list[dict[str, Any]]:
    """Size, mean spend, frequency and recency and the top categories of each cluster."""
    shares = [share_column(c) for c in CATEGORIES]
    rows = (
        clustered.groupBy("cluster")
        .agg(
            F.count(F.lit(1)).alias("size"),
            F.avg("monetary").alias("mean_spend"),
            F.avg("frequency").alias("mean_orders"),
            F.avg("recency_days").alias("mean_recency_days"),
            F.avg("tenure_days").alias("mean_tenure_days"),
            *[F.avg(c).alias(c) for c in shares],
        )
        .orderBy("cluster")
        .collect()
    )
    profiles = []
    for row in rows:
        ranked = sorted(CATEGORIES, key=lambda c: -row[share_column(c)])[:top_categories]
        profiles.append(
            {
                "cluster": int(row["cluster"]),
                "size": int(row["size"]),
                "mean_spend": round(float(row["mean_spend"]), 2),
                "mean_orders": round(float(row["mean_orders"]), 3),
                "mean_recency_days": round(float(row["mean_recency_days"]), 1),
                "mean_tenure_days": round(float(row["mean_tenure_days"]), 1),
                "top_categories": {c: round(float(row[share_column(c)]), 3) for c in ranked},
            }
        )
    return profiles


def name_segments(profiles: list[dict[str, Any]]) -> dict[int, str]:
    """Readable, unique names: value tier by spend rank, 'lapsed' if long gone, top category."""
    by_spend = sorted(profiles, key=lambda p: -p["mean_spend"])
    tiers = {}
    for position, profile in enumerate(by_spend):
        share = position / max(len(by_spend) - 1, 1)
        tiers[profile["cluster"]] = (
            "high-value" if share < 1 / 3 else ("mid-value" if share < 2 / 3 else "low-value")
        )
    names: dict[int, str] = {}
    for profile in profiles:
        categories = list(profile["top_categories"])
        lapsed = "lapsed " if profile["mean_recency_days"] > 365 else ""
        name = f"{lapsed}{tiers[profile['cluster']]} {categories[0]} buyers"
        if name in names.values() and len(categories) > 1:
            name = f"{lapsed}{tiers[profile['cluster']]} {categories[0]}+{categories[1]} buyers"
        if name in names.values():
            name = f"{name} ({profile['cluster']})"
        names[profile["cluster"]] = name.replace("_", " ")
    return names


def train(
    customers: DataFrame,
    orders: DataFrame,
    products: DataFrame,
    params: SegmentationParams,
    as_of: dt.date | None = None,
) -> TrainResult:
    """Fit K-means for every k in range, keep the best silhouette, profile and name it."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    as_of = resolve_as_of(orders, as_of)
    features = customer_features(orders, customers, products, as_of).cache()
    rows = features.count()
    require_rows(rows, max(params.min_customers, params.k_max + 1), "customers with orders", NAME)
    timings["features"] = time.perf_counter() - started

    evaluator = ClusteringEvaluator(featuresCol="features", predictionCol="cluster")
    search: list[dict[str, Any]] = []
    best: tuple[float, int, PipelineModel] | None = None
    started = time.perf_counter()
    for k in range(params.k_min, params.k_max + 1):
        runs = [
            build_pipeline(params, k, params.seed + run).fit(features)
            for run in range(params.restarts)
        ]
        fitted = min(runs, key=lambda m: m.stages[-1].summary.trainingCost)
        silhouette = float(evaluator.evaluate(fitted.transform(features)))
        cost = float(fitted.stages[-1].summary.trainingCost)
        search.append({"k": k, "silhouette": silhouette, "cost": cost})
        if best is None or silhouette > best[0]:
            best = (silhouette, k, fitted)
    timings["k_search"] = time.perf_counter() - started
    assert best is not None
    silhouette, k, fitted = best

    clustered = fitted.transform(features)
    profiles = segment_profiles(clustered)
    names = name_segments(profiles)
    for profile in profiles:
        profile["name"] = names[profile["cluster"]]
    model = PipelineModel(stages=[*fitted.stages, naming_step(names)])
    features.unpersist()
    return TrainResult(
        name=NAME,
        model=model,
        metrics={
            "customers": rows,
            "k": k,
            "silhouette": silhouette,
            "elbow_k": elbow_k(search),
            "k_search": search,
        },
        params={
            **asdict(params),
            "chosen_k": k,
            "as_of": as_of.isoformat(),
            "segment_names": {str(c): n for c, n in names.items()},
            "profiles": profiles,
            "input_schema": input_schema(features, ["customer_id", *params.feature_columns()]),
        },
        timings=timings,
    )


def elbow_k(search: list[dict[str, Any]]) -> int | None:
    """The k after which the cost curve bends most (largest second difference)."""
    if len(search) < 3:
        return None
    costs = [s["cost"] for s in search]
    bends = [costs[i - 1] - 2 * costs[i] + costs[i + 1] for i in range(1, len(costs) - 1)]
    return search[1 + bends.index(max(bends))]["k"]


def assign_segments(
    model: PipelineModel,
    customers: DataFrame,
    orders: DataFrame,
    products: DataFrame,
    as_of: dt.date,
    required: dict[str, str],
) -> DataFrame:
    """customer_id -> segment for every customer with orders (features built as in training)."""
    features = customer_features(orders, customers, products, as_of)
    require_columns(features, required, f"{NAME} scoring")
    return model.transform(features).select("customer_id", "segment")


def score(
    model: PipelineModel,
    customers_gold: DataFrame,
    orders: DataFrame,
    products: DataFrame,
    params: dict[str, Any],
    as_of: dt.date | None = None,
) -> DataFrame:
    """Gold customers with ``segment`` filled (``NO_ORDERS_SEGMENT`` for those without orders)."""
    as_of = resolve_as_of(orders, as_of)
    segments = assign_segments(
        model, customers_gold, orders, products, as_of, params["input_schema"]
    )
    columns = customers_gold.columns
    return (
        customers_gold.drop("segment")
        .join(segments, "customer_id", "left")
        .withColumn("segment", F.coalesce("segment", F.lit(NO_ORDERS_SEGMENT)))
        .select(*columns)
    )


def evaluate(scored_customers: DataFrame, truth_customers: DataFrame) -> dict[str, Any]:
    """ARI of the segments against the planted ones, over customers with orders."""
    joined = scored_customers.filter(F.col("segment") != NO_ORDERS_SEGMENT).join(
        truth_customers.select("customer_id", F.col("segment").alias("true_segment")),
        "customer_id",
    )
    return {"ari": adjusted_rand_index(joined, "segment", "true_segment")}
