"""Avro files for Spark: a Python data source over fastavro, or the JVM module when present.

Why this exists: ``spark-avro`` is a separate Maven module that the pyspark wheel does not carry,
and Maven Central is not reachable from the project's machines, so ``format("avro")`` fails with
AVRO_DATA_SOURCE_NOT_ENABLED. Spark 4's Python Data Source API gives a real, parallel reader and
writer instead: one Avro file per write task, one read task per file (or per byte range of a big
file). The short name ``avro`` is reserved by Spark, so this source is registered as
:data:`AVRO_FORMAT`. When the JVM module *is* on the classpath, :func:`read_avro` and
:func:`write_avro` use it (see :func:`jvm_avro_available`).

Speed comes from moving data in Arrow batches across the JVM/Python boundary and working on whole
columns: the writer encodes each Arrow column to Avro binary with numpy/Arrow compute and joins the
columns row-wise (fastavro writes the header and compresses and frames the blocks); the reader
lets fastavro decode records without its logical-type conversion (no ``datetime``/``Decimal``
object per value) and builds Arrow arrays from the raw ints and bytes in bulk.

Type mapping (Spark <-> Avro; a nullable field is the union ``[type, "null"]``)::

    LongType                 long
    IntegerType/Short/Byte   int
    DoubleType / FloatType   double / float
    BooleanType              boolean
    StringType               string          (enum and uuid-string also read as string)
    BinaryType               bytes           (plain fixed also read as binary)
    DateType                 int  + logicalType date
    TimestampType            long + logicalType timestamp-micros   (timestamp-millis also read)
    TimestampNTZType         long + logicalType local-timestamp-micros
    DecimalType(p, s)        bytes + logicalType decimal(p, s)     (fixed decimals also read)

Files are read and written through the local filesystem of the driver and the workers, so on a
cluster the path must be on a filesystem shared at the same mount point (or use the JVM module).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampNTZType,
    TimestampType,
)

AVRO_FORMAT = "sparkmart_avro"
"""Format name of the Python source, for ``spark.read.format(...)`` and ``df.write.format(...)``."""

IMPLEMENTATION_CONF = "sparkmart.avro.implementation"
"""Spark conf choosing the engine: ``auto`` (JVM module if present), ``python`` or ``jvm``."""

DEFAULT_COMPRESSION = "deflate"
DEFAULT_DEFLATE_LEVEL = 1  # 3.3x smaller than uncompressed; level 6 is 2.5x slower, 1% smaller
DEFAULT_MAX_SPLIT_BYTES = 128 * 1024 * 1024  # like spark.sql.files.maxPartitionBytes
DEFAULT_BATCH_ROWS = 32_768
SYNC_INTERVAL_BYTES = 256 * 1024  # Avro block size: large enough to amortise per-block work

STAGING_DIR = "_temporary"
SUCCESS_MARKER = "_SUCCESS"

# Spark's option names for the codec, mapped to fastavro's codec names.
_CODECS = {
    "uncompressed": "null",
    "none": "null",
    "null": "null",
    "deflate": "deflate",
    "snappy": "snappy",
    "bzip2": "bzip2",
    "xz": "xz",
    "zstandard": "zstandard",
    "zstd": "zstandard",
    "lz4": "lz4",
}
_WRITE_MODES = {
    "overwrite": "overwrite",
    "append": "append",
    "ignore": "ignore",
    "error": "errorifexists",
    "errorifexists": "errorifexists",
    "default": "errorifexists",
}
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UINT64_MASK = (1 << 64) - 1


class AvroSchemaMismatchError(ValueError):
    """An Avro file's schema cannot be read as the requested Spark schema."""


class UnsupportedAvroTypeError(TypeError):
    """A Spark or Avro type this source does not map (nested types, multi-branch unions...)."""


# --- schema mapping ------------------------------------------------------------------------


def _avro_type_for(dtype: DataType, field_name: str) -> str | dict[str, Any]:
    if isinstance(dtype, LongType):
        return "long"
    if isinstance(dtype, (IntegerType, ShortType, ByteType)):
        return "int"
    if isinstance(dtype, DoubleType):
        return "double"
    if isinstance(dtype, FloatType):
        return "float"
    if isinstance(dtype, BooleanType):
        return "boolean"
    if isinstance(dtype, StringType):
        return "string"
    if isinstance(dtype, BinaryType):
        return "bytes"
    if isinstance(dtype, DateType):
        return {"type": "int", "logicalType": "date"}
    if isinstance(dtype, TimestampNTZType):
        return {"type": "long", "logicalType": "local-timestamp-micros"}
    if isinstance(dtype, TimestampType):
        return {"type": "long", "logicalType": "timestamp-micros"}
    if isinstance(dtype, DecimalType):
        return {
            "type": "bytes",
            "logicalType": "decimal",
            "precision": dtype.precision,
            "scale": dtype.scale,
        }
    raise UnsupportedAvroTypeError(
        f"column '{field_name}': Spark type {dtype.simpleString()} has no Avro mapping here "
        "(supported: long, int, short, byte, double, float, boolean, string, binary, date, "
        "timestamp, timestamp_ntz, decimal)"
    )


