"""The optimization experiments on tiny inline data: every experiment runs, its variants agree.

The experiments' own equality check is what these tests lean on: ``run_experiment`` raises when
a variant returns different rows, so a variant that computes something else cannot pass.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pandas as pd
import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch.quality import normalise_phone
from sparkmart.bench import optimizations as optim
from sparkmart.schemas import RAW_SCHEMAS

STATUSES = ["delivered", "shipped", "processing", "cancelled", "returned", "delivered"]
PHONES = ["(555) 123-4567", "1-555-123-4567", "555.123.4567 x9", "+1 555 123 4567", "", None]


def tiny_entities(spark: SparkSession) -> dict[str, DataFrame]:
    """Eight customers (customer 1 heavy: every third order), five products in three
    categories, 60 orders over three months; a null discount, a null quantity, an unknown
    product and a null status, so every variant must treat them alike."""
    updated = dt.datetime(2025, 4, 1)
    customers = [
        (
            c,
            f"F{c}",
            f"L{c}",
            f"c{c}@example.com",
            PHONES[c % len(PHONES)],
            "Lyon",
            ["FR", "DE", "US"][c % 3],
            dt.date(2024, 1, c),
            updated,
        )
        for c in range(1, 9)
    ]
    products = [
        (
            p,
            f"P{p}",
            ["toys", "books", "garden"][p % 3],
            "acme",
            D(f"{10 * p}.99"),
            D(f"{6 * p}.50"),
            5 * p,
            updated,
        )
        for p in range(1, 6)
    ]
    orders = []
    for o in range(1, 61):
        ts = dt.datetime(2025, 1, 1, 8) + dt.timedelta(days=(o * 3) % 88, hours=o % 11)
        orders.append(
            (
                o,
                1 if o % 3 == 0 else 2 + o % 7,
                99 if o == 7 else 1 + o % 5,
                None if o == 11 else 1 + o % 4,
                D(f"{o % 9 + 1}.25"),
                None if o % 5 == 0 else D("0.125"),
                ts,
                None if o == 13 else STATUSES[o % len(STATUSES)],
                ["card", "paypal"][o % 2],
                ts + dt.timedelta(days=1),
                ts + dt.timedelta(days=3),
                updated,
            )
        )
    rows = {"customers": customers, "products": products, "orders": orders}
    return {e: spark.createDataFrame(rows[e], RAW_SCHEMAS[e]) for e in rows}


@pytest.fixture(scope="module")
def inputs(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> optim.Inputs:
    return optim.Inputs(spark, scratch=tmp_path_factory.mktemp("optim"), **tiny_entities(spark))


IN_PROCESS = [name for name in optim.EXPERIMENTS if name != "memory"]


@pytest.fixture(scope="module")
def results(inputs: optim.Inputs) -> dict[str, optim.ExperimentResult]:
    """Each experiment run once, on demand; later tests read the plans of the same run."""

    class Runs(dict):
        def __missing__(self, name: str) -> optim.ExperimentResult:
            if name == "caching":  # two of the six outputs keep it short; same code path
                experiment = optim.caching(inputs, outputs=("customer_ltv", "cohorts"))
            else:
                experiment = optim.EXPERIMENTS[name](inputs)
            self[name] = optim.run_experiment(inputs.spark, experiment, runs=1)
            return self[name]

    return Runs()


@pytest.mark.parametrize("name", IN_PROCESS)
def test_experiment_variants_agree(results: dict[str, optim.ExperimentResult], name: str) -> None:
    result = results[name]  # run_experiment raises when a variant's rows differ

    assert all(len(v.seconds) == 1 and v.seconds[0] > 0 for v in result.variants)
    assert result.variants[0].rows > 0
    assert sum(v.name.endswith(optim.PIPELINE_MARK) for v in result.variants) == 1
    assert f"## {result.experiment.title}" in optim.describe(result)


def test_plans_show_the_join_strategy(results: dict[str, optim.ExperimentResult]) -> None:
    plans = {v.name: v.plan for v in results["broadcast_join"].variants}

    assert "BroadcastHashJoin" in plans["broadcast hint"]
    assert "SortMergeJoin" in plans["shuffle-merge hint"]
    assert "SortMergeJoin" not in plans["broadcast hint"]


def test_parquet_plan_shows_pushed_filters_and_pruned_schema(
    results: dict[str, optim.ExperimentResult],
) -> None:
    result = results["parquet_vs_csv"]
    excerpt = optim.plan_excerpt(result.variants[0].plan, result.experiment.plan_lines)

    assert "PushedFilters: [IsNotNull(status), IsNotNull(order_ts), EqualTo(status,delivered)" in (
        excerpt
    )
    read_schema = next(line for line in excerpt.splitlines() if "ReadSchema" in line)
    assert "customer_id" not in read_schema and "quantity" in read_schema


def test_a_variant_with_a_different_result_fails_the_experiment(spark: SparkSession) -> None:
    experiment = optim.Experiment(
        "broken",
        "broken",
        "two answers",
        [
            optim.Variant("right", lambda: optim.Outcome([Row(x=1)])),
            optim.Variant("wrong", lambda: optim.Outcome([Row(x=2)])),
        ],
    )
    with pytest.raises(AssertionError, match="variant 'wrong' returned a different result"):
        optim.run_experiment(spark, experiment, runs=1)


def test_sql_conf_is_restored(spark: SparkSession) -> None:
    before = spark.conf.get("spark.sql.shuffle.partitions")
    with optim.sql_conf(spark, {"spark.sql.shuffle.partitions": "7"}):
        assert spark.conf.get("spark.sql.shuffle.partitions") == "7"
    assert spark.conf.get("spark.sql.shuffle.partitions") == before


def test_phone_normalisers_match_the_builtin(spark: SparkSession) -> None:
    phones = [*PHONES, "555-1234", "15551234567", "1234567890", "25551234567", "555 123\n4567"]
    df = spark.createDataFrame([(p,) for p in phones], "phone string")
    expected = df.select(normalise_phone(F.col("phone")).alias("phone")).collect()

    per_branch_column = optim.normalise_phone_per_branch(F.col("phone")).alias("phone")
    per_branch = df.select(per_branch_column).collect()
    python = [Row(phone=optim.normalise_phone_python(p)) for p in phones]
    pandas = [Row(phone=p) for p in optim.normalise_phone_pandas(pd.Series(phones, dtype=object))]

    assert expected[0].phone == "+1-555-123-4567"
    assertDataFrameEqual(python, expected)
    assertDataFrameEqual(pandas, expected)
    assertDataFrameEqual(per_branch, expected)


def test_fingerprint_changes_with_any_value(spark: SparkSession) -> None:
    a = spark.createDataFrame([(1, "x"), (2, "y")], "id long, v string")
    b = spark.createDataFrame([(2, "y"), (1, "x")], "id long, v string").repartition(2)
    c = spark.createDataFrame([(1, "x"), (2, "z")], "id long, v string")

    assert optim.fingerprint(a).first() == optim.fingerprint(b).first()
    assert optim.fingerprint(a).first() != optim.fingerprint(c).first()


def test_memory_experiment_runs_each_setting_in_its_own_process(inputs: optim.Inputs) -> None:
    experiment = optim.memory_settings(inputs, profile="test")
    experiment.variants = experiment.variants[:2]  # the pipeline's settings and driver 1g
    result = optim.run_experiment(inputs.spark, experiment, runs=1)

    assert result.variants[1].name == "driver 1g"
    assert all("memory" in v.facts for v in result.variants)
    assert result.variants[0].facts["memory"] != result.variants[1].facts["memory"]
