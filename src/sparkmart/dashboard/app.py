"""The web dashboard: a small FastAPI app serving three pages and the JSON they poll.

Pages (static HTML + JavaScript under ``static/``, charts drawn by plotly.js in the browser):
``/live`` (polls ``/api/live`` every ``refresh_seconds``), ``/analytics`` and ``/runs``. The JSON
endpoints are thin: each opens one PostgreSQL connection, calls a panel function of
``queries.py`` and returns its dict. Errors never reach the page as a stack trace: PostgreSQL
down is a 503 whose ``error`` says where it tried to connect, a slow query a 504, bad parameters a
400, anything else a 500 with one line (the traceback goes to the server log).

Entry points: ``create_app(settings, pg)`` (tests run it in-process), ``serve(settings, host,
port, pg)`` (the CLI) and ``python -m sparkmart.dashboard``.
"""

from __future__ import annotations

import datetime as dt
import errno
import importlib.util
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from sparkmart.config import PIPELINE_CONFIG, ConfigError, Settings
from sparkmart.dashboard import queries
from sparkmart.dashboard.cache import ResultCache
from sparkmart.io.postgres import PgSettings, PostgresError
from sparkmart.monitor import spark_sessions
from sparkmart.stream.query import StreamOptions

log = logging.getLogger("sparkmart.dashboard")

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGES = ("live", "analytics", "runs")
STREAM_BATCHES_SHOWN = 20
WARM_EVERY_SECONDS = 30.0

# The tables each cached analytics panel reads: their versions are part of the cache key.
PANEL_TABLES: dict[str, tuple[str, ...]] = {
    "categories": (queries.PRODUCTS,),
    "bounds": (queries.SALES_TRENDS, queries.SALES_FORECAST),
    "clv": (queries.CUSTOMER_LTV, queries.CUSTOMERS),
    "products": (queries.PRODUCT_PERFORMANCE,),
    "trends": (queries.SALES_TRENDS, queries.SALES_FORECAST),
    "cohorts": (queries.COHORTS,),
    "segments": (queries.CUSTOMERS,),
    "suggestions": (queries.RECOMMENDATIONS, queries.CUSTOMER_LTV),
}

T = TypeVar("T")


class DashboardError(RuntimeError):
    """The dashboard cannot start; the message says why."""


@dataclass(frozen=True)
class DashboardOptions:
    """``dashboard:`` of pipeline.yaml with its defaults, checked."""

    host: str = "127.0.0.1"
    port: int = 8050
    refresh_seconds: float = 1.0
    live_minutes: int = 60
    alerts: int = 20
    runs: int = 20
    spark_ui_timeout_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DashboardOptions:
        """The config's section, then ``overrides`` (CLI flags) that are not None."""
        values = {**settings.dashboard, **{k: v for k, v in overrides.items() if v is not None}}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{PIPELINE_CONFIG}: dashboard: unknown key(s) {', '.join(unknown)}")
        options = cls(**values)
        checks = {
            "port": 1 <= options.port <= 65535,
            "refresh_seconds": 0.2 <= options.refresh_seconds <= 2,
            "live_minutes": 1 <= options.live_minutes <= 24 * 60,
            "alerts": 1 <= options.alerts <= 1000,
            "runs": 1 <= options.runs <= 1000,
            "spark_ui_timeout_seconds": 0 < options.spark_ui_timeout_seconds <= 10,
        }
        ranges = {
            "port": "1-65535",
            "refresh_seconds": "0.2-2 (the live page must refresh at least every 2 s)",
            "live_minutes": "1-1440",
            "alerts": "1-1000",
            "runs": "1-1000",
            "spark_ui_timeout_seconds": "> 0 and <= 10",
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"{PIPELINE_CONFIG}: dashboard.{key} should be {ranges[key]}, "
                    f"got {getattr(options, key)!r}"
                )
        if not options.host.strip():
            raise ConfigError(f"{PIPELINE_CONFIG}: dashboard.host should not be empty")
        return options


