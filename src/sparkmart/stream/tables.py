"""The PostgreSQL tables of the streaming pipeline: one DDL, shared by the query, alerts and tests.

Everything the streaming query writes for a micro-batch lands in one transaction together with the
batch's row in ``streaming.batches``; a replayed batch finds its row there and writes nothing.
Windowed metrics are stored at the 1-minute grain (``window`` in the config); the sliding top
products are a view over the minute rows, so a write is proportional to the events, not to the
number of overlapping windows.
"""

from __future__ import annotations

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

-- the event-time watermark, advanced in the same transaction as the batch that moved it
CREATE TABLE IF NOT EXISTS {QUERY_STATE} (
    query_name     text PRIMARY KEY,
    max_event_time timestamptz,
    watermark      timestamptz,
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {SALES_PER_MINUTE} (
    window_start timestamptz PRIMARY KEY,
    window_end   timestamptz NOT NULL,
    orders       bigint      NOT NULL,
    units        bigint      NOT NULL,
    revenue      numeric(18, 2) NOT NULL,
    is_closed    boolean     NOT NULL DEFAULT false,  -- the watermark has passed window_end
    updated_at   timestamptz NOT NULL DEFAULT now()
);

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


def ensure_stream_tables(pg: PgSettings) -> None:
    """Create the streaming tables and views if they are missing (idempotent)."""
    with connect(pg) as conn:
        conn.execute(DDL)
        conn.commit()
