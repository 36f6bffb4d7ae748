"""Optimization experiments: each Spark tuning choice of the pipeline measured on and off.

    make bench-optimizations   # or: python -m sparkmart.bench.optimizations --scale medium --runs 3

Every experiment is a small function that builds the same pipeline query two or more ways
(``Variant``s). ``run_experiment`` runs the variants in one Spark process, alternating them
(A B C, then C B A, ...), times each run, checks on every run that every variant returned the
same rows as the first, and keeps what explains the difference: the physical plan after the
run (the final adaptive plan) and Spark's own shuffle/input/spill numbers for the run, read
through ``sparkmart.monitor.metrics``. The memory experiment is the exception: memory settings
are fixed when a JVM starts, so each of its runs is a fresh Spark process.

The data is generated once under ``--data`` (default /tmp/optim/<scale>) and run through the
real batch pipeline to silver, so the queries read what the gold step reads. Results go to
``docs/optimizations.md`` (one section per experiment, rewritten by each run of it) and a
summary to the ``optimizations`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.rdd import RDD
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch.analytics import (
    GoldParams,
    cohorts,
    customer_ltv,
    customers_gold,
    product_performance,
    products_gold,
    resolve_as_of,
    sales_trends,
)
from sparkmart.batch.enrich import (
    REALIZED_STATUSES,
    attach_customers,
    customer_order_history,
    customer_order_value_stats,
    is_realized,
    key_skew,
    net_revenue,
    order_lines,
    select_schema_columns,
)
from sparkmart.batch.export import with_order_month
from sparkmart.batch.quality import normalise_phone
from sparkmart.bench.report import (
    BENCHMARKS_MD,
    machine_description,
    markdown_table,
    median,
    update_section,
)
from sparkmart.config import Settings, load_settings
from sparkmart.io.files import dataset_path, read_dataset, write_dataset
from sparkmart.monitor.metrics import RunMonitor, SparkStepMetrics, human_bytes
from sparkmart.schemas import CUSTOMERS_RAW, ORDERS_RAW, PRODUCTS_RAW
from sparkmart.spark_utils import get_logger, get_spark

OPTIMIZATIONS_MD = Path(__file__).resolve().parents[3] / "docs" / "optimizations.md"
DEFAULT_DATA_ROOT = Path("/tmp/optim")
PIPELINE_MARK = " (pipeline)"

HEADER = """# Optimization experiments

Each Spark tuning choice of the batch pipeline, measured on and off with the same query, side
by side in one Spark process (variants alternate run by run). Written by
`make bench-optimizations` (`python -m sparkmart.bench.optimizations`); each experiment's
section is rewritten when it runs again (`--only NAME`). "(pipeline)" marks what the pipeline
does today; "vs pipeline" is the variant's median over the pipeline variant's median, so below
1.00 is faster. Shuffle and input bytes are Spark's task metrics for one run of the variant.
Every variant's result is checked against the first variant's on every run.

This 2-core machine is shared with other engineers' jobs: the load average is in every section,
and the absolute times are upper bounds; the ratios are the finding.
"""


# --- what an experiment is ------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of a variant returned: small result rows (compared across variants), the
    plan that explains it, and facts worth reporting (files written...)."""

    rows: list[Row]
    plan: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None  # the time to report when not the wall time of the run


@dataclass
class Variant:
    """One way to run the experiment's query; ``conf`` holds SQL settings for its runs."""

    name: str
    run: Callable[[], Outcome]
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class Experiment:
    name: str
    title: str
    query: str  # what is computed, in words
    variants: list[Variant]
    plan_lines: tuple[str, ...] = ()  # regexes of plan lines worth quoting
    notes: list[str] = field(default_factory=list)  # facts found while building it
    pipeline_uses: str = ""  # what the pipeline does, and why (the decision)
    compare: Callable[[list[Row], list[Row]], None] | None = None


@dataclass
class VariantResult:
    name: str
    seconds: list[float] = field(default_factory=list)
    metrics: list[SparkStepMetrics] = field(default_factory=list)
    plan: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    rows: int = 0

    @property
    def median_seconds(self) -> float:
        return median(self.seconds)


@dataclass
class ExperimentResult:
    experiment: Experiment
    variants: list[VariantResult]
    load: list[float]  # 1-minute load average before each round of runs

    def baseline(self) -> VariantResult:
        marked = [v for v in self.variants if v.name.endswith(PIPELINE_MARK)]
        return marked[0] if marked else self.variants[0]

    def fastest(self) -> VariantResult:
        return min(self.variants, key=lambda v: v.median_seconds)


# --- running ------------------------------------------------------------------------------


@contextlib.contextmanager
def sql_conf(spark: SparkSession, conf: dict[str, str]) -> Iterator[None]:
    """Set runtime SQL settings for the block and restore the previous values after it."""
    previous = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def executed_plan(df: DataFrame, mode: str = "formatted") -> str:
    """The physical plan of ``df`` as ``df.explain(mode)`` prints it; after an action on ``df``
    itself this is the final adaptive plan (with AQE's runtime decisions)."""
    jvm = df.sparkSession._jvm  # type: ignore[attr-defined]
    return str(jvm.PythonSQLUtils.explainString(df._jdf.queryExecution(), mode))  # type: ignore[operator]


def collect_with_plan(df: DataFrame, **facts: Any) -> Outcome:
    """Run ``df`` (a small result) and keep its rows and final plan."""
    rows = df.collect()
    return Outcome(rows, executed_plan(df), dict(facts))


def fingerprint(df: DataFrame) -> DataFrame:
    """One row (rows, content hash) standing for a large result: the sum of a 64-bit hash of
    every row, independent of row order and partitioning, so two ways of computing the same
    table give the same fingerprint and any differing value changes it."""
    row_hash = F.xxhash64(*[F.col(name) for name in df.columns]).cast("decimal(38,0)")
    return df.agg(F.count(F.lit(1)).alias("rows"), F.sum(row_hash).alias("content_hash"))


