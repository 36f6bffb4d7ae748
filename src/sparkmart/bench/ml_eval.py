"""Train and evaluate every ML model on `small` data and record the results in docs/ml.md.

    make bench-ml                                      # = python -m sparkmart.bench.ml_eval
    python -m sparkmart.bench.ml_eval --data-dir /tmp/ml_small         # gold + truth exist
    python -m sparkmart.bench.ml_eval --data-dir /tmp/ml_small --prepare   # generate + batch again

Without ``--data-dir`` the data lives in ``<tmp>/sparkmart-ml/<scale>``; a data dir without a
gold layer is prepared (generated and batched) first.

The targets of issue 5 are checked against the generator's ground truth; the numbers are written
between the ``<!-- bench:ml-eval -->`` markers of docs/ml.md, whatever they are.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from sparkmart.bench.report import machine_description, markdown_table, update_section
from sparkmart.config import load_settings
from sparkmart.ml.pipeline import MODELS, MLSummary, run_ml
from sparkmart.spark_utils import get_logger, get_spark

ML_MD = Path(__file__).resolve().parents[3] / "docs" / "ml.md"
SECTION = "ml-eval"


def prepare(data_dir: Path, scale: str, profile: str) -> None:
    """Generate `scale` data as Parquet and run the batch pipeline (no PostgreSQL export)."""
    from sparkmart.batch.pipeline import BatchOptions, run_batch
    from sparkmart.generate import generate, resolve_counts, write_generated

    settings = load_settings(profile=profile, data_dir=data_dir)
    spark = get_spark(settings.spark)
    gen = settings.pipeline["generate"]
    data = generate(spark, resolve_counts(settings, scale), gen["seed"], gen)
    write_generated(data, settings.path("raw"), ["parquet"], None)
    options = BatchOptions.from_settings(settings, source="parquet", export_postgres=False)
    run_batch(spark, settings, options, None)


def _number(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def report(
    summary: MLSummary,
    scale: str,
    seconds: float,
    failures: dict[str, str],
    load: tuple[float, float],
) -> str:
    rows = []
    for outcome in summary.outcomes:
        for target in outcome.targets:
            sign = ">=" if target.higher_is_better else "<="
            rows.append(
                [
                    outcome.name,
                    target.metric,
                    _number(target.value),
                    f"{sign} {target.goal:g}",
                    "met" if target.met else "**not met**",
                    f"{outcome.seconds:.0f}",
                ]
            )
    details = []
    for outcome in summary.outcomes:
        shown = {k: v for k, v in outcome.metrics.items() if not isinstance(v, (list, dict))}
        details.append(
            f"- **{outcome.name}** (v{outcome.version}): `{json.dumps(shown, default=_number)}`"
        )
    return "\n".join(
        [
            f"Measured by `python -m sparkmart.bench.ml_eval` on `{scale}` data (seed 42), "
            f"`local[2]`; {machine_description()}. Total {seconds:.0f} s (training and "
            f"evaluation of all five models); load average {load[0]:.1f} at the start, "
            f"{load[1]:.1f} at the end.",
            "",
            markdown_table(["model", "metric", "value", "target", "result", "train s"], rows),
            "",
            *details,
            *[f"- **{name}** failed: `{error}`" for name, error in failures.items()],
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--profile", default="local")
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--prepare", action="store_true", help="generate and batch first")
    parser.add_argument("--no-write", action="store_true", help="print only; keep docs as is")
    args = parser.parse_args(argv)
    log = get_logger("bench.ml")
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / "sparkmart-ml" / args.scale
    settings = load_settings(profile=args.profile, data_dir=data_dir)
    if args.prepare or not (settings.path("gold") / "orders").exists():
        prepare(data_dir, args.scale, args.profile)
    spark = get_spark(settings.spark)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    summary = MLSummary("train")
    failures: dict[str, str] = {}
    for name in args.models.split(",") if args.models else MODELS:
        try:  # one model failing must not lose the others' measurements
            summary.outcomes += run_ml(settings, spark, "train", [name]).outcomes
        except Exception as exc:
            log.exception("training %s failed", name)
            failures[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    seconds = time.perf_counter() - started
    log.info("trained and evaluated in %.0f s", seconds)
    text = report(summary, args.scale, seconds, failures, (load_start, os.getloadavg()[0]))
    print(summary.format())
    if not args.no_write:
        print(f"\nwritten to {update_section(SECTION, text, ML_MD)}")


if __name__ == "__main__":
    main()
