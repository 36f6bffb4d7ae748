"""Read and write entity datasets as Parquet, JSON lines, CSV (with header) or Avro.

Readers always take an explicit schema: inference costs a pass over the data and silently turns a
bad value into a string column. For the text formats a reader can keep unparseable lines in a
``_corrupt_record`` column so that ingestion can quarantine them instead of losing them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StringType, StructField, StructType

from sparkmart.schemas import FORMATS

CORRUPT_COLUMN = "_corrupt_record"

# Text formats write timestamps and dates in one explicit ISO form so every reader agrees.
TEXT_OPTIONS = {
    "timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
    "dateFormat": "yyyy-MM-dd",
}


class UnknownFormatError(ValueError):
    pass


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UnknownFormatError(f"unknown format '{fmt}' (expected one of: {', '.join(FORMATS)})")
    return fmt


def dataset_path(root: str | Path, fmt: str, entity: str) -> Path:
    """``<root>/<format>/<entity>``: the layout every writer and reader of raw data shares."""
    return Path(root) / check_format(fmt) / entity


def write_dataset(
    df: DataFrame,
    path: str | Path,
    fmt: str,
    mode: str = "overwrite",
    partition_by: Sequence[str] | None = None,
) -> None:
    """Write ``df`` to ``path`` in ``fmt``."""
    check_format(fmt)
    if fmt == "avro":
        from sparkmart.io.avro import write_avro

        write_avro(df, path, mode=mode)
        return
    writer = df.write.mode(mode)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if fmt == "parquet":
        writer.parquet(str(path))
    elif fmt == "json":
        writer.options(**TEXT_OPTIONS).json(str(path))
    else:
        writer.options(header=True, **TEXT_OPTIONS).csv(str(path))


def read_dataset(
    spark: SparkSession,
    path: str | Path,
    fmt: str,
    schema: StructType,
    keep_corrupt: bool = False,
) -> DataFrame:
    """Read ``path`` with ``schema``.

    With ``keep_corrupt`` the text formats read permissively and add ``_corrupt_record``
    holding the raw line of every row that did not parse (null for good rows).
    """
    check_format(fmt)
    if not Path(path).exists():
        raise FileNotFoundError(f"no {fmt} dataset at {path}")
    if fmt == "parquet":
        return spark.read.schema(schema).parquet(str(path))
    if fmt == "avro":
        from sparkmart.io.avro import read_avro

        return read_avro(spark, path, schema)
    read_schema = schema
    options: dict[str, str] = dict(TEXT_OPTIONS)
    if keep_corrupt:
        read_schema = StructType([*schema.fields, StructField(CORRUPT_COLUMN, StringType())])
        options.update(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT_COLUMN)
    else:
        options.update(mode="FAILFAST")
    reader = spark.read.schema(read_schema).options(**options)
    if fmt == "json":
        return reader.json(str(path))
    return reader.options(header="true", enforceSchema="false").csv(str(path))
