"""PostgreSQL: connection settings from the environment, and DataFrame reads and writes.

Credentials only ever come from the environment (``DATABASE_URL`` or the standard ``PG*``
variables); nothing secret lives in ``config/``. Default: ``postgresql://127.0.0.1:5432/sparkmart``
as the current OS user.

Reads go through Spark's JDBC source (parallel range queries). Writes go either through Spark's
JDBC sink (batched INSERTs) or through ``COPY ... FROM STDIN`` streamed from every partition as
Arrow batches rendered to CSV; both commit per partition, so neither is atomic on its own.
``replace_table_atomically`` and ``merge_into`` load a staging table first and then change the
target in one transaction: that is what pipelines should use. See docs/postgres.md.
"""

from __future__ import annotations

import datetime
import decimal
import getpass
import itertools
import math
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import psycopg
import pyarrow as pa
from psycopg import sql
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BinaryType,
    BooleanType,
    ByteType,
    CharType,
    DataType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    StructType,
    TimestampNTZType,
    TimestampType,
    VarcharType,
)

from sparkmart.spark_utils import get_logger, timed

DEFAULT_DATABASE = "sparkmart"
PROJECT_SCHEMAS: tuple[str, ...] = ("public", "analytics", "quarantine", "streaming", "audit")


class PostgresError(RuntimeError):
    """PostgreSQL is unreachable or refused an operation; the message says which and where."""


@dataclass(frozen=True)
class PgSettings:
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = DEFAULT_DATABASE
    user: str = ""
    password: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PgSettings:
        """``DATABASE_URL`` wins; otherwise ``PGHOST``/``PGPORT``/``PGDATABASE``/``PGUSER``/
        ``PGPASSWORD``; otherwise the defaults."""
        env = os.environ if environ is None else environ
        default_user = env.get("PGUSER") or _os_user()
        if url := env.get("DATABASE_URL"):
            parsed = urlparse(url)
            if parsed.scheme not in {"postgresql", "postgres"}:
                raise PostgresError(
                    f"DATABASE_URL must start with postgresql:// (got scheme '{parsed.scheme}')"
                )
            try:
                url_port = parsed.port
            except ValueError as exc:  # never echo the URL: it may hold a password
                raise PostgresError(f"DATABASE_URL has an invalid port ({exc})") from None
            return cls(
                host=parsed.hostname or "127.0.0.1",
                port=url_port or 5432,
                dbname=unquote(parsed.path.lstrip("/")) or DEFAULT_DATABASE,
                user=unquote(parsed.username) if parsed.username else default_user,
                password=unquote(parsed.password) if parsed.password else None,
            )
        port = env.get("PGPORT") or "5432"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise PostgresError(f"PGPORT must be a port number (1-65535), got {port!r}")
        return cls(
            host=env.get("PGHOST", "127.0.0.1"),
            port=int(port),
            dbname=env.get("PGDATABASE", DEFAULT_DATABASE),
            user=default_user,
            password=env.get("PGPASSWORD"),
        )

    def with_database(self, dbname: str) -> PgSettings:
        return replace(self, dbname=dbname)

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.dbname}"

    @property
    def jdbc_properties(self) -> dict[str, str]:
        props = {"user": self.user, "driver": "org.postgresql.Driver"}
        if self.password:
            props["password"] = self.password
        return props

    @property
    def display(self) -> str:
        """Where we connect, without the password: for messages and logs."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "postgres"


def connect(pg: PgSettings, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection, or raise PostgresError saying where it could not connect."""
    try:
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            dbname=pg.dbname,
            user=pg.user,
            password=pg.password,
            autocommit=autocommit,
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise PostgresError(f"cannot connect to {pg.display}: {first_line}") from exc


def ensure_database(pg: PgSettings, maintenance_db: str = "postgres") -> bool:
    """Create ``pg.dbname`` if it does not exist; True when it was created."""
    with connect(pg.with_database(maintenance_db), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (pg.dbname,)
        ).fetchone()
        if exists:
            return False
        conn.execute(
            psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(pg.dbname))
        )
        return True


