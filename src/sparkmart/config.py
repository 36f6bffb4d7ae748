"""Load and validate sparkmart's configuration files.

Configuration is data: four files in ``config/`` (``spark_config.json``, ``pipeline.yaml``,
``streaming_config.yaml``, ``ml_params.json``), each checked against a declared spec so that a typo
or a wrong type stops the run with a message naming the file, the key and what was expected,
instead of surfacing later as a confusing Spark error.

Precedence, lowest to highest: file < environment (``SPARKMART_*``) < CLI flags (``overrides``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

SPARK_CONFIG = "spark_config.json"
PIPELINE_CONFIG = "pipeline.yaml"
STREAMING_CONFIG = "streaming_config.yaml"
ML_CONFIG = "ml_params.json"

ENV_CONFIG_DIR = "SPARKMART_CONFIG_DIR"
ENV_PROFILE = "SPARKMART_PROFILE"
ENV_DATA_DIR = "SPARKMART_DATA_DIR"
ENV_SPARK_PREFIX = "SPARKMART_SPARK_"  # e.g. SPARKMART_SPARK_SHUFFLE_PARTITIONS=16


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or does not match its spec."""


# --- specs ---------------------------------------------------------------------------------
# A spec maps each allowed key to a type, a nested spec (dict), or a tuple (type, required).
# `ANY_KEYS` marks a mapping whose keys are free but whose values share one spec.

ANY_KEYS = "*"
Spec = Mapping[str, Any]

PROFILE_SPEC: Spec = {
    "master": (str, True),
    "app_name": (str, True),
    "driver_memory": (str, True),
    "executor_memory": (str, False),
    "executor_cores": (int, False),
    "shuffle_partitions": (int, True),
    "adaptive": (bool, True),
    "skew_join": (bool, True),
    "broadcast_threshold_mb": (int, True),
    "ui_enabled": (bool, True),
    "log_level": (str, True),
    "app_log_level": (str, False),  # sparkmart's own log lines (log_level is Spark's)
    "jars": (list, True),
    "conf": ({ANY_KEYS: str}, False),
}

SPARK_SPEC: Spec = {
    "default_profile": (str, True),
    "profiles": ({ANY_KEYS: PROFILE_SPEC}, True),
}

SCALE_SPEC: Spec = {"customers": (int, True), "products": (int, True), "orders": (int, True)}

# `sparkmart dashboard`: every key optional (defaults and ranges in sparkmart.dashboard.app).
DASHBOARD_SPEC: Spec = {
    "host": (str, False),
    "port": (int, False),
    "refresh_seconds": (float, False),
    "live_minutes": (int, False),
    "alerts": (int, False),
    "runs": (int, False),
    "spark_ui_timeout_seconds": (float, False),
}

PIPELINE_SPEC: Spec = {
    "paths": (
        {
            "data_dir": (str, True),
            "raw": (str, True),
            "bronze": (str, True),
            "silver": (str, True),
            "gold": (str, True),
            "quarantine": (str, True),
            "reports": (str, True),
            "snapshots": (str, True),
            "streaming": (str, True),
            "models": (str, True),
        },
        True,
    ),
    "generate": (
        {
            "seed": (int, True),
            "start_date": (str, True),
            "days": (int, True),
            "formats": (list, True),
            "scales": ({ANY_KEYS: SCALE_SPEC}, True),
            "postgres_rows": (int, True),
            "fraud_rate": (float, True),
            "heavy_customers": (int, True),
            "heavy_customer_order_share": (float, True),
            "defects": ({ANY_KEYS: float}, True),
        },
        True,
    ),
    "batch": (
        {
            "sources": ({ANY_KEYS: list}, True),
            "extra_columns": (str, True),
            "jdbc_partitions": (int, True),
            "snapshot_retention": (int, True),
            "quality": (dict, False),  # validated by batch.rules.QualityParams.from_config
        },
        True,
    ),
    "dashboard": (DASHBOARD_SPEC, False),
}

# Section contents are validated by their owners (SimulatorOptions, StreamOptions, AlertParams).
STREAMING_SPEC: Spec = {"simulator": (dict, True), "query": (dict, True), "alerts": (dict, True)}
ML_SPEC: Spec = {ANY_KEYS: object}


def _type_name(expected: Any) -> str:
    if isinstance(expected, Mapping):
        return "a mapping"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }.get(expected, getattr(expected, "__name__", "?"))


def _check_type(value: Any, expected: Any) -> bool:
    if expected is object:
        return True
    if isinstance(expected, Mapping) or expected is dict:
        return isinstance(value, Mapping)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def validate(data: Any, spec: Spec, source: str, prefix: str = "") -> None:
    """Raise ConfigError naming ``source`` and the dotted key when ``data`` breaks ``spec``."""
    where = prefix or "<top level>"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: {where} should be a mapping, got {type(data).__name__}")
    if ANY_KEYS in spec:
        expected = spec[ANY_KEYS]
        for key, value in data.items():
            _validate_value(value, expected, source, f"{prefix}{key}")
        return
    for key in data:
        if key.startswith("_"):  # comments such as "_comment" are allowed everywhere
            continue
        if key not in spec:
            allowed = ", ".join(sorted(spec))
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' (allowed here: {allowed})")
    for key, rule in spec.items():
        expected, required = rule if isinstance(rule, tuple) else (rule, True)
        if key not in data:
            if required:
                raise ConfigError(
                    f"{source}: missing key '{prefix}{key}' (expected {_type_name(expected)})"
                )
            continue
        _validate_value(data[key], expected, source, f"{prefix}{key}")


