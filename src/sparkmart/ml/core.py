"""What every model module shares: its errors, config reading, and the result of a training run.

Each model validates its own section of ``config/ml_params.json`` through ``ConfigSection``, so
a wrong key or type stops the run with a message naming ``ml_params.json: <section>.<key>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from sparkmart.config import ML_CONFIG, ConfigError

P = TypeVar("P")


class MLError(ValueError):
    """An ML run cannot go on; the message says what is wrong and what to do."""


class InsufficientDataError(MLError):
    """Too little data to train (or evaluate) a model."""


class SchemaMismatchError(MLError):
    """A DataFrame to score lacks a column the model was trained on, or has another type."""


class ConfigSection:
    """Typed, checked access to one section of ``ml_params.json``; unknown keys are errors."""

    def __init__(self, ml: Mapping[str, Any], name: str, allowed: Sequence[str]) -> None:
        raw = ml.get(name, {})
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{ML_CONFIG}: {name} should be a mapping, got {type(raw).__name__}")
        unknown = sorted(k for k in raw if not k.startswith("_") and k not in allowed)
        if unknown:
            raise ConfigError(
                f"{ML_CONFIG}: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        self.name = name
        self.raw = raw
        self.seed = ml.get("seed", 42)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"{ML_CONFIG}: seed should be an integer, got {self.seed!r}")

    def _where(self, key: str) -> str:
        return f"{ML_CONFIG}: {self.name}.{key}"

    def number(self, key: str, default: float, low: float | None = None, high: float | None = None):
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{self._where(key)} should be a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{self._where(key)} should be in [{low}, {high}], got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, low: int | None = None) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self._where(key)} should be an integer, got {value!r}")
        if low is not None and value < low:
            raise ConfigError(f"{self._where(key)} should be at least {low}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._where(key)} should be true or false, got {value!r}")
        return value

    def choice(self, key: str, default: str, options: Sequence[str]) -> str:
        value = self.raw.get(key, default)
        if value not in options:
            raise ConfigError(
                f"{self._where(key)} should be one of {', '.join(options)}, got {value!r}"
            )
        return value

    def numbers(self, key: str, default: Sequence[float], low: float | None = None) -> list[float]:
        value = self.raw.get(key, list(default))
        if (
            not isinstance(value, list)
            or not value
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        ):
            raise ConfigError(f"{self._where(key)} should be a non-empty list of numbers")
        if low is not None and any(v < low for v in value):
            raise ConfigError(f"{self._where(key)} values should be at least {low}, got {value}")
        return [float(v) for v in value]

    def integers(self, key: str, default: Sequence[int], low: int | None = None) -> list[int]:
        values = self.numbers(key, default, low)
        if any(v != int(v) for v in values):
            raise ConfigError(f"{self._where(key)} should be a list of integers")
        return [int(v) for v in values]

    def strings(self, key: str, default: Sequence[str], options: Sequence[str]) -> list[str]:
        value = self.raw.get(key, list(default))
        if not isinstance(value, list) or not value or any(v not in options for v in value):
            raise ConfigError(
                f"{self._where(key)} should be a non-empty list drawn from {', '.join(options)}, "
                f"got {value!r}"
            )
        return list(value)


def params_from_saved(cls: type[P], saved: Mapping[str, Any]) -> P:
    """A model's parameter dataclass from its ``params.json`` (JSON lists back to tuples;
    chosen hyperparameters and other recorded extras left out)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}
    )


@dataclass
class TrainResult:
    """A trained model with what the registry stores next to it."""

    name: str
    model: PipelineModel
    metrics: dict[str, Any]
    params: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, DataFrame] = field(default_factory=dict)  # extra tables (forecast...)


def input_schema(df: DataFrame, columns: Sequence[str]) -> dict[str, str]:
    """The columns a model reads, with their Spark SQL types (stored in params.json)."""
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    return {name: types[name] for name in columns}


def require_columns(df: DataFrame, required: Mapping[str, str], where: str) -> None:
    """Fail with a SchemaMismatchError listing every missing or differently typed column."""
    present = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    problems = []
    for name, dtype in required.items():
        if name not in present:
            problems.append(f"missing column '{name}' ({dtype})")
        elif present[name] != dtype:
            problems.append(f"column '{name}' is {present[name]}, the model expects {dtype}")
    if problems:
        raise SchemaMismatchError(f"{where}: " + "; ".join(problems))


def require_rows(count: int, minimum: int, what: str, model: str) -> None:
    if count < minimum:
        raise InsufficientDataError(
            f"{model}: too little data to train: {count:,} {what}, at least {minimum:,} needed"
        )
