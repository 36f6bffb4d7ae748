"""Train, evaluate and score every model: the only module of ``ml/`` that reads and writes.

- **train**: read gold (and the generator's truth for labels and scoring), fit each model,
  check it against its target, save it as a new version under ``data/models/<name>/``;
- **evaluate**: check the latest version of each model against its target on the current data,
  on rows it never learned from, as training did: fraud and satisfaction models were fit on
  their training part alone and score their hold-out; forecasting and recommendation models
  were fit on everything, so their training period is refit with the saved hyperparameters
  and the hold-out scored; segmentation never sees the truth, so the saved model is scored
  against it. A missed target makes ``exit_status`` 1;
- **score**: load the latest models, fill ``customers.segment``, ``products.recommendation_rank``,
  ``orders.fraud_score`` and ``orders.customer_satisfaction`` and write the gold tables back
  (and the ML tables ``recommendations``, ``sales_forecast``, ``category_associations``) with the
  batch export's rules: Parquet renamed into place, PostgreSQL ``analytics.*`` replaced in one
  transaction per table, PostgreSQL only after the Parquet write succeeded.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkmart.batch.analytics import resolve_as_of
from sparkmart.batch.export import (
    PARTITION_COLUMNS,
    export_to_postgres,
    with_order_month,
    write_parquet_atomically,
)
from sparkmart.config import Settings
from sparkmart.io.postgres import PgSettings, replace_table_atomically
from sparkmart.ml import forecasting as forecast_model
from sparkmart.ml import fraud, recommendation, satisfaction, segmentation
from sparkmart.ml.core import MLError, TrainResult, params_from_saved
from sparkmart.ml.registry import OUTPUTS_DIR, load_model, save_model
from sparkmart.monitor.run import MonitoredRun, audited_run, monitored_run
from sparkmart.spark_utils import get_logger

log = get_logger("ml")
PIPELINE = "ml"
RUNS_DIR = "runs"  # <models>/runs/<run_id>.metrics.json and .openlineage.jsonl
Action = Literal["train", "evaluate", "score"]
MODELS: tuple[str, ...] = (
    segmentation.NAME,
    forecast_model.NAME,
    recommendation.NAME,
    fraud.NAME,
    satisfaction.NAME,
)
# New gold tables written by scoring, with their keys in PostgreSQL analytics.*.
ML_TABLE_KEYS: dict[str, list[str]] = {
    "recommendations": ["customer_id", "rank"],
    "sales_forecast": ["date"],
    "category_associations": ["antecedent", "consequent"],
}


@dataclass(frozen=True)
class Target:
    metric: str
    value: float | None
    goal: float
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal

    def format(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        value = "n/a" if self.value is None else f"{self.value:.4f}"
        verdict = "met" if self.met else "NOT met"
        return f"{self.metric} {value} (target {sign} {self.goal:g}: {verdict})"


@dataclass
class ModelOutcome:
    name: str
    version: str | None
    metrics: dict[str, Any]
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class MLSummary:
    action: str
    outcomes: list[ModelOutcome] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    postgres_rows: dict[str, int] = field(default_factory=dict)

    @property
    def all_targets_met(self) -> bool:
        return all(t.met for o in self.outcomes for t in o.targets)

    @property
    def missed_targets(self) -> list[str]:
        return [f"{o.name}.{t.metric}" for o in self.outcomes for t in o.targets if not t.met]

    @property
    def exit_status(self) -> int:
        """1 when ``evaluate`` finds a target missed, else 0. Training reports its targets but
        still saves the model (the demo trains and scores whatever the numbers are)."""
        return 1 if self.action == "evaluate" and not self.all_targets_met else 0

    def format(self) -> str:
        lines = [f"ml {self.action}:"]
        for outcome in self.outcomes:
            version = f" v{outcome.version}" if outcome.version else ""
            lines.append(f"  {outcome.name}{version} ({outcome.seconds:.1f} s)")
            lines += [f"    {target.format()}" for target in outcome.targets]
        checked = [t for o in self.outcomes for t in o.targets]
        if checked:
            missed = self.missed_targets
            lines.append(
                f"  targets met: {len(checked) - len(missed)} of {len(checked)}"
                + (f" (missed: {', '.join(missed)})" if missed else "")
            )
        if self.written:
            lines.append(
                "  gold written: " + ", ".join(f"{k} {v:,} rows" for k, v in self.written.items())
            )
        if self.postgres_rows:
            lines.append(
                "  PostgreSQL analytics.*: "
                + ", ".join(f"{k} {v:,} rows" for k, v in self.postgres_rows.items())
            )
        return "\n".join(lines)


def targets_for(name: str, metrics: Mapping[str, Any], ml: Mapping[str, Any]) -> list[Target]:
    """Each model's metrics against the targets in ml_params.json."""
    if name == segmentation.NAME:
        params = segmentation.SegmentationParams.from_config(dict(ml))
        return [Target("adjusted_rand_index", metrics.get("ari"), params.target_ari)]
    if name == forecast_model.NAME:
        params = forecast_model.ForecastParams.from_config(dict(ml))
        return [
            Target("mape", metrics.get("mape"), params.target_mape, higher_is_better=False),
            Target(
                "improvement_over_seasonal_naive",
                metrics.get("improvement_over_baseline"),
                params.target_improvement,
            ),
            Target(
                "interval_coverage",
                metrics.get("interval_coverage"),
                params.interval_level - params.target_coverage_shortfall,
            ),
        ]
    if name == recommendation.NAME:
        params = recommendation.RecommendationParams.from_config(dict(ml))
        return [
            Target(
                "precision_at_n_over_popularity",
                metrics.get("lift_over_popularity"),
                params.target_lift_over_popularity,
            )
        ]
    if name == fraud.NAME:
        params = fraud.FraudParams.from_config(dict(ml))
        return [Target("roc_auc", metrics.get("roc_auc"), params.target_roc_auc)]
    params = satisfaction.SatisfactionParams.from_config(dict(ml))
    return [Target("r2", metrics.get("r2"), params.target_r2)]


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLInputs:
    customers: DataFrame
    products: DataFrame
    orders: DataFrame
    truth_dir: Path

    def truth(self, name: str) -> DataFrame:
        path = self.truth_dir / name
        if not path.exists():
            raise MLError(
                f"ground truth {path} not found: labels and evaluation need the generator's "
                "truth tables (`sparkmart generate` writes them under <raw>/truth)"
            )
        return self.orders.sparkSession.read.parquet(str(path))