def avro_schema_for(struct: StructType, name: str = "Record") -> dict[str, Any]:
    """The Avro record schema this source writes for ``struct``.

    Public so that other tools (schema registries, tests, docs) see exactly what is written.
    Nullable fields become ``[type, "null"]`` unions, the order Spark's own Avro writer uses.
    """
    if not _AVRO_NAME.match(name):
        raise ValueError(f"'{name}' is not a valid Avro record name")
    fields = []
    for field in struct.fields:
        if not _AVRO_NAME.match(field.name):
            raise UnsupportedAvroTypeError(
                f"column '{field.name}' is not a valid Avro field name "
                "(letters, digits and '_', not starting with a digit): rename it before writing"
            )
        avro_type = _avro_type_for(field.dataType, field.name)
        fields.append(
            {"name": field.name, "type": [avro_type, "null"] if field.nullable else avro_type}
        )
    return {"type": "record", "name": name, "fields": fields}


@dataclass(frozen=True)
class _FileField:
    """One top-level field of an Avro file, as this source understands it."""

    name: str
    spark_type: DataType | None  # None: a type this source does not read (see `problem`)
    nullable: bool
    timestamp_millis: bool = False  # timestamp-millis: raw values need x1000 to become micros
    problem: str | None = None


def _spark_type_of(avro_type: Any, field_name: str, where: str) -> tuple[DataType, bool]:
    """Spark type of one (non-union) Avro type; the flag says it is timestamp-millis."""
    if isinstance(avro_type, str):
        avro_type = {"type": avro_type}
    if not isinstance(avro_type, dict):
        raise UnsupportedAvroTypeError(
            f"{where}: field '{field_name}' has unsupported type {avro_type!r}"
        )
    base, logical = avro_type.get("type"), avro_type.get("logicalType")
    if logical == "decimal" and base in ("bytes", "fixed"):
        return DecimalType(int(avro_type["precision"]), int(avro_type.get("scale", 0))), False
    if base == "int" and logical == "date":
        return DateType(), False
    if base == "long" and logical == "timestamp-micros":
        return TimestampType(), False
    if base == "long" and logical == "timestamp-millis":
        return TimestampType(), True
    if base == "long" and logical == "local-timestamp-micros":
        return TimestampNTZType(), False
    plain = {
        "long": LongType(),
        "int": IntegerType(),
        "double": DoubleType(),
        "float": FloatType(),
        "boolean": BooleanType(),
        "string": StringType(),
        "enum": StringType(),
        "bytes": BinaryType(),
        "fixed": BinaryType(),
    }
    if base in plain:
        return plain[base], False
    shown = f"{base}/{logical}" if logical else base
    raise UnsupportedAvroTypeError(
        f"{where}: field '{field_name}' has Avro type '{shown}', which this source does not read "
        "(nested records, arrays and maps are not supported)"
    )


def _file_fields(avro_schema: dict[str, Any], where: str) -> list[_FileField]:
    """The top-level fields of a file's writer schema, typed for Spark.

    A field of an unsupported type is kept with its ``problem``: it only matters if requested.
    """
    if avro_schema.get("type") != "record":
        raise UnsupportedAvroTypeError(f"{where}: top-level Avro type must be a record")
    fields = []
    for field in avro_schema["fields"]:
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        non_null = [branch for branch in branches if branch != "null"]
        nullable = len(branches) > len(non_null)
        try:
            if len(non_null) != 1:
                raise UnsupportedAvroTypeError(
                    f"{where}: field '{field['name']}' is the union {field['type']!r}; only a "
                    "single type or a [type, null] union is supported"
                )
            spark_type, millis = _spark_type_of(non_null[0], field["name"], where)
            fields.append(_FileField(field["name"], spark_type, nullable, millis))
        except UnsupportedAvroTypeError as exc:
            fields.append(_FileField(field["name"], None, nullable, problem=str(exc)))
    return fields


def spark_schema_for(avro_schema: dict[str, Any], where: str = "Avro schema") -> StructType:
    """The Spark schema of an Avro record schema (used when a reader gives no schema)."""
    struct_fields = []
    for field in _file_fields(avro_schema, where):
        if field.spark_type is None:
            raise UnsupportedAvroTypeError(field.problem)
        struct_fields.append(StructField(field.name, field.spark_type, field.nullable))
    return StructType(struct_fields)


