"""The workload in Polars: lazy queries over Parquet, multi-threaded, columnar in memory.

Money is exact integer cents (discount in thousandths), as in the pandas engine.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from sparkmart.bench.engines import workload as W
from sparkmart.bench.engines.timer import StepTimer

MONEY = ("price", "cost", "unit_price")


def _scan_raw(raw: Path, entity: str) -> pl.LazyFrame:
    """A typed raw entity; decimals as int64 cents (money) or thousandths (discount)."""
    files = [str(f) for f in W.parquet_files(W.check_raw_schema(raw, entity))]
    frame = pl.scan_parquet(files)
    schema = frame.collect_schema()
    naive = [  # naive UTC microseconds, whatever the file's unit and zone
        (
            pl.col(c).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
            if getattr(schema[c], "time_zone", None)
            else pl.col(c)
        ).dt.cast_time_unit("us")
        for c in W.timestamp_columns(entity)
    ]
    frame = frame.with_columns(naive)
    scaled = [
        (pl.col(c).cast(pl.Float64) * (1000 if c == "discount" else 100)).round().cast(pl.Int64)
        for c in (*MONEY, "discount")
        if c in W.RAW_SCHEMAS[entity].fieldNames()
    ]
    return frame.with_columns(scaled)


def _dedupe(frame: pl.LazyFrame, entity: str) -> pl.LazyFrame:
    key = W.PRIMARY_KEYS[entity]
    others = W.sort_columns(entity)
    return frame.sort(
        [key, "updated_at", *others],
        descending=[False, True] + [False] * len(others),
        nulls_last=True,
    ).unique(subset=[key], keep="first", maintain_order=True)


def _ok(condition: pl.Expr) -> pl.Expr:
    """A rule whose result is null (a null operand) passes."""
    return condition.fill_null(True)


def _required(*columns: str) -> pl.Expr:
    return pl.all_horizontal([pl.col(c).is_not_null() for c in columns])


def clean(raw: Path, params: W.WorkloadParams) -> dict[str, pl.LazyFrame]:
    """The ingest_clean step as lazy queries."""
    as_of = pl.lit(params.as_of).dt.cast_time_unit("us")
    min_ts = pl.lit(dt.datetime.combine(W.MIN_DATE, dt.time())).dt.cast_time_unit("us")
    raw_frames = {e: _scan_raw(raw, e) for e in W.ENTITIES}
    customers = _dedupe(raw_frames["customers"], "customers").filter(
        _required(*W.REQUIRED["customers"])
        & _ok(pl.col("email").str.contains(W.EMAIL_REGEX))
        & _ok(pl.col("signup_date").is_between(W.MIN_DATE, params.as_of_date))
        & _ok(pl.col("updated_at") <= as_of)
    )
    products = (
        _dedupe(raw_frames["products"], "products")
        .filter(
            _required(*W.REQUIRED["products"])
            & _ok(pl.col("price") >= 0)
            & _ok(pl.col("cost") >= 0)
            & _ok(pl.col("stock_quantity") >= 0)
            & _ok(pl.col("updated_at") <= as_of)
        )
        .with_columns(pl.col("category").fill_null(W.UNCATEGORIZED))
    )
    customer_keys = raw_frames["customers"].select("customer_id").drop_nulls().unique()
    product_keys = raw_frames["products"].select("product_id").drop_nulls().unique()
    orders = (
        _dedupe(raw_frames["orders"], "orders")
        .filter(
            _required(*W.REQUIRED["orders"])
            & _ok(pl.col("quantity") > 0)
            & _ok(pl.col("unit_price") >= 0)
            & _ok(pl.col("discount").is_between(0, 1000))
            & _ok(pl.col("order_ts").is_between(min_ts, as_of))
            & _ok(pl.col("order_ts") <= pl.col("shipped_ts"))
            & _ok(pl.col("shipped_ts") <= pl.col("delivered_ts"))
            & _ok(pl.col("order_ts") <= pl.col("updated_at"))
            & _ok(pl.col("updated_at") <= as_of)
            & _ok(pl.col("status").is_in(W.ORDER_STATUSES))
        )
        .join(customer_keys, on="customer_id", how="semi")
        .join(product_keys, on="product_id", how="semi")
        .with_columns(pl.col("discount").fill_null(0))
    )
    return {"customers": customers, "products": products, "orders": orders}


def _to_units(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Cents back to currency units (float64) for the clean Parquet files."""
    names = frame.collect_schema().names()
    return frame.with_columns(
        [pl.col(c) / 100.0 for c in MONEY if c in names]
        + ([pl.col("discount") / 1000.0] if "discount" in names else [])
    )


