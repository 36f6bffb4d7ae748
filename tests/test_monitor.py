"""Observability: step metrics from Spark's REST API, their audit rows, lineage, run-id logging."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
import uuid
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from sparkmart.config import Settings, load_settings
from sparkmart.io.postgres import PgSettings, query_rows, replace_table_atomically
from sparkmart.monitor import audit
from sparkmart.monitor.lineage import LineageRecorder, file_dataset, postgres_dataset
from sparkmart.monitor.metrics import METRIC_FIELDS, RunMonitor, format_step_table
from sparkmart.spark_utils import (
    LOGGER_NAME,
    RunIdFilter,
    get_logger,
    local_event_log_dir,
    log_formatter,
    run_context,
    spark_conf_for,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture
def log_lines():
    """Every sparkmart log line written during the test, as the project formats it (JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(json_lines=True))
    handler.addFilter(RunIdFilter())
    root = logging.getLogger(LOGGER_NAME)
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_step_metrics_come_from_spark_and_add_up(
    spark: SparkSession, pg: PgSettings, tmp_path: Path, log_lines
) -> None:
    run_id = uuid.uuid4().hex
    app_id = spark.sparkContext.applicationId
    monitor = RunMonitor(
        spark,
        run_id,
        "test",
        progress_seconds=0,
        on_step=lambda step: audit.record_step_metrics(pg, run_id, "test", step, app_id),
    )
    audit.ensure_audit_tables(pg)
    orders = spark.createDataFrame(
        [(i, f"c{i % 7}", i * 10) for i in range(200)], "order_id long, customer string, cents long"
    )
    target = tmp_path / "per_customer"
    with run_context(run_id):
        with monitor.step("aggregate") as aggregate:
            per_customer = orders.groupBy("customer").agg(F.sum("cents").alias("cents"))
            per_customer.write.parquet(str(target))
            aggregate.rows_out = spark.read.parquet(str(target)).count()
        spark.range(5).count()  # between steps: belongs to no step
        with monitor.step("read back") as read_back:
            read_back.rows_in = spark.read.parquet(str(target)).count()
        with monitor.step("no spark work"):
            pass

    shuffled = aggregate.spark
    assert shuffled is not None and shuffled.source == "rest"
    assert aggregate.status == "succeeded" and aggregate.rows_out == 7
    # a groupBy shuffles: bytes are written by the map side and all read by the reduce side
    assert shuffled.shuffle_write_bytes > 0 and shuffled.shuffle_write_rows > 0
    assert shuffled.shuffle_read_bytes == shuffled.shuffle_write_bytes
    assert shuffled.output_rows == 7  # what the write wrote, as Spark counted it
    assert shuffled.stages >= 2 and len(shuffled.stage_ids) == shuffled.stages
    assert shuffled.jobs == len(shuffled.job_ids) >= 2  # the write and the count
    assert shuffled.tasks >= shuffled.stages and shuffled.failed_tasks == 0
    assert shuffled.executor_run_seconds > 0 and shuffled.executor_cpu_seconds > 0
    assert sum(stage["output_rows"] for stage in shuffled.stage_breakdown) == 7
    # the Spark UI names a step's jobs after it, and only while the step runs
    assert monitor.rest is not None
    described = {monitor.rest.get(f"jobs/{job}").get("description") for job in shuffled.job_ids}
    assert described == {"test: aggregate"}
    assert spark.sparkContext.getLocalProperty("spark.job.description") is None
    assert aggregate.rows_per_second == pytest.approx(7 / aggregate.seconds)

    read = read_back.spark
    assert read is not None and read.input_rows == 7 == read_back.rows_in
    assert read.output_rows == 0 and read.jobs >= 1
    # steps own only their jobs: the count between the steps is in neither
    assert not set(read.job_ids) & set(shuffled.job_ids)
    assert min(read.job_ids) > max(shuffled.job_ids) + 1
    assert monitor.steps[2].spark is not None and monitor.steps[2].spark.jobs == 0

    stored = query_rows(
        pg,
        "SELECT step, status, jobs, stages, shuffle_write_bytes, output_rows, input_rows, "
        "metrics_source, spark_app_id, stage_ids "
        "FROM audit.step_metrics WHERE run_id = %s ORDER BY step_index",
        (run_id,),
    )
    assert [row[0] for row in stored] == ["aggregate", "read back", "no spark work"]
    assert stored[0][1:] == (
        "succeeded",
        shuffled.jobs,
        shuffled.stages,
        shuffled.shuffle_write_bytes,
        7,
        shuffled.input_rows,
        "rest",
        app_id,
        shuffled.stage_ids,
    )
    columns = {
        row[0]
        for row in query_rows(
            pg,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'audit' AND table_name = 'step_metrics'",
        )
    }
    assert set(METRIC_FIELDS) <= columns

    table = format_step_table(monitor.steps).splitlines()
    assert table[1].split()[:3] == ["aggregate", "succeeded", f"{aggregate.seconds:.1f}"]
    assert table[-1].startswith("total")
    finished = [line for line in log_lines() if "succeeded in" in line["msg"]]
    assert len(finished) == 3 and all(line["run_id"] == run_id for line in finished)


