"""The workload in pandas: the traditional single-machine ETL baseline (whole tables in memory).

Money is read from Parquet decimals into exact integer cents (discounts into thousandths), so
revenue sums and half-up rounding match Spark's decimals to the cent; string columns stay
Python objects, as a classic pandas job has them (that is where its memory goes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sparkmart.bench.engines import workload as W
from sparkmart.bench.engines.timer import StepTimer

MONEY = ("price", "cost", "unit_price")


def _read_raw(raw: Path, entity: str) -> pd.DataFrame:
    """Typed raw entity; decimals as int64 cents (money) or thousandths (discount)."""
    table = pq.read_table(W.check_raw_schema(raw, entity))
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_decimal(column.type):
            # exact: decimal(10,2) values x 100 are integers far below 2**53
            scaled = pc.round(pc.multiply(column.cast(pa.float64()), 10**column.type.scale))
            table = table.set_column(table.column_names.index(name), name, scaled.cast(pa.int64()))
    frame = table.to_pandas()
    for name in W.timestamp_columns(entity):  # naive UTC, microseconds like Spark
        column = frame[name]
        if column.dt.tz is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        frame[name] = column.astype("datetime64[us]")
    for name in frame.columns:  # nullable ints (Int64) keep integer semantics with nulls
        if pa.types.is_integer(table.schema.field(name).type):
            frame[name] = frame[name].astype("Int64")
    return frame


def _dedupe(frame: pd.DataFrame, entity: str) -> pd.DataFrame:
    """Latest updated_at per key; only keys with several rows are sorted."""
    key = W.PRIMARY_KEYS[entity]
    repeated = frame[key].duplicated(keep=False) & frame[key].notna()
    many = frame[repeated]
    order = [key, "updated_at", *W.sort_columns(entity)]
    many = many.sort_values(
        order,
        ascending=[True, False] + [True] * (len(order) - 2),
        na_position="last",
        kind="mergesort",
    )
    kept = many.drop_duplicates(subset=[key], keep="first")
    return pd.concat([frame[~repeated], kept], ignore_index=True)


def _ok(condition: pd.Series, *operands: pd.Series) -> pd.Series:
    """A rule's result where a null operand passes (NaT comparisons are False in pandas)."""
    passed = condition.fillna(True).astype(bool)
    for operand in operands:
        passed |= operand.isna()
    return passed


