"""The Avro data source: exact round trips, one file per task, save modes and clear errors."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import fastavro
import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType,
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)
from pyspark.testing import assertDataFrameEqual

from sparkmart.io.avro import (
    AVRO_FORMAT,
    AvroReader,
    AvroSchemaMismatchError,
    UnsupportedAvroTypeError,
    avro_schema_for,
    jvm_avro_available,
    read_avro,
    spark_schema_for,
    write_avro,
)
from sparkmart.schemas import RAW_SCHEMAS


def part_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.endswith(".avro"))


@pytest.fixture(scope="module")
def every_type(spark: SparkSession) -> DataFrame:
    """100k rows of every column type the entities use, with nulls, unicode and edge values."""
    row_id = F.col("id")
    return (
        spark.range(100_000, numPartitions=2)
        .withColumn("quantity", (row_id % 1000 - 500).cast("int"))
        .withColumn(
            "name",
            F.when(row_id % 7 == 0, F.lit(None)).otherwise(
                F.concat(F.lit("Zoë 名前 🛒 #"), row_id.cast("string"))
            ),
        )
        .withColumn(
            "price",  # spans the whole decimal(10,2) range, negatives included
            F.when(row_id % 11 == 0, F.lit(None)).otherwise(
                ((row_id * 7_919_423 % 19_999_999_999) - 9_999_999_999).cast("decimal(12,0)") / 100
            ),
        )
        .withColumn("price", F.col("price").cast("decimal(10,2)"))
        .withColumn("discount", ((row_id % 1999) - 999).cast("decimal(10,0)") / 1000)
        .withColumn("discount", F.col("discount").cast("decimal(4,3)"))
        .withColumn(
            "signup_date",
            F.date_add(F.lit("1950-01-01").cast("date"), (row_id % 40_000).cast("int")),
        )
        .withColumn(
            "order_ts",  # microsecond precision, before and after 1970
            F.when(row_id % 13 == 0, F.lit(None)).otherwise(
                F.timestamp_micros(row_id * 98_765_432_123 - 1_000_000_000_000_000)
            ),
        )
        .withColumn("is_gift", F.when(row_id % 17 == 0, F.lit(None)).otherwise(row_id % 3 == 0))
        .withColumn("score", row_id / 7.0 - 1000.0)
    )


def test_every_column_type_round_trips_exactly(
    spark: SparkSession, tmp_path: Path, every_type: DataFrame
) -> None:
    write_avro(every_type, tmp_path / "all")

    back = read_avro(spark, tmp_path / "all", every_type.schema)

    assert back.schema == every_type.schema
    # Arrow-backed toPandas keeps 100k rows quick to compare; zero tolerances make it exact
    # (the rows are sorted by `id` first; a 1 us, 0.01 or 1-ulp change is caught).
    assertDataFrameEqual(back.toPandas(), every_type.toPandas(), rtol=0, atol=0)


def sample_value(dtype: DataType, row: int) -> object:
    if isinstance(dtype, LongType):
        return 10_000_000_000 + row
    if isinstance(dtype, IntegerType):
        return -row
    if isinstance(dtype, DecimalType):
        return Decimal(f"{row}.{row % 10}").quantize(Decimal(1).scaleb(-dtype.scale))
    if isinstance(dtype, DateType):
        return dt.date(1999, 12, 31) + dt.timedelta(days=row)
    if isinstance(dtype, TimestampType):
        return dt.datetime(2024, 2, 29, 23, 59, 59, 999_999) - dt.timedelta(microseconds=row)
    assert isinstance(dtype, StringType)
    return f"Ünïcode-{row} ✓"


@pytest.mark.parametrize("entity", sorted(RAW_SCHEMAS))
def test_raw_entity_schemas_round_trip(spark: SparkSession, tmp_path: Path, entity: str) -> None:
    schema = RAW_SCHEMAS[entity]
    full_rows = [tuple(sample_value(f.dataType, row) for f in schema.fields) for row in (1, 2)]
    sparse_row = tuple(None if f.nullable else 3 for f in schema.fields)
    df = spark.createDataFrame([*full_rows, sparse_row], schema)

    write_avro(df, tmp_path / entity)

    assertDataFrameEqual(read_avro(spark, tmp_path / entity, schema), df)


def test_other_supported_types_round_trip(spark: SparkSession, tmp_path: Path) -> None:
    schema = (
        "f float, sh short, by byte, bin binary, local timestamp_ntz, wide decimal(38,10), d double"
    )
    wide = Decimal("-1234567890123456789012345678.0123456789")
    rows = [
        (1.5, -32768, 127, b"\x00\xff", dt.datetime(1900, 1, 1, 0, 0, 0, 1), wide, float("nan")),
        (
            -0.25,
            32767,
            -128,
            b"",
            dt.datetime(2262, 4, 11, 23, 47, 16, 854_775),
            -wide,
            float("inf"),
        ),
        (None, None, None, None, None, None, None),
    ]
    df = spark.createDataFrame(rows, schema)

    write_avro(df, tmp_path / "others")

    assertDataFrameEqual(read_avro(spark, tmp_path / "others", df.schema), df)


def test_files_are_standard_avro_for_other_readers(spark: SparkSession, tmp_path: Path) -> None:
    when = dt.datetime(2024, 2, 29, 12, 30, 45, 123_456, tzinfo=dt.timezone.utc)
    df = spark.createDataFrame(
        [(7, Decimal("-12.34"), Decimal("0.125"), dt.date(1969, 12, 31), when, None)],
        "order_id long, unit_price decimal(10,2), discount decimal(4,3), day date, "
        "order_ts timestamp, status string",
    )
    write_avro(df.coalesce(1), tmp_path / "plain")

    (file,) = (tmp_path / "plain").glob("part-*.avro")
    with file.open("rb") as stream:
        reader = fastavro.reader(stream)  # fastavro's own logical-type conversions
        records = list(reader)

    assert json.loads(reader.metadata["avro.schema"]) == avro_schema_for(df.schema)
    assert records == [
        {
            "order_id": 7,
            "unit_price": Decimal("-12.34"),
            "discount": Decimal("0.125"),
            "day": dt.date(1969, 12, 31),
            "order_ts": when,
            "status": None,
        }
    ]


def test_avro_schema_uses_logical_types_and_nullable_unions() -> None:
    fields = {f["name"]: f["type"] for f in avro_schema_for(RAW_SCHEMAS["orders"])["fields"]}

    assert fields["order_id"] == "long"
    assert fields["unit_price"] == [
        {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        "null",
    ]
    assert fields["order_ts"] == [{"type": "long", "logicalType": "timestamp-micros"}, "null"]
    for schema in RAW_SCHEMAS.values():
        assert spark_schema_for(avro_schema_for(schema)) == schema


def test_timestamps_do_not_depend_on_the_session_time_zone(
    spark: SparkSession, tmp_path: Path
) -> None:
    df = spark.createDataFrame(
        [(1, dt.datetime(2021, 3, 28, 1, 30, 0, 123_456))], "id long, ts timestamp"
    ).withColumn("micros", F.unix_micros("ts"))
    expected_micros = df.first()["micros"]
    try:
        spark.conf.set("spark.sql.session.timeZone", "America/New_York")
        write_avro(df, tmp_path / "tz")
        spark.conf.set("spark.sql.session.timeZone", "Asia/Kolkata")
        back = read_avro(spark, tmp_path / "tz", df.schema)
        read_micros = back.select(F.unix_micros("ts")).first()[0]
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")

    assert read_micros == expected_micros


def test_one_file_per_partition_and_split_reads(spark: SparkSession, tmp_path: Path) -> None:
    df = spark.range(0, 20_000, numPartitions=4).withColumn("label", F.col("id").cast("string"))

    write_avro(df, tmp_path / "parts")

    assert len(part_files(tmp_path / "parts")) == 4
    back = read_avro(spark, tmp_path / "parts", df.schema)
    assert back.rdd.getNumPartitions() == 4
    rows, id_sum = back.agg(F.count("*"), F.sum("id")).first()
    assert (rows, id_sum) == (20_000, sum(range(20_000)))


def test_big_files_are_read_in_block_ranges(spark: SparkSession, tmp_path: Path) -> None:
    """A file from another writer (null-first unions, small blocks) split into many tasks."""
    (tmp_path / "foreign").mkdir()
    schema = {
        "type": "record",
        "name": "Sale",
        "fields": [
            {"name": "id", "type": "long"},
            {
                "name": "amount",
                "type": [
                    "null",
                    {
                        "type": "fixed",
                        "name": "amt",
                        "size": 8,
                        "logicalType": "decimal",
                        "precision": 12,
                        "scale": 2,
                    },
                ],
            },
            {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        ],
    }
    records = [
        {"id": i, "amount": Decimal(i) / 100 if i % 5 else None, "at": 1_700_000_000_000 + i}
        for i in range(12_000)
    ]
    with (tmp_path / "foreign" / "sales.avro").open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), records, sync_interval=2_000)
    wanted = StructType(
        [
            StructField("id", LongType(), False),
            StructField("amount", DecimalType(12, 2)),
            StructField("at", TimestampType()),
        ]
    )

    back = (
        spark.read.format(AVRO_FORMAT)
        .schema(wanted)
        .option("maxSplitBytes", 16_000)
        .load(str(tmp_path / "foreign"))
    )

    assert back.rdd.getNumPartitions() > 5
    totals = back.agg(
        F.count("*"), F.count("amount"), F.sum("amount"), F.max(F.unix_micros("at"))
    ).first()
    assert totals[0] == 12_000
    assert totals[1] == 9_600
    assert totals[2] == sum(Decimal(i) / 100 for i in range(12_000) if i % 5)
    assert totals[3] == (1_700_000_000_000 + 11_999) * 1000


@pytest.mark.parametrize("max_split_bytes", [7, 97, 1_000, 5_000, 10**9])
def test_every_split_size_reads_each_row_once(tmp_path: Path, max_split_bytes: int) -> None:
    """Block ownership by sync-marker position: no row lost or read twice at any split size."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}]}
    with (tmp_path / "ids.avro").open("wb") as out:
        fastavro.writer(out, schema, [{"id": i} for i in range(2_000)], sync_interval=300)
    wanted = StructType([StructField("id", LongType(), False)])
    reader = AvroReader(tmp_path, wanted, max_split_bytes=max_split_bytes, batch_rows=333)

    ids = [
        value
        for split in reader.partitions()
        for batch in reader.read(split)
        for value in batch.column(0).to_pylist()
    ]

    assert sorted(ids) == list(range(2_000))