def drop_database(pg: PgSettings, maintenance_db: str = "postgres") -> None:
    with connect(pg.with_database(maintenance_db), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(pg.dbname)
            )
        )


def ensure_schemas(pg: PgSettings, schemas: tuple[str, ...] = PROJECT_SCHEMAS) -> None:
    """Create the project's schemas (public, analytics, quarantine, streaming, audit)."""
    with connect(pg, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(
                psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    psycopg.sql.Identifier(schema)
                )
            )


# --- names and types -----------------------------------------------------------------------

WriteMethod = Literal["jdbc", "copy"]
WriteMode = Literal["append", "overwrite"]

# Chosen by measurement (docs/postgres.md): COPY from Arrow batches beats batched JDBC INSERTs.
DEFAULT_WRITE_METHOD: WriteMethod = "copy"
JDBC_BATCH_SIZE = 10_000
JDBC_FETCH_SIZE = 10_000
STAGING_PREFIX = "_stage_"
# PostgreSQL silently truncates longer identifiers, which could make two staging tables collide.
MAX_IDENTIFIER = 63

_log = get_logger("postgres")


def split_table_name(table: str) -> tuple[str, str]:
    """``"schema.table"`` or ``"table"`` (schema ``public``) -> ``(schema, table)``.

    Names are used verbatim as quoted identifiers, so they are case-sensitive: keep them lower
    case, as the project does.
    """
    parts = table.split(".")
    if len(parts) == 1 and parts[0]:
        return "public", parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise ValueError(f"table name must be 'table' or 'schema.table', got {table!r}")


def _qualified(table: str) -> str:
    return ".".join(split_table_name(table))


def _ident(table: str) -> sql.Identifier:
    return sql.Identifier(*split_table_name(table))


def _quote(name: str) -> str:
    """A quoted identifier as plain text, for Spark's ``dbtable`` option and ``to_regclass``."""
    return '"' + name.replace('"', '""') + '"'


def _text_name(table: str) -> str:
    return ".".join(_quote(part) for part in split_table_name(table))


def _columns_sql(names: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(name) for name in names)


_SIMPLE_TYPES: dict[type[DataType], str] = {
    LongType: "bigint",
    IntegerType: "integer",
    ShortType: "smallint",
    ByteType: "smallint",
    StringType: "text",
    VarcharType: "text",
    CharType: "text",
    DateType: "date",
    TimestampType: "timestamp",
    TimestampNTZType: "timestamp",
    BooleanType: "boolean",
    DoubleType: "double precision",
    FloatType: "real",
    BinaryType: "bytea",
}


def pg_type_for(spark_type: DataType) -> str:
    """The PostgreSQL column type that holds a Spark type without loss.

    ``TimestampType`` (an instant) maps to ``timestamp`` (without time zone) holding the UTC wall
    time: every writer here converts to UTC and every reader converts back, so what is stored
    never depends on the Spark session's or the JVM's time zone.
    """
    if isinstance(spark_type, DecimalType):
        return f"numeric({spark_type.precision},{spark_type.scale})"
    pg_type = _SIMPLE_TYPES.get(type(spark_type))
    if pg_type is None:
        raise TypeError(f"no PostgreSQL column type for Spark type {spark_type.simpleString()}")
    return pg_type


def _key_list(keys: str | Sequence[str] | None) -> list[str]:
    if keys is None:
        return []
    return [keys] if isinstance(keys, str) else list(keys)


