"""The streaming query end to end: options, the exactly-once commit, the views, the real query on
tiny event files (restart after a clean stop, a replayed batch, SIGKILL mid-run) and the socket
source, each checked against a batch recomputation in PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.config import ConfigError, Settings
from sparkmart.io.postgres import PgSettings, connect, query_rows
from sparkmart.schemas import ALERT_SCHEMA
from sparkmart.stream import tables
from sparkmart.stream.events import parse_events
from sparkmart.stream.query import (
    BatchProcessor,
    BatchReport,
    StreamError,
    StreamOptions,
    format_latest,
    latest_metrics,
    run_stream,
)
from sparkmart.stream.sinks import BatchContext, commit_batch
from sparkmart.stream.tables import ViewParams, ensure_stream_tables, truncate_stream_tables

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[1]


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_line(
    event_id: str, moment: dt.datetime, customer: int, product: int, quantity: int = 1
) -> str:
    price = Decimal(product % 97) + Decimal("0.99")
    return json.dumps(
        {
            "event_id": event_id,
            "event_time": iso(moment),
            "order_id": int(event_id.split("-")[-1]) if event_id[-1].isdigit() else 0,
            "customer_id": customer,
            "product_id": product,
            "quantity": quantity,
            "unit_price": float(price),
            "discount": 0.05 if customer % 3 == 0 else 0.0,
            "status": "processing",
        }
    )


def event_file_lines(index: int, prefix: str) -> list[str]:
    """File ``index`` of a tiny stream: 12 events over ~2 minutes of event time (each file a
    minute later), one malformed line, and from file 3 on one event 15 minutes old (late with
    the configured 10 minute watermark)."""
    base = index * 60.0
    lines = [
        event_line(f"{prefix}-{index}-{n}", at(base + n * 10.5), n % 5 + 1, 100 + n % 4, n % 3 + 1)
        for n in range(12)
    ]
    lines.append('{"event_id": "broken-' + str(index))
    if index >= 3:
        lines.append(event_line(f"{prefix}-{index}-late", at(base - 900), 9, 999))
    return lines


def write_event_file(directory: Path, index: int, lines: list[str]) -> Path:
    """Write + rename (the file source must never see half a file); mtimes keep file order."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"events-{index:04d}.jsonl"
    temporary = directory / f".events-{index:04d}.tmp"
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stamp = 1_700_000_000 + index
    os.utime(temporary, (stamp, stamp))
    os.replace(temporary, target)
    return target


@pytest.fixture
def stream_pg(pg: PgSettings) -> PgSettings:
    """The test database with empty streaming tables."""
    ensure_stream_tables(pg)
    truncate_stream_tables(pg)
    return pg


def metric_totals(pg: PgSettings) -> dict[str, Any]:
    def rows(query: str) -> list[tuple]:
        return sorted(query_rows(pg, query))

    return {
        "sales": rows(
            f"SELECT window_start, orders, units, revenue FROM {tables.SALES_PER_MINUTE}"
        ),
        "products": rows(
            f"SELECT window_start, product_id, orders, units, revenue FROM {tables.PRODUCT_MINUTE}"
        ),
        "customers": rows(
            f"SELECT window_start, customer_id, orders, revenue FROM {tables.CUSTOMER_MINUTE}"
        ),
        "daily": rows(f"SELECT day, orders, units, revenue FROM {tables.REVENUE_DAILY}"),
        "units": rows(f"SELECT product_id, units_sold FROM {tables.PRODUCT_UNITS}"),
    }


def recomputed_totals(spark: SparkSession, lines: list[str], late_ids: set[str]) -> dict[str, Any]:
    """The batch computation over every line: valid events that are not late."""
    events = (
        spark.createDataFrame([(line,) for line in lines], "value string")
        .transform(parse_events())
        .where(F.col("reject_reason").isNull() & ~F.col("event_id").isin(*late_ids or {""}))
    )
    minute = F.window("event_time", "1 minute").start.alias("w")
    orders = F.count(F.lit(1)).alias("orders")
    units = F.sum(F.col("quantity").cast("long")).alias("units")
    revenue = F.sum("net_revenue").cast("decimal(18,2)").alias("revenue")

    def rows(df: DataFrame) -> list[tuple]:
        return sorted(
            tuple(v.astimezone(UTC) if isinstance(v, dt.datetime) else v for v in row)
            for row in df.collect()
        )

    return {
        "sales": rows(events.groupBy(minute).agg(orders, units, revenue)),
        "products": rows(events.groupBy(minute, "product_id").agg(orders, units, revenue)),
        "customers": rows(events.groupBy(minute, "customer_id").agg(orders, revenue)),
        "daily": rows(events.groupBy(F.to_date("event_time")).agg(orders, units, revenue)),
        "units": rows(events.groupBy("product_id").agg(units)),
    }


