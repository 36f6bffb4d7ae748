"""Bronze: every source of an entity read as it is, typed, and tagged with where it came from.

Nothing is dropped here. Text sources are read with every column as a string plus Spark's
``_corrupt_record``; each value is then converted with ``try_cast``, so one bad value marks one
row (``type_mismatch:<column>``) instead of failing the job or nulling the row silently, and a
line that does not parse at all is kept whole (``malformed_record``). The quality step turns
``_errors`` into quarantine rows.

Schema problems of a whole source (a missing column, an unexpected extra column, a column of
another type) are found before any row is read and reported per source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from sparkmart.io.files import CORRUPT_COLUMN, TEXT_OPTIONS, check_format, dataset_path
from sparkmart.io.postgres import PgSettings, read_table, table_columns
from sparkmart.schemas import PRIMARY_KEYS, RAW_SCHEMAS

SOURCE_COLUMN = "_source"
INGESTED_AT_COLUMN = "_ingested_at"
RAW_COLUMN = "_raw"
ERRORS_COLUMN = "_errors"
LINEAGE_COLUMNS = (SOURCE_COLUMN, INGESTED_AT_COLUMN, RAW_COLUMN, ERRORS_COLUMN)

MALFORMED = "malformed_record"
MODIFIED = "_file_modified_at"  # only while reading: incremental runs filter on it
SOURCE_KINDS = ("parquet", "json", "csv", "avro", "postgres")
EXTRA_COLUMN_POLICIES = ("drop", "fail")


class SchemaMismatchError(ValueError):
    """A source does not have the columns its entity needs; the message lists what differs."""


@dataclass(frozen=True)
class Source:
    """One place an entity is read from: a file dataset or a PostgreSQL table."""

    entity: str
    kind: str
    location: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.location}"


@dataclass
class SchemaReport:
    """How one source's columns compare with the entity's schema."""

    source: str
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    retyped: dict[str, str] = field(default_factory=dict)  # column -> type found in the source

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.retyped)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing column(s): {', '.join(self.missing)}")
        if self.extra:
            parts.append(f"extra column(s): {', '.join(self.extra)}")
        if self.retyped:
            parts.append(
                "other type(s): " + ", ".join(f"{c} is {t}" for c, t in self.retyped.items())
            )
        return f"{self.source}: " + ("; ".join(parts) if parts else "matches the schema")


@dataclass(frozen=True)
class Increment:
    """What an incremental run reads: rows updated after ``high_water``, and rows without a
    readable ``updated_at`` (e.g. malformed lines) only from files modified after
    ``files_since`` (the previous successful run's start), so nothing new is skipped and
    nothing old is quarantined twice."""

    high_water: dt.datetime | None
    files_since: dt.datetime | None

    def condition(self, file_modified_at: Column | None) -> Column:
        newer = (
            F.lit(True) if self.high_water is None else F.col("updated_at") > F.lit(self.high_water)
        )
        undated = F.col("updated_at").isNull()
        if file_modified_at is not None and self.files_since is not None:
            undated = undated & (file_modified_at > F.lit(self.files_since))
        return F.coalesce(newer, F.lit(False)) | undated


def sources_for(
    entity: str, kinds: Sequence[str], input_dir: str | Path, table_prefix: str = "public"
) -> list[Source]:
    """The sources of ``entity`` for each kind: ``<input>/<format>/<entity>`` or a table."""
    sources = []
    for kind in kinds:
        if kind not in SOURCE_KINDS:
            raise ValueError(
                f"unknown source '{kind}' for {entity} (expected one of {', '.join(SOURCE_KINDS)})"
            )
        if kind == "postgres":
            sources.append(Source(entity, kind, f"{table_prefix}.{entity}"))
        else:
            sources.append(Source(entity, kind, str(dataset_path(input_dir, kind, entity))))
    return sources


def _compare(
    source: str, found: dict[str, str], schema: StructType, extra_columns: str
) -> SchemaReport:
    """Compare column names (and, where known, types) and apply the extra-column policy."""
    expected = {f.name: f.dataType.simpleString() for f in schema.fields}
    report = SchemaReport(
        source,
        missing=[name for name in expected if name not in found],
        extra=[name for name in found if name not in expected and name != CORRUPT_COLUMN],
        retyped={
            name: found[name]
            for name in expected
            if name in found and found[name] not in {expected[name], "string?"}
        },
    )
    if report.missing:
        raise SchemaMismatchError(f"{report.describe()} (expected: {', '.join(expected)})")
    if report.extra and extra_columns == "fail":
        raise SchemaMismatchError(
            f"{report.describe()} (extra columns are set to fail; set batch.extra_columns: drop "
            "to ignore them)"
        )
    return report


def _as_strings(names: Sequence[str]) -> StructType:
    fields = [StructField(name, StringType()) for name in names]
    return StructType([*fields, StructField(CORRUPT_COLUMN, StringType())])


def _first_line(path: Path) -> str:
    for file in sorted(path.rglob("*")):
        if file.is_file() and not file.name.startswith((".", "_")) and file.stat().st_size:
            with file.open(encoding="utf-8", errors="replace") as handle:
                return handle.readline().rstrip("\r\n")
    return ""


def _text_columns(spark: SparkSession, path: Path, kind: str, sample: int = 1000) -> dict[str, str]:
    """Column names a text source carries: the CSV header, or the keys of the first JSON lines."""
    if kind == "csv":
        header = _first_line(path)
        return {name.strip().strip('"'): "string?" for name in header.split(",") if name}
    keys = (
        spark.read.text(str(path))
        .limit(sample)
        .select(F.explode(F.json_object_keys("value")).alias("key"))
        .distinct()
        .collect()
    )
    return {row.key: "string?" for row in keys}


def _typed(strings: DataFrame, schema: StructType, keep: Sequence[str] = ()) -> DataFrame:
    """Convert string columns to the schema's types; name every value that does not convert."""
    converted = [F.expr(f"try_cast(`{f.name}` AS {f.dataType.simpleString()})") for f in schema]
    failures = [
        F.when(
            F.col(f.name).isNotNull() & conv.isNull() & F.col(CORRUPT_COLUMN).isNull(),
            F.lit(f"type_mismatch:{f.name}"),
        )
        for f, conv in zip(schema.fields, converted, strict=True)
    ]
    malformed = F.when(F.col(CORRUPT_COLUMN).isNotNull(), F.lit(MALFORMED))
    errors = F.filter(F.array(malformed, *failures), lambda item: item.isNotNull())
    raw_values = F.to_json(F.struct(*[F.col(f.name) for f in schema.fields]))
    raw = F.when(F.col(CORRUPT_COLUMN).isNotNull(), F.col(CORRUPT_COLUMN)).when(
        F.size(errors) > 0, raw_values
    )
    return strings.select(
        *[conv.alias(f.name) for f, conv in zip(schema.fields, converted, strict=True)],
        raw.alias(RAW_COLUMN),
        errors.alias(ERRORS_COLUMN),
        *keep,
    )


def _typed_columns(
    df: DataFrame, schema: StructType, report: SchemaReport, keep: Sequence[str] = ()
) -> DataFrame:
    """Select the schema's columns from a typed source; retyped columns go through try_cast."""
    columns: list[Column] = []
    failures: list[Column] = []
    for f in schema.fields:
        if f.name in report.retyped:
            converted = F.expr(f"try_cast(`{f.name}` AS {f.dataType.simpleString()})")
            failures.append(
                F.when(
                    F.col(f.name).isNotNull() & converted.isNull(), F.lit(f"type_mismatch:{f.name}")
                )
            )
            columns.append(converted.alias(f.name))
        else:
            columns.append(F.col(f.name).cast(f.dataType).alias(f.name))
    errors = F.filter(F.array(*failures), lambda item: item.isNotNull()) if failures else F.array()
    raw = F.when(F.size(errors) > 0, F.to_json(F.struct(*[F.col(f.name) for f in schema.fields])))
    return df.select(
        *columns,
        raw.cast("string").alias(RAW_COLUMN),
        errors.cast("array<string>").alias(ERRORS_COLUMN),
        *keep,
    )


def _only_increment(df: DataFrame, increment: Increment | None) -> DataFrame:
    """Apply an incremental run's filter; drop the helper column either way."""
    modified = F.col(MODIFIED) if MODIFIED in df.columns else None
    if increment is not None:
        df = df.filter(increment.condition(modified))
    return df.drop(MODIFIED) if modified is not None else df


def read_source(
    spark: SparkSession,
    source: Source,
    extra_columns: str = "drop",
    pg: PgSettings | None = None,
    jdbc_partitions: int = 4,
    increment: Increment | None = None,
) -> tuple[DataFrame, SchemaReport]:
    """Read one source into the bronze shape (schema columns + ``_raw`` + ``_errors``)."""
    schema = RAW_SCHEMAS[source.entity]
    if extra_columns not in EXTRA_COLUMN_POLICIES:
        raise ValueError(f"batch.extra_columns must be drop or fail, not {extra_columns!r}")
    if source.kind == "postgres":
        if pg is None:
            raise ValueError(f"{source.label}: no PostgreSQL connection given")
        found = table_columns(pg, source.location)
        if found is None:
            raise FileNotFoundError(f"{source.label}: table does not exist on {pg.display}")
        report = _compare(source.label, dict.fromkeys(found, "string?"), schema, extra_columns)
        df = read_table(
            spark, pg, source.location, PRIMARY_KEYS[source.entity], jdbc_partitions, schema
        )
        return _only_increment(_typed_columns(df, schema, report), increment), report

    check_format(source.kind)
    path = Path(source.location)
    if not path.exists():
        raise FileNotFoundError(f"{source.label}: no such dataset")
    if source.kind in ("csv", "json"):
        found = _text_columns(spark, path, source.kind)
        report = _compare(source.label, found, schema, extra_columns)
        # CSV columns are positional: read them in the header's order, then pick by name.
        names = list(found) if source.kind == "csv" else schema.fieldNames()
        reader = spark.read.schema(_as_strings(names)).options(
            mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT_COLUMN, **TEXT_OPTIONS
        )
        if source.kind == "csv":
            strings = reader.options(header="true", enforceSchema="true").csv(str(path))
        else:
            strings = reader.json(str(path))
        typed = _typed(
            strings.withColumn(MODIFIED, F.col("_metadata.file_modification_time")),
            schema,
            keep=[MODIFIED],
        )
        return _only_increment(typed, increment), report
    if source.kind == "parquet":
        as_written = spark.read.parquet(str(path))
        found = {f.name: f.dataType.simpleString() for f in as_written.schema.fields}
        report = _compare(source.label, found, schema, extra_columns)
        as_written = as_written.withColumn(MODIFIED, F.col("_metadata.file_modification_time"))
        typed = _typed_columns(as_written, schema, report, keep=[MODIFIED])
        return _only_increment(typed, increment), report

    from sparkmart.io.avro import AvroSchemaMismatchError, UnsupportedAvroTypeError, read_avro

    report = SchemaReport(source.label)
    try:
        df = read_avro(spark, path, schema)
    except (AvroSchemaMismatchError, UnsupportedAvroTypeError) as exc:
        raise SchemaMismatchError(f"{source.label}: {exc}") from exc
    return _only_increment(_typed_columns(df, schema, report), increment), report


def with_lineage(source: Source, ingested_at: dt.datetime):
    """Tag rows with their source and the run's ingestion time (one instant for the whole run)."""

    def tag(df: DataFrame) -> DataFrame:
        return df.select(
            *[c for c in df.columns if c not in (RAW_COLUMN, ERRORS_COLUMN)],
            F.lit(source.label).alias(SOURCE_COLUMN),
            F.lit(ingested_at).cast("timestamp").alias(INGESTED_AT_COLUMN),
            RAW_COLUMN,
            ERRORS_COLUMN,
        )

    return tag


def read_bronze(
    spark: SparkSession,
    sources: Sequence[Source],
    ingested_at: dt.datetime,
    extra_columns: str = "drop",
    pg: PgSettings | None = None,
    jdbc_partitions: int = 4,
    increment: Increment | None = None,
) -> tuple[DataFrame, list[SchemaReport]]:
    """Union every source of one entity into its bronze DataFrame."""
    if not sources:
        raise ValueError("no sources given")
    frames, reports = [], []
    for source in sources:
        df, report = read_source(spark, source, extra_columns, pg, jdbc_partitions, increment)
        frames.append(df.transform(with_lineage(source, ingested_at)))
        reports.append(report)
    bronze = frames[0]
    for frame in frames[1:]:
        bronze = bronze.unionByName(frame)
    return bronze, reports
