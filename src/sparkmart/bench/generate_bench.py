"""Generator throughput: `medium` (1M customers, products and orders) written as Parquet and Avro.

    make bench-generate        # or: python -m sparkmart.bench.generate_bench --runs 3

Each run generates all three entities from scratch and writes them; the JVM start is measured
separately and excluded. Parquet and Avro runs alternate inside one process, so their ratio is
measured side by side.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sparkmart.bench.report import (
    machine_description,
    markdown_table,
    median,
    run_benchmark_cli,
)
from sparkmart.config import load_settings
from sparkmart.generate import generate, resolve_counts, write_generated
from sparkmart.schemas import ENTITIES
from sparkmart.spark_utils import get_logger, get_spark

TARGET_PARQUET_SECONDS = 30.0
TARGET_AVRO_RATIO = 3.0


def run(scale: str, runs: int, profile: str, scratch: Path) -> dict[str, object]:
    log = get_logger("bench.generate")
    settings = load_settings(profile=profile)
    jvm_started = time.perf_counter()
    spark = get_spark(settings.spark)
    spark.range(1).count()
    jvm_seconds = time.perf_counter() - jvm_started
    gen_config = settings.pipeline["generate"]
    counts = resolve_counts(settings, scale, None, None, None)
    total_rows = sum(counts[entity] for entity in ENTITIES)

    times: dict[str, list[float]] = {"parquet": [], "avro": []}
    for attempt in range(runs):
        for fmt in ("parquet", "avro"):
            out = scratch / f"{fmt}-{attempt}"
            started = time.perf_counter()
            data = generate(spark, counts, gen_config["seed"], gen_config)
            write_generated(data, out, [fmt], None)
            seconds = time.perf_counter() - started
            times[fmt].append(seconds)
            log.info(
                "run %d %s: %.1f s (%.0f rows/s)", attempt + 1, fmt, seconds, total_rows / seconds
            )
            shutil.rmtree(out, ignore_errors=True)
    spark.stop()
    return {
        "scale": scale,
        "counts": counts,
        "total_rows": total_rows,
        "runs": runs,
        "jvm_seconds": jvm_seconds,
        "times": times,
        "master": settings.spark.master,
    }


def report(result: dict[str, object]) -> str:
    times: dict[str, list[float]] = result["times"]  # type: ignore[assignment]
    total_rows: int = result["total_rows"]  # type: ignore[assignment]
    parquet, avro = median(times["parquet"]), median(times["avro"])
    rows = []
    for fmt, seconds in (("parquet", parquet), ("avro", avro)):
        rows.append(
            [
                fmt,
                f"{seconds:.1f}",
                f"{total_rows / seconds:,.0f}",
                ", ".join(f"{t:.1f}" for t in times[fmt]),
            ]
        )
    counts = result["counts"]
    verdict_parquet = "met" if parquet < TARGET_PARQUET_SECONDS else "NOT met"
    verdict_avro = "met" if avro / parquet <= TARGET_AVRO_RATIO else "NOT met"
    return "\n".join(
        [
            "## Generator: `medium` to Parquet and Avro",
            "",
            f"Command: `make bench-generate`. Measured {time.strftime('%Y-%m-%d')} on "
            f"{machine_description()}; Spark `{result['master']}`.",
            "",
            f"Rows: {counts['customers']:,} customers + {counts['products']:,} products + "  # type: ignore[index]
            f"{counts['orders']:,} orders = {total_rows:,}; each run generates all three from "  # type: ignore[index]
            f"scratch and writes them (plus the ground truth). Median of {result['runs']} runs; "
            f"JVM start ({result['jvm_seconds']:.1f} s) excluded.",
            "",
            markdown_table(["format", "median s", "rows/s", "runs (s)"], rows),
            "",
            f"- Target: all three entities as Parquet in under {TARGET_PARQUET_SECONDS:.0f} s — "
            f"{verdict_parquet} ({parquet:.1f} s).",
            f"- Target: Avro write within {TARGET_AVRO_RATIO:.0f}x of Parquet — {verdict_avro} "
            f"({avro / parquet:.2f}x).",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    run_benchmark_cli("generator", __doc__.splitlines()[0], run, report, argv)


if __name__ == "__main__":
    main()