def late_ids(pg: PgSettings, query_name: str) -> set[str]:
    rows = query_rows(
        pg, f"SELECT event_id FROM {tables.LATE_EVENTS} WHERE query_name = %s", (query_name,)
    )
    return {row[0] for row in rows}


def ledger(pg: PgSettings, query_name: str) -> list[tuple]:
    return query_rows(
        pg,
        f"SELECT batch_id, input_rows, valid_rows, malformed_rows, late_rows FROM "
        f"{tables.BATCHES} WHERE query_name = %s ORDER BY batch_id",
        (query_name,),
    )


# --- options (no Spark, no PostgreSQL) -----------------------------------------------------------


def test_options_from_the_repo_config(settings: Settings) -> None:
    options = StreamOptions.from_settings(settings)
    assert options.source == "files"
    assert options.watermark == dt.timedelta(minutes=10)
    assert options.window == dt.timedelta(minutes=1)
    assert options.sliding_window == dt.timedelta(minutes=10)
    assert options.input_path == settings.path("streaming") / "input"
    assert options.checkpoint_dir("q") == settings.path("streaming") / "checkpoints" / "q"
    changed = StreamOptions.from_settings(
        settings, source="socket", trigger_seconds=1, watermark="30 seconds", socket_port=5555
    )
    assert (changed.source, changed.trigger_seconds, changed.socket_port) == ("socket", 1, 5555)
    assert changed.watermark == dt.timedelta(seconds=30)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": "kafka"}, "query.source should be one of files, socket"),
        ({"watermark": "ten minutes"}, "query.watermark should be seconds or a duration"),
        ({"watermark": "10 fortnights"}, "query.watermark: unknown unit"),
        ({"trigger_seconds": 0}, "query.trigger_seconds should be > 0"),
        ({"max_files_per_trigger": -1}, "query.max_files_per_trigger should be an integer >= 0"),
        ({"top_n": True}, "query.top_n should be an integer >= 1"),
        ({"sliding_step": "90 seconds"}, "query.sliding_step should be a multiple of"),
        ({"archive": "yes"}, "query.archive should be true or false"),
        ({"windwo": "1 minute"}, "unknown key 'query.windwo'"),
    ],
)
def test_option_errors_name_the_file_and_key(
    settings: Settings, change: dict[str, Any], message: str
) -> None:
    query = {**settings.streaming["query"], **change}
    with pytest.raises(ConfigError, match=f"streaming_config.yaml: .*{message}"):
        StreamOptions.from_config(query)


def test_a_missing_key_and_an_unknown_override_are_refused(settings: Settings) -> None:
    query = dict(settings.streaming["query"])
    del query["watermark"]
    with pytest.raises(ConfigError, match=r"missing key 'query\.watermark'"):
        StreamOptions.from_config(query)
    with pytest.raises(ConfigError, match="unknown streaming option"):
        StreamOptions.from_settings(settings, trigger_secs=3)


# --- the commit: exactly once --------------------------------------------------------------------


def _lines_df(spark: SparkSession, lines: list[str]) -> DataFrame:
    return spark.createDataFrame([(line,) for line in lines], "value string")


def _table_snapshot(pg: PgSettings) -> dict[str, list[tuple]]:
    return {
        table: sorted(map(repr, query_rows(pg, f"SELECT * FROM {table}")))
        for table in tables.STREAM_TABLES
        if table not in (tables.BATCHES, tables.QUERY_STATE)
    }


