"""Recommendations: ALS on implicit customer x product purchases, and FP-Growth associations.

Evaluation holds out the last ``holdout_days`` of orders: the model trained on earlier
purchases ranks products for customers who bought in both periods, scored with precision@N
and NDCG@N against what they bought later, and compared with recommending the same best
sellers to everyone. ``products.recommendation_rank`` ranks products by how many customers'
top-N lists they appear in (1 = most recommended; null = in nobody's list).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.fpm import FPGrowth
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from sparkmart.ml.core import ConfigSection, MLError, TrainResult, require_rows
from sparkmart.ml.evaluation import ranking_metrics

NAME = "recommendation"
MAX_ALS_ID = 2**31 - 1
# The generator's segments buy a main and a secondary category together (docs/generator.md):
# the associations between categories that FP-Growth should find.
PLANTED_CATEGORY_PAIRS = frozenset(
    frozenset(pair)
    for pair in (
        ("electronics", "jewelry"),
        ("home_garden", "automotive"),
        ("grocery", "beauty"),
        ("books", "toys"),
        ("fashion", "sports"),
    )
)


@dataclass(frozen=True)
class RecommendationParams:
    rank: int = 10
    reg_param: float = 0.1
    alpha: float = 10.0
    max_iter: int = 10
    top_n: int = 10
    holdout_days: int = 90
    fpgrowth_min_support: float = 0.01
    fpgrowth_min_confidence: float = 0.05
    target_lift_over_popularity: float = 2.0
    seed: int = 42

    @classmethod
    def from_config(cls, ml: dict[str, Any]) -> RecommendationParams:
        section = ConfigSection(ml, NAME, [*asdict(cls()).keys()])
        return cls(
            rank=section.integer("rank", cls.rank, low=1),
            reg_param=section.number("reg_param", cls.reg_param, 0),
            alpha=section.number("alpha", cls.alpha, 0),
            max_iter=section.integer("max_iter", cls.max_iter, low=1),
            top_n=section.integer("top_n", cls.top_n, low=1),
            holdout_days=section.integer("holdout_days", cls.holdout_days, low=1),
            fpgrowth_min_support=section.number(
                "fpgrowth_min_support", cls.fpgrowth_min_support, 0, 1
            ),
            fpgrowth_min_confidence=section.number(
                "fpgrowth_min_confidence", cls.fpgrowth_min_confidence, 0, 1
            ),
            target_lift_over_popularity=section.number(
                "target_lift_over_popularity", cls.target_lift_over_popularity, 0
            ),
            seed=section.seed,
        )


def interactions(orders: DataFrame) -> DataFrame:
    """customer_id, product_id, purchases (units bought: the implicit preference strength)."""
    return (
        orders.filter(F.col("customer_id").isNotNull() & F.col("product_id").isNotNull())
        .groupBy("customer_id", "product_id")
        .agg(F.sum(F.greatest(F.col("quantity"), F.lit(1))).cast("float").alias("purchases"))
    )


def build_pipeline(params: RecommendationParams) -> Pipeline:
    als = ALS(
        userCol="customer_id",
        itemCol="product_id",
        ratingCol="purchases",
        implicitPrefs=True,
        rank=params.rank,
        regParam=params.reg_param,
        alpha=params.alpha,
        maxIter=params.max_iter,
        seed=params.seed,
        coldStartStrategy="drop",
        nonnegative=True,
    )
    return Pipeline(stages=[als])


def _check_ids(pairs: DataFrame) -> None:
    largest = pairs.agg(F.max("customer_id"), F.max("product_id")).first()
    if any(value is not None and value > MAX_ALS_ID for value in largest):
        raise MLError(f"{NAME}: ALS needs customer and product ids below 2^31, got {largest}")


def top_n(model: PipelineModel, customers: DataFrame, n: int) -> DataFrame:
    """customer_id, rank (1..n), product_id, score for the given customers."""
    als = model.stages[-1]
    lists = als.recommendForUserSubset(customers.select("customer_id").distinct(), n)
    return lists.select("customer_id", F.posexplode("recommendations").alias("pos", "rec")).select(
        "customer_id",
        (F.col("pos") + 1).alias("rank"),
        F.col("rec.product_id").alias("product_id"),
        F.col("rec.rating").cast("double").alias("score"),
    )


def popular_products(pairs: DataFrame, n: int) -> list[int]:
    """The n products bought by the most customers (ties: lower id first)."""
    rows = (
        pairs.groupBy("product_id")
        .agg(F.countDistinct("customer_id").alias("buyers"))
        .orderBy(F.desc("buyers"), "product_id")
        .limit(n)
        .collect()
    )
    return [r["product_id"] for r in rows]


def evaluate_holdout(
    orders: DataFrame, params: RecommendationParams, as_of: dt.date
) -> dict[str, Any]:
    """ALS against the popularity baseline on purchases in the last ``holdout_days``."""
    cut = F.lit(as_of - dt.timedelta(days=params.holdout_days - 1)).cast("date")
    earlier = interactions(orders.filter(F.to_date("order_ts") < cut)).cache()
    later = orders.filter(F.to_date("order_ts") >= cut)
    relevant = (
        later.join(earlier.select("customer_id").distinct(), "customer_id", "left_semi")
        .groupBy("customer_id")
        .agg(F.collect_set("product_id").alias("relevant"))
        .cache()
    )
    users = relevant.count()
    require_rows(users, 1, "customers buying before and during the hold-out", NAME)
    model = build_pipeline(params).fit(earlier)
    n = params.top_n
    recommended = (
        top_n(model, relevant, n)
        .groupBy("customer_id")
        .agg(F.sort_array(F.collect_list(F.struct("rank", "product_id"))).alias("ranked"))
        .select("customer_id", F.col("ranked.product_id").alias("recommended"))
    )
    als_lists = relevant.join(recommended, "customer_id", "left").withColumn(
        "recommended", F.coalesce("recommended", F.array().cast("array<bigint>"))
    )
    popular = popular_products(earlier, n)
    baseline_lists = relevant.withColumn(
        "recommended", F.array(*[F.lit(p).cast("bigint") for p in popular])
    )
    als_metrics = ranking_metrics(als_lists, "recommended", "relevant", n)
    baseline = ranking_metrics(baseline_lists, "recommended", "relevant", n)
    key = f"precision_at_{n}"
    earlier.unpersist()
    relevant.unpersist()
    return {
        **als_metrics,
        **{f"popularity_{k}": v for k, v in baseline.items()},
        "lift_over_popularity": als_metrics[key] / baseline[key] if baseline[key] else None,
        "holdout_customers": users,
    }


def baskets(orders: DataFrame, products: DataFrame) -> dict[str, DataFrame]:
    """Product baskets (a customer's products within one day) and category baskets (the
    categories of a customer's whole history)."""
    day_baskets = orders.groupBy("customer_id", F.to_date("order_ts").alias("day")).agg(
        F.collect_set("product_id").alias("items")
    )
    category_baskets = (
        orders.join(products.select("product_id", "category"), "product_id")
        .filter(F.col("category").isNotNull())
        .groupBy("customer_id")
        .agg(F.collect_set("category").alias("items"))
    )
    return {"products": day_baskets, "categories": category_baskets}


def associations(items: DataFrame, min_support: float, min_confidence: float) -> DataFrame:
    """Rules antecedent -> consequent with support, confidence and lift (FP-Growth)."""
    model = FPGrowth(itemsCol="items", minSupport=min_support, minConfidence=min_confidence).fit(
        items
    )
    return model.associationRules.select(
        "antecedent", "consequent", "support", "confidence", "lift"
    )


def association_metrics(
    orders: DataFrame, products: DataFrame, params: RecommendationParams
) -> tuple[dict[str, Any], DataFrame]:
    found = baskets(orders, products)
    product_baskets = found["products"].cache()
    total = product_baskets.count()
    multi = product_baskets.filter(F.size("items") > 1).count()
    # Support of at least 3 baskets: FP-Growth's relative support on a near-empty signal.
    product_rules = associations(
        product_baskets, min(1.0, 3 / max(total, 1)), params.fpgrowth_min_confidence
    )
    category_rules = associations(
        found["categories"], params.fpgrowth_min_support, params.fpgrowth_min_confidence
    ).cache()
    pairs = (
        category_rules.filter((F.size("antecedent") == 1) & (F.size("consequent") == 1))
        .orderBy(F.desc("lift"))
        .collect()
    )
    best_partner = {}
    for rule in pairs:
        best_partner.setdefault(rule["antecedent"][0], rule["consequent"][0])
    planted_found = sorted(
        {" + ".join(sorted(p)) for p in PLANTED_CATEGORY_PAIRS}
        & {" + ".join(sorted((a, c))) for a, c in best_partner.items()}
    )
    metrics = {
        "product_baskets": total,
        "product_baskets_with_2_plus_items": multi,
        "product_rules": product_rules.count(),
        "category_rules": category_rules.count(),
        "planted_category_pairs_found": planted_found,
        "planted_category_pairs_total": len(PLANTED_CATEGORY_PAIRS),
        "top_category_rules": [
            {
                "rule": f"{r['antecedent'][0]} -> {r['consequent'][0]}",
                "support": round(r["support"], 4),
                "confidence": round(r["confidence"], 4),
                "lift": round(r["lift"], 3),
            }
            for r in pairs[:10]
        ],
    }
    product_baskets.unpersist()
    rules = category_rules.select(
        F.array_join("antecedent", ",").alias("antecedent"),
        F.array_join("consequent", ",").alias("consequent"),
        "support",
        "confidence",
        "lift",
    )
    return metrics, rules


def train(
    orders: DataFrame,
    products: DataFrame,
    params: RecommendationParams,
    as_of: dt.date,
) -> TrainResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    pairs = interactions(orders).cache()
    require_rows(pairs.count(), params.rank + 1, "customer x product purchases", NAME)
    _check_ids(pairs)
    timings["interactions"] = time.perf_counter() - started

    started = time.perf_counter()
    metrics = evaluate_holdout(orders, params, as_of)
    timings["holdout_evaluation"] = time.perf_counter() - started

    started = time.perf_counter()
    model = build_pipeline(params).fit(pairs)
    timings["final_fit"] = time.perf_counter() - started

    started = time.perf_counter()
    association, rules = association_metrics(orders, products, params)
    timings["fpgrowth"] = time.perf_counter() - started
    pairs.unpersist()
    return TrainResult(
        name=NAME,
        model=model,
        metrics={**metrics, "associations": association},
        params={**asdict(params), "as_of": as_of.isoformat()},
        timings=timings,
        outputs={"category_associations": rules},
    )


def recommendation_ranks(recommendations: DataFrame) -> DataFrame:
    """product_id -> recommendation_rank (1 = in the most customers' top-N lists)."""
    counts = recommendations.groupBy("product_id").agg(F.count(F.lit(1)).alias("lists"))
    order = Window.orderBy(F.desc("lists"), "product_id")
    return counts.select(
        "product_id", F.row_number().over(order).cast("int").alias("recommendation_rank")
    )


def score(
    model: PipelineModel,
    customers: DataFrame,
    products_gold: DataFrame,
    params: dict[str, Any],
) -> tuple[DataFrame, DataFrame]:
    """(top-N recommendations of every known customer, gold products with their rank)."""
    recommendations = top_n(model, customers, int(params["top_n"])).cache()
    ranks = recommendation_ranks(recommendations)
    columns = products_gold.columns
    products = (
        products_gold.drop("recommendation_rank").join(ranks, "product_id", "left").select(*columns)
    )
    return recommendations, products
