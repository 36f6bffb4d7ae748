"""The streaming query: source -> text lines -> ``foreachBatch(BatchProcessor)`` -> PostgreSQL.

ONE Structured Streaming query reads the source as text (the file source by default: replayable,
so end-to-end exactly-once; or a socket, at-most-once, for demos). Each micro-batch is parsed,
split into valid, late and malformed lines, aggregated in one Spark job, and committed to
PostgreSQL in one transaction keyed by the batch id (stream/sinks.py). The checkpoint lives in
``<streaming>/checkpoints/<query_name>``; a restart with the same name resumes from it.

Entry points: ``run_stream`` (CLI, scripts/stream_pipeline.py, tests), ``latest_metrics`` (what
the CLI and demo print, with ``format_latest``), ``main`` (``python -m sparkmart.stream.query``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from sparkmart.config import STREAMING_CONFIG, ConfigError, Settings, load_settings
from sparkmart.io.postgres import PgSettings, PostgresError, connect
from sparkmart.monitor.spark_sessions import end_spark_session, record_spark_session
from sparkmart.spark_utils import get_logger, get_spark
from sparkmart.stream import tables
from sparkmart.stream.events import (
    LINE_COLUMN,
    RAW_COLUMN,
    REASON_COLUMN,
    parse_events,
    valid_events,
)
from sparkmart.stream.metrics import (
    LATE_COLUMN,
    batch_aggregates,
    floor_time,
    histogram_percentile,
    mark_late,
    max_event_time,
    next_watermark,
    split_aggregates,
)
from sparkmart.stream.sinks import (
    BatchDelta,
    StatefulAlerts,
    StreamStateError,
    archive_batch,
    commit_batch,
    is_committed,
    read_query_state,
    record_query_id,
)
from sparkmart.stream.tables import ViewParams, ensure_stream_tables

log = get_logger("stream")

SOURCES: tuple[str, ...] = ("files", "socket")
DEFAULT_QUERY_NAME = "orders"


class StreamError(RuntimeError):
    """The streaming query failed or cannot start; the message says why and where."""


# --- options ---------------------------------------------------------------------------------

_UNITS = {
    "ms": 0.001,
    "millisecond": 0.001,
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*$")


def parse_duration(value: Any, key: str) -> dt.timedelta:
    """A positive duration from plain seconds or a Spark interval string ("10 minutes")."""
    where = f"{STREAMING_CONFIG}: {key}"
    if isinstance(value, bool):
        raise ConfigError(f"{where} should be a duration, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        number, unit = match.groups()
        if unit not in _UNITS:
            raise ConfigError(
                f"{where}: unknown unit {unit!r} in {value!r} (use seconds, minutes, hours, days)"
            )
        seconds = float(number) * _UNITS[unit]
    else:
        raise ConfigError(
            f"{where} should be seconds or a duration such as '10 minutes', got {value!r}"
        )
    if seconds <= 0:
        raise ConfigError(f"{where} should be > 0, got {value!r}")
    return dt.timedelta(seconds=seconds)


@dataclass(frozen=True)
class StreamOptions:
    """``query:`` of streaming_config.yaml, validated, with CLI overrides applied."""

    source: str = "files"
    trigger_seconds: float = 5.0
    max_files_per_trigger: int = 0  # 0 = no limit
    watermark: dt.timedelta = dt.timedelta(minutes=10)
    window: dt.timedelta = dt.timedelta(minutes=1)
    sliding_window: dt.timedelta = dt.timedelta(minutes=10)
    sliding_step: dt.timedelta = dt.timedelta(minutes=1)
    top_n: int = 10
    active_customers_minutes: int = 15
    archive: bool = True
    socket_host: str = "127.0.0.1"
    socket_port: int = 9999
    streaming_dir: Path = Path("data/streaming")
    input_dir: Path | None = None  # default: <streaming_dir>/input

    KEYS = (
        "source",
        "trigger_seconds",
        "max_files_per_trigger",
        "watermark",
        "window",
        "sliding_window",
        "sliding_step",
        "top_n",
        "active_customers_minutes",
        "archive",
    )

    @classmethod
    def from_config(cls, query: Mapping[str, Any], **extra: Any) -> StreamOptions:
        """Validate a ``query:`` mapping; errors name ``streaming_config.yaml: query.<key>``."""
        if not isinstance(query, Mapping):
            raise ConfigError(f"{STREAMING_CONFIG}: query should be a mapping, got {query!r}")
        unknown = [key for key in query if key not in cls.KEYS and not str(key).startswith("_")]
        if unknown:
            raise ConfigError(
                f"{STREAMING_CONFIG}: unknown key 'query.{unknown[0]}' "
                f"(allowed: {', '.join(cls.KEYS)})"
            )
        values: dict[str, Any] = {}

        def get(key: str) -> Any:
            if key not in query:
                raise ConfigError(f"{STREAMING_CONFIG}: missing key 'query.{key}'")
            return query[key]

        def integer(key: str, minimum: int) -> int:
            value = get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(
                    f"{STREAMING_CONFIG}: query.{key} should be an integer >= {minimum}, "
                    f"got {value!r}"
                )
            return value

        source = get("source")
        if source not in SOURCES:
            raise ConfigError(
                f"{STREAMING_CONFIG}: query.source should be one of {', '.join(SOURCES)}, "
                f"got {source!r}"
            )
        values["source"] = source
        values["trigger_seconds"] = parse_duration(
            get("trigger_seconds"), "query.trigger_seconds"
        ).total_seconds()
        values["max_files_per_trigger"] = integer("max_files_per_trigger", 0)
        for key in ("watermark", "window", "sliding_window", "sliding_step"):
            values[key] = parse_duration(get(key), f"query.{key}")
        values["top_n"] = integer("top_n", 1)
        values["active_customers_minutes"] = integer("active_customers_minutes", 1)
        archive = get("archive")
        if not isinstance(archive, bool):
            raise ConfigError(f"{STREAMING_CONFIG}: query.archive should be true or false")
        values["archive"] = archive
        options = cls(**values, **extra)
        options.check()
        return options

    def check(self) -> None:
        """Relations between the values (after overrides too)."""
        where = f"{STREAMING_CONFIG}: query"
        if self.source not in SOURCES:
            raise ConfigError(f"{where}.source should be one of {', '.join(SOURCES)}")
        if self.trigger_seconds <= 0:
            raise ConfigError(f"{where}.trigger_seconds should be > 0")
        if self.window.total_seconds() < 1 or (86400 / self.window.total_seconds()) % 1:
            raise ConfigError(
                f"{where}.window should be whole seconds that divide a day, got {self.window}"
            )
        for key in ("sliding_window", "sliding_step"):
            if getattr(self, key) % self.window:
                raise ConfigError(
                    f"{where}.{key} should be a multiple of query.window ({self.window}), "
                    f"got {getattr(self, key)}"
                )
        if self.sliding_step > self.sliding_window:
            raise ConfigError(f"{where}.sliding_step should be <= query.sliding_window")
        if not 0 < self.socket_port < 65536:
            raise ConfigError(f"socket port should be 1-65535, got {self.socket_port}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> StreamOptions:
        """Options from the loaded settings; ``overrides`` (CLI flags) win when not None."""
        simulator = settings.streaming.get("simulator", {})
        options = cls.from_config(
            settings.streaming["query"],
            socket_host=str(simulator.get("socket_host", "127.0.0.1")),
            socket_port=int(simulator.get("socket_port", 9999)),
            streaming_dir=settings.path("streaming"),
        )
        changes = {key: value for key, value in overrides.items() if value is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown streaming option(s): {', '.join(unknown)}")
        for key in ("watermark", "window", "sliding_window", "sliding_step"):
            if key in changes and not isinstance(changes[key], dt.timedelta):
                changes[key] = parse_duration(changes[key], f"query.{key}")
        for key in ("streaming_dir", "input_dir"):
            if key in changes:
                changes[key] = Path(changes[key])
        options = dataclasses.replace(options, **changes)
        options.check()
        return options

    @property
    def input_path(self) -> Path:
        return self.input_dir or self.streaming_dir / "input"

    def checkpoint_dir(self, query_name: str) -> Path:
        return self.streaming_dir / "checkpoints" / query_name

    def output_dir(self, query_name: str) -> Path:
        return self.streaming_dir / "output" / query_name

    @property
    def view_params(self) -> ViewParams:
        return ViewParams(
            self.window,
            self.sliding_window,
            self.sliding_step,
            self.top_n,
            self.active_customers_minutes,
        )


# --- one micro-batch -------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchReport:
    """One line of progress."""

    batch_id: int
    committed: bool  # False: a replay of a batch PostgreSQL already had
    input_rows: int = 0
    valid_rows: int = 0
    late_rows: int = 0
    malformed_rows: int = 0
    alerts: int = 0
    seconds: float = 0.0
    watermark: dt.datetime | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    @property
    def rows_per_second(self) -> float:
        return self.input_rows / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:  # so that `progress=print` (or the CLI's echo) prints the line
        return format_progress(self)


def format_progress(report: BatchReport) -> str:
    if not report.committed:
        return f"batch {report.batch_id}: already committed (replay), nothing written"
    watermark = report.watermark.strftime("%Y-%m-%d %H:%M:%S") if report.watermark else "-"
    latency = (
        f", latency p50 {report.latency_p50_ms:,.0f} ms"
        if report.latency_p50_ms is not None
        else ""
    )
    return (
        f"batch {report.batch_id}: {report.input_rows:,} rows in {report.seconds:.2f} s "
        f"({report.rows_per_second:,.0f} rows/s), watermark {watermark}, "
        f"late {report.late_rows}, malformed {report.malformed_rows}, "
        f"alerts {report.alerts}{latency}"
    )


def print_progress(report: BatchReport) -> None:
    print(format_progress(report), flush=True)


class AlertHooks(StatefulAlerts, Protocol):
    """What a batch asks of the alert engine (stream/alerts.py: AlertEngine): per-event alerts,
    live fraud alerts (None when scoring is off) and the stateful rules inside the commit."""

    def event_alerts(self, events: DataFrame, batch_id: int) -> DataFrame: ...

    def fraud_alerts(self, events: DataFrame) -> DataFrame | None: ...


class BatchProcessor:
    """The ``foreachBatch`` function: compute a micro-batch's deltas, archive them, commit them.

    It runs on the driver, one batch at a time; its counters feed the run's summary and the
    idle / graceful-stop logic of ``run_stream``.
    """

    def __init__(
        self,
        pg: PgSettings,
        options: StreamOptions,
        query_name: str,
        *,
        alert_engine: AlertHooks | None = None,
        progress: Callable[[BatchReport], None] | None = print_progress,
    ) -> None:
        self.pg = pg
        self.options = options
        self.query_name = query_name
        self.alert_engine = alert_engine
        self.progress = progress
        self.reports: list[BatchReport] = []
        self.busy = threading.Event()
        self.last_input_at = time.monotonic()
        self.concurrent_jobs = True
        # Column expressions built once, reused by every batch (see stream/events.py).
        self._parse = parse_events()
        self._aggregate = batch_aggregates(options.window)
        self._rejected_columns = [
            F.col(LINE_COLUMN),
            F.col(RAW_COLUMN),
            F.col(REASON_COLUMN).alias("reason"),
            F.col("event_id"),
            F.col("event_time"),
        ]
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stream-batch")

    def close(self) -> None:
        """Release the job threads (after the query has stopped)."""
        self._pool.shutdown(wait=True)

    def _run_jobs(
        self, jobs: Mapping[str, Callable[[], Any]], spark: SparkSession
    ) -> dict[str, Any]:
        """Run each job (a Spark action) and return its result; concurrently when
        ``concurrent_jobs``. The threads inherit this thread's Spark job group and properties."""
        if not self.concurrent_jobs:
            return {name: job() for name, job in jobs.items()}
        futures = {
            name: self._pool.submit(inheritable_thread_target(spark)(job))
            for name, job in jobs.items()
        }
        return {name: future.result() for name, future in futures.items()}

    def __call__(self, lines: DataFrame, batch_id: int) -> None:
        self.busy.set()
        try:
            report = self.process(lines, batch_id)
        finally:
            self.busy.clear()
        self.reports.append(report)
        if report.input_rows:
            self.last_input_at = time.monotonic()
        if self.progress is not None:
            self.progress(report)

    def process(self, lines: DataFrame, batch_id: int) -> BatchReport:
        started = time.perf_counter()
        if is_committed(self.pg, self.query_name, batch_id):  # a replay: skip the work
            return BatchReport(batch_id, committed=False)
        state = read_query_state(self.pg, self.query_name)
        delta = self.compute(lines, batch_id, state.watermark)
        computed = time.perf_counter()
        if self.options.archive:
            archive_batch(self.options.output_dir(self.query_name), delta)
        archived = time.perf_counter()
        result = commit_batch(self.pg, delta, alert_hook=self.alert_engine, started=started)
        log.debug(
            "batch %d: compute %.3f s, archive %.3f s, commit %.3f s",
            batch_id,
            computed - started,
            archived - computed,
            time.perf_counter() - archived,
        )
        if not result.committed:
            return BatchReport(batch_id, committed=False)
        return BatchReport(
            batch_id,
            committed=True,
            input_rows=delta.input_rows,
            valid_rows=delta.valid_rows,
            late_rows=delta.late_rows,
            malformed_rows=delta.malformed_rows,
            alerts=result.event_alerts + result.stateful_alerts,
            seconds=time.perf_counter() - started,
            watermark=delta.new_watermark,
            latency_p50_ms=histogram_percentile(result.latency_histogram, 0.5),
            latency_p95_ms=histogram_percentile(result.latency_histogram, 0.95),
        )

    def compute(self, lines: DataFrame, batch_id: int, watermark: dt.datetime | None) -> BatchDelta:
        """The batch's deltas: the metric aggregates, the rejected lines, the alert engine's
        per-event alerts and (with a trained model) its live fraud alerts: up to four Spark jobs
        over the parsed lines (cached once).

        The jobs run concurrently: on a small batch each is mostly driver-side planning and
        scheduling, so overlapping them takes about a fifth off every batch; on a large one
        they share the cores and the cache (a block being computed is waited for, not redone).
        """
        parsed = lines.transform(self._parse).transform(mark_late(watermark)).persist()
        valid = valid_events(parsed)
        jobs: dict[str, Callable[[], Any]] = {
            "aggregates": lambda: (
                valid.where(~F.col(LATE_COLUMN)).transform(self._aggregate).toArrow()
            ),
            "rejected": lambda: (
                parsed.where(F.col(REASON_COLUMN).isNotNull() | F.col(LATE_COLUMN))
                .select(*self._rejected_columns)
                .toArrow()
            ),
        }
        if self.alert_engine is not None:
            engine = self.alert_engine
            jobs["alerts"] = lambda: engine.event_alerts(valid, batch_id).toArrow()
            fraud = engine.fraud_alerts(valid)
            if fraud is not None:
                jobs["fraud"] = fraud.toArrow
        try:
            results = self._run_jobs(jobs, lines.sparkSession)
        finally:
            parsed.unpersist()
        aggregates, rejected = results["aggregates"], results["rejected"]
        found = [results[name] for name in ("alerts", "fraud") if name in results]
        alerts = pa.concat_tables(found, promote_options="permissive") if found else None
        is_malformed = rejected["reason"].is_valid()
        metrics = split_aggregates(aggregates)
        latest = max_event_time(metrics)
        return BatchDelta(
            query_name=self.query_name,
            batch_id=batch_id,
            window=self.options.window,
            previous_watermark=watermark,
            new_watermark=next_watermark(watermark, latest, self.options.watermark),
            max_event_time=latest,
            metrics=metrics,
            late=rejected.filter(pc.invert(is_malformed)).select(["event_id", "event_time"]),
            malformed=rejected.filter(is_malformed).select([LINE_COLUMN, RAW_COLUMN, "reason"]),
            alerts=alerts,
        )


