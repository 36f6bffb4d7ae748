"""Where the run monitor finds live Spark UIs: ``audit.spark_sessions``.

A SparkSession only knows its UI address (``sc.uiWebUrl``) inside the driver, and the dashboard
runs in another process, possibly on another machine. So a driver records its application id and
UI address when it starts (``record_spark_session``) and marks the row ended when it stops
(``end_spark_session``). A crashed driver never marks its row, so the dashboard does not trust
``ended_at`` alone: a session is *live* when its UI answers the REST call
``GET <ui_url>/api/v1/applications/<app_id>`` within a short timeout.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sparkmart.io.postgres import PgSettings, connect

SPARK_SESSIONS = "audit.spark_sessions"
RECENT_SESSIONS = 10  # the newest open sessions probed per request

DDL = f"""
CREATE SCHEMA IF NOT EXISTS audit;
CREATE TABLE IF NOT EXISTS {SPARK_SESSIONS} (
    app_id     text PRIMARY KEY,          -- sc.applicationId
    app_name   text NOT NULL,
    master     text NOT NULL,
    ui_url     text NOT NULL,             -- sc.uiWebUrl, as the driver sees itself
    purpose    text,                      -- what started it: batch, stream, ml, ...
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    ended_at   timestamptz
);
CREATE INDEX IF NOT EXISTS spark_sessions_open ON {SPARK_SESSIONS} (started_at DESC)
    WHERE ended_at IS NULL;
"""


def ensure_spark_sessions_table(pg: PgSettings) -> None:
    with connect(pg) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('sparkmart.audit.ddl', 0))")
        conn.execute(DDL)
        conn.commit()


def record_spark_session(pg: PgSettings, spark: Any, purpose: str | None = None) -> str | None:
    """Record a driver's UI for the run monitor; returns the app id (None when the UI is off
    or the session has no local SparkContext, e.g. Spark Connect)."""
    try:
        context = spark.sparkContext
        ui_url = context.uiWebUrl
    except Exception:  # Spark Connect sessions have no SparkContext
        return None
    if not ui_url:
        return None
    ensure_spark_sessions_table(pg)
    with connect(pg) as conn:
        conn.execute(
            f"INSERT INTO {SPARK_SESSIONS} "
            "(app_id, app_name, master, ui_url, purpose, host, pid) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (app_id) DO UPDATE SET "
            "ui_url = EXCLUDED.ui_url, purpose = EXCLUDED.purpose, ended_at = NULL",
            (
                context.applicationId,
                context.appName,
                context.master,
                ui_url,
                purpose,
                socket.gethostname(),
                os.getpid(),
            ),
        )
        conn.commit()
    return str(context.applicationId)


def end_spark_session(pg: PgSettings, app_id: str) -> None:
    """Mark a recorded session as stopped (call before ``spark.stop()``)."""
    with connect(pg) as conn:
        conn.execute(
            f"UPDATE {SPARK_SESSIONS} SET ended_at = now() WHERE app_id = %s AND ended_at IS NULL",
            (app_id,),
        )
        conn.commit()


def ui_answers(ui_url: str, app_id: str, timeout: float) -> bool:
    """True when the UI at ``ui_url`` serves application ``app_id`` (Spark's REST API)."""
    url = f"{ui_url.rstrip('/')}/api/v1/applications/{app_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200 and json.load(response).get("id") == app_id
    except (OSError, ValueError, urllib.error.URLError):
        return False


def live_sessions(conn: psycopg.Connection, timeout: float) -> list[dict[str, Any]]:
    """The recorded, not ended sessions whose UI answers now (probed in parallel)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        exists = cursor.execute("SELECT to_regclass(%s) AS t", (SPARK_SESSIONS,)).fetchone()
        if not exists or exists["t"] is None:
            return []
        sessions = cursor.execute(
            f"SELECT app_id, app_name, master, ui_url, purpose, host, pid, started_at "
            f"FROM {SPARK_SESSIONS} WHERE ended_at IS NULL ORDER BY started_at DESC LIMIT %s",
            (RECENT_SESSIONS,),
        ).fetchall()
    if not sessions:
        return []
    with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        answers = list(pool.map(lambda s: ui_answers(s["ui_url"], s["app_id"], timeout), sessions))
    return [session for session, live in zip(sessions, answers, strict=True) if live]
