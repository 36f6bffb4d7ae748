"""Exactly-once sinks of the streaming query: one PostgreSQL transaction per micro-batch, and the
Parquet archive of each batch's metric deltas.

Why a replayed batch cannot count twice: the transaction first inserts the batch's row into the
ledger ``streaming.batches`` (``ON CONFLICT DO NOTHING``). If the row is already there, the batch
was committed by an earlier attempt and nothing is written; otherwise every delta, the watermark,
late events, quarantined lines, alerts and the ledger row commit together, or none of them does.
Spark replays a batch with the same input (the file source's offsets are in the checkpoint) and
our watermark comes from PostgreSQL as of the previous batch, so a replay computes the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from sparkmart.io.postgres import PgSettings, _arrow_to_csv, connect
from sparkmart.spark_utils import get_logger
from sparkmart.stream import tables
from sparkmart.stream.metrics import latency_histogram

log = get_logger("stream.sinks")


class StreamStateError(RuntimeError):
    """PostgreSQL's streaming state does not match this query (checkpoint or concurrent run)."""


@dataclass(frozen=True)
class BatchContext:
    """What the stateful alert rules get, inside the batch's transaction."""

    query_name: str
    batch_id: int
    previous_watermark: dt.datetime | None  # in force while the batch was computed
    new_watermark: dt.datetime | None  # after it: windows ending <= this are now closed
    touched_minutes: tuple[dt.datetime, ...]  # window starts this batch added events to
    detected_at: dt.datetime  # the transaction's wall time (UTC)


class StatefulAlerts(Protocol):
    """The part of the alert engine that runs inside the commit (stream/alerts.py)."""

    def stateful_alerts(self, cursor: psycopg.Cursor, batch: BatchContext) -> int: ...


@dataclass(frozen=True)
class BatchDelta:
    """Everything one micro-batch adds, collected on the driver (Arrow tables, small)."""

    query_name: str
    batch_id: int
    window: dt.timedelta
    previous_watermark: dt.datetime | None
    new_watermark: dt.datetime | None
    max_event_time: dt.datetime | None
    metrics: Mapping[str, pa.Table]  # metrics.split_aggregates
    late: pa.Table  # event_id, event_time
    malformed: pa.Table  # line_no, raw, reason
    alerts: pa.Table | None = None  # ALERT_SCHEMA rows

    @property
    def valid_rows(self) -> int:
        """On-time valid events (late ones are counted apart)."""
        orders = self.metrics["sales_per_minute"]["orders"]
        return int(sum(orders.to_pylist()))

    @property
    def late_rows(self) -> int:
        return self.late.num_rows

    @property
    def malformed_rows(self) -> int:
        return self.malformed.num_rows

    @property
    def input_rows(self) -> int:
        return self.valid_rows + self.late_rows + self.malformed_rows

    @property
    def touched_minutes(self) -> tuple[dt.datetime, ...]:
        return tuple(self.metrics["sales_per_minute"]["window_start"].to_pylist())


@dataclass(frozen=True)
class CommitResult:
    committed: bool  # False: the ledger already had the batch (a replay), nothing written
    event_alerts: int = 0
    stateful_alerts: int = 0
    latency_histogram: dict[str, int] = field(default_factory=dict)


# --- the upserts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Upsert:
    """How one metric's delta rows are added to its table."""

    table: str
    keys: tuple[str, ...]
    additive: tuple[str, ...]
    key_types: tuple[str, ...]
    touch_updated_at: bool = False


_UPSERTS: dict[str, _Upsert] = {
    "sales_per_minute": _Upsert(
        tables.SALES_PER_MINUTE,
        ("window_start",),
        ("orders", "units", "revenue"),
        ("timestamptz",),
        touch_updated_at=True,
    ),
    "product_minute_sales": _Upsert(
        tables.PRODUCT_MINUTE,
        ("window_start", "product_id"),
        ("orders", "units", "revenue"),
        ("timestamptz", "bigint"),
    ),
    "customer_minute": _Upsert(
        tables.CUSTOMER_MINUTE,
        ("window_start", "customer_id"),
        ("orders", "revenue"),
        ("timestamptz", "bigint"),
    ),
    "revenue_daily": _Upsert(
        tables.REVENUE_DAILY,
        ("day",),
        ("orders", "units", "revenue"),
        ("date",),
        touch_updated_at=True,
    ),
    "product_units": _Upsert(tables.PRODUCT_UNITS, ("product_id",), ("units",), ("bigint",)),
}
_VALUE_TYPES = {"orders": "bigint", "units": "bigint", "revenue": "numeric(18, 2)"}
# product_units names its column units_sold; every other table uses the metric's names.
_TARGET_COLUMN = {("product_units", "units"): "units_sold"}

