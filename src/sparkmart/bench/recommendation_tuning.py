"""Tune the ALS recommender on a validation window and measure how far it is from the ceiling.

    python -m sparkmart.bench.recommendation_tuning                  # data/batch gold + truth
    python -m sparkmart.bench.recommendation_tuning --data-dir /tmp/ml_small --no-write

Every point of the ``grid_*`` lists of ``ml_params.json: recommendation`` is trained on the
orders before the validation window (the ``validation_days`` before the hold-out) and scored on
it; the hold-out is only used to report the configured parameters. Next to each window's
popularity baseline it reports two oracles that read the generator's truth: the *segment
oracle* recommends the best sellers of the customer's true segment in the earlier period, the
*oracle* puts the customer's planted favourite products first and fills up with those. Products
are drawn by the segment's categories, a popularity that is the same for everyone and the
customer's favourites, so no model of a customer's purchases can expect much more than the
oracle. The numbers go between the
``<!-- bench:recommendation-tuning -->`` markers of docs/ml.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from sparkmart.batch.analytics import resolve_as_of
from sparkmart.bench.ml_eval import ML_MD
from sparkmart.bench.report import machine_description, markdown_table, update_section
from sparkmart.config import load_settings
from sparkmart.ml import recommendation as rec
from sparkmart.ml.evaluation import ranking_metrics
from sparkmart.ml.pipeline import read_inputs
from sparkmart.spark_utils import get_logger, get_spark

SECTION = "recommendation-tuning"
SHOWN_GRID_ROWS = 12


def segment_best_sellers(
    earlier_pairs: DataFrame, segments: DataFrame, relevant: DataFrame, n: int
) -> DataFrame:
    """customer_id, relevant, recommended: the n products bought by the most customers of the
    customer's true segment before the window (empty for a customer without a segment)."""
    buyers = (
        earlier_pairs.join(segments, "customer_id")
        .groupBy("segment", "product_id")
        .agg(F.countDistinct("customer_id").alias("buyers"))
    )
    order = Window.partitionBy("segment").orderBy(F.desc("buyers"), "product_id")
    lists = (
        buyers.withColumn("pos", F.row_number().over(order))
        .filter(F.col("pos") <= n)
        .groupBy("segment")
        .agg(F.sort_array(F.collect_list(F.struct("pos", "product_id"))).alias("ranked"))
        .select("segment", F.col("ranked.product_id").alias("recommended"))
    )
    return (
        relevant.join(segments, "customer_id", "left")
        .join(lists, "segment", "left")
        .select(
            "customer_id",
            "relevant",
            F.coalesce("recommended", F.array().cast("array<bigint>")).alias("recommended"),
        )
    )


def favourites_first(lists: DataFrame, favourites: DataFrame, n: int) -> DataFrame:
    """The customer's planted favourite products (generator truth), then ``lists``'
    recommendations, n in all: the oracle for a shop whose customers re-buy favourites."""
    empty = F.array().cast("array<bigint>")
    merged = F.concat(F.coalesce("favourite_products", empty), "recommended")
    return lists.join(favourites, "customer_id", "left").select(
        "customer_id", "relevant", F.slice(F.array_distinct(merged), 1, n).alias("recommended")
    )


def repeat_purchases(earlier_pairs: DataFrame, relevant: DataFrame) -> dict[str, float]:
    """How often the window repeats earlier purchases: the share of the window's customer x
    product pairs bought before, and the share of the customers' earlier products bought again
    (to set against precision@N: excluding bought products only helps if it is lower)."""
    window_pairs = relevant.select("customer_id", F.explode("relevant").alias("product_id"))
    bought = earlier_pairs.join(relevant.select("customer_id"), "customer_id", "left_semi")
    repeats = window_pairs.join(bought, ["customer_id", "product_id"], "left_semi").count()
    window_total, bought_total = window_pairs.count(), bought.count()
    return {
        "window_pairs_bought_before": repeats / window_total if window_total else 0.0,
        "earlier_products_bought_again": repeats / bought_total if bought_total else 0.0,
    }