@pytest.mark.postgres
def test_a_replayed_batch_writes_nothing_twice(spark: SparkSession, stream_pg: PgSettings) -> None:
    options = StreamOptions(watermark=dt.timedelta(minutes=1), archive=False)
    processor = BatchProcessor(stream_pg, options, "replay", progress=None)
    first = [event_line(f"r-{n}", at(n * 20), n % 2, 7, 2) for n in range(6)] + ["nope"]
    delta0 = processor.compute(_lines_df(spark, first), 0, None)
    assert commit_batch(stream_pg, delta0).committed

    # the second batch sees the watermark the first left (12:00:40 = 12:01:40 - 1 minute)
    state_watermark = query_rows(
        stream_pg, f"SELECT watermark FROM {tables.QUERY_STATE} WHERE query_name = 'replay'"
    )[0][0]
    assert state_watermark == at(100) - dt.timedelta(minutes=1)
    second = [event_line("r-late", at(10), 5, 7), event_line("r-6", at(130), 1, 8)]
    delta1 = processor.compute(_lines_df(spark, second), 1, state_watermark)
    assert commit_batch(stream_pg, delta1).committed
    before = _table_snapshot(stream_pg)

    # Spark re-runs batch 1 (e.g. it died before writing its commit log): nothing changes
    result = commit_batch(stream_pg, delta1)
    assert not result.committed
    assert _table_snapshot(stream_pg) == before
    assert ledger(stream_pg, "replay") == [(0, 7, 6, 1, 0), (1, 2, 1, 0, 1)]
    assert late_ids(stream_pg, "replay") == {"r-late"}
    assert query_rows(stream_pg, f"SELECT raw, reason FROM {tables.QUARANTINE}") == [
        ("nope", "not a JSON object")
    ]
    # minutes ending at or before the watermark (12:01:10) are closed, the others open
    closed = query_rows(
        stream_pg,
        f"SELECT window_start, is_closed FROM {tables.SALES_PER_MINUTE} ORDER BY window_start",
    )
    assert closed == [(at(0), True), (at(60), False), (at(120), False)]


@pytest.mark.postgres
def test_a_commit_that_fails_leaves_nothing(spark: SparkSession, stream_pg: PgSettings) -> None:
    class FailingAlerts:
        def stateful_alerts(self, cursor: Any, batch: BatchContext) -> int:
            raise RuntimeError("alert rule broke")

    options = StreamOptions(archive=False)
    processor = BatchProcessor(stream_pg, options, "failing", progress=None)
    delta = processor.compute(_lines_df(spark, [event_line("f-1", at(0), 1, 1), "x"]), 0, None)
    with pytest.raises(RuntimeError, match="alert rule broke"):
        commit_batch(stream_pg, delta, alert_hook=FailingAlerts())
    assert all(not rows for rows in _table_snapshot(stream_pg).values())
    assert ledger(stream_pg, "failing") == []
    assert commit_batch(stream_pg, delta).committed  # the retry goes through, once


@pytest.mark.postgres
def test_alert_hooks_run_inside_the_batch(spark: SparkSession, stream_pg: PgSettings) -> None:
    """The per-event alerts are inserted once; the stateful rules get the batch's context."""
    contexts: list[BatchContext] = []

    class LargeOrderAlerts:
        def event_alerts(self, events: DataFrame, batch_id: int) -> DataFrame:
            return events.where("quantity >= 50").select(
                F.concat(F.lit("large_order:"), "event_id").alias("alert_id"),
                F.lit("large_order").alias("alert_type"),
                F.lit("warning").alias("severity"),
                F.col("product_id").cast("string").alias("alert_key"),
                F.lit("large order").alias("message"),
                "event_time",
                F.current_timestamp().alias("detected_at"),
                F.col("quantity").cast("double").alias("value"),
                F.lit(50.0).alias("threshold"),
                "event_id",
            )

        def fraud_alerts(self, events: DataFrame) -> None:
            return None  # no live fraud scoring in this engine

        def stateful_alerts(self, cursor: Any, batch: BatchContext) -> int:
            contexts.append(batch)
            cursor.execute(
                f"INSERT INTO {tables.ALERTS} (alert_id, alert_type, severity, alert_key, "
                "message, detected_at, query_name, batch_id) "
                "SELECT 'minutes:' || %s, 'sales_drop', 'critical', 'all', "
                "count(*)::text || ' minutes', %s, %s, %s FROM streaming.sales_per_minute",
                (batch.batch_id, batch.detected_at, batch.query_name, batch.batch_id),
            )
            return cursor.rowcount

    engine = LargeOrderAlerts()
    options = StreamOptions(archive=False)
    processor = BatchProcessor(stream_pg, options, "hooks", alert_engine=engine, progress=None)
    lines = [event_line("h-1", at(0), 1, 1, 60), event_line("h-2", at(70), 2, 2, 1)]
    processor(_lines_df(spark, lines), 0)
    processor(_lines_df(spark, lines), 0)  # a replay
    assert [r.committed for r in processor.reports] == [True, False]
    assert processor.reports[0].alerts == 2
    assert dataclasses.asdict(contexts[0]) | {"detected_at": None} == {
        "query_name": "hooks",
        "batch_id": 0,
        "previous_watermark": None,
        "new_watermark": at(70) - dt.timedelta(minutes=10),
        "touched_minutes": (at(0), at(60)),
        "detected_at": None,
    }
    alerts = query_rows(
        stream_pg, f"SELECT alert_id, message, batch_id FROM {tables.ALERTS} ORDER BY alert_id"
    )
    assert alerts == [("large_order:h-1", "large order", 0), ("minutes:0", "2 minutes", 0)]
    assert ALERT_SCHEMA.fieldNames()[0] == "alert_id"


