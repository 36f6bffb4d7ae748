"""What the dashboard shows: one function per panel, each a few parameterised queries.

Every function takes an open connection from ``open_connection`` (autocommit, UTC session time
zone, a statement timeout) and returns plain JSON-ready values: numbers as int/float, instants as
ISO-8601 strings ending in ``Z``, dates as ``YYYY-MM-DD``. A panel whose table does not exist yet,
or has no rows for the filters, returns ``{"empty": "<what is missing and what to run>"}`` so the
page can say so instead of drawing an empty chart. Values always travel as query parameters; the
few statements that differ by filter are separate literal strings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from sparkmart.io.postgres import PgSettings, connect
from sparkmart.stream import tables
from sparkmart.stream.metrics import floor_time, histogram_percentile

STATEMENT_TIMEOUT_MS = 5000  # a panel that takes longer is reported, not waited for
WORK_MEM = "32MB"  # the CLV percentiles sort ~1M values: in memory, not on disk

CUSTOMERS = "analytics.customers"
PRODUCTS = "analytics.products"
CUSTOMER_LTV = "analytics.customer_ltv"
PRODUCT_PERFORMANCE = "analytics.product_performance"
SALES_TRENDS = "analytics.sales_trends"
COHORTS = "analytics.cohorts"
SALES_FORECAST = "analytics.sales_forecast"
RECOMMENDATIONS = "analytics.recommendations"
PIPELINE_RUNS = "audit.pipeline_runs"

RUN_BATCH = "run `sparkmart batch`"
RUN_ML = "run `sparkmart ml train` and `sparkmart ml score`"
RUN_STREAM = "start `sparkmart stream --simulate 100`"

CLV_BINS = 40
TOP_PRODUCTS = 20
GRAINS = ("day", "week", "month")
# The forecast's target -> the sales_trends column holding the same measure in the past.
FORECAST_HISTORY = {"orders": "orders_placed", "revenue": "revenue"}


# What each panel reads (the cache key's versions).
LIVE_TABLES = (
    tables.BATCHES,
    tables.SALES_PER_MINUTE,
    tables.PRODUCT_MINUTE,
    tables.CUSTOMER_MINUTE,
    tables.REVENUE_DAILY,
    tables.ALERTS,
    tables.QUERY_STATE,
    PRODUCTS,
)


@dataclass(frozen=True)
class Filters:
    """The page's filters; None means "not filtered"."""

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    category: str | None = None

    def __post_init__(self) -> None:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(
                f"date range: 'from' ({self.date_from}) is after 'to' ({self.date_to})"
            )

    def params(self) -> dict[str, Any]:
        return {"date_from": self.date_from, "date_to": self.date_to, "category": self.category}


@dataclass(frozen=True)
class SlidingWindow:
    """The live page's top-products window (``query:`` of streaming_config.yaml)."""

    length: dt.timedelta = dt.timedelta(minutes=10)
    step: dt.timedelta = dt.timedelta(minutes=1)
    top_n: int = 10


def open_connection(pg: PgSettings) -> psycopg.Connection:
    """A read connection for one request (raises PostgresError when the server is unreachable)."""
    conn = connect(pg, autocommit=True)
    conn.row_factory = dict_row  # type: ignore[assignment]
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute(
        "SELECT set_config('statement_timeout', %s, false), set_config('work_mem', %s, false)",
        (str(STATEMENT_TIMEOUT_MS), WORK_MEM),
    )
    return conn


# --- values ----------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A database value as JSON: Decimal -> float, instants -> ISO UTC with ``Z``."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # timestamptz: the session zone is UTC
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"  # naive columns hold UTC
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _rows(conn: psycopg.Connection, query: str, params: Any = None) -> list[dict[str, Any]]:
    return [plain(row) for row in conn.execute(query, params).fetchall()]  # type: ignore[arg-type]


def _one(conn: psycopg.Connection, query: str, params: Any = None) -> dict[str, Any] | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


def existing_tables(conn: psycopg.Connection, names: Iterable[str]) -> set[str]:
    """The subset of ``names`` (``schema.table``) that exist, in one round trip."""
    wanted = list(names)
    rows = conn.execute(
        "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NOT NULL",
        (wanted,),
    ).fetchall()
    return {row["name"] for row in rows}  # type: ignore[call-overload]