def _readable_as(file_type: DataType, wanted: DataType) -> bool:
    """Whether values of ``file_type`` convert losslessly to ``wanted`` (Avro promotions)."""
    if file_type == wanted:
        return True
    if isinstance(file_type, IntegerType):
        # Avro int -> long/float/double promotions; short/byte are how this source writes them
        # (the cast is checked, so an out-of-range value fails instead of wrapping).
        return isinstance(wanted, (LongType, DoubleType, ShortType, ByteType))
    if isinstance(file_type, (LongType, FloatType)):
        return isinstance(wanted, DoubleType)
    if isinstance(file_type, DecimalType) and isinstance(wanted, DecimalType):
        return file_type.scale == wanted.scale and file_type.precision <= wanted.precision
    return False


@dataclass(frozen=True)
class _ColumnPlan:
    """How to fill one requested column from one file: which field, and how to convert it."""

    target: StructField
    source: _FileField | None  # None: the file lacks this nullable column -> all nulls


def _plan_columns(avro_schema: dict[str, Any], wanted: StructType, where: str) -> list[_ColumnPlan]:
    """Match the requested schema against a file's schema, or say precisely why it can't be.

    Like Spark's Avro reader: fields are matched by name (exact, then case-insensitive), extra
    file fields are ignored, and a requested nullable field missing from the file reads as null.
    """
    by_name = {f.name: f for f in _file_fields(avro_schema, where)}
    by_lower: dict[str, list[_FileField]] = {}
    for f in by_name.values():
        by_lower.setdefault(f.name.lower(), []).append(f)
    plans = []
    for target in wanted.fields:
        source = by_name.get(target.name)
        if source is None and len(by_lower.get(target.name.lower(), [])) == 1:
            source = by_lower[target.name.lower()][0]
        if source is None:
            if not target.nullable:
                raise AvroSchemaMismatchError(
                    f"{where}: requested non-nullable field '{target.name}' is not in the file "
                    f"(file fields: {', '.join(by_name) or 'none'})"
                )
        elif source.spark_type is None:
            raise UnsupportedAvroTypeError(source.problem)
        elif not _readable_as(source.spark_type, target.dataType):
            raise AvroSchemaMismatchError(
                f"{where}: field '{target.name}' is {source.spark_type.simpleString()} in the "
                f"file but {target.dataType.simpleString()} was requested"
            )
        plans.append(_ColumnPlan(target, source))
    return plans


# --- writing: Arrow columns -> Avro binary, vectorised ----------------------------------------
#
# An Avro record is the concatenation of its fields' encodings, so each column is encoded on its
# own into a binary array (one element per row) and the rows are then joined element-wise by
# Arrow. Per-record encoding (a dict per row through fastavro's Cython writer) was ~6x slower.

_VARINT_MAX_BYTES = 10  # a zigzag-encoded 64-bit value needs at most ten 7-bit groups
_EMPTY = pa.scalar(b"", pa.binary())