_CSV_OPTIONS: Any = None


def _csv_options() -> Any:
    global _CSV_OPTIONS
    if _CSV_OPTIONS is None:
        from pyarrow import csv

        _CSV_OPTIONS = csv.WriteOptions(include_header=False, quoting_style="all_valid")
    return _CSV_OPTIONS


def _copy_into(cursor: psycopg.Cursor, table: str, data: pa.Table) -> None:
    """COPY an Arrow table (columns named like the table's) into ``table``."""
    if data.num_rows == 0:
        return
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(*table.split(".")) if "." in table else sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(name) for name in data.column_names),
    )
    with cursor.copy(query) as copy:
        for batch in data.to_batches():
            copy.write(_arrow_to_csv(batch, _csv_options()))


def _temp_table(cursor: psycopg.Cursor, name: str, columns: Sequence[tuple[str, str]]) -> None:
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
            sql.Identifier(name),
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(pg_type))
                for col, pg_type in columns
            ),
        )
    )


def _add_metric(cursor: psycopg.Cursor, metric: str, rows: pa.Table, window: dt.timedelta) -> None:
    """Stage one metric's deltas and add them to its table (``t.x + EXCLUDED.x``)."""
    spec = _UPSERTS[metric]
    if rows.num_rows == 0:
        return
    staged = f"_delta_{metric}"
    columns = [*zip(spec.keys, spec.key_types, strict=True)] + [
        (name, _VALUE_TYPES[name]) for name in spec.additive
    ]
    _temp_table(cursor, staged, columns)
    _copy_into(cursor, staged, rows.select([name for name, _ in columns]))
    target = [_TARGET_COLUMN.get((metric, name), name) for name in spec.keys + spec.additive]
    select = [sql.Identifier(name) for name, _ in columns]
    if metric == "sales_per_minute":
        target.append("window_end")
        select.append(sql.SQL("window_start + {}::interval").format(sql.Literal(window)))
    updates = [
        sql.SQL("{c} = t.{c} + EXCLUDED.{c}").format(c=sql.Identifier(name))
        for name in target
        if name not in spec.keys and name != "window_end"
    ]
    if spec.touch_updated_at:
        updates.append(sql.SQL("updated_at = now()"))
    cursor.execute(
        sql.SQL(
            "INSERT INTO {target} AS t ({columns}) SELECT {select} FROM {staged} "
            "ON CONFLICT ({keys}) DO UPDATE SET {updates}"
        ).format(
            target=sql.Identifier(*spec.table.split(".")),
            columns=sql.SQL(", ").join(sql.Identifier(name) for name in target),
            select=sql.SQL(", ").join(select),
            staged=sql.Identifier(staged),
            keys=sql.SQL(", ").join(sql.Identifier(name) for name in spec.keys),
            updates=sql.SQL(", ").join(updates),
        )
    )


def _with_constants(data: pa.Table, **values: Any) -> pa.Table:
    for name, value in values.items():
        data = data.append_column(name, pa.array([value] * data.num_rows))
    return data


# --- the transaction -----------------------------------------------------------------------


