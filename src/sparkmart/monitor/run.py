"""One monitored run: run-id logging, step metrics, lineage and the run's files, together.

    with monitored_run(spark, "ml", runs_dir, pg) as run:
        with run.step("train segmentation") as step:
            ...
            step.rows_in = customers_count
        run.record_lineage(step, [file_dataset(...)], [file_dataset(...)])

Inside the block every sparkmart log line carries the run id; each finished step is logged,
stored in ``audit.step_metrics`` (when ``pg`` is given) and kept in ``run.steps``; the lineage
events go to ``<runs_dir>/<run_id>.openlineage.jsonl`` (and ``audit.lineage``). When the block
ends (also by an exception) the pipeline's OpenLineage run is completed or failed, the steps
are written to ``<runs_dir>/<run_id>.metrics.json`` and the step table is logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from sparkmart.io.postgres import PgSettings
from sparkmart.monitor import audit
from sparkmart.monitor.lineage import DatasetRef, LineageRecorder
from sparkmart.monitor.metrics import (
    DEFAULT_PROGRESS_SECONDS,
    RunMonitor,
    StepMetrics,
    format_step_table,
)
from sparkmart.monitor.spark_sessions import record_spark_session
from sparkmart.spark_utils import get_logger, run_context

_log = get_logger("monitor")


@dataclass
class MonitoredRun:
    run_id: str
    pipeline: str
    monitor: RunMonitor
    lineage: LineageRecorder
    runs_dir: Path
    status: str = "running"
    error: str | None = None

    @property
    def steps(self) -> list[StepMetrics]:
        return self.monitor.steps

    def step(self, name: str) -> Any:
        """``with run.step(name) as step:`` (see ``RunMonitor.step``)."""
        return self.monitor.step(name)

    def record_lineage(
        self, step: StepMetrics, inputs: Sequence[DatasetRef], outputs: Sequence[DatasetRef]
    ) -> str:
        """The datasets a finished step read and wrote (OpenLineage events, audit.lineage)."""
        return self.lineage.record(step.name, inputs, outputs, step.started_at, step.finished_at)

    @property
    def metrics_file(self) -> Path:
        return self.runs_dir / f"{self.run_id}.metrics.json"

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.monitor.as_dict(),
            "status": self.status,
            "error": self.error,
            "lineage": str(self.lineage.events_file),
        }


def step_metrics_store(
    pg: PgSettings | None, run_id: str, pipeline: str, app_id: str
) -> Callable[[StepMetrics], None] | None:
    """Where each finished step goes: a row of ``audit.step_metrics`` (when there is PostgreSQL)."""
    if pg is None:
        return None
    audit.ensure_audit_tables(pg)

    def store(step: StepMetrics) -> None:
        audit.record_step_metrics(pg, run_id, pipeline, step, app_id)

    return store


@contextmanager
def monitored_run(
    spark: SparkSession,
    pipeline: str,
    runs_dir: Path,
    pg: PgSettings | None = None,
    *,
    run_id: str | None = None,
    logger: logging.Logger | None = None,
    progress_seconds: float = DEFAULT_PROGRESS_SECONDS,
    own_summary: bool = False,
) -> Iterator[MonitoredRun]:
    """Monitor one run of ``pipeline`` (see the module docstring). ``own_summary=True`` when
    the caller writes its own run file (with ``run.steps`` in it) and prints its own table."""
    run_id = run_id or uuid.uuid4().hex
    log = logger or _log
    with run_context(run_id):
        app_id = spark.sparkContext.applicationId
        monitor = RunMonitor(
            spark,
            run_id,
            pipeline,
            logger=log,
            progress_seconds=progress_seconds,
            on_step=step_metrics_store(pg, run_id, pipeline, app_id),
        )
        lineage = LineageRecorder(
            run_id,
            pipeline,
            runs_dir / f"{run_id}.openlineage.jsonl",
            pg,
            spark_version=spark.version,
        )
        run = MonitoredRun(run_id, pipeline, monitor, lineage, runs_dir)
        if pg is not None:  # the dashboard's run monitor links the UI while it answers
            record_spark_session(pg, spark, pipeline)
        log.info(
            "%s run %s started: Spark application %s, UI %s",
            pipeline,
            run_id,
            app_id,
            monitor.ui_url or "off",
        )
        lineage.start()
        try:
            yield run
            run.status = "succeeded"
        except BaseException as exc:
            run.status = "failed"
            run.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            lineage.finish(run.status, run.error, at=dt.datetime.now(dt.timezone.utc))
            lineage.close()
            if own_summary:
                log.info("%s run %s %s", pipeline, run_id, run.status)
            else:
                runs_dir.mkdir(parents=True, exist_ok=True)
                run.metrics_file.write_text(json.dumps(run.as_dict(), indent=2, default=str))
                log.info(
                    "%s run %s %s\n%s", pipeline, run_id, run.status, format_step_table(run.steps)
                )


@dataclass
class RunRecord:
    """What a run reports in its ``audit.pipeline_runs`` row besides its steps; the caller
    fills it in before the ``audited_run`` block ends."""

    rows: Mapping[str, Any] | None = None
    quarantined: Mapping[str, Any] | None = None
    watermarks: Mapping[str, dt.datetime] | None = None  # advanced only on success
    finished_at: dt.datetime | None = None  # naive UTC; default: when the block ends


@contextmanager
def audited_run(
    pg: PgSettings | None,
    run: MonitoredRun,
    *,
    audit_name: str,
    mode: str,
    config_dir: Path,
    parameters: Mapping[str, Any],
    started_at: dt.datetime,
) -> Iterator[RunRecord]:
    """The run's row in ``audit.pipeline_runs``: ``running`` when the block starts, then
    ``succeeded`` or ``failed`` (with the error, the steps and ``RunRecord``) when it ends.
    Without PostgreSQL it only yields the record."""
    record = RunRecord()
    if pg is None:
        yield record
        return
    audit.start_run(
        pg,
        run.run_id,
        audit_name,
        mode,
        audit.config_digest(config_dir),
        parameters,
        started_at,
        spark_app_id=run.monitor.app_id,
    )
    status, error = "failed", None
    try:
        yield record
        status = "succeeded"
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        audit.finish_run(
            pg,
            run.run_id,
            status,
            record.finished_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            rows=record.rows,
            quarantined=record.quarantined,
            steps=[step.as_dict() for step in run.steps],
            error=error,
            watermarks=record.watermarks if status == "succeeded" else None,
            pipeline=audit_name,
        )