def fingerprints(frames: dict[str, DataFrame]) -> list[Row]:
    """``fingerprint`` of several named tables (one job each), as rows (table, rows, hash)."""
    result = []
    for name, frame in frames.items():
        row = fingerprint(frame).first()
        result.append(Row(table=name, rows=row["rows"], content_hash=row["content_hash"]))
    return result


def plan_excerpt(plan: str, patterns: Sequence[str], max_lines: int = 60) -> str:
    """The plan's operator tree (the formatted plan's first block) plus the detail lines that
    match ``patterns``, truncated to ``max_lines``; the whole plan when it is short."""
    blocks = plan.strip().split("\n\n")
    tree = blocks[0].splitlines()
    full_tree = len(tree)
    if any("== Final Plan ==" in line for line in tree):  # AQE ran: its final plan is enough
        tree = [line for line in tree[: _initial_plan_line(tree)]]
    wanted = [re.compile(p) for p in patterns]
    details = []
    current = ""
    for line in plan.splitlines()[full_tree:]:
        if re.match(r"^\(\d+\) ", line):
            current = line.strip()
        elif any(p.search(line) for p in wanted):
            if current:
                details.append(current)
                current = ""
            details.append("    " + line.strip())
    lines = tree + (["", *details] if details else [])
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join(line[:240] for line in lines)


def _initial_plan_line(tree: list[str]) -> int:
    return next((i for i, line in enumerate(tree) if "== Initial Plan ==" in line), len(tree))


def _default_compare(rows: list[Row], expected: list[Row]) -> None:
    assertDataFrameEqual(rows, expected, checkRowOrder=False, rtol=1e-9)


def load_average() -> float:
    return os.getloadavg()[0]


def run_experiment(
    spark: SparkSession, experiment: Experiment, runs: int, monitor: RunMonitor | None = None
) -> ExperimentResult:
    """Run every variant ``runs`` times, alternating them, checking each result against the
    first variant's; raise AssertionError (naming the variant) when they disagree."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    log = get_logger("bench.optimizations")
    results = {v.name: VariantResult(v.name) for v in experiment.variants}
    compare = experiment.compare or _default_compare
    load = []
    for attempt in range(runs):
        load.append(load_average())
        order = experiment.variants if attempt % 2 == 0 else experiment.variants[::-1]
        expected: list[Row] | None = None
        outcomes: dict[str, Outcome] = {}
        for variant in order:
            with sql_conf(spark, variant.conf):
                started = time.perf_counter()
                if monitor is not None:
                    with monitor.step(f"{experiment.name} {variant.name} {attempt}") as step:
                        outcome = variant.run()
                    seconds = step.seconds
                    if step.spark is not None and step.spark.available:
                        results[variant.name].metrics.append(step.spark)
                else:
                    outcome = variant.run()
                    seconds = time.perf_counter() - started
            if outcome.seconds is not None:
                seconds = outcome.seconds
            outcomes[variant.name] = outcome
            result = results[variant.name]
            result.seconds.append(seconds)
            result.rows = len(outcome.rows)
            if attempt == 0:
                result.plan = outcome.plan
                result.facts = outcome.facts
            log.info("%s / %s run %d: %.2f s", experiment.name, variant.name, attempt + 1, seconds)
        first = experiment.variants[0].name
        expected = outcomes[first].rows
        for name, outcome in outcomes.items():
            try:
                compare(outcome.rows, expected)
            except AssertionError as exc:
                raise AssertionError(
                    f"experiment {experiment.name}: variant {name!r} returned a different "
                    f"result from {first!r} (run {attempt + 1}): {exc}"
                ) from exc
    return ExperimentResult(experiment, [results[v.name] for v in experiment.variants], load)


# --- inputs -------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What the experiments read (silver entities) and where they may write (``scratch``)."""

    spark: SparkSession
    customers: DataFrame
    products: DataFrame
    orders: DataFrame
    scratch: Path  # experiments that write put their files here

    @classmethod
    def read(cls, spark: SparkSession, silver_dir: Path, scratch: Path) -> Inputs:
        """Silver Parquet as the pipeline's gold step reads it (business columns only)."""
        frames = {}
        for entity, schema in (
            ("customers", CUSTOMERS_RAW),
            ("products", PRODUCTS_RAW),
            ("orders", ORDERS_RAW),
        ):
            path = silver_dir / entity
            if not path.exists():
                raise FileNotFoundError(f"no silver {entity} at {path}: prepare the data first")
            frames[entity] = select_schema_columns(spark.read.parquet(str(path)), schema)
        return cls(spark, scratch=scratch, **frames)


def _order_values(orders: DataFrame) -> DataFrame:
    """Orders with order_date, net_revenue and is_realized (no product join needed)."""
    return (
        orders.withColumn("order_date", F.to_date("order_ts"))
        .withColumn("net_revenue", net_revenue())
        .withColumn("is_realized", F.coalesce(is_realized(), F.lit(False)))
    )


# --- 1. DataFrame vs RDD --------------------------------------------------------------------


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _daily_pair(row: Row) -> tuple[Any, tuple[int, int, int, Decimal]]:
    """(order_date, (orders placed, realized orders, units, revenue)) of one order."""
    realized = row["status"] in REALIZED_STATUSES
    quantity, price = row["quantity"], row["unit_price"]
    revenue = Decimal(0)
    if realized and quantity is not None and price is not None:
        discount = row["discount"] if row["discount"] is not None else Decimal(0)
        revenue = _cents(quantity * price * (1 - discount))
    units = quantity if realized and quantity is not None else 0
    return row["order_date"], (1, int(realized), units, revenue)


