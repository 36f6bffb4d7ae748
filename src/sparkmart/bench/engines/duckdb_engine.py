"""The workload in DuckDB: SQL over Parquet in one in-process, multi-threaded database.

Money stays DECIMAL; DuckDB divides decimals into DOUBLE, so the one exact money division
(avg_order_value, half-up to the cent) is done in integer cents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from sparkmart.bench.engines import workload as W
from sparkmart.bench.engines.timer import StepTimer

_q = W.sql_literal
_files = W.parquet_list_sql


def _dedupe_sql(entity: str, source: str) -> str:
    key = W.PRIMARY_KEYS[entity]
    order = ", ".join(
        ["updated_at DESC NULLS LAST"] + [f"{c} ASC NULLS LAST" for c in W.sort_columns(entity)]
    )
    rank = f"row_number() OVER (PARTITION BY {key} ORDER BY {order})"
    return f"SELECT * FROM {source} QUALIFY {rank} = 1"


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO {_q(str(path / 'part.parquet'))} (FORMAT parquet)")


def ingest_clean(
    con: duckdb.DuckDBPyConnection, raw: Path, out: Path, params: W.WorkloadParams
) -> None:
    """Read, type-check, deduplicate, filter and repair the raw entities; write clean Parquet."""
    for entity in W.ENTITIES:
        path = W.check_raw_schema(raw, entity)
        naive = ", ".join(f"CAST({c} AS TIMESTAMP) AS {c}" for c in W.timestamp_columns(entity))
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE raw_{entity} AS "
            f"SELECT * REPLACE ({naive}) FROM read_parquet({_files(path)})"
        )
    as_of = f"TIMESTAMP {_q(params.as_of.isoformat(sep=' '))}"
    as_of_date = f"DATE {_q(params.as_of_date.isoformat())}"
    min_date = f"DATE {_q(W.MIN_DATE.isoformat())}"
    min_ts = f"TIMESTAMP {_q(W.MIN_DATE.isoformat() + ' 00:00:00')}"
    regex = _q(W.EMAIL_REGEX)
    statuses = ", ".join(_q(s) for s in W.ORDER_STATUSES)

    def ok(condition: str) -> str:  # a rule with a null result passes
        return f"coalesce({condition}, true)"

    def required(entity: str) -> str:
        return " AND ".join(f"{c} IS NOT NULL" for c in W.REQUIRED[entity])

    customers = f"""
        SELECT * FROM ({_dedupe_sql("customers", "raw_customers")})
        WHERE {required("customers")}
          AND {ok(f"regexp_full_match(email, {regex})")}
          AND {ok(f"signup_date BETWEEN {min_date} AND {as_of_date}")}
          AND {ok(f"updated_at <= {as_of}")}"""
    products = f"""
        SELECT * REPLACE (coalesce(category, {_q(W.UNCATEGORIZED)}) AS category)
        FROM ({_dedupe_sql("products", "raw_products")})
        WHERE {required("products")}
          AND {ok("price >= 0")} AND {ok("cost >= 0")} AND {ok("stock_quantity >= 0")}
          AND {ok(f"updated_at <= {as_of}")}"""
    orders = f"""
        SELECT * REPLACE (coalesce(discount, 0)::DECIMAL(4,3) AS discount)
        FROM ({_dedupe_sql("orders", "raw_orders")})
        WHERE {required("orders")}
          AND {ok("quantity > 0")} AND {ok("unit_price >= 0")}
          AND {ok("discount BETWEEN 0 AND 1")}
          AND {ok(f"order_ts BETWEEN {min_ts} AND {as_of}")}
          AND {ok("order_ts <= shipped_ts")} AND {ok("shipped_ts <= delivered_ts")}
          AND {ok("order_ts <= updated_at")} AND {ok(f"updated_at <= {as_of}")}
          AND {ok(f"status IN ({statuses})")}
          AND customer_id IN (SELECT customer_id FROM raw_customers WHERE customer_id IS NOT NULL)
          AND product_id IN (SELECT product_id FROM raw_products WHERE product_id IS NOT NULL)"""
    for entity, sql in (("customers", customers), ("products", products), ("orders", orders)):
        _copy(con, sql, out / f"clean_{entity}")
    for entity in W.ENTITIES:
        con.execute(f"DROP TABLE raw_{entity}")


def prepare(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    """Order lines (enrich.order_lines) as a temp table, and the analysis date."""
    realized = ", ".join(_q(s) for s in W.REALIZED)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE products AS
        SELECT * FROM read_parquet({_files(out / "clean_products")})""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE lines AS
        SELECT o.order_id, o.customer_id, o.product_id, o.quantity, o.status,
               CAST(o.order_ts AS DATE) AS order_date, p.category,
               round(o.quantity * o.unit_price * (1 - coalesce(o.discount, 0)), 2)::DECIMAL(14,2)
                   AS net_revenue,
               (o.quantity * p.cost)::DECIMAL(14,2) AS line_cost,
               coalesce(o.status IN ({realized}), false) AS is_realized
        FROM read_parquet({_files(out / "clean_orders")}) o
        LEFT JOIN products p USING (product_id)""")
    con.execute("CREATE OR REPLACE TEMP TABLE as_of AS SELECT max(order_date) AS d FROM lines")