def _check_state(cursor: psycopg.Cursor, delta: BatchDelta) -> None:
    """Refuse to commit on a watermark other than the one the batch was computed with (another
    process committed in between), or into a closed window (a bug: closed windows are final)."""
    row = cursor.execute(
        f"SELECT watermark FROM {tables.QUERY_STATE} WHERE query_name = %s FOR UPDATE",
        (delta.query_name,),
    ).fetchone()
    current = row[0] if row else None
    if current != delta.previous_watermark:
        raise StreamStateError(
            f"query '{delta.query_name}' batch {delta.batch_id}: the watermark in "
            f"{tables.QUERY_STATE} is {current}, the batch was computed with "
            f"{delta.previous_watermark} (is another process running this query?)"
        )
    if delta.touched_minutes:
        closed = cursor.execute(
            f"SELECT min(window_start) FROM {tables.SALES_PER_MINUTE} "
            "WHERE window_start = ANY(%s) AND is_closed",
            (list(delta.touched_minutes),),
        ).fetchone()
        if closed and closed[0] is not None:
            raise StreamStateError(
                f"query '{delta.query_name}' batch {delta.batch_id} would change the closed "
                f"window starting {closed[0]} (watermark {delta.previous_watermark})"
            )


def commit_batch(
    pg: PgSettings,
    delta: BatchDelta,
    *,
    alert_hook: StatefulAlerts | None = None,
    started: float | None = None,
) -> CommitResult:
    """Write one micro-batch exactly once (see the module docstring); ``started`` is the
    ``time.perf_counter()`` at which the batch began, for its recorded duration."""
    with connect(pg) as conn, conn.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")
        inserted = cursor.execute(
            f"INSERT INTO {tables.BATCHES} (query_name, batch_id, input_rows, valid_rows, "
            "malformed_rows, late_rows, watermark, max_event_time) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING batch_id",
            (
                delta.query_name,
                delta.batch_id,
                delta.input_rows,
                delta.valid_rows,
                delta.malformed_rows,
                delta.late_rows,
                delta.new_watermark,
                delta.max_event_time,
            ),
        ).fetchone()
        if inserted is None:
            conn.rollback()
            log.info("batch %s of %s was already committed", delta.batch_id, delta.query_name)
            return CommitResult(committed=False)
        _check_state(cursor, delta)

        for metric in _UPSERTS:
            _add_metric(cursor, metric, delta.metrics[metric], delta.window)
        if delta.new_watermark is not None:
            cursor.execute(
                f"UPDATE {tables.SALES_PER_MINUTE} SET is_closed = true, updated_at = now() "
                "WHERE NOT is_closed AND window_end <= %s",
                (delta.new_watermark,),
            )
        cursor.execute(
            f"INSERT INTO {tables.QUERY_STATE} AS s (query_name, max_event_time, watermark) "
            "VALUES (%s, %s, %s) ON CONFLICT (query_name) DO UPDATE SET "
            "max_event_time = greatest(s.max_event_time, EXCLUDED.max_event_time), "
            "watermark = EXCLUDED.watermark, updated_at = now()",
            (delta.query_name, delta.max_event_time, delta.new_watermark),
        )

        if delta.late.num_rows:
            _temp_table(cursor, "_late", [("event_id", "text"), ("event_time", "timestamptz")])
            _copy_into(cursor, "_late", delta.late.select(["event_id", "event_time"]))
            cursor.execute(
                f"INSERT INTO {tables.LATE_EVENTS} "
                "(query_name, batch_id, event_id, event_time, watermark) "
                "SELECT %s, %s, event_id, event_time, %s FROM _late "
                "ON CONFLICT (query_name, event_id) DO NOTHING",
                (delta.query_name, delta.batch_id, delta.previous_watermark),
            )
        _copy_into(
            cursor,
            tables.QUARANTINE,
            _with_constants(
                delta.malformed.select(["line_no", "raw", "reason"]),
                query_name=delta.query_name,
                batch_id=delta.batch_id,
            ),
        )
        event_alerts = _insert_alerts(cursor, delta)

        detected_at = cursor.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        context = BatchContext(
            query_name=delta.query_name,
            batch_id=delta.batch_id,
            previous_watermark=delta.previous_watermark,
            new_watermark=delta.new_watermark,
            touched_minutes=delta.touched_minutes,
            detected_at=detected_at,
        )
        stateful = alert_hook.stateful_alerts(cursor, context) if alert_hook else 0

        committed_at = dt.datetime.now(dt.timezone.utc)
        buckets = delta.metrics["event_time_buckets"]
        histogram = latency_histogram(
            zip(buckets["event_bucket"].to_pylist(), buckets["orders"].to_pylist(), strict=True),
            committed_at,
        )
        duration_ms = None if started is None else int((time.perf_counter() - started) * 1000)
        cursor.execute(
            f"UPDATE {tables.BATCHES} SET committed_at = %s, duration_ms = %s, "
            "latency_histogram = %s WHERE query_name = %s AND batch_id = %s",
            (
                committed_at,
                duration_ms,
                json.dumps(histogram),
                delta.query_name,
                delta.batch_id,
            ),
        )
        conn.commit()
    return CommitResult(True, event_alerts, int(stateful or 0), histogram)


