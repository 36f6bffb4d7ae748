"""PostgreSQL I/O against the real server: settings, DDL, round trips, atomic replace and merge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.testing import assertDataFrameEqual

from sparkmart.io import postgres as pgio
from sparkmart.io.postgres import (
    MergeResult,
    PgSettings,
    PostgresError,
    connect,
    create_table_sql,
    ensure_schemas,
    execute_sql,
    merge_into,
    pg_type_for,
    query_rows,
    read_table,
    replace_table_atomically,
    table_columns,
    write_table,
)
from sparkmart.schemas import PRIMARY_KEYS, RAW_SCHEMAS

pytestmark = pytest.mark.postgres
METHODS = ("jdbc", "copy")
UTC = dt.timezone.utc


def ts(*args: int) -> dt.datetime:
    """An aware UTC datetime: Spark turns naive ones into instants with the local zone."""
    return dt.datetime(*args, tzinfo=UTC)


# --- settings (no server needed) -----------------------------------------------------------


class TestSettingsFromEnv:
    def test_database_url_with_escaped_password(self) -> None:
        pg = PgSettings.from_env(
            {"DATABASE_URL": "postgresql://ana:p%40ss%3Aw%2Fd%25@db.example:6543/shop%20db"}
        )
        assert pg == PgSettings("db.example", 6543, "shop db", "ana", "p@ss:w/d%")
        assert "p@ss" not in pg.display and pg.display == "postgresql://ana@db.example:6543/shop db"
        assert pg.jdbc_url == "jdbc:postgresql://db.example:6543/shop db"
        assert pg.jdbc_properties["password"] == "p@ss:w/d%"

    def test_database_url_wins_over_pg_variables_and_fills_gaps_from_them(self) -> None:
        env = {"DATABASE_URL": "postgres://10.0.0.5/", "PGUSER": "bob", "PGHOST": "ignored"}
        pg = PgSettings.from_env(env)
        assert (pg.host, pg.port, pg.dbname, pg.user, pg.password) == (
            "10.0.0.5",
            5432,
            "sparkmart",
            "bob",
            None,
        )

    def test_pg_variables(self) -> None:
        env = {
            "PGHOST": "pg.internal",
            "PGPORT": "5433",
            "PGDATABASE": "retail",
            "PGUSER": "etl",
            "PGPASSWORD": "secret",
        }
        assert PgSettings.from_env(env) == PgSettings(
            "pg.internal", 5433, "retail", "etl", "secret"
        )

    def test_defaults(self) -> None:
        pg = PgSettings.from_env({})
        assert (pg.host, pg.port, pg.dbname, pg.password) == ("127.0.0.1", 5432, "sparkmart", None)
        assert pg.user  # the OS user

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"DATABASE_URL": "mysql://u@h/db"}, "postgresql://"),
            ({"DATABASE_URL": "postgresql://u:pw@h:port/db"}, "invalid port"),
            ({"DATABASE_URL": "postgresql://u:pw@h:70000/db"}, "invalid port"),
            ({"PGPORT": "54x"}, "PGPORT"),
            ({"PGPORT": "0"}, "PGPORT"),
        ],
    )
    def test_bad_values_are_clear_errors(self, env: dict[str, str], message: str) -> None:
        with pytest.raises(PostgresError, match=message) as info:
            PgSettings.from_env(env)
        assert "pw" not in str(info.value)  # never echo a password


# --- DDL -----------------------------------------------------------------------------------


def test_type_mapping() -> None:
    orders = RAW_SCHEMAS["orders"]
    assert pg_type_for(orders["order_id"].dataType) == "bigint"
    assert pg_type_for(orders["quantity"].dataType) == "integer"
    assert pg_type_for(orders["unit_price"].dataType) == "numeric(10,2)"
    assert pg_type_for(orders["discount"].dataType) == "numeric(4,3)"
    assert pg_type_for(orders["order_ts"].dataType) == "timestamp"
    assert pg_type_for(orders["status"].dataType) == "text"
    assert pg_type_for(RAW_SCHEMAS["customers"]["signup_date"].dataType) == "date"
    assert pg_type_for(BooleanType()) == "boolean"
    assert pg_type_for(DoubleType()) == "double precision"
    assert pg_type_for(FloatType()) == "real"
    assert pg_type_for(BinaryType()) == "bytea"
    with pytest.raises(TypeError, match="array<int>"):
        pg_type_for(ArrayType(IntegerType()))


def test_create_table_sql(pg: PgSettings) -> None:
    with connect(pg) as conn:
        text = create_table_sql("analytics.products", RAW_SCHEMAS["products"], "product_id")
        rendered = text.as_string(conn)
    assert rendered.startswith('CREATE TABLE IF NOT EXISTS "analytics"."products" (')
    assert '"product_id" bigint NOT NULL' in rendered
    assert '"price" numeric(10,2),' in rendered
    assert '"updated_at" timestamp,' in rendered
    assert rendered.endswith('PRIMARY KEY ("product_id"))')
    bad = StructType([StructField("tags", ArrayType(StringType()))])
    with pytest.raises(TypeError, match="column 'tags'"):
        create_table_sql("t", bad)


# --- fixtures for the database tests -------------------------------------------------------


@pytest.fixture(scope="module")
def db(pg: PgSettings) -> Iterator[PgSettings]:
    ensure_schemas(pg)
    yield pg


def staging_tables(pg: PgSettings) -> list[str]:
    rows = query_rows(
        pg,
        "SELECT schemaname || '.' || tablename FROM pg_tables WHERE tablename LIKE %s",
        ("\\_stage\\_%",),
    )
    return [name for (name,) in rows]


RAW_ROWS: dict[str, list[tuple]] = {
    "customers": [
        (
            1,
            "Ana",
            "Lopez",
            "ana@example.com",
            "+34 600",
            "Madrid",
            "ES",
            dt.date(2021, 2, 28),
            ts(2024, 1, 2, 3, 4, 5, 123456),
        ),
        (
            2,
            "Émile",
            'O\'Brien, "Jr"',
            "",
            "\\.",  # COPY's end-of-data marker, as a value
            "Lyon\nnord",
            "FR",
            dt.date(2020, 2, 29),
            ts(1999, 12, 31, 23, 59, 59, 999999),
        ),
        (3, None, None, None, None, None, None, None, None),
    ],
    "products": [
        (
            10,
            "Desk",
            "furniture",
            "Acme",
            Decimal("199.99"),
            Decimal("120.00"),
            5,
            ts(2024, 6, 1, 0, 0, 0, 1),
        ),
        (11, "Pen", "office", None, Decimal("0.01"), Decimal("0.00"), 0, None),
        (12, None, None, None, None, None, None, ts(2024, 6, 1, 12, 0, 0)),
    ],
    "orders": [
        (
            100,
            1,
            10,
            2,
            Decimal("199.99"),
            Decimal("0.125"),
            ts(2024, 3, 10, 7, 30, 0, 1),
            "delivered",
            "card",
            ts(2024, 3, 11, 8),
            ts(2024, 3, 13, 17, 45, 12, 500000),
            ts(2024, 3, 13, 17, 45, 12, 500001),
        ),
        (
            101,
            2,
            11,
            1,
            Decimal("0.01"),
            Decimal("0.000"),
            ts(2024, 3, 10, 23, 59, 59, 999999),
            "pending",
            "paypal",
            None,
            None,
            None,
        ),
        (102, None, None, None, None, None, None, None, None, None, None, None),
    ],
}


def raw_df(spark: SparkSession, entity: str) -> DataFrame:
    return spark.createDataFrame(RAW_ROWS[entity], RAW_SCHEMAS[entity])


def ids_df(spark: SparkSession, ids: range | list[int], label: str = "v") -> DataFrame:
    schema = StructType(
        [StructField("id", LongType(), False), StructField("label", StringType(), True)]
    )
    return spark.createDataFrame([(i, f"{label}{i}") for i in ids], schema)


def table_ids(pg: PgSettings, table: str) -> list[tuple]:
    return query_rows(pg, f"SELECT id, label FROM {table} ORDER BY id")  # test-only SQL


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("entity", sorted(RAW_SCHEMAS))
def test_raw_entity_round_trip(
    spark: SparkSession, db: PgSettings, entity: str, method: str
) -> None:
    table = f"public.rt_{entity}_{method}"
    df = raw_df(spark, entity)
    write_table(df, db, table, method=method, primary_key=PRIMARY_KEYS[entity])
    back = read_table(
        spark, db, table, partition_column=PRIMARY_KEYS[entity], schema=RAW_SCHEMAS[entity]
    )
    assert back.schema.simpleString() == RAW_SCHEMAS[entity].simpleString()
    assertDataFrameEqual(back, df)


@pytest.mark.parametrize("method", METHODS)
def test_other_types_round_trip(spark: SparkSession, db: PgSettings, method: str) -> None:
    schema = StructType(
        [
            StructField("id", ShortType()),
            StructField("ok", BooleanType()),
            StructField("x", DoubleType()),
            StructField("f", FloatType()),
            StructField("raw", BinaryType()),
        ]
    )
    rows = [
        (1, True, float("nan"), 0.5, b"\x00\xffa,b"),
        (2, False, float("-inf"), None, b""),
        (3, None, 0.1 + 0.2, -1.25, None),
    ]
    df = spark.createDataFrame(rows, schema)
    write_table(df, db, f"public.types_{method}", method=method)
    assertDataFrameEqual(read_table(spark, db, f"public.types_{method}", schema=schema), df)


@pytest.mark.parametrize("method", METHODS)
def test_timestamps_are_stored_as_utc_wall_time_in_any_session_zone(
    spark: SparkSession, db: PgSettings, method: str
) -> None:
    """Even in a daylight-saving session zone, and in the hour that zone repeats."""
    table = f"public.tz_{method}"
    instants = [
        ts(2024, 3, 10, 7, 30, 0, 1),  # New York just jumped to EDT
        ts(2024, 11, 3, 5, 30),  # 01:30 EDT ...
        ts(2024, 11, 3, 6, 30, 0, 999999),  # ... and 01:30 EST, an hour later
    ]
    schema = StructType([StructField("id", LongType()), StructField("at", TimestampType())])
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        df = spark.createDataFrame(list(enumerate(instants)), schema)
        write_table(df, db, table, method=method)
        back = read_table(spark, db, table).orderBy("id").select(F.unix_micros("at")).collect()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    stored = query_rows(db, f"SELECT at FROM {table} ORDER BY id")
    assert stored == [(instant.replace(tzinfo=None),) for instant in instants]
    assert [row[0] for row in back] == [
        int(instant.timestamp()) * 1_000_000 + instant.microsecond for instant in instants
    ]


def test_read_without_schema_gives_jdbc_types_and_with_schema_the_projects(
    spark: SparkSession, db: PgSettings
) -> None:
    execute_sql(db, "CREATE TABLE public.loose (id bigint, amount numeric, note varchar(20))")
    execute_sql(db, "INSERT INTO public.loose VALUES (1, 2.5, 'x')")
    assert read_table(spark, db, "public.loose").schema["amount"].dataType.simpleString() == (
        "decimal(38,18)"
    )
    want = StructType([StructField("amount", RAW_SCHEMAS["products"]["price"].dataType)])
    back = read_table(spark, db, "public.loose", schema=want)
    assert back.schema.simpleString() == "struct<amount:decimal(10,2)>"
    assert back.first() == (Decimal("2.50"),)
    with pytest.raises(PostgresError, match=r"no column.*missing_col"):
        read_table(
            spark, db, "public.loose", schema=StructType([StructField("missing_col", LongType())])
        )


# --- partitioned read, append, overwrite ---------------------------------------------------


def test_partitioned_read_returns_every_row_once(spark: SparkSession, db: PgSettings) -> None:
    table = "public.partitioned"
    schema = StructType(
        [
            StructField("id", LongType()),
            StructField("k", LongType()),
            StructField("at", TimestampType()),
        ]
    )
    rows = [
        (i, None if i % 50 == 0 else i * 7 - 300, ts(2024, 1, 1) + dt.timedelta(hours=i))
        for i in range(1000)
    ]
    write_table(spark.createDataFrame(rows, schema).repartition(3), db, table)
    for column in ("k", "at", "id"):
        back = read_table(spark, db, table, partition_column=column, num_partitions=4)
        assert back.rdd.getNumPartitions() == 4
        ids = [row.id for row in back.select("id").collect()]
        assert sorted(ids) == list(range(1000)), column


@pytest.mark.parametrize("method", METHODS)
def test_append_then_overwrite(spark: SparkSession, db: PgSettings, method: str) -> None:
    table = f"public.modes_{method}"
    write_table(ids_df(spark, [1, 2, 3]), db, table, method=method, primary_key="id")
    write_table(ids_df(spark, [4, 5]), db, table, mode="append", method=method)
    assert [r[0] for r in table_ids(db, table)] == [1, 2, 3, 4, 5]
    write_table(ids_df(spark, [7, 8], "w"), db, table, mode="overwrite", method=method)
    assert table_ids(db, table) == [(7, "w7"), (8, "w8")]
    # the table definition (here its primary key) survives an overwrite
    with pytest.raises(PostgresError, match="duplicate key"):
        write_table(ids_df(spark, [8]), db, table, method=method, max_connections=1)


def test_write_rejects_columns_the_table_lacks(spark: SparkSession, db: PgSettings) -> None:
    write_table(ids_df(spark, [1]), db, "public.narrow")
    wider = ids_df(spark, [2]).withColumn("extra", F.lit(1))
    with pytest.raises(PostgresError, match=r"no column.*extra"):
        write_table(wider, db, "public.narrow")


# --- atomic replace ------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_replace_swaps_the_whole_table(spark: SparkSession, db: PgSettings, method: str) -> None:
    table = f"analytics.replace_{method}"
    assert replace_table_atomically(ids_df(spark, range(10)), db, table, "id", method) == 10
    assert replace_table_atomically(ids_df(spark, [3, 20], "n"), db, table, "id", method) == 2
    assert table_ids(db, table) == [(3, "n3"), (20, "n20")]
    keys = query_rows(
        db,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
        (table,),
    )
    assert keys == [("id",)]
    assert replace_table_atomically(ids_df(spark, []), db, table, "id", method) == 0
    assert table_ids(db, table) == []
    assert staging_tables(db) == []


def failing_later_partition(spark: SparkSession) -> DataFrame:
    """Four partitions of 25 rows; the last one raises while it is being written."""
    df = spark.range(0, 100, 1, 4)
    label = F.when(F.col("id") == 90, F.raise_error(F.lit("boom in partition 3"))).otherwise(
        F.concat(F.lit("x"), F.col("id").cast("string"))
    )
    return df.select(F.col("id"), label.alias("label"))


@pytest.mark.parametrize("method", METHODS)
def test_replace_failing_midway_leaves_target_untouched(
    spark: SparkSession, db: PgSettings, method: str
) -> None:
    table = f"analytics.replace_fail_{method}"
    replace_table_atomically(ids_df(spark, [1, 2, 3], "old"), db, table, "id", method)
    before = table_ids(db, table)
    with pytest.raises(PostgresError, match=f"replace of {table}.*boom in partition 3"):
        replace_table_atomically(failing_later_partition(spark), db, table, "id", method)
    assert table_ids(db, table) == before
    assert staging_tables(db) == []


@pytest.mark.parametrize("method", METHODS)
def test_replace_violating_constraints_leaves_target_untouched(
    spark: SparkSession, db: PgSettings, method: str
) -> None:
    table = f"analytics.replace_constraint_{method}"
    replace_table_atomically(ids_df(spark, [1, 2, 3], "old"), db, table, "id", method)
    execute_sql(db, f"ALTER TABLE {table} ALTER COLUMN label SET NOT NULL")
    before = table_ids(db, table)
    duplicate_key = ids_df(spark, [5, 6, 6])
    with pytest.raises(
        PostgresError, match=r"duplicate key.*; analytics\.replace_constraint_\w+ left unchanged"
    ):
        replace_table_atomically(duplicate_key, db, table, "id", method)
    null_label = ids_df(spark, [7, 8]).withColumn(
        "label", F.when(F.col("id") == 8, F.lit(None)).otherwise(F.col("label"))
    )
    with pytest.raises(PostgresError, match=r"null value.*label"):
        replace_table_atomically(null_label, db, table, "id", method)
    assert table_ids(db, table) == before
    assert staging_tables(db) == []


def test_replace_rejects_a_new_column_before_writing(spark: SparkSession, db: PgSettings) -> None:
    table = "analytics.replace_schema"
    replace_table_atomically(ids_df(spark, [1]), db, table, "id")
    with pytest.raises(PostgresError, match=r"no column.*extra"):
        replace_table_atomically(ids_df(spark, [2]).withColumn("extra", F.lit(1)), db, table)
    assert table_ids(db, table) == [(1, "v1")]
    assert staging_tables(db) == []


def test_copy_partition_ledger_makes_a_retried_partition_write_nothing(db: PgSettings) -> None:
    """A retried (or speculative) attempt of a partition that committed must not duplicate it."""
    import pyarrow as pa

    execute_sql(db, "CREATE TABLE public.ledgered (id bigint, label text)")
    execute_sql(db, "CREATE TABLE public.ledgered_parts (part integer PRIMARY KEY)")
    writer = pgio._copy_partition_writer(db, "public.ledgered", ["id", "label"], "ledgered_parts")
    batch = pa.RecordBatch.from_pydict({"id": [1, 2], "label": ["a", None]})
    first = next(writer(iter([batch])))
    retry = next(writer(iter([batch])))
    assert first.to_pydict()["rows"] == [2] and retry.to_pydict()["rows"] == [0]
    assert query_rows(db, "SELECT id, label FROM public.ledgered ORDER BY id") == [
        (1, "a"),
        (2, None),
    ]


# --- merge ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_merge_updates_existing_keys_and_inserts_new_ones(
    spark: SparkSession, db: PgSettings, method: str
) -> None:
    table = f"analytics.merge_{method}"
    first = merge_into(ids_df(spark, [1, 2, 3], "old"), db, table, "id", method)
    assert first == MergeResult(inserted=3, updated=0, unchanged=0)
    changes = spark.createDataFrame(
        [(2, "new2"), (3, "old3"), (4, "new4")], ids_df(spark, []).schema
    )
    assert merge_into(changes, db, table, ["id"], method) == MergeResult(1, 1, 1)
    assert table_ids(db, table) == [(1, "old1"), (2, "new2"), (3, "old3"), (4, "new4")]
    assert staging_tables(db) == []


def test_merge_with_duplicate_keys_fails_and_changes_nothing(
    spark: SparkSession, db: PgSettings
) -> None:
    table = "analytics.merge_duplicates"
    merge_into(ids_df(spark, [1, 2]), db, table, "id")
    with pytest.raises(PostgresError, match="deduplicate"):
        merge_into(ids_df(spark, [2, 3, 3], "z"), db, table, "id")
    assert table_ids(db, table) == [(1, "v1"), (2, "v2")]
    assert staging_tables(db) == []
    with pytest.raises(ValueError, match="nope"):
        merge_into(ids_df(spark, [1]), db, table, "nope")


# --- errors --------------------------------------------------------------------------------


def test_closed_port_names_the_address() -> None:
    closed = PgSettings(host="127.0.0.1", port=1, dbname="x", user="nobody")
    with pytest.raises(PostgresError, match=re.escape("127.0.0.1:1")) as info:
        connect(closed)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


def test_missing_table_and_schema_are_named(spark: SparkSession, db: PgSettings) -> None:
    with pytest.raises(PostgresError, match=r"table public\.no_such_table does not exist"):
        read_table(spark, db, "public.no_such_table")
    with pytest.raises(PostgresError, match='schema "no_schema" does not exist'):
        write_table(ids_df(spark, [1]), db, "no_schema.t")
    assert table_columns(db, "public.no_such_table") is None


def test_permission_errors_name_table_and_operation(spark: SparkSession, db: PgSettings) -> None:
    role = f"sparkmart_no_access_{os.getpid()}"
    execute_sql(db, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        write_table(ids_df(spark, [1]), db, "public.guarded")
        outsider = dataclasses.replace(db, user=role)
        with pytest.raises(PostgresError, match=r"read of public\.guarded .*permission denied"):
            read_table(spark, outsider, "public.guarded")
        with pytest.raises(PostgresError, match=r"COPY into public\.guarded .*permission denied"):
            write_table(ids_df(spark, [2]), outsider, "public.guarded", method="copy")
        with pytest.raises(PostgresError, match=r"replace of public\.guarded.*permission denied"):
            replace_table_atomically(ids_df(spark, [2]), outsider, "public.guarded")
        assert table_ids(db, "public.guarded") == [(1, "v1")]
    finally:
        execute_sql(db, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_missing_jdbc_driver_says_how_to_install_it(db: PgSettings) -> None:
    # What py4j raises when the profile's jar is not there (reproduced with `"jars": []`).
    missing = RuntimeError(
        "An error occurred while calling o63.load.\n"
        ": java.lang.ClassNotFoundException: org.postgresql.Driver\n"
        "\tat java.base/jdk.internal.loader.BuiltinClassLoader.loadClass(Unknown Source)"
    )
    error = pgio._spark_error("read of", "public.orders", db, missing)
    assert re.search(r"read of public\.orders on .* failed: the PostgreSQL JDBC driver", str(error))
    assert "make setup" in str(error)
    other = RuntimeError(": java.lang.ClassNotFoundException: org.postgresql.DriverX")
    assert "make setup" not in str(pgio._spark_error("read of", "public.orders", db, other))


def test_sql_errors_name_the_operation(db: PgSettings) -> None:
    with pytest.raises(PostgresError, match=r"SQL on .* failed: .*syntax error"):
        execute_sql(db, "SELEC 1")
    assert query_rows(db, "SELECT %s::int + %s::int", (1, 2)) == [(3,)]