def table_versions(conn: psycopg.Connection, names: Iterable[str]) -> tuple[Any, ...]:
    """What changes whenever one of ``names`` changes: its storage file (replaced by TRUNCATE,
    as an atomic replace does) and its insert/update/delete counters (merges). Panels over
    tables that did not change can be served from the cache."""
    rows = conn.execute(
        "SELECT t.name, c.relfilenode, s.n_tup_ins, s.n_tup_upd, s.n_tup_del "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS t(name, position) "
        "LEFT JOIN pg_class c ON c.oid = to_regclass(t.name) "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid ORDER BY t.position",
        (list(names),),
    ).fetchall()
    return tuple(tuple(row.values()) for row in rows)  # type: ignore[union-attr]


def stream_version(conn: psycopg.Connection) -> tuple[Any, ...]:
    """The streaming tables change in one transaction per micro-batch, together with the
    batch's ledger row: the latest commit is their version, exact at once. The tables' own
    versions cover what is written outside a batch (the listener's system alerts, a reset);
    their counters lag by about a second."""
    versions = table_versions(conn, LIVE_TABLES)
    latest = None
    if versions[0][1] is not None:  # streaming.batches exists
        row = conn.execute(
            f"SELECT committed_at, batch_id FROM {tables.BATCHES} "
            "ORDER BY committed_at DESC LIMIT 1"
        ).fetchone()
        latest = tuple(row.values()) if row else None  # type: ignore[union-attr]
    return (latest, versions)


def _missing(table: str, action: str) -> dict[str, str]:
    return {"empty": f"{table} does not exist yet: {action}"}


def _no_rows(what: str, filters: Filters | None = None, action: str = "") -> dict[str, str]:
    filtered = filters is not None and any(v is not None for v in filters.params().values())
    reason = "for these filters" if filtered else (f"yet: {action}" if action else "yet")
    return {"empty": f"no {what} {reason}"}


# --- live ------------------------------------------------------------------------------------


def live(
    conn: psycopg.Connection,
    *,
    minutes: int,
    alerts: int,
    category: str | None = None,
    sliding: SlidingWindow | None = None,
) -> dict[str, Any]:
    """Sales per minute, top products in the sliding window, counters and alerts."""
    sliding = sliding or SlidingWindow()
    present = existing_tables(
        conn,
        [
            tables.SALES_PER_MINUTE,
            tables.PRODUCT_MINUTE,
            tables.ACTIVE_CUSTOMERS,
            tables.REVENUE_RUNNING,
            tables.ALERTS,
            PRODUCTS,
        ],
    )
    if tables.SALES_PER_MINUTE not in present:
        missing = _missing(tables.SALES_PER_MINUTE, RUN_STREAM)
        return dict.fromkeys(("sales_per_minute", "top_products", "counters", "alerts"), missing)
    return {
        "sales_per_minute": _sales_per_minute(conn, minutes),
        "top_products": _top_products(conn, present, sliding, category),
        "counters": _counters(conn, present),
        "alerts": _alerts(conn, present, alerts),
    }


def _sales_per_minute(conn: psycopg.Connection, minutes: int) -> dict[str, Any]:
    rows = _rows(
        conn,
        f"SELECT window_start, window_end, orders, units, revenue, is_closed "
        f"FROM {tables.SALES_PER_MINUTE} "
        f"WHERE window_start > (SELECT max(window_start) FROM {tables.SALES_PER_MINUTE}) - %s "
        "ORDER BY window_start",
        (dt.timedelta(minutes=minutes),),
    )
    return {"rows": rows} if rows else _no_rows("sales", action=RUN_STREAM)


def sliding_bounds(
    latest_end: dt.datetime, sliding: SlidingWindow
) -> tuple[dt.datetime, dt.datetime]:
    """The sliding window ending with the latest minute (its end rounded up to the step)."""
    window_end = floor_time(latest_end, sliding.step)
    if window_end < latest_end:
        window_end += sliding.step
    return window_end - sliding.length, window_end