def _add(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def dataframe_vs_rdd(inputs: Inputs) -> Experiment:
    """Daily sales (the sales_trends base) with built-in expressions vs Python RDD code."""
    orders = inputs.orders.select(
        F.to_date("order_ts").alias("order_date"),
        "quantity",
        "unit_price",
        "discount",
        "status",
    )

    def dataframe() -> Outcome:
        realized = is_realized()
        daily = (
            orders.withColumn("net_revenue", net_revenue())
            .groupBy("order_date")
            .agg(
                F.count(F.lit(1)).alias("orders_placed"),
                F.count(F.when(realized, F.lit(1))).alias("orders"),
                F.coalesce(F.sum(F.when(realized, F.col("quantity"))), F.lit(0)).alias("units"),
                F.coalesce(F.sum(F.when(realized, F.col("net_revenue"))), F.lit(0)).alias(
                    "revenue"
                ),
            )
        )
        return collect_with_plan(daily)

    def rdd() -> Outcome:
        pairs: RDD = orders.rdd.map(_daily_pair).reduceByKey(_add)
        rows = pairs.map(
            lambda kv: Row(
                order_date=kv[0],
                orders_placed=kv[1][0],
                orders=kv[1][1],
                units=kv[1][2],
                revenue=kv[1][3],
            )
        ).collect()
        debug = pairs.toDebugString()
        return Outcome(rows, debug.decode() if isinstance(debug, bytes) else str(debug))

    return Experiment(
        "dataframe_vs_rdd",
        "DataFrame vs RDD",
        "orders placed, realized orders, units and net revenue per order day (the daily "
        "series of `sales_trends`), from silver orders",
        [Variant("DataFrame (pipeline)", dataframe), Variant("RDD, Python functions", rdd)],
        plan_lines=(r"Functions|Keys|ReadSchema",),
        pipeline_uses="DataFrames throughout: the whole plan stays in the JVM (whole-stage "
        "code generation, partial aggregation before the shuffle, only the needed columns "
        "read), while the RDD version ships every row to Python workers and back.",
    )


# --- 2. broadcast vs sort-merge join --------------------------------------------------------


def broadcast_vs_sort_merge(inputs: Inputs) -> Experiment:
    """The order-product join (``order_lines``) with each join strategy."""

    def by_category(broadcast: bool | None) -> Callable[[], Outcome]:
        def run() -> Outcome:
            lines = order_lines(inputs.orders, inputs.products, broadcast)
            result = (
                lines.filter("is_realized")
                .groupBy("category")
                .agg(
                    F.count(F.lit(1)).alias("orders"),
                    F.sum("net_revenue").alias("revenue"),
                    F.sum("margin").alias("margin"),
                )
            )
            return collect_with_plan(result)

        return run

    return Experiment(
        "broadcast_join",
        "Broadcast vs sort-merge join (orders x products)",
        "`enrich.order_lines` (orders left join products on product_id), then realized orders, "
        "revenue and margin per category",
        [
            Variant("left to Spark (pipeline)", by_category(None)),
            Variant("broadcast hint", by_category(True)),
            Variant("shuffle-merge hint", by_category(False)),
        ],
        plan_lines=(r"Join type|Join condition|BuildSide|BroadcastExchange",),
        pipeline_uses="`build_gold` is called without `broadcast_products`, so Spark decides "
        "from the Parquet file size against `broadcast_threshold_mb` (32 MB): 1M products "
        "are about 14 MB of Parquet and are broadcast (a 72 MiB hash relation). "
        "`enrich.should_broadcast` sizes the relation instead, for callers that pass it.",
    )


# --- 3. shuffle partitions and repartitioning ------------------------------------------------


def _customer_history(orders: DataFrame) -> DataFrame:
    """Per customer: first/last order date, realized orders and revenue (customer_ltv's base)."""
    return (
        _order_values(orders)
        .filter("is_realized")
        .groupBy("customer_id")
        .agg(
            F.min("order_date").alias("first_order_date"),
            F.max("order_date").alias("last_order_date"),
            F.count(F.lit(1)).alias("orders"),
            F.sum("net_revenue").alias("revenue"),
        )
    )


def shuffle_partitions(inputs: Inputs, counts: Sequence[int] = (2, 8, 32, 200)) -> Experiment:
    """The per-customer aggregate with ``spark.sql.shuffle.partitions`` at several values."""

    def run() -> Outcome:
        history = _customer_history(inputs.orders)
        return collect_with_plan(fingerprint(history))

    no_coalesce = {"spark.sql.adaptive.coalescePartitions.enabled": "false"}
    pipeline_count = int(inputs.spark.conf.get("spark.sql.shuffle.partitions") or 8)
    variants = [
        Variant(
            f"{pipeline_count} partitions, AQE coalescing{PIPELINE_MARK}",
            run,
            {"spark.sql.shuffle.partitions": str(pipeline_count)},
        )
    ]
    variants += [
        Variant(
            f"{count} partitions, no coalescing",
            run,
            {"spark.sql.shuffle.partitions": str(count)} | no_coalesce,
        )
        for count in counts
    ]
    if max(counts) != pipeline_count:
        variants.append(
            Variant(
                f"{max(counts)} partitions, AQE coalescing",
                run,
                {"spark.sql.shuffle.partitions": str(max(counts))},
            )
        )
    return Experiment(
        "shuffle_partitions",
        "Shuffle partition count",
        "per-customer first/last order date, realized orders and revenue (the `customer_ltv` "
        "history) over silver orders, reduced to a fingerprint (rows, content hash)",
        variants,
        plan_lines=(r"Arguments: hashpartitioning|AQEShuffleRead|Arguments: coalesced",),
        pipeline_uses="`shuffle_partitions` of the profile (8 for `local`, 2 for `test`) with "
        "AQE coalescing on: with 2 cores every partition above a few per core only adds "
        "task and file overhead at these sizes.",
    )


def repartition_before_write(inputs: Inputs) -> Experiment:
    """Gold orders written partitioned by month, with and without a repartition first."""
    counter = iter(range(1_000_000))

    def write(repartition: bool) -> Callable[[], Outcome]:
        def run() -> Outcome:
            target = inputs.scratch / f"orders-by-month-{next(counter)}"
            frame = inputs.orders.transform(with_order_month)
            if repartition:
                frame = frame.repartition("order_month")
            frame.write.mode("overwrite").partitionBy("order_month").parquet(str(target))
            files = sum(1 for _ in target.rglob("*.parquet"))
            written = inputs.spark.read.parquet(str(target))
            rows = written.groupBy("order_month").count().collect()
            shutil.rmtree(target, ignore_errors=True)
            return Outcome(rows, executed_plan(frame), {"files": files})

        return run

    return Experiment(
        "repartition_write",
        "Repartitioning before a partitioned write",
        "silver orders written as Parquet partitioned by `order_month` (the gold orders "
        "layout); the result compared is rows per month read back",
        [
            Variant("write as is (pipeline)", write(False)),
            Variant("repartition(order_month) first", write(True)),
        ],
        plan_lines=(r"Arguments: hashpartitioning",),
        pipeline_uses="writes without a repartition: one extra shuffle of every order to "
        "get one file per month is only worth it when the number of small files hurts the "
        "readers (see the file counts).",
    )


# --- 4. caching the reused DataFrames -------------------------------------------------------


GOLD_LINE_OUTPUTS = (
    "customers",
    "products",
    "customer_ltv",
    "product_performance",
    "sales_trends",
    "cohorts",
)


def caching(inputs: Inputs, outputs: Sequence[str] = GOLD_LINE_OUTPUTS) -> Experiment:
    """The gold outputs built from one set of order lines, with and without caching."""
    as_of = resolve_as_of(inputs.orders)
    params = GoldParams(order_value_stats="builtin")

    def marts(persist: str) -> Callable[[], Outcome]:
        def run() -> Outcome:
            orders, products, customers = inputs.orders, inputs.products, inputs.customers
            cached: list[DataFrame] = []
            if persist == "silver":
                orders, products = (
                    f.persist(StorageLevel.MEMORY_AND_DISK) for f in (orders, products)
                )
                cached += [orders, products]
            lines = order_lines(orders, products).filter(F.col("order_date") <= F.lit(as_of))
            if persist == "lines":
                lines = lines.persist(StorageLevel.MEMORY_AND_DISK)
                cached.append(lines)
            try:
                builders = {
                    "customers": lambda: customers_gold(customers, lines, as_of, params),
                    "products": lambda: products_gold(products, lines, as_of, params),
                    "customer_ltv": lambda: customer_ltv(lines, as_of, params),
                    "product_performance": lambda: product_performance(products, lines, as_of),
                    "sales_trends": lambda: sales_trends(lines, as_of),
                    "cohorts": lambda: cohorts(lines, as_of),
                }
                rows = fingerprints({name: builders[name]() for name in outputs})
                plan = executed_plan(fingerprint(sales_trends(lines, as_of)))
            finally:
                for frame in cached:
                    frame.unpersist(blocking=True)
            return Outcome(rows, plan)

        return run

    return Experiment(
        "caching",
        "Caching the reused DataFrames (gold step)",
        "the six gold outputs that read the order lines (customers, products, customer_ltv, "
        "product_performance, sales_trends, cohorts), each reduced to a fingerprint; order "
        "lines = silver orders x products, join strategy left to Spark as in the pipeline",
        [
            Variant("no cache", marts("none")),
            Variant("silver orders + products cached", marts("silver")),
            Variant("order lines cached" + PIPELINE_MARK, marts("lines")),
        ],
        plan_lines=(r"InMemoryRelation|InMemoryTableScan|Scan parquet",),
        pipeline_uses="the gold step persists the order lines (MEMORY_AND_DISK) while it "
        "writes the gold outputs, and unpersists them after.",
    )


# --- 5. Python UDF vs pandas UDF vs built-in ------------------------------------------------

_PHONE_CHARACTERS = re.compile(r"[0-9+().\s-]+")
_NOT_DIGIT = re.compile(r"[^0-9]")


def normalise_phone_python(value: str | None) -> str | None:
    """``quality.normalise_phone`` in plain Python, for the row-at-a-time UDF."""
    if value is None:
        return None
    digits = _NOT_DIGIT.sub("", value)
    if len(digits) == 10:
        national = digits
    elif len(digits) == 11 and digits.startswith("1"):
        national = digits[1:]
    else:
        return value
    if not _PHONE_CHARACTERS.fullmatch(value):
        return value
    return f"+1-{national[:3]}-{national[3:6]}-{national[6:]}"


def normalise_phone_pandas(values: pd.Series) -> pd.Series:
    """``quality.normalise_phone`` vectorised over a pandas Series, for the pandas UDF."""
    text = values.astype("string")
    digits = text.str.replace(r"[^0-9]", "", regex=True)
    length = digits.str.len()
    national = digits.where(
        length == 10, digits.str.slice(1).where((length == 11) & digits.str.startswith("1"))
    )
    formatted = (
        "+1-"
        + national.str.slice(0, 3)
        + "-"
        + national.str.slice(3, 6)
        + "-"
        + national.str.slice(6, 10)
    )
    ok = text.str.fullmatch(r"[0-9+().\s-]+") & national.notna()
    return formatted.where(ok.fillna(False), text).astype(object).where(text.notna(), None)


def normalise_phone_per_branch(value: Column) -> Column:
    """The quality step's first ``normalise_phone``: the digits re-derived in every CASE branch.

    It refers to the stripped digits (a ``regexp_replace``) in five places inside CASE WHEN
    branches, where Spark does not share common subexpressions, so the digits are stripped up to
    six times per phone. Kept to measure what the one-pass version saves.
    """
    digits = F.regexp_replace(value, "[^0-9]", "")
    national = F.when(F.length(digits) == 10, digits).when(
        (F.length(digits) == 11) & digits.startswith("1"), F.substring(digits, 2, 10)
    )
    formatted = F.concat(
        F.lit("+1-"),
        F.substring(national, 1, 3),
        F.lit("-"),
        F.substring(national, 4, 3),
        F.lit("-"),
        F.substring(national, 7, 4),
    )
    only_phone_characters = value.rlike(r"^[0-9+().\s-]+$")
    return F.when(only_phone_characters & national.isNotNull(), formatted).otherwise(value)


def udf_kinds(inputs: Inputs) -> Experiment:
    """Phone normalisation (a quality-step rule) as built-in, pandas UDF and Python UDF."""
    # useArrow=False: the classic pickled row-at-a-time UDF, whatever the session default
    python_udf = F.udf(normalise_phone_python, StringType(), useArrow=False)
    pandas_udf = F.pandas_udf(normalise_phone_pandas, StringType())  # type: ignore[call-overload]

    def with_phone(function: Callable[[Any], Any]) -> Callable[[], Outcome]:
        def run() -> Outcome:
            phones = inputs.customers.select("customer_id", function(F.col("phone")).alias("phone"))
            return collect_with_plan(fingerprint(phones))

        return run

    return Experiment(
        "udfs",
        "Python UDF vs pandas UDF vs built-in functions",
        "`quality.normalise_phone` (strip punctuation, check 10 digits, format `+1-ddd-ddd-dddd`) "
        "on every silver customer's phone, reduced to a fingerprint",
        [
            Variant("built-in, each regex once (pipeline)", with_phone(normalise_phone)),
            Variant("built-in, regex per CASE branch", with_phone(normalise_phone_per_branch)),
            Variant("pandas UDF (Arrow batches)", with_phone(pandas_udf)),
            Variant("Python UDF (row at a time)", with_phone(python_udf)),
        ],
        plan_lines=(r"ArrowEvalPython|BatchEvalPython|regexp_replace",),
        pipeline_uses="built-in functions for every quality rule: no Python worker, no "
        "serialisation, and Catalyst can still prune and push down around them.",
    )


def grouped_pandas_vs_builtin(inputs: Inputs) -> Experiment:
    """Per-customer median and MAD of order values: ``mapInPandas`` vs built-in ``median``."""
    values = _order_values(inputs.orders)

    def stats(method: str) -> Callable[[], Outcome]:
        def run() -> Outcome:
            return collect_with_plan(
                fingerprint(customer_order_value_stats(values, method))  # type: ignore[arg-type]
            )

        return run

    default = GoldParams().order_value_stats
    return Experiment(
        "grouped_pandas",
        "Grouped statistics: pandas (mapInPandas) vs built-in median",
        "`enrich.customer_order_value_stats`: per customer, the median order value and the "
        "median absolute deviation over realized orders, reduced to a fingerprint",
        [
            Variant(
                "pandas mapInPandas" + (PIPELINE_MARK if default == "pandas" else ""),
                stats("pandas"),
            ),
            Variant(
                "built-in median window" + (PIPELINE_MARK if default == "builtin" else ""),
                stats("builtin"),
            ),
        ],
        plan_lines=(r"MapInPandas|Window|Arguments: hashpartitioning",),
        pipeline_uses=f"`GoldParams.order_value_stats` = `{default}`.",
    )


# --- 6. AQE and the skewed customer join ----------------------------------------------------


def aqe_and_skew(inputs: Inputs, hot_keys: int = 10, salt_buckets: int = 8) -> Experiment:
    """The heavy-customer join (order lines x customers) with AQE off/on, skew join, salting."""
    spark = inputs.spark
    partitions = int(spark.conf.get("spark.sql.shuffle.partitions") or 8)
    notes = []
    top: list[Any] = []
    keyed = inputs.orders.filter(F.col("customer_id").isNotNull())
    for count in sorted({partitions, 200}):
        report = key_skew(keyed, "customer_id", count, top_n=hot_keys).first()
        top = [item["key"] for item in report["top_keys"]]
        skew = report["partition_skew"]
        notes.append(
            f"Key skew of orders.customer_id over {count} hash partitions: {report['rows']:,} "
            f"orders, {report['distinct_keys']:,} customers; the top {hot_keys} customers hold "
            f"{report['top_share']:.1%} of the orders (largest {report['top_keys'][0]['rows']:,}); "
            f"largest partition {report['max_partition_rows']:,} rows vs median "
            f"{report['median_partition_rows']:,.0f}"
            + (f" (x{skew:.2f})." if skew is not None else ".")
        )
    hot = [int(key) for key in top]
    lines = order_lines(inputs.orders, inputs.products, True)

    def by_country(buckets: int) -> Callable[[], Outcome]:
        def run() -> Outcome:
            joined = attach_customers(lines, inputs.customers, ("country",), buckets, hot)
            result = (
                joined.filter("is_realized")
                .groupBy("country")
                .agg(F.count(F.lit(1)).alias("orders"), F.sum("net_revenue").alias("revenue"))
            )
            return collect_with_plan(result)

        return run

    no_broadcast = {"spark.sql.autoBroadcastJoinThreshold": "-1"}
    aqe_off = {"spark.sql.adaptive.enabled": "false"}
    skew_off = {"spark.sql.adaptive.skewJoin.enabled": "false"}
    skew_forced = {
        "spark.sql.adaptive.skewJoin.enabled": "true",
        "spark.sql.adaptive.skewJoin.skewedPartitionFactor": "2",
        "spark.sql.adaptive.skewJoin.skewedPartitionThresholdInBytes": "1m",
        "spark.sql.adaptive.advisoryPartitionSizeInBytes": "1m",
    }
    return Experiment(
        "aqe_skew",
        "AQE on/off and the skewed customer join",
        f"order lines (products broadcast) left join customers on customer_id (sort-merge: "
        f"automatic broadcast off for this test), then realized orders and revenue per "
        f"country; the planted heavy customers are the skew. Salting: the {hot_keys} hottest "
        f"customers spread over {salt_buckets} buckets (`enrich.salted_join`)",
        [
            Variant("AQE on + skew join (pipeline)", by_country(1), no_broadcast),
            Variant("AQE off", by_country(1), no_broadcast | aqe_off),
            Variant("AQE on, skew join off", by_country(1), no_broadcast | skew_off),
            Variant(
                "AQE skew join, thresholds lowered (factor 2, 1 MiB)",
                by_country(1),
                no_broadcast | skew_forced,
            ),
            Variant(
                f"salted hot keys x{salt_buckets}",
                by_country(salt_buckets),
                no_broadcast | skew_off,
            ),
        ],
        plan_lines=(r"skew|Join type|AQEShuffleRead|Arguments: coalesced|isFinalPlan",),
        notes=notes,
        pipeline_uses="AQE on with its skew-join handling left at Spark's defaults, no "
        "salting: the heavy customers are hot keys but not hot partitions (see the partition "
        "skew above), so there is nothing for either remedy to split.",
    )


# --- 7. Parquet vs CSV input ----------------------------------------------------------------


def parquet_vs_csv(inputs: Inputs) -> Experiment:
    """A selective query on silver orders stored as Parquet and as CSV (the same rows: the
    generator's raw CSV has garbage lines the Parquet files lack, so it is not a fair pair)."""
    spark = inputs.spark
    root = inputs.scratch / "formats"
    parquet_path = dataset_path(root, "parquet", "orders")
    csv_path = dataset_path(root, "csv", "orders")
    for fmt, path in (("parquet", parquet_path), ("csv", csv_path)):
        if not (path / "_SUCCESS").exists():  # written once, reused by later runs
            write_dataset(inputs.orders, path, fmt)
    # The month of the median order: a month in the middle of the data.
    orders = read_dataset(spark, parquet_path, "parquet", ORDERS_RAW)
    middle = orders.select(F.percentile_approx(F.unix_micros("order_ts"), 0.5)).first()[0]
    if middle is None:
        raise ValueError(f"{parquet_path}: no order_ts to choose the query's month from")
    day = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=middle)
    since = dt.datetime(day.year, day.month, 1)
    until = (since + dt.timedelta(days=32)).replace(day=1)

    def query(frame: DataFrame) -> DataFrame:
        return (
            frame.filter(
                (F.col("status") == "delivered")
                & (F.col("order_ts") >= F.lit(since))
                & (F.col("order_ts") < F.lit(until))
            )
            .groupBy("payment_method")
            .agg(
                F.count(F.lit(1)).alias("orders"),
                F.sum("quantity").alias("units"),
                F.sum(F.col("quantity") * F.col("unit_price")).alias("gross"),
            )
        )

    def parquet() -> Outcome:
        return collect_with_plan(query(read_dataset(spark, parquet_path, "parquet", ORDERS_RAW)))

    def csv() -> Outcome:
        return collect_with_plan(query(read_dataset(spark, csv_path, "csv", ORDERS_RAW)))

    return Experiment(
        "parquet_vs_csv",
        "Parquet vs CSV input: predicate pushdown and column pruning",
        f"silver orders delivered in {since:%Y-%m}, from the same rows written as Parquet and "
        "as CSV (`io.files.write_dataset`, read back with `read_dataset` and the orders "
        "schema): orders, units and gross value per payment method; 5 of 12 columns needed",
        [
            Variant("Parquet (pipeline)", parquet),
            Variant(
                "Parquet, filter pushdown off",
                parquet,
                {"spark.sql.parquet.filterPushdown": "false"},
            ),
            Variant("CSV (with schema)", csv),
        ],
        plan_lines=(r"PushedFilters|ReadSchema|DataFilters",),
        pipeline_uses="Parquet for every layer it writes (bronze, silver, gold); raw input "
        "in any format is read once into bronze Parquet, so every later step gets column "
        "pruning and pushed-down filters.",
    )


