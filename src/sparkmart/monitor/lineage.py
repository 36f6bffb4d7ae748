"""Lineage: which datasets each step of a run read and wrote, with their schema and row count.

Every run becomes OpenLineage run events (https://openlineage.io/spec/2-0-2/OpenLineage.json),
written by the ``openlineage-python`` client's ``FileTransport`` as one JSON event per line:

- the pipeline run: START when the run begins, COMPLETE or FAIL when it ends (job
  ``<pipeline>``, run id = the pipeline's run id as a UUID);
- each step: START and COMPLETE with its ``inputs`` and ``outputs`` (job ``<pipeline>.<step>``,
  its own run id, a ``parent`` facet pointing at the pipeline run). Datasets carry the ``schema``
  and ``storage`` facets, and ``inputStatistics`` / ``outputStatistics`` with the row count.

Dataset names follow OpenLineage's naming: files are namespace ``file`` and their absolute
path; PostgreSQL tables are namespace ``postgres://host:port`` and ``database.schema.table``.

The same datasets go to ``audit.lineage`` (one row per step and dataset, with who recorded it
and when), whose outputs are the audit trail of every write (view ``audit.writes``).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql.types import StructType

from sparkmart.io.postgres import PgSettings, split_table_name
from sparkmart.monitor import audit
from sparkmart.spark_utils import get_logger

JOB_NAMESPACE = "sparkmart"


def _producer() -> str:
    """What produced the events (a URI, as the spec asks): this package and its version."""
    try:
        version = importlib.metadata.version("sparkmart")
    except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
        version = "dev"
    return f"urn:sparkmart:{version}:monitor"


PRODUCER = _producer()

_log = get_logger("lineage")


@dataclass(frozen=True)
class DatasetRef:
    """One dataset a step read or wrote, named the OpenLineage way."""

    namespace: str
    name: str
    format: str
    schema: StructType | None = None
    rows: int | None = None

    def schema_fields(self) -> list[dict[str, Any]]:
        if self.schema is None:
            return []
        return [
            {"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable}
            for f in self.schema.fields
        ]

    @property
    def storage_layer(self) -> str:
        return "postgres" if self.namespace.startswith("postgres://") else "file"


def file_dataset(
    path: str | Path, fmt: str, schema: StructType | None = None, rows: int | None = None
) -> DatasetRef:
    """A file dataset (a directory of Parquet parts, one CSV, a snapshot...) by absolute path."""
    return DatasetRef("file", str(Path(path).resolve()), fmt, schema, rows)


def postgres_dataset(
    pg: PgSettings, table: str, schema: StructType | None = None, rows: int | None = None
) -> DatasetRef:
    """A PostgreSQL table (``schema.table``) as ``postgres://host:port`` + ``db.schema.table``."""
    schema_name, table_name = split_table_name(table)
    return DatasetRef(
        f"postgres://{pg.host}:{pg.port}",
        f"{pg.dbname}.{schema_name}.{table_name}",
        "postgres",
        schema,
        rows,
    )


