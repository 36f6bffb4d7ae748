"""The PostgreSQL tables of the streaming pipeline: one DDL, shared by the query, alerts and tests.

Everything the streaming query writes for a micro-batch lands in one transaction together with the
batch's row in ``streaming.batches``; a replayed batch finds its row there and writes nothing.
Windowed metrics are stored at the 1-minute grain (``window`` in the config); the sliding top
products are a view over the minute rows, so a write is proportional to the events, not to the
number of overlapping windows. The views take their parameters (window lengths, top N) from
``ViewParams`` and are replaced on every start, so they follow the configuration.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sparkmart.io.postgres import PgSettings, connect

SCHEMA = "streaming"

# Table names, so that code and SQL never spell them twice.
BATCHES = "streaming.batches"
QUERY_STATE = "streaming.query_state"
SALES_PER_MINUTE = "streaming.sales_per_minute"
PRODUCT_MINUTE = "streaming.product_minute_sales"
CUSTOMER_MINUTE = "streaming.customer_minute"
REVENUE_DAILY = "streaming.revenue_daily"
PRODUCT_UNITS = "streaming.product_units"
INVENTORY = "streaming.inventory"
LATE_EVENTS = "streaming.late_events"
ALERTS = "streaming.alerts"
QUARANTINE = "quarantine.stream_events"
# Views over the minute rows (their parameters come from streaming_config.yaml `query:`).
TOP_PRODUCTS = "streaming.top_products"
ACTIVE_CUSTOMERS = "streaming.active_customers"
REVENUE_RUNNING = "streaming.revenue_running"

# Every table the streaming query writes, for tests and a full reset.
STREAM_TABLES: tuple[str, ...] = (
    BATCHES,
    QUERY_STATE,
    SALES_PER_MINUTE,
    PRODUCT_MINUTE,
    CUSTOMER_MINUTE,
    REVENUE_DAILY,
    PRODUCT_UNITS,
    LATE_EVENTS,
    ALERTS,
    QUARANTINE,
)

DDL = f"""
CREATE SCHEMA IF NOT EXISTS streaming;
CREATE SCHEMA IF NOT EXISTS quarantine;

-- one row per committed micro-batch: the idempotency ledger and the per-batch numbers
CREATE TABLE IF NOT EXISTS {BATCHES} (
    query_name        text        NOT NULL,
    batch_id          bigint      NOT NULL,
    committed_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    input_rows        bigint      NOT NULL,
    valid_rows        bigint      NOT NULL,
    malformed_rows    bigint      NOT NULL,
    late_rows         bigint      NOT NULL,
    watermark         timestamptz,
    max_event_time    timestamptz,
    duration_ms       bigint,
    latency_histogram jsonb,      -- {{"<ms bucket>": events}}: commit time - event time
    PRIMARY KEY (query_name, batch_id)
);
-- the latest commit: the dashboard's freshness and cache key
CREATE INDEX IF NOT EXISTS batches_committed_at ON {BATCHES} (committed_at DESC);

