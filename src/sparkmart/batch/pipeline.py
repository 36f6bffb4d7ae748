"""The batch pipeline: ingest -> quality -> gold -> export, as a readable list of steps.

This is the only module of ``batch/`` that reads and writes; every step it calls is a pure
transform. A run:

1. **bronze**: every source of every entity, read with its schema and tagged (``ingest``);
   an incremental run reads only rows past the high-water mark kept in ``audit.watermarks``;
2. **silver + quarantine**: quality rules, deduplication, standardisation (``quality``); the
   accounting identity rows in = silver + quarantined + duplicates is checked, per entity;
3. **gold**: extended entities and marts from all of silver (``analytics``);
4. **export**: Parquet (orders partitioned by month), one CSV report per mart, an immutable
   snapshot, and PostgreSQL ``analytics.*`` / ``quarantine.rows`` — each all or nothing;
5. **audit**: ``audit.pipeline_runs`` gets a row at the start and its result at the end.

Every step is measured by ``monitor.metrics`` (Spark's own job, stage, shuffle, I/O and CPU
metrics -> ``audit.step_metrics``, ``runs/<run_id>.json`` and the table printed at the end) and
records what it read and wrote (``monitor.lineage`` -> ``audit.lineage`` and OpenLineage events
in ``runs/<run_id>.openlineage.jsonl``); every log line carries the run id.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from sparkmart.batch.analytics import build_gold, gold_order_lines, resolve_as_of
from sparkmart.batch.export import (
    MARTS,
    PARTITION_COLUMNS,
    apply_retention,
    export_to_postgres,
    with_order_month,
    write_csv_report,
    write_parquet_atomically,
    write_snapshot,
)
from sparkmart.batch.ingest import (
    INGESTED_AT_COLUMN,
    SOURCE_COLUMN,
    Increment,
    Source,
    read_bronze,
    sources_for,
)
from sparkmart.batch.quality import QualityCounts, QualityParams, SilverResult, build_silver
from sparkmart.config import Settings
from sparkmart.io.postgres import PgSettings, merge_into
from sparkmart.monitor import audit
from sparkmart.monitor.lineage import DatasetRef, file_dataset, postgres_dataset
from sparkmart.monitor.metrics import StepMetrics, format_step_table
from sparkmart.monitor.run import MonitoredRun, audited_run, monitored_run
from sparkmart.schemas import ENTITIES, PRIMARY_KEYS, RAW_SCHEMAS
from sparkmart.spark_utils import get_logger

PIPELINE = "batch"
log = get_logger("batch")


@dataclass(frozen=True)
class BatchOptions:
    """One run's choices (from the CLI and ``batch`` in config/pipeline.yaml)."""

    input_dir: Path
    out_dir: Path  # the batch root: bronze/, silver/, gold/, quarantine/, reports/, snapshots/
    sources: Mapping[str, Sequence[str]]
    incremental: bool = False
    strict: bool = False
    export_postgres: bool = True
    extra_columns: str = "drop"
    jdbc_partitions: int = 4
    snapshot_retention: int = 5
    quality: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        input_dir: Path | None = None,
        out_dir: Path | None = None,
        source: str | None = None,
        **flags: Any,
    ) -> BatchOptions:
        batch = settings.pipeline.get("batch", {})
        sources = {e: list(batch.get("sources", {}).get(e, ["parquet"])) for e in ENTITIES}
        if source:
            sources = {e: [source] for e in ENTITIES}
        return cls(
            input_dir=input_dir or settings.path("raw"),
            out_dir=out_dir or settings.path("silver").parent,
            sources=sources,
            extra_columns=batch.get("extra_columns", "drop"),
            jdbc_partitions=int(batch.get("jdbc_partitions", 4)),
            snapshot_retention=int(batch.get("snapshot_retention", 5)),
            quality=batch.get("quality", {}),
            **flags,
        )

    def layer(self, name: str) -> Path:
        return self.out_dir / name

    @property
    def pipeline_name(self) -> str:
        """Audit name: runs into different output roots keep separate high-water marks."""
        return f"{PIPELINE}:{self.out_dir.resolve()}"