def _binary_array(data: np.ndarray, lengths: np.ndarray) -> pa.Array:
    """Binary array whose element i is the next ``lengths[i]`` bytes of ``data``."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(
        pa.binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _varints(values: np.ndarray) -> pa.Array:
    """Avro ``int``/``long`` encoding (zigzag, then little-endian base-128) of int64 values."""
    zigzag = ((values << 1) ^ (values >> 63)).view(np.uint64)  # wraps like the spec's 64-bit ops
    lengths = np.ones(len(values), dtype=np.int32)
    for group in range(1, _VARINT_MAX_BYTES):
        lengths += zigzag >= np.uint64(1 << (7 * group))
    widest = int(lengths.max(initial=1))
    groups = np.empty((len(values), widest), dtype=np.uint8)
    for group in range(widest):
        seven_bits = ((zigzag >> np.uint64(7 * group)) & np.uint64(0x7F)).astype(np.uint8)
        groups[:, group] = seven_bits | ((lengths > group + 1).astype(np.uint8) << 7)
    used = np.arange(widest) < lengths[:, None]
    return _binary_array(groups[used], lengths)


def _fixed_width(raw: np.ndarray, width: int) -> pa.Array:
    """Binary array cutting the little-endian bytes of ``raw`` into ``width``-byte values."""
    data = np.ascontiguousarray(raw).view(np.uint8)
    return _binary_array(data, np.full(len(data) // width, width, dtype=np.int32))


def _length_prefixed(values: pa.Array) -> pa.Array:
    """Avro ``bytes``/``string`` encoding: the length as a varint, then the bytes."""
    values = values.cast(pa.binary()).fill_null(b"")
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype(np.int64)
    return pc.binary_join_element_wise(_varints(lengths), values, _EMPTY)


def _twos_complement(value: int) -> bytes:
    magnitude = value if value >= 0 else ~value
    return value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def _decimal_bytes(column: pa.Array, precision: int) -> pa.Array:
    """Unscaled decimal128 values as minimal big-endian two's-complement byte strings.

    Up to precision 18 the low 64-bit word holds the whole value and this is vectorised; wider
    decimals join their two words in Python.
    """
    count = len(column)
    words = np.frombuffer(column.buffers()[1], dtype="<i8")[
        2 * column.offset : 2 * (column.offset + count)
    ]
    if precision > 18:
        low_words = words[0::2].view(np.uint64).tolist()
        high_words = words[1::2].tolist()
        return pa.array(
            [
                _twos_complement((high << 64) | low)
                for low, high in zip(low_words, high_words, strict=True)
            ],
            pa.binary(),
        )
    unscaled = words[0::2]
    magnitude = np.where(unscaled < 0, ~unscaled, unscaled)
    widths = np.ones(count, dtype=np.int32)
    for byte_count in range(1, 8):  # one more byte per 8 bits of magnitude (plus a sign bit)
        widths += magnitude >= (1 << (8 * byte_count - 1))
    big_endian = unscaled.astype(">i8").view(np.uint8).reshape(count, 8)
    used = np.arange(8) >= 8 - widths[:, None]  # the last `width` bytes of each value
    return _binary_array(big_endian[used], widths)


def _encode_column(column: pa.Array, dtype: DataType, nullable: bool) -> pa.Array:
    """Each value of one column in Avro binary, as a binary array (one element per row)."""
    if isinstance(dtype, (TimestampType, TimestampNTZType)):  # epoch micros, whatever the tz
        encoded = _varints(column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False))
    elif isinstance(dtype, DateType):  # days since the epoch
        days = column.cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False)
        encoded = _varints(days.astype(np.int64))
    elif isinstance(dtype, (LongType, IntegerType, ShortType, ByteType)):
        encoded = _varints(column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False))
    elif isinstance(dtype, DoubleType):
        encoded = _fixed_width(
            column.fill_null(0.0).to_numpy(zero_copy_only=False).astype("<f8"), 8
        )
    elif isinstance(dtype, FloatType):
        encoded = _fixed_width(
            column.fill_null(0.0).to_numpy(zero_copy_only=False).astype("<f4"), 4
        )
    elif isinstance(dtype, BooleanType):
        encoded = _fixed_width(
            column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8), 1
        )
    elif isinstance(dtype, DecimalType):
        encoded = _length_prefixed(_decimal_bytes(column, dtype.precision))
    elif isinstance(dtype, (StringType, BinaryType)):
        encoded = _length_prefixed(column)
    else:  # avro_schema_for has rejected every other type already
        raise UnsupportedAvroTypeError(f"cannot encode {dtype.simpleString()}")
    if not nullable:
        return encoded
    # [type, "null"] union: branch index 0 (zigzag 0x00) before a value, 1 (0x02) for null.
    valid = column.is_valid()
    branch = np.where(valid.to_numpy(zero_copy_only=False), 0, 2).astype(np.uint8)
    value = pc.if_else(valid, encoded, _EMPTY) if column.null_count else encoded
    return pc.binary_join_element_wise(_fixed_width(branch, 1), value, _EMPTY)


def _encode_records(batch: pa.RecordBatch, schema: StructType) -> tuple[int, bytes]:
    """The Avro binary encoding of every row of ``batch``, concatenated."""
    columns = [
        _encode_column(batch.column(index), field.dataType, field.nullable)
        for index, field in enumerate(schema.fields)
    ]
    rows = pc.binary_join_element_wise(*columns, _EMPTY)
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[
        rows.offset : rows.offset + len(rows) + 1
    ]
    data = rows.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    return len(rows), b"" if data is None else data.slice(start, end - start).to_pybytes()


class _EncodedBlock:
    """Already-encoded records in the shape ``fastavro``'s ``Writer.write_block`` takes."""

    def __init__(self, num_records: int, data: bytes) -> None:
        self.num_records = num_records
        self.bytes_ = io.BytesIO(data)


# --- reading: decoded Avro values -> Arrow columns ---------------------------------------------


def _decoding_schema(avro_schema: dict[str, Any]) -> dict[str, Any]:
    """The file's schema without logical types, so fastavro returns raw ints and bytes.

    fastavro picks logical conversions from the *writer* schema, which would build a datetime
    or Decimal object per value only for us to turn it back into a number; decoding with this
    schema (same binary layout) skips that and the columns are converted in bulk instead.
    """

    def strip(avro_type: Any) -> Any:
        if isinstance(avro_type, list):
            return [strip(branch) for branch in avro_type]
        if isinstance(avro_type, dict):
            return {key: value for key, value in avro_type.items() if key != "logicalType"}
        return avro_type

    return {
        "type": "record",
        "name": avro_schema.get("name", "Record"),
        "fields": [{"name": f["name"], "type": strip(f["type"])} for f in avro_schema["fields"]],
    }


