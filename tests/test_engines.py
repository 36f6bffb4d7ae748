"""The engine comparison: Spark, pandas, DuckDB and Polars give the same results on `tiny`."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from sparkmart.bench.engines import duckdb_engine, pandas_engine, polars_engine
from sparkmart.bench.engines import spark as spark_engine
from sparkmart.bench.engines import workload as W
from sparkmart.bench.engines.timer import StepTimer

PARAMS = W.WorkloadParams(dt.datetime(2026, 1, 1))


@pytest.fixture(scope="module")
def engine_outputs(
    spark: SparkSession, tiny_raw: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Every engine's outputs of the whole workload on `tiny` (about 1,000 rows per entity)."""
    root = tmp_path_factory.mktemp("engines")
    outputs = {}
    for name, module in (
        ("pandas", pandas_engine),
        ("duckdb", duckdb_engine),
        ("polars", polars_engine),
    ):
        timer = StepTimer()
        module.run(tiny_raw, root / name, PARAMS, timer)
        assert [s.step for s in timer.steps] == list(W.STEPS)
        outputs[name] = root / name
    timer = StepTimer()
    spark_engine.run(tiny_raw, root / "spark", PARAMS, timer, spark)
    assert [s.step for s in timer.steps] == list(W.STEPS)
    outputs["spark"] = root / "spark"
    return outputs


@pytest.mark.parametrize("engine", ["pandas", "duckdb", "polars"])
def test_engine_results_equal_spark(engine_outputs: dict[str, Path], engine: str) -> None:
    mismatches = W.compare_outputs(engine_outputs["spark"], engine_outputs[engine])
    assert mismatches == [], "\n".join(map(str, mismatches))


def _table(path: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in W.parquet_files(path)])


def test_cleaning_removes_duplicates_and_bad_rows(
    engine_outputs: dict[str, Path], tiny_raw: Path
) -> None:
    """The generator plants duplicates and defects: clean keeps one row per key, and fewer rows."""
    for entity in W.ENTITIES:
        raw = _table(W.raw_path(tiny_raw, entity))
        clean = _table(engine_outputs["pandas"] / f"clean_{entity}")
        key = W.PRIMARY_KEYS[entity]
        keys = clean.column(key).to_pylist()
        assert len(keys) == len(set(keys)), f"{entity}: duplicate keys after cleaning"
        assert 0.8 * raw.num_rows < clean.num_rows < raw.num_rows, entity
    orders = _table(engine_outputs["pandas"] / "clean_orders")
    assert min(orders.column("quantity").to_pylist()) > 0
    assert orders.column("discount").null_count == 0


def test_spark_dedupe_keeps_the_latest_row_per_key(spark: SparkSession) -> None:
    """The latest row per key; ties on updated_at go to the smaller other columns."""
    from decimal import Decimal as D

    t1, t2 = dt.datetime(2025, 1, 1), dt.datetime(2025, 6, 1)
    schema = W.RAW_SCHEMAS["products"]

    def product(key: int, name: str, updated: dt.datetime | None) -> tuple:
        return (key, name, "books", "acme", D("10.00"), D("4.00"), 5, updated)

    raw = spark.createDataFrame(
        [
            product(1, "only", t1),  # single: kept as it is
            product(2, "old", t1),
            product(2, "new", t2),  # latest updated_at wins
            product(3, "b", t2),
            product(3, "a", t2),  # same updated_at: the smaller name wins
            product(4, "dated", t1),
            product(4, "undated", None),  # a null updated_at loses
        ],
        schema,
    )
    kept = raw.transform(spark_engine.dedupe_latest("products")).select("product_id", "name")
    assertDataFrameEqual(
        kept,
        [Row(product_id=k, name=n) for k, n in [(1, "only"), (2, "new"), (3, "a"), (4, "dated")]],
    )


def test_marts_are_not_empty(engine_outputs: dict[str, Path]) -> None:
    """Equality of empty outputs would prove nothing: every mart has rows and revenue."""
    for mart in W.MARTS:
        table = _table(engine_outputs["spark"] / mart)
        assert table.num_rows > 0, mart
    ltv = _table(engine_outputs["spark"] / "customer_ltv")
    assert sum(float(v) for v in ltv.column("revenue").to_pylist()) > 0


def test_compare_output_reports_a_changed_value(
    engine_outputs: dict[str, Path], tmp_path: Path
) -> None:
    changed = tmp_path / "cohorts"
    table = _table(engine_outputs["polars"] / "cohorts")
    rates = table.column("retention_rate").to_pylist()
    rates[0] = rates[0] + 0.01
    index = table.column_names.index("retention_rate")
    changed.mkdir()
    pq.write_table(
        table.set_column(index, "retention_rate", pa.array(rates)), changed / "p.parquet"
    )
    mismatch = W.compare_output("cohorts", engine_outputs["spark"] / "cohorts", changed)
    assert mismatch is not None and "retention_rate" in str(mismatch)


def test_wrong_raw_type_is_a_clear_error(tiny_raw: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for entity in W.ENTITIES:
        shutil.copytree(W.raw_path(tiny_raw, entity), raw / "parquet" / entity)
    orders = raw / "parquet" / "orders"
    table = _table(orders)
    for f in W.parquet_files(orders):
        f.unlink()
    index = table.column_names.index("quantity")
    bad = table.set_column(index, "quantity", table.column("quantity").cast(pa.string()))
    pq.write_table(bad, orders / "part-0.parquet")
    with pytest.raises(ValueError, match=r"part-0\.parquet: column 'quantity' is string"):
        W.check_raw_schema(raw, "orders")


def test_results_keep_earlier_scales_in_scale_order(tmp_path: Path) -> None:
    """A run of `small` keeps the `xlarge` measured before it; both listed smallest first."""
    from sparkmart.bench.engines_bench import merge_previous

    def document(scale: str, seconds: float) -> dict:
        record = {"engine": "spark", "scale": scale, "run": 1, "step": "total",
                  "seconds": seconds, "load_average": 1.0}  # fmt: skip
        return {
            "engines": ["spark"],
            "measured_at": f"{scale} time",
            "scales": {scale: {"counts": {"orders": 1}}},
            "equality": {scale: {"spark": "reference"}},
            "records": [record],
        }

    previous = tmp_path / "engines.json"
    previous.write_text(json.dumps(merge_previous(document("xlarge", 300.0), previous)))
    merged = merge_previous(document("small", 20.0), previous)
    assert list(merged["scales"]) == ["small", "xlarge"]
    assert list(merged["equality"]) == ["small", "xlarge"]
    assert merged["scales"]["xlarge"]["measured_at"] == "xlarge time"
    assert sorted(r["seconds"] for r in merged["records"]) == [20.0, 300.0]


def test_compare_output_matches_rows_by_key(tmp_path: Path) -> None:
    """Decimal and float64 money compare as values; a missing or extra key is reported."""
    from decimal import Decimal

    def write(name: str, ids: list[int], revenue: pa.Array) -> Path:
        path = tmp_path / name
        path.mkdir()
        table = pa.table({"product_id": pa.array(ids, pa.int64()), "revenue": revenue})
        pq.write_table(table, path / "part.parquet")
        return path

    spark_like = write("spark", [1, 2], pa.array([Decimal("1.10"), None], pa.decimal128(18, 2)))
    pandas_like = write("pandas", [2, 1], pa.array([None, 1.1]))
    assert W.compare_output("product_performance", spark_like, pandas_like) is None
    other_key = write("other", [1, 3], pa.array([1.1, None]))
    mismatch = W.compare_output("product_performance", spark_like, other_key)
    assert mismatch is not None and "missing" in str(mismatch)