@dataclass
class BatchSummary:
    run_id: str
    mode: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    status: str = "running"
    counts: QualityCounts | None = None
    gold_rows: dict[str, int] = field(default_factory=dict)
    postgres_rows: dict[str, int] = field(default_factory=dict)
    steps: list[StepMetrics] = field(default_factory=list)
    watermarks: dict[str, dt.datetime] = field(default_factory=dict)
    snapshot: str | None = None
    schema_reports: list[str] = field(default_factory=list)
    error: str | None = None
    spark_app_id: str | None = None
    lineage_file: str | None = None

    def rows_json(self) -> dict[str, Any]:
        return {
            "entities": self.counts.entity_rows() if self.counts else [],
            "gold": self.gold_rows,
            "postgres": self.postgres_rows,
        }

    def quarantined_json(self) -> list[dict[str, object]]:
        return self.counts.rule_rows() if self.counts else []

    def format(self) -> str:
        lines = [f"batch run {self.run_id} ({self.mode}): {self.status}"]
        lines += [f"  schema: {report}" for report in self.schema_reports]
        if self.counts:
            lines += ["", self.counts.format()]
        if self.gold_rows:
            lines += [
                "",
                "gold rows: " + ", ".join(f"{k} {v:,}" for k, v in self.gold_rows.items()),
            ]
        if self.postgres_rows:
            lines.append(
                "PostgreSQL analytics.*: "
                + ", ".join(f"{k} {v:,}" for k, v in self.postgres_rows.items())
            )
        if self.snapshot:
            lines.append(f"snapshot: {self.snapshot}")
        if self.steps:
            lines += ["", format_step_table(self.steps)]
        if self.spark_app_id:
            lines.append(f"Spark application: {self.spark_app_id}")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


# --- steps -----------------------------------------------------------------------------------


def latest_per_key(entity: str) -> Any:
    """Keep one row per business key: the latest ``updated_at``, then the latest ingestion."""

    def keep(df: DataFrame) -> DataFrame:
        order = Window.partitionBy(PRIMARY_KEYS[entity]).orderBy(
            F.col("updated_at").desc_nulls_last(), F.col(INGESTED_AT_COLUMN).desc_nulls_last()
        )
        return df.withColumn("_rank", F.row_number().over(order)).filter("_rank = 1").drop("_rank")

    return keep


def ingest(
    spark: SparkSession,
    options: BatchOptions,
    started_at: dt.datetime,
    pg: PgSettings | None,
    increments: Mapping[str, Increment] | None,
    summary: BatchSummary,
) -> dict[str, DataFrame]:
    bronze: dict[str, DataFrame] = {}
    for entity in ENTITIES:
        sources = sources_for(entity, options.sources[entity], options.input_dir)
        frame, reports = read_bronze(
            spark,
            sources,
            started_at,
            options.extra_columns,
            pg,
            options.jdbc_partitions,
            (increments or {}).get(entity),
        )
        summary.schema_reports += [r.describe() for r in reports if not r.clean]
        bronze[entity] = frame
    return bronze


def write_silver(
    spark: SparkSession, result: SilverResult, options: BatchOptions
) -> dict[str, DataFrame]:
    """Write silver (merged with earlier silver in an incremental run); return it re-read."""
    silver_dir = options.layer("silver")
    merged: dict[str, DataFrame] = {}
    for entity, rows in result.silver.items():
        target = silver_dir / entity
        if options.incremental and target.exists():
            previous = spark.read.parquet(str(target))
            rows = previous.unionByName(rows).transform(latest_per_key(entity))
        write_parquet_atomically(rows, target)
        merged[entity] = spark.read.parquet(str(target))
    return merged


