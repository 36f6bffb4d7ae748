"""The engine-comparison workload: one definition that Spark, pandas, DuckDB and Polars implement.

Every engine reads the generator's raw Parquet (``<raw>/parquet/<entity>/``) and runs the same
steps, each ending in Parquet files under ``<out>/``:

``ingest_clean``
    Read the three raw entities, check their column types against ``sparkmart.schemas``
    (a mismatch is an error naming the file, column and types), deduplicate, drop the rows that
    fail the rules below, repair two columns, and write ``clean_<entity>``.

    *Deduplication*, per business key: keep the row with the latest ``updated_at`` (nulls
    last); ties are broken by the other columns in schema order, ascending, nulls last, so the
    kept row depends only on the values. Deduplication comes before the rules: the latest
    version wins even when it then fails a rule (as in ``batch.quality``).

    *Rules* (a row failing any is dropped; a comparison with a null operand passes, so only the
    ``required`` columns reject nulls; ``as_of`` is the run's reference time, ``MIN_DATE`` the
    earliest plausible date):

    ===========  ==============================================================================
    customers    required customer_id, email, signup_date, updated_at; email matches
                 ``rules.EMAIL_REGEX``; MIN_DATE <= signup_date <= date(as_of);
                 updated_at <= as_of
    products     required product_id, price, cost, stock_quantity, updated_at; price, cost and
                 stock_quantity >= 0; updated_at <= as_of. Repair: null category ->
                 'uncategorized'
    orders       required order_id, customer_id, product_id, quantity, unit_price, order_ts,
                 status, updated_at; quantity > 0; unit_price >= 0; 0 <= discount <= 1;
                 MIN_DATE <= order_ts <= as_of; order_ts <= shipped_ts <= delivered_ts;
                 order_ts <= updated_at <= as_of; status in ``ORDER_STATUSES``;
                 customer_id and product_id among the keys of the *raw* customers / products
                 (as ``batch.quality`` checks references against bronze). Repair: null
                 discount -> 0
    ===========  ==============================================================================

    This is a subset of the pipeline's quality layer (``batch.quality``: no standardisation,
    no quarantine table with reasons, no repair of names, phones or payment methods): the part
    every engine can implement identically. ``make bench-batch`` measures the full pipeline.

``prepare``
    Read ``clean_orders`` and ``clean_products`` back and build the order lines of
    ``batch.enrich.order_lines`` (left join to products for category and unit cost; order_date;
    net revenue = round_half_up(quantity x unit_price x (1 - discount), cents); line cost =
    quantity x cost; realized = status in (delivered, shipped)), and the analysis date
    ``as_of`` = the last order date (``batch.analytics.resolve_as_of``).

``customer_ltv``, ``product_performance``, ``sales_trends``, ``cohorts``
    The marts of ``batch.analytics`` exactly as ``docs/definitions.md`` defines them, computed
    from the order lines and written as ``<mart>``. Money is exact in every engine: Spark and
    DuckDB use decimals, pandas and Polars integer cents (written as float64 currency units,
    where Spark writes decimal(18,2)); the equality check compares values, not types.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from sparkmart.batch.analytics import GOLD_SCHEMAS
from sparkmart.batch.enrich import REALIZED_STATUSES
from sparkmart.batch.rules import (
    DEFAULT_NULL_POLICY,
    DEFAULT_ORDER_STATUSES,
    EMAIL_REGEX,
    UNCATEGORIZED,
)
from sparkmart.schemas import ENTITIES, PRIMARY_KEYS, RAW_SCHEMAS

MIN_DATE = dt.date(2000, 1, 1)
ORDER_STATUSES: tuple[str, ...] = DEFAULT_ORDER_STATUSES
REALIZED: tuple[str, ...] = REALIZED_STATUSES
# The required columns (a null rejects the row) are the pipeline's default null policy.
REQUIRED: dict[str, tuple[str, ...]] = {e: DEFAULT_NULL_POLICY[e].required for e in ENTITIES}
MARTS: tuple[str, ...] = ("customer_ltv", "product_performance", "sales_trends", "cohorts")
STEPS: tuple[str, ...] = ("ingest_clean", "prepare", *MARTS)
CLV_HORIZON_YEARS = 1.0  # GoldParams.clv_horizon_days / 365
CLV_MIN_OBSERVATION_DAYS = 30  # GoldParams.clv_min_observation_days
CLV_INACTIVITY_DAYS = 365.0  # GoldParams.clv_inactivity_scale_days
MOVING_AVERAGE_DAYS: tuple[int, ...] = (7, 28)
__all__ = [
    "EMAIL_REGEX",
    "ENTITIES",
    "MARTS",
    "PRIMARY_KEYS",
    "RAW_SCHEMAS",
    "STEPS",
    "UNCATEGORIZED",
]

# Columns of each mart that identify a row: outputs are sorted by them before comparing.
MART_KEYS: dict[str, list[str]] = {
    "customer_ltv": ["customer_id"],
    "product_performance": ["product_id"],
    "sales_trends": ["grain", "period_start"],
    "cohorts": ["cohort_month", "months_since_first"],
    "clean_customers": ["customer_id"],
    "clean_products": ["product_id"],
    "clean_orders": ["order_id"],
}
OUTPUTS: tuple[str, ...] = tuple(f"clean_{entity}" for entity in ENTITIES) + MARTS
# Each mart's columns, in the order of the pipeline's gold schema: every engine writes them so.
MART_COLUMNS: dict[str, list[str]] = {mart: GOLD_SCHEMAS[mart].fieldNames() for mart in MARTS}


@dataclass(frozen=True)
class WorkloadParams:
    """The run's reference time for the rules (the same for every engine of a benchmark)."""

    as_of: dt.datetime  # naive, UTC

    @property
    def as_of_date(self) -> dt.date:
        return self.as_of.date()