-- the event-time watermark, advanced in the same transaction as the batch that moved it;
-- query_id is the id Spark keeps in the checkpoint: a new checkpoint under an old name is refused
CREATE TABLE IF NOT EXISTS {QUERY_STATE} (
    query_name     text PRIMARY KEY,
    max_event_time timestamptz,
    watermark      timestamptz,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE {QUERY_STATE} ADD COLUMN IF NOT EXISTS query_id text;

CREATE TABLE IF NOT EXISTS {SALES_PER_MINUTE} (
    window_start timestamptz PRIMARY KEY,
    window_end   timestamptz NOT NULL,
    orders       bigint      NOT NULL,
    units        bigint      NOT NULL,
    revenue      numeric(18, 2) NOT NULL,
    is_closed    boolean     NOT NULL DEFAULT false,  -- the watermark has passed window_end
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sales_per_minute_open
    ON {SALES_PER_MINUTE} (window_end) WHERE NOT is_closed;

CREATE TABLE IF NOT EXISTS {PRODUCT_MINUTE} (
    window_start timestamptz NOT NULL,
    product_id   bigint      NOT NULL,
    orders       bigint      NOT NULL,
    units        bigint      NOT NULL,
    revenue      numeric(18, 2) NOT NULL,
    PRIMARY KEY (window_start, product_id)
);

CREATE TABLE IF NOT EXISTS {CUSTOMER_MINUTE} (
    window_start timestamptz NOT NULL,
    customer_id  bigint      NOT NULL,
    orders       bigint      NOT NULL,
    revenue      numeric(18, 2) NOT NULL,
    PRIMARY KEY (window_start, customer_id)
);

CREATE TABLE IF NOT EXISTS {REVENUE_DAILY} (
    day        date PRIMARY KEY,
    orders     bigint NOT NULL,
    units      bigint NOT NULL,
    revenue    numeric(18, 2) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {PRODUCT_UNITS} (
    product_id bigint PRIMARY KEY,
    units_sold bigint NOT NULL
);

-- stock and reorder threshold per product, loaded from the batch gold layer at query start
CREATE TABLE IF NOT EXISTS {INVENTORY} (
    product_id        bigint PRIMARY KEY,
    stock_quantity    bigint NOT NULL,
    reorder_threshold bigint NOT NULL,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {LATE_EVENTS} (
    query_name text        NOT NULL,
    batch_id   bigint      NOT NULL,
    event_id   text        NOT NULL,
    event_time timestamptz NOT NULL,
    watermark  timestamptz NOT NULL,
    PRIMARY KEY (query_name, event_id)
);

CREATE TABLE IF NOT EXISTS {ALERTS} (
    alert_id    text PRIMARY KEY,
    alert_type  text        NOT NULL,
    severity    text        NOT NULL,
    alert_key   text        NOT NULL,
    message     text        NOT NULL,
    event_time  timestamptz,
    detected_at timestamptz NOT NULL,
    value       double precision,
    threshold   double precision,
    event_id    text,
    query_name  text,
    batch_id    bigint
);
CREATE INDEX IF NOT EXISTS alerts_detected_at ON {ALERTS} (detected_at DESC);

CREATE TABLE IF NOT EXISTS {QUARANTINE} (
    query_name  text        NOT NULL,
    batch_id    bigint      NOT NULL,
    line_no     bigint      NOT NULL,  -- position within the batch, for a stable key
    raw         text        NOT NULL,
    reason      text        NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (query_name, batch_id, line_no)
);
"""


@dataclass(frozen=True)
class ViewParams:
    """The parameters baked into the views (``query:`` in streaming_config.yaml)."""

    window: dt.timedelta = dt.timedelta(minutes=1)
    sliding_window: dt.timedelta = dt.timedelta(minutes=10)
    sliding_step: dt.timedelta = dt.timedelta(minutes=1)
    top_n: int = 10
    active_customers_minutes: int = 15


def _interval(length: dt.timedelta) -> str:
    return f"interval '{int(length.total_seconds() * 1_000_000)} microseconds'"


def views_sql(params: ViewParams) -> str:
    """``CREATE OR REPLACE VIEW`` of the three views, with the parameters inlined.

    - ``top_products``: for every sliding window (``sliding_window`` long, starting every
      ``sliding_step``, aligned to the epoch like Spark's ``window()``), the ``top_n`` products by
      revenue (ties: lower product_id first). A window is closed when its end is <= the
      watermark. Filter on ``window_start`` (or ``window_end``): the windows are generated first
      and joined to the minute rows by range, so a filter keeps the query small.
    - ``active_customers``: per window, the distinct customers in it and in the
      ``active_customers_minutes`` ending with it.
    - ``revenue_running``: per day, the day's totals and the running totals since the start.
    """
    length, step = _interval(params.sliding_window), _interval(params.sliding_step)
    recent = _interval(dt.timedelta(minutes=params.active_customers_minutes))
    return f"""
CREATE OR REPLACE VIEW {TOP_PRODUCTS} AS
WITH bounds AS (
    SELECT min(window_start) AS first_minute, max(window_start) AS last_minute
    FROM {PRODUCT_MINUTE}
), windows AS (
    SELECT w AS window_start, w + {length} AS window_end
    FROM bounds, generate_series(
        date_bin({step}, first_minute - {length}, timestamptz '1970-01-01 00:00:00+00'),
        last_minute, {step}) AS w
), ranked AS (
    SELECT w.window_start, w.window_end, p.product_id,
           sum(p.orders)::bigint AS orders, sum(p.units)::bigint AS units,
           sum(p.revenue)::numeric(18, 2) AS revenue,
           row_number() OVER (PARTITION BY w.window_start
                              ORDER BY sum(p.revenue) DESC, p.product_id) AS rank
    FROM windows w
    JOIN {PRODUCT_MINUTE} p
      ON p.window_start >= w.window_start AND p.window_start < w.window_end
    GROUP BY w.window_start, w.window_end, p.product_id
)
SELECT window_start, window_end, rank, product_id, orders, units, revenue,
       window_end <= coalesce((SELECT max(watermark) FROM {QUERY_STATE}), '-infinity')
           AS is_closed
FROM ranked
WHERE rank <= {int(params.top_n)};

CREATE OR REPLACE VIEW {ACTIVE_CUSTOMERS} AS
SELECT m.window_start, m.window_end,
       (SELECT count(*) FROM {CUSTOMER_MINUTE} c
         WHERE c.window_start = m.window_start) AS active_customers,
       (SELECT count(DISTINCT c.customer_id) FROM {CUSTOMER_MINUTE} c
         WHERE c.window_start >= m.window_end - {recent}
           AND c.window_start < m.window_end) AS active_customers_recent,
       {int(params.active_customers_minutes)} AS recent_minutes,
       m.is_closed
FROM {SALES_PER_MINUTE} m;

CREATE OR REPLACE VIEW {REVENUE_RUNNING} AS
SELECT day, orders, units, revenue,
       (sum(orders) OVER running)::bigint AS running_orders,
       (sum(units) OVER running)::bigint AS running_units,
       (sum(revenue) OVER running)::numeric(18, 2) AS running_revenue
FROM {REVENUE_DAILY}
WINDOW running AS (ORDER BY day);
"""


def ensure_stream_tables(pg: PgSettings, params: ViewParams | None = None) -> None:
    """Create the streaming tables if they are missing and (re)create the views (idempotent;
    safe when several processes start at once)."""
    with connect(pg) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('sparkmart.streaming.ddl', 0))")
        conn.execute(DDL)
        conn.execute(views_sql(params or ViewParams()))
        conn.commit()


def truncate_stream_tables(pg: PgSettings) -> None:
    """Empty every streaming table (metrics, ledger, state, alerts, quarantine): a fresh start.

    The checkpoints under ``<streaming>/checkpoints`` must go with it (run_stream refuses an old
    checkpoint whose batches PostgreSQL no longer knows, and a new one under an old name).
    """
    with connect(pg) as conn:
        conn.execute(f"TRUNCATE {', '.join(STREAM_TABLES)}")
        conn.commit()
