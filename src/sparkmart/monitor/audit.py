"""The audit trail in PostgreSQL: runs, their steps' metrics, lineage, and high-water marks.

``audit.pipeline_runs`` gets its row when a run starts (status ``running``, who started it, the
Spark application id) and is completed when it ends (``succeeded`` or ``failed`` with the error),
so a crashed run is visible too. ``audit.watermarks`` keeps, per entity, the latest
``updated_at`` a successful run has processed; it is advanced in the same transaction that marks
the run succeeded.

``audit.step_metrics`` has one row per step of a run as soon as the step ends: wall time, the
rows the pipeline counted and Spark's own metrics (``monitor.metrics``), one column each.
``audit.lineage`` has one row per dataset a step read or wrote (``monitor.lineage``), with who
recorded it and when; the view ``audit.writes`` is its outputs: the audit trail of every write
to PostgreSQL, every snapshot and every file dataset.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.types.json import Jsonb

from sparkmart.io.postgres import PgSettings, connect

if TYPE_CHECKING:
    from sparkmart.monitor.metrics import StepMetrics

AUDIT_DDL = (
    """
    CREATE TABLE IF NOT EXISTS audit.pipeline_runs (
        run_id        text PRIMARY KEY,
        pipeline      text NOT NULL,
        mode          text NOT NULL,
        config_digest text NOT NULL,
        parameters    jsonb NOT NULL DEFAULT '{}'::jsonb,
        started_at    timestamp NOT NULL,  -- UTC
        finished_at   timestamp,           -- UTC
        status        text NOT NULL,
        rows          jsonb,
        quarantined   jsonb,
        steps         jsonb,
        error         text
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS audit.watermarks (
        pipeline    text NOT NULL,
        entity      text NOT NULL,
        high_water  timestamp NOT NULL,
        run_id      text NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (pipeline, entity)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS audit.step_metrics (
        run_id          text NOT NULL,
        step_index      integer NOT NULL,
        pipeline        text NOT NULL,
        step            text NOT NULL,
        status          text NOT NULL,
        started_at      timestamptz,
        finished_at     timestamptz,
        wall_seconds    double precision NOT NULL,
        rows_in         bigint,
        rows_out        bigint,
        rows_per_second double precision,
        metrics_source  text NOT NULL,   -- 'rest', or 'unavailable: <why>'
        spark_app_id    text,
        job_ids         integer[],
        stage_ids       integer[],
        stage_breakdown jsonb,           -- one object per stage attempt
        extra           jsonb,
        PRIMARY KEY (run_id, step_index)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS audit.lineage (
        lineage_id         bigserial PRIMARY KEY,
        run_id             text NOT NULL,
        pipeline           text NOT NULL,
        step               text NOT NULL,
        openlineage_run_id uuid NOT NULL,  -- the step's run in the OpenLineage events
        direction          text NOT NULL CHECK (direction IN ('input', 'output')),
        namespace          text NOT NULL,  -- 'file' or 'postgres://host:port'
        name               text NOT NULL,  -- absolute path or database.schema.table
        format             text NOT NULL,
        schema             jsonb NOT NULL, -- [{name, type, nullable}]
        rows               bigint,
        recorded_at        timestamptz NOT NULL DEFAULT now(),
        recorded_by        text NOT NULL,  -- OS user@host of the process
        db_user            text NOT NULL DEFAULT current_user
    )
    """,
    "CREATE INDEX IF NOT EXISTS lineage_run_idx ON audit.lineage (run_id)",
    """
    CREATE OR REPLACE VIEW audit.writes AS
    SELECT recorded_at AS written_at,
           recorded_by,
           db_user,
           run_id,
           pipeline,
           step,
           CASE WHEN namespace LIKE 'postgres://%' THEN 'postgres'
                WHEN format = 'snapshot' THEN 'snapshot'
                ELSE 'file' END AS target_kind,
           namespace,
           name AS target,
           format,
           rows
    FROM audit.lineage
    WHERE direction = 'output'
    """,
)


# Columns added after a table's first release: added to existing databases when missing.
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    # who started a run and which Spark application ran it (its UI, event log, history server)
    "pipeline_runs": {"started_by": "text", "spark_app_id": "text"},
}


def actor() -> str:
    """Who is running this process: ``user@host``, for the audit trail."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def config_digest(config_dir: Path) -> str:
    """SHA-256 over every config file's name and bytes: which configuration a run used."""
    digest = hashlib.sha256()
    for path in sorted(config_dir.iterdir()):
        if path.is_file() and path.suffix in {".json", ".yaml", ".yml"}:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_audit_tables(pg: PgSettings) -> None:
    """Create (or bring up to date) the audit tables; idempotent. The DDL runs under an
    advisory lock, as concurrent ``CREATE ... IF NOT EXISTS`` can collide in the catalog, and a
    column is only added when missing (``ALTER TABLE`` locks the table even when it has nothing
    to do)."""
    from sparkmart.monitor.metrics import METRIC_FIELDS, SparkStepMetrics

    kinds = SparkStepMetrics.__annotations__
    wanted = {
        **ADDED_COLUMNS,
        "step_metrics": {
            name: "bigint" if kinds[name] == "int" else "double precision"
            for name in METRIC_FIELDS  # one column per Spark metric, as metrics are added
        },
    }
    with connect(pg, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('sparkmart.audit'))")
        conn.execute("CREATE SCHEMA IF NOT EXISTS audit")
        for ddl in AUDIT_DDL:
            conn.execute(ddl)
        existing = set(
            conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'audit'"
            ).fetchall()
        )
        for table, columns in wanted.items():
            for name, pg_type in columns.items():
                if (table, name) not in existing:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            sql.Identifier("audit", table), sql.Identifier(name), sql.SQL(pg_type)
                        )
                    )