def create_table_sql(
    table: str,
    schema: StructType,
    primary_key: str | Sequence[str] | None = None,
    *,
    unlogged: bool = False,
) -> sql.Composed:
    """``CREATE TABLE IF NOT EXISTS`` from a StructType, so PostgreSQL holds the project's types
    (not whatever Spark's JDBC writer would pick): NOT NULL where the schema says so, and the
    primary key."""
    keys = _key_list(primary_key)
    missing = [key for key in keys if key not in schema.fieldNames()]
    if missing:
        raise ValueError(f"primary key column(s) {missing} are not in the schema for {table}")
    columns: list[sql.Composable] = []
    for field in schema.fields:
        try:
            pg_type = pg_type_for(field.dataType)
        except TypeError as exc:
            raise TypeError(f"column {field.name!r} of {table}: {exc}") from None
        not_null = " NOT NULL" if not field.nullable or field.name in keys else ""
        columns.append(
            sql.SQL("{} {}").format(sql.Identifier(field.name), sql.SQL(pg_type + not_null))
        )
    if keys:
        columns.append(sql.SQL("PRIMARY KEY ({})").format(_columns_sql(keys)))
    return sql.SQL("CREATE {}TABLE IF NOT EXISTS {} ({})").format(
        sql.SQL("UNLOGGED " if unlogged else ""), _ident(table), sql.SQL(", ").join(columns)
    )


# --- errors and small helpers --------------------------------------------------------------

Query = str | sql.Composable
Params = Sequence[Any] | Mapping[str, Any] | None

