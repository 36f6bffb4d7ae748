"""End to end: the `sparkmart` console script, run the way the README runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from sparkmart.io.files import read_dataset
from sparkmart.io.postgres import PgSettings
from sparkmart.schemas import ENTITIES, RAW_SCHEMAS

from .conftest import REPO_ROOT

SPARKMART = Path(sys.executable).parent / "sparkmart"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "SPARKMART_PROFILE": "test", **(env or {})}
    return subprocess.run(
        [str(SPARKMART), *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("generate", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--formats", "parquet,xml"], "unknown format(s) xml"),
        (["generate", "--scale", "huge"], "huge"),
        (["generate", "--target", "s3"], "unknown target 's3'"),
        (["generate", "--config-dir", "/nonexistent"], "/nonexistent"),
        (["generate", "--profile", "prod"], "unknown profile 'prod'"),
    ],
)
def test_bad_options_give_one_clear_line(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_postgres_is_reported_with_its_address() -> None:
    result = run_cli(
        "generate",
        "--target",
        "postgres",
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/sparkmart"},
    )
    assert result.returncode == 2
    assert "cannot connect to postgresql://nobody@127.0.0.1:1/" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_runs_every_stage_end_to_end(tmp_path: Path, pg: PgSettings, spark) -> None:
    """generate -> seed PostgreSQL -> batch -> a short streaming run (ML: test_ml_models.py)."""
    database_url = f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.dbname}"
    result = run_cli(
        "demo",
        "--scale",
        "tiny",
        "--data-dir",
        str(tmp_path),
        "--stream-seconds",
        "8",
        "--no-ml",
        env={"DATABASE_URL": database_url},
    )
    assert result.returncode == 0, result.stderr
    assert "demo finished" in result.stdout
    batch_output, stream_output = result.stdout.split("== 5/5", 1)
    for entity in ENTITIES:
        assert entity in result.stdout

    raw = tmp_path / "batch" / "raw"
    parquet_counts = {}
    for entity in ENTITIES:
        parquet = read_dataset(spark, raw / "parquet" / entity, "parquet", RAW_SCHEMAS[entity])
        parquet_counts[entity] = parquet.count()
        assert parquet_counts[entity] >= 1000
        for fmt in ("json", "csv", "avro"):
            assert any((raw / fmt / entity).iterdir()), f"{fmt}/{entity} is empty"
        # the summary table prints the row count per format
        assert f"{parquet_counts[entity]:,}" in result.stdout
    assert (raw / "truth" / "defects").is_dir()
    assert (tmp_path / "streaming" / "seed_events").is_dir()

    batch = tmp_path / "batch"
    for layer in ("bronze", "silver", "gold", "quarantine", "snapshots"):
        assert any((batch / layer).iterdir()), f"batch/{layer} is empty"
    for mart in ("customer_ltv", "product_performance", "sales_trends", "cohorts"):
        assert (batch / "reports" / f"{mart}.csv").stat().st_size > 0
    assert "balanced" in batch_output and " NO" not in batch_output
    assert "alerts against the simulator's planted anomalies" in stream_output

    with psycopg.connect(host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user) as conn:
        for entity in ENTITIES:
            count = conn.execute(f"SELECT count(*) FROM public.{entity}").fetchone()[0]
            assert count == 1000
            gold = conn.execute(f"SELECT count(*) FROM analytics.{entity}").fetchone()[0]
            assert gold > 900  # tiny: 1,000 generated, minus the quarantined rows
        (status,) = conn.execute(
            "SELECT status FROM audit.pipeline_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        assert status == "succeeded"
        streamed, lines, late, malformed = conn.execute(
            "SELECT sum(valid_rows), sum(input_rows), sum(late_rows), sum(malformed_rows) "
            "FROM streaming.batches WHERE query_name = 'demo'"
        ).fetchone()
        assert streamed > 0 and lines == streamed + late + malformed
        (counted,) = conn.execute("SELECT sum(orders) FROM streaming.revenue_daily").fetchone()
        assert counted == streamed  # every on-time event once in the running totals
