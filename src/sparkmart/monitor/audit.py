"""The audit trail in PostgreSQL: one row per pipeline run, and the incremental high-water marks.

``audit.pipeline_runs`` gets its row when a run starts (status ``running``) and is completed
when it ends (``succeeded`` or ``failed`` with the error), so a crashed run is visible too.
``audit.watermarks`` keeps, per entity, the latest ``updated_at`` a successful run has processed;
it is advanced in the same transaction that marks the run succeeded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from sparkmart.io.postgres import PgSettings, connect

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
)


def config_digest(config_dir: Path) -> str:
    """SHA-256 over every config file's name and bytes: which configuration a run used."""
    digest = hashlib.sha256()
    for path in sorted(config_dir.iterdir()):
        if path.is_file() and path.suffix in {".json", ".yaml", ".yml"}:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_audit_tables(pg: PgSettings) -> None:
    with connect(pg, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS audit")
        for ddl in AUDIT_DDL:
            conn.execute(ddl)


def start_run(
    pg: PgSettings,
    run_id: str,
    pipeline: str,
    mode: str,
    digest: str,
    parameters: Mapping[str, Any],
    started_at: dt.datetime,
) -> None:
    ensure_audit_tables(pg)
    with connect(pg) as conn:
        conn.execute(
            "INSERT INTO audit.pipeline_runs "
            "(run_id, pipeline, mode, config_digest, parameters, started_at, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'running')",
            (run_id, pipeline, mode, digest, Jsonb(dict(parameters)), started_at),
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
