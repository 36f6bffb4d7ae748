"""Sales forecasting: a regularised linear regression on calendar, holiday and lag features.

The series is one value per day (orders placed, or gross revenue). Lags and moving averages
look back at least ``horizon_days`` (features.time_features), so the whole horizon is
forecast directly from what is known at the origin. Regularisation (regParam x elasticNet,
L1 doing the feature selection) is chosen by rolling-origin backtests: ``cv_folds`` windows
of ``horizon_days`` just before the validation window, each forecast by a model trained on
the days before it, never after. The last ``horizon_days`` are the validation window (the
hold-out), compared with a seasonal-naive forecast (the last observed week repeated).

Intervals are split-conformal: their half-width (on the log scale with ``log_target``) is the
finite-sample ``interval_level`` quantile of the chosen model's absolute backtest residuals,
so the hold-out measures their coverage instead of calibrating them. The saved forecast's
intervals are calibrated the same way one window later: on the newest windows, hold-out
included.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from functools import reduce
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import OneHotEncoder, SQLTransformer, StandardScaler, VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkmart.config import ML_CONFIG, ConfigError
from sparkmart.ml.core import (
    ConfigSection,
    MLError,
    TrainResult,
    params_from_saved,
    require_rows,
)
from sparkmart.ml.evaluation import (
    conformal_radius,
    interval_coverage,
    interval_width_ratio,
    mean_absolute_percentage_error,
    min_calibration_size,
)
from sparkmart.ml.features import daily_sales, extend_calendar, lag_columns, time_features

NAME = "forecasting"
CALENDAR = (
    "trend",
    "is_weekend",
    "is_black_friday_week",
    "is_cyber_week",
    "is_christmas_rush",
    "is_holiday_lull",
)


@dataclass(frozen=True)
class ForecastParams:
    target: str = "orders"
    horizon_days: int = 30
    lag_days: tuple[int, ...] = (35, 42, 364)
    moving_average_days: tuple[int, ...] = (7, 28)
    log_target: bool = True
    cv_folds: int = 3
    reg_params: tuple[float, ...] = (0.001, 0.01, 0.1)
    elastic_net_params: tuple[float, ...] = (0.5, 1.0)
    interval_level: float = 0.95
    target_mape: float = 0.10
    target_improvement: float = 0.20
    target_coverage_shortfall: float = 0.05
    seed: int = 42

    @classmethod
    def from_config(cls, ml: dict[str, Any]) -> ForecastParams:
        section = ConfigSection(ml, NAME, [*asdict(cls()).keys()])
        params = cls(
            target=section.choice("target", cls.target, ["orders", "revenue"]),
            horizon_days=section.integer("horizon_days", cls.horizon_days, low=1),
            lag_days=tuple(section.integers("lag_days", cls.lag_days, low=1)),
            moving_average_days=tuple(
                section.integers("moving_average_days", cls.moving_average_days, low=1)
            ),
            log_target=section.boolean("log_target", cls.log_target),
            cv_folds=section.integer("cv_folds", cls.cv_folds, low=1),
            reg_params=tuple(section.numbers("reg_params", cls.reg_params, low=0)),
            elastic_net_params=tuple(
                section.numbers("elastic_net_params", cls.elastic_net_params, low=0)
            ),
            interval_level=section.number("interval_level", cls.interval_level, 0.5, 0.999),
            target_mape=section.number("target_mape", cls.target_mape, 0),
            target_improvement=section.number("target_improvement", cls.target_improvement),
            target_coverage_shortfall=section.number(
                "target_coverage_shortfall", cls.target_coverage_shortfall, 0, 1
            ),
            seed=section.seed,
        )
        residuals, needed = (
            params.cv_folds * params.horizon_days,
            min_calibration_size(params.interval_level),
        )
        if residuals < needed:
            raise ConfigError(
                f"{ML_CONFIG}: {NAME}.interval_level {params.interval_level:g} needs at least "
                f"{needed} backtest residuals; cv_folds x horizon_days gives {residuals}: "
                "raise cv_folds or lower interval_level"
            )
        return params

    def feature_columns(self) -> list[str]:
        return [*CALENDAR, *lag_columns(self.lag_days, self.moving_average_days)]

    def history_days_needed(self) -> int:
        longest = max([*self.lag_days, *(self.horizon_days + w for w in self.moving_average_days)])
        return longest + self.horizon_days * (self.cv_folds + 2)


@dataclass(frozen=True)
class History:
    """The daily series, its rows with every feature known, and where the hold-out starts."""

    series: DataFrame
    complete: DataFrame
    first: dt.date
    last: dt.date
    days: int
    validation_start: dt.date

    def between(self, start: dt.date | None, end: dt.date | None) -> DataFrame:
        """Complete rows with start <= date < end (None: unbounded)."""
        rows = self.complete
        if start is not None:
            rows = rows.filter(F.col("date") >= F.lit(start))
        if end is not None:
            rows = rows.filter(F.col("date") < F.lit(end))
        return rows

    def unpersist(self) -> None:
        self.series.unpersist()
        self.complete.unpersist()


def load_history(orders: DataFrame, params: ForecastParams) -> History:
    series = daily_sales(orders).cache()
    days = series.count()
    require_rows(days, params.history_days_needed(), "days of sales history", NAME)
    first, last = series.agg(F.min("date"), F.max("date")).first()
    featured = time_features(
        series,
        params.target,
        first,
        params.lag_days,
        params.moving_average_days,
        params.horizon_days,
        params.log_target,
    )
    # ~700 rows: one partition keeps the many small fits of the search cheap.
    complete = featured.dropna(subset=params.feature_columns()).coalesce(1).cache()
    validation_start = last - dt.timedelta(days=params.horizon_days - 1)
    return History(series, complete, first, last, days, validation_start)


def build_pipeline(params: ForecastParams, reg_param: float, elastic_net: float) -> Pipeline:
    """One-hot weekday and month -> assemble -> standardise -> linear regression -> forecast."""
    back = "expm1(prediction)" if params.log_target else "prediction"
    return Pipeline(
        stages=[
            OneHotEncoder(
                inputCols=["day_of_week_index", "month_index"],
                outputCols=["day_of_week_onehot", "month_onehot"],
            ),
            VectorAssembler(
                inputCols=[*params.feature_columns(), "day_of_week_onehot", "month_onehot"],
                outputCol="raw_features",
            ),
            StandardScaler(inputCol="raw_features", outputCol="features", withMean=True),
            LinearRegression(
                featuresCol="features",
                labelCol="label",
                regParam=reg_param,
                elasticNetParam=elastic_net,
                maxIter=200,
            ),
            SQLTransformer(statement=f"SELECT *, {back} AS forecast FROM __THIS__"),
        ]
    )


def seasonal_naive(series: DataFrame, target: str, origin: dt.date, days: int) -> DataFrame:
    """date -> baseline: the last observed week before ``origin`` (inclusive), repeated."""
    start = F.lit(origin).cast("date")
    future = series.select("date").filter(
        (F.col("date") > start) & (F.col("date") <= F.date_add(start, days))
    )
    weeks_back = F.ceil(F.datediff("date", start) / F.lit(7.0)).cast("int") * 7
    source = series.select(F.col("date").alias("source_date"), F.col(target).alias("baseline"))
    return (
        future.withColumn("source_date", F.date_sub("date", weeks_back))
        .join(source, "source_date")
        .select("date", "baseline")
    )


def backtest(history: History, params: ForecastParams, reg: float, mix: float) -> DataFrame:
    """window (0 = the newest), date, target, label, prediction, forecast of the ``cv_folds``
    windows before the hold-out, each forecast by a model fit on the days before it."""
    horizon = dt.timedelta(days=params.horizon_days)
    frames = []
    for window in range(params.cv_folds):
        end = history.validation_start - horizon * window
        start = end - horizon
        model = build_pipeline(params, reg, mix).fit(history.between(None, start))
        frames.append(
            model.transform(history.between(start, end)).select(
                F.lit(window).alias("window"),
                "date",
                params.target,
                "label",
                "prediction",
                "forecast",
            )
        )
    return reduce(DataFrame.unionByName, frames)


def absolute_residuals(predicted: DataFrame) -> list[float]:
    """|label - prediction| of a few backtest windows (at most cv_folds x horizon_days values),
    brought to the driver for the conformal quantile."""
    return [r[0] for r in predicted.select(F.abs(F.col("label") - F.col("prediction"))).collect()]


def with_intervals(predicted: DataFrame, params: ForecastParams, radius: float) -> DataFrame:
    """lower/upper bounds: prediction -/+ radius (back-transformed with log_target)."""
    spread = F.lit(radius)
    if params.log_target:
        lower = F.expm1(F.col("prediction") - spread)
        upper = F.expm1(F.col("prediction") + spread)
    else:
        lower, upper = F.col("prediction") - spread, F.col("prediction") + spread
    return predicted.withColumn("lower", F.greatest(lower, F.lit(0.0))).withColumn("upper", upper)


def validate(
    history: History, params: ForecastParams, reg: float, mix: float, backtested: DataFrame
) -> tuple[dict[str, Any], DataFrame]:
    """Fit on the days before the hold-out, forecast it with intervals calibrated on the
    backtests, and score it against the actuals and the seasonal-naive baseline.

    Returns the metrics and the hold-out predictions (for calibrating the next forecast).
    """
    model = build_pipeline(params, reg, mix).fit(history.between(None, history.validation_start))
    residuals = absolute_residuals(backtested)
    radius = conformal_radius(residuals, params.interval_level)
    predicted = with_intervals(
        model.transform(history.between(history.validation_start, None)), params, radius
    )
    origin = history.validation_start - dt.timedelta(days=1)
    baseline = seasonal_naive(history.series, params.target, origin, params.horizon_days)
    compared = predicted.join(baseline, "date").cache()
    mape = mean_absolute_percentage_error(compared, params.target, "forecast")
    baseline_mape = mean_absolute_percentage_error(compared, params.target, "baseline")
    metrics = {
        "target": params.target,
        "mape": mape,
        "baseline_mape": baseline_mape,
        "improvement_over_baseline": 1 - mape / baseline_mape if baseline_mape else None,
        "interval_level": params.interval_level,
        "interval_coverage": interval_coverage(compared, params.target, "lower", "upper"),
        "interval_width_ratio": interval_width_ratio(compared, params.target, "lower", "upper"),
        "interval_radius": radius,
        "calibration_residuals": len(residuals),
        "validation_days": params.horizon_days,
        "history_days": history.days,
    }
    compared.unpersist()
    return metrics, predicted


def train(orders: DataFrame, params: ForecastParams) -> TrainResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    history = load_history(orders, params)
    timings["features"] = time.perf_counter() - started

    started = time.perf_counter()
    search, backtests = [], {}
    for reg in params.reg_params:
        for mix in params.elastic_net_params:
            predicted = backtest(history, params, reg, mix).cache()
            errors = [
                mean_absolute_percentage_error(
                    predicted.filter(F.col("window") == w), params.target, "forecast"
                )
                for w in range(params.cv_folds)
            ]
            search.append(
                {"reg_param": reg, "elastic_net": mix, "cv_mape": sum(errors) / len(errors)}
            )
            backtests[(reg, mix)] = predicted
    best = min(search, key=lambda s: s["cv_mape"])
    chosen = (best["reg_param"], best["elastic_net"])
    for key, predicted in backtests.items():
        if key != chosen:
            predicted.unpersist()
    timings["cross_validation"] = time.perf_counter() - started

    started = time.perf_counter()
    metrics, held_out = validate(history, params, *chosen, backtests[chosen])
    # The next forecast's intervals: the same calibration one window later (hold-out included).
    newest = backtests[chosen].filter(F.col("window") < params.cv_folds - 1)
    radius = conformal_radius(
        absolute_residuals(held_out) + absolute_residuals(newest), params.interval_level
    )
    backtests[chosen].unpersist()
    timings["validation"] = time.perf_counter() - started

    started = time.perf_counter()
    model = build_pipeline(params, *chosen).fit(history.complete)
    forecast = forecast_next(model, history.series, history.first, params, radius)
    timings["final_fit_and_forecast"] = time.perf_counter() - started
    coefficients = model.stages[3].coefficients.toArray().tolist()
    names = _feature_names(params)
    history.unpersist()
    return TrainResult(
        name=NAME,
        model=model,
        metrics={**metrics, "cv_search": search},
        params={
            **asdict(params),
            "chosen_reg_param": chosen[0],
            "chosen_elastic_net": chosen[1],
            "origin_date": history.first.isoformat(),
            "last_date": history.last.isoformat(),
            "interval_radius": radius,
            "selected_features": [n for n, c in zip(names, coefficients, strict=False) if c],
            "dropped_features": [n for n, c in zip(names, coefficients, strict=False) if not c],
        },
        timings=timings,
        outputs={"sales_forecast": forecast},
    )


def evaluate(orders: DataFrame, saved: dict[str, Any]) -> dict[str, Any]:
    """Repeat a saved model's validation on ``orders``: with its chosen regularisation, refit
    the backtests and the model before the hold-out, and score the hold-out."""
    params = params_from_saved(ForecastParams, saved)
    chosen = (float(saved["chosen_reg_param"]), float(saved["chosen_elastic_net"]))
    history = load_history(orders, params)
    backtested = backtest(history, params, *chosen).cache()
    metrics, _ = validate(history, params, *chosen, backtested)
    backtested.unpersist()
    history.unpersist()
    return metrics


def _feature_names(params: ForecastParams) -> list[str]:
    weekdays = [f"weekday={d}" for d in range(1, 7)]  # one-hot drops the last level
    months = [f"month={m}" for m in range(1, 12)]
    return [*params.feature_columns(), *weekdays, *months]


def forecast_next(
    model: PipelineModel,
    series: DataFrame,
    origin: dt.date,
    params: ForecastParams,
    radius: float,
) -> DataFrame:
    """date, forecast, lower, upper for the ``horizon_days`` after the series' last day."""
    future = time_features(
        extend_calendar(series, params.horizon_days),
        params.target,
        origin,
        params.lag_days,
        params.moving_average_days,
        params.horizon_days,
        params.log_target,
    ).filter(F.col(params.target).isNull())
    predicted = with_intervals(model.transform(future), params, radius)
    return predicted.select(
        "date",
        F.lit(params.target).alias("target"),
        F.col("forecast"),
        F.col("lower"),
        F.col("upper"),
    )


def forecast(model: PipelineModel, orders: DataFrame, params: dict[str, Any]) -> DataFrame:
    """The next horizon from a saved model and the current orders."""
    if "interval_radius" not in params:
        raise MLError(
            f"{NAME}: the saved model predates calibrated intervals (no interval_radius in its "
            f"params.json): run `sparkmart ml train --models {NAME}`"
        )
    return forecast_next(
        model,
        daily_sales(orders),
        dt.date.fromisoformat(params["origin_date"]),
        params_from_saved(ForecastParams, params),
        float(params["interval_radius"]),
    )