# --- the views -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_views_equal_spark_windows(spark: SparkSession, stream_pg: PgSettings) -> None:
    params = ViewParams(
        sliding_window=dt.timedelta(minutes=3),
        sliding_step=dt.timedelta(minutes=1),
        top_n=2,
        active_customers_minutes=2,
    )
    ensure_stream_tables(stream_pg, params)
    lines = [
        event_line(f"v-{n}", at(n * 17 + 3), n % 4, 10 + n % 5, n % 3 + 1) for n in range(30)
    ] + [event_line("v-day", dt.datetime(2026, 11, 26, 0, 0, 5, tzinfo=UTC), 1, 11)]
    options = StreamOptions(archive=False)
    processor = BatchProcessor(stream_pg, options, "views", progress=None)
    commit_batch(stream_pg, processor.compute(_lines_df(spark, lines), 0, None))
    events = _lines_df(spark, lines).transform(parse_events())

    sliding = F.window("event_time", "3 minutes", "1 minute")
    by_revenue = Window.partitionBy("window_start").orderBy(F.desc("revenue"), "product_id")
    expected_top = (
        events.groupBy(sliding.start.alias("window_start"), "product_id")
        .agg(F.sum("net_revenue").cast("decimal(18,2)").alias("revenue"))
        .withColumn("rank", F.row_number().over(by_revenue))
        .where("rank <= 2")
    )
    top = spark.createDataFrame(
        query_rows(
            stream_pg, f"SELECT window_start, product_id, revenue, rank FROM {tables.TOP_PRODUCTS}"
        ),
        "window_start timestamp, product_id long, revenue decimal(18,2), rank long",
    )
    assertDataFrameEqual(
        top, expected_top.select(top.columns).withColumn("rank", F.col("rank").cast("long"))
    )

    recent = F.window("event_time", "2 minutes", "1 minute")
    per_minute = events.groupBy(F.window("event_time", "1 minute").start.alias("window_start"))
    expected_active = per_minute.agg(F.countDistinct("customer_id").alias("active")).join(
        events.groupBy((recent.end - F.expr("interval 1 minute")).alias("window_start")).agg(
            F.countDistinct("customer_id").alias("recent")
        ),
        "window_start",
    )
    active = spark.createDataFrame(
        query_rows(
            stream_pg,
            f"SELECT window_start, active_customers, active_customers_recent "
            f"FROM {tables.ACTIVE_CUSTOMERS}",
        ),
        "window_start timestamp, active long, recent long",
    )
    assertDataFrameEqual(active, expected_active)

    running = query_rows(
        stream_pg,
        f"SELECT day, revenue, running_revenue, running_orders FROM {tables.REVENUE_RUNNING} "
        "ORDER BY day",
    )
    day_one = sum(row["net_revenue"] for row in events.collect() if row["event_id"] != "v-day")
    day_two = events.where("event_id = 'v-day'").first()["net_revenue"]
    assert running == [
        (dt.date(2026, 11, 25), day_one, day_one, 30),
        (dt.date(2026, 11, 26), day_two, day_one + day_two, 31),
    ]


# --- the real query ------------------------------------------------------------------------------


def _run(
    settings: Settings,
    pg: PgSettings,
    input_dir: Path,
    name: str,
    max_files_per_trigger: int = 1,
    **kwargs: Any,
) -> Any:
    """Process what is in ``input_dir`` (availableNow), ``max_files_per_trigger`` files a batch."""
    reports: list[BatchReport] = []
    summary = run_stream(
        settings,
        available_now=True,
        max_files_per_trigger=max_files_per_trigger,
        query_name=name,
        input_dir=input_dir,
        pg=pg,
        alerts=False,
        progress=reports.append,
        **kwargs,
    )
    return summary, reports