_SOLD_IN_WINDOW = f"""
    SELECT product_id, sum(orders)::bigint AS orders, sum(units)::bigint AS units,
           sum(revenue)::numeric(18, 2) AS revenue
    FROM {tables.PRODUCT_MINUTE}
    WHERE window_start >= %(start)s AND window_start < %(end)s
    GROUP BY product_id"""
# Rank first, then look up the names of the few products kept.
_TOP_PRODUCTS_SQL = f"""
SELECT s.product_id, p.name, p.category, s.orders, s.units, s.revenue
FROM ({_SOLD_IN_WINDOW} ORDER BY revenue DESC, product_id LIMIT %(top_n)s) s
LEFT JOIN {PRODUCTS} p ON p.product_id = s.product_id
ORDER BY s.revenue DESC, s.product_id
"""
_TOP_PRODUCTS_IN_CATEGORY_SQL = f"""
SELECT s.product_id, p.name, p.category, s.orders, s.units, s.revenue
FROM ({_SOLD_IN_WINDOW}) s
JOIN {PRODUCTS} p ON p.product_id = s.product_id AND p.category = %(category)s
ORDER BY s.revenue DESC, s.product_id
LIMIT %(top_n)s
"""
# Without the batch's products table there are no names or categories to show or filter by.
_TOP_PRODUCTS_NO_CATALOG_SQL = f"""
SELECT product_id, NULL::text AS name, NULL::text AS category, orders, units, revenue
FROM ({_SOLD_IN_WINDOW}) s
ORDER BY revenue DESC, product_id
LIMIT %(top_n)s
"""


def _top_products(
    conn: psycopg.Connection, present: set[str], sliding: SlidingWindow, category: str | None
) -> dict[str, Any]:
    if tables.PRODUCT_MINUTE not in present:
        return _missing(tables.PRODUCT_MINUTE, RUN_STREAM)
    latest = conn.execute(f"SELECT max(window_end) AS e FROM {tables.SALES_PER_MINUTE}").fetchone()
    if latest is None or latest["e"] is None:  # type: ignore[index]
        return _no_rows("product sales", action=RUN_STREAM)
    start, end = sliding_bounds(latest["e"], sliding)  # type: ignore[index]
    if category is not None and PRODUCTS not in present:
        return _missing(PRODUCTS, f"{RUN_BATCH} (the category filter needs the products)")
    if PRODUCTS not in present:
        query = _TOP_PRODUCTS_NO_CATALOG_SQL
    else:
        query = _TOP_PRODUCTS_IN_CATEGORY_SQL if category else _TOP_PRODUCTS_SQL
    params = {"start": start, "end": end, "category": category, "top_n": sliding.top_n}
    rows = _rows(conn, query, params)
    window = {"window_start": plain(start), "window_end": plain(end)}
    if not rows:
        return {**_no_rows("product sales in this window", Filters(category=category)), **window}
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return {"rows": rows, **window}


def _counters(conn: psycopg.Connection, present: set[str]) -> dict[str, Any]:
    latest = _one(
        conn,
        f"SELECT window_start, orders, units, revenue, is_closed FROM {tables.SALES_PER_MINUTE} "
        "ORDER BY window_start DESC LIMIT 1",
    )
    if latest is None:
        return _no_rows("sales", action=RUN_STREAM)
    counters: dict[str, Any] = {"minute": latest}
    if tables.ACTIVE_CUSTOMERS in present:
        counters["active"] = _one(
            conn,
            f"SELECT window_start, active_customers, active_customers_recent, recent_minutes "
            f"FROM {tables.ACTIVE_CUSTOMERS} "
            f"WHERE window_start = (SELECT max(window_start) FROM {tables.SALES_PER_MINUTE})",
        )
    if tables.REVENUE_RUNNING in present:
        counters["revenue"] = _one(
            conn,
            f"SELECT day, orders, revenue, running_orders, running_revenue "
            f"FROM {tables.REVENUE_RUNNING} ORDER BY day DESC LIMIT 1",
        )
    return counters


