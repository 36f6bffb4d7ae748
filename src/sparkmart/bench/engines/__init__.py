"""One batch workload in four engines: Spark (the pipeline's functions), pandas, DuckDB, Polars.

``workload`` defines the steps and rules once; each engine module implements them with
``run(raw, out, params, timer)`` (Spark also takes the session). ``engines_bench`` runs them side
by side, checks that their outputs agree, and reports times and memory.
"""

ENGINES: tuple[str, ...] = ("spark", "pandas", "duckdb", "polars")
