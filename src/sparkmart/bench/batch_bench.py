"""The whole batch pipeline at `medium` (1M customers, products and orders), end to end.

    make bench-batch           # or: python -m sparkmart.bench.batch_bench --runs 3

Generates the data once as Parquet, then runs the full pipeline (bronze -> silver -> gold ->
Parquet, CSV reports, snapshot and the PostgreSQL export of analytics.*) several times into a
scratch output directory and a scratch database, and reports the median of each step.
"""

from __future__ import annotations

import time
from pathlib import Path

from sparkmart.batch.pipeline import BatchOptions, BatchSummary, run_batch
from sparkmart.bench.report import (
    machine_description,
    markdown_table,
    median,
    run_benchmark_cli,
)
from sparkmart.config import load_settings
from sparkmart.generate import generate, resolve_counts, write_generated
from sparkmart.io.postgres import PgSettings, drop_database, ensure_database, ensure_schemas
from sparkmart.schemas import ENTITIES
from sparkmart.spark_utils import get_logger, get_spark

TARGET_SECONDS = 180.0
BENCH_DATABASE = "sparkmart_bench"


def run(scale: str, runs: int, profile: str, scratch: Path) -> dict[str, object]:
    log = get_logger("bench.batch")
    settings = load_settings(profile=profile)
    spark = get_spark(settings.spark)
    gen_config = settings.pipeline["generate"]
    counts = resolve_counts(settings, scale)
    raw = scratch / "raw"
    started = time.perf_counter()
    write_generated(generate(spark, counts, gen_config["seed"], gen_config), raw, ["parquet"], None)
    log.info("generated %s in %.0f s", counts, time.perf_counter() - started)

    pg = PgSettings.from_env().with_database(BENCH_DATABASE)
    drop_database(pg)
    ensure_database(pg)
    ensure_schemas(pg)
    summaries: list[BatchSummary] = []
    try:
        for attempt in range(runs):
            options = BatchOptions.from_settings(
                settings, raw, scratch / f"batch-{attempt}", "parquet"
            )
            summary = run_batch(spark, settings, options, pg)
            log.info("run %d: %.0f s", attempt + 1, sum(s.seconds for s in summary.steps))
            summaries.append(summary)
    finally:
        drop_database(pg)
    spark.stop()
    return {
        "scale": scale,
        "counts": counts,
        "summaries": summaries,
        "master": settings.spark.master,
    }


def report(result: dict[str, object]) -> str:
    summaries: list[BatchSummary] = result["summaries"]  # type: ignore[assignment]
    counts: dict[str, int] = result["counts"]  # type: ignore[assignment]
    rows_in = sum(counts[e] for e in ENTITIES)
    step_names = [step.name for step in summaries[0].steps]
    rows = []
    for index, name in enumerate(step_names):
        seconds = [s.steps[index].seconds for s in summaries]
        step_rows = summaries[0].steps[index].rows_out or summaries[0].steps[index].rows_in
        rows.append(
            [
                name,
                f"{median(seconds):.1f}",
                f"{step_rows:,}" if step_rows else "",
                f"{step_rows / median(seconds):,.0f}" if step_rows else "",
            ]
        )
    totals = [sum(step.seconds for step in s.steps) for s in summaries]
    total = median(totals)
    rows.append(["**total**", f"**{total:.1f}**", f"{rows_in:,} in", f"{rows_in / total:,.0f}"])
    verdict = "met" if total < TARGET_SECONDS else "NOT met"
    quality = summaries[0].counts
    return "\n".join(
        [
            f"## Batch pipeline: `{result['scale']}` end to end",
            "",
            f"Command: `make bench-batch`. Measured {time.strftime('%Y-%m-%d')} on "
            f"{machine_description()}; Spark `{result['master']}`.",
            "",
            f"Input: {counts['customers']:,} customers, {counts['products']:,} products, "
            f"{counts['orders']:,} orders (Parquet, with the generator's planted defects). "
            f"Median of {len(summaries)} full runs "
            f"(runs: {', '.join(f'{t:.0f}' for t in totals)} s); "
            "the JVM start and the data generation are not included. Every run writes bronze, "
            "silver, quarantine, gold (orders partitioned by month), four CSV reports, a snapshot, "
            "and replaces the seven `analytics.*` tables in PostgreSQL.",
            "",
            markdown_table(["step", "median s", "rows", "rows/s"], rows),
            "",
            f"- Target: under {TARGET_SECONDS / 60:.0f} minutes end to end including the "
            f"PostgreSQL export — {verdict} ({total:.0f} s).",
            f"- Rows quarantined: {sum(e.quarantined for e in quality.entities):,}; duplicates "  # type: ignore[union-attr]
            f"removed: {sum(e.duplicates for e in quality.entities):,}.",  # type: ignore[union-attr]
        ]
    )


def main(argv: list[str] | None = None) -> None:
    run_benchmark_cli("batch", __doc__.splitlines()[0], run, report, argv)


if __name__ == "__main__":
    main()