CUSTOMER_LTV = f"""
WITH realized AS (SELECT * FROM lines WHERE is_realized),
history AS (
    SELECT customer_id, min(order_date) AS first_order_date, max(order_date) AS last_order_date,
           count(*) AS orders, sum(net_revenue) AS revenue,
           median(net_revenue::DOUBLE) AS median_value
    FROM realized GROUP BY customer_id),
mad AS (
    SELECT r.customer_id, median(abs(r.net_revenue::DOUBLE - h.median_value)) AS mad
    FROM realized r JOIN history h USING (customer_id) GROUP BY r.customer_id),
ltv AS (
    SELECT h.*, m.mad, (SELECT d FROM as_of) AS as_of,
           ((2 * CAST(h.revenue * 100 AS BIGINT) + h.orders) // (2 * h.orders))::DECIMAL(18,0)
               * 0.01::DECIMAL(3,2) AS avg_order_value
    FROM history h LEFT JOIN mad m USING (customer_id)),
rates AS (
    SELECT *, (as_of - last_order_date) AS days_since_last_order,
           orders * 365.0 / greatest(as_of - first_order_date + 1, {W.CLV_MIN_OBSERVATION_DAYS})
               AS purchase_rate_per_year
    FROM ltv)
SELECT customer_id, first_order_date, last_order_date, orders,
       revenue::DECIMAL(18,2) AS revenue, avg_order_value::DECIMAL(18,2) AS avg_order_value,
       round(median_value, 3) AS median_order_value, round(mad, 3) AS order_value_mad,
       (last_order_date - first_order_date)::INTEGER AS tenure_days,
       days_since_last_order::INTEGER AS days_since_last_order,
       purchase_rate_per_year::DOUBLE AS purchase_rate_per_year,
       round(avg_order_value::DOUBLE * purchase_rate_per_year * {W.CLV_HORIZON_YEARS}
             * exp(-days_since_last_order / {W.CLV_INACTIVITY_DAYS}), 2)::DECIMAL(18,2)
           AS predicted_clv
FROM rates"""

PRODUCT_PERFORMANCE = """
WITH sales AS (
    SELECT product_id, sum(quantity) AS units_sold, count(*) AS orders,
           sum(net_revenue) AS revenue, sum(line_cost) AS cost
    FROM lines WHERE is_realized GROUP BY product_id),
perf AS (
    SELECT p.product_id, p.name, p.category, p.brand,
           coalesce(s.units_sold, 0)::BIGINT AS units_sold, coalesce(s.orders, 0) AS orders,
           coalesce(s.revenue, 0)::DECIMAL(18,2) AS revenue,
           coalesce(s.cost, 0)::DECIMAL(18,2) AS cost
    FROM products p LEFT JOIN sales s USING (product_id))
SELECT *, (revenue - cost)::DECIMAL(18,2) AS margin,
       round((revenue - cost)::DOUBLE / nullif(revenue::DOUBLE, 0), 4) AS margin_rate,
       dense_rank() OVER (PARTITION BY category ORDER BY revenue DESC)::INTEGER AS category_rank
FROM perf"""