@pytest.mark.postgres
def test_query_restarts_after_a_clean_stop_and_after_a_lost_commit(
    spark: SparkSession, settings: Settings, stream_pg: PgSettings, tmp_path: Path
) -> None:
    name = "restart"
    input_dir = tmp_path / "input"
    all_lines: list[str] = []
    for index in range(4):
        all_lines += event_file_lines(index, name)
        write_event_file(input_dir, index, event_file_lines(index, name))

    summary, reports = _run(settings, stream_pg, input_dir, name)
    assert [r.batch_id for r in reports] == [0, 1, 2, 3]
    assert summary.input_rows == len(all_lines)
    assert (summary.malformed_rows, summary.late_rows) == (4, 1)
    assert late_ids(stream_pg, name) == {f"{name}-3-late"}
    assert metric_totals(stream_pg) == recomputed_totals(
        spark, all_lines, late_ids(stream_pg, name)
    )
    assert summary.latest["sales_per_minute"]
    assert "4 batches (0 replayed)" in summary.format()
    assert str(reports[3]).startswith("batch 3: 14 rows in ")  # progress=print prints this
    assert ", late 1, malformed 1" in str(reports[3])
    archived = settings.path("streaming") / "output" / name / "sales_per_minute"
    assert sorted(p.name for p in archived.iterdir()) == [f"batch_id={n}.parquet" for n in range(4)]

    # a clean restart continues with the new files only
    for index in (4, 5):
        all_lines += event_file_lines(index, name)
        write_event_file(input_dir, index, event_file_lines(index, name))
    summary, reports = _run(settings, stream_pg, input_dir, name)
    assert [(r.batch_id, r.committed) for r in reports] == [(4, True), (5, True)]
    late = late_ids(stream_pg, name)
    assert late == {f"{name}-{n}-late" for n in (3, 4, 5)}
    assert metric_totals(stream_pg) == recomputed_totals(spark, all_lines, late)

    # PostgreSQL committed batch 5 but Spark "died" before writing its commit log: Spark runs
    # batch 5 again on restart, and the ledger makes it a no-op
    commits = settings.path("streaming") / "checkpoints" / name / "commits"
    (commits / "5").unlink()
    (commits / ".5.crc").unlink(missing_ok=True)  # Hadoop's checksum of the commit file
    before = metric_totals(stream_pg)
    summary, reports = _run(settings, stream_pg, input_dir, name)
    assert [(r.batch_id, r.committed) for r in reports] == [(5, False)]
    assert summary.replayed == 1
    assert metric_totals(stream_pg) == before
    rows = ledger(stream_pg, name)
    assert [row[0] for row in rows] == list(range(6))
    assert sum(row[1] for row in rows) == len(all_lines)


