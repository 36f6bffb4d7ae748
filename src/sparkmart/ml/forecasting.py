"""Sales forecasting: a regularised linear regression on calendar, holiday and lag features.

The series is one value per day (orders placed, or gross revenue). Lags and moving averages
look back at least ``horizon_days`` (features.time_features), so the whole horizon is
forecast directly from what is known at the origin. Regularisation (regParam x elasticNet,
L1 doing the feature selection) is chosen by rolling-origin cross-validation: each fold trains
on the days before it, never after. The last ``horizon_days`` are the validation window,
compared with a seasonal-naive forecast (the last observed week repeated). Intervals come from
the root-mean-square residual of the cross-validation folds (on the log scale with
``log_target``); the validation window then measures their coverage.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import OneHotEncoder, SQLTransformer, StandardScaler, VectorAssembler
from pyspark.ml.regression import LinearRegression
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkmart.ml.core import ConfigSection, TrainResult, require_rows
from sparkmart.ml.evaluation import interval_coverage, mean_absolute_percentage_error
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
    interval_z: float = 1.96
    target_mape: float = 0.10
    target_improvement: float = 0.20
    seed: int = 42

    @classmethod
    def from_config(cls, ml: dict[str, Any]) -> ForecastParams:
        section = ConfigSection(ml, NAME, [*asdict(cls()).keys()])
        return cls(
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
            interval_z=section.number("interval_z", cls.interval_z, 0),
            target_mape=section.number("target_mape", cls.target_mape, 0),
            target_improvement=section.number("target_improvement", cls.target_improvement),
            seed=section.seed,
        )

    def feature_columns(self) -> list[str]:
        return [*CALENDAR, *lag_columns(self.lag_days, self.moving_average_days)]

    def history_days_needed(self) -> int:
        longest = max([*self.lag_days, *(self.horizon_days + w for w in self.moving_average_days)])
        return longest + self.horizon_days * (self.cv_folds + 2)


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


def train(orders: DataFrame, params: ForecastParams) -> TrainResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
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
    horizon = dt.timedelta(days=params.horizon_days)
    validation_start = last - horizon + dt.timedelta(days=1)
    before_validation = complete.filter(F.col("date") < F.lit(validation_start))
    validation = complete.filter(F.col("date") >= F.lit(validation_start))
    timings["features"] = time.perf_counter() - started

    started = time.perf_counter()
    folds = [
        (validation_start - horizon * (k + 1), validation_start - horizon * k)
        for k in range(params.cv_folds)
    ]
    search = []
    for reg in params.reg_params:
        for mix in params.elastic_net_params:
            errors, squared, count = [], 0.0, 0
            for fold_start, fold_end in folds:
                fold_train = complete.filter(F.col("date") < F.lit(fold_start))
                fold_test = complete.filter(
                    (F.col("date") >= F.lit(fold_start)) & (F.col("date") < F.lit(fold_end))
                )
                predicted = build_pipeline(params, reg, mix).fit(fold_train).transform(fold_test)
                errors.append(mean_absolute_percentage_error(predicted, params.target, "forecast"))
                row = predicted.agg(
                    F.sum((F.col("label") - F.col("prediction")) ** 2), F.count(F.lit(1))
                ).first()
                squared, count = squared + (row[0] or 0.0), count + row[1]
            search.append(
                {
                    "reg_param": reg,
                    "elastic_net": mix,
                    "cv_mape": sum(errors) / len(errors),
                    "cv_residual_rms": (squared / count) ** 0.5 if count else 0.0,
                }
            )
    best = min(search, key=lambda s: s["cv_mape"])
    timings["cross_validation"] = time.perf_counter() - started

    started = time.perf_counter()
    validated = build_pipeline(params, best["reg_param"], best["elastic_net"]).fit(
        before_validation
    )
    predicted = validated.transform(validation)
    origin = validation_start - dt.timedelta(days=1)
    baseline = seasonal_naive(series, params.target, origin, params.horizon_days)
    compared = predicted.join(baseline, "date")
    mape = mean_absolute_percentage_error(compared, params.target, "forecast")
    baseline_mape = mean_absolute_percentage_error(compared, params.target, "baseline")
    # Out-of-sample error scale of the chosen model, bias included: from the CV folds, so the
    # validation window measures the intervals' coverage instead of calibrating them.
    residual_sd = best["cv_residual_rms"]
    timings["validation"] = time.perf_counter() - started

    started = time.perf_counter()
    model = build_pipeline(params, best["reg_param"], best["elastic_net"]).fit(complete)
    forecast = forecast_next(model, series, first, params, residual_sd)
    validation_intervals = with_intervals(predicted, params, residual_sd)
    coverage = interval_coverage(validation_intervals, params.target, "lower", "upper")
    timings["final_fit_and_forecast"] = time.perf_counter() - started
    coefficients = model.stages[3].coefficients.toArray().tolist()
    names = _feature_names(params)
    series.unpersist()
    complete.unpersist()
    return TrainResult(
        name=NAME,
        model=model,
        metrics={
            "target": params.target,
            "mape": mape,
            "baseline_mape": baseline_mape,
            "improvement_over_baseline": 1 - mape / baseline_mape if baseline_mape else None,
            "interval_coverage": coverage,
            "validation_days": params.horizon_days,
            "history_days": days,
            "cv_search": search,
        },
        params={
            **asdict(params),
            "chosen_reg_param": best["reg_param"],
            "chosen_elastic_net": best["elastic_net"],
            "origin_date": first.isoformat(),
            "last_date": last.isoformat(),
            "residual_sd": residual_sd,
            "selected_features": [n for n, c in zip(names, coefficients, strict=False) if c],
            "dropped_features": [n for n, c in zip(names, coefficients, strict=False) if not c],
        },
        timings=timings,
        outputs={"sales_forecast": forecast},
    )


def _feature_names(params: ForecastParams) -> list[str]:
    weekdays = [f"weekday={d}" for d in range(1, 7)]  # one-hot drops the last level
    months = [f"month={m}" for m in range(1, 12)]
    return [*params.feature_columns(), *weekdays, *months]


def with_intervals(predicted: DataFrame, params: ForecastParams, residual_sd: float) -> DataFrame:
    """lower/upper bounds: prediction -/+ z x residual sd (back-transformed with log_target)."""
    spread = F.lit(params.interval_z * residual_sd)
    if params.log_target:
        lower = F.expm1(F.col("prediction") - spread)
        upper = F.expm1(F.col("prediction") + spread)
    else:
        lower, upper = F.col("prediction") - spread, F.col("prediction") + spread
    return predicted.withColumn("lower", F.greatest(lower, F.lit(0.0))).withColumn("upper", upper)


def forecast_next(
    model: PipelineModel,
    series: DataFrame,
    origin: dt.date,
    params: ForecastParams,
    residual_sd: float,
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
    predicted = with_intervals(model.transform(future), params, residual_sd)
    return predicted.select(
        "date",
        F.lit(params.target).alias("target"),
        F.col("forecast"),
        F.col("lower"),
        F.col("upper"),
    )


def forecast(model: PipelineModel, orders: DataFrame, params: dict[str, Any]) -> DataFrame:
    """The next horizon from a saved model and the current orders."""
    chosen = ForecastParams(
        **{
            k: (tuple(v) if isinstance(v, list) else v)
            for k, v in params.items()
            if k in ForecastParams.__dataclass_fields__
        }
    )
    series = daily_sales(orders)
    return forecast_next(
        model,
        series,
        dt.date.fromisoformat(params["origin_date"]),
        chosen,
        float(params["residual_sd"]),
    )