def read_inputs(spark: SparkSession, gold_dir: Path, truth_dir: Path) -> MLInputs:
    frames = {}
    for name in ("customers", "products", "orders"):
        path = gold_dir / name
        if not path.exists():
            raise MLError(f"gold table {path} not found: run `sparkmart batch` first")
        frames[name] = spark.read.parquet(str(path)).drop(*PARTITION_COLUMNS.get(name, []))
    return MLInputs(frames["customers"], frames["products"], frames["orders"], truth_dir)


# --- train -----------------------------------------------------------------------------------


def train_one(name: str, data: MLInputs, ml: Mapping[str, Any]) -> TrainResult:
    ml = dict(ml)
    if name == segmentation.NAME:
        result = segmentation.train(
            data.customers,
            data.orders,
            data.products,
            segmentation.SegmentationParams.from_config(ml),
        )
        if (data.truth_dir / "customers").exists():  # unsupervised: truth only scores it
            scored = segmentation.score(
                result.model, data.customers, data.orders, data.products, result.params
            )
            result.metrics.update(segmentation.evaluate(scored, data.truth("customers")))
        return result
    if name == forecast_model.NAME:
        return forecast_model.train(data.orders, forecast_model.ForecastParams.from_config(ml))
    if name == recommendation.NAME:
        return recommendation.train(
            data.orders,
            data.products,
            recommendation.RecommendationParams.from_config(ml),
            resolve_as_of(data.orders),
        )
    if name == fraud.NAME:
        return fraud.train(
            data.orders,
            data.customers,
            data.products,
            data.truth("orders"),
            fraud.FraudParams.from_config(ml),
        )
    if name == satisfaction.NAME:
        return satisfaction.train(
            data.orders,
            data.customers,
            data.products,
            data.truth("orders"),
            satisfaction.SatisfactionParams.from_config(ml),
        )
    raise MLError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")


