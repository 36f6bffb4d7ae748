"""Spark-native synthetic retail data with planted structure, quality defects and ground truth.

    counts = resolve_counts(settings, "small", None, None, None)
    data = generate(spark, counts, seed=42, gen_config=settings.pipeline["generate"])
    summary = write_generated(data, Path("data/batch/raw"), ["parquet", "csv"], streaming_dir)

What is planted and how the truth tables record it: docs/generator.md.
"""

from sparkmart.generate.generator import GeneratedData, generate, postgres_seed, resolve_counts
from sparkmart.generate.writer import write_generated

__all__ = ["GeneratedData", "generate", "postgres_seed", "resolve_counts", "write_generated"]
