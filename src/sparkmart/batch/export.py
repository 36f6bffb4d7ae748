"""Export the gold layer: partitioned Parquet, CSV reports, immutable snapshots, PostgreSQL.

Every writer here either completes or leaves its target as it was: Parquet and CSV go to a
temporary sibling directory that is renamed into place; snapshots are new directories that are
never rewritten; PostgreSQL tables are replaced or merged in one transaction
(``io.postgres.replace_table_atomically`` / ``merge_into``).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sparkmart.io.postgres import PgSettings, merge_into, replace_table_atomically

# How each gold output is laid out on disk and keyed in PostgreSQL.
PARTITION_COLUMNS: dict[str, list[str]] = {"orders": ["order_month"]}
TABLE_KEYS: dict[str, list[str]] = {
    "customers": ["customer_id"],
    "products": ["product_id"],
    "orders": ["order_id"],
    "customer_ltv": ["customer_id"],
    "product_performance": ["product_id"],
    "sales_trends": ["grain", "period_start"],
    "cohorts": ["cohort_month", "months_since_first"],
}
MARTS = ("customer_ltv", "product_performance", "sales_trends", "cohorts")
SNAPSHOT_MANIFEST = "_SNAPSHOT.json"


def with_order_month(orders: DataFrame) -> DataFrame:
    """The partition column of gold orders: the order's month, ``yyyy-MM``."""
    return orders.withColumn("order_month", F.date_format("order_ts", "yyyy-MM"))


def _swap_into_place(staged: Path, target: Path) -> None:
    """Replace ``target`` with ``staged``; the old copy is removed only after the rename."""
    previous = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(previous)
    staged.rename(target)
    if previous.exists():
        shutil.rmtree(previous)


def write_parquet_atomically(
    df: DataFrame, target: Path, partition_by: list[str] | None = None
) -> None:
    """Write Parquet next to ``target`` and rename it into place when the write succeeded."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        writer = df.write.mode("errorifexists")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.parquet(str(staged))
        _swap_into_place(staged, target)
    finally:
        if staged.exists():
            shutil.rmtree(staged)


def write_csv_report(df: DataFrame, target: Path) -> Path:
    """One CSV file with a header (ready for a spreadsheet) at ``target`` (``<name>.csv``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.stem}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        (
            df.coalesce(1)
            .write.mode("errorifexists")
            .options(header=True, timestampFormat="yyyy-MM-dd HH:mm:ss", dateFormat="yyyy-MM-dd")
            .csv(str(staged))
        )
        (part,) = staged.glob("part-*.csv")
        part.replace(target)
    finally:
        if staged.exists():
            shutil.rmtree(staged)
    return target


@dataclass(frozen=True)
class Snapshot:
    name: str
    path: Path
    created_at: str
    run_id: str
    tables: dict[str, int]


def write_snapshot(
    gold_dir: Path,
    snapshots_dir: Path,
    run_id: str,
    row_counts: Mapping[str, int],
    now: dt.datetime,
) -> Snapshot:
    """Copy the gold layer into a new dated directory; a snapshot is never rewritten."""
    name = now.strftime("%Y%m%dT%H%M%SZ") + f"-{run_id[:8]}"
    target = snapshots_dir / name
    if target.exists():
        raise FileExistsError(f"snapshot {target} already exists; snapshots are immutable")
    snapshots_dir.mkdir(parents=True, exist_ok=True)
    staged = snapshots_dir / f".{name}.tmp"
    shutil.copytree(gold_dir, staged, ignore=shutil.ignore_patterns(".*"))
    manifest = {
        "name": name,
        "created_at": now.isoformat(),
        "run_id": run_id,
        "tables": dict(row_counts),
    }
    (staged / SNAPSHOT_MANIFEST).write_text(json.dumps(manifest, indent=2))
    staged.rename(target)
    return Snapshot(name, target, manifest["created_at"], run_id, dict(row_counts))


def list_snapshots(snapshots_dir: Path) -> list[Snapshot]:
    """Complete snapshots, oldest first (a directory without a manifest is not one)."""
    found = []
    if not snapshots_dir.exists():
        return found
    for manifest_path in sorted(snapshots_dir.glob(f"*/{SNAPSHOT_MANIFEST}")):
        manifest = json.loads(manifest_path.read_text())
        found.append(
            Snapshot(
                manifest["name"],
                manifest_path.parent,
                manifest["created_at"],
                manifest["run_id"],
                manifest["tables"],
            )
        )
    return sorted(found, key=lambda snap: snap.created_at)


def apply_retention(snapshots_dir: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` snapshots; returns the names deleted."""
    if keep < 1:
        raise ValueError(f"snapshot retention must keep at least 1, got {keep}")
    snapshots = list_snapshots(snapshots_dir)
    doomed = snapshots[:-keep] if len(snapshots) > keep else []
    for snapshot in doomed:
        shutil.rmtree(snapshot.path)
    return [snapshot.name for snapshot in doomed]


def export_to_postgres(
    gold: Mapping[str, DataFrame],
    pg: PgSettings,
    schema_name: str = "analytics",
    merge: bool = False,
) -> dict[str, int]:
    """Replace (full run) or merge (incremental run) each gold table in ``schema_name``.

    Each table is all-or-nothing on its own; a failure stops the export with the tables
    already done left complete and the failing one (and all after it) left as they were.
    """
    written: dict[str, int] = {}
    for name, df in gold.items():
        table = f"{schema_name}.{name}"
        keys = TABLE_KEYS[name]
        if merge:
            written[name] = merge_into(df, pg, table, keys).rows
        else:
            written[name] = replace_table_atomically(df, pg, table, primary_key=keys)
    return written