def _sales_trends_sql() -> str:
    averages = ",\n".join(
        f"""CASE WHEN grain = 'day' AND count(*) OVER w{n} = {n}
                THEN avg(revenue::DOUBLE) OVER w{n} END AS revenue_ma_{n}d"""
        for n in W.MOVING_AVERAGE_DAYS
    )
    windows = ", ".join(
        f"w{n} AS (PARTITION BY grain ORDER BY period_start ROWS BETWEEN {n - 1} PRECEDING"
        " AND CURRENT ROW)"
        for n in W.MOVING_AVERAGE_DAYS
    )
    return f"""
WITH daily AS (
    SELECT order_date, count(*) AS orders_placed, count(*) FILTER (WHERE is_realized) AS orders,
           coalesce(sum(quantity) FILTER (WHERE is_realized), 0) AS units,
           coalesce(sum(net_revenue) FILTER (WHERE is_realized), 0) AS revenue
    FROM lines GROUP BY order_date),
calendar AS (
    SELECT unnest(generate_series((SELECT min(order_date) FROM lines), (SELECT d FROM as_of),
                                  INTERVAL 1 DAY))::DATE AS order_date),
dense AS (
    SELECT c.order_date, coalesce(orders_placed, 0) AS orders_placed,
           coalesce(orders, 0) AS orders, coalesce(units, 0) AS units,
           coalesce(revenue, 0) AS revenue
    FROM calendar c LEFT JOIN daily USING (order_date)),
periods AS (
    SELECT 'day' AS grain, order_date AS period_start, order_date AS period_end, * EXCLUDE
           (order_date) FROM dense
    UNION ALL
    SELECT 'week', date_trunc('week', order_date)::DATE, (date_trunc('week', order_date) +
           INTERVAL 6 DAY)::DATE, sum(orders_placed), sum(orders), sum(units), sum(revenue)
    FROM dense GROUP BY 2, 3
    UNION ALL
    SELECT 'month', date_trunc('month', order_date)::DATE, last_day(order_date),
           sum(orders_placed), sum(orders), sum(units), sum(revenue)
    FROM dense GROUP BY 2, 3)
SELECT grain, period_start, period_end, period_end <= (SELECT d FROM as_of) AS is_complete,
       orders_placed::BIGINT AS orders_placed, orders::BIGINT AS orders, units::BIGINT AS units,
       revenue::DECIMAL(18,2) AS revenue,
       (orders - lag(orders) OVER g)::DOUBLE / nullif(lag(orders) OVER g, 0) AS orders_growth,
       (revenue - lag(revenue) OVER g)::DOUBLE / nullif(lag(revenue) OVER g, 0)::DOUBLE
           AS revenue_growth,
       {averages}
FROM periods
WINDOW g AS (PARTITION BY grain ORDER BY period_start), {windows}"""


COHORTS = """
WITH monthly AS (
    SELECT customer_id, date_trunc('month', order_date)::DATE AS month,
           sum(net_revenue) AS revenue
    FROM lines WHERE is_realized GROUP BY ALL),
firsts AS (
    SELECT *, min(month) OVER (PARTITION BY customer_id) AS cohort_month FROM monthly),
cells AS (
    SELECT cohort_month, date_diff('month', cohort_month, month)::INTEGER AS months_since_first,
           count(*) AS active_customers, sum(revenue) AS revenue
    FROM firsts GROUP BY ALL),
grid AS (
    SELECT cohort_month, active_customers AS cohort_size,
           unnest(range(0, date_diff('month', cohort_month,
                  date_trunc('month', (SELECT d FROM as_of))::DATE) + 1))::INTEGER
               AS months_since_first
    FROM cells WHERE months_since_first = 0)
SELECT g.cohort_month, g.months_since_first, g.cohort_size::BIGINT AS cohort_size,
       coalesce(c.active_customers, 0)::BIGINT AS active_customers,
       coalesce(c.active_customers, 0)::DOUBLE / g.cohort_size AS retention_rate,
       coalesce(c.revenue, 0)::DECIMAL(18,2) AS revenue
FROM grid g LEFT JOIN cells c USING (cohort_month, months_since_first)"""


# DuckDB's own default is 80% of RAM (18.8 GiB here), above the benchmark's 16 GiB cap: at
# 100M orders the cap killed it before it needed to spill. Under this limit it spills to disk
# like Spark does, which is how one would run it on a machine it shares.
MEMORY_LIMIT = "10GiB"


def run(raw: Path, out: Path, params: W.WorkloadParams, timer: StepTimer) -> None:
    """Every step of the workload, timed."""
    spill_dir = out / "_spill"
    con = W.duckdb_connect(MEMORY_LIMIT, spill_dir)
    with timer.step("ingest_clean"):
        ingest_clean(con, raw, out, params)
    with timer.step("prepare"):
        prepare(con, out)
    marts = {
        "customer_ltv": CUSTOMER_LTV,
        "product_performance": PRODUCT_PERFORMANCE,
        "sales_trends": _sales_trends_sql(),
        "cohorts": COHORTS,
    }
    for name, sql in marts.items():
        with timer.step(name):
            _copy(con, sql, out / name)
    con.close()
    shutil.rmtree(spill_dir, ignore_errors=True)
