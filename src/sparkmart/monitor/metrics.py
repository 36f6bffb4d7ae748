"""What each pipeline step cost, measured by Spark itself.

A step is a block of driver code (``with monitor.step("quality (silver)") as step:``). For its
duration the block's thread carries a Spark *job tag* (``SparkContext.addJobTag``); Spark copies
the tag onto every job started from that thread, including the jobs that adaptive query
execution and broadcast exchanges start from their own threads. When the block ends, the
listener bus is drained (so Spark's status store has seen every job and stage end) and the
tagged jobs and their stages are read from the UI's REST API
(``{sc.uiWebUrl}/api/v1/applications/<app-id>/jobs`` and ``/stages``). Nothing is estimated:
every number below is a sum of Spark's own task metrics over the step's stage attempts.

Job tags rather than job groups: a tag adds to whatever group the caller or Spark set (a
streaming query sets its own job group on every micro-batch), and nested steps simply both
count the inner step's jobs.

The UI must be on (``ui_enabled`` in config/spark_config.json; the test profile uses a random
port). Without it a step still gets its wall time and ``metrics.source`` says why the rest is
missing; observability never fails a run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from sparkmart.spark_utils import StepTiming, get_logger

STEP_TAG_PREFIX = "sparkmart"
JOB_DESCRIPTION = "spark.job.description"  # the local property setJobDescription sets
REST_TIMEOUT_SECONDS = 30.0
LISTENER_DRAIN_MILLIS = 30_000
DEFAULT_PROGRESS_SECONDS = 15.0

_log = get_logger("monitor")


class MetricsUnavailable(RuntimeError):
    """Spark's REST API cannot be read (UI disabled, or it did not answer); says which."""


# --- what is collected -----------------------------------------------------------------------


@dataclass
class SparkStepMetrics:
    """Spark's own numbers for one step: sums over its jobs and stage attempts.

    Rows and bytes are task metrics: ``input_*`` counts what tasks read from data sources
    (a file read twice counts twice), ``output_*`` what they wrote to files, ``shuffle_*``
    what crossed a shuffle. Seconds are wall time per job/stage (summed) or task time summed
    over tasks (executor run, CPU and GC time), so with 2 cores those can exceed the step's
    wall time.
    """

    source: str = "rest"  # "rest", or "unavailable: <why>"
    jobs: int = 0
    failed_jobs: int = 0
    stages: int = 0  # distinct stages that ran (at least one attempt not skipped)
    skipped_stages: int = 0  # stages whose shuffle output was reused from an earlier job
    failed_stage_attempts: int = 0
    tasks: int = 0
    failed_tasks: int = 0
    killed_tasks: int = 0
    job_seconds: float = 0.0
    stage_seconds: float = 0.0
    executor_run_seconds: float = 0.0
    executor_cpu_seconds: float = 0.0
    gc_seconds: float = 0.0
    input_rows: int = 0
    input_bytes: int = 0
    output_rows: int = 0
    output_bytes: int = 0
    shuffle_read_rows: int = 0
    shuffle_read_bytes: int = 0
    shuffle_write_rows: int = 0
    shuffle_write_bytes: int = 0
    memory_spilled_bytes: int = 0
    disk_spilled_bytes: int = 0
    job_ids: list[int] = field(default_factory=list)
    stage_ids: list[int] = field(default_factory=list)
    # one entry per stage attempt that ran: the per-stage breakdown (JSON file, jsonb column)
    stage_breakdown: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def unavailable(cls, reason: str) -> SparkStepMetrics:
        return cls(source=f"unavailable: {reason}")

    @property
    def available(self) -> bool:
        return self.source == "rest"


# Numeric fields, in order: the columns of audit.step_metrics and the JSON file's keys.
METRIC_FIELDS: tuple[str, ...] = tuple(
    name
    for name, kind in SparkStepMetrics.__annotations__.items()
    if kind in ("int", "float") and name != "source"
)


def parse_spark_time(value: str | None) -> dt.datetime | None:
    """The REST API's timestamps (``2026-01-31T12:00:00.123GMT``) as aware UTC datetimes."""
    if not value:
        return None
    return dt.datetime.strptime(value.removesuffix("GMT"), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=dt.timezone.utc
    )


def _seconds_between(start: str | None, end: str | None) -> float:
    started, ended = parse_spark_time(start), parse_spark_time(end)
    if started is None or ended is None:
        return 0.0
    return max(0.0, (ended - started).total_seconds())