def timestamp_columns(entity: str) -> list[str]:
    """The entity's timestamp columns (engines read them as naive UTC)."""
    return [f.name for f in RAW_SCHEMAS[entity].fields if f.dataType.simpleString() == "timestamp"]


def sort_columns(entity: str) -> list[str]:
    """Deduplication order after the key and updated_at: the other columns, in schema order."""
    key = PRIMARY_KEYS[entity]
    return [n for n in RAW_SCHEMAS[entity].fieldNames() if n not in (key, "updated_at")]


def raw_path(raw: Path, entity: str) -> Path:
    """The raw Parquet directory of ``entity`` under a generator output directory."""
    path = Path(raw) / "parquet" / entity
    if not path.exists():
        raise FileNotFoundError(
            f"raw {entity}: {path} does not exist (generate with `sparkmart generate --out {raw}`)"
        )
    return path


def _arrow_type(spark_type: str) -> pa.DataType:
    simple = {
        "bigint": pa.int64(),
        "int": pa.int32(),
        "string": pa.string(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    if spark_type.startswith("decimal("):
        precision, scale = spark_type[len("decimal(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return simple[spark_type]


def parquet_files(path: Path) -> list[Path]:
    """The data files of a Parquet dataset directory (Spark's part files), or the file itself."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith((".", "_")))
    if not files:
        raise FileNotFoundError(f"{path}: no Parquet files")
    return files


def check_raw_schema(raw: Path, entity: str) -> Path:
    """Raise if a raw Parquet file's columns or types differ from ``RAW_SCHEMAS[entity]``.

    Reads only the footer of the first file: the type check of ``ingest_clean``.
    """
    path = raw_path(raw, entity)
    first = parquet_files(path)[0]
    found = pq.read_schema(first)
    for field in RAW_SCHEMAS[entity].fields:
        expected = _arrow_type(field.dataType.simpleString())
        if field.name not in found.names:
            raise ValueError(f"{first}: column {field.name!r} missing (expected {expected})")
        actual = found.field(field.name).type
        # Spark writes INT96 (read as timestamp[ns], no zone) or microseconds adjusted to UTC:
        # both are UTC instants. Every engine works on naive UTC timestamps.
        if (
            pa.types.is_timestamp(expected)
            and pa.types.is_timestamp(actual)
            and actual.tz in (None, "UTC", "+00:00")
        ):
            continue
        if actual != expected:
            raise ValueError(f"{first}: column {field.name!r} is {actual}, expected {expected}")
    return path


# --- equality ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    output: str
    message: str

    def __str__(self) -> str:
        return f"{self.output}: {self.message}"


def sql_literal(text: object) -> str:
    """``text`` as a quoted SQL string literal (DuckDB)."""
    return "'" + str(text).replace("'", "''") + "'"


def parquet_list_sql(path: Path) -> str:
    """A Parquet dataset's part files as a DuckDB list literal, for ``read_parquet(...)``."""
    return "[" + ", ".join(sql_literal(f) for f in parquet_files(path)) + "]"


def duckdb_connect(memory_limit: str, spill_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB database with dates in UTC (Spark's session time zone), spilling
    past ``memory_limit`` into ``spill_dir`` (DuckDB's default place when None)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
    if spill_dir is not None:
        con.execute(f"SET temp_directory = {sql_literal(spill_dir)}")
    return con


_NUMERIC = ("FLOAT", "DOUBLE", "DECIMAL")
# The equality check joins two engines' outputs (100M rows of clean orders at `xxlarge`) in
# DuckDB, which spills past this limit into a temporary directory.
COMPARE_MEMORY_LIMIT = "4GiB"


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    described = con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()
    return {name: kind for name, kind, *_ in described}


def _comparable(side: str, column: str, kind: str) -> str:
    """Money as DOUBLE (pandas and Polars write float64), timestamps as naive UTC."""
    value = f'{side}."{column}"'
    if kind.startswith(_NUMERIC):
        return f"{value}::DOUBLE"
    if kind.startswith("TIMESTAMP"):
        return f"{value}::TIMESTAMP"
    return value


def compare_output(
    name: str, expected_path: Path, actual_path: Path, rel: float = 1e-9, abs_tol: float = 1e-6
) -> Mismatch | None:
    """Compare one output of two engines: same columns, rows matched by key, floats with tolerance.

    Numeric columns (doubles, and decimals, compared as doubles) match within ``rel`` relative or
    ``abs_tol`` absolute; nulls equal nulls, NaN equals NaN. Rounded doubles (``round(x, 2)`` of a
    double) may differ by one unit in the last place between engines; they are compared with
    the tolerance listed in ``ROUNDED_DOUBLES``. The check runs in DuckDB under a memory limit,
    so it spills rather than holding two 100M-row tables in memory (it once did, and the
    kernel killed the benchmark).
    """
    keys = MART_KEYS[name]
    con = duckdb_connect(COMPARE_MEMORY_LIMIT, Path(tempfile.gettempdir()) / "sparkmart-compare")
    try:
        expected = f"read_parquet({parquet_list_sql(expected_path)})"
        actual = f"read_parquet({parquet_list_sql(actual_path)})"
        wanted, found = _columns(con, expected), _columns(con, actual)
        if list(wanted) != list(found):
            return Mismatch(name, f"columns {list(found)} != {list(wanted)}")
        rows = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in (expected, actual)]
        if rows[0] != rows[1]:
            return Mismatch(name, f"{rows[1]} rows, expected {rows[0]}")
        differs = {}
        for column, kind in wanted.items():
            left = _comparable("e", column, kind)
            right = _comparable("a", column, found[column])
            if kind.startswith(_NUMERIC) or found[column].startswith(_NUMERIC):
                tolerance = ROUNDED_DOUBLES.get((name, column), abs_tol)
                same = (
                    f"({left} IS NULL AND {right} IS NULL) OR (isnan({left}) AND isnan({right}))"
                    f" OR abs({left} - {right}) <= greatest({rel} * greatest(abs({left}),"
                    f" abs({right})), {tolerance})"
                )
                differs[column] = f"NOT coalesce({same}, false)"
            else:
                differs[column] = f"{left} IS DISTINCT FROM {right}"
        on = " AND ".join(f'e."{k}" = a."{k}"' for k in keys)
        key_columns = ", ".join(f'{side}."{k}"' for side in ("e", "a") for k in keys)
        # Per column: its flag, then the expected and the actual value (for the message).
        checks = ", ".join(f'{test}, e."{c}", a."{c}"' for c, test in differs.items())
        row = con.execute(
            f"SELECT {key_columns}, {checks}"
            f" FROM {expected} e FULL OUTER JOIN {actual} a ON {on}"
            f' WHERE e."{keys[0]}" IS NULL OR a."{keys[0]}" IS NULL OR '
            + " OR ".join(f"({test})" for test in differs.values())
            + " LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        expected_key, actual_key = row[: len(keys)], row[len(keys) : 2 * len(keys)]
        if actual_key[0] is None:
            return Mismatch(name, f"row {dict(zip(keys, expected_key, strict=True))} missing")
        if expected_key[0] is None:
            return Mismatch(name, f"unexpected row {dict(zip(keys, actual_key, strict=True))}")
        values = row[2 * len(keys) :]
        for index, column in enumerate(differs):
            differ, wanted_value, found_value = values[3 * index : 3 * index + 3]
            if differ:
                key = dict(zip(keys, expected_key, strict=True))
                message = f"{column} at {key}: {found_value!r}, expected {wanted_value!r}"
                return Mismatch(name, message)
        raise AssertionError("a differing row with no differing column")
    finally:
        con.close()


# Doubles rounded to a few decimals: half-up (Spark) and half-even/binary rounding of the same
# double can land one unit of the last decimal apart.
ROUNDED_DOUBLES: Mapping[tuple[str, str], float] = {
    ("customer_ltv", "predicted_clv"): 0.0100001,
    ("customer_ltv", "median_order_value"): 0.0010001,
    ("customer_ltv", "order_value_mad"): 0.0010001,
    ("product_performance", "margin_rate"): 0.0001001,
}


def compare_outputs(expected: Path, actual: Path) -> list[Mismatch]:
    """Every output of two engines' run directories; an empty list means they agree."""
    found = []
    for name in OUTPUTS:
        mismatch = compare_output(name, expected / name, actual / name)
        if mismatch is not None:
            found.append(mismatch)
    return found


# An engine: run(raw, out, params, step) where step(name) is a context manager timing a step.
EngineRun = Callable[..., None]