@pytest.mark.postgres
def test_a_lost_checkpoint_is_refused(
    settings: Settings, stream_pg: PgSettings, tmp_path: Path
) -> None:
    name = "lost"
    input_dir = tmp_path / "input"
    write_event_file(input_dir, 0, event_file_lines(0, name))
    _run(settings, stream_pg, input_dir, name)
    checkpoint = settings.path("streaming") / "checkpoints" / name
    for path in sorted(checkpoint.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    checkpoint.rmdir()
    with pytest.raises(StreamError, match="PostgreSQL has 1 committed batches but there is no"):
        _run(settings, stream_pg, input_dir, name)


def _database_url(pg: PgSettings) -> str:
    auth = pg.user + (f":{pg.password}" if pg.password else "")
    return f"postgresql://{auth}@{pg.host}:{pg.port}/{pg.dbname}"


@pytest.mark.postgres
def test_sigkill_mid_run_loses_and_doubles_nothing(
    spark: SparkSession, settings: Settings, stream_pg: PgSettings, tmp_path: Path
) -> None:
    name = "killed"
    input_dir = tmp_path / "input"
    files = 10
    all_lines: list[str] = []

    def add_file(index: int) -> None:
        lines = event_file_lines(index, name)
        all_lines.extend(lines)
        write_event_file(input_dir, index, lines)

    for index in range(2):
        add_file(index)
    log_path = tmp_path / "stream.log"
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "stream_pipeline.py"),
        *("--source", "files", "--input", str(input_dir), "--query-name", name),
        *("--trigger-seconds", "0.5", "--max-files-per-trigger", "1", "--until-idle", "300"),
        *("--no-alerts", "--profile", "test", "--data-dir", str(settings.data_dir)),
        *("--config-dir", str(settings.config_dir)),
    ]
    env = {**os.environ, "DATABASE_URL": _database_url(stream_pg)}
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        next_file = 2
        deadline = time.monotonic() + 240
        while not ledger(stream_pg, name):  # files keep arriving while the query starts
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "no batch committed: " + log_path.read_text()
            if next_file < files // 2:
                add_file(next_file)
                next_file += 1
            time.sleep(0.5)
        add_file(next_file)
        next_file += 1
        time.sleep(0.3)  # most likely in the middle of the next batch
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its JVM
        process.wait(30)
    committed_before_restart = len(ledger(stream_pg, name))
    for index in range(next_file, files):
        add_file(index)

    _run(settings, stream_pg, input_dir, name, max_files_per_trigger=0)  # the rest at once
    rows = ledger(stream_pg, name)
    assert committed_before_restart >= 1
    assert [row[0] for row in rows] == list(range(len(rows)))
    assert sum(row[1] for row in rows) == len(all_lines)  # every line, once
    # which old events are late depends on how the files fell into batches (the watermark in
    # force is the previous batch's): only the planted ones can be, and the batch computation
    # leaves out exactly those the stream reported
    late = late_ids(stream_pg, name)
    assert late and late <= {f"{name}-{n}-late" for n in range(3, files)}
    assert metric_totals(stream_pg) == recomputed_totals(spark, all_lines, late)


# --- the socket source ---------------------------------------------------------------------------


@pytest.fixture
def line_server() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on loopback that sends its lines to the first client, then stays open."""
    lines = [event_line(f"s-{n}", at(n * 7), n % 3, 40 + n % 2) for n in range(20)] + ["bad"]
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(120)
        try:
            client, _ = server.accept()
        except OSError:
            return
        with client:
            client.sendall(("\n".join(lines) + "\n").encode())
            stop.wait(180)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], lines
    stop.set()
    server.close()
    thread.join(5)


@pytest.mark.postgres
def test_socket_source_reads_a_loopback_server(
    spark: SparkSession,
    settings: Settings,
    stream_pg: PgSettings,
    line_server: tuple[int, list[str]],
) -> None:
    port, lines = line_server
    summary = run_stream(
        settings,
        source="socket",
        host="127.0.0.1",
        port=port,
        trigger_seconds=1,
        until_idle=6,
        query_name="socket",
        pg=stream_pg,
        alerts=False,
        progress=None,
    )
    assert summary.input_rows == len(lines)
    assert summary.malformed_rows == 1
    assert metric_totals(stream_pg) == recomputed_totals(spark, lines, set())
    with pytest.raises(StreamError, match="socket source cannot run with available_now"):
        run_stream(settings, source="socket", available_now=True, pg=stream_pg)


@pytest.mark.postgres
def test_latest_metrics_reads_what_the_dashboard_prints(
    spark: SparkSession, stream_pg: PgSettings
) -> None:
    options = StreamOptions(archive=False)
    ensure_stream_tables(stream_pg, options.view_params)
    processor = BatchProcessor(stream_pg, options, "latest", progress=None)
    lines = [event_line(f"l-{n}", at(n * 30), n % 4, 20 + n % 3, 1) for n in range(30)]
    commit_batch(stream_pg, processor.compute(_lines_df(spark, lines), 0, None))
    latest = latest_metrics(stream_pg, options, minutes=5)
    assert [row["window_start"] for row in latest["sales_per_minute"]] == [
        at(60 * m) for m in (14, 13, 12, 11, 10)
    ]
    # the top products of the 10 minutes ending with the latest minute (12:05 - 12:15)
    assert {row["window_start"] for row in latest["top_products"]} == {at(300)}
    assert [row["rank"] for row in latest["top_products"]] == [1, 2, 3]
    assert len(latest["active_customers"]) == 5
    assert latest["revenue"][0]["running_orders"] == 30
    assert latest["last_batch"]["batch_id"] == 0
    text = format_latest(latest)
    assert "top products 12:05-12:15: #1" in text
    assert "12:14" in text.splitlines()[1]
    with connect(stream_pg) as conn:
        assert conn.execute(f"SELECT count(*) FROM {tables.TOP_PRODUCTS}").fetchone()[0] > 0
