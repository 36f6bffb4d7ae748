"""Recommendations: ALS on implicit customer x product purchases, and FP-Growth associations.

Each customer's purchases are a sparse row of 100,000 products: most products are bought by one
customer or none, so co-purchases alone say little about what a customer likes. The ALS matrix
therefore gets one extra column per product category (a *category item*, an id in a reserved
range at the top of the int range) holding the customer's purchases in that category times
``category_weight``: the factors then learn category affinities, which is the personal signal in
this shop. Category items are fitted like products but never recommended.

Customers also re-buy favourite products (docs/generator.md), and ALS's low-rank factors smooth
a customer's own rare products away (a rank-32, low-regularisation fit scored no better than
the best sellers on the validation window). So the first ``repeat_slots`` positions of a list
go to the products the customer bought before, most units first ("buy again"); ALS fills the
rest with products not already listed. ``repeat_slots`` 0 gives the pure ALS lists.

Evaluation holds out the last ``holdout_days`` of orders: the model trained on earlier
purchases ranks products for customers who bought in both periods, scored with precision@N
and NDCG@N against what they bought later, and compared with recommending the same best
sellers to everyone. Hyperparameters are tuned (``tune``) on a validation window cut from the
training period only: the ``validation_days`` just before the hold-out.
``products.recommendation_rank`` ranks products by how many customers' top-N lists they appear
in (1 = most recommended; null = in nobody's list).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import time
from collections.abc import Mapping
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
# Ids from FIRST_CATEGORY_ITEM up are category items: product ids must stay below.
CATEGORY_ITEM_SLOTS = 1024
FIRST_CATEGORY_ITEM = MAX_ALS_ID - CATEGORY_ITEM_SLOTS + 1
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
# The hyperparameters ``tune`` searches, each with the config key of its list of values.
GRID_KEYS = {
    "rank": "grid_rank",
    "reg_param": "grid_reg_param",
    "alpha": "grid_alpha",
    "category_weight": "grid_category_weight",
    "repeat_slots": "grid_repeat_slots",
}
# The ones that change the fitted ALS model (repeat_slots only changes the lists).
ALS_KEYS = ("rank", "reg_param", "alpha", "category_weight")


@dataclass(frozen=True)
class RecommendationParams:
    rank: int = 10
    reg_param: float = 10.0
    alpha: float = 10.0
    max_iter: int = 10
    category_weight: float = 10.0
    repeat_slots: int = 0
    top_n: int = 10
    holdout_days: int = 90
    validation_days: int = 90
    grid_rank: tuple[int, ...] = (10,)
    grid_reg_param: tuple[float, ...] = (10.0,)
    grid_alpha: tuple[float, ...] = (10.0,)
    grid_category_weight: tuple[float, ...] = (10.0,)
    grid_repeat_slots: tuple[int, ...] = (0,)
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
            category_weight=section.number("category_weight", cls.category_weight, 0),
            repeat_slots=section.integer("repeat_slots", cls.repeat_slots, low=0),
            top_n=section.integer("top_n", cls.top_n, low=1),
            holdout_days=section.integer("holdout_days", cls.holdout_days, low=1),
            validation_days=section.integer("validation_days", cls.validation_days, low=1),
            grid_rank=tuple(section.integers("grid_rank", cls.grid_rank, low=1)),
            grid_reg_param=tuple(section.numbers("grid_reg_param", cls.grid_reg_param, low=0)),
            grid_alpha=tuple(section.numbers("grid_alpha", cls.grid_alpha, low=0)),
            grid_category_weight=tuple(
                section.numbers("grid_category_weight", cls.grid_category_weight, low=0)
            ),
            grid_repeat_slots=tuple(
                section.integers("grid_repeat_slots", cls.grid_repeat_slots, low=0)
            ),
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

    def grid(self) -> list[RecommendationParams]:
        """One parameter set per point of the search grid (the ``grid_*`` lists)."""
        names = list(GRID_KEYS)
        values = [getattr(self, GRID_KEYS[name]) for name in names]
        return [
            dataclasses.replace(self, **dict(zip(names, point, strict=True)))
            for point in itertools.product(*values)
        ]

    def chosen(self) -> dict[str, float]:
        """The searched hyperparameters as they are set."""
        return {name: getattr(self, name) for name in GRID_KEYS}


def interactions(orders: DataFrame) -> DataFrame:
    """customer_id, product_id, purchases (units bought: the implicit preference strength)."""
    return (
        orders.filter(F.col("customer_id").isNotNull() & F.col("product_id").isNotNull())
        .groupBy("customer_id", "product_id")
        .agg(F.sum(F.greatest(F.col("quantity"), F.lit(1))).cast("float").alias("purchases"))
    )


def category_item_ids(products: DataFrame) -> dict[str, int]:
    """category -> its ALS item id (reserved ids at the top of the int range, by name order)."""
    names = sorted(r[0] for r in products.select("category").dropna().distinct().collect())
    if len(names) > CATEGORY_ITEM_SLOTS:
        raise MLError(
            f"{NAME}: {len(names):,} product categories, at most {CATEGORY_ITEM_SLOTS:,} supported"
        )
    return {name: FIRST_CATEGORY_ITEM + i for i, name in enumerate(names)}


def with_category_items(products: DataFrame, item_ids: Mapping[str, int], weight: float) -> Any:
    """Add each customer's purchases per category, times ``weight``, as category-item rows
    (nothing when the weight is 0): ALS then sees that two customers buy the same kind of
    products even when they never bought the same product."""

    def add(pairs: DataFrame) -> DataFrame:
        if weight == 0 or not item_ids:
            return pairs
        ids = F.create_map(
            *itertools.chain.from_iterable(
                (F.lit(name), F.lit(item)) for name, item in item_ids.items()
            )
        )
        by_category = (
            pairs.join(products.select("product_id", "category"), "product_id")
            .filter(F.col("category").isNotNull())
            .groupBy("customer_id", "category")
            .agg((F.sum("purchases") * F.lit(weight)).cast("float").alias("purchases"))
            .select(
                "customer_id",
                ids[F.col("category")]
                .cast(pairs.schema["product_id"].dataType)
                .alias("product_id"),
                "purchases",
            )
            .filter(F.col("product_id").isNotNull())
        )
        return pairs.unionByName(by_category)

    return add


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
    customer, product = largest
    if (customer is not None and customer > MAX_ALS_ID) or (
        product is not None and product >= FIRST_CATEGORY_ITEM
    ):
        raise MLError(
            f"{NAME}: ALS needs customer ids up to 2^31 - 1 and product ids below "
            f"{FIRST_CATEGORY_ITEM:,} (the ids above are category items), got customer "
            f"{customer}, product {product}"
        )


def bought_before(history: DataFrame, customers: DataFrame, slots: int) -> DataFrame:
    """customer_id, again: up to ``slots`` products each customer bought in ``history``
    (interactions), most units first (ties: lower id), as (product_id, rating null) structs."""
    ranked = F.sort_array(F.collect_list(F.struct(-F.col("purchases"), F.col("product_id"))))
    return (
        history.join(customers.select("customer_id").distinct(), "customer_id", "left_semi")
        .groupBy("customer_id")
        .agg(F.slice(ranked, 1, slots).alias("ranked"))
        .select(
            "customer_id",
            F.transform(
                "ranked",
                lambda r: F.struct(
                    r["product_id"].cast("int").alias("product_id"),
                    F.lit(None).cast("float").alias("rating"),
                ),
            ).alias("again"),
        )
    )


def top_n(
    model: PipelineModel,
    customers: DataFrame,
    n: int,
    history: DataFrame | None = None,
    repeat_slots: int = 0,
) -> DataFrame:
    """customer_id, rank (1..n), product_id, score for the given customers (products only:
    the model's category items are left out).

    With ``history`` (interactions) and ``repeat_slots`` > 0 the list starts with up to that
    many products the customer bought before ("buy again", score null): customers re-buy
    favourites, which ALS's low-rank factors smooth away; ALS fills the rest.
    """
    als = model.stages[-1]
    category_items = als.itemFactors.filter(F.col("id") >= FIRST_CATEGORY_ITEM).count()
    repeats = repeat_slots if history is not None else 0
    lists = als.recommendForUserSubset(
        customers.select("customer_id").distinct(), n + category_items + repeats
    )
    candidates = F.filter("recommendations", lambda rec: rec["product_id"] < FIRST_CATEGORY_ITEM)
    if repeats > 0 and history is not None:
        lists = lists.join(bought_before(history, customers, repeats), "customer_id", "left")
        again = F.coalesce("again", F.array().cast("array<struct<product_id:int,rating:float>>"))
        fresh = F.filter(
            candidates, lambda rec: ~F.array_contains(again["product_id"], rec["product_id"])
        )
        candidates = F.concat(again, fresh)
    products_only = F.slice(candidates, 1, n)
    return lists.select("customer_id", F.posexplode(products_only).alias("pos", "rec")).select(
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


def split_at(orders: DataFrame, end: dt.date, days: int) -> tuple[DataFrame, DataFrame]:
    """(orders before the window of ``days`` days ending on ``end``, and customer_id ->
    ``relevant``: the products bought in the window by customers who also bought before)."""
    day = F.to_date("order_ts")
    cut = F.lit(end - dt.timedelta(days=days - 1)).cast("date")
    earlier = orders.filter(day < cut)
    later = orders.filter((day >= cut) & (day <= F.lit(end).cast("date")))
    relevant = (
        later.filter(F.col("product_id").isNotNull())
        .join(earlier.select("customer_id").distinct(), "customer_id", "left_semi")
        .groupBy("customer_id")
        .agg(F.collect_set("product_id").alias("relevant"))
    )
    return earlier, relevant


def against_popularity(
    model: PipelineModel,
    earlier_pairs: DataFrame,
    relevant: DataFrame,
    n: int,
    repeat_slots: int = 0,
) -> dict[str, Any]:
    """precision@n and NDCG@n of the model's lists and of the n best sellers of
    ``earlier_pairs`` for every customer of ``relevant``, and the model's lift in precision."""
    recommended = (
        top_n(model, relevant, n, earlier_pairs, repeat_slots)
        .groupBy("customer_id")
        .agg(F.sort_array(F.collect_list(F.struct("rank", "product_id"))).alias("ranked"))
        .select("customer_id", F.col("ranked.product_id").alias("recommended"))
    )
    als_lists = relevant.join(recommended, "customer_id", "left").withColumn(
        "recommended", F.coalesce("recommended", F.array().cast("array<bigint>"))
    )
    popular = popular_products(earlier_pairs, n)
    baseline_lists = relevant.withColumn(
        "recommended", F.array(*[F.lit(p).cast("bigint") for p in popular])
    )
    als_metrics = ranking_metrics(als_lists, "recommended", "relevant", n)
    baseline = ranking_metrics(baseline_lists, "recommended", "relevant", n)
    key = f"precision_at_{n}"
    return {
        **als_metrics,
        **{f"popularity_{k}": v for k, v in baseline.items()},
        "lift_over_popularity": als_metrics[key] / baseline[key] if baseline[key] else None,
    }


def fit(orders: DataFrame, products: DataFrame, params: RecommendationParams) -> PipelineModel:
    """ALS on the purchases of ``orders`` plus the category items."""
    pairs = interactions(orders).transform(
        with_category_items(products, category_item_ids(products), params.category_weight)
    )
    return build_pipeline(params).fit(pairs)


def evaluate_holdout(
    orders: DataFrame, products: DataFrame, params: RecommendationParams, as_of: dt.date
) -> dict[str, Any]:
    """ALS against the popularity baseline on purchases in the last ``holdout_days``."""
    earlier, relevant = split_at(orders, as_of, params.holdout_days)
    earlier = earlier.cache()
    relevant = relevant.cache()
    users = relevant.count()
    require_rows(users, 1, "customers buying before and during the hold-out", NAME)
    model = fit(earlier, products, params)
    metrics = against_popularity(
        model, interactions(earlier), relevant, params.top_n, params.repeat_slots
    )
    metrics["holdout_customers"] = users
    earlier.unpersist()
    relevant.unpersist()
    return metrics


def tune(
    orders: DataFrame, products: DataFrame, params: RecommendationParams, as_of: dt.date
) -> list[dict[str, Any]]:
    """Every point of the grid scored on the validation window (the ``validation_days``
    before the hold-out, trained on what precedes it), best precision first. The hold-out
    is never looked at."""
    end = as_of - dt.timedelta(days=params.holdout_days)
    earlier, relevant = split_at(orders, end, params.validation_days)
    earlier = earlier.cache()
    relevant = relevant.cache()
    require_rows(relevant.count(), 1, "customers buying before and during validation", NAME)
    earlier_pairs = interactions(earlier).cache()
    rows = []
    fitted: tuple[Any, PipelineModel] | None = None
    for point in params.grid():  # repeat_slots varies fastest: one fit per ALS point
        started = time.perf_counter()
        als_point = tuple(getattr(point, key) for key in ALS_KEYS)
        if fitted is None or fitted[0] != als_point:
            fitted = (als_point, fit(earlier, products, point))
        scores = against_popularity(
            fitted[1], earlier_pairs, relevant, params.top_n, point.repeat_slots
        )
        rows.append({**point.chosen(), **scores, "seconds": time.perf_counter() - started})
    for frame in (earlier, relevant, earlier_pairs):
        frame.unpersist()
    key = f"precision_at_{params.top_n}"
    return sorted(rows, key=lambda row: -row[key])


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
    metrics = evaluate_holdout(orders, products, params, as_of)
    timings["holdout_evaluation"] = time.perf_counter() - started

    started = time.perf_counter()
    item_ids = category_item_ids(products)
    model = build_pipeline(params).fit(
        pairs.transform(with_category_items(products, item_ids, params.category_weight))
    )
    timings["final_fit"] = time.perf_counter() - started

    started = time.perf_counter()
    association, rules = association_metrics(orders, products, params)
    timings["fpgrowth"] = time.perf_counter() - started
    pairs.unpersist()
    return TrainResult(
        name=NAME,
        model=model,
        metrics={**metrics, "associations": association},
        params={**asdict(params), "as_of": as_of.isoformat(), "category_items": item_ids},
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
    orders: DataFrame | None = None,
) -> tuple[DataFrame, DataFrame]:
    """(top-N recommendations of every known customer, gold products with their rank).
    ``orders`` (the history the model was trained on) feeds the buy-again slots."""
    slots = int(params.get("repeat_slots", 0))
    history = interactions(orders) if orders is not None and slots > 0 else None
    recommendations = top_n(model, customers, int(params["top_n"]), history, slots).cache()
    ranks = recommendation_ranks(recommendations)
    columns = products_gold.columns
    products = (
        products_gold.drop("recommendation_rank").join(ranks, "product_id", "left").select(*columns)
    )
    return recommendations, products