def _from_units(frame: pl.LazyFrame) -> pl.LazyFrame:
    names = frame.collect_schema().names()
    return frame.with_columns(
        [(pl.col(c) * 100).round().cast(pl.Int64) for c in MONEY if c in names]
        + ([(pl.col("discount") * 1000).round().cast(pl.Int64)] if "discount" in names else [])
    )


def _write(frame: pl.DataFrame | pl.LazyFrame, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    frame.write_parquet(path / "part.parquet", compression="snappy")


def _half_up(numerator: pl.Expr, denominator: pl.Expr | int) -> pl.Expr:
    """round_half_up(numerator / denominator) for non-negative integers, exactly."""
    return (2 * numerator + denominator) // (2 * denominator)


def order_lines(orders: pl.LazyFrame, products: pl.LazyFrame) -> pl.LazyFrame:
    """enrich.order_lines in Polars, money in integer cents."""
    costs = products.select("product_id", "category", pl.col("cost").alias("unit_cost"))
    gross = pl.col("quantity").cast(pl.Int64) * pl.col("unit_price")
    return orders.join(costs, on="product_id", how="left").with_columns(
        order_date=pl.col("order_ts").dt.date(),
        net_revenue=_half_up(gross * (1000 - pl.col("discount")), 1000),
        line_cost=pl.col("quantity").cast(pl.Int64) * pl.col("unit_cost"),
        is_realized=pl.col("status").is_in(W.REALIZED).fill_null(False),
    )


def _money(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64) / 100.0


def customer_ltv(lines: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    value = pl.col("net_revenue").cast(pl.Float64) / 100.0
    history = (
        lines.filter(pl.col("is_realized"))
        .group_by("customer_id")
        .agg(
            first_order_date=pl.col("order_date").min(),
            last_order_date=pl.col("order_date").max(),
            orders=pl.len().cast(pl.Int64),
            revenue=pl.col("net_revenue").sum(),
            median_order_value=value.median().round(3),
            order_value_mad=(value - value.median()).abs().median().round(3),
        )
    )
    as_of_lit = pl.lit(as_of)
    days_since = (as_of_lit - pl.col("last_order_date")).dt.total_days()
    observed = pl.max_horizontal(
        (as_of_lit - pl.col("first_order_date")).dt.total_days() + 1,
        pl.lit(W.CLV_MIN_OBSERVATION_DAYS),
    )
    avg_cents = _half_up(pl.col("revenue"), pl.col("orders"))
    return (
        history.with_columns(
            avg_cents=avg_cents,
            tenure_days=(pl.col("last_order_date") - pl.col("first_order_date")).dt.total_days(),
            days_since_last_order=days_since,
            purchase_rate_per_year=pl.col("orders") * 365.0 / observed,
        )
        .with_columns(
            predicted_clv=(
                pl.col("avg_cents")
                / 100.0
                * pl.col("purchase_rate_per_year")
                * W.CLV_HORIZON_YEARS
                * (-pl.col("days_since_last_order") / W.CLV_INACTIVITY_DAYS).exp()
            ).round(2),
        )
        .with_columns(revenue=_money("revenue"), avg_order_value=_money("avg_cents"))
        .select(W.MART_COLUMNS["customer_ltv"])
    )


def product_performance(products: pl.LazyFrame, lines: pl.LazyFrame) -> pl.LazyFrame:
    sales = (
        lines.filter(pl.col("is_realized"))
        .group_by("product_id")
        .agg(
            units_sold=pl.col("quantity").cast(pl.Int64).sum(),
            orders=pl.len().cast(pl.Int64),
            revenue=pl.col("net_revenue").sum(),
            cost=pl.col("line_cost").sum(),
        )
    )
    return (
        products.select("product_id", "name", "category", "brand")
        .join(sales, on="product_id", how="left")
        .with_columns(pl.col("units_sold", "orders", "revenue", "cost").fill_null(0))
        .with_columns(margin=pl.col("revenue") - pl.col("cost"))
        .with_columns(
            margin_rate=pl.when(pl.col("revenue") != 0).then(
                (pl.col("margin") / pl.col("revenue")).round(4)
            ),
            category_rank=pl.col("revenue")
            .rank("dense", descending=True)
            .over("category")
            .cast(pl.Int32),
        )
        .with_columns(_money("revenue"), _money("cost"), _money("margin"))
    )


def _growth(column: str) -> pl.Expr:
    before = pl.col(column).shift(1).cast(pl.Float64)
    return pl.when(before != 0).then((pl.col(column).cast(pl.Float64) - before) / before)


def sales_trends(lines: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    realized = pl.col("is_realized")
    daily = lines.group_by("order_date").agg(
        orders_placed=pl.len().cast(pl.Int64),
        orders=realized.sum().cast(pl.Int64),
        units=pl.when(realized).then(pl.col("quantity")).otherwise(0).cast(pl.Int64).sum(),
        revenue=pl.when(realized).then(pl.col("net_revenue")).otherwise(0).sum(),
    )
    first = lines.select(pl.col("order_date").min()).collect().item()
    calendar = pl.LazyFrame({"order_date": pl.date_range(first, as_of, "1d", eager=True)})
    dense = calendar.join(daily, on="order_date", how="left").with_columns(
        pl.col("orders_placed", "orders", "units", "revenue").fill_null(0)
    )
    sums = [pl.col(c).sum() for c in ("orders_placed", "orders", "units", "revenue")]
    days = dense.rename({"order_date": "period_start"}).with_columns(
        grain=pl.lit("day"), period_end=pl.col("period_start")
    )
    weeks = (
        dense.group_by(period_start=pl.col("order_date").dt.truncate("1w"))
        .agg(sums)
        .with_columns(grain=pl.lit("week"), period_end=pl.col("period_start").dt.offset_by("6d"))
    )
    months = (
        dense.group_by(period_start=pl.col("order_date").dt.month_start())
        .agg(sums)
        .with_columns(grain=pl.lit("month"), period_end=pl.col("period_start").dt.month_end())
    )
    columns = ["grain", "period_start", "period_end", "orders_placed", "orders", "units", "revenue"]
    averages = [
        pl.when(pl.col("grain") == "day")
        .then((pl.col("revenue") / 100.0).rolling_mean(n, min_samples=n).over("grain"))
        .alias(f"revenue_ma_{n}d")
        for n in W.MOVING_AVERAGE_DAYS
    ]
    return (
        pl.concat([part.select(columns) for part in (days, weeks, months)])
        .sort("grain", "period_start")
        .with_columns(
            *averages,
            is_complete=pl.col("period_end") <= pl.lit(as_of),
            orders_growth=_growth("orders").over("grain"),
            revenue_growth=_growth("revenue").over("grain"),
        )
        .with_columns(revenue=_money("revenue"))
        .select(W.MART_COLUMNS["sales_trends"])
    )


def _month_index(column: str) -> pl.Expr:
    return pl.col(column).dt.year().cast(pl.Int32) * 12 + pl.col(column).dt.month().cast(pl.Int32)


def cohorts(lines: pl.LazyFrame, as_of: dt.date) -> pl.LazyFrame:
    cells = (
        lines.filter(pl.col("is_realized"))
        .group_by("customer_id", month=pl.col("order_date").dt.month_start())
        .agg(revenue=pl.col("net_revenue").sum())
        .with_columns(cohort_month=pl.col("month").min().over("customer_id"))
        .with_columns(months_since_first=_month_index("month") - _month_index("cohort_month"))
        .group_by("cohort_month", "months_since_first")
        .agg(active_customers=pl.len().cast(pl.Int64), revenue=pl.col("revenue").sum())
    )
    last = as_of.year * 12 + as_of.month
    grid = (
        cells.filter(pl.col("months_since_first") == 0)
        .select("cohort_month", cohort_size=pl.col("active_customers"))
        .with_columns(months_since_first=pl.int_ranges(0, last - _month_index("cohort_month") + 1))
        .explode("months_since_first")
        .with_columns(pl.col("months_since_first").cast(pl.Int32))
    )
    return (
        grid.join(cells, on=["cohort_month", "months_since_first"], how="left")
        .with_columns(pl.col("active_customers", "revenue").fill_null(0))
        .with_columns(
            retention_rate=pl.col("active_customers") / pl.col("cohort_size"),
            revenue=_money("revenue"),
        )
        .select(W.MART_COLUMNS["cohorts"])
    )


def run(raw: Path, out: Path, params: W.WorkloadParams, timer: StepTimer) -> None:
    """Every step of the workload, timed."""
    with timer.step("ingest_clean"):
        frames = pl.collect_all(list(clean(raw, params).values()))
        for entity, frame in zip(W.ENTITIES, frames, strict=True):
            _write(_to_units(frame.lazy()), out / f"clean_{entity}")
    with timer.step("prepare"):
        products = _from_units(pl.scan_parquet(out / "clean_products" / "part.parquet"))
        orders = _from_units(pl.scan_parquet(out / "clean_orders" / "part.parquet"))
        products = products.collect().lazy()
        lines = order_lines(orders, products).collect().lazy()
        as_of = lines.select(pl.col("order_date").max()).collect().item()
    with timer.step("customer_ltv"):
        _write(customer_ltv(lines, as_of), out / "customer_ltv")
    with timer.step("product_performance"):
        _write(product_performance(products, lines), out / "product_performance")
    with timer.step("sales_trends"):
        _write(sales_trends(lines, as_of), out / "sales_trends")
    with timer.step("cohorts"):
        _write(cohorts(lines, as_of), out / "cohorts")