def _decimal_from_avro_bytes(
    values: Sequence[bytes | None], arrow_type: pa.Decimal128Type, narrow: bool
) -> pa.Array:
    """decimal128 array from big-endian two's-complement unscaled values, built in bulk.

    ``narrow`` (file precision <= 18) lets every value go through one int64 array; wider
    decimals are split into their two 64-bit words in Python.
    """
    count = len(values)
    valid = np.fromiter((value is not None for value in values), dtype=bool, count=count)
    words = np.empty(2 * count, dtype="<i8")
    if narrow:
        low = np.fromiter(
            (0 if value is None else int.from_bytes(value, "big", signed=True) for value in values),
            dtype=np.int64,
            count=count,
        )
        words[0::2] = low
        words[1::2] = low >> 63  # sign extension into the high word
    else:
        unscaled = [
            0 if value is None else int.from_bytes(value, "big", signed=True) for value in values
        ]
        words[0::2] = np.array([value & _UINT64_MASK for value in unscaled], dtype=np.uint64).view(
            np.int64
        )
        words[1::2] = np.array([value >> 64 for value in unscaled], dtype=np.int64)
    null_count = count - int(valid.sum())
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if null_count else None
    return pa.Array.from_buffers(
        arrow_type, count, [validity, pa.py_buffer(words)], null_count=null_count
    )


_RAW_ARROW_TYPE = {
    LongType: pa.int64(),
    IntegerType: pa.int32(),
    DoubleType: pa.float64(),
    FloatType: pa.float32(),
    BooleanType: pa.bool_(),
    StringType: pa.string(),
    BinaryType: pa.binary(),
    DateType: pa.int32(),
    TimestampType: pa.int64(),
    TimestampNTZType: pa.int64(),
}


def _arrow_column(
    values: list[Any], plan: _ColumnPlan, arrow_type: pa.DataType, where: str
) -> pa.Array:
    """Arrow array of the requested type from one column of decoded Avro values."""
    source, target = plan.source, plan.target
    if source is None:
        return pa.nulls(len(values), type=arrow_type)
    if isinstance(source.spark_type, DecimalType):
        array = _decimal_from_avro_bytes(values, arrow_type, source.spark_type.precision <= 18)
    else:
        array = pa.array(values, type=_RAW_ARROW_TYPE[type(source.spark_type)])
        if source.timestamp_millis:
            array = pc.multiply_checked(array, 1000)
        if array.type != arrow_type:
            array = array.cast(arrow_type)  # safe cast: overflow raises instead of wrapping
    if not target.nullable and array.null_count:
        raise AvroSchemaMismatchError(
            f"{where}: field '{target.name}' is non-nullable in the requested schema "
            f"but the file holds {array.null_count} null value(s) in it"
        )
    return array


# --- files ---------------------------------------------------------------------------------


def _local_path(path: str | Path) -> Path:
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif text.startswith("file:"):
        text = text[len("file:") :]
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise ValueError(
            f"{text}: the Python Avro source reads local (or locally mounted) paths only; "
            "use the JVM spark-avro module for remote filesystems"
        )
    return Path(text)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(("_", "."))


def _data_files(path: Path) -> list[Path]:
    """The Avro files of a dataset: ``path`` itself, or the visible files directly in it."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no Avro dataset at {path}")
    files = []
    for entry in sorted(path.iterdir()):
        if _is_hidden(entry):
            continue
        if entry.is_dir():
            raise ValueError(
                f"{path}: sub-directory '{entry.name}' found; partitioned (nested) Avro "
                "datasets are not supported by the Python Avro source"
            )
        files.append(entry)
    return files


def _file_schema(path: Path) -> dict[str, Any]:
    """The writer schema stored in an Avro file's header (reads only the header)."""
    with path.open("rb") as stream:
        try:
            header = fastavro.reader(stream)
        except ValueError as exc:
            raise ValueError(f"{path}: not an Avro data file ({exc})") from exc
        return json.loads(header.metadata["avro.schema"])


def _find_sync(stream: BinaryIO, start: int, sync_marker: bytes) -> int | None:
    """Offset of the first sync marker at or after ``start``, or None at end of file."""
    stream.seek(start)
    chunk_size = 1 << 16
    carried = b""
    carried_from = start
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return None
        window = carried + chunk
        found = window.find(sync_marker)
        if found >= 0:
            return carried_from + found
        keep = min(len(sync_marker) - 1, len(window))  # a marker may straddle two chunks
        carried_from += len(window) - keep
        carried = window[-keep:]