# --- the query -------------------------------------------------------------------------------


def read_lines(spark: SparkSession, options: StreamOptions) -> DataFrame:
    """The source as a streaming DataFrame of text lines (column ``value``)."""
    if options.source == "socket":
        return (
            spark.readStream.format("socket")
            .option("host", options.socket_host)
            .option("port", str(options.socket_port))
            .load()
        )
    options.input_path.mkdir(parents=True, exist_ok=True)
    reader = spark.readStream.format("text")
    if options.max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", str(options.max_files_per_trigger))
    return reader.load(str(options.input_path))


def _checkpoint_id(checkpoint: Path) -> str | None:
    metadata = checkpoint / "metadata"
    if not metadata.exists():
        return None
    try:
        return json.loads(metadata.read_text(encoding="utf-8").splitlines()[0]).get("id")
    except (OSError, ValueError, IndexError) as exc:
        raise StreamError(f"{metadata}: unreadable checkpoint metadata ({exc})") from exc


def check_checkpoint(checkpoint: Path, pg: PgSettings, query_name: str) -> None:
    """Refuse to start when the checkpoint and PostgreSQL's ledger disagree: a deleted
    checkpoint would restart batch ids at 0 (and the ledger would skip them as replays); a
    checkpoint whose committed batches PostgreSQL does not have would skip their events."""
    state = read_query_state(pg, query_name)
    checkpoint_id = _checkpoint_id(checkpoint)
    commits = checkpoint / "commits"
    spark_committed = commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir())
    fix = (
        f"use another query name, or start afresh: delete {checkpoint} and "
        f"truncate the streaming tables (stream.tables.truncate_stream_tables)"
    )
    if checkpoint_id is None and state.batches:
        raise StreamError(
            f"query '{query_name}': PostgreSQL has {state.batches} committed batches but there "
            f"is no checkpoint at {checkpoint}; {fix}"
        )
    if checkpoint_id and state.query_id and checkpoint_id != state.query_id:
        raise StreamError(
            f"query '{query_name}': the checkpoint at {checkpoint} (id {checkpoint_id}) is not "
            f"the one PostgreSQL's state belongs to (id {state.query_id}); {fix}"
        )
    if spark_committed and not state.batches:
        raise StreamError(
            f"query '{query_name}': the checkpoint at {checkpoint} has committed batches that "
            f"PostgreSQL does not know (were the streaming tables truncated?); {fix}"
        )