_HINTS: dict[type[psycopg.Error], str] = {
    psycopg.errors.InvalidSchemaName: " (create it first, e.g. with ensure_schemas)",
    psycopg.errors.CardinalityViolation: " (the DataFrame holds duplicate keys: deduplicate first)",
    psycopg.errors.InvalidColumnReference: " (the target needs a primary key or unique index on "
    "exactly the key columns)",
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pg_error(
    operation: str, table: str | None, pg: PgSettings, exc: BaseException
) -> PostgresError:
    """One message for every failure: what we did, to which table, where, what the server said."""
    target = f" {_qualified(table)}" if table else ""
    if isinstance(exc, psycopg.errors.UndefinedTable) and table:
        detail = f"table {_qualified(table)} does not exist"
    else:
        detail = _first_line(exc) + next(
            (hint for cls, hint in _HINTS.items() if isinstance(exc, cls)), ""
        )
    return PostgresError(f"{operation}{target} on {pg.display} failed: {detail}")


def _spark_error(operation: str, table: str, pg: PgSettings, exc: BaseException) -> PostgresError:
    """Pick the server's (or our worker's) message out of a long Spark / Java / Python error."""
    lines = str(exc).splitlines()
    if any(re.search(r"ClassNotFoundException: org\.postgresql\.Driver\b", line) for line in lines):
        detail: str | None = (
            "the PostgreSQL JDBC driver (org.postgresql.Driver) is not on Spark's classpath: "
            "install it with `make setup` (Debian's libpostgresql-jdbc-java) and check the "
            "profile's `jars` in config/spark_config.json"
        )
    else:
        markers = ("PostgresError: ", "PSQLException: ", "SQLException: ", "ERROR: ")
        detail = next(
            (
                line.split(marker, 1)[1].strip()
                for marker in markers
                for line in lines
                if marker in line
            ),
            None,
        )
    if detail is None and "Python worker" in _first_line(exc):
        # A Python worker's traceback: its last "SomeError: message" line says what happened.
        raised = [line.strip() for line in lines if re.match(r"^\s*[A-Za-z_][\w.]*: ", line)]
        detail = raised[-1] if raised else None
    if detail and detail.startswith("ERROR: "):
        detail = detail[len("ERROR: ") :]
    return PostgresError(
        f"{operation} {_qualified(table)} on {pg.display} failed: {detail or _first_line(exc)}"
    )


def _run(
    pg: PgSettings, operation: str, table: str | None, query: Query, params: Params = None
) -> int:
    """One statement in its own transaction; errors name the operation and the table."""
    with connect(pg) as conn:
        try:
            return conn.execute(query, params).rowcount  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise _pg_error(operation, table, pg, exc) from exc


def execute_sql(pg: PgSettings, query: Query, params: Params = None) -> int:
    """Run one parameterised statement in its own transaction; returns the affected row count.

    Values go in ``params``, never into the SQL text; build identifiers with ``psycopg.sql``.
    """
    return _run(pg, "SQL", None, query, params)


def query_rows(pg: PgSettings, query: Query, params: Params = None) -> list[tuple[Any, ...]]:
    """Run one parameterised query and return its rows (small results: metadata, counts)."""
    with connect(pg) as conn:
        try:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise _pg_error("query", None, pg, exc) from exc


def table_columns(pg: PgSettings, table: str, operation: str = "lookup of") -> list[str] | None:
    """Column names of ``table`` in order, or None when it does not exist."""
    query = (
        "SELECT c.oid IS NOT NULL, a.attname FROM (SELECT to_regclass(%s) AS oid) c "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum"
    )
    with connect(pg) as conn:
        try:
            rows = conn.execute(query, (_text_name(table),)).fetchall()
        except psycopg.Error as exc:  # e.g. no USAGE on the schema
            raise _pg_error(operation, table, pg, exc) from exc
    if not rows or not rows[0][0]:
        return None
    return [name for _, name in rows if name is not None]


def table_exists(pg: PgSettings, table: str) -> bool:
    return table_columns(pg, table) is not None


def _missing_table(pg: PgSettings, table: str, operation: str) -> PostgresError:
    return PostgresError(
        f"{operation} {_qualified(table)} on {pg.display} failed: "
        f"table {_qualified(table)} does not exist"
    )


def _check_columns(
    df: DataFrame, columns: Sequence[str], pg: PgSettings, table: str, operation: str
) -> None:
    """Fail before moving any data when the DataFrame has columns the table lacks."""
    extra = [name for name in df.columns if name not in columns]
    if extra:
        raise PostgresError(
            f"{operation} {_qualified(table)} on {pg.display} failed: the table has no column(s) "
            f"{', '.join(extra)} (it has {', '.join(columns)}); migrate or drop it first"
        )


# --- timestamps: UTC wall time in PostgreSQL -----------------------------------------------

# Conversions go through microseconds since the epoch, never through the session's local wall
# time: that would be ambiguous in the hour a daylight-saving zone repeats.
_EPOCH_NTZ = "1970-01-01 00:00:00"


def _timestamps_to_utc_wall(df: DataFrame) -> DataFrame:
    """TimestampType -> TimestampNTZ holding the UTC wall time, so the JDBC driver (which renders
    instants in the JVM's default zone) cannot shift them."""
    names = [f.name for f in df.schema.fields if isinstance(f.dataType, TimestampType)]
    epoch = F.lit(_EPOCH_NTZ).cast(TimestampNTZType())
    return df.withColumns(
        {name: F.timestamp_add("MICROSECOND", F.unix_micros(df[name]), epoch) for name in names}
    )


def _utc_wall_to_timestamps(df: DataFrame) -> DataFrame:
    """The inverse, on read: ``timestamp`` columns (read as TimestampNTZ) -> TimestampType."""
    names = [f.name for f in df.schema.fields if isinstance(f.dataType, TimestampNTZType)]
    epoch = F.lit(_EPOCH_NTZ).cast(TimestampNTZType())
    return df.withColumns(
        {
            name: F.timestamp_micros(F.timestamp_diff("MICROSECOND", epoch, df[name]))
            for name in names
        }
    )


# --- read ----------------------------------------------------------------------------------


def _partition_bounds(pg: PgSettings, table: str, column: str) -> tuple[str, str] | None:
    """``(lower, upper)`` of ``column`` as Spark's options want them, from one min/max query;
    None when there is nothing to split (empty table, only nulls, a single value)."""
    query = sql.SQL("SELECT min({col}), max({col}) FROM {tbl}").format(
        col=sql.Identifier(column), tbl=_ident(table)
    )
    try:
        low, high = query_rows(pg, query)[0]
    except PostgresError as exc:
        raise PostgresError(f"read of {_qualified(table)}: bounds of {column!r}: {exc}") from exc
    if low is None or high is None or low == high:
        return None
    if isinstance(low, bool) or not isinstance(low, (int, float, decimal.Decimal, datetime.date)):
        raise PostgresError(
            f"read of {_qualified(table)}: partition column {column!r} must be numeric, date or "
            f"timestamp (found {type(low).__name__})"
        )
    if isinstance(low, datetime.datetime):
        return low.isoformat(sep=" "), high.isoformat(sep=" ")
    if isinstance(low, datetime.date):
        return low.isoformat(), high.isoformat()
    return str(math.floor(low)), str(math.ceil(high))


def read_table(
    spark: SparkSession,
    pg: PgSettings,
    table: str,
    partition_column: str | None = None,
    num_partitions: int = 4,
    schema: StructType | None = None,
) -> DataFrame:
    """Read a table over JDBC; with ``partition_column``, as ``num_partitions`` parallel range
    queries between its min and max (rows outside the range and nulls still land in the first or
    last partition: every row is read exactly once).

    With ``schema`` the result has exactly those columns and types (JDBC alone gives, e.g.,
    ``decimal(38,18)`` for an unconstrained ``numeric``). ``timestamp`` columns are read as UTC
    and returned as TimestampType.
    """
    columns = table_columns(pg, table, "read of")
    if columns is None:
        raise _missing_table(pg, table, "read of")
    if schema is not None:
        missing = [name for name in schema.fieldNames() if name not in columns]
        if missing:
            raise PostgresError(
                f"read of {_qualified(table)} on {pg.display} failed: no column(s) "
                f"{', '.join(missing)} (it has {', '.join(columns)})"
            )
    reader = (
        spark.read.format("jdbc")
        .option("url", pg.jdbc_url)
        .option("dbtable", _text_name(table))
        .option("fetchsize", str(JDBC_FETCH_SIZE))
        .option("preferTimestampNTZ", "true")
        .options(**pg.jdbc_properties)
    )
    if partition_column is not None and num_partitions > 1:
        if partition_column not in columns:
            raise PostgresError(
                f"read of {_qualified(table)}: partition column {partition_column!r} is not in "
                f"the table (it has {', '.join(columns)})"
            )
        bounds = _partition_bounds(pg, table, partition_column)
        if bounds is not None:
            reader = (
                reader.option("partitionColumn", partition_column)
                .option("lowerBound", bounds[0])
                .option("upperBound", bounds[1])
                .option("numPartitions", str(num_partitions))
            )
    try:
        df = reader.load()
    except Exception as exc:  # Py4J / Spark errors: name the table, not a Java stack
        raise _spark_error("read of", table, pg, exc) from exc
    df = _utc_wall_to_timestamps(df)
    if schema is not None:
        df = df.select([df[f.name].cast(f.dataType).alias(f.name) for f in schema.fields])
    return df


# --- write: JDBC and COPY ------------------------------------------------------------------

_COPY_RESULT = "partition int, rows long"
_COPY_RESULT_ARROW = pa.schema([("partition", pa.int32()), ("rows", pa.int64())])


def _write_jdbc(df: DataFrame, pg: PgSettings, table: str) -> None:
    """Spark's JDBC sink: batched INSERTs that pgjdbc rewrites into multi-row statements."""
    try:
        (
            _timestamps_to_utc_wall(df)
            .write.format("jdbc")
            .mode("append")
            .option("url", pg.jdbc_url)
            .option("dbtable", _text_name(table))
            .option("batchsize", str(JDBC_BATCH_SIZE))
            .option("reWriteBatchedInserts", "true")
            .options(**pg.jdbc_properties)
            .save()
        )
    except Exception as exc:
        raise _spark_error("JDBC write to", table, pg, exc) from exc


def _arrow_to_csv(batch: pa.RecordBatch, options: Any) -> pa.Buffer:
    """One Arrow batch as PostgreSQL-ready CSV: instants as naive UTC, bytes as ``\\x`` hex."""
    from pyarrow import csv

    arrays = []
    for field, array in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            array = array.cast(pa.timestamp(field.type.unit))  # keeps the UTC value, drops tz
        elif pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            array = pa.array(
                [None if v is None else "\\x" + v.hex() for v in array.to_pylist()], pa.string()
            )
        arrays.append(array)
    sink = pa.BufferOutputStream()
    csv.write_csv(pa.RecordBatch.from_arrays(arrays, names=batch.schema.names), sink, options)
    return sink.getvalue()


def _copy_partition_writer(
    pg: PgSettings, table: str, columns: list[str], ledger: str | None
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each partition runs (in a Python worker): one connection, one COPY, one
    transaction; yields a single row ``(partition, rows written)``.

    With a ``ledger`` table the partition id is recorded in the same transaction, so a retried
    or speculative attempt of a partition that already committed writes nothing (exactly once).
    """
    schema_name, name = split_table_name(table)

    def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyarrow import csv
        from pyspark import TaskContext

        context = TaskContext.get()
        partition = context.partitionId() if context is not None else -1
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            sql.Identifier(schema_name, name), _columns_sql(columns)
        )
        # Nulls are unquoted empty fields, every value is quoted: '' stays an empty string.
        options = csv.WriteOptions(include_header=False, quoting_style="all_valid")
        non_empty = (batch for batch in batches if batch.num_rows)
        first = next(non_empty, None)
        rows = 0
        if first is not None:  # no connection for an empty partition
            try:
                with connect(pg) as conn, conn.cursor() as cursor:
                    with cursor.copy(copy_sql) as copy:
                        for batch in itertools.chain([first], non_empty):
                            copy.write(_arrow_to_csv(batch, options))
                            rows += batch.num_rows
                    if ledger is not None:
                        cursor.execute(
                            sql.SQL(
                                "INSERT INTO {} (part) VALUES (%s) ON CONFLICT DO NOTHING"
                            ).format(sql.Identifier(schema_name, ledger)),
                            (partition,),
                        )
                        if cursor.rowcount == 0:  # another attempt already committed it
                            conn.rollback()
                            rows = 0
            except psycopg.Error as exc:
                raise PostgresError(f"partition {partition}: {_first_line(exc)}") from exc
        yield pa.RecordBatch.from_pydict(
            {"partition": [partition], "rows": [rows]}, schema=_COPY_RESULT_ARROW
        )

    return write_partition


def _write_copy(df: DataFrame, pg: PgSettings, table: str, ledger: str | None = None) -> int:
    """COPY every partition in parallel from Arrow batches; returns the rows written."""
    writer = _copy_partition_writer(pg, table, df.columns, ledger)
    try:
        results = df.mapInArrow(writer, _COPY_RESULT).collect()
    except Exception as exc:
        raise _spark_error("COPY into", table, pg, exc) from exc
    return sum(row["rows"] for row in results)


def _load(
    df: DataFrame,
    pg: PgSettings,
    table: str,
    method: WriteMethod,
    max_connections: int | None,
    ledger: str | None = None,
) -> None:
    if method not in ("jdbc", "copy"):
        raise ValueError(f"method must be 'jdbc' or 'copy', got {method!r}")
    if max_connections is not None:
        df = df.coalesce(max_connections)
    if method == "jdbc":
        _write_jdbc(df, pg, table)
    else:
        _write_copy(df, pg, table, ledger)


def write_table(
    df: DataFrame,
    pg: PgSettings,
    table: str,
    mode: WriteMode = "append",
    method: WriteMethod = DEFAULT_WRITE_METHOD,
    *,
    primary_key: str | Sequence[str] | None = None,
    max_connections: int | None = None,
) -> None:
    """Write ``df`` into ``table`` (created from the DataFrame's schema when missing).

    NOT atomic: every partition commits on its own, so a failure can leave some partitions
    written, and ``overwrite`` (TRUNCATE, then append; the table definition is kept) can leave
    the table empty or partial. Pipelines use ``replace_table_atomically`` / ``merge_into``.
    ``max_connections`` caps the partitions (= concurrent connections) by coalescing.
    """
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
    columns = table_columns(pg, table, "write to")
    if columns is None:
        _run(pg, "create of", table, create_table_sql(table, df.schema, primary_key))
    else:
        _check_columns(df, columns, pg, table, "write to")
        if mode == "overwrite":
            _run(pg, "truncate of", table, sql.SQL("TRUNCATE {}").format(_ident(table)))
    with timed(f"{method} write to {_qualified(table)}") as timing:
        _load(df, pg, table, method, max_connections)
    _log.info("%s write to %s: %.2f s", method, _qualified(table), timing.seconds)


# --- atomic replace and merge --------------------------------------------------------------


def _staging_name(table: str) -> str:
    """``<schema>._stage_<table>_<random>``, short enough for PostgreSQL with its ``_parts``
    ledger."""
    schema_name, name = split_table_name(table)
    suffix = "_" + secrets.token_hex(4)
    room = MAX_IDENTIFIER - len(STAGING_PREFIX) - len(suffix) - len("_parts")
    return f"{schema_name}.{STAGING_PREFIX}{name[:room]}{suffix}"


def _stage(
    df: DataFrame,
    pg: PgSettings,
    staging: str,
    method: WriteMethod,
    max_connections: int | None,
) -> None:
    """Create an UNLOGGED staging table (and, for COPY, its partition ledger) and load ``df``.

    The caller drops both with ``_drop_staging`` whatever happens.
    """
    _run(pg, "create of staging", staging, create_table_sql(staging, df.schema, unlogged=True))
    ledger = None
    if method == "copy":
        schema_name, name = split_table_name(staging)
        ledger = f"{name}_parts"
        _run(
            pg,
            "create of staging ledger",
            f"{schema_name}.{ledger}",
            sql.SQL("CREATE UNLOGGED TABLE {} (part integer PRIMARY KEY)").format(
                sql.Identifier(schema_name, ledger)
            ),
        )
    _load(df, pg, staging, method, max_connections, ledger)


def _drop_staging(pg: PgSettings, staging: str) -> None:
    schema_name, name = split_table_name(staging)
    try:
        with connect(pg, autocommit=True) as conn:
            for table in (name, f"{name}_parts"):
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema_name, table))
                )
    except (PostgresError, psycopg.Error) as exc:
        _log.warning("could not drop staging table %s: %s", staging, exc)


def _lock_target(conn: psycopg.Connection, table: str) -> None:
    """Serialise replaces and merges of one table (its creation included) across processes."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_qualified(table),))


def replace_table_atomically(
    df: DataFrame,
    pg: PgSettings,
    table: str,
    primary_key: str | Sequence[str] | None = None,
    method: WriteMethod = DEFAULT_WRITE_METHOD,
    *,
    max_connections: int | None = None,
) -> int:
    """Replace every row of ``table`` with ``df``, all or nothing; returns the row count.

    ``df`` is loaded into a staging table first (in parallel); then ONE transaction creates the
    target if missing (with ``primary_key``), TRUNCATEs it and INSERTs the staged rows. Any
    failure (in Spark, in the load, a constraint) leaves the target exactly as it was. The
    target's definition (types, keys, grants, dependent views) is kept; the staging table is
    dropped in all cases.
    """
    columns = table_columns(pg, table, "replace of")
    if columns is not None:
        _check_columns(df, columns, pg, table, "replace of")
    staging = _staging_name(table)
    try:
        with timed(f"replace {_qualified(table)}") as timing:
            _stage(df, pg, staging, method, max_connections)
            with connect(pg) as conn:
                _lock_target(conn, table)
                conn.execute(create_table_sql(table, df.schema, primary_key))
                conn.execute(sql.SQL("TRUNCATE {}").format(_ident(table)))
                rows = conn.execute(
                    sql.SQL("INSERT INTO {} ({cols}) SELECT {cols} FROM {}").format(
                        _ident(table), _ident(staging), cols=_columns_sql(df.columns)
                    )
                ).rowcount
        _log.info("replaced %s: %d rows in %.2f s", _qualified(table), rows, timing.seconds)
        return rows
    except psycopg.Error as exc:
        error = _pg_error("replace of", table, pg, exc)
        raise PostgresError(f"{error}; {_qualified(table)} left unchanged") from exc
    except PostgresError as exc:
        raise PostgresError(f"replace of {_qualified(table)} (left unchanged): {exc}") from exc
    finally:
        _drop_staging(pg, staging)


@dataclass(frozen=True)
class MergeResult:
    """What a merge did: new keys, changed rows, rows identical to what was there."""

    inserted: int
    updated: int
    unchanged: int

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged


def merge_into(
    df: DataFrame,
    pg: PgSettings,
    table: str,
    key_columns: str | Sequence[str],
    method: WriteMethod = DEFAULT_WRITE_METHOD,
    *,
    max_connections: int | None = None,
) -> MergeResult:
    """Upsert ``df`` into ``table`` by ``key_columns``, all or nothing.

    Staging table, then ONE transaction: create the target if missing (primary key = the keys),
    ``INSERT ... ON CONFLICT (keys) DO UPDATE`` the other columns (rows whose values did not change
    are left alone). ``df`` must hold each key once; the target needs a unique index on exactly
    the keys.
    """
    keys = _key_list(key_columns)
    missing = [key for key in keys if key not in df.columns]
    if not keys or missing:
        raise ValueError(
            f"merge into {table}: key column(s) {missing or keys} not in the DataFrame"
        )
    columns = table_columns(pg, table, "merge into")
    if columns is not None:
        _check_columns(df, columns, pg, table, "merge into")
    others = [name for name in df.columns if name not in keys]
    if others:
        action = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
            sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(name)) for name in others
            ),
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(name)) for name in others),
            sql.SQL(", ").join(
                sql.SQL("EXCLUDED.{}").format(sql.Identifier(name)) for name in others
            ),
        )
    else:
        action = sql.SQL("DO NOTHING")
    staging = _staging_name(table)
    try:
        with timed(f"merge into {_qualified(table)}") as timing:
            _stage(df, pg, staging, method, max_connections)
            with connect(pg) as conn:
                _lock_target(conn, table)
                conn.execute(create_table_sql(table, df.schema, keys))
                (staged,) = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(_ident(staging))
                ).fetchone() or (0,)
                # xmax = 0 marks a freshly inserted row (an updated one carries our xid).
                merged = conn.execute(
                    sql.SQL(
                        "WITH merged AS (INSERT INTO {target} AS t ({cols}) "
                        "SELECT {cols} FROM {staging} ON CONFLICT ({keys}) {action} "
                        "RETURNING (t.xmax = 0) AS inserted) "
                        "SELECT count(*) FILTER (WHERE inserted), "
                        "count(*) FILTER (WHERE NOT inserted) FROM merged"
                    ).format(
                        target=_ident(table),
                        cols=_columns_sql(df.columns),
                        staging=_ident(staging),
                        keys=_columns_sql(keys),
                        action=action,
                    )
                ).fetchone() or (0, 0)
            inserted, updated = int(merged[0]), int(merged[1])
            result = MergeResult(inserted, updated, int(staged) - inserted - updated)
        _log.info("merged into %s: %s in %.2f s", _qualified(table), result, timing.seconds)
        return result
    except psycopg.Error as exc:
        error = _pg_error("merge into", table, pg, exc)
        raise PostgresError(f"{error}; {_qualified(table)} left unchanged") from exc
    except PostgresError as exc:
        raise PostgresError(f"merge into {_qualified(table)} (left unchanged): {exc}") from exc
    finally:
        _drop_staging(pg, staging)