def _alerts(conn: psycopg.Connection, present: set[str], limit: int) -> dict[str, Any]:
    if tables.ALERTS not in present:
        return _missing(tables.ALERTS, RUN_STREAM)
    rows = _rows(
        conn,
        f"SELECT alert_id, alert_type, severity, alert_key, message, event_time, detected_at, "
        f"value, threshold FROM {tables.ALERTS} ORDER BY detected_at DESC, alert_id LIMIT %s",
        (limit,),
    )
    return {"rows": rows} if rows else {"empty": "no alerts so far"}


def freshness(conn: psycopg.Connection) -> dict[str, Any]:
    """When the stream last wrote (the latest committed batch, else the latest metric row)."""
    present = existing_tables(conn, [tables.BATCHES, tables.SALES_PER_MINUTE])
    fresh: dict[str, Any] = {"server_time": plain(dt.datetime.now(dt.timezone.utc))}
    if tables.BATCHES in present:
        batch = _one(
            conn,
            f"SELECT query_name, batch_id, committed_at, input_rows, watermark "
            f"FROM {tables.BATCHES} ORDER BY committed_at DESC LIMIT 1",
        )
        if batch:
            fresh.update(batch, updated_at=batch["committed_at"])
    if "updated_at" not in fresh and tables.SALES_PER_MINUTE in present:
        row = _one(conn, f"SELECT max(updated_at) AS updated_at FROM {tables.SALES_PER_MINUTE}")
        fresh["updated_at"] = row["updated_at"] if row else None
    return fresh


# --- analytics -------------------------------------------------------------------------------


def categories(conn: psycopg.Connection) -> dict[str, Any]:
    """The product categories (the category filter's choices)."""
    if PRODUCTS not in existing_tables(conn, [PRODUCTS]):
        return {"rows": [], **_missing(PRODUCTS, RUN_BATCH)}
    rows = conn.execute(
        f"SELECT DISTINCT category FROM {PRODUCTS} WHERE category IS NOT NULL ORDER BY 1"
    ).fetchall()
    return {"rows": [row["category"] for row in rows]}  # type: ignore[call-overload]


def analytics_bounds(conn: psycopg.Connection) -> dict[str, Any]:
    """The date span of the sales history and forecast (the date filter's limits)."""
    present = existing_tables(conn, [SALES_TRENDS, SALES_FORECAST])
    bounds: dict[str, Any] = {"first_day": None, "last_day": None}
    if SALES_TRENDS in present:
        bounds.update(
            _one(
                conn,
                f"SELECT min(period_start) AS first_day, max(period_end) AS last_day "
                f"FROM {SALES_TRENDS} WHERE grain = 'day'",
            )
            or {}
        )
    if SALES_FORECAST in present:
        row = _one(conn, f"SELECT max(date) AS last FROM {SALES_FORECAST}")
        if row and row["last"] and (bounds["last_day"] is None or row["last"] > bounds["last_day"]):
            bounds["last_day"] = row["last"]
    return bounds


# The customers counted, with their CLV as ``clv``: all, or those preferring a category.
_LTV = f"""
    SELECT l.predicted_clv::float8 AS clv FROM {CUSTOMER_LTV} l
    WHERE l.predicted_clv IS NOT NULL
      AND (%(date_from)s::date IS NULL OR l.first_order_date >= %(date_from)s)
      AND (%(date_to)s::date IS NULL OR l.first_order_date <= %(date_to)s)"""
_LTV_IN_CATEGORY = _LTV.replace(
    f"FROM {CUSTOMER_LTV} l",
    f"FROM {CUSTOMER_LTV} l JOIN {CUSTOMERS} c ON c.customer_id = l.customer_id "
    "AND c.preferred_category = %(category)s",
)
_CLV_STATS = """
SELECT count(*) AS customers, avg(clv) AS mean, min(clv) AS low,
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY clv) AS q
FROM ({ltv}) ltv"""
_CLV_HISTOGRAM = """
SELECT width_bucket(clv, %(low)s, %(high)s, %(bins)s) AS bin, count(*) AS customers
FROM ({ltv}) ltv GROUP BY 1"""
_CLV_SQL = {
    False: (_CLV_STATS.format(ltv=_LTV), _CLV_HISTOGRAM.format(ltv=_LTV)),
    True: (
        _CLV_STATS.format(ltv=_LTV_IN_CATEGORY),
        _CLV_HISTOGRAM.format(ltv=_LTV_IN_CATEGORY),
    ),
}