def ceiling(
    orders: DataFrame,
    segments: DataFrame,
    params: rec.RecommendationParams,
    end: dt.date,
    days: int,
) -> dict[str, Any]:
    """Popularity baseline, the oracles and repeat purchases on one window. ``segments``:
    customer_id, segment, favourite_products (the generator's truth)."""
    earlier, relevant = rec.split_at(orders, end, days)
    earlier_pairs = rec.interactions(earlier).cache()
    relevant = relevant.cache()
    n = params.top_n
    popular = rec.popular_products(earlier_pairs, n)
    baseline_lists = relevant.withColumn(
        "recommended", F.array(*[F.lit(p).cast("bigint") for p in popular])
    )
    baseline = ranking_metrics(baseline_lists, "recommended", "relevant", n)
    by_segment = segment_best_sellers(
        earlier_pairs, segments.select("customer_id", "segment"), relevant, n
    ).cache()
    segment_oracle = ranking_metrics(by_segment, "recommended", "relevant", n)
    oracle = ranking_metrics(
        favourites_first(by_segment, segments.select("customer_id", "favourite_products"), n),
        "recommended",
        "relevant",
        n,
    )
    by_segment.unpersist()
    key = f"precision_at_{n}"
    result = {
        "window": f"{end - dt.timedelta(days=days - 1)} .. {end}",
        "customers": relevant.count(),
        **{f"popularity_{k}": v for k, v in baseline.items()},
        **{f"segment_oracle_{k}": v for k, v in segment_oracle.items()},
        **{f"oracle_{k}": v for k, v in oracle.items()},
        "segment_oracle_lift_over_popularity": (
            segment_oracle[key] / baseline[key] if baseline[key] else None
        ),
        "oracle_lift_over_popularity": oracle[key] / baseline[key] if baseline[key] else None,
        **repeat_purchases(earlier_pairs, relevant),
    }
    earlier_pairs.unpersist()
    relevant.unpersist()
    return result