def summarise(jobs: Sequence[dict[str, Any]], stages: Sequence[dict[str, Any]]) -> SparkStepMetrics:
    """Add up one step's jobs and the attempts of their stages (REST API JSON objects).

    ``stages`` may hold other stages too: only those of ``jobs`` count.
    """
    metrics = SparkStepMetrics()
    metrics.job_ids = sorted(job["jobId"] for job in jobs)
    wanted = {stage_id for job in jobs for stage_id in job.get("stageIds", [])}
    metrics.jobs = len(jobs)
    metrics.failed_jobs = sum(job.get("status") == "FAILED" for job in jobs)
    metrics.job_seconds = sum(
        _seconds_between(job.get("submissionTime"), job.get("completionTime")) for job in jobs
    )
    ran: set[int] = set()
    skipped: set[int] = set()
    for attempt in sorted(stages, key=lambda s: (s["stageId"], s.get("attemptId", 0))):
        stage_id = attempt["stageId"]
        if stage_id not in wanted:
            continue
        status = attempt.get("status")
        if status == "SKIPPED":
            skipped.add(stage_id)
            continue
        ran.add(stage_id)
        metrics.failed_stage_attempts += status == "FAILED"
        seconds = _seconds_between(attempt.get("submissionTime"), attempt.get("completionTime"))
        metrics.stage_seconds += seconds
        metrics.tasks += attempt.get("numCompleteTasks", 0) + attempt.get("numFailedTasks", 0)
        metrics.failed_tasks += attempt.get("numFailedTasks", 0)
        metrics.killed_tasks += attempt.get("numKilledTasks", 0)
        metrics.executor_run_seconds += attempt.get("executorRunTime", 0) / 1e3
        metrics.executor_cpu_seconds += attempt.get("executorCpuTime", 0) / 1e9
        metrics.gc_seconds += attempt.get("jvmGcTime", 0) / 1e3
        metrics.input_rows += attempt.get("inputRecords", 0)
        metrics.input_bytes += attempt.get("inputBytes", 0)
        metrics.output_rows += attempt.get("outputRecords", 0)
        metrics.output_bytes += attempt.get("outputBytes", 0)
        metrics.shuffle_read_rows += attempt.get("shuffleReadRecords", 0)
        metrics.shuffle_read_bytes += attempt.get("shuffleReadBytes", 0)
        metrics.shuffle_write_rows += attempt.get("shuffleWriteRecords", 0)
        metrics.shuffle_write_bytes += attempt.get("shuffleWriteBytes", 0)
        metrics.memory_spilled_bytes += attempt.get("memoryBytesSpilled", 0)
        metrics.disk_spilled_bytes += attempt.get("diskBytesSpilled", 0)
        metrics.stage_breakdown.append(
            {
                "stage_id": stage_id,
                "attempt": attempt.get("attemptId", 0),
                "name": attempt.get("name", ""),
                "status": status,
                "seconds": round(seconds, 3),
                "tasks": attempt.get("numTasks", 0),
                "failed_tasks": attempt.get("numFailedTasks", 0),
                "input_rows": attempt.get("inputRecords", 0),
                "output_rows": attempt.get("outputRecords", 0),
                "shuffle_read_bytes": attempt.get("shuffleReadBytes", 0),
                "shuffle_write_bytes": attempt.get("shuffleWriteBytes", 0),
                "executor_run_seconds": attempt.get("executorRunTime", 0) / 1e3,
            }
        )
    metrics.stages = len(ran)
    metrics.skipped_stages = len(skipped - ran)
    metrics.stage_ids = sorted(ran)
    return metrics


@dataclass
class StepMetrics(StepTiming):
    """One step of a run: wall time and the rows the pipeline counted (``StepTiming``), plus
    what Spark measured (``spark``)."""

    index: int = 0
    status: str = "running"  # running, succeeded, failed
    started_at: dt.datetime | None = None  # UTC
    finished_at: dt.datetime | None = None
    job_tag: str = ""
    spark: SparkStepMetrics | None = None

    @property
    def rows_per_second(self) -> float | None:
        """Rows the step produced (or read, or Spark wrote) per second of wall time."""
        rows = next(
            (
                value
                for value in (
                    self.rows_out,
                    self.rows_in,
                    self.spark.output_rows if self.spark else None,
                    self.spark.input_rows if self.spark else None,
                )
                if value
            ),
            None,
        )
        if rows is None or self.seconds <= 0:
            return None
        return rows / self.seconds

    def as_dict(self) -> dict[str, Any]:
        """The step as plain JSON-ready values: timing, rows and ``metrics`` (Spark's)."""
        return {
            "name": self.name,
            "index": self.index,
            "status": self.status,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": round(self.seconds, 3),
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_per_second": self.rows_per_second,
            "extra": self.extra,
            "job_tag": self.job_tag,
            "metrics": asdict(self.spark) if self.spark else None,
        }


