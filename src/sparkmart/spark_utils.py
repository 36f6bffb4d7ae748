"""The one SparkSession factory, the project logger, and a timing helper.

Every entry point (CLI, scripts for spark-submit, tests, notebooks) builds its session here, so a
setting such as the time zone or the JDBC jar is decided once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from sparkmart.config import SparkProfile

LOGGER_NAME = "sparkmart"

# The run every log line belongs to. A process runs one pipeline run at a time, and Spark calls
# back into Python from its own threads (foreachBatch), so a process-wide stack serves better
# here than a context variable, which new threads would not inherit.
_run_ids: list[str] = []
_run_ids_lock = threading.Lock()


def current_run_id() -> str | None:
    """The id of the run in progress in this process (innermost ``run_context``), or None."""
    with _run_ids_lock:
        return _run_ids[-1] if _run_ids else None


@contextmanager
def run_context(run_id: str) -> Iterator[str]:
    """Stamp every sparkmart log line written inside the block with ``run_id``."""
    with _run_ids_lock:
        _run_ids.append(run_id)
    try:
        yield run_id
    finally:
        with _run_ids_lock:
            _run_ids.remove(run_id)


class RunIdFilter(logging.Filter):
    """Adds ``run_id`` (full) and ``run_tag`` (`` [run 1a2b3c4d]`` or empty) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = current_run_id()
        record.run_id = run_id
        record.run_tag = f" [run {run_id[:8]}]" if run_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to grep, easy to load into Spark or pandas."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


TEXT_LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(run_tag)s: %(message)s"


def log_formatter(json_lines: bool) -> logging.Formatter:
    """The project's log line: JSON objects, or text with the run id after the logger name."""
    return JsonFormatter() if json_lines else logging.Formatter(TEXT_LOG_FORMAT, "%H:%M:%S")


def configure_logging(level: str | None = None) -> logging.Logger:
    """Install the project's stderr handler once (JSON lines when SPARKMART_LOG_JSON=1) and set
    the level: ``level`` if given, else $SPARKMART_LOG_LEVEL, else INFO."""
    root = logging.getLogger(LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(log_formatter(os.environ.get("SPARKMART_LOG_JSON") == "1"))
        handler.addFilter(RunIdFilter())
        root.addHandler(handler)
        root.propagate = False
        level = level or os.environ.get("SPARKMART_LOG_LEVEL", "INFO")
    if level:
        try:
            root.setLevel(level.upper())
        except ValueError as exc:
            raise ValueError(
                f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            ) from exc
    return root


def get_logger(name: str = LOGGER_NAME, level: str | None = None) -> logging.Logger:
    """The project's logger: plain text on a terminal, JSON lines when SPARKMART_LOG_JSON=1."""
    logger = logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")
    configure_logging(level)
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
    if conf.get(EVENT_LOG_ENABLED, "false").lower() == "true":
        conf[EVENT_LOG_DIR] = event_log_uri(conf.get(EVENT_LOG_DIR, DEFAULT_EVENT_LOG_DIR))
    return conf


EVENT_LOG_ENABLED = "spark.eventLog.enabled"
EVENT_LOG_DIR = "spark.eventLog.dir"
DEFAULT_EVENT_LOG_DIR = "data/spark-events"


def event_log_uri(location: str) -> str:
    """Spark's event log directory as a URI; a plain relative path is taken from the working
    directory (like the data dir in config/pipeline.yaml), so the history server finds it."""
    if "://" in location or location.startswith("file:"):
        return location
    return Path(location).resolve().as_uri()


def local_event_log_dir(conf: dict[str, str]) -> Path | None:
    """The local directory event logs go to, when they are on and go to the local disk."""
    if conf.get(EVENT_LOG_ENABLED, "false").lower() != "true":
        return None
    uri = conf.get(EVENT_LOG_DIR, "")
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:"))
    return None


def missing_jars(profile: SparkProfile) -> list[str]:
    return [jar for jar in profile.jars if not Path(jar).exists()]


def submitted_conf() -> dict[str, str]:
    """The settings spark-submit gave this driver (``--master``, ``--conf``...), else nothing.

    spark-submit starts the driver JVM before Python runs and says where it is in
    PYSPARK_GATEWAY_PORT. Its flags are the user's choice for this one run, so they win over
    the profile: ``spark-submit --master yarn`` must not quietly run on the profile's local[2].
    Outside spark-submit no JVM runs yet, and starting one here would lose the driver memory.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connect to spark-submit's JVM; reads its properties
    return dict(SparkConf().getAll())


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
    configure_logging(os.environ.get("SPARKMART_LOG_LEVEL") or profile.app_log_level)
    conf = {**spark_conf_for(profile), **submitted_conf()}
    event_dir = local_event_log_dir(conf)
    if event_dir is not None:  # Spark refuses to start when the event log directory is missing
        event_dir.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder
    for key, value in conf.items():
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