def test_a_failing_step_is_recorded_with_its_failed_job(spark: SparkSession) -> None:
    monitor = RunMonitor(spark, uuid.uuid4().hex, "test", progress_seconds=0)
    with pytest.raises(Exception, match="no such customer"), monitor.step("doomed"):
        spark.range(3).select(F.raise_error(F.lit("no such customer"))).collect()
    (step,) = monitor.steps
    assert step.status == "failed"
    assert step.spark is not None and step.spark.failed_jobs == 1
    assert step.spark.failed_tasks >= 1 and step.spark.failed_stage_attempts >= 1


def test_progress_lines_carry_the_run_id_while_a_step_runs(spark: SparkSession, log_lines) -> None:
    run_id = uuid.uuid4().hex
    monitor = RunMonitor(spark, run_id, "test", progress_seconds=0.05)
    with run_context(run_id), monitor.step("slow driver work"):
        time.sleep(0.5)
    progress = [line for line in log_lines() if "running for" in line["msg"]]
    assert progress and all(line["run_id"] == run_id for line in progress)


def test_every_log_line_in_a_run_carries_its_run_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_formatter(json_lines=False))
    handler.addFilter(RunIdFilter())
    log = get_logger("test.monitor")
    logging.getLogger(LOGGER_NAME).addHandler(handler)
    try:
        with run_context("0123456789abcdef0123456789abcdef"):
            log.warning("inside")
        log.warning("outside")
    finally:
        logging.getLogger(LOGGER_NAME).removeHandler(handler)
    inside, outside = stream.getvalue().splitlines()
    assert "sparkmart.test.monitor [run 01234567]: inside" in inside
    assert "[run" not in outside and outside.endswith("sparkmart.test.monitor: outside")


SCHEMA = StructType(
    [StructField("customer", StringType(), False), StructField("cents", LongType(), True)]
)