# --- reading Spark ---------------------------------------------------------------------------


class SparkRestApi:
    """The driver UI's REST API of one application (``/api/v1/applications/<app-id>/...``)."""

    def __init__(self, ui_url: str, app_id: str, timeout: float = REST_TIMEOUT_SECONDS) -> None:
        self.base = f"{ui_url.rstrip('/')}/api/v1/applications/{app_id}"
        self.timeout = timeout

    @classmethod
    def of(cls, spark: SparkSession) -> SparkRestApi:
        sc = spark.sparkContext
        if sc.uiWebUrl is None:
            raise MetricsUnavailable(
                "the Spark UI is off (spark.ui.enabled=false): turn on ui_enabled in the "
                "profile of config/spark_config.json to collect step metrics"
            )
        return cls(sc.uiWebUrl, sc.applicationId)

    def get(self, path: str) -> Any:
        url = f"{self.base}/{path}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                return json.load(response)
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
            raise MetricsUnavailable(f"GET {url} failed: {exc}") from exc

    def jobs(self) -> list[dict[str, Any]]:
        return self.get("jobs")

    def stages(self) -> list[dict[str, Any]]:
        """Every retained stage attempt (the store keeps ``spark.ui.retainedStages``)."""
        return self.get("stages")


def drain_listener_bus(spark: SparkSession, timeout_millis: int = LISTENER_DRAIN_MILLIS) -> bool:
    """Wait until Spark's listeners have processed every event posted so far.

    Job and stage ends reach the status store asynchronously; without this the last job of a
    step can be missing from the REST API right after the action returned. Uses the driver's
    ``LiveListenerBus.waitUntilEmpty`` (Spark-internal, reached through Py4J); False when it
    could not be used, in which case ``collect_tagged`` gives the listeners a moment instead.
    """
    try:
        spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(timeout_millis)  # type: ignore[union-attr]
        return True
    except Exception as exc:  # Py4JError, or a TimeoutException on a flooded bus
        _log.debug("listener bus not drained: %s", exc)
        return False


def collect_tagged(
    spark: SparkSession, rest: SparkRestApi, tag: str, settle_seconds: float = 5.0
) -> SparkStepMetrics:
    """The metrics of every job that carries ``tag``, once they have all finished."""
    drained = drain_listener_bus(spark)
    if not drained:
        time.sleep(0.5)
    deadline = time.monotonic() + settle_seconds
    while True:
        jobs = [job for job in rest.jobs() if tag in job.get("jobTags", [])]
        running = [job for job in jobs if job.get("status") in ("RUNNING", "UNKNOWN")]
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.1 if drained else 0.25)
    if running:
        _log.warning("step %s: %d job(s) still running when metrics were read", tag, len(running))
    if not jobs:
        return SparkStepMetrics()
    stages = rest.stages()
    wanted = {stage_id for job in jobs for stage_id in job.get("stageIds", [])}
    evicted = wanted - {stage["stageId"] for stage in stages}
    if evicted:
        _log.warning(
            "step %s: %d stage(s) no longer in Spark's status store (raise "
            "spark.ui.retainedStages); their metrics are missing",
            tag,
            len(evicted),
        )
    return summarise(jobs, stages)


# --- steps of a run --------------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "step"


