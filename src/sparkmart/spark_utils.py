"""The one SparkSession factory, the project logger, and a timing helper.

Every entry point (CLI, scripts for spark-submit, tests, notebooks) builds its session here, so a
setting such as the time zone or the JDBC jar is decided once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from sparkmart.config import SparkProfile

LOGGER_NAME = "sparkmart"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to grep, easy to load into Spark or pandas."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def get_logger(name: str = LOGGER_NAME, level: str | None = None) -> logging.Logger:
    """The project's logger: plain text on a terminal, JSON lines when SPARKMART_LOG_JSON=1."""
    logger = logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")
    root = logging.getLogger(LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("SPARKMART_LOG_JSON") == "1":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
            )
        root.addHandler(handler)
        root.setLevel(os.environ.get("SPARKMART_LOG_LEVEL", "INFO").upper())
        root.propagate = False
    if level:
        root.setLevel(level.upper())
    return logger


LOG4J_CONFIG = "log4j2.properties"


def spark_conf_for(profile: SparkProfile) -> dict[str, str]:
    """The Spark settings a profile stands for (pure: easy to inspect and test)."""
    conf = {
        "spark.master": profile.master,
        "spark.app.name": profile.app_name,
        "spark.driver.memory": profile.driver_memory,
        "spark.sql.shuffle.partitions": str(profile.shuffle_partitions),
        "spark.sql.adaptive.enabled": str(profile.adaptive).lower(),
        "spark.sql.adaptive.coalescePartitions.enabled": str(profile.adaptive).lower(),
        "spark.sql.adaptive.skewJoin.enabled": str(profile.skew_join).lower(),
        "spark.sql.autoBroadcastJoinThreshold": str(profile.broadcast_threshold_mb * 1024 * 1024),
        "spark.ui.enabled": str(profile.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Python workers must import this project's packages (data sources, UDFs).
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    if profile.executor_memory:
        conf["spark.executor.memory"] = profile.executor_memory
    if profile.executor_cores:
        conf["spark.executor.cores"] = str(profile.executor_cores)
    jars = [jar for jar in profile.jars if Path(jar).exists()]
    if jars:
        conf["spark.jars"] = ",".join(jars)
        conf["spark.driver.extraClassPath"] = ":".join(jars)
    log4j = Path(__file__).resolve().parents[2] / "config" / LOG4J_CONFIG
    if log4j.exists():  # a source checkout; an installed wheel keeps Spark's default logging
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{log4j}"
    conf.update(profile.conf)
    return conf


def missing_jars(profile: SparkProfile) -> list[str]:
    return [jar for jar in profile.jars if not Path(jar).exists()]


def get_spark(profile: SparkProfile) -> SparkSession:
    """Build (or return the running) SparkSession for ``profile``."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # Bind to loopback unless told otherwise: a laptop's hostname often resolves to 127.0.0.1
    # anyway, and Spark then warns on every start. A cluster profile sets its own address.
    if profile.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    log = get_logger("spark")
    for jar in missing_jars(profile):
        log.warning("jar %s not found: PostgreSQL over JDBC will not work (run `make setup`)", jar)
    builder = SparkSession.builder
    for key, value in spark_conf_for(profile).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(profile.log_level)
    _register_python_data_sources(spark)
    return spark


def _register_python_data_sources(spark: SparkSession) -> None:
    """Register the project's Python data sources (Avro) on a new session."""
    from sparkmart.io.avro import register_avro

    register_avro(spark)


@dataclass
class StepTiming:
    """Wall time and row counts of one named step."""

    name: str
    seconds: float = 0.0
    rows_in: int | None = None
    rows_out: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float | None:
        rows = self.rows_out if self.rows_out is not None else self.rows_in
        if rows is None or self.seconds <= 0:
            return None
        return rows / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": self.rows_per_second}


@contextmanager
def timed(name: str, logger: logging.Logger | None = None) -> Iterator[StepTiming]:
    """Time a block; the caller fills in ``rows_in``/``rows_out`` on the yielded record."""
    timing = StepTiming(name)
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing.seconds = time.perf_counter() - start
        if logger is not None:
            rate = timing.rows_per_second
            logger.info(
                "%s: %.2f s%s",
                name,
                timing.seconds,
                f", {timing.rows_out or timing.rows_in:,} rows ({rate:,.0f} rows/s)"
                if rate
                else "",
            )