def write_quarantine(
    result: SilverResult, options: BatchOptions, run_id: str, pg: PgSettings | None
) -> int:
    """Append this run's quarantined rows: Parquet under ``run_id=`` and ``quarantine.rows``."""
    rows = result.quarantine.withColumn("run_id", F.lit(run_id)).withColumn(
        "quarantine_seq",
        F.row_number().over(Window.orderBy("entity", "record_id", "_raw", "_source")),
    )
    target = options.layer("quarantine") / f"run_id={run_id}"
    write_parquet_atomically(rows.drop("run_id"), target)
    written = rows.sparkSession.read.parquet(str(target)).withColumn("run_id", F.lit(run_id))
    count = written.count()
    if pg is not None and count:
        as_text = written.withColumn("rules", F.array_join("rules", ","))
        merge_into(as_text, pg, "quarantine.rows", ["run_id", "quarantine_seq"])
    return count


def write_gold(gold: Mapping[str, DataFrame], options: BatchOptions) -> dict[str, int]:
    gold_dir = options.layer("gold")
    counts = {}
    for name, df in gold.items():
        frame = df.transform(with_order_month) if name == "orders" else df
        write_parquet_atomically(frame, gold_dir / name, PARTITION_COLUMNS.get(name))
        counts[name] = df.sparkSession.read.parquet(str(gold_dir / name)).count()
    for mart in MARTS:
        write_csv_report(
            df.sparkSession.read.parquet(str(gold_dir / mart)),
            options.layer("reports") / f"{mart}.csv",
        )
    return counts


def read_gold(spark: SparkSession, options: BatchOptions) -> dict[str, DataFrame]:
    gold_dir = options.layer("gold")
    frames = {}
    for name in ("customers", "products", "orders", *MARTS):
        frame = spark.read.parquet(str(gold_dir / name))
        frames[name] = frame.drop(*PARTITION_COLUMNS.get(name, []))
    return frames


def high_water_marks(
    bronze: Mapping[str, DataFrame], started_at: dt.datetime
) -> dict[str, dt.datetime]:
    """Where the next incremental run starts: the latest ``updated_at`` read per entity.

    Taken over everything read (quarantined rows too, so they are not read again), but never
    past this run's start: a row stamped in the future is read again until its time has come.
    """
    marks = {}
    for entity, frame in bronze.items():
        value = frame.agg(F.max("updated_at")).first()[0]
        if value is not None:
            marks[entity] = min(value, started_at)
    return marks


# --- the run ---------------------------------------------------------------------------------


def run_batch(
    spark: SparkSession,
    settings: Settings,
    options: BatchOptions,
    pg: PgSettings | None,
    now: dt.datetime | None = None,
) -> BatchSummary:
    """Run the whole batch pipeline once; the summary says what happened, also on failure."""
    started_at = (now or dt.datetime.now(dt.timezone.utc)).replace(tzinfo=None)
    run_id = uuid.uuid4().hex
    mode = "incremental" if options.incremental else "full"
    summary = BatchSummary(run_id, mode, started_at)
    parameters = {
        "input": str(options.input_dir),
        "out": str(options.out_dir),
        "sources": {k: list(v) for k, v in options.sources.items()},
        "strict": options.strict,
    }
    with (
        monitored_run(
            spark, PIPELINE, options.layer("runs"), pg, run_id=run_id, logger=log, own_summary=True
        ) as run,
        audited_run(
            pg,
            run,
            audit_name=options.pipeline_name,
            mode=mode,
            config_dir=settings.config_dir,
            parameters=parameters,
            started_at=started_at,
        ) as record,
    ):
        summary.steps = run.steps
        summary.spark_app_id = run.monitor.app_id
        summary.lineage_file = str(run.lineage.events_file)
        try:
            _run_steps(spark, settings, options, pg, summary, run)
            summary.status = "succeeded"
        except Exception as exc:
            summary.status = "failed"
            summary.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            summary.finished_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            record.finished_at = summary.finished_at
            record.rows = summary.rows_json()
            record.quarantined = summary.quarantined_json()
            record.watermarks = summary.watermarks
            _write_run_file(options, summary)
    return summary


# --- lineage of each step --------------------------------------------------------------------


