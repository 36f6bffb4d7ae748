"""Write one generator run: entities in each format, the ground truth, the stream's seed events.

Parquet and Avro go through ``io.files.write_dataset``. CSV and JSON are written as text lines
built in Spark (``to_csv``/``to_json`` with the readers' TEXT_OPTIONS) so the planted garbage
lines can be mixed in with the good ones. Row counts come from ``DataFrame.observe`` during the
writes themselves: no extra pass over the data. Each entity's ``shared`` frame is cached
(memory, spilling to disk) for the duration of the call: the first write of an entity fills
it, the other formats, the truth tables and the garbage lines read it, so nothing is generated
twice.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F

from sparkmart.generate.defects import csv_line, json_line
from sparkmart.generate.entities import partitions_for
from sparkmart.generate.generator import GeneratedData
from sparkmart.io.files import check_format, dataset_path, write_dataset
from sparkmart.schemas import ENTITIES, RAW_SCHEMAS
from sparkmart.spark_utils import get_logger, timed

TEXT_FORMATS = ("csv", "json")
# CSV written as pre-built lines: one column whose *name* is the header, a separator that
# never occurs and no quoting, so every part file starts with the header and lines stay as is.
LINE_CSV_OPTIONS = {
    "header": "true",
    "sep": "\u0001",
    "quote": "",
    "escape": "",
    "ignoreLeadingWhiteSpace": "false",
    "ignoreTrailingWhiteSpace": "false",
}
_observations = itertools.count()


def _observed(df: DataFrame, *metrics: Column) -> tuple[DataFrame, Observation]:
    observation = Observation(f"generate_{next(_observations)}")
    return df.observe(observation, *metrics), observation


def _count(df: DataFrame) -> tuple[DataFrame, Observation]:
    return _observed(df, F.count(F.lit(1)).alias("rows"))


def text_lines(
    rows: DataFrame, garbage: DataFrame, entity: str, fmt: str, partitions: int
) -> DataFrame:
    """Good lines and garbage lines of one entity, mixed over the partitions.

    Columns: ``line`` and ``garbage`` (true for a planted malformed line).
    """
    columns = RAW_SCHEMAS[entity].fieldNames()
    build = csv_line if fmt == "csv" else json_line
    good = rows.select(build(columns).alias("line"), F.lit(False).alias("garbage"))
    bad = garbage.select(F.col("value").alias("line"), F.lit(True).alias("garbage"))
    return good.unionByName(bad).repartition(partitions, F.xxhash64("line"))


def write_text(lines: DataFrame, path: Path, fmt: str, entity: str) -> dict[str, int]:
    """Write pre-built lines as CSV (with a header in every file) or JSON lines."""
    observed, observation = _observed(
        lines,
        F.count(F.lit(1)).alias("lines"),
        F.sum(F.col("garbage").cast("long")).alias("malformed"),
    )
    if fmt == "csv":
        header = ",".join(RAW_SCHEMAS[entity].fieldNames())
        (
            observed.select(F.col("line").alias(header))
            .write.mode("overwrite")
            .options(**LINE_CSV_OPTIONS)
            .csv(str(path))
        )
    else:
        observed.select(F.col("line").alias("value")).write.mode("overwrite").text(str(path))
    metrics = observation.get
    malformed = int(metrics.get("malformed") or 0)
    return {"rows": int(metrics["lines"]) - malformed, "malformed_lines": malformed}


def write_generated(
    data: GeneratedData, out: Path, formats: list[str], streaming_dir: Path | None = None
) -> dict[str, Any]:
    """Write every entity in every format, the truth tables, and (optionally) the seed events.

    Returns the run summary: ``{entity: {format: rows written}}`` (data rows; duplicates
    included, garbage lines excluded), plus ``malformed_lines`` per entity (in each of the CSV
    and JSON outputs), ``truth`` rows per table and ``seed_events`` rows.
    """
    log = get_logger("generate")
    out = Path(out)
    for fmt in formats:
        check_format(fmt)
    shared = list(data.shared.values())
    for frame in shared:  # filled by the first write of each entity, read by the others
        frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _write_all(data, out, formats, streaming_dir, log)
    finally:
        for frame in shared:  # blocking: an asynchronous removal races a SparkSession.stop()
            frame.unpersist(blocking=True)


def _write_all(
    data: GeneratedData,
    out: Path,
    formats: list[str],
    streaming_dir: Path | None,
    log: logging.Logger,
) -> dict[str, Any]:
    summary: dict[str, Any] = {entity: {} for entity in ENTITIES}
    malformed: dict[str, int] = {}
    for entity in ENTITIES:
        for fmt in formats:
            path = dataset_path(out, fmt, entity)
            with timed(f"write {fmt}/{entity}", log) as timing:
                if fmt in TEXT_FORMATS:
                    frame = data.entity(entity)
                    partitions = partitions_for(frame.sparkSession, data.plan.rows(entity))
                    lines = text_lines(frame, data.malformed_lines[entity], entity, fmt, partitions)
                    counts = write_text(lines, path, fmt, entity)
                    malformed[entity] = counts["malformed_lines"]
                    rows = counts["rows"]
                else:
                    observed, observation = _count(data.entity(entity))
                    write_dataset(observed, path, fmt)
                    rows = int(observation.get["rows"])
                timing.rows_out = rows
            summary[entity][fmt] = rows
    if malformed:
        summary["malformed_lines"] = malformed

    truth_rows: dict[str, int] = {}
    for name, frame in data.truth.items():
        with timed(f"write truth/{name}", log) as timing:
            observed, observation = _count(frame)
            write_dataset(observed, out / "truth" / name, "parquet")
            truth_rows[name] = timing.rows_out = int(observation.get["rows"])
    summary["truth"] = truth_rows

    if streaming_dir is not None:
        with timed("write seed events", log) as timing:
            events = data.seed_events.repartition(1).sortWithinPartitions("event_time", "event_id")
            observed, observation = _count(events)
            write_dataset(observed, Path(streaming_dir) / "seed_events", "parquet")
            summary["seed_events"] = timing.rows_out = int(observation.get["rows"])
    return summary