def _validate_value(value: Any, expected: Any, source: str, key: str) -> None:
    if not _check_type(value, expected):
        raise ConfigError(
            f"{source}: key '{key}' should be {_type_name(expected)}, "
            f"got {type(value).__name__} {value!r}"
        )
    if isinstance(expected, Mapping):
        validate(value, expected, source, f"{key}.")


# --- loading -------------------------------------------------------------------------------


def default_config_dir() -> Path:
    """The ``config/`` directory: $SPARKMART_CONFIG_DIR, else ./config, else the repo's."""
    if env := os.environ.get(ENV_CONFIG_DIR):
        return Path(env)
    cwd_config = Path.cwd() / "config"
    if (cwd_config / SPARK_CONFIG).exists():
        return cwd_config
    return Path(__file__).resolve().parents[2] / "config"


def load_file(path: Path) -> dict[str, Any]:
    """Read one JSON or YAML file, turning I/O and syntax errors into ConfigError."""
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level should be a mapping, got {type(data).__name__}")
    return data


def _coerce(raw: str, like: Any, source: str) -> Any:
    """Parse an environment string into the type of the value it overrides."""
    try:
        if isinstance(like, bool):
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if isinstance(like, int):
            return int(raw)
        if isinstance(like, float):
            return float(raw)
        if isinstance(like, list):
            return [item.strip() for item in raw.split(",") if item.strip()]
    except ValueError as exc:
        raise ConfigError(f"{source}: cannot read {raw!r} as {type(like).__name__}") from exc
    return raw


@dataclass(frozen=True)
class SparkProfile:
    """One resolved profile of ``spark_config.json``."""

    name: str
    master: str
    app_name: str
    driver_memory: str
    shuffle_partitions: int
    adaptive: bool
    skew_join: bool
    broadcast_threshold_mb: int
    ui_enabled: bool
    log_level: str
    jars: list[str]
    executor_memory: str | None = None
    executor_cores: int | None = None
    app_log_level: str = "INFO"
    conf: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Everything sparkmart reads from ``config/``, validated and with overrides applied."""

    config_dir: Path
    spark: SparkProfile
    pipeline: dict[str, Any]
    streaming: dict[str, Any]
    ml: dict[str, Any]

    @property
    def data_dir(self) -> Path:
        return Path(self.pipeline["paths"]["data_dir"])

    @property
    def dashboard(self) -> dict[str, Any]:
        """``dashboard:`` of pipeline.yaml (may be empty: the dashboard has defaults)."""
        return dict(self.pipeline.get("dashboard") or {})

    def path(self, layer: str) -> Path:
        """Location of a named layer (``raw``, ``silver``, ``models``...) under the data dir."""
        paths = self.pipeline["paths"]
        if layer not in paths or layer == "data_dir":
            raise ConfigError(f"{PIPELINE_CONFIG}: no path named '{layer}' under 'paths'")
        return self.data_dir / paths[layer]


def load_spark_profile(
    config_dir: Path, profile: str | None = None, overrides: Mapping[str, Any] | None = None
) -> SparkProfile:
    """Resolve one Spark profile: file, then SPARKMART_SPARK_* variables, then ``overrides``."""
    source = str(config_dir / SPARK_CONFIG)
    raw = load_file(config_dir / SPARK_CONFIG)
    validate(raw, SPARK_SPEC, source)
    name = profile or os.environ.get(ENV_PROFILE) or raw["default_profile"]
    profiles = raw["profiles"]
    if name not in profiles:
        raise ConfigError(
            f"{source}: unknown profile '{name}' (defined: {', '.join(sorted(profiles))})"
        )
    values: dict[str, Any] = dict(profiles[name])
    for key, spec in PROFILE_SPEC.items():
        env_name = ENV_SPARK_PREFIX + key.upper()
        if key != "conf" and env_name in os.environ:
            like = values.get(key, "" if spec[0] is str else spec[0]())
            values[key] = _coerce(os.environ[env_name], like, f"environment {env_name}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in PROFILE_SPEC:
            raise ConfigError(f"override: unknown Spark setting '{key}'")
        values[key] = value
    validate(values, PROFILE_SPEC, f"{source} (profile '{name}' with overrides)")
    return SparkProfile(name=name, **values)


DATA_DIR_PLACEHOLDER = "{data_dir}"


def with_data_dir(profile: SparkProfile, data_dir: str) -> SparkProfile:
    """``{data_dir}`` in a Spark setting (e.g. the event log directory) becomes the run's data
    directory, so ``--data-dir`` moves event logs along with every other output."""
    conf = {
        key: value.replace(DATA_DIR_PLACEHOLDER, data_dir) if isinstance(value, str) else value
        for key, value in profile.conf.items()
    }
    return replace(profile, conf=conf) if conf != profile.conf else profile


def load_settings(
    config_dir: str | Path | None = None,
    profile: str | None = None,
    spark_overrides: Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
) -> Settings:
    """Load and validate all configuration files in ``config_dir``."""
    directory = Path(config_dir) if config_dir else default_config_dir()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: configuration directory not found")
    spark = load_spark_profile(directory, profile, spark_overrides)

    pipeline = load_file(directory / PIPELINE_CONFIG)
    validate(pipeline, PIPELINE_SPEC, str(directory / PIPELINE_CONFIG))
    data_root = data_dir or os.environ.get(ENV_DATA_DIR)
    if data_root:
        pipeline["paths"]["data_dir"] = str(data_root)
    spark = with_data_dir(spark, pipeline["paths"]["data_dir"])

    streaming = load_file(directory / STREAMING_CONFIG)
    validate(streaming, STREAMING_SPEC, str(directory / STREAMING_CONFIG))
    ml = load_file(directory / ML_CONFIG)
    validate(ml, ML_SPEC, str(directory / ML_CONFIG))
    return Settings(directory, spark, pipeline, streaming, ml)