# --- the data source -----------------------------------------------------------------------


@dataclass
class AvroSplit(InputPartition):
    """One read task: the blocks of ``path`` whose preceding sync marker starts in [start, end)."""

    path: str
    start: int
    end: int


@dataclass
class AvroCommitMessage(WriterCommitMessage):
    """What one write task produced: a staged file (None if its partition was empty)."""

    staged_file: str | None
    final_name: str | None


class AvroDataSource(DataSource):
    """Avro files in Python workers: decoded by fastavro, encoded column-wise with Arrow.

    Read options: ``maxSplitBytes`` (split files larger than this, default 128 MiB),
    ``batchRows`` (rows per Arrow batch handed to Spark). Write options: ``compression``
    (uncompressed, deflate [default], or snappy/zstandard/... when their libraries are installed),
    ``compressionLevel`` (deflate level, default 1), ``recordName``.
    """

    @classmethod
    def name(cls) -> str:
        return AVRO_FORMAT

    def _path(self) -> Path:
        if "path" not in self.options:
            raise ValueError(f"{AVRO_FORMAT}: give a path, e.g. .load(path) or .save(path)")
        return _local_path(self.options["path"])

    def schema(self) -> StructType:
        files = _data_files(self._path())
        if not files:
            raise ValueError(
                f"{self._path()}: no Avro files to infer a schema from; pass .schema()"
            )
        return spark_schema_for(_file_schema(files[0]), where=str(files[0]))

    def reader(self, schema: StructType) -> AvroReader:
        return AvroReader(
            self._path(),
            schema,
            max_split_bytes=int(self.options.get("maxSplitBytes", DEFAULT_MAX_SPLIT_BYTES)),
            batch_rows=int(self.options.get("batchRows", DEFAULT_BATCH_ROWS)),
        )

    def writer(self, schema: StructType, overwrite: bool) -> AvroWriter:
        compression = self.options.get("compression", DEFAULT_COMPRESSION).lower()
        if compression not in _CODECS:
            raise ValueError(
                f"{AVRO_FORMAT}: unknown compression '{compression}' "
                f"(expected one of: {', '.join(sorted(_CODECS))})"
            )
        return AvroWriter(
            self._path(),
            schema,
            overwrite=overwrite,
            codec=_CODECS[compression],
            compression_level=int(self.options.get("compressionLevel", DEFAULT_DEFLATE_LEVEL)),
            record_name=self.options.get("recordName", "Record"),
        )


class AvroReader(DataSourceReader):
    """Plans one task per file (per byte range for big files) and decodes blocks into batches."""

    def __init__(
        self, path: Path, schema: StructType, max_split_bytes: int, batch_rows: int
    ) -> None:
        self.path = str(path)
        self.schema = schema
        self.max_split_bytes = max(max_split_bytes, 1)
        self.batch_rows = max(batch_rows, 1)

    def partitions(self) -> Sequence[InputPartition]:
        splits: list[InputPartition] = []
        for file in _data_files(Path(self.path)):
            size = file.stat().st_size
            starts = range(0, max(size, 1), self.max_split_bytes)
            splits.extend(
                AvroSplit(str(file), start, min(start + self.max_split_bytes, size))
                for start in starts
            )
        # Spark needs at least one task; an empty split yields no rows.
        return splits or [AvroSplit("", 0, 0)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, AvroSplit)
        if not partition.path:
            return
        yield from _read_split(partition, self.schema, self.batch_rows)