@dataclass
class StreamSummary:
    """What a run did, for the CLI and tests."""

    query_name: str
    batches: int = 0  # committed by this run
    replayed: int = 0  # batches found already committed
    input_rows: int = 0
    valid_rows: int = 0
    late_rows: int = 0
    malformed_rows: int = 0
    alerts_by_type: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    batch_seconds: list[float] = field(default_factory=list)
    stopped_because: str = ""
    latest: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        """The run in two lines, for the CLI."""
        alerts = ", ".join(f"{kind} {n}" for kind, n in self.alerts_by_type.items()) or "none"
        slowest = f", slowest batch {max(self.batch_seconds):.2f} s" if self.batch_seconds else ""
        return (
            f"query '{self.query_name}' stopped ({self.stopped_because}) after "
            f"{self.seconds:.0f} s: {self.batches} batches ({self.replayed} replayed){slowest}\n"
            f"{self.input_rows:,} lines: {self.valid_rows:,} on time, {self.late_rows:,} late, "
            f"{self.malformed_rows:,} malformed; alerts: {alerts}"
        )

    @classmethod
    def from_reports(cls, query_name: str, reports: Sequence[BatchReport]) -> StreamSummary:
        done = [r for r in reports if r.committed]
        return cls(
            query_name=query_name,
            batches=len(done),
            replayed=len(reports) - len(done),
            input_rows=sum(r.input_rows for r in done),
            valid_rows=sum(r.valid_rows for r in done),
            late_rows=sum(r.late_rows for r in done),
            malformed_rows=sum(r.malformed_rows for r in done),
            batch_seconds=[r.seconds for r in done],
        )


