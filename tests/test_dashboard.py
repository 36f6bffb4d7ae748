"""The dashboard in a real browser: headless Chromium (Debian's) driven by Playwright, against the
app served in-process on a free port and the test session's PostgreSQL database filled with a few
inline rows through the project's own DDL (stream tables, gold schemas, audit tables).

Every chart is checked against PostgreSQL, read back from the page (plotly keeps the drawn data on
the chart element). Also: the live page follows new stream rows, the filters change what is
shown, an empty database gives empty states, a stopped PostgreSQL gives a message, and no page
logs a console error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from sparkmart.batch.analytics import GOLD_SCHEMAS
from sparkmart.batch.export import TABLE_KEYS
from sparkmart.config import ConfigError, Settings
from sparkmart.dashboard.app import create_app
from sparkmart.io.postgres import (
    PgSettings,
    connect,
    create_table_sql,
    drop_database,
    ensure_database,
    ensure_schemas,
    query_rows,
    table_exists,
)
from sparkmart.monitor import spark_sessions
from sparkmart.monitor.audit import ensure_audit_tables
from sparkmart.stream import tables
from sparkmart.stream.tables import ensure_stream_tables

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.postgres

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WAIT_MS = 15_000


def minute(n: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


# --- data: a few rows in every table the dashboard reads -------------------------------------


def insert(conn: Any, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    names = [name.strip() for name in columns.split(",")]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(*table.split(".")),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    conn.cursor().executemany(statement, rows)


def fill_stream(pg: PgSettings) -> None:
    ensure_stream_tables(pg)
    sales = [
        (minute(0), minute(1), 10, 12, 100.00, True),
        (minute(1), minute(2), 20, 25, 250.50, True),
        (minute(2), minute(3), 15, 15, 180.25, True),
        (minute(3), minute(4), 30, 33, 420.00, False),
    ]
    product_sales = [
        (minute(0), 1, 3, 3, 30.00),
        (minute(0), 2, 7, 9, 70.00),
        (minute(1), 1, 10, 12, 150.50),
        (minute(1), 3, 10, 13, 100.00),
        (minute(2), 2, 5, 5, 60.25),
        (minute(2), 4, 10, 10, 120.00),
        (minute(3), 3, 20, 20, 300.00),
        (minute(3), 4, 10, 13, 120.00),
    ]
    customers = [
        (minute(1), 103, 1, 5),
        (minute(2), 101, 1, 10),
        (minute(3), 101, 2, 50),
        (minute(3), 102, 1, 20),
    ]
    alerts = [
        ("a1", "sales_drop", "critical", "k1", "orders fell to 20%", minute(2), minute(3)),
        ("a2", "customer_burst", "warning", "k2", "customer 101: 9 orders", minute(1), minute(2)),
        ("a3", "high_value", "info", "k3", "order of 6,000.00", minute(0), minute(1)),
    ]
    with connect(pg) as conn:
        insert(
            conn,
            tables.SALES_PER_MINUTE,
            "window_start, window_end, orders, units, revenue, is_closed",
            sales,
        )
        insert(
            conn,
            tables.PRODUCT_MINUTE,
            "window_start, product_id, orders, units, revenue",
            product_sales,
        )
        insert(
            conn, tables.CUSTOMER_MINUTE, "window_start, customer_id, orders, revenue", customers
        )
        insert(
            conn,
            tables.REVENUE_DAILY,
            "day, orders, units, revenue",
            [(dt.date(2026, 11, 24), 500, 600, 7000.00), (dt.date(2026, 11, 25), 75, 85, 950.75)],
        )
        insert(
            conn,
            tables.ALERTS,
            "alert_id, alert_type, severity, alert_key, message, event_time, detected_at",
            alerts,
        )
        conn.execute(
            f"INSERT INTO {tables.BATCHES} (query_name, batch_id, committed_at, input_rows, "
            "valid_rows, malformed_rows, late_rows, duration_ms, latency_histogram) "
            "VALUES ('orders', 7, clock_timestamp(), 75, 74, 1, 0, 850, %s)",
            (json.dumps({"0": 50, "100": 20, "1500": 5}),),
        )
        conn.commit()


DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(10)]
ANALYTICS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "products": (
        "product_id, name, category, price",
        [
            (1, "Laptop", "electronics", 999.00),
            (2, "Novel", "books", 12.50),
            (3, "Phone", "electronics", 599.00),
            (4, "Atlas", "books", 45.00),
            (5, "Lamp", "home_garden", 30.00),
        ],
    ),
    "product_performance": (
        "product_id, name, category, units_sold, orders, revenue, margin, margin_rate, "
        "category_rank",
        [
            (1, "Laptop", "electronics", 40, 38, 39000.00, 9000.00, 0.23, 1),
            (2, "Novel", "books", 300, 280, 3500.00, 1400.00, 0.40, 2),
            (3, "Phone", "electronics", 50, 50, 29000.00, 5800.00, 0.20, 2),
            (4, "Atlas", "books", 120, 110, 5200.00, 1560.00, 0.30, 1),
            (5, "Lamp", "home_garden", 0, 0, 0.00, 0.00, None, 1),
        ],
    ),
    "customer_ltv": (
        "customer_id, first_order_date, last_order_date, orders, revenue, predicted_clv",
        [
            (101, dt.date(2024, 1, 10), dt.date(2026, 1, 2), 12, 1400, 1500),
            (102, dt.date(2024, 2, 1), dt.date(2025, 5, 1), 3, 280, 300),
            (103, dt.date(2024, 3, 15), dt.date(2024, 3, 15), 1, 50, 50),
            (104, dt.date(2025, 1, 5), dt.date(2026, 1, 3), 6, 700, 800),
            (105, dt.date(2025, 6, 1), dt.date(2025, 6, 1), 1, 20, 20),
            (106, dt.date(2025, 6, 20), dt.date(2026, 1, 5), 20, 4800, 5000),
        ],
    ),
    "customers": (
        "customer_id, first_name, last_name, lifetime_value, activity_score, "
        "preferred_category, segment",
        [
            (101, "Ada", "Lovelace", 1400, 0.9, "electronics", "loyal tech buyers"),
            (102, "Bo", "Berg", 280, 0.3, "books", "occasional readers"),
            (103, "Cy", "Chan", 50, 0.1, "electronics", "occasional readers"),
            (104, "Di", "Diaz", 700, 0.6, "electronics", "loyal tech buyers"),
            (105, "Ed", "Eze", 20, 0.1, "books", "occasional readers"),
            (106, "Flo", "Fox", 4800, 1.0, "electronics", "loyal tech buyers"),
            (107, "Gus", "Gray", None, 0.0, None, "no orders yet"),
        ],
    ),
    "sales_trends": (
        "grain, period_start, period_end, is_complete, orders_placed, orders, units, revenue, "
        "revenue_ma_7d",
        [
            ("day", d, d, True, 10 + i, 9 + i, 12 + i, 100.0 * (i + 1), 90.0 * (i + 1))
            for i, d in enumerate(DAYS)
        ]
        + [
            ("week", dt.date(2025, 12, 29), dt.date(2026, 1, 4), True, 60, 55, 70, 1500.0, None),
            ("week", dt.date(2026, 1, 5), dt.date(2026, 1, 11), False, 80, 75, 90, 4000.0, None),
            (
                "month",
                dt.date(2026, 1, 1),
                dt.date(2026, 1, 31),
                False,
                145,
                135,
                165,
                5500.0,
                None,
            ),
        ],
    ),
    "cohorts": (
        "cohort_month, months_since_first, cohort_size, active_customers, retention_rate",
        [
            (dt.date(2025, 1, 1), 0, 4, 4, 1.0),
            (dt.date(2025, 1, 1), 1, 4, 2, 0.5),
            (dt.date(2025, 1, 1), 2, 4, 1, 0.25),
            (dt.date(2025, 2, 1), 0, 5, 5, 1.0),
            (dt.date(2025, 2, 1), 1, 5, 2, 0.4),
        ],
    ),
}
# The ML outputs, with the columns ml/pipeline.py writes.
ML_TABLES = {
    "recommendations": "customer_id bigint NOT NULL, rank integer NOT NULL, product_id bigint, "
    "score double precision, PRIMARY KEY (customer_id, rank)",
    "sales_forecast": "date date PRIMARY KEY, target text, forecast double precision, "
    "lower double precision, upper double precision",
}
RECOMMENDATIONS = [
    (106, 1, 2, None),  # a buy-again slot: bought before, no ALS score
    (106, 2, 3, 0.8),
    (106, 3, 1, 0.5),
    (101, 1, 4, 0.7),
    (101, 2, 2, 0.6),
]
FORECAST = [
    (dt.date(2026, 1, 11) + dt.timedelta(days=i), "orders", 20.0 + i, 15.0 + i, 25.0 + i)
    for i in range(5)
]


def fill_analytics(pg: PgSettings) -> None:
    with connect(pg) as conn:
        for name, (columns, rows) in ANALYTICS.items():
            table = f"analytics.{name}"
            conn.execute(create_table_sql(table, GOLD_SCHEMAS[name], TABLE_KEYS[name]))
            insert(conn, table, columns, rows)
        for name, definition in ML_TABLES.items():
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier("analytics", name), sql.SQL(definition)
                )
            )
        insert(
            conn,
            "analytics.recommendations",
            "customer_id, rank, product_id, score",
            RECOMMENDATIONS,
        )
        insert(conn, "analytics.sales_forecast", "date, target, forecast, lower, upper", FORECAST)
        conn.commit()


STEPS = [  # as the batch pipeline records them; "metrics" are Spark's (monitor.metrics)
    {
        "name": "ingest (bronze)",
        "seconds": 1.5,
        "rows_in": None,
        "rows_out": 1000,
        "extra": {},
        "metrics": {"source": "rest", "shuffle_write_bytes": 1048576, "shuffle_read_bytes": 2048},
    },
    {
        "name": "quality (silver)",
        "seconds": 2.25,
        "rows_in": 1000,
        "rows_out": 950,
        "extra": {"quarantined": 30},
        "metrics": {"source": "unavailable: UI off", "shuffle_write_bytes": 0},
    },
]
ENTITY_ROWS = {
    "entities": [
        {"entity": "orders", "rows_in": 1000, "silver": 950, "quarantined": 30, "duplicates": 20}
    ]
}
RULES = [
    {"entity": "orders", "rule": "bad_quantity", "criticality": "error", "rows": 30},
    {"entity": "orders", "rule": "discount_missing", "criticality": "repair", "rows": 4},
    {"entity": "orders", "rule": "status_required", "criticality": "error", "rows": 0},
]


def fill_audit(pg: PgSettings, live_ui: str) -> None:
    """One finished run with its steps, one still running (its steps so far only in
    audit.step_metrics, when this tree's audit DDL has that table), two recorded Spark UIs."""
    ensure_audit_tables(pg)
    spark_sessions.ensure_spark_sessions_table(pg)
    with connect(pg) as conn:
        insert(
            conn,
            "audit.pipeline_runs",
            "run_id, pipeline, mode, config_digest, started_at, finished_at, status, rows, "
            "quarantined, steps",
            [
                (
                    "run-1",
                    "batch:/data/out",
                    "full",
                    "abc",
                    dt.datetime(2026, 11, 25, 11, 0),
                    dt.datetime(2026, 11, 25, 11, 0, 4),
                    "succeeded",
                    Jsonb(ENTITY_ROWS),
                    Jsonb(RULES),
                    Jsonb(STEPS),
                ),
                (
                    "run-2",
                    "batch:/data/out",
                    "incremental",
                    "abc",
                    dt.datetime(2026, 11, 25, 12, 0),
                    None,
                    "running",
                    None,
                    None,
                    None,
                ),
            ],
        )
        if table_exists(pg, "audit.step_metrics"):
            insert(
                conn,
                "audit.step_metrics",
                "run_id, step_index, pipeline, step, status, wall_seconds, rows_out, "
                "metrics_source, shuffle_read_bytes, shuffle_write_bytes",
                [("run-2", 0, "batch", "ingest (bronze)", "succeeded", 3.0, 500, "rest", 0, 4096)],
            )
        insert(
            conn,
            spark_sessions.SPARK_SESSIONS,
            "app_id, app_name, master, ui_url, purpose, host, pid",
            [
                ("app-live", "sparkmart", "local[2]", live_ui, "stream", "here", 1),
                ("app-gone", "sparkmart", "local[2]", "http://127.0.0.1:9", "batch", "here", 2),
            ],
        )
        conn.commit()


# --- servers and browser ---------------------------------------------------------------------


class FakeSparkUI(BaseHTTPRequestHandler):
    """Answers Spark's REST call for one application, as a live driver's UI does."""

    def do_GET(self) -> None:
        if self.path == "/api/v1/applications/app-live":
            body = json.dumps({"id": "app-live", "name": "sparkmart"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def spark_ui_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSparkUI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def serve_in_thread(app: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="module")
def pg(pg: PgSettings) -> Iterator[PgSettings]:
    """This module's own database (overriding the session's): the fixtures below create and
    fill stream, analytics and audit tables that other tests of the session create too."""
    own = pg.with_database(pg.dbname + "_dashboard")
    drop_database(own)
    ensure_database(own)
    ensure_schemas(own)
    yield own
    drop_database(own)


@pytest.fixture(scope="module")
def dashboard(settings: Settings, pg: PgSettings, spark_ui_server: str) -> Iterator[str]:
    """The app over the filled test database."""
    fill_stream(pg)
    fill_analytics(pg)
    fill_audit(pg, spark_ui_server)
    url, server, thread = serve_in_thread(create_app(settings, pg))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def empty_dashboard(settings: Settings, pg: PgSettings) -> Iterator[tuple[str, PgSettings]]:
    """The app over a database with the project's schemas and no tables."""
    empty = pg.with_database(pg.dbname + "_empty")
    ensure_database(empty)
    ensure_schemas(empty)
    url, server, thread = serve_in_thread(create_app(settings, empty))
    yield url, empty
    server.should_exit = True
    thread.join(10)
    drop_database(empty)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; missing is a skip on a workstation and a failure on CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs /usr/bin/chromium: `apt-get install chromium` (make setup)")
        pytest.skip("no /usr/bin/chromium: `apt-get install chromium` (make setup does)")
    if os.environ.get("CI"):
        from playwright.sync_api import sync_playwright
    else:
        sync_api = pytest.importorskip("playwright.sync_api", reason="run `make setup`")
        sync_playwright = sync_api.sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Console:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _message(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} ({message.location.get('url')})")


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One browser context for the module, so plotly.js is fetched and compiled once."""
    shared = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield shared
    shared.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    yield opened
    opened.close()


def chart(page: Page, element_id: str, trace: int = 0) -> dict[str, Any]:
    """The data plotly drew in a chart (x, y, z... of one trace)."""
    return page.evaluate(
        "([id, i]) => { const t = document.getElementById(id).data[i];"
        " return {x: t.x, y: t.y, z: t.z || null}; }",
        [element_id, trace],
    )


def open_page(page: Page, url: str, ready: str) -> Console:
    console = Console(page)
    page.goto(url)
    page.wait_for_function(ready)
    return console


def floats(values: list[Any]) -> list[float]:
    return [round(float(v), 2) for v in values]


def iso_minute(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


# --- tests -----------------------------------------------------------------------------------


def test_live_page_draws_the_stream_tables(page: Page, dashboard: str, pg: PgSettings) -> None:
    console = open_page(page, f"{dashboard}/live", "Number(document.body.dataset.polls) >= 1")

    sales = query_rows(
        pg,
        f"SELECT window_start, revenue, orders FROM {tables.SALES_PER_MINUTE} ORDER BY 1",
    )
    drawn = chart(page, "sales-chart")
    assert [x[:16] for x in drawn["x"]] == [iso_minute(r[0]) for r in sales]
    assert floats(drawn["y"]) == floats([r[1] for r in sales])
    assert chart(page, "sales-chart", 1)["y"] == [r[2] for r in sales]

    # the sliding window ending with the latest minute, as the stream's own view ranks it
    top = query_rows(
        pg,
        f"SELECT product_id, revenue FROM {tables.TOP_PRODUCTS} "
        "WHERE window_end = %s ORDER BY rank",
        (minute(4),),
    )
    bars = chart(page, "top-chart")
    assert floats(list(reversed(bars["x"]))) == floats([r[1] for r in top])
    assert [re.search(r"#(\d+)", label).group(1) for label in reversed(bars["y"])] == [
        str(r[0]) for r in top
    ]
    assert "Phone (#3)" in bars["y"]

    assert page.inner_text("#c-orders") == "30"
    assert page.inner_text("#c-revenue") == "420.00"
    assert page.inner_text("#c-active") == "3"  # customers 101, 102, 103 in the last 15 minutes
    assert page.inner_text("#c-today") == "950.75"
    severities = page.eval_on_selector_all("#alerts .badge", "els => els.map(e => e.textContent)")
    assert severities == ["critical", "warning", "info"]
    assert re.fullmatch(r"updated \d+ s ago · batch #7", page.inner_text("#freshness .text"))
    assert console.errors == []


def test_live_page_follows_new_stream_rows(page: Page, dashboard: str, pg: PgSettings) -> None:
    console = open_page(page, f"{dashboard}/live", "Number(document.body.dataset.polls) >= 1")
    assert chart(page, "sales-chart")["x"][-1][:16] == iso_minute(minute(3))
    with connect(pg) as conn:
        conn.execute(
            f"INSERT INTO {tables.SALES_PER_MINUTE} (window_start, window_end, orders, units, "
            "revenue) VALUES (%s, %s, 44, 50, 555.55)",
            (minute(4), minute(5)),
        )
        conn.execute(
            f"INSERT INTO {tables.PRODUCT_MINUTE} (window_start, product_id, orders, units, "
            "revenue) VALUES (%s, 5, 44, 50, 555.55)",
            (minute(4),),
        )
        conn.execute(
            f"INSERT INTO {tables.BATCHES} (query_name, batch_id, committed_at, input_rows, "
            "valid_rows, malformed_rows, late_rows) VALUES ('orders', 8, clock_timestamp(), 44, "
            "44, 0, 0)"
        )
        conn.commit()
    page.wait_for_function(
        "() => { const d = document.getElementById('sales-chart').data;"
        " return d && d[0].y[d[0].y.length - 1] === 555.55; }"
    )
    assert page.inner_text("#c-orders") == "44"
    page.wait_for_function("document.getElementById('top-chart').data[0].y.includes('Lamp (#5)')")
    page.wait_for_function("document.querySelector('#freshness .text').textContent.includes('#8')")
    assert console.errors == []


def test_live_category_filter_keeps_that_category(page: Page, dashboard: str) -> None:
    console = open_page(page, f"{dashboard}/live", "Number(document.body.dataset.polls) >= 1")
    page.wait_for_function("document.getElementById('category').dataset.loaded === 'true'")
    page.select_option("#category", "books")
    page.wait_for_function(
        "document.getElementById('top-chart').data[0].y.every(l => /Novel|Atlas/.test(l))"
    )
    bars = chart(page, "top-chart")
    assert bars["y"] == ["Novel (#2)", "Atlas (#4)"]  # best at the top: Atlas 240.00
    assert floats(bars["x"]) == [130.25, 240.0]
    assert console.errors == []


def test_analytics_page_matches_postgres(page: Page, dashboard: str, pg: PgSettings) -> None:
    console = open_page(page, f"{dashboard}/analytics", "document.body.dataset.ready === 'true'")

    (customers,) = query_rows(pg, "SELECT count(*) FROM analytics.customer_ltv")[0]
    assert sum(chart(page, "clv-chart")["y"]) == customers

    best = query_rows(
        pg,
        "SELECT name, revenue FROM analytics.product_performance ORDER BY revenue DESC LIMIT 20",
    )
    bars = chart(page, "products-chart")
    assert floats(list(reversed(bars["x"]))) == floats([r[1] for r in best])

    categories = query_rows(
        pg,
        "SELECT category, sum(revenue) FROM analytics.product_performance GROUP BY 1 "
        "ORDER BY 2 DESC",
    )
    drawn = chart(page, "categories-chart")
    assert list(zip(drawn["x"], floats(drawn["y"]), strict=True)) == [
        (c, round(float(r), 2)) for c, r in categories
    ]

    weeks = query_rows(
        pg,
        "SELECT period_start, revenue FROM analytics.sales_trends WHERE grain = 'week' ORDER BY 1",
    )
    trend = chart(page, "trends-chart")
    assert trend["x"] == [d.isoformat() for d, _ in weeks]
    assert floats(trend["y"]) == floats([r for _, r in weeks])

    forecast = query_rows(pg, "SELECT date, forecast FROM analytics.sales_forecast ORDER BY 1")
    line = chart(page, "forecast-chart", 3)
    assert line["x"] == [d.isoformat() for d, _ in forecast]
    assert line["y"] == [f for _, f in forecast]

    heat = chart(page, "cohorts-chart")
    assert heat["y"] == ["2025-01", "2025-02"]
    assert heat["z"] == [[100.0, 50.0, 25.0], [100.0, 40.0, None]]

    segments = query_rows(
        pg, "SELECT segment, count(*) FROM analytics.customers GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    seg = chart(page, "segments-chart")
    assert list(zip(seg["x"], seg["y"], strict=True)) == [(s, n) for s, n in segments]

    # the default customer is the highest predicted CLV with recommendations: 106
    assert page.input_value("#customer") == "106"
    names = page.eval_on_selector_all(
        "#recs-table tbody tr td:nth-child(2)", "els => els.map(e => e.textContent)"
    )
    assert names == ["Novel (#2)", "Phone (#3)", "Laptop (#1)"]
    scores = page.eval_on_selector_all(
        "#recs-table tbody tr td:nth-child(5)", "els => els.map(e => e.textContent)"
    )
    assert scores == ["buy again", "0.8", "0.5"]
    page.fill("#customer", "101")
    page.click("#show-recs")
    page.wait_for_function("document.querySelectorAll('#recs-table tbody tr').length === 2")
    assert "Ada Lovelace" in page.inner_text("#rec-customer")
    assert console.errors == []


def test_analytics_filters_change_what_is_shown(page: Page, dashboard: str) -> None:
    console = open_page(page, f"{dashboard}/analytics", "document.body.dataset.ready === 'true'")
    idle = "document.body.dataset.loading === '0'"

    page.select_option("#grain", "day")
    page.wait_for_function("document.getElementById('trends-chart').data[0].x.length === 10")
    page.fill("#date-from", "2026-01-03")
    page.fill("#date-to", "2026-01-05")
    page.dispatch_event("#date-to", "change")
    page.wait_for_function("document.getElementById('trends-chart').data[0].x.length === 3")
    page.wait_for_function(idle)
    assert chart(page, "trends-chart")["x"] == ["2026-01-03", "2026-01-04", "2026-01-05"]
    assert floats(chart(page, "trends-chart")["y"]) == [300.0, 400.0, 500.0]
    assert page.get_attribute("#p-forecast", "data-state") == "empty"  # forecast starts 01-11
    assert page.get_attribute("#p-cohorts", "data-state") == "empty"
    assert "no forecast for these filters" in page.inner_text("#p-forecast .empty-message")

    page.fill("#date-from", "2025-01-01")
    page.fill("#date-to", "2025-12-31")
    page.dispatch_event("#date-to", "change")
    page.wait_for_function(idle)
    assert sum(chart(page, "clv-chart")["y"]) == 3  # first orders in 2025: 104, 105, 106

    page.click("#reset")
    page.wait_for_function(idle)
    page.select_option("#category", "books")
    page.wait_for_function("document.getElementById('products-chart').data[0].y.length === 2")
    page.wait_for_function(idle)
    assert chart(page, "products-chart")["y"] == ["Novel (#2)", "Atlas (#4)"]
    assert chart(page, "segments-chart")["x"] == ["occasional readers"]
    assert sum(chart(page, "clv-chart")["y"]) == 2  # customers who prefer books: 102, 105
    page.select_option("#category", "home_garden")
    page.wait_for_function(idle)
    assert page.get_attribute("#p-segments", "data-state") == "empty"
    assert console.errors == []


def step_cells(run: Any) -> list[list[str]]:
    return run.locator("table.steps tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
    )


def test_run_monitor_shows_steps_shuffle_and_live_spark_ui(
    page: Page, dashboard: str, spark_ui_server: str
) -> None:
    console = open_page(page, f"{dashboard}/runs", "document.body.dataset.ready === 'true'")
    order = page.eval_on_selector_all("details.run[data-run]", "els => els.map(e => e.dataset.run)")
    assert order == ["run-2", "run-1"]  # newest first, and it starts open
    assert page.get_attribute("details.run[data-run='run-2']", "open") is not None
    run = page.locator("details.run[data-run='run-1']")
    summary = run.locator("summary").text_content()
    for value in ("succeeded", "full", "4.0 s", "1,000", "950", "30", "20"):
        assert value in summary
    # shuffle bytes where Spark's metrics were read, "—" where they were not
    assert step_cells(run) == [
        ["ingest (bronze)", "1.50", "—", "1,000", "—", "2.0 KiB", "1.0 MiB"],
        ["quality (silver)", "2.25", "1,000", "950", "30", "—", "—"],
    ]
    rules = run.locator("table.rules tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
    )
    assert rules == [
        ["quarantined", "orders", "bad_quantity 30"],
        ["repaired", "orders", "discount_missing 4"],
    ]
    assert chart(page, "steps-chart")["x"][0] == 1.5  # run-1, the oldest, at the bottom

    links = page.eval_on_selector_all("#sessions-table a", "els => els.map(e => e.href)")
    assert links == [f"{spark_ui_server}/"]  # the session whose UI does not answer is not shown
    batches = page.eval_on_selector_all(
        "#batches-table tbody tr td:first-child", "els => els.map(e => e.textContent)"
    )
    assert batches[-1] == "7"
    assert console.errors == []


def test_running_run_shows_the_steps_measured_so_far(
    page: Page, dashboard: str, pg: PgSettings
) -> None:
    if not table_exists(pg, "audit.step_metrics"):
        pytest.skip("this tree's monitor/audit.py does not create audit.step_metrics")
    open_page(page, f"{dashboard}/runs", "document.body.dataset.ready === 'true'")
    run = page.locator("details.run[data-run='run-2']")
    assert "running" in run.locator("summary").text_content()
    assert step_cells(run) == [["ingest (bronze)", "3.00", "—", "500", "—", "0 B", "4.0 KiB"]]


def test_empty_database_shows_empty_states(
    page: Page, empty_dashboard: tuple[str, PgSettings]
) -> None:
    url, empty = empty_dashboard
    console = open_page(page, f"{url}/live", "Number(document.body.dataset.polls) >= 1")
    assert page.get_attribute("#p-sales", "data-state") == "empty"
    assert "does not exist yet" in page.inner_text("#p-sales .empty-message")
    assert "sparkmart stream" in page.inner_text("#p-sales .empty-message")

    page.goto(f"{url}/analytics")
    page.wait_for_function("document.body.dataset.ready === 'true'")
    for panel in ("trends", "forecast", "clv", "products", "cohorts", "segments", "recs"):
        assert page.get_attribute(f"#p-{panel}", "data-state") == "empty", panel
    assert "sparkmart batch" in page.inner_text("#p-clv .empty-message")
    assert "sparkmart ml" in page.inner_text("#p-recs .empty-message")

    page.goto(f"{url}/runs")
    page.wait_for_function("document.body.dataset.ready === 'true'")
    assert page.get_attribute("#p-runs", "data-state") == "empty"
    assert page.get_attribute("#p-sessions", "data-state") == "empty"
    assert console.errors == []

    # tables that exist but hold no rows yet
    ensure_stream_tables(empty)
    page.goto(f"{url}/live")
    page.wait_for_function("Number(document.body.dataset.polls) >= 1")
    assert "no sales yet" in page.inner_text("#p-sales .empty-message")


def test_unreachable_postgres_is_a_message_not_a_trace(
    page: Page, settings: Settings, pg: PgSettings
) -> None:
    down = dataclasses.replace(pg, port=free_port())
    url, server, thread = serve_in_thread(create_app(settings, down))
    try:
        for name in ("live", "analytics", "runs"):
            page.goto(f"{url}/{name}")
            page.wait_for_selector("#banner:not([hidden])")
            message = page.inner_text("#banner")
            assert message.startswith("PostgreSQL is unreachable: cannot connect to"), message
            assert f":{down.port}/" in message and "Traceback" not in message
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(f"{url}/api/live")
        assert failure.value.code == 503
        assert json.load(failure.value)["kind"] == "unreachable"
    finally:
        server.should_exit = True
        thread.join(10)


def test_bad_parameters_get_a_clear_error(dashboard: str) -> None:
    for query, expected in [
        ("trends?date_from=yesterday", "date_from"),
        ("trends?date_from=2026-02-01&date_to=2026-01-01", "'from' (2026-02-01) is after 'to'"),
        ("trends?grain=hour", "grain: expected one of day, week, month"),
    ]:
        with pytest.raises(urllib.error.HTTPError) as failure:
            urllib.request.urlopen(f"{dashboard}/api/analytics/{query}")
        assert failure.value.code == 400
        assert expected in json.load(failure.value)["error"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dashboard_settings_are_checked(settings: Settings, pg: PgSettings) -> None:
    for section, expected in [
        ({"refresh_seconds": 5.0}, "dashboard.refresh_seconds should be 0.2-2"),
        ({"port": 0}, "dashboard.port should be 1-65535"),
        ({"colour": "blue"}, "dashboard: unknown key(s) colour"),
    ]:
        odd = dataclasses.replace(settings, pipeline={**settings.pipeline, "dashboard": section})
        with pytest.raises(ConfigError, match=re.escape(expected)):
            create_app(odd, pg)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def test_cached_panels_follow_replaced_and_merged_tables(dashboard: str, pg: PgSettings) -> None:
    """A batch run replaces a mart (TRUNCATE + INSERT in one transaction) or merges into it: the
    next request shows the new rows, not the cached ones."""
    url = f"{dashboard}/api/analytics/cohorts"
    columns, original = ANALYTICS["cohorts"]
    assert len(get_json(url)["rows"]) == len(original)
    try:
        with connect(pg) as conn:
            conn.execute("TRUNCATE analytics.cohorts")
            insert(conn, "analytics.cohorts", columns, original[:1])
            conn.commit()
        assert len(get_json(url)["rows"]) == 1
        with connect(pg) as conn:
            conn.execute("UPDATE analytics.cohorts SET cohort_size = 40")
            conn.commit()
        deadline = time.monotonic() + 10  # the statistics counters are flushed within ~1 s
        while get_json(url)["rows"][0]["cohort_size"] != 40:
            assert time.monotonic() < deadline, "the cached cohorts outlived an UPDATE"
            time.sleep(0.2)
    finally:
        with connect(pg) as conn:
            conn.execute("TRUNCATE analytics.cohorts")
            insert(conn, "analytics.cohorts", columns, original)
            conn.commit()