def _required(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    return frame[list(columns)].notna().all(axis=1)


def _ts(value: object) -> pd.Timestamp:
    return pd.Timestamp(value)


def clean(raw: Path, params: W.WorkloadParams) -> dict[str, pd.DataFrame]:
    """The ingest_clean step: deduplicated rows that pass every rule, repaired."""
    as_of = _ts(params.as_of)
    min_ts = _ts(W.MIN_DATE)
    raw_frames = {e: _read_raw(raw, e) for e in W.ENTITIES}
    c = _dedupe(raw_frames["customers"], "customers")
    email = c["email"].astype("string")
    signup = pd.to_datetime(c["signup_date"])
    c = c[
        _required(c, W.REQUIRED["customers"])
        & _ok(email.str.fullmatch(W.EMAIL_REGEX))
        & _ok(
            (signup >= pd.Timestamp(W.MIN_DATE)) & (signup <= pd.Timestamp(params.as_of_date)),
            signup,
        )
        & _ok(c["updated_at"] <= as_of, c["updated_at"])
    ]
    p = _dedupe(raw_frames["products"], "products")
    p = p[
        _required(p, W.REQUIRED["products"])
        & _ok(p["price"] >= 0)
        & _ok(p["cost"] >= 0)
        & _ok(p["stock_quantity"] >= 0)
        & _ok(p["updated_at"] <= as_of, p["updated_at"])
    ].copy()
    p["category"] = p["category"].fillna(W.UNCATEGORIZED)
    o = _dedupe(raw_frames["orders"], "orders")
    o = o[
        _required(o, W.REQUIRED["orders"])
        & _ok(o["quantity"] > 0)
        & _ok(o["unit_price"] >= 0)
        & _ok((o["discount"] >= 0) & (o["discount"] <= 1000))
        & _ok((o["order_ts"] >= min_ts) & (o["order_ts"] <= as_of), o["order_ts"])
        & _ok(o["order_ts"] <= o["shipped_ts"], o["order_ts"], o["shipped_ts"])
        & _ok(o["shipped_ts"] <= o["delivered_ts"], o["shipped_ts"], o["delivered_ts"])
        & _ok(o["order_ts"] <= o["updated_at"], o["order_ts"], o["updated_at"])
        & _ok(o["updated_at"] <= as_of, o["updated_at"])
        & _ok(o["status"].isin(W.ORDER_STATUSES))
        & _ok(o["customer_id"].isin(raw_frames["customers"]["customer_id"].dropna()))
        & _ok(o["product_id"].isin(raw_frames["products"]["product_id"].dropna()))
    ].copy()
    o["discount"] = o["discount"].fillna(0)
    return {"customers": c, "products": p, "orders": o}


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def _money(cents: pd.Series) -> pd.Series:
    return cents.astype("float64") / 100.0


def _round_half_up(numerator: pd.Series, denominator: int | pd.Series) -> pd.Series:
    """round_half_up(numerator / denominator) for non-negative integers, exactly."""
    return (2 * numerator + denominator) // (2 * denominator)


def order_lines(orders: pd.DataFrame, products: pd.DataFrame) -> pd.DataFrame:
    """enrich.order_lines in pandas: money in integer cents."""
    lines = orders.merge(
        products[["product_id", "category", "cost"]].rename(columns={"cost": "unit_cost"}),
        on="product_id",
        how="left",
    )
    lines["order_date"] = lines["order_ts"].dt.floor("D")
    # cents x thousandths: quantity x unit_price x (1000 - discount) / 1000, half-up to cents
    gross = lines["quantity"].astype("int64") * lines["unit_price"].astype("int64")
    lines["net_revenue"] = _round_half_up(gross * (1000 - lines["discount"].astype("int64")), 1000)
    lines["line_cost"] = lines["quantity"] * lines["unit_cost"]
    lines["is_realized"] = lines["status"].isin(W.REALIZED)
    return lines


def customer_ltv(lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    realized = lines[lines["is_realized"]]
    g = realized.groupby("customer_id")
    ltv = g.agg(
        first_order_date=("order_date", "min"),
        last_order_date=("order_date", "max"),
        orders=("order_id", "size"),
        revenue=("net_revenue", "sum"),
    )
    values = realized["net_revenue"].astype("float64") / 100.0
    median = values.groupby(realized["customer_id"]).transform("median")
    ltv["median_order_value"] = values.groupby(realized["customer_id"]).median().round(3)
    ltv["order_value_mad"] = (values - median).abs().groupby(realized["customer_id"]).median()
    ltv["order_value_mad"] = ltv["order_value_mad"].round(3)
    ltv = ltv.reset_index()
    avg_cents = _round_half_up(ltv["revenue"].astype("int64"), ltv["orders"].astype("int64"))
    ltv["tenure_days"] = (ltv["last_order_date"] - ltv["first_order_date"]).dt.days
    ltv["days_since_last_order"] = (as_of - ltv["last_order_date"]).dt.days
    observed = np.maximum((as_of - ltv["first_order_date"]).dt.days + 1, W.CLV_MIN_OBSERVATION_DAYS)
    ltv["purchase_rate_per_year"] = ltv["orders"] * 365.0 / observed
    survival = np.exp(-ltv["days_since_last_order"] / W.CLV_INACTIVITY_DAYS)
    predicted = (avg_cents / 100.0) * ltv["purchase_rate_per_year"] * W.CLV_HORIZON_YEARS
    ltv["predicted_clv"] = (predicted * survival).round(2)
    ltv["revenue"] = _money(ltv["revenue"])
    ltv["avg_order_value"] = _money(avg_cents)
    for column in ("first_order_date", "last_order_date"):
        ltv[column] = ltv[column].dt.date
    return ltv[W.MART_COLUMNS["customer_ltv"]]


def product_performance(products: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    sales = (
        lines[lines["is_realized"]]
        .groupby("product_id")
        .agg(
            units_sold=("quantity", "sum"),
            orders=("order_id", "size"),
            revenue=("net_revenue", "sum"),
            cost=("line_cost", "sum"),
        )
        .reset_index()
    )
    perf = products[["product_id", "name", "category", "brand"]].merge(
        sales, on="product_id", how="left"
    )
    for column in ("units_sold", "orders", "revenue", "cost"):
        perf[column] = perf[column].fillna(0).astype("int64")
    perf["margin"] = perf["revenue"] - perf["cost"]
    rate = perf["margin"] / perf["revenue"].where(perf["revenue"] != 0)
    perf["margin_rate"] = rate.astype("float64").round(4)
    perf["category_rank"] = (
        perf.groupby("category", dropna=False)["revenue"].rank(method="dense", ascending=False)
    ).astype("int32")
    for column in ("revenue", "cost", "margin"):
        perf[column] = _money(perf[column])
    return perf


def _totals(daily: pd.DataFrame, grain: str, start: pd.Series) -> pd.DataFrame:
    totals = (
        daily.groupby(start.rename("period_start"))[["orders_placed", "orders", "units", "revenue"]]
        .sum()
        .reset_index()
    )
    totals.insert(0, "grain", grain)
    return totals


def _growth(column: pd.Series) -> pd.Series:
    before = column.shift(1).astype("float64")
    return (column.astype("float64") - before) / before.where(before != 0)


def sales_trends(lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    realized = lines["is_realized"]
    per_line = pd.DataFrame(
        {
            "order_date": lines["order_date"],
            "orders_placed": 1,
            "orders": realized.astype("int64"),
            "units": lines["quantity"].where(realized, 0).astype("int64"),
            "revenue": lines["net_revenue"].where(realized, 0).astype("int64"),
        }
    )
    daily = per_line.groupby("order_date").sum()
    calendar = pd.date_range(lines["order_date"].min(), as_of, freq="D", name="order_date")
    daily = daily.reindex(calendar, fill_value=0).reset_index()
    day = daily["order_date"]
    days = _totals(daily, "day", day)
    for n in W.MOVING_AVERAGE_DAYS:
        mean = (days["revenue"] / 100.0).rolling(n, min_periods=n).mean()
        days[f"revenue_ma_{n}d"] = mean
    weeks = _totals(daily, "week", day - pd.to_timedelta(day.dt.weekday, unit="D"))
    weeks["period_end"] = weeks["period_start"] + pd.Timedelta(days=6)
    months = _totals(daily, "month", day.dt.to_period("M").dt.to_timestamp())
    months["period_end"] = months["period_start"] + pd.offsets.MonthEnd(0)
    days["period_end"] = days["period_start"]
    parts = []
    for part in (days, weeks, months):
        part = part.sort_values("period_start").reset_index(drop=True)
        part["orders_growth"] = _growth(part["orders"])
        part["revenue_growth"] = _growth(part["revenue"])
        parts.append(part)
    trends = pd.concat(parts, ignore_index=True)
    trends["is_complete"] = trends["period_end"] <= as_of
    trends["revenue"] = _money(trends["revenue"])
    for column in ("period_start", "period_end"):
        trends[column] = trends[column].dt.date
    return trends[W.MART_COLUMNS["sales_trends"]]


def _month_index(month_start: pd.Series) -> pd.Series:
    return month_start.dt.year * 12 + month_start.dt.month


def cohorts(lines: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    realized = lines[lines["is_realized"]]
    month = realized["order_date"].dt.to_period("M").dt.to_timestamp()
    monthly = (
        realized.assign(month=month)
        .groupby(["customer_id", "month"])["net_revenue"]
        .sum()
        .reset_index()
    )
    monthly["cohort_month"] = monthly.groupby("customer_id")["month"].transform("min")
    monthly["months_since_first"] = _month_index(monthly["month"]) - _month_index(
        monthly["cohort_month"]
    )
    cells = (
        monthly.groupby(["cohort_month", "months_since_first"])
        .agg(active_customers=("customer_id", "size"), revenue=("net_revenue", "sum"))
        .reset_index()
    )
    sizes = cells[cells["months_since_first"] == 0][["cohort_month", "active_customers"]]
    sizes = sizes.rename(columns={"active_customers": "cohort_size"})
    last = as_of.year * 12 + as_of.month
    spans = last - _month_index(sizes["cohort_month"])
    grid = sizes.loc[sizes.index.repeat(spans + 1)].copy()
    grid["months_since_first"] = grid.groupby("cohort_month").cumcount()
    result = grid.merge(cells, on=["cohort_month", "months_since_first"], how="left")
    result["active_customers"] = result["active_customers"].fillna(0).astype("int64")
    result["revenue"] = _money(result["revenue"].fillna(0).astype("int64"))
    result["retention_rate"] = result["active_customers"] / result["cohort_size"]
    result["months_since_first"] = result["months_since_first"].astype("int32")
    result["cohort_month"] = result["cohort_month"].dt.date
    return result[W.MART_COLUMNS["cohorts"]]


def _clean_for_parquet(frame: pd.DataFrame, entity: str) -> pd.DataFrame:
    """Money back to currency units (float64) for the clean Parquet files."""
    out = frame.copy()
    for column in MONEY:
        if column in out:
            out[column] = _money(out[column])
    if "discount" in out:
        out["discount"] = out["discount"].astype("float64") / 1000.0
    return out


def run(raw: Path, out: Path, params: W.WorkloadParams, timer: StepTimer) -> None:
    """Every step of the workload, timed."""
    with timer.step("ingest_clean"):
        for entity, frame in clean(raw, params).items():
            _write(_clean_for_parquet(frame, entity), out / f"clean_{entity}" / "part.parquet")
    with timer.step("prepare"):
        orders = _read_clean(out / "clean_orders")
        products = _read_clean(out / "clean_products")
        lines = order_lines(orders, products)
        as_of = lines["order_date"].max()
    with timer.step("customer_ltv"):
        _write(customer_ltv(lines, as_of), out / "customer_ltv" / "part.parquet")
    with timer.step("product_performance"):
        _write(product_performance(products, lines), out / "product_performance" / "part.parquet")
    with timer.step("sales_trends"):
        _write(sales_trends(lines, as_of), out / "sales_trends" / "part.parquet")
    with timer.step("cohorts"):
        _write(cohorts(lines, as_of), out / "cohorts" / "part.parquet")


def _read_clean(path: Path) -> pd.DataFrame:
    """A clean file back, money as integer cents again (exact: written from cents)."""
    frame = pd.read_parquet(path)
    for column in MONEY:
        if column in frame:
            frame[column] = (frame[column] * 100).round().astype("Int64")
    if "discount" in frame:
        frame["discount"] = (frame["discount"] * 1000).round().astype("Int64")
    return frame