def _f(value: object, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def report(
    validation: dict[str, Any],
    holdout: dict[str, Any],
    grid: list[dict[str, Any]],
    chosen: dict[str, Any],
    params: rec.RecommendationParams,
    seconds: float,
) -> str:
    n = params.top_n
    p, g = f"precision_at_{n}", f"ndcg_at_{n}"
    windows = [
        [
            name,
            w["window"],
            w["customers"],
            _f(w[f"popularity_{p}"]),
            _f(w[f"segment_oracle_{p}"]),
            _f(w[f"oracle_{p}"]),
            _f(w["oracle_lift_over_popularity"], 3),
            _f(w[f"popularity_{g}"]),
            _f(w[f"oracle_{g}"]),
            f"{w['window_pairs_bought_before']:.1%}",
            f"{w['earlier_products_bought_again']:.1%}",
        ]
        for name, w in (("validation", validation), ("hold-out", holdout))
    ]
    grid_rows = [
        [
            row["rank"],
            _f(row["reg_param"], 1),
            _f(row["alpha"], 0),
            _f(row["category_weight"], 0),
            row["repeat_slots"],
            _f(row[p]),
            _f(row[g]),
            _f(row["lift_over_popularity"], 3),
        ]
        for row in grid[:SHOWN_GRID_ROWS]
    ]
    without = [row for row in grid if row["category_weight"] == 0]
    pure = [row for row in grid if row["repeat_slots"] == 0]
    plain = (
        f" The best point without category items (category_weight 0) reaches "
        f"{without[0]['lift_over_popularity']:.3f}x."
        if without
        else ""
    ) + (
        f" The best point without buy-again slots (repeat_slots 0, pure ALS) reaches "
        f"{pure[0]['lift_over_popularity']:.3f}x."
        if pure
        else ""
    )
    return "\n".join(
        [
            f"Measured by `python -m sparkmart.bench.recommendation_tuning` on `small` data "
            f"(seed 42), `local[2]`; {machine_description()}. {len(grid)} grid points in "
            f"{seconds:.0f} s (the machine was shared with other jobs).",
            "",
            f"Windows: popularity = the {n} best sellers of the earlier period for everyone; "
            "segment oracle = the best sellers of the customer's true segment; oracle = the "
            "customer's planted favourite products, then the segment's best sellers; repeats = "
            "customer x product pairs of the window bought before / earlier products bought "
            "again.",
            "",
            markdown_table(
                [
                    "window",
                    "days",
                    "customers",
                    f"popularity p@{n}",
                    f"segment oracle p@{n}",
                    f"oracle p@{n}",
                    "oracle lift",
                    f"popularity NDCG@{n}",
                    f"oracle NDCG@{n}",
                    "window pairs bought before",
                    "earlier products bought again",
                ],
                windows,
            ),
            "",
            f"Validation grid (max_iter {params.max_iter}, best {len(grid_rows)} of "
            f"{len(grid)} by precision@{n}).{plain}",
            "",
            markdown_table(
                [
                    "rank",
                    "reg_param",
                    "alpha",
                    "category_weight",
                    "repeat_slots",
                    f"p@{n}",
                    f"NDCG@{n}",
                    "lift",
                ],
                grid_rows,
            ),
            "",
            f"Hold-out with the configured parameters {json.dumps(params.chosen())}: "
            f"precision@{n} {chosen[p]:.4f}, NDCG@{n} {chosen[g]:.4f}, popularity "
            f"{chosen[f'popularity_{p}']:.4f} / {chosen[f'popularity_{g}']:.4f}, lift "
            f"{chosen['lift_over_popularity']:.3f} (oracle "
            f"{holdout['oracle_lift_over_popularity']:.3f}).",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: settings' data/")
    parser.add_argument("--profile", default="local")
    parser.add_argument("--no-write", action="store_true", help="print only; keep docs as is")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    args = parser.parse_args(argv)
    log = get_logger("bench.recommendation")
    settings = load_settings(profile=args.profile, data_dir=args.data_dir)
    spark = get_spark(settings.spark)
    data = read_inputs(spark, settings.path("gold"), settings.path("raw") / "truth")
    orders = data.orders.select("customer_id", "product_id", "quantity", "order_ts").cache()
    segments = data.truth("customers").select("customer_id", "segment", "favourite_products")
    params = rec.RecommendationParams.from_config(dict(settings.ml))
    as_of = resolve_as_of(orders)
    validation_end = as_of - dt.timedelta(days=params.holdout_days)

    started = time.perf_counter()
    validation = ceiling(orders, segments, params, validation_end, params.validation_days)
    holdout = ceiling(orders, segments, params, as_of, params.holdout_days)
    log.info("windows: %s", json.dumps({"validation": validation, "holdout": holdout}))
    grid = rec.tune(orders, data.products, params, as_of)
    for row in grid:
        log.info("grid: %s", json.dumps(row))
    chosen = rec.evaluate_holdout(orders, data.products, params, as_of)
    best = {k: grid[0][k] for k in rec.GRID_KEYS}
    if best != params.chosen():
        log.warning("the best grid point %s is not the configured one %s", best, params.chosen())
        best_holdout = rec.evaluate_holdout(
            orders, data.products, dataclasses.replace(params, **best), as_of
        )
        log.info("best grid point on the hold-out: %s", json.dumps(best_holdout))
    seconds = time.perf_counter() - started
    text = report(validation, holdout, grid, chosen, params, seconds)
    print(text)
    if args.json:
        results = {
            "validation": validation,
            "holdout": holdout,
            "grid": grid,
            "chosen": chosen,
            "seconds": seconds,
        }
        args.json.write_text(json.dumps(results, indent=2))
    if not args.no_write:
        print(f"\nwritten to {update_section(SECTION, text, ML_MD)}")


if __name__ == "__main__":
    main()