def start_run(
    pg: PgSettings,
    run_id: str,
    pipeline: str,
    mode: str,
    digest: str,
    parameters: Mapping[str, Any],
    started_at: dt.datetime,
    spark_app_id: str | None = None,
) -> None:
    ensure_audit_tables(pg)
    with connect(pg) as conn:
        conn.execute(
            "INSERT INTO audit.pipeline_runs (run_id, pipeline, mode, config_digest, parameters, "
            "started_at, status, started_by, spark_app_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'running', %s, %s)",
            (
                run_id,
                pipeline,
                mode,
                digest,
                Jsonb(dict(parameters)),
                started_at,
                actor(),
                spark_app_id,
            ),
        )


def finish_run(
    pg: PgSettings,
    run_id: str,
    status: str,
    finished_at: dt.datetime,
    rows: Mapping[str, Any] | None = None,
    quarantined: Mapping[str, Any] | None = None,
    steps: list[dict[str, Any]] | None = None,
    error: str | None = None,
    watermarks: Mapping[str, dt.datetime] | None = None,
    pipeline: str = "batch",
) -> None:
    """Complete the run's row; on success advance the watermarks in the same transaction."""

    def as_json(value: Any) -> Jsonb | None:
        return None if value is None else Jsonb(json.loads(json.dumps(value, default=str)))

    with connect(pg) as conn:
        conn.execute(
            "UPDATE audit.pipeline_runs SET status = %s, finished_at = %s, rows = %s, "
            "quarantined = %s, steps = %s, error = %s WHERE run_id = %s",
            (
                status,
                finished_at,
                as_json(rows),
                as_json(quarantined),
                as_json(steps),
                error,
                run_id,
            ),
        )
        for entity, high_water in (watermarks or {}).items():
            if high_water is None:
                continue
            conn.execute(
                "INSERT INTO audit.watermarks (pipeline, entity, high_water, run_id) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (pipeline, entity) DO UPDATE SET "
                "high_water = GREATEST(audit.watermarks.high_water, EXCLUDED.high_water), "
                "run_id = EXCLUDED.run_id, updated_at = now()",
                (pipeline, entity, high_water, run_id),
            )


def read_watermarks(pg: PgSettings, pipeline: str = "batch") -> dict[str, dt.datetime]:
    ensure_audit_tables(pg)
    with connect(pg) as conn:
        rows = conn.execute(
            "SELECT entity, high_water FROM audit.watermarks WHERE pipeline = %s", (pipeline,)
        ).fetchall()
    return {entity: high_water for entity, high_water in rows}


def last_successful_start(pg: PgSettings, pipeline: str = "batch") -> dt.datetime | None:
    """When the latest successful run of ``pipeline`` started (UTC, naive), or None."""
    ensure_audit_tables(pg)
    with connect(pg) as conn:
        row = conn.execute(
            "SELECT max(started_at) FROM audit.pipeline_runs "
            "WHERE pipeline = %s AND status = 'succeeded'",
            (pipeline,),
        ).fetchone()
    return row[0] if row else None


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(json.loads(json.dumps(value, default=str)))


def record_step_metrics(
    pg: PgSettings, run_id: str, pipeline: str, step: StepMetrics, spark_app_id: str | None
) -> None:
    """Insert (or replace) one step's row of ``audit.step_metrics``."""
    from sparkmart.monitor.metrics import METRIC_FIELDS, SparkStepMetrics

    spark = step.spark or SparkStepMetrics.unavailable("not collected")
    values: dict[str, Any] = {
        "run_id": run_id,
        "step_index": step.index,
        "pipeline": pipeline,
        "step": step.name,
        "status": step.status,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "wall_seconds": step.seconds,
        "rows_in": step.rows_in,
        "rows_out": step.rows_out,
        "rows_per_second": step.rows_per_second,
        "metrics_source": spark.source,
        "spark_app_id": spark_app_id,
        "job_ids": spark.job_ids,
        "stage_ids": spark.stage_ids,
        "stage_breakdown": _jsonb(spark.stage_breakdown),
        "extra": _jsonb(step.extra),
    }
    values.update({name: getattr(spark, name) for name in METRIC_FIELDS})
    columns = list(values)
    statement = sql.SQL(
        "INSERT INTO audit.step_metrics ({}) VALUES ({}) "
        "ON CONFLICT (run_id, step_index) DO UPDATE SET {}"
    ).format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
            for c in columns
            if c not in ("run_id", "step_index")
        ),
    )
    with connect(pg) as conn:
        conn.execute(statement, list(values.values()))


def record_lineage(
    pg: PgSettings,
    run_id: str,
    pipeline: str,
    step: str,
    openlineage_run_id: str,
    datasets: list[tuple[str, Mapping[str, Any]]],
) -> None:
    """One ``audit.lineage`` row per (direction, dataset) of a step, in one transaction."""
    who = actor()
    with connect(pg) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO audit.lineage (run_id, pipeline, step, openlineage_run_id, direction, "
            "namespace, name, format, schema, rows, recorded_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    run_id,
                    pipeline,
                    step,
                    openlineage_run_id,
                    direction,
                    ref["namespace"],
                    ref["name"],
                    ref["format"],
                    _jsonb(ref["schema"]),
                    ref["rows"],
                    who,
                )
                for direction, ref in datasets
            ],
        )