def _alert_engine(spark: SparkSession, settings: Settings, pg: PgSettings) -> Any:
    """The alert engine of stream/alerts.py (it needs the batch gold layer)."""
    from sparkmart.stream.alerts import AlertEngine

    try:
        return AlertEngine.create(spark, settings, pg)
    except FileNotFoundError as exc:
        raise StreamError(f"{exc}; or run without alerts (--no-alerts, alerts=False)") from exc


@contextmanager
def _graceful_signals(stop_requested: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM ask for a stop after the running batch (rather than interrupting a
    call into the JVM); a second Ctrl-C interrupts. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, frame: Any) -> None:
        stop_requested.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _stop_after_current_batch(query: Any, processor: BatchProcessor, wait_seconds: float) -> None:
    """Let a running batch finish (its commit too) before stopping the query."""
    deadline = time.monotonic() + wait_seconds
    while processor.busy.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    query.stop()


def run_stream(
    settings: Settings,
    *,
    source: str | None = None,
    trigger_seconds: float | None = None,
    until_idle: float | None = None,
    available_now: bool = False,
    max_batches: int | None = None,
    progress: Callable[[BatchReport], None] | None = print_progress,
    query_name: str = DEFAULT_QUERY_NAME,
    input_dir: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    max_files_per_trigger: int | None = None,
    pg: PgSettings | None = None,
    alerts: bool = True,
) -> StreamSummary:
    """Run the streaming query until its input is exhausted (``available_now``), it has been
    idle for ``until_idle`` seconds, ``max_batches`` batches have run, or Ctrl-C; then return
    what it did. Restarting with the same ``query_name`` resumes from the checkpoint.
    """
    options = StreamOptions.from_settings(
        settings,
        source=source,
        trigger_seconds=trigger_seconds,
        input_dir=input_dir,
        socket_host=host,
        socket_port=port,
        max_files_per_trigger=max_files_per_trigger,
    )
    if available_now and options.source == "socket":
        raise StreamError("the socket source cannot run with available_now (it has no end)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", query_name):
        raise StreamError(f"query name should be letters, digits, '_' or '-', got {query_name!r}")
    pg = pg or PgSettings.from_env()
    ensure_stream_tables(pg, options.view_params)
    checkpoint = options.checkpoint_dir(query_name)
    check_checkpoint(checkpoint, pg, query_name)

    spark = get_spark(settings.spark)
    # The run monitor's link to this query's Spark UI while it runs (dashboard /runs).
    app_id = record_spark_session(pg, spark, f"stream {query_name}")
    engine = _alert_engine(spark, settings, pg) if alerts else None
    listener = None
    if engine is not None:
        listener = engine.listener(
            trigger_seconds=None if available_now else options.trigger_seconds
        )
    if listener is not None:
        spark.streams.addListener(listener)
    processor = BatchProcessor(pg, options, query_name, alert_engine=engine, progress=progress)
    writer = (
        read_lines(spark, options)
        .writeStream.queryName(query_name)
        .option("checkpointLocation", str(checkpoint))
        .foreachBatch(processor)
    )
    writer = (
        writer.trigger(availableNow=True)
        if available_now
        else writer.trigger(processingTime=f"{options.trigger_seconds} seconds")
    )
    log.info(
        "starting query '%s': %s source %s, checkpoint %s",
        query_name,
        options.source,
        options.input_path
        if options.source == "files"
        else f"{options.socket_host}:{options.socket_port}",
        checkpoint,
    )
    started = time.monotonic()
    query = writer.start()
    stopped_because = "input exhausted"
    stop_requested = threading.Event()
    with _graceful_signals(stop_requested):
        try:
            record_query_id(pg, query_name, str(query.id))
            while query.isActive:
                query.awaitTermination(0.25)
                if stop_requested.is_set():
                    stopped_because = "interrupted"
                    log.info("stopping query '%s' after the current batch", query_name)
                    _stop_after_current_batch(query, processor, 300)
                elif max_batches is not None and len(processor.reports) >= max_batches:
                    stopped_because = f"{max_batches} batches"
                    _stop_after_current_batch(query, processor, 60)
                elif (
                    until_idle is not None
                    and not processor.busy.is_set()
                    and time.monotonic() - max(processor.last_input_at, started) >= until_idle
                ):
                    stopped_because = f"idle for {until_idle:g} s"
                    _stop_after_current_batch(query, processor, 60)
        except KeyboardInterrupt:  # a second Ctrl-C: stop now (the ledger keeps it exactly once)
            stopped_because = "interrupted twice"
        finally:
            if query.isActive:
                query.stop()
            if listener is not None:
                spark.streams.removeListener(listener)
            processor.close()
            if app_id is not None:
                end_spark_session(pg, app_id)
    error = query.exception()
    if error is not None:
        raise StreamError(f"streaming query '{query_name}' failed: {_first_line(error)}")

    summary = StreamSummary.from_reports(query_name, processor.reports)
    summary.seconds = time.monotonic() - started
    summary.stopped_because = stopped_because
    summary.alerts_by_type = alerts_by_type(pg, query_name)
    summary.latest = latest_metrics(pg, options)
    log.info(
        "query '%s' stopped (%s): %d batches, %d rows, %d late, %d malformed",
        query_name,
        stopped_because,
        summary.batches,
        summary.input_rows,
        summary.late_rows,
        summary.malformed_rows,
    )
    return summary