class RunMonitor:
    """Collects ``StepMetrics`` for the steps of one run, logs progress while they run, and
    hands each finished step to ``on_step`` (e.g. to store it in ``audit.step_metrics``)."""

    def __init__(
        self,
        spark: SparkSession,
        run_id: str,
        pipeline: str,
        *,
        logger: logging.Logger | None = None,
        progress_seconds: float = DEFAULT_PROGRESS_SECONDS,
        on_step: Callable[[StepMetrics], None] | None = None,
    ) -> None:
        self.spark = spark
        self.run_id = run_id
        self.pipeline = pipeline
        self.log = logger or _log
        self.progress_seconds = progress_seconds
        self.on_step = on_step
        self.steps: list[StepMetrics] = []
        self.app_id = spark.sparkContext.applicationId
        self.ui_url = spark.sparkContext.uiWebUrl
        try:
            self.rest: SparkRestApi | None = SparkRestApi.of(spark)
            self._unavailable = ""
            # The REST API's first answer takes seconds (it starts up lazily): pay it now.
            threading.Thread(target=self._warm_up, name="spark-rest-warm-up", daemon=True).start()
        except MetricsUnavailable as exc:
            self.rest = None
            self._unavailable = str(exc)
            self.log.warning("step metrics: %s", exc)

    def _warm_up(self) -> None:
        with contextlib.suppress(MetricsUnavailable):
            self.rest.get("environment")  # type: ignore[union-attr]

    @contextmanager
    def step(self, name: str) -> Iterator[StepMetrics]:
        """Measure the block as step ``name``; the caller may set ``rows_in``/``rows_out``
        and ``extra`` on the yielded record. Metrics are filled in when the block ends, also
        when it raises (status ``failed``)."""
        sc = self.spark.sparkContext
        index = len(self.steps)
        record = StepMetrics(
            name,
            index=index,
            started_at=dt.datetime.now(dt.timezone.utc),
            job_tag=f"{STEP_TAG_PREFIX}-{self.run_id[:12]}-{index}-{_slug(name)}",
        )
        self.steps.append(record)
        sc.addJobTag(record.job_tag)
        # The Spark UI's Jobs and SQL pages show this instead of a code location.
        description = sc.getLocalProperty(JOB_DESCRIPTION)
        sc.setJobDescription(f"{self.pipeline}: {name}")
        progress = _ProgressReporter(self.spark, record, self.log, self.progress_seconds)
        started = time.perf_counter()
        progress.start()
        try:
            yield record
            record.status = "succeeded"
        except BaseException:
            record.status = "failed"
            raise
        finally:
            record.seconds = time.perf_counter() - started
            progress.stop()
            sc.removeJobTag(record.job_tag)
            sc.setLocalProperty(JOB_DESCRIPTION, description)  # type: ignore[arg-type]
            record.finished_at = dt.datetime.now(dt.timezone.utc)
            collecting = time.perf_counter()
            record.spark = self._collect(record.job_tag)
            self.log.debug("%s: metrics read in %.2f s", name, time.perf_counter() - collecting)
            self.log.info("%s", describe_step(record))
            if self.on_step is not None:
                try:
                    self.on_step(record)
                except Exception as exc:  # a store that is down must not fail the run
                    self.log.warning("step %s: could not store its metrics: %s", name, exc)

    def _collect(self, tag: str) -> SparkStepMetrics:
        if self.rest is None:
            return SparkStepMetrics.unavailable(self._unavailable)
        try:
            return collect_tagged(self.spark, self.rest, tag)
        except MetricsUnavailable as exc:
            self.log.warning("step metrics: %s", exc)
            return SparkStepMetrics.unavailable(str(exc))

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "spark_app_id": self.app_id,
            "spark_ui": self.ui_url,
            "steps": [step.as_dict() for step in self.steps],
        }

    def format_table(self) -> str:
        return format_step_table(self.steps)


class _ProgressReporter:
    """Logs one line every ``every`` seconds while a step runs: active jobs and stage tasks,
    from the status tracker (works with the UI off too). Quiet for steps shorter than that."""

    def __init__(
        self, spark: SparkSession, record: StepMetrics, log: logging.Logger, every: float
    ) -> None:
        self.spark = spark
        self.record = record
        self.log = log
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"progress-{self.record.job_tag}", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.every):
            try:
                line = self._line()
            except Exception as exc:  # the session may be stopping
                self.log.debug("progress unavailable: %s", exc)
                continue
            self.log.info(
                "%s: running for %.0f s%s", self.record.name, time.monotonic() - started, line
            )

    def _line(self) -> str:
        tracker = self.spark.sparkContext.statusTracker()
        jobs = tracker.getActiveJobsIds()
        parts = []
        for stage_id in sorted(tracker.getActiveStageIds()):
            info = tracker.getStageInfo(stage_id)
            if info is not None:
                parts.append(
                    f"stage {stage_id} {info.numCompletedTasks}/{info.numTasks} tasks"
                    + (f" ({info.numFailedTasks} failed)" if info.numFailedTasks else "")
                )
        if not jobs:
            return " (driver-side work, no Spark job active)"
        return f"; {len(jobs)} job(s) active" + (f": {', '.join(parts)}" if parts else "")