# --- evaluate --------------------------------------------------------------------------------


def evaluate_one(name: str, data: MLInputs, models_dir: Path) -> tuple[str, dict[str, Any]]:
    saved = load_model(models_dir, name)
    if name == segmentation.NAME:
        scored = segmentation.score(
            saved.model, data.customers, data.orders, data.products, saved.params
        )
        return saved.version, segmentation.evaluate(scored, data.truth("customers"))
    if name == fraud.NAME:
        scores = fraud.score_orders(
            saved.model, data.orders, data.customers, data.products, saved.params
        )
        labelled = (
            fraud.with_labels(scores, data.truth("orders"))
            .join(data.orders.select("order_id", "order_ts"), "order_id")
            .withColumn("order_seconds", F.unix_seconds("order_ts"))
            .cache()  # the split and every metric read it: compute the features once
        )
        _, test = fraud.time_split(labelled, float(saved.params["test_fraction"]))
        metrics = fraud.evaluate(test, float(saved.params["threshold"]))
        labelled.unpersist()
        return saved.version, metrics
    if name == satisfaction.NAME:
        scores = satisfaction.score_orders(
            saved.model, data.orders, data.customers, data.products, saved.params
        )
        truth = data.truth("orders").select("order_id", F.col("satisfaction").alias("label"))
        _, test = satisfaction.holdout_split(
            scores.join(truth, "order_id"),
            float(saved.params["test_fraction"]),
            int(saved.params["seed"]),
        )
        test = test.cache()  # read by each metric: compute the features once
        metrics = satisfaction.evaluate(test)
        test.unpersist()
        return saved.version, metrics
    if name == forecast_model.NAME:
        return saved.version, forecast_model.evaluate(data.orders, saved.params)
    if name == recommendation.NAME:
        params = params_from_saved(recommendation.RecommendationParams, saved.params)
        return saved.version, recommendation.evaluate_holdout(
            data.orders, data.products, params, resolve_as_of(data.orders)
        )
    raise MLError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")


# --- score -----------------------------------------------------------------------------------


def score_all(
    names: Sequence[str], data: MLInputs, models_dir: Path
) -> tuple[dict[str, DataFrame], dict[str, str]]:
    """Scored gold entities and ML tables (lazy), and the model versions used."""
    customers, products, orders = data.customers, data.products, data.orders
    tables: dict[str, DataFrame] = {}
    versions: dict[str, str] = {}
    for name in names:
        saved = load_model(models_dir, name)
        versions[name] = saved.version
        if name == segmentation.NAME:
            customers = segmentation.score(
                saved.model, customers, data.orders, data.products, saved.params
            )
        elif name == forecast_model.NAME:
            tables["sales_forecast"] = forecast_model.forecast(
                saved.model, data.orders, saved.params
            )
        elif name == recommendation.NAME:
            tables["recommendations"], products = recommendation.score(
                saved.model, data.customers, products, saved.params, data.orders
            )
            rules = saved.path / OUTPUTS_DIR / "category_associations"
            if rules.exists():
                tables["category_associations"] = data.orders.sparkSession.read.parquet(str(rules))
        elif name == fraud.NAME:
            orders = fraud.score(saved.model, orders, data.customers, data.products, saved.params)
        elif name == satisfaction.NAME:
            orders = satisfaction.score(
                saved.model, orders, data.customers, data.products, saved.params
            )
    entities = {"customers": customers, "products": products, "orders": orders}
    changed = {
        "customers": segmentation.NAME in names,
        "products": recommendation.NAME in names,
        "orders": fraud.NAME in names or satisfaction.NAME in names,
    }
    return {**{k: v for k, v in entities.items() if changed[k]}, **tables}, versions