def _insert_alerts(cursor: psycopg.Cursor, delta: BatchDelta) -> int:
    """Per-event alerts: a deterministic ``alert_id`` makes a repeat a no-op."""
    if delta.alerts is None or delta.alerts.num_rows == 0:
        return 0
    names = delta.alerts.column_names
    staged = _with_constants(delta.alerts, query_name=delta.query_name, batch_id=delta.batch_id)
    cursor.execute(f"CREATE TEMP TABLE _alerts (LIKE {tables.ALERTS}) ON COMMIT DROP")
    _copy_into(cursor, "_alerts", staged)
    columns = ", ".join([*names, "query_name", "batch_id"])
    cursor.execute(
        f"INSERT INTO {tables.ALERTS} ({columns}) SELECT {columns} FROM _alerts "
        "ON CONFLICT (alert_id) DO NOTHING"
    )
    return cursor.rowcount


# --- ledger and state reads ----------------------------------------------------------------


@dataclass(frozen=True)
class QueryState:
    watermark: dt.datetime | None = None
    max_event_time: dt.datetime | None = None
    query_id: str | None = None
    batches: int = 0  # committed batches in the ledger


def read_query_state(pg: PgSettings, query_name: str) -> QueryState:
    """The watermark and checkpoint id PostgreSQL holds for ``query_name``."""
    with connect(pg) as conn:
        row = conn.execute(
            f"SELECT s.watermark, s.max_event_time, s.query_id, "
            f"(SELECT count(*) FROM {tables.BATCHES} b WHERE b.query_name = %s) "
            f"FROM (SELECT 1) one LEFT JOIN {tables.QUERY_STATE} s ON s.query_name = %s",
            (query_name, query_name),
        ).fetchone()
    if row is None:
        return QueryState()
    return QueryState(row[0], row[1], row[2], int(row[3]))


def is_committed(pg: PgSettings, query_name: str, batch_id: int) -> bool:
    with connect(pg) as conn:
        return (
            conn.execute(
                f"SELECT 1 FROM {tables.BATCHES} WHERE query_name = %s AND batch_id = %s",
                (query_name, batch_id),
            ).fetchone()
            is not None
        )


def record_query_id(pg: PgSettings, query_name: str, query_id: str) -> None:
    """Remember which checkpoint (Spark's query id) the state belongs to."""
    with connect(pg) as conn:
        conn.execute(
            f"INSERT INTO {tables.QUERY_STATE} AS s (query_name, query_id) VALUES (%s, %s) "
            "ON CONFLICT (query_name) DO UPDATE SET query_id = EXCLUDED.query_id "
            "WHERE s.query_id IS NULL",
            (query_name, query_id),
        )
        conn.commit()


# --- Parquet archive -----------------------------------------------------------------------


def archive_batch(output_dir: Path, delta: BatchDelta) -> list[Path]:
    """Write the batch's non-empty metric deltas (and late events) as
    ``<output_dir>/<metric>/batch_id=<n>.parquet``; written to a temporary name and renamed, so
    a replay replaces a file with the same rows and a reader never sees half a file."""
    written = []
    parts = {**delta.metrics, "late_events": delta.late}
    for name, data in parts.items():
        if data.num_rows == 0:
            continue
        target = output_dir / name / f"batch_id={delta.batch_id}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        pq.write_table(data, temporary)
        os.replace(temporary, target)
        written.append(target)
    return written