def clv_distribution(conn: psycopg.Connection, filters: Filters) -> dict[str, Any]:
    """Predicted CLV histogram of customers whose first order is in the date range.

    ``CLV_BINS`` equal bins from the lowest value to the 99th percentile, and one bin above it
    (a long tail would otherwise squeeze every other bar into the first one)."""
    needed = [CUSTOMER_LTV] + ([CUSTOMERS] if filters.category else [])
    present = existing_tables(conn, needed)
    for table in needed:
        if table not in present:
            return _missing(table, RUN_BATCH)
    stats_sql, histogram_sql = _CLV_SQL[filters.category is not None]
    stats = _one(conn, stats_sql, filters.params())
    if not stats or not stats["customers"]:
        return _no_rows("customers with a CLV", filters, RUN_BATCH)
    median, p90, p99 = stats.pop("q")
    stats.update(median=median, p90=p90, p99=p99)
    low, high = stats["low"], max(p99, stats["low"] + 0.01)
    params = {**filters.params(), "low": low, "high": high, "bins": CLV_BINS}
    counts = {row["bin"]: row["customers"] for row in _rows(conn, histogram_sql, params)}
    width = (high - low) / CLV_BINS
    bins = []
    for number in range(1, CLV_BINS + 2):
        start = low + (number - 1) * width
        end = start + width if number <= CLV_BINS else None
        bins.append({"start": start, "end": end, "customers": counts.get(number, 0)})
    return {"stats": stats, "bins": bins}


_PRODUCTS_SQL = f"""
SELECT product_id, name, category, brand, units_sold, orders, revenue, margin, margin_rate,
       category_rank
FROM {PRODUCT_PERFORMANCE}
WHERE (%(category)s::text IS NULL OR category = %(category)s)
ORDER BY revenue DESC NULLS LAST, product_id
LIMIT %(limit)s
"""
_CATEGORIES_SQL = f"""
SELECT category, count(*) AS products, sum(units_sold)::bigint AS units_sold,
       sum(revenue) AS revenue, sum(margin) AS margin
FROM {PRODUCT_PERFORMANCE}
WHERE category IS NOT NULL
GROUP BY category
ORDER BY sum(revenue) DESC NULLS LAST, category
"""


def product_performance(conn: psycopg.Connection, filters: Filters) -> dict[str, Any]:
    """The best products by revenue (in the category, if chosen) and every category's totals.

    The categories are also the category filter's choices."""
    if PRODUCT_PERFORMANCE not in existing_tables(conn, [PRODUCT_PERFORMANCE]):
        return _missing(PRODUCT_PERFORMANCE, RUN_BATCH)
    categories = _rows(conn, _CATEGORIES_SQL)
    if not categories:
        return _no_rows("product performance", action=RUN_BATCH)
    products = _rows(conn, _PRODUCTS_SQL, {"category": filters.category, "limit": TOP_PRODUCTS})
    result: dict[str, Any] = {"categories": categories, "category": filters.category}
    if products:
        result["rows"] = products
    else:
        result.update(_no_rows("products", filters))
    return result