# --- 8. memory settings (one Spark process per run) -----------------------------------------

MEMORY_VARIANTS: dict[str, dict[str, Any]] = {
    "driver 6g, memory.fraction 0.6 (pipeline)": {},
    "driver 1g": {"driver_memory": "1g"},
    "memory.fraction 0.2": {"conf": {"spark.memory.fraction": "0.2"}},
    "off-heap 2g": {
        "conf": {"spark.memory.offHeap.enabled": "true", "spark.memory.offHeap.size": "2g"}
    },
}


def memory_query(orders: DataFrame) -> DataFrame:
    """A sort-heavy query: every order's per-customer history (window over all orders)."""
    history = customer_order_history(
        _order_values(orders).withColumn("order_date", F.to_date("order_ts"))
    )
    return fingerprint(
        history.select("order_id", "order_rank", "running_spend", "days_since_previous_order")
    )


def _memory_child(spec: str) -> None:
    """Run ``memory_query`` once in this process with the given settings; print JSON."""
    args = json.loads(spec)
    base = load_settings(profile=args["profile"])
    overrides = dict(args["overrides"])
    if "conf" in overrides:
        overrides["conf"] = {
            **base.spark.conf,
            **overrides["conf"],
            "spark.eventLog.enabled": "false",
        }
    else:
        overrides["conf"] = {**base.spark.conf, "spark.eventLog.enabled": "false"}
    settings = load_settings(profile=args["profile"], spark_overrides=overrides)
    spark = get_spark(settings.spark)
    orders = select_schema_columns(spark.read.parquet(args["orders"]), ORDERS_RAW)
    monitor = RunMonitor(spark, uuid.uuid4().hex, "optimizations-memory", progress_seconds=0)
    query = memory_query(orders)
    with monitor.step("memory") as step:
        rows = query.collect()
    metrics = step.spark or SparkStepMetrics.unavailable("no metrics")
    print(
        "RESULT "
        + json.dumps(
            {
                "seconds": step.seconds,
                "rows": [row.asDict() for row in rows],
                "metrics": {
                    k: getattr(metrics, k)
                    for k in (
                        "available",
                        "gc_seconds",
                        "memory_spilled_bytes",
                        "disk_spilled_bytes",
                        "shuffle_write_bytes",
                        "executor_run_seconds",
                    )
                },
                "storage_memory": spark.sparkContext._jsc.sc().getExecutorMemoryStatus().toString(),  # type: ignore[union-attr]
            },
            default=str,
        ),
        flush=True,
    )
    spark.stop()


