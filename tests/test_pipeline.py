"""The whole batch pipeline on generated `tiny` data: every source, PostgreSQL, incremental runs."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch.pipeline import BatchOptions, BatchSummary, run_batch
from sparkmart.config import Settings
from sparkmart.generate import postgres_seed
from sparkmart.io.postgres import PgSettings, query_rows, read_table, replace_table_atomically
from sparkmart.schemas import ENTITIES, PRIMARY_KEYS, RAW_SCHEMAS

GOLD_TABLES = (
    "customers",
    "products",
    "orders",
    "customer_ltv",
    "product_performance",
    "sales_trends",
    "cohorts",
)


def run(
    spark: SparkSession,
    settings: Settings,
    input_dir: Path,
    out_dir: Path,
    source: str,
    pg: PgSettings | None,
    incremental: bool = False,
) -> BatchSummary:
    options = BatchOptions.from_settings(
        settings,
        input_dir,
        out_dir,
        source,
        incremental=incremental,
        export_postgres=pg is not None,
    )
    return run_batch(spark, settings, options, pg)


def layer(spark: SparkSession, out_dir: Path, name: str, table: str) -> DataFrame:
    frame = spark.read.parquet(str(out_dir / name / table))
    return frame.drop(*[c for c in frame.columns if c.startswith("_") or c == "order_month"])


@pytest.fixture(scope="module")
def parquet_run(
    spark: SparkSession, settings: Settings, tiny_raw: Path, pg: PgSettings, tmp_path_factory
) -> tuple[Path, BatchSummary]:
    out = tmp_path_factory.mktemp("batch_parquet")
    return out, run(spark, settings, tiny_raw, out, "parquet", pg)


def test_run_accounts_for_every_row_and_exports_to_postgres(
    spark: SparkSession, parquet_run: tuple[Path, BatchSummary], pg: PgSettings
) -> None:
    out, summary = parquet_run
    assert summary.status == "succeeded"
    assert summary.counts is not None and summary.counts.balanced
    by_entity = {e.entity: e for e in summary.counts.entities}
    # tiny = 1,000 generated rows per entity plus the planted duplicates
    for entity in ENTITIES:
        assert by_entity[entity].rows_in >= 1000
        assert by_entity[entity].quarantined > 0
        assert by_entity[entity].duplicates > 0

    for table in GOLD_TABLES:
        gold = layer(spark, out, "gold", table)
        assertDataFrameEqual(read_table(spark, pg, f"analytics.{table}"), gold)
        assert (out / "reports" / f"{table}.csv").exists() or table in ENTITIES

    runs = query_rows(
        pg,
        "SELECT status, rows, quarantined FROM audit.pipeline_runs WHERE run_id = %s",
        (summary.run_id,),
    )
    assert runs[0][0] == "succeeded"
    assert {row["entity"] for row in runs[0][1]["entities"]} == set(ENTITIES)
    quarantined_pg = query_rows(
        pg, "SELECT count(*) FROM quarantine.rows WHERE run_id = %s", (summary.run_id,)
    )[0][0]
    assert quarantined_pg == sum(e.quarantined for e in summary.counts.entities)
    assert (out / "snapshots").is_dir() and summary.snapshot


@pytest.mark.parametrize("source", ["json", "csv", "avro"])
def test_every_file_format_gives_the_same_silver_and_gold(
    spark: SparkSession,
    settings: Settings,
    tiny_raw: Path,
    parquet_run: tuple[Path, BatchSummary],
    tmp_path: Path,
    source: str,
) -> None:
    parquet_out, _ = parquet_run
    summary = run(spark, settings, tiny_raw, tmp_path, source, None)
    assert summary.counts is not None and summary.counts.balanced
    for entity in ENTITIES:
        assertDataFrameEqual(
            layer(spark, tmp_path, "silver", entity), layer(spark, parquet_out, "silver", entity)
        )
    for table in GOLD_TABLES:
        assertDataFrameEqual(
            layer(spark, tmp_path, "gold", table), layer(spark, parquet_out, "gold", table)
        )
    quarantine = spark.read.parquet(str(tmp_path / "quarantine"))
    malformed = quarantine.filter(F.array_contains("rules", "malformed_record"))
    if source in ("json", "csv"):
        # every planted garbage line is quarantined with its raw text
        planted = spark.read.parquet(str(tiny_raw / "truth" / "defects")).filter(
            "defect = 'malformed_line'"
        )
        assert malformed.count() == planted.count() > 0
        assert malformed.filter(F.col("_raw").isNull()).count() == 0
    else:
        assert malformed.count() == 0


def test_postgres_source(
    spark: SparkSession, settings: Settings, pg: PgSettings, tmp_path: Path
) -> None:
    tables = postgres_seed(spark, settings.pipeline["generate"], rows=200)
    for entity, frame in zip(ENTITIES, tables, strict=True):
        replace_table_atomically(frame, pg, f"public.{entity}", primary_key=PRIMARY_KEYS[entity])
    summary = run(spark, settings, tmp_path / "unused", tmp_path / "out", "postgres", pg)
    assert summary.counts is not None
    for entity, frame in zip(ENTITIES, tables, strict=True):
        assertDataFrameEqual(layer(spark, tmp_path / "out", "silver", entity), frame)
    assert all(e.quarantined == 0 for e in summary.counts.entities)


def _copy_parquet_input(tiny_raw: Path, target: Path) -> Path:
    for entity in ENTITIES:
        shutil.copytree(tiny_raw / "parquet" / entity, target / "parquet" / entity)
    return target


def test_incremental_run_equals_full_recomputation(
    spark: SparkSession, settings: Settings, tiny_raw: Path, pg: PgSettings, tmp_path: Path
) -> None:
    raw = _copy_parquet_input(tiny_raw, tmp_path / "raw")
    incremental_out, full_out = tmp_path / "incremental", tmp_path / "full"
    first = run(spark, settings, raw, incremental_out, "parquet", pg)
    high_water = max(first.watermarks.values())

    # New data arrives: 50 new orders, 20 orders change status, one customer changes email.
    orders = spark.read.schema(RAW_SCHEMAS["orders"]).parquet(str(raw / "parquet" / "orders"))
    later = F.lit(high_water + dt.timedelta(hours=1)).cast("timestamp")
    new_orders = (
        orders.filter("quantity > 0 AND status = 'delivered'")
        .orderBy("order_id")
        .limit(50)
        .withColumn("order_id", F.col("order_id") + 1_000_000)
        .withColumn("updated_at", later)
    )
    returned = (
        orders.filter("status = 'delivered' AND quantity > 0")
        .orderBy(F.col("order_id").desc())
        .limit(20)
        .withColumn("status", F.lit("returned"))
        .withColumn("updated_at", later)
    )
    customers = spark.read.schema(RAW_SCHEMAS["customers"]).parquet(
        str(raw / "parquet" / "customers")
    )
    moved = (
        customers.filter(F.col("email").endswith(".com"))
        .orderBy("customer_id")
        .limit(1)
        .withColumn("email", F.concat(F.lit("moved."), F.col("email")))
        .withColumn("updated_at", later)
    )
    new_orders.unionByName(returned).write.mode("append").parquet(str(raw / "parquet" / "orders"))
    moved.write.mode("append").parquet(str(raw / "parquet" / "customers"))

    second = run(spark, settings, raw, incremental_out, "parquet", pg, incremental=True)
    assert second.counts is not None
    processed = {e.entity: e.rows_in for e in second.counts.entities}
    assert processed == {"customers": 1, "products": 0, "orders": 70}

    run(spark, settings, raw, full_out, "parquet", None)
    for entity in ENTITIES:
        assertDataFrameEqual(
            layer(spark, incremental_out, "silver", entity),
            layer(spark, full_out, "silver", entity),
        )
    for table in GOLD_TABLES:
        full_gold = layer(spark, full_out, "gold", table)
        assertDataFrameEqual(layer(spark, incremental_out, "gold", table), full_gold)
        assertDataFrameEqual(read_table(spark, pg, f"analytics.{table}"), full_gold)


def test_incremental_without_an_earlier_run_says_what_to_do(
    spark: SparkSession, settings: Settings, tiny_raw: Path, pg: PgSettings, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="run once without --incremental first"):
        run(spark, settings, tiny_raw, tmp_path, "parquet", pg, incremental=True)