def _read_split(split: AvroSplit, schema: StructType, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Decode the blocks a split owns and yield them as Arrow batches of ``schema``."""
    from pyspark.sql.pandas.types import to_arrow_schema

    # Exactly the Arrow schema Spark checks returned batches against.
    arrow_schema = to_arrow_schema(schema, timezone="UTC")
    where = split.path
    with open(split.path, "rb") as stream:
        try:
            blocks = fastavro.block_reader(stream)
        except ValueError as exc:
            raise ValueError(f"{where}: not an Avro data file ({exc})") from exc
        file_schema = json.loads(blocks.metadata["avro.schema"])
        plans = _plan_columns(file_schema, schema, where)
        decoding_schema = fastavro.parse_schema(_decoding_schema(file_schema))
        header_end = stream.tell()
        stream.seek(header_end - 16)
        sync_marker = stream.read(16)  # the header ends with the file's sync marker
        # A block belongs to the split in which the sync marker just before it starts.
        header_marker_at = header_end - 16
        if split.start <= header_marker_at < split.end:
            first_block = header_end
        elif split.start > header_marker_at:
            marker_at = _find_sync(stream, split.start, sync_marker)
            if marker_at is None or marker_at >= split.end:
                return
            first_block = marker_at + 16
        else:  # the split lies inside the header
            return
        stream.seek(first_block)  # block_reader goes on from the stream's position

        records: list[dict[str, Any]] = []
        for block in blocks:
            if block.offset < first_block:  # would mean fastavro read ahead: never guess
                raise RuntimeError(f"{where}: block reader did not resume at offset {first_block}")
            if block.offset - 16 >= split.end:
                break
            block.writer_schema = decoding_schema  # raw ints and bytes: see _decoding_schema
            records.extend(block)
            if len(records) >= batch_rows:
                yield _record_batch(records, plans, arrow_schema, where)
                records = []
        if records:
            yield _record_batch(records, plans, arrow_schema, where)


def _record_batch(
    records: list[dict[str, Any]], plans: list[_ColumnPlan], arrow_schema: pa.Schema, where: str
) -> pa.RecordBatch:
    arrays = []
    for plan, arrow_field in zip(plans, arrow_schema, strict=True):
        if plan.source is None:
            values: list[Any] = [None] * len(records)
        else:
            field_name = plan.source.name
            values = [record[field_name] for record in records]
        arrays.append(_arrow_column(values, plan, arrow_field.type, where))
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema)


class AvroWriter(DataSourceArrowWriter):
    """Each task writes one staged file; the driver's commit moves them into place.

    Staging under ``<path>/_temporary/<job>`` means a failed job leaves the target as it was
    (``abort`` removes the staging dir), and ``overwrite`` deletes the old files only after
    every task has succeeded.
    """

    def __init__(
        self,
        path: Path,
        schema: StructType,
        overwrite: bool,
        codec: str,
        compression_level: int,
        record_name: str,
    ) -> None:
        self.path = str(path)
        self.schema = schema
        self.overwrite = overwrite
        self.codec = codec
        self.compression_level = compression_level
        self.avro_schema = avro_schema_for(schema, record_name)  # fails early on the driver
        self.job_id = uuid.uuid4().hex

    @property
    def _staging(self) -> Path:
        return Path(self.path) / STAGING_DIR / self.job_id

    def _final_name(self, partition_id: int) -> str:
        return f"part-{partition_id:05d}-{self.job_id}.avro"

    def _write_file(self, target: Path, batches: Iterator[pa.RecordBatch]) -> None:
        """One Avro file: fastavro writes the header and frames, compresses and syncs blocks."""
        with target.open("wb") as out:
            writer = fastavro.write.Writer(
                out,
                fastavro.parse_schema(self.avro_schema),
                codec=self.codec,
                compression_level=self.compression_level if self.codec == "deflate" else None,
            )
            pending: list[bytes] = []
            pending_rows = pending_bytes = 0
            for batch in batches:
                rows, data = _encode_records(batch, self.schema)
                pending.append(data)
                pending_rows += rows
                pending_bytes += len(data)
                if pending_bytes >= SYNC_INTERVAL_BYTES:
                    writer.write_block(_EncodedBlock(pending_rows, b"".join(pending)))
                    pending, pending_rows, pending_bytes = [], 0, 0
            if pending_rows:
                writer.write_block(_EncodedBlock(pending_rows, b"".join(pending)))
            writer.flush()

    def write(self, iterator: Iterator[pa.RecordBatch]) -> AvroCommitMessage:
        from pyspark import TaskContext

        context = TaskContext.get()
        partition_id = context.partitionId() if context else 0
        attempt = context.attemptNumber() if context else 0
        batches = (batch for batch in iterator if batch.num_rows)
        first = next(batches, None)
        if first is None:  # empty partition: no file, like Spark's file writers
            return AvroCommitMessage(None, None)
        self._staging.mkdir(parents=True, exist_ok=True)
        staged = self._staging / f"{self._final_name(partition_id)}.attempt{attempt}"
        self._write_file(staged, chain([first], batches))
        return AvroCommitMessage(str(staged), self._final_name(partition_id))

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        target = Path(self.path)
        target.mkdir(parents=True, exist_ok=True)
        if self.overwrite:
            for entry in target.iterdir():
                if entry.name == STAGING_DIR:
                    for job_dir in entry.iterdir():  # other jobs' leftovers, not ours
                        if job_dir.name != self.job_id:
                            _remove(job_dir)
                else:
                    _remove(entry)
        produced = [m for m in messages if isinstance(m, AvroCommitMessage) and m.staged_file]
        for message in produced:
            os.replace(message.staged_file, target / message.final_name)
        if not produced and not _data_files(target):
            # An empty DataFrame still leaves a readable dataset that carries its schema.
            self._write_file(target / self._final_name(0), iter(()))
        self._cleanup_staging()
        (target / SUCCESS_MARKER).touch()

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        self._cleanup_staging()

    def _cleanup_staging(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # removed only if no other job is staging
            (Path(self.path) / STAGING_DIR).rmdir()


def _sweep_staging(target: Path, settle_seconds: float = 2.0) -> None:
    deadline = time.monotonic() + settle_seconds
    while True:
        shutil.rmtree(target / STAGING_DIR, ignore_errors=True)
        if time.monotonic() >= deadline:
            return
        time.sleep(0.2)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


# --- public API ----------------------------------------------------------------------------

_JVM_AVRO_BY_APP: dict[str, bool] = {}


def jvm_avro_available(spark: SparkSession) -> bool:
    """Whether ``format("avro")`` resolves to the JVM spark-avro module (checked once per app).

    Asks Spark's own data source lookup rather than loading a class: Spark 4's sql jar carries
    ``AvroFileFormat`` even when the ``avro`` short name is not registered, so a class check
    would wrongly answer yes.
    """
    try:
        context = spark.sparkContext
        app_id = context.applicationId
    except Exception:  # Spark Connect: no JVM access from here; the Python source works
        return False
    if app_id not in _JVM_AVRO_BY_APP:
        try:
            lookup = context._jvm.org.apache.spark.sql.execution.datasources.DataSource
            lookup.lookupDataSource("avro", spark._jsparkSession.sessionState().conf())
            _JVM_AVRO_BY_APP[app_id] = True
        except AnalysisException:
            _JVM_AVRO_BY_APP[app_id] = False
    return _JVM_AVRO_BY_APP[app_id]


def _use_jvm(spark: SparkSession) -> bool:
    choice = spark.conf.get(IMPLEMENTATION_CONF, "auto").lower()
    if choice == "python":
        return False
    if choice == "jvm":
        return True
    if choice != "auto":
        raise ValueError(f"{IMPLEMENTATION_CONF} must be auto, python or jvm, not '{choice}'")
    return jvm_avro_available(spark)


_REGISTERED_ON: set[tuple[str, int]] = set()  # (application id, session) with the source


def register_avro(spark: SparkSession) -> None:
    """Make :data:`AVRO_FORMAT` usable on ``spark``, once per session: registering again works
    but makes Spark warn "replaced a previously registered data source" on every step."""
    try:
        key = (spark.sparkContext.applicationId, id(spark))
    except Exception:  # Spark Connect: no context here; register every time
        spark.dataSource.register(AvroDataSource)
        return
    if key not in _REGISTERED_ON:
        spark.dataSource.register(AvroDataSource)
        _REGISTERED_ON.add(key)


def write_avro(df: DataFrame, path: str | Path, mode: str = "overwrite") -> None:
    """Write ``df`` as a directory of Avro files, one per non-empty partition.

    ``mode`` behaves as for Spark's file writers. Python sources only take append/overwrite,
    so ``errorifexists`` and ``ignore`` are decided here, before the job starts.
    """
    save_mode = _WRITE_MODES.get(mode.lower())
    if save_mode is None:
        raise ValueError(f"unknown save mode '{mode}' (expected one of: {', '.join(_WRITE_MODES)})")
    if _use_jvm(df.sparkSession):
        df.write.format("avro").mode(save_mode).save(str(path))
        return
    avro_schema_for(df.schema)  # unsupported types and names fail here, not inside a task
    target = _local_path(path)
    if target.exists():
        if save_mode == "errorifexists":
            raise FileExistsError(f"{target} already exists (mode 'errorifexists')")
        if save_mode == "ignore":
            return
    spark_mode = "overwrite" if save_mode == "overwrite" else "append"
    register_avro(df.sparkSession)
    try:
        df.write.format(AVRO_FORMAT).mode(spark_mode).save(str(target))
    except Exception:
        # abort() already removed the staging dir, but a task Spark was still cancelling can
        # stage its file afterwards: sweep again so a failed write leaves only what was there.
        _sweep_staging(target)
        raise


def read_avro(spark: SparkSession, path: str | Path, schema: StructType) -> DataFrame:
    """Read the Avro dataset at ``path`` with the explicit ``schema``, in parallel.

    Every file's header is checked here on the driver, so a missing path or a schema mismatch
    fails at once with a message naming the file and field, not inside a task.
    """
    if _use_jvm(spark):
        return spark.read.format("avro").schema(schema).load(str(path))
    source = _local_path(path)
    for file in _data_files(source):
        _plan_columns(_file_schema(file), schema, str(file))
    register_avro(spark)
    return spark.read.format(AVRO_FORMAT).schema(schema).load(str(source))