def write_back(
    scored: Mapping[str, DataFrame], gold_dir: Path, pg: PgSettings | None
) -> tuple[dict[str, int], dict[str, int]]:
    """Gold Parquet (each renamed into place), then PostgreSQL analytics.* (each in one
    transaction). Inputs read from the gold files being replaced are materialised first."""
    materialised = {name: df.localCheckpoint(eager=True) for name, df in scored.items()}
    spark = next(iter(materialised.values())).sparkSession if materialised else None
    written: dict[str, int] = {}
    for name, df in materialised.items():
        frame = df.transform(with_order_month) if name == "orders" else df
        write_parquet_atomically(frame, gold_dir / name, PARTITION_COLUMNS.get(name))
        written[name] = spark.read.parquet(str(gold_dir / name)).count()
    postgres_rows: dict[str, int] = {}
    if pg is not None and materialised:
        fresh = {
            name: spark.read.parquet(str(gold_dir / name)).drop(*PARTITION_COLUMNS.get(name, []))
            for name in materialised
        }
        entities = {k: v for k, v in fresh.items() if k not in ML_TABLE_KEYS}
        postgres_rows.update(export_to_postgres(entities, pg))
        for name, df in fresh.items():
            if name in ML_TABLE_KEYS:
                postgres_rows[name] = replace_table_atomically(
                    df, pg, f"analytics.{name}", primary_key=ML_TABLE_KEYS[name]
                )
    return written, postgres_rows


# --- entry point -----------------------------------------------------------------------------


def run_ml(
    settings: Settings,
    spark: SparkSession,
    action: Action,
    models: Sequence[str] | None = None,
    pg: PgSettings | None = None,
    gold_dir: Path | None = None,
    truth_dir: Path | None = None,
    models_dir: Path | None = None,
) -> MLSummary:
    """Run one ML action over the chosen models (default: all five)."""
    chosen = list(models or MODELS)
    unknown = [m for m in chosen if m not in MODELS]
    if unknown:
        raise MLError(f"unknown model(s) {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    if action not in ("train", "evaluate", "score"):
        raise MLError(f"unknown ML action '{action}' (choose train, evaluate or score)")
    gold_dir = gold_dir or settings.path("gold")
    models_dir = models_dir or settings.path("models")
    truth_dir = truth_dir or settings.path("raw") / "truth"
    started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    parameters = {"models": chosen, "gold": str(gold_dir), "models_dir": str(models_dir)}
    with (
        monitored_run(spark, PIPELINE, models_dir / RUNS_DIR, pg, logger=log) as run,
        audited_run(
            pg,
            run,
            audit_name=PIPELINE,
            mode=action,
            config_dir=settings.config_dir,
            parameters=parameters,
            started_at=started_at,
        ) as record,
    ):
        data = read_inputs(spark, gold_dir, truth_dir)
        summary = _run_action(settings, run, action, chosen, data, models_dir, gold_dir, pg)
        record.rows = {
            "models": {o.name: {"version": o.version, **o.metrics} for o in summary.outcomes},
            "targets_missed": summary.missed_targets,
            "written": summary.written,
            "postgres": summary.postgres_rows,
        }
    return summary


def _run_action(
    settings: Settings,
    run: MonitoredRun,
    action: Action,
    chosen: Sequence[str],
    data: MLInputs,
    models_dir: Path,
    gold_dir: Path,
    pg: PgSettings | None,
) -> MLSummary:
    summary = MLSummary(action)
    if action == "score":
        with run.step("score and write back") as step:
            scored, versions = score_all(chosen, data, models_dir)
            summary.written, summary.postgres_rows = write_back(scored, gold_dir, pg)
            step.rows_out = sum(summary.written.values())
        summary.outcomes = [ModelOutcome(n, versions[n], {}, [], step.seconds) for n in chosen]
        log.info("scored with %s in %.1f s", versions, step.seconds)
        return summary
    for name in chosen:
        with run.step(f"{action} {name}") as step:
            if action == "train":
                started = time.perf_counter()
                result = train_one(name, data, settings.ml)
                result.timings["total"] = time.perf_counter() - started  # saved in report.json
                path = save_model(models_dir, result)
                version, metrics = path.name, result.metrics
            else:
                version, metrics = evaluate_one(name, data, models_dir)
        if action == "train":
            log.info("trained %s v%s in %.1f s -> %s", name, version, step.seconds, path)
        outcome = ModelOutcome(
            name, version, metrics, targets_for(name, metrics, settings.ml), step.seconds
        )
        summary.outcomes.append(outcome)
    return summary