# --- reporting -------------------------------------------------------------------------------


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable


def describe_step(step: StepMetrics) -> str:
    """One log line for a finished step."""
    text = f"{step.name}: {step.status} in {step.seconds:.2f} s"
    spark = step.spark
    if spark is not None and spark.available:
        text += (
            f"; {spark.jobs} job(s), {spark.stages} stage(s), {spark.tasks} task(s)"
            + (f" ({spark.failed_tasks} failed)" if spark.failed_tasks else "")
            + f"; shuffle {human_bytes(spark.shuffle_write_bytes)} written"
            + f", {human_bytes(spark.shuffle_read_bytes)} read"
        )
        if spark.disk_spilled_bytes or spark.memory_spilled_bytes:
            text += f"; spilled {human_bytes(spark.disk_spilled_bytes)} to disk"
    rows = step.rows_out if step.rows_out is not None else step.rows_in
    rate = step.rows_per_second
    if rows is not None:
        text += f"; {rows:,} rows"
    if rate:
        text += f" ({rate:,.0f} rows/s)"
    return text


_COLUMNS = (
    ("step", 20, "<"),
    ("status", 9, "<"),
    ("wall s", 7, ">"),
    ("jobs", 5, ">"),
    ("stages", 6, ">"),
    ("tasks", 6, ">"),
    ("fail", 4, ">"),
    ("in rows", 10, ">"),
    ("out rows", 10, ">"),
    ("shuf read", 10, ">"),
    ("shuf write", 10, ">"),
    ("spill", 9, ">"),
    ("run s", 7, ">"),
    ("cpu s", 7, ">"),
    ("gc s", 5, ">"),
    ("rows/s", 10, ">"),
)


def _cells(step: StepMetrics) -> list[str]:
    spark = step.spark if step.spark is not None and step.spark.available else None
    rate = step.rows_per_second
    cells = [step.name[:20], step.status, f"{step.seconds:.1f}"]
    if spark is None:
        cells += ["-"] * 12
    else:
        cells += [
            f"{spark.jobs}",
            f"{spark.stages}",
            f"{spark.tasks}",
            f"{spark.failed_tasks}",
            f"{spark.input_rows:,}",
            f"{spark.output_rows:,}",
            human_bytes(spark.shuffle_read_bytes),
            human_bytes(spark.shuffle_write_bytes),
            human_bytes(spark.disk_spilled_bytes),
            f"{spark.executor_run_seconds:.1f}",
            f"{spark.executor_cpu_seconds:.1f}",
            f"{spark.gc_seconds:.1f}",
        ]
    cells.append("" if rate is None else f"{rate:,.0f}")
    return cells


def format_step_table(steps: Sequence[StepMetrics]) -> str:
    """The end-of-run table: one row per step and a total (Spark columns from ``metrics``)."""

    def row(cells: Sequence[str]) -> str:
        pairs = zip(cells, _COLUMNS, strict=False)
        return " ".join(f"{cell:{align}{width}}" for cell, (_, width, align) in pairs).rstrip()

    lines = [row([name for name, _, _ in _COLUMNS])]
    lines += [row(_cells(step)) for step in steps]
    measured = [s.spark for s in steps if s.spark is not None and s.spark.available]
    total = [
        "total",
        "",
        f"{sum(step.seconds for step in steps):.1f}",
    ]
    if measured:
        total += [
            f"{sum(m.jobs for m in measured)}",
            f"{sum(m.stages for m in measured)}",
            f"{sum(m.tasks for m in measured)}",
            f"{sum(m.failed_tasks for m in measured)}",
            f"{sum(m.input_rows for m in measured):,}",
            f"{sum(m.output_rows for m in measured):,}",
            human_bytes(sum(m.shuffle_read_bytes for m in measured)),
            human_bytes(sum(m.shuffle_write_bytes for m in measured)),
            human_bytes(sum(m.disk_spilled_bytes for m in measured)),
            f"{sum(m.executor_run_seconds for m in measured):.1f}",
            f"{sum(m.executor_cpu_seconds for m in measured):.1f}",
            f"{sum(m.gc_seconds for m in measured):.1f}",
        ]
    lines.append(row(total))
    if len(measured) < len(steps):
        reasons = {s.spark.source for s in steps if s.spark is not None and not s.spark.available}
        lines.append("(no Spark metrics for some steps: " + "; ".join(sorted(reasons)) + ")")
    return "\n".join(lines)