def plotly_js() -> Path:
    """plotly.js as shipped inside the ``plotly`` Python package (nothing vendored here)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise DashboardError("the `plotly` package is not installed: run `make setup`")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise DashboardError(f"{path} not found: reinstall the `plotly` package")
    return path


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": message, "kind": kind}, status_code=status)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def create_app(settings: Settings, pg: PgSettings | None = None, **overrides: Any) -> FastAPI:
    """The dashboard app reading ``pg`` (default: from the environment, see docs/postgres.md)."""
    options = DashboardOptions.from_settings(settings, **overrides)
    pg = pg or PgSettings.from_env()
    stream = StreamOptions.from_settings(settings)
    sliding = queries.SlidingWindow(stream.sliding_window, stream.sliding_step, stream.top_n)
    plotly_path = plotly_js()
    cache = ResultCache()
    stop_warming = threading.Event()

    @contextmanager
    def connection() -> Iterator[psycopg.Connection]:
        conn = queries.open_connection(pg)
        try:
            yield conn
        finally:
            conn.close()

    def run(panel: Callable[..., T], *args: Any) -> T:
        with connection() as conn:
            return panel(conn, *args)

    def cached(name: str, panel: Callable[..., T], *args: Hashable) -> T:
        """``panel(conn, *args)``, reused while the panel's tables are unchanged."""
        with connection() as conn:
            key = (name, args, queries.table_versions(conn, PANEL_TABLES[name]))
            return cache.get(key, lambda: panel(conn, *args))

    def warm() -> None:
        """Compute the analytics page's unfiltered panels ahead of the first visitor, and again
        after a batch or ML run replaced their tables (PostgreSQL down: try again later)."""
        everything = queries.Filters()
        while not stop_warming.is_set():
            try:
                cached("categories", queries.categories)
                cached("bounds", queries.analytics_bounds)
                cached("clv", queries.clv_distribution, everything)
                cached("products", queries.product_performance, everything)
                for grain in ("day", "week"):
                    cached("trends", queries.sales_trends, everything, grain)
                cached("cohorts", queries.cohort_retention, everything)
                cached("segments", queries.segment_profiles, everything)
                cached("suggestions", queries.recommendation_suggestions)
            except (PostgresError, psycopg.Error) as exc:
                log.debug("dashboard cache warm-up skipped: %s", exc)
            stop_warming.wait(WARM_EVERY_SECONDS)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        warmer = threading.Thread(target=warm, name="dashboard-warm-up", daemon=True)
        warmer.start()
        yield
        stop_warming.set()

    app = FastAPI(
        title="sparkmart dashboard", docs_url="/api/docs", redoc_url=None, lifespan=lifespan
    )
    app.state.options = options
    app.state.pg = pg
    app.state.cache = cache
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # --- errors: one line for the page, the traceback only in the log ---

    @app.exception_handler(PostgresError)
    async def unreachable(_: Request, exc: PostgresError) -> JSONResponse:
        return _error(503, f"PostgreSQL is unreachable: {exc}", "unreachable")

    @app.exception_handler(psycopg.OperationalError)
    async def connection_lost(_: Request, exc: psycopg.OperationalError) -> JSONResponse:
        message = f"PostgreSQL at {pg.display} stopped answering: {_first_line(exc)}"
        return _error(503, message, "unreachable")

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def too_slow(_: Request, exc: psycopg.Error) -> JSONResponse:
        seconds = queries.STATEMENT_TIMEOUT_MS / 1000
        return _error(504, f"a query took longer than {seconds:g} s and was cancelled", "timeout")

    @app.exception_handler(psycopg.Error)
    async def query_failed(_: Request, exc: psycopg.Error) -> JSONResponse:
        log.error("dashboard query failed on %s: %s", pg.display, exc)
        return _error(500, f"query failed: {_first_line(exc)}", "query")

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
            for e in exc.errors()
        )
        return _error(400, f"bad parameter: {problems}", "parameter")

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, exc: ValueError) -> JSONResponse:
        return _error(400, str(exc), "parameter")

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("dashboard request failed")
        return _error(500, f"internal error: {type(exc).__name__}: {_first_line(exc)}", "internal")

    # --- pages ---

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/live")

    def page(name: str) -> Callable[[], FileResponse]:
        def serve_page() -> FileResponse:
            return FileResponse(STATIC_DIR / f"{name}.html", headers={"Cache-Control": "no-cache"})

        return serve_page

    for name in PAGES:
        app.add_api_route(f"/{name}", page(name), include_in_schema=False, methods=["GET"])

    @app.get("/assets/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        return FileResponse(plotly_path, headers={"Cache-Control": "public, max-age=86400"})

    # --- data ---

    def filters(
        date_from: dt.date | None, date_to: dt.date | None, category: str | None
    ) -> queries.Filters:
        return queries.Filters(date_from, date_to, category or None)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        with connection() as conn:
            conn.execute("SELECT 1")
        return {"postgres": "ok", "database": pg.display}

    @app.get("/api/live")
    def live(
        category: str | None = None,
        minutes: int | None = Query(None, ge=1, le=24 * 60),
    ) -> dict[str, Any]:
        shown = minutes or options.live_minutes
        with connection() as conn:
            key = ("live", shown, category or None, queries.stream_version(conn))
            data = cache.get(
                key,
                lambda: queries.live(
                    conn,
                    minutes=shown,
                    alerts=options.alerts,
                    category=category or None,
                    sliding=sliding,
                ),
            )
            fresh = queries.freshness(conn)
        return {**data, "freshness": fresh, "refresh_seconds": options.refresh_seconds}

    @app.get("/api/categories")
    def categories() -> dict[str, Any]:
        return cached("categories", queries.categories)

    @app.get("/api/analytics/bounds")
    def bounds() -> dict[str, Any]:
        return cached("bounds", queries.analytics_bounds)

    @app.get("/api/analytics/clv")
    def clv(
        date_from: dt.date | None = None, date_to: dt.date | None = None, category: str = ""
    ) -> dict[str, Any]:
        return cached("clv", queries.clv_distribution, filters(date_from, date_to, category))

    @app.get("/api/analytics/products")
    def products(category: str = "") -> dict[str, Any]:
        return cached("products", queries.product_performance, filters(None, None, category))

    @app.get("/api/analytics/trends")
    def trends(
        date_from: dt.date | None = None, date_to: dt.date | None = None, grain: str = "day"
    ) -> dict[str, Any]:
        return cached("trends", queries.sales_trends, filters(date_from, date_to, None), grain)

    @app.get("/api/analytics/cohorts")
    def cohorts(date_from: dt.date | None = None, date_to: dt.date | None = None) -> dict[str, Any]:
        return cached("cohorts", queries.cohort_retention, filters(date_from, date_to, None))

    @app.get("/api/analytics/segments")
    def segments(category: str = "") -> dict[str, Any]:
        return cached("segments", queries.segment_profiles, filters(None, None, category))

    @app.get("/api/analytics/recommendations")
    def recommendations(customer_id: int | None = Query(None, ge=0)) -> dict[str, Any]:
        suggestions = cached("suggestions", queries.recommendation_suggestions)["rows"]
        return run(queries.recommendations, customer_id, suggestions)

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        with connection() as conn:
            return {
                "runs": queries.pipeline_runs(conn, options.runs),
                "stream_batches": queries.stream_batches(conn, STREAM_BATCHES_SHOWN),
                "spark_sessions": queries.plain(
                    spark_sessions.live_sessions(conn, options.spark_ui_timeout_seconds)
                ),
                "server_time": queries.plain(dt.datetime.now(dt.timezone.utc)),
            }

    return app


def dashboard_url(host: str, port: int) -> str:
    """The address to open in a browser (a wildcard bind is reachable on localhost)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DashboardError(
                    f"port {port} on {host} is already in use: stop the other server or pass "
                    "--port (or set dashboard.port in config/pipeline.yaml)"
                ) from exc
            raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    pg: PgSettings | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the dashboard until Ctrl-C; ``host``/``port`` override the config."""
    import uvicorn

    options = DashboardOptions.from_settings(settings, host=host, port=port)
    app = create_app(settings, pg, host=options.host, port=options.port)
    _check_port_free(options.host, options.port)
    announce(
        f"sparkmart dashboard on {dashboard_url(options.host, options.port)} "
        f"(PostgreSQL {app.state.pg.display}); Ctrl-C to stop"
    )
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning")