def _source_dataset(source: Source, pg: PgSettings | None, rows: int | None) -> DatasetRef:
    schema = RAW_SCHEMAS[source.entity]
    if source.kind == "postgres" and pg is not None:
        return postgres_dataset(pg, source.location, schema, rows)
    return file_dataset(source.location, source.kind, schema, rows)


def _gold_schema(name: str, frame: DataFrame) -> StructType:
    """The schema of a gold dataset as written (orders carry their partition column)."""
    return (frame.transform(with_order_month) if name == "orders" else frame).schema


def _tables(
    root: Path,
    schemas: Mapping[str, StructType],
    rows: Mapping[str, int],
    fmt: str = "parquet",
    suffix: str = "",
) -> list[DatasetRef]:
    """One file dataset per table of ``rows``: ``<root>/<name><suffix>``."""
    return [
        file_dataset(root / f"{name}{suffix}", fmt, schemas.get(name), count)
        for name, count in rows.items()
    ]


def _run_steps(
    spark: SparkSession,
    settings: Settings,
    options: BatchOptions,
    pg: PgSettings | None,
    summary: BatchSummary,
    run: MonitoredRun,
) -> None:
    started_at = summary.started_at
    increments = _increments(pg, options) if options.incremental else None

    with run.step("ingest (bronze)") as step:
        bronze = ingest(spark, options, started_at, pg, increments, summary)
        previous_keys = {}
        inputs: list[DatasetRef] = []
        bronze_tables: list[DatasetRef] = []
        for entity, frame in bronze.items():
            entity_dir = options.layer("bronze") / entity
            if options.incremental and entity_dir.exists():
                # keys every earlier run has seen, quarantined rows included, as in a full run
                previous_keys[entity] = (
                    spark.read.parquet(str(entity_dir)).select(PRIMARY_KEYS[entity]).distinct()
                )
            else:
                shutil.rmtree(entity_dir, ignore_errors=True)
            # bronze is kept per run: a full run starts it afresh, an incremental one adds to it
            run_dir = entity_dir / f"run_id={summary.run_id}"
            write_parquet_atomically(frame, run_dir)
            bronze[entity] = spark.read.parquet(str(run_dir))
            per_source = dict(bronze[entity].groupBy(SOURCE_COLUMN).count().collect())
            for source in sources_for(entity, options.sources[entity], options.input_dir):
                inputs.append(_source_dataset(source, pg, per_source.get(source.label, 0)))
            bronze_tables.append(
                file_dataset(run_dir, "parquet", bronze[entity].schema, sum(per_source.values()))
            )
        step.rows_out = sum(ref.rows or 0 for ref in bronze_tables)
    run.record_lineage(step, inputs, bronze_tables)

    with run.step("quality (silver)") as step:
        params = QualityParams.from_config(
            {**options.quality, "strict": options.strict or options.quality.get("strict", False)},
            as_of=started_at,
        )
        extra_keys = previous_keys
        result = build_silver(bronze, params, extra_keys or None).persist()
        summary.counts = result.counts().check()
        earlier_silver = [
            file_dataset(options.layer("silver") / entity, "parquet")
            for entity in ENTITIES
            if options.incremental and (options.layer("silver") / entity).exists()
        ]
        silver = write_silver(spark, result, options)
        quarantined = write_quarantine(result, options, summary.run_id, pg)
        step.rows_in = sum(e.rows_in for e in summary.counts.entities)
        step.rows_out = sum(e.silver for e in summary.counts.entities)
        step.extra["quarantined"] = quarantined
        result.unpersist()
        silver_tables = _tables(
            options.layer("silver"),
            {entity: frame.schema for entity, frame in silver.items()},
            {entity: frame.count() for entity, frame in silver.items()},
        )
        outputs = list(silver_tables)
        quarantine_dir = options.layer("quarantine") / f"run_id={summary.run_id}"
        quarantine_schema = result.quarantine.schema
        outputs.append(file_dataset(quarantine_dir, "parquet", quarantine_schema, quarantined))
        if pg is not None and quarantined:
            outputs.append(postgres_dataset(pg, "quarantine.rows", None, quarantined))
        summary.watermarks = high_water_marks(bronze, started_at)
    run.record_lineage(step, bronze_tables + earlier_silver, outputs)

    with run.step("analytics (gold)") as step:
        # Six gold outputs read the order lines: join them once and keep them while gold is
        # written (measured: docs/optimizations.md, "Caching the reused DataFrames").
        as_of = resolve_as_of(silver["orders"])
        lines = gold_order_lines(silver["orders"], silver["products"], as_of).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        try:
            gold = build_gold(
                silver["customers"], silver["products"], silver["orders"], as_of, lines=lines
            )
            summary.gold_rows = write_gold(gold, options)
        finally:
            lines.unpersist()
        step.rows_out = sum(summary.gold_rows.values())
        gold_schemas = {name: _gold_schema(name, frame) for name, frame in gold.items()}
        gold_tables = _tables(options.layer("gold"), gold_schemas, summary.gold_rows)
        reports = _tables(
            options.layer("reports"),
            gold_schemas,
            {mart: summary.gold_rows[mart] for mart in MARTS},
            "csv",
            ".csv",
        )
    run.record_lineage(step, silver_tables, gold_tables + reports)

    with run.step("snapshot") as step:
        snapshot = write_snapshot(
            options.layer("gold"),
            options.layer("snapshots"),
            summary.run_id,
            summary.gold_rows,
            dt.datetime.now(dt.timezone.utc),
        )
        apply_retention(options.layer("snapshots"), options.snapshot_retention)
        summary.snapshot = str(snapshot.path)
        step.rows_out = sum(snapshot.tables.values())
        copies = _tables(snapshot.path, gold_schemas, snapshot.tables, "snapshot")
    run.record_lineage(step, gold_tables, copies)

    if options.export_postgres and pg is not None:
        with run.step("export (PostgreSQL)") as step:
            gold_written = read_gold(spark, options)
            entities = {k: v for k, v in gold_written.items() if k in ENTITIES}
            marts = {k: v for k, v in gold_written.items() if k not in ENTITIES}
            summary.postgres_rows = {
                **export_to_postgres(entities, pg, merge=options.incremental),
                **export_to_postgres(marts, pg),
            }
            step.rows_out = sum(summary.postgres_rows.values())
            tables = [
                postgres_dataset(pg, f"analytics.{name}", gold_written[name].schema, rows)
                for name, rows in summary.postgres_rows.items()
            ]
        run.record_lineage(step, gold_tables, tables)