def sales_trends(conn: psycopg.Connection, filters: Filters, grain: str = "day") -> dict[str, Any]:
    """Realised sales per ``grain`` in the date range, and the forecast with its interval.

    The forecast is drawn over the history of the measure it predicts (``FORECAST_HISTORY``);
    it is daily, so it is shown with the ``day`` grain only."""
    if grain not in GRAINS:
        raise ValueError(f"grain: expected one of {', '.join(GRAINS)}, got {grain!r}")
    present = existing_tables(conn, [SALES_TRENDS, SALES_FORECAST])
    if SALES_TRENDS not in present:
        return _missing(SALES_TRENDS, RUN_BATCH)
    dates = filters.params()
    history = _rows(
        conn,
        f"SELECT period_start, period_end, is_complete, orders_placed, orders, units, revenue, "
        f"revenue_ma_7d, revenue_ma_28d FROM {SALES_TRENDS} WHERE grain = %(grain)s "
        "AND (%(date_from)s::date IS NULL OR period_end >= %(date_from)s) "
        "AND (%(date_to)s::date IS NULL OR period_start <= %(date_to)s) ORDER BY period_start",
        {**dates, "grain": grain},
    )
    result: dict[str, Any] = {"grain": grain, "rows": history}
    if SALES_FORECAST not in present:
        result["forecast"] = _missing(SALES_FORECAST, RUN_ML)
    elif grain != "day":
        result["forecast"] = {"empty": "the forecast is daily: choose the day grain to see it"}
    else:
        forecast = _rows(
            conn,
            f"SELECT date, target, forecast, lower, upper FROM {SALES_FORECAST} "
            "WHERE (%(date_from)s::date IS NULL OR date >= %(date_from)s) "
            "AND (%(date_to)s::date IS NULL OR date <= %(date_to)s) ORDER BY date",
            dates,
        )
        target = forecast[0]["target"] if forecast else None
        result["forecast"] = (
            {"rows": forecast, "target": target, "history_column": FORECAST_HISTORY.get(target)}
            if forecast
            else _no_rows("forecast", filters, RUN_ML)
        )
    if not history and "rows" not in result["forecast"]:
        return _no_rows("sales", filters, RUN_BATCH)
    return result


def cohort_retention(conn: psycopg.Connection, filters: Filters) -> dict[str, Any]:
    """Retention by first-order month (the rows of the heatmap) in the date range."""
    if COHORTS not in existing_tables(conn, [COHORTS]):
        return _missing(COHORTS, RUN_BATCH)
    rows = _rows(
        conn,
        f"SELECT cohort_month, months_since_first, cohort_size, active_customers, "
        f"retention_rate FROM {COHORTS} "
        "WHERE (%(date_from)s::date IS NULL OR cohort_month >= date_trunc('month', "
        "%(date_from)s::date)) AND (%(date_to)s::date IS NULL OR cohort_month <= %(date_to)s) "
        "ORDER BY cohort_month, months_since_first",
        filters.params(),
    )
    return {"rows": rows} if rows else _no_rows("cohorts", filters, RUN_BATCH)


_SEGMENTS_SQL = f"""
SELECT segment, preferred_category, count(*) AS customers,
       sum(lifetime_value) AS lifetime_value, sum(activity_score) AS activity_score
FROM {CUSTOMERS}
WHERE segment IS NOT NULL
  AND (%(category)s::text IS NULL OR preferred_category = %(category)s)
GROUP BY segment, preferred_category
"""


def segment_profiles(conn: psycopg.Connection, filters: Filters) -> dict[str, Any]:
    """Per segment: customers, mean lifetime value and activity, the two commonest categories."""
    if CUSTOMERS not in existing_tables(conn, [CUSTOMERS]):
        return _missing(CUSTOMERS, RUN_BATCH)
    segments: dict[str, dict[str, Any]] = {}
    for row in _rows(conn, _SEGMENTS_SQL, filters.params()):
        profile = segments.setdefault(
            row["segment"], {"customers": 0, "ltv_sum": 0.0, "activity_sum": 0.0, "categories": {}}
        )
        profile["customers"] += row["customers"]
        profile["ltv_sum"] += row["lifetime_value"] or 0.0
        profile["activity_sum"] += row["activity_score"] or 0.0
        if row["preferred_category"] is not None:
            profile["categories"][row["preferred_category"]] = row["customers"]
    if not segments:
        return _no_rows("customer segments", filters, RUN_ML)
    rows = []
    for segment, profile in sorted(segments.items(), key=lambda kv: (-kv[1]["customers"], kv[0])):
        categories = sorted(profile["categories"].items(), key=lambda kv: (-kv[1], kv[0]))
        rows.append(
            {
                "segment": segment,
                "customers": profile["customers"],
                "avg_lifetime_value": profile["ltv_sum"] / profile["customers"],
                "avg_activity_score": profile["activity_sum"] / profile["customers"],
                "top_categories": [name for name, _ in categories[:2]],
            }
        )
    return {"rows": rows}