def test_schema_is_inferred_when_not_given(spark: SparkSession, tmp_path: Path) -> None:
    df = spark.createDataFrame([(1, Decimal("1.50"))], "id long, price decimal(10,2)")
    write_avro(df, tmp_path / "inferred")

    back = spark.read.format(AVRO_FORMAT).load(str(tmp_path / "inferred"))

    assert back.schema.simpleString() == "struct<id:bigint,price:decimal(10,2)>"


def test_overwrite_replaces_old_files(spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "ow"
    write_avro(spark.range(0, 300, numPartitions=3), target)

    write_avro(spark.range(1000, 1010, numPartitions=1), target, mode="overwrite")

    assert len(part_files(target)) == 1
    assert not (target / "_temporary").exists()
    ids = [
        row.id
        for row in read_avro(spark, target, StructType([StructField("id", LongType())])).collect()
    ]
    assert sorted(ids) == list(range(1000, 1010))


def test_append_ignore_and_errorifexists(spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "modes"
    schema = StructType([StructField("id", LongType(), False)])
    write_avro(spark.range(10), target, mode="errorifexists")  # new path: just writes

    write_avro(spark.range(5), target, mode="append")
    write_avro(spark.range(99), target, mode="ignore")
    with pytest.raises(FileExistsError, match="already exists"):
        write_avro(spark.range(1), target, mode="errorifexists")

    assert read_avro(spark, target, schema).count() == 15


def test_failed_write_keeps_the_previous_dataset(spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "safe"
    write_avro(spark.range(50), target)
    failing = spark.range(0, 1000, numPartitions=2).withColumn(
        "checked", F.when(F.col("id") == 700, F.raise_error(F.lit("boom"))).otherwise(F.col("id"))
    )

    with pytest.raises(Exception, match="boom"):
        write_avro(failing, target, mode="overwrite")

    assert read_avro(spark, target, StructType([StructField("id", LongType())])).count() == 50
    assert not (target / "_temporary").exists()


def test_empty_dataframe_keeps_its_schema(spark: SparkSession, tmp_path: Path) -> None:
    schema = RAW_SCHEMAS["products"]
    write_avro(spark.createDataFrame([], schema), tmp_path / "empty")

    assert len(part_files(tmp_path / "empty")) == 1
    assert read_avro(spark, tmp_path / "empty", schema).count() == 0
    assert spark.read.format(AVRO_FORMAT).load(str(tmp_path / "empty")).schema == schema


def test_missing_path_is_a_clear_error(spark: SparkSession, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no Avro dataset at .*nowhere"):
        read_avro(spark, tmp_path / "nowhere", RAW_SCHEMAS["orders"])


def test_schema_mismatch_names_file_and_field(spark: SparkSession, tmp_path: Path) -> None:
    df = spark.createDataFrame([(1, 2)], "order_id long, quantity int")
    write_avro(df, tmp_path / "orders")
    wrong_type = StructType(
        [StructField("order_id", LongType(), False), StructField("quantity", StringType())]
    )
    missing = StructType(
        [StructField("order_id", LongType()), StructField("status", StringType(), False)]
    )

    with pytest.raises(
        AvroSchemaMismatchError,
        match=r"part-\d{5}-\w+\.avro: field 'quantity' is int in the file but string was requested",
    ):
        read_avro(spark, tmp_path / "orders", wrong_type)
    with pytest.raises(
        AvroSchemaMismatchError, match=r"non-nullable field 'status' is not in the file"
    ):
        read_avro(spark, tmp_path / "orders", missing)


def test_unsupported_fields_matter_only_when_requested(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    schema = {
        "type": "record",
        "name": "Basket",
        "fields": [
            {"name": "basket_id", "type": "long"},
            {"name": "items", "type": {"type": "array", "items": "string"}},
        ],
    }
    with (tmp_path / "nested" / "baskets.avro").open("wb") as out:
        fastavro.writer(out, schema, [{"basket_id": 1, "items": ["a", "b"]}])

    ids_only = StructType([StructField("basket_id", LongType(), False)])
    assert read_avro(spark, tmp_path / "nested", ids_only).first()["basket_id"] == 1
    with_items = StructType([*ids_only.fields, StructField("items", StringType())])
    with pytest.raises(UnsupportedAvroTypeError, match=r"baskets\.avro: field 'items'.*'array'"):
        read_avro(spark, tmp_path / "nested", with_items)


def test_jvm_detection_agrees_with_spark(spark: SparkSession, tmp_path: Path) -> None:
    if jvm_avro_available(spark):
        pytest.skip("spark-avro is on the classpath here")
    with pytest.raises(AnalysisException, match="AVRO_DATA_SOURCE_NOT_ENABLED"):
        spark.read.format("avro").load(str(tmp_path))