def memory_settings(inputs: Inputs, profile: str = "local") -> Experiment:
    """The sort-heavy window query in a fresh JVM per run, with different memory settings."""
    orders_path = str(inputs.scratch / "memory-orders")
    if not (Path(orders_path) / "_SUCCESS").exists():  # written once, reused by later runs
        inputs.orders.write.mode("overwrite").parquet(orders_path)

    def child(overrides: dict[str, Any]) -> Callable[[], Outcome]:
        def run() -> Outcome:
            spec = json.dumps({"profile": profile, "overrides": overrides, "orders": orders_path})
            done = subprocess.run(
                [sys.executable, "-m", "sparkmart.bench.optimizations", "--memory-child", spec],
                capture_output=True,
                text=True,
                check=False,
                env={  # the variant's settings alone, not this process's overrides
                    **{k: v for k, v in os.environ.items() if not k.startswith("SPARKMART_SPARK_")},
                    "SPARKMART_LOG_LEVEL": "WARNING",
                },
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                raise RuntimeError(
                    f"memory experiment child ({overrides}) failed with exit code "
                    f"{done.returncode}: {done.stderr[-2000:]}"
                )
            payload = json.loads(lines[-1].removeprefix("RESULT "))
            rows = [Row(**row) for row in payload["rows"]]  # the hash arrives as text
            facts = dict(payload["metrics"]) | {"memory": payload["storage_memory"]}
            return Outcome(rows, "", facts, seconds=payload["seconds"])

        return run

    return Experiment(
        "memory",
        "Memory settings (local mode)",
        "per-customer order history over silver orders (a window sorted by customer and time: "
        "`enrich.customer_order_history`), reduced to a fingerprint; each run is a new Spark "
        "process, and the time is the query's alone (JVM start excluded)",
        [Variant(name, child(overrides)) for name, overrides in MEMORY_VARIANTS.items()],
        pipeline_uses="`driver_memory` 6g in the `local` profile with Spark's default "
        "`spark.memory.fraction` and no off-heap memory.",
    )


EXPERIMENTS: dict[str, Callable[[Inputs], Experiment]] = {
    "dataframe_vs_rdd": dataframe_vs_rdd,
    "broadcast_join": broadcast_vs_sort_merge,
    "shuffle_partitions": shuffle_partitions,
    "repartition_write": repartition_before_write,
    "caching": caching,
    "udfs": udf_kinds,
    "grouped_pandas": grouped_pandas_vs_builtin,
    "aqe_skew": aqe_and_skew,
    "parquet_vs_csv": parquet_vs_csv,
    "memory": memory_settings,
}


# --- preparing the data ---------------------------------------------------------------------


def prepare_data(spark: SparkSession, settings: Settings, scale: str, root: Path) -> dict[str, int]:
    """Generate ``scale`` as Parquet under ``root/raw`` and run the batch pipeline to
    ``root/batch`` (no PostgreSQL); both are kept and reused by later runs."""
    from sparkmart.batch.pipeline import BatchOptions, run_batch
    from sparkmart.generate import generate, resolve_counts, write_generated

    log = get_logger("bench.optimizations")
    counts = resolve_counts(settings, scale)
    raw = root / "raw"
    if not (raw / "parquet" / "orders").exists():
        gen = settings.pipeline["generate"]
        log.info("generating %s into %s", counts, raw)
        write_generated(generate(spark, counts, gen["seed"], gen), raw, ["parquet"], None)
    if not (root / "batch" / "silver" / "orders").exists():
        log.info("running the batch pipeline to silver/gold under %s", root / "batch")
        options = BatchOptions.from_settings(
            settings, raw, root / "batch", "parquet", export_postgres=False
        )
        run_batch(spark, settings, options, None)
    return counts


# --- reporting ------------------------------------------------------------------------------


def _bytes(results: VariantResult, name: str) -> str:
    values = [getattr(m, name) for m in results.metrics]
    return human_bytes(median(values)) if values else "n/a"


def _facts(result: VariantResult) -> str:
    shown = []
    for key, value in result.facts.items():
        if key == "memory":
            continue
        if key.endswith("_bytes") and isinstance(value, int | float):
            value = human_bytes(value)
        elif isinstance(value, float):
            value = f"{value:.2f}"
        shown.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(shown)


def describe(result: ExperimentResult) -> str:
    """The experiment's section of docs/optimizations.md."""
    experiment = result.experiment
    baseline = result.baseline()
    fastest = result.fastest()
    rows = []
    for variant in result.variants:
        ratio = variant.median_seconds / baseline.median_seconds
        rows.append(
            [
                f"**{variant.name}**" if variant is fastest else variant.name,
                f"{variant.median_seconds:.2f}",
                ", ".join(f"{s:.1f}" for s in variant.seconds),
                f"{ratio:.2f}",
                _bytes(variant, "shuffle_write_bytes"),
                _bytes(variant, "input_bytes"),
                _bytes(variant, "disk_spilled_bytes"),
                _facts(variant),
            ]
        )
    load = ", ".join(f"{value:.1f}" for value in result.load)
    lines = [
        f"## {experiment.title}",
        "",
        f"Query: {experiment.query}. Measured {time.strftime('%Y-%m-%d %H:%M')} UTC, "
        f"{len(baseline.seconds)} runs per variant, alternating; load average (1 min) "
        f"before each round: {load}.",
        "",
        markdown_table(
            [
                "variant",
                "median s",
                "runs (s)",
                "vs pipeline",
                "shuffle write",
                "input read",
                "spill (disk)",
                "facts",
            ],
            rows,
        ),
        "",
        f"- Results agree: every variant returned the same {baseline.rows} result row(s) as "
        f"`{result.variants[0].name}` on every run.",
        f"- Fastest: `{fastest.name}` ({fastest.median_seconds / baseline.median_seconds:.2f}x "
        f"the pipeline's time).",
    ]
    lines += [f"- {note}" for note in experiment.notes]
    if experiment.pipeline_uses:
        lines.append(f"- The pipeline: {experiment.pipeline_uses}")
    plans = [v for v in result.variants if v.plan]
    if plans:
        lines += ["", "Physical plans (after the first run; AQE's final plan where it ran):"]
        for variant in plans:
            excerpt = plan_excerpt(variant.plan, experiment.plan_lines)
            lines += ["", f"`{variant.name}`:", "", "```text", excerpt, "```"]
    memory = [v for v in result.variants if "memory" in v.facts]
    if memory:
        lines += ["", "Block-manager memory (max, remaining) as each process reported it:", ""]
        lines += [f"- `{v.name}`: {v.facts['memory']}" for v in memory]
    return "\n".join(lines)


SUMMARY_HEADERS = ["experiment", "pipeline", "s", "fastest", "s", "ratio"]


def summary_row(result: ExperimentResult) -> list[str]:
    baseline, fastest = result.baseline(), result.fastest()
    return [
        result.experiment.title,
        baseline.name.removesuffix(PIPELINE_MARK),
        f"{baseline.median_seconds:.1f}",
        fastest.name.removesuffix(PIPELINE_MARK),
        f"{fastest.median_seconds:.1f}",
        f"{fastest.median_seconds / baseline.median_seconds:.2f}",
    ]


def _existing_rows(path: Path, section: str) -> dict[str, str]:
    """Table rows already in a section of ``path``, by their first cell (kept on a rerun)."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = path.read_text() if path.exists() else ""
    if start not in text or end not in text:
        return {}
    body = text.split(start, 1)[1].split(end, 1)[0]
    rows = {}
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("experiment", "") and len(cells) > 1:
            rows[cells[0]] = line
    return rows


def summary(results: Sequence[ExperimentResult], scale: str, path: Path) -> str:
    """The ``optimizations`` section of docs/benchmarks.md (rows of earlier runs kept)."""
    rows = _existing_rows(path, "optimizations")
    for result in results:
        rows[result.experiment.title] = "| " + " | ".join(summary_row(result)) + " |"
    table = markdown_table(SUMMARY_HEADERS, []) + "\n" + "\n".join(rows.values())
    return "\n".join(
        [
            f"## Optimization experiments (`{scale}`)",
            "",
            f"Command: `make bench-optimizations`. Last run {time.strftime('%Y-%m-%d')} on "
            f"{machine_description()}. Median seconds of the pipeline's setting and of the "
            "fastest variant, measured side by side; plans, shuffle bytes and the decisions "
            "are in [optimizations.md](optimizations.md).",
            "",
            table,
        ]
    )


def write_docs(
    results: Sequence[ExperimentResult],
    scale: str,
    counts: dict[str, int],
    doc: Path = OPTIMIZATIONS_MD,
    benchmarks: Path | None = None,
) -> None:
    """Rewrite each experiment's section of ``doc`` and the summary in docs/benchmarks.md
    (under a lock file: several benchmark processes may finish at the same time)."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "sparkmart-optimizations.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_docs(results, scale, counts, doc, benchmarks)


def _write_docs(
    results: Sequence[ExperimentResult],
    scale: str,
    counts: dict[str, int],
    doc: Path,
    benchmarks: Path | None,
) -> None:
    if not doc.exists():
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(HEADER)
    for result in results:
        body = describe(result) + (
            f"\n\nData: `{scale}` ({counts.get('orders', 0):,} orders, "
            f"{counts.get('customers', 0):,} customers, {counts.get('products', 0):,} "
            "products, silver from the batch pipeline)."
        )
        update_section(result.experiment.name, body, doc)
    if benchmarks is not None:
        update_section("optimizations", summary(results, scale, benchmarks), benchmarks)


def run_all(
    inputs: Inputs,
    names: Sequence[str],
    runs: int,
    monitor: RunMonitor | None,
    on_result: Callable[[ExperimentResult], None] | None = None,
) -> tuple[list[ExperimentResult], dict[str, str]]:
    """Run the named experiments; one that fails is logged and reported, the rest still run."""
    log = get_logger("bench.optimizations")
    results, failures = [], {}
    for name in names:
        try:
            experiment = EXPERIMENTS[name](inputs)
            log.info("experiment %s: %d variants x %d runs", name, len(experiment.variants), runs)
            result = run_experiment(inputs.spark, experiment, runs, monitor)
        except Exception as exc:
            log.exception("experiment %s failed", name)
            failures[name] = f"{type(exc).__name__}: {exc}"
            continue
        results.append(result)
        print(describe(result), end="\n\n", flush=True)
        if on_result is not None:
            on_result(result)
    return results, failures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="local")
    parser.add_argument("--data", type=Path, help="data root (default /tmp/optim/<scale>)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated experiments: {', '.join(EXPERIMENTS)}"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; keep docs as is")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {', '.join(unknown)}; known: {', '.join(EXPERIMENTS)}")
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    settings = load_settings(profile=args.profile)
    spark = get_spark(settings.spark)
    root = args.data or DEFAULT_DATA_ROOT / args.scale
    counts = prepare_data(spark, settings, args.scale, root)
    scratch = root / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    inputs = Inputs.read(spark, root / "batch" / "silver", scratch)
    monitor = RunMonitor(spark, uuid.uuid4().hex, "optimizations", progress_seconds=0)

    def write(result: ExperimentResult) -> None:
        if not args.no_write:  # after each experiment, so a late failure loses nothing
            write_docs([result], args.scale, counts, benchmarks=BENCHMARKS_MD)

    _, failures = run_all(inputs, names, args.runs, monitor, write)
    spark.stop()
    if not args.no_write:
        print(f"written to {OPTIMIZATIONS_MD} and {BENCHMARKS_MD}")
    if failures:
        raise SystemExit(
            "failed experiments: " + "; ".join(f"{k}: {v}" for k, v in failures.items())
        )


if __name__ == "__main__":
    main()