def _check_event(event: dict) -> None:
    """The parts of OpenLineage's RunEvent spec (2-0-2) every event must have."""
    assert event["eventType"] in {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
    assert "T" in event["eventTime"] and dt.datetime.fromisoformat(event["eventTime"]).tzinfo
    assert event["schemaURL"].startswith("https://openlineage.io/spec/")
    assert event["producer"]
    uuid.UUID(event["run"]["runId"])
    assert event["job"]["namespace"] == "sparkmart" and event["job"]["name"]
    facets = [*event["run"].get("facets", {}).values(), *event["job"].get("facets", {}).values()]
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        assert dataset["namespace"] and dataset["name"]
        facets += dataset.get("facets", {}).values()
        facets += dataset.get("inputFacets", {}).values()
        facets += dataset.get("outputFacets", {}).values()
    for facet in facets:
        assert facet["_producer"] and facet["_schemaURL"].startswith("https://openlineage.io/")


def test_lineage_is_openlineage_json_and_audit_rows(
    spark: SparkSession, pg: PgSettings, tmp_path: Path
) -> None:
    run_id = uuid.uuid4().hex
    source = tmp_path / "silver"
    spark.createDataFrame([("c1", 10), ("c2", None), ("c1", 5)], SCHEMA).write.parquet(str(source))
    silver = spark.read.parquet(str(source))
    totals = silver.groupBy("customer").agg(F.sum("cents").alias("cents"))
    written = replace_table_atomically(
        totals, pg, "analytics.monitor_totals", primary_key="customer", method="jdbc"
    )
    events_file = tmp_path / "runs" / f"{run_id}.openlineage.jsonl"
    recorder = LineageRecorder(run_id, "batch", events_file, pg, spark_version=spark.version)
    recorder.start()
    step_run = recorder.record(
        "totals",
        [file_dataset(source, "parquet", silver.schema, 3)],
        [postgres_dataset(pg, "analytics.monitor_totals", totals.schema, written)],
    )
    recorder.finish("failed", error="ValueError: late")
    recorder.close()

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    for event in events:
        _check_event(event)
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [
        ("START", "batch"),
        ("START", "batch.totals"),
        ("COMPLETE", "batch.totals"),
        ("FAIL", "batch"),
    ]
    pipeline_run = str(uuid.UUID(run_id))
    assert {events[0]["run"]["runId"], events[3]["run"]["runId"]} == {pipeline_run}
    assert events[1]["run"]["runId"] == events[2]["run"]["runId"] == step_run
    assert events[2]["run"]["facets"]["parent"]["run"]["runId"] == pipeline_run
    assert events[3]["run"]["facets"]["errorMessage"]["message"] == "ValueError: late"
    (read,) = events[2]["inputs"]
    assert (read["namespace"], read["name"]) == ("file", str(source.resolve()))
    assert [f["name"] for f in read["facets"]["schema"]["fields"]] == ["customer", "cents"]
    assert read["inputFacets"]["inputStatistics"]["rowCount"] == 3
    (wrote,) = events[2]["outputs"]
    assert wrote["namespace"] == f"postgres://{pg.host}:{pg.port}"
    assert wrote["name"] == f"{pg.dbname}.analytics.monitor_totals"
    assert wrote["outputFacets"]["outputStatistics"]["rowCount"] == written == 2
    assert wrote["facets"]["schema"]["fields"][1] == {
        "name": "cents",
        "type": "bigint",
        "ordinal_position": 2,
        "fields": [],
    }

    rows = query_rows(
        pg,
        "SELECT direction, name, rows, schema, recorded_by FROM audit.lineage "
        "WHERE run_id = %s ORDER BY direction",
        (run_id,),
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("input", str(source.resolve()), 3),
        ("output", f"{pg.dbname}.analytics.monitor_totals", 2),
    ]
    assert rows[0][3][0] == {"name": "customer", "type": "string", "nullable": True}
    assert rows[0][4] == audit.actor()
    writes = query_rows(
        pg, "SELECT target_kind, target, rows FROM audit.writes WHERE run_id = %s", (run_id,)
    )
    assert writes == [("postgres", f"{pg.dbname}.analytics.monitor_totals", 2)]


def test_event_logs_go_to_data_spark_events_in_the_local_profile(settings: Settings) -> None:
    conf = spark_conf_for(load_settings(CONFIG_DIR, "local").spark)
    assert conf["spark.eventLog.enabled"] == "true"
    assert local_event_log_dir(conf) == Path("data/spark-events").resolve()
    # the test session keeps its UI (for the metrics) on a free port, and writes no event log
    assert local_event_log_dir(spark_conf_for(settings.spark)) is None
    assert spark_conf_for(settings.spark)["spark.ui.enabled"] == "true"