def recommendation_suggestions(conn: psycopg.Connection) -> dict[str, Any]:
    """Customers to look at: the highest predicted CLV among those with recommendations."""
    present = existing_tables(conn, [RECOMMENDATIONS, CUSTOMER_LTV])
    if RECOMMENDATIONS not in present:
        return {"rows": [], **_missing(RECOMMENDATIONS, RUN_ML)}
    if CUSTOMER_LTV in present:
        query = (
            f"SELECT l.customer_id FROM {CUSTOMER_LTV} l WHERE EXISTS (SELECT 1 FROM "
            f"{RECOMMENDATIONS} r WHERE r.customer_id = l.customer_id) "
            "ORDER BY l.predicted_clv DESC NULLS LAST, l.customer_id LIMIT 10"
        )
    else:
        query = f"SELECT DISTINCT customer_id FROM {RECOMMENDATIONS} ORDER BY 1 LIMIT 10"
    return {"rows": [row["customer_id"] for row in _rows(conn, query)]}


def recommendations(
    conn: psycopg.Connection, customer_id: int | None, suggestions: list[int]
) -> dict[str, Any]:
    """A customer's top recommendations with product names (default: the first suggestion)."""
    present = existing_tables(conn, [RECOMMENDATIONS, PRODUCTS, CUSTOMERS])
    if RECOMMENDATIONS not in present:
        return _missing(RECOMMENDATIONS, RUN_ML)
    if customer_id is None:
        if not suggestions:
            return _no_rows("recommendations", action=RUN_ML)
        customer_id = suggestions[0]
    if PRODUCTS in present:
        rows = _rows(
            conn,
            f"SELECT r.rank, r.product_id, p.name, p.category, p.price, r.score "
            f"FROM {RECOMMENDATIONS} r LEFT JOIN {PRODUCTS} p ON p.product_id = r.product_id "
            "WHERE r.customer_id = %s ORDER BY r.rank",
            (customer_id,),
        )
    else:
        rows = _rows(
            conn,
            f"SELECT rank, product_id, NULL AS name, NULL AS category, NULL AS price, score "
            f"FROM {RECOMMENDATIONS} WHERE customer_id = %s ORDER BY rank",
            (customer_id,),
        )
    customer = None
    if CUSTOMERS in present:
        customer = _one(
            conn,
            f"SELECT customer_id, first_name, last_name, segment, lifetime_value, "
            f"preferred_category FROM {CUSTOMERS} WHERE customer_id = %s",
            (customer_id,),
        )
    result: dict[str, Any] = {
        "customer_id": customer_id,
        "customer": customer,
        "suggestions": suggestions,
    }
    if rows:
        result["rows"] = rows
    else:
        result["empty"] = f"no recommendations for customer {customer_id}"
    return result


# --- runs ------------------------------------------------------------------------------------


STEP_METRICS = "audit.step_metrics"
_SHUFFLE = ("shuffle_read_bytes", "shuffle_write_bytes")


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    """One step of ``pipeline_runs.steps``: time, rows, quarantine and the shuffle bytes if the
    step carries them (``metrics.shuffle_*_bytes`` with ``metrics.source`` "rest"; None = not
    measured)."""
    metrics = step.get("metrics") or {}
    if metrics.get("source", "rest") != "rest":  # the monitor could not read Spark's numbers
        metrics = {}
    extra = step.get("extra") or {}
    return {
        "name": step.get("name"),
        "seconds": step.get("seconds"),
        "rows_in": step.get("rows_in"),
        "rows_out": step.get("rows_out"),
        "quarantined": extra.get("quarantined", step.get("quarantined")),
        "shuffle_read_bytes": metrics.get("shuffle_read_bytes"),
        "shuffle_write_bytes": metrics.get("shuffle_write_bytes"),
    }


# audit.step_metrics (monitor/audit.py): one row per step with Spark's own numbers. Read through
# to_jsonb so that a database whose table predates a metric column still answers.
_STEP_METRICS_SQL = f"""
SELECT run_id, step_index, step AS name, wall_seconds AS seconds, rows_in, rows_out,
       extra -> 'quarantined' AS quarantined, metrics_source,
       (to_jsonb(m) ->> 'shuffle_read_bytes')::bigint AS shuffle_read_bytes,
       (to_jsonb(m) ->> 'shuffle_write_bytes')::bigint AS shuffle_write_bytes
FROM {STEP_METRICS} m
WHERE run_id = ANY(%s)
ORDER BY run_id, step_index
"""