def _increments(pg: PgSettings | None, options: BatchOptions) -> dict[str, Increment]:
    """Where an incremental run starts: the watermarks and the last successful run's start."""
    if pg is None:
        raise ValueError("--incremental needs PostgreSQL: the high-water marks are kept there")
    marks = audit.read_watermarks(pg, options.pipeline_name)
    if not marks:
        raise ValueError(
            "--incremental: no earlier successful batch run recorded in audit.watermarks; "
            "run once without --incremental first"
        )
    last_start = audit.last_successful_start(pg, options.pipeline_name)
    return {e: Increment(marks.get(e), last_start) for e in ENTITIES}


def _write_run_file(options: BatchOptions, summary: BatchSummary) -> None:
    """The run summary as JSON next to the reports, for tools that do not read PostgreSQL."""
    runs = options.layer("runs")
    runs.mkdir(parents=True, exist_ok=True)
    payload = {
        "run_id": summary.run_id,
        "mode": summary.mode,
        "status": summary.status,
        "started_at": summary.started_at,
        "finished_at": summary.finished_at,
        "spark_app_id": summary.spark_app_id,
        "rows": summary.rows_json(),
        "quarantined": summary.quarantined_json(),
        "steps": [step.as_dict() for step in summary.steps],
        "snapshot": summary.snapshot,
        "lineage": summary.lineage_file,
        "error": summary.error,
    }
    (runs / f"{summary.run_id}.json").write_text(json.dumps(payload, indent=2, default=str))