def _first_line(error: Any) -> str:
    text = str(getattr(error, "desc", None) or error).strip()
    for line in text.splitlines():
        if "StreamStateError" in line or "PostgresError" in line:
            return line.strip()
    return text.splitlines()[0] if text else repr(error)


# --- reading the metrics back ----------------------------------------------------------------


def _rows(cursor: Any, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor.execute(query, params)
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def alerts_by_type(pg: PgSettings, query_name: str) -> dict[str, int]:
    with connect(pg) as conn, conn.cursor() as cursor:
        rows = _rows(
            cursor,
            f"SELECT alert_type, count(*) AS n FROM {tables.ALERTS} WHERE query_name = %s "
            "GROUP BY alert_type ORDER BY alert_type",
            (query_name,),
        )
    return {row["alert_type"]: int(row["n"]) for row in rows}


def latest_metrics(
    pg: PgSettings,
    options: StreamOptions | Settings | None = None,
    *,
    minutes: int = 10,
    alerts: int = 10,
) -> dict[str, Any]:
    """The current metrics for printing: the last ``minutes`` minutes of sales and active
    customers, the top products of the sliding window ending with the latest minute, revenue per
    day with running totals, the latest ``alerts`` alerts and the last committed batch.

    ``options`` (or the settings they come from) give the sliding window; default: the config's
    defaults."""
    if isinstance(options, Settings):
        options = StreamOptions.from_settings(options)
    options = options or StreamOptions()
    with connect(pg) as conn, conn.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
        sales = _rows(
            cursor,
            f"SELECT window_start, window_end, orders, units, revenue, is_closed "
            f"FROM {tables.SALES_PER_MINUTE} ORDER BY window_start DESC LIMIT %s",
            (minutes,),
        )
        top: list[dict[str, Any]] = []
        if sales:
            latest_end = sales[0]["window_end"]
            window_end = floor_time(latest_end, options.sliding_step)
            if window_end < latest_end:
                window_end += options.sliding_step
            top = _rows(
                cursor,
                f"SELECT window_start, window_end, rank, product_id, orders, units, revenue, "
                f"is_closed FROM {tables.TOP_PRODUCTS} WHERE window_start = %s ORDER BY rank",
                (window_end - options.sliding_window,),
            )
        active = _rows(
            cursor,
            f"SELECT * FROM {tables.ACTIVE_CUSTOMERS} "
            f"WHERE window_start >= (SELECT max(window_start) FROM {tables.SALES_PER_MINUTE}) "
            "- %s ORDER BY window_start DESC",
            (options.window * (minutes - 1),),
        )
        revenue = _rows(cursor, f"SELECT * FROM {tables.REVENUE_RUNNING} ORDER BY day DESC LIMIT 7")
        latest_alerts = _rows(
            cursor,
            f"SELECT alert_type, severity, alert_key, message, event_time, detected_at "
            f"FROM {tables.ALERTS} ORDER BY detected_at DESC, alert_id LIMIT %s",
            (alerts,),
        )
        last_batch = _rows(
            cursor,
            f"SELECT query_name, batch_id, committed_at, input_rows, valid_rows, late_rows, "
            f"malformed_rows, watermark, duration_ms FROM {tables.BATCHES} "
            "ORDER BY committed_at DESC LIMIT 1",
        )
    return {
        "sales_per_minute": sales,
        "top_products": top,
        "active_customers": active,
        "revenue": revenue,
        "alerts": latest_alerts,
        "last_batch": last_batch[0] if last_batch else None,
    }


def format_latest(latest: Mapping[str, Any]) -> str:
    """``latest_metrics`` as a few lines of text for a terminal."""
    out = []
    for row in latest.get("sales_per_minute", [])[:5]:
        state = "closed" if row["is_closed"] else "open"
        out.append(
            f"  {row['window_start']:%H:%M} {row['orders']:>7,} orders {row['units']:>8,} units "
            f"{row['revenue']:>14,.2f} revenue ({state})"
        )
    if out:
        out.insert(0, "sales per minute (latest first):")
    top = latest.get("top_products", [])
    if top:
        first = top[0]
        out.append(
            f"top products {first['window_start']:%H:%M}-{first['window_end']:%H:%M}: "
            + ", ".join(f"#{r['rank']} {r['product_id']} ({r['revenue']:,.2f})" for r in top[:5])
        )
    active = latest.get("active_customers", [])
    if active:
        row = active[0]
        out.append(
            f"active customers {row['window_start']:%H:%M}: {row['active_customers']:,} in the "
            f"minute, {row['active_customers_recent']:,} in the last {row['recent_minutes']} min"
        )
    revenue = latest.get("revenue", [])
    if revenue:
        row = revenue[0]
        out.append(
            f"revenue {row['day']}: {row['revenue']:,.2f}; since the start "
            f"{row['running_revenue']:,.2f} ({row['running_orders']:,} orders)"
        )
    for alert in latest.get("alerts", [])[:5]:
        out.append(f"alert [{alert['severity']}] {alert['alert_type']}: {alert['message']}")
    return "\n".join(out) if out else "no metrics yet"


# --- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sparkmart.stream.query`` / ``spark-submit scripts/stream_pipeline.py``."""
    parser = argparse.ArgumentParser(
        prog="stream_pipeline", description="Run sparkmart's streaming query."
    )
    parser.add_argument("--source", choices=SOURCES)
    parser.add_argument("--input", help="directory of JSON-lines files (files source)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--trigger-seconds", type=float)
    parser.add_argument("--max-files-per-trigger", type=int)
    parser.add_argument("--until-idle", type=float, help="stop after this many idle seconds")
    parser.add_argument("--available-now", action="store_true", help="process what is there")
    parser.add_argument("--max-batches", type=int)
    parser.add_argument("--query-name", default=DEFAULT_QUERY_NAME)
    parser.add_argument("--no-alerts", action="store_true")
    parser.add_argument("--config-dir")
    parser.add_argument("--profile")
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config_dir, args.profile, data_dir=args.data_dir)
        summary = run_stream(
            settings,
            source=args.source,
            trigger_seconds=args.trigger_seconds,
            until_idle=args.until_idle,
            available_now=args.available_now,
            max_batches=args.max_batches,
            query_name=args.query_name,
            input_dir=args.input,
            host=args.host,
            port=args.port,
            max_files_per_trigger=args.max_files_per_trigger,
            alerts=not args.no_alerts,
        )
    except (ConfigError, StreamError, StreamStateError, PostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(summary.format(), flush=True)
    print(format_latest(summary.latest), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