def _with_spark_metrics(
    steps: list[dict[str, Any]], measured: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The run's steps with the shuffle bytes Spark measured (matched by name, in order); the
    monitor's rows alone when the run recorded no steps of its own."""
    usable = [m for m in measured if m["metrics_source"] == "rest"]
    if not steps:
        return [
            {
                **{key: m[key] for key in ("name", "seconds", "rows_in", "rows_out")},
                "quarantined": m["quarantined"],
                **{key: m[key] if m in usable else None for key in _SHUFFLE},
            }
            for m in measured
        ]
    for step in steps:
        match = next((m for m in usable if m["name"] == step["name"]), None)
        if match is not None:
            usable.remove(match)
            for key in _SHUFFLE:
                if step[key] is None:
                    step[key] = match[key]
    return steps


def _entity_totals(rows: Any) -> dict[str, int | None]:
    entities = rows.get("entities", []) if isinstance(rows, Mapping) else []
    if not entities:
        return {"rows_in": None, "silver": None, "quarantined": None, "duplicates": None}
    return {
        key: sum(int(e.get(key) or 0) for e in entities)
        for key in ("rows_in", "silver", "quarantined", "duplicates")
    }


def pipeline_runs(conn: psycopg.Connection, limit: int) -> dict[str, Any]:
    """The latest runs, newest first, with their steps, row accounting and Spark app id."""
    present = existing_tables(conn, [PIPELINE_RUNS, STEP_METRICS])
    if PIPELINE_RUNS not in present:
        return _missing(PIPELINE_RUNS, RUN_BATCH)
    runs = _rows(
        conn,
        f"SELECT run_id, pipeline, mode, status, started_at, finished_at, "
        f"extract(epoch FROM coalesce(finished_at, now() AT TIME ZONE 'UTC') - started_at) "
        f"AS seconds, rows, quarantined, steps, error, to_jsonb(r) ->> 'spark_app_id' "
        f"AS spark_app_id FROM {PIPELINE_RUNS} r ORDER BY started_at DESC LIMIT %s",
        (limit,),
    )
    measured: dict[str, list[dict[str, Any]]] = {}
    if STEP_METRICS in present and runs:
        for row in _rows(conn, _STEP_METRICS_SQL, ([run["run_id"] for run in runs],)):
            measured.setdefault(row["run_id"], []).append(row)
    for run in runs:
        rules = run.pop("quarantined") or []
        rows = run.pop("rows") or {}
        steps = [_step(s) for s in (run.pop("steps") or []) if isinstance(s, Mapping)]
        run.update(
            totals=_entity_totals(rows),
            rules=[r for r in rules if isinstance(r, Mapping) and r.get("rows")],
            steps=_with_spark_metrics(steps, measured.get(run["run_id"], [])),
        )
    return {"rows": runs} if runs else _no_rows("pipeline runs", action=RUN_BATCH)


def stream_batches(conn: psycopg.Connection, limit: int) -> dict[str, Any]:
    """The latest micro-batches of the streaming query with their latency percentiles."""
    if tables.BATCHES not in existing_tables(conn, [tables.BATCHES]):
        return _missing(tables.BATCHES, RUN_STREAM)
    rows = _rows(
        conn,
        f"SELECT query_name, batch_id, committed_at, input_rows, valid_rows, malformed_rows, "
        f"late_rows, duration_ms, latency_histogram FROM {tables.BATCHES} "
        "ORDER BY committed_at DESC LIMIT %s",
        (limit,),
    )
    for row in rows:
        histogram = row.pop("latency_histogram") or {}
        row["latency_p50_ms"] = histogram_percentile(histogram, 0.5)
        row["latency_p95_ms"] = histogram_percentile(histogram, 0.95)
    return {"rows": rows} if rows else _no_rows("streaming batches", action=RUN_STREAM)
