"""Export: files land whole or not at all, snapshots are immutable, PostgreSQL is all or nothing."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch.export import (
    apply_retention,
    export_to_postgres,
    list_snapshots,
    with_order_month,
    write_csv_report,
    write_parquet_atomically,
    write_snapshot,
)
from sparkmart.io.postgres import (
    PgSettings,
    PostgresError,
    execute_sql,
    query_rows,
    read_table,
)


def test_csv_report_is_one_file_with_a_header(spark: SparkSession, tmp_path: Path) -> None:
    trends = spark.createDataFrame(
        [("day", dt.date(2025, 1, 1), 3), ("day", dt.date(2025, 1, 2), 5)],
        "grain string, period_start date, orders long",
    )
    report = write_csv_report(trends, tmp_path / "reports" / "sales_trends.csv")
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["sales_trends.csv"]
    with report.open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["grain", "period_start", "orders"],
        ["day", "2025-01-01", "3"],
        ["day", "2025-01-02", "5"],
    ]


def test_parquet_is_partitioned_and_a_failed_write_keeps_the_old_copy(
    spark: SparkSession, tmp_path: Path
) -> None:
    orders = spark.createDataFrame(
        [(1, dt.datetime(2025, 1, 5, 10)), (2, dt.datetime(2025, 2, 1, 9))],
        "order_id long, order_ts timestamp",
    ).transform(with_order_month)
    target = tmp_path / "gold" / "orders"
    write_parquet_atomically(orders, target, ["order_month"])
    assert sorted(p.name for p in target.glob("order_month=*")) == [
        "order_month=2025-01",
        "order_month=2025-02",
    ]

    failing = orders.withColumn(
        "order_id",
        F.when(F.col("order_id") == 2, F.raise_error("boom")).otherwise(F.col("order_id")),
    )
    with pytest.raises(Exception, match="boom"):
        write_parquet_atomically(failing, target, ["order_month"])
    assertDataFrameEqual(
        spark.read.parquet(str(target)).select("order_id", "order_ts"),
        orders.select("order_id", "order_ts"),
    )
    assert [p.name for p in target.parent.iterdir()] == ["orders"]  # no temp dirs left


def test_snapshots_are_listed_immutable_and_retained(tmp_path: Path) -> None:
    gold = tmp_path / "gold"
    (gold / "customers").mkdir(parents=True)
    (gold / "customers" / "part-0.parquet").write_bytes(b"x")
    snapshots = tmp_path / "snapshots"
    base = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    made = [
        write_snapshot(
            gold, snapshots, f"run{i}abcdef", {"customers": i}, base + dt.timedelta(hours=i)
        )
        for i in range(4)
    ]
    assert [s.name for s in list_snapshots(snapshots)] == [s.name for s in made]
    assert (made[0].path / "customers" / "part-0.parquet").read_bytes() == b"x"
    with pytest.raises(FileExistsError, match="immutable"):
        write_snapshot(gold, snapshots, "run0abcdef", {}, base)
    deleted = apply_retention(snapshots, keep=2)
    assert deleted == [made[0].name, made[1].name]
    assert [s.tables for s in list_snapshots(snapshots)] == [{"customers": 2}, {"customers": 3}]


def test_postgres_export_is_all_or_nothing_per_table(spark: SparkSession, pg: PgSettings) -> None:
    first = spark.createDataFrame(
        [(1, dt.date(2025, 1, 1), 3, 1), (2, dt.date(2025, 1, 1), 4, 2)],
        "cohort_month_id long, cohort_month date, months_since_first int, cohort_size long",
    ).drop("cohort_month_id")
    execute_sql(pg, "CREATE SCHEMA IF NOT EXISTS export_test")  # not shared with other tests
    export_to_postgres({"cohorts": first}, pg, schema_name="export_test")
    before = sorted(query_rows(pg, "SELECT * FROM export_test.cohorts"))

    # a second export that fails while Spark computes it must leave the table as it was
    broken = first.withColumn(
        "cohort_size",
        F.when(F.col("months_since_first") == 4, F.raise_error("mid-export failure")).otherwise(
            F.col("cohort_size")
        ),
    )
    with pytest.raises(PostgresError):
        export_to_postgres({"cohorts": broken}, pg, schema_name="export_test")
    assert sorted(query_rows(pg, "SELECT * FROM export_test.cohorts")) == before
    assertDataFrameEqual(read_table(spark, pg, "export_test.cohorts"), first)