def as_uuid(run_id: str) -> str:
    """OpenLineage wants UUIDs: a run id that is one (with or without dashes) is kept, any
    other string maps to a stable name-based UUID."""
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sparkmart:{run_id}"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class LineageRecorder:
    """Emits a run's OpenLineage events to ``events_file`` and keeps them in ``audit.lineage``."""

    def __init__(
        self,
        run_id: str,
        pipeline: str,
        events_file: Path,
        pg: PgSettings | None = None,
        *,
        spark_version: str | None = None,
        job_namespace: str = JOB_NAMESPACE,
    ) -> None:
        self.run_id = run_id
        self.pipeline = pipeline
        self.events_file = events_file
        self.pg = pg
        self.spark_version = spark_version
        self.job_namespace = job_namespace
        self.ol_run_id = as_uuid(run_id)
        self.client = _file_client(events_file)
        if pg is not None:
            audit.ensure_audit_tables(pg)

    # -- events ---------------------------------------------------------------------------

    def _run_facets(self, parent: bool, error: str | None = None) -> dict[str, Any]:
        from openlineage.client.facet_v2 import (
            error_message_run,
            parent_run,
            processing_engine_run,
        )

        facets: dict[str, Any] = {}
        if self.spark_version:
            facets["processing_engine"] = processing_engine_run.ProcessingEngineRunFacet(
                version=self.spark_version, name="spark", producer=PRODUCER
            )
        if parent:
            facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=self.ol_run_id),
                job=parent_run.Job(namespace=self.job_namespace, name=self.pipeline),
                producer=PRODUCER,
            )
        if error:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="PYTHON", producer=PRODUCER
            )
        return facets

    def _job(self, name: str, job_type: str) -> Any:
        from openlineage.client.event_v2 import Job
        from openlineage.client.facet_v2 import job_type_job

        return Job(
            namespace=self.job_namespace,
            name=name,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH" if self.pipeline != "stream" else "STREAMING",
                    integration="SPARK",
                    jobType=job_type,
                    producer=PRODUCER,
                )
            },
        )

    def _emit(
        self,
        state: str,
        job_name: str,
        job_type: str,
        run_id: str,
        at: dt.datetime,
        *,
        parent: bool = False,
        error: str | None = None,
        inputs: Sequence[DatasetRef] = (),
        outputs: Sequence[DatasetRef] = (),
    ) -> None:
        if self.client is None:
            return
        from openlineage.client.event_v2 import Run, RunEvent, RunState

        event = RunEvent(
            eventType=RunState[state],
            eventTime=at.isoformat(),
            run=Run(runId=run_id, facets=self._run_facets(parent, error)),
            job=self._job(job_name, job_type),
            inputs=[_input_dataset(ref) for ref in inputs],
            outputs=[_output_dataset(ref) for ref in outputs],
            producer=PRODUCER,
        )
        self.client.emit(event)

    def start(self, at: dt.datetime | None = None) -> None:
        """The pipeline run began."""
        self._emit("START", self.pipeline, "JOB", self.ol_run_id, at or _now())

    def finish(self, status: str, error: str | None = None, at: dt.datetime | None = None) -> None:
        """The pipeline run ended: ``succeeded`` -> COMPLETE, anything else -> FAIL."""
        state = "COMPLETE" if status == "succeeded" else "FAIL"
        self._emit(state, self.pipeline, "JOB", self.ol_run_id, at or _now(), error=error)

    def record(
        self,
        step: str,
        inputs: Sequence[DatasetRef],
        outputs: Sequence[DatasetRef],
        started_at: dt.datetime | None = None,
        finished_at: dt.datetime | None = None,
    ) -> str:
        """One finished step: its START and COMPLETE events and its ``audit.lineage`` rows.
        Returns the step's OpenLineage run id."""
        step_run_id = str(uuid.uuid4())
        job_name = f"{self.pipeline}.{step}"
        started_at = started_at or _now()
        finished_at = finished_at or _now()
        self._emit("START", job_name, "TASK", step_run_id, started_at, parent=True)
        self._emit(
            "COMPLETE",
            job_name,
            "TASK",
            step_run_id,
            finished_at,
            parent=True,
            inputs=inputs,
            outputs=outputs,
        )
        if self.pg is not None:
            audit.record_lineage(
                self.pg,
                self.run_id,
                self.pipeline,
                step,
                step_run_id,
                [("input", _row(ref)) for ref in inputs]
                + [("output", _row(ref)) for ref in outputs],
            )
        _log.debug("lineage of %s: %d in, %d out", step, len(inputs), len(outputs))
        return step_run_id

    def close(self) -> None:
        if self.client is not None:
            self.client.close(timeout=5)


def _file_client(events_file: Path) -> Any:
    """An OpenLineage client appending to ``events_file``; None (with a warning) when
    ``openlineage-python`` is not installed: lineage then goes to ``audit.lineage`` only."""
    try:
        from openlineage.client import OpenLineageClient
        from openlineage.client.transport.file import FileConfig, FileTransport
    except ImportError:
        _log.warning(
            "openlineage-python is not installed: no OpenLineage events in %s "
            "(pip install 'openlineage-python>=1.54,<2')",
            events_file,
        )
        return None
    events_file.parent.mkdir(parents=True, exist_ok=True)
    transport = FileTransport(FileConfig(log_file_path=str(events_file), append=True))
    return OpenLineageClient(transport=transport)


def _row(ref: DatasetRef) -> Mapping[str, Any]:
    return {
        "namespace": ref.namespace,
        "name": ref.name,
        "format": ref.format,
        "schema": ref.schema_fields(),
        "rows": ref.rows,
    }


def _dataset_facets(ref: DatasetRef) -> dict[str, Any]:
    from openlineage.client.facet_v2 import schema_dataset, storage_dataset

    facets: dict[str, Any] = {
        "storage": storage_dataset.StorageDatasetFacet(
            storageLayer=ref.storage_layer, fileFormat=ref.format, producer=PRODUCER
        )
    }
    if ref.schema is not None:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(
                    name=f["name"], type=f["type"], ordinal_position=i
                )
                for i, f in enumerate(ref.schema_fields(), start=1)
            ],
            producer=PRODUCER,
        )
    return facets


def _input_dataset(ref: DatasetRef) -> Any:
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import input_statistics_input_dataset as stats

    facets = {}
    if ref.rows is not None:
        facets["inputStatistics"] = stats.InputStatisticsInputDatasetFacet(
            rowCount=ref.rows, producer=PRODUCER
        )
    return InputDataset(ref.namespace, ref.name, facets=_dataset_facets(ref), inputFacets=facets)


def _output_dataset(ref: DatasetRef) -> Any:
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

    facets = {}
    if ref.rows is not None:
        facets["outputStatistics"] = stats.OutputStatisticsOutputDatasetFacet(
            rowCount=ref.rows, producer=PRODUCER
        )
    return OutputDataset(ref.namespace, ref.name, facets=_dataset_facets(ref), outputFacets=facets)
