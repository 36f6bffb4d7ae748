"""Metrics that score models against the generator's ground truth.

Each metric is computed by Spark (aggregations, Spark ML evaluators); only small results — a
contingency table of cluster x segment counts, a handful of sums — come back to the driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import ceil, comb

from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    RankingEvaluator,
    RegressionEvaluator,
)
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def adjusted_rand_index_from_counts(contingency: Iterable[tuple[object, object, int]]) -> float:
    """ARI (Hubert & Arabie) from (label_a, label_b, count) cells of a contingency table.

    1.0 for identical partitions (whatever the label names), about 0 for independent ones.
    When both partitions put everything in one cluster (or both are all singletons) the index
    is undefined; it is returned as 1.0, the partitions being identical.
    """
    cells: dict[tuple[object, object], int] = {}
    rows: dict[object, int] = {}
    columns: dict[object, int] = {}
    for label_a, label_b, count in contingency:
        cells[(label_a, label_b)] = cells.get((label_a, label_b), 0) + int(count)
        rows[label_a] = rows.get(label_a, 0) + int(count)
        columns[label_b] = columns.get(label_b, 0) + int(count)
    total = sum(rows.values())
    if total < 2:
        raise ValueError("adjusted Rand index needs at least two labelled items")
    index = sum(comb(n, 2) for n in cells.values())
    sum_rows = sum(comb(n, 2) for n in rows.values())
    sum_columns = sum(comb(n, 2) for n in columns.values())
    expected = sum_rows * sum_columns / comb(total, 2)
    maximum = (sum_rows + sum_columns) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def adjusted_rand_index(df: DataFrame, labels_a: str, labels_b: str) -> float:
    """ARI between two label columns of ``df`` (rows with a null label are left out)."""
    counts = (
        df.filter(F.col(labels_a).isNotNull() & F.col(labels_b).isNotNull())
        .groupBy(labels_a, labels_b)
        .count()
        .collect()
    )
    return adjusted_rand_index_from_counts((r[0], r[1], r[2]) for r in counts)


def mean_absolute_percentage_error(df: DataFrame, actual: str, predicted: str) -> float:
    """MAPE as a fraction (0.1 = 10%); days with an actual of 0 are left out (undefined)."""
    row = (
        df.filter(F.col(actual).isNotNull() & (F.col(actual) != 0))
        .agg(F.avg(F.abs((F.col(actual) - F.col(predicted)) / F.col(actual))).alias("mape"))
        .first()
    )
    if row is None or row["mape"] is None:
        raise ValueError(f"MAPE: no non-zero '{actual}' values to compare with")
    return float(row["mape"])


def interval_coverage(df: DataFrame, actual: str, lower: str, upper: str) -> float:
    """Share of actual values inside [lower, upper]."""
    inside = F.when(F.col(actual).between(F.col(lower), F.col(upper)), 1.0).otherwise(0.0)
    return float(df.agg(F.avg(inside)).first()[0])


def interval_width_ratio(df: DataFrame, actual: str, lower: str, upper: str) -> float:
    """Mean interval width over the mean actual value: how wide the intervals are in units of
    a typical day (0.3 = bounds 30% of a mean day apart)."""
    row = df.agg(F.avg(F.col(upper) - F.col(lower)), F.avg(actual)).first()
    if row is None or not row[1]:
        raise ValueError(f"interval width: no non-zero '{actual}' values to compare with")
    return float(row[0] / row[1])


def _conformal_rank(count: int, level: float) -> int:
    # ceil((n + 1) x level), tolerant of float noise such as 20 x 0.95 = 19.000000000000004
    return ceil((count + 1) * level - 1e-9)


def min_calibration_size(level: float) -> int:
    """Fewest residuals whose conformal ``level`` quantile exists (19 for 95%, 99 for 99%)."""
    if not 0 < level < 1:
        raise ValueError(f"interval level should be in (0, 1), got {level}")
    count = 1
    while _conformal_rank(count, level) > count:
        count += 1
    return count


def conformal_radius(absolute_residuals: Sequence[float], level: float) -> float:
    """Split-conformal half-width: the ceil((n + 1) x level)-th smallest of n absolute
    out-of-sample residuals. If the residuals of new points are exchangeable with these, an
    interval prediction -/+ radius covers at least ``level`` of them."""
    values = sorted(absolute_residuals)
    needed = min_calibration_size(level)
    if len(values) < needed:
        raise ValueError(
            f"a {level:g} conformal interval needs at least {needed} residuals, got {len(values)}"
        )
    return float(values[_conformal_rank(len(values), level) - 1])


def regression_metrics(df: DataFrame, label: str, prediction: str) -> dict[str, float]:
    evaluator = RegressionEvaluator(labelCol=label, predictionCol=prediction)
    return {
        metric: float(evaluator.setMetricName(metric).evaluate(df))
        for metric in ("r2", "rmse", "mae")
    }


def binary_metrics(df: DataFrame, label: str, score: str) -> dict[str, float]:
    """ROC AUC and precision-recall AUC of a score (higher = more likely positive)."""
    scored = df.select(F.col(score).cast("double").alias("score"), F.col(label).cast("double"))
    evaluator = BinaryClassificationEvaluator(rawPredictionCol="score", labelCol=label)
    return {
        "roc_auc": float(evaluator.setMetricName("areaUnderROC").evaluate(scored)),
        "pr_auc": float(evaluator.setMetricName("areaUnderPR").evaluate(scored)),
    }


def threshold_metrics(df: DataFrame, label: str, score: str, threshold: float) -> dict[str, float]:
    """Precision and recall when orders scoring at least ``threshold`` are flagged."""
    flagged = F.col(score) >= threshold
    positive = F.col(label).cast("boolean")
    row = df.agg(
        F.sum(F.when(flagged & positive, 1).otherwise(0)).alias("tp"),
        F.sum(F.when(flagged & ~positive, 1).otherwise(0)).alias("fp"),
        F.sum(F.when(~flagged & positive, 1).otherwise(0)).alias("fn"),
    ).first()
    tp, fp, fn = (row["tp"] or 0), (row["fp"] or 0), (row["fn"] or 0)
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "flagged": tp + fp,
    }


def ranking_metrics(df: DataFrame, recommended: str, relevant: str, k: int) -> dict[str, float]:
    """Mean precision@k and NDCG@k of recommended item lists against relevant item lists."""
    as_doubles = df.select(
        F.col(recommended).cast("array<double>").alias("recommended"),
        F.col(relevant).cast("array<double>").alias("relevant"),
    )
    evaluator = RankingEvaluator(predictionCol="recommended", labelCol="relevant", k=k)
    return {
        f"precision_at_{k}": float(evaluator.setMetricName("precisionAtK").evaluate(as_doubles)),
        f"ndcg_at_{k}": float(evaluator.setMetricName("ndcgAtK").evaluate(as_doubles)),
    }


def precision_recall_curve(df: DataFrame, label: str, score: str) -> list[dict[str, float]]:
    """Points (threshold, precision, recall) of flagging every row scoring >= threshold, one
    per distinct score of a positive row, highest threshold first.

    Only positive rows move recall, so these points are the curve's corners; there are at most
    as many as positives (1% of orders for fraud), which is what comes back to the driver.
    The running totals go through one partition of (distinct score, counts) rows.
    """
    counts = df.groupBy(F.col(score).cast("double").alias("threshold")).agg(
        F.sum(F.col(label).cast("boolean").cast("long")).alias("positives"),
        F.count(F.lit(1)).alias("rows"),
    )
    running = Window.orderBy(F.desc("threshold")).rowsBetween(Window.unboundedPreceding, 0)
    total = F.sum("positives").over(Window.partitionBy())
    points = (
        counts.withColumn("tp", F.sum("positives").over(running))
        .withColumn("flagged", F.sum("rows").over(running))
        .withColumn("all_positives", total)
        .filter(F.col("positives") > 0)
        .orderBy(F.desc("threshold"))
        .collect()
    )
    return [
        {
            "threshold": p["threshold"],
            "precision": p["tp"] / p["flagged"],
            "recall": p["tp"] / p["all_positives"],
        }
        for p in points
    ]
