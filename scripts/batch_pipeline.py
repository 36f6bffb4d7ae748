"""spark-submit entry point for the batch pipeline.

    spark-submit scripts/batch_pipeline.py --input data/batch/raw --source parquet

Takes the same options as `sparkmart batch`; the package must be importable by the driver and
executors (installed, or shipped with --py-files).
"""

import sys

from sparkmart.cli import app

if __name__ == "__main__":
    app(["batch", *sys.argv[1:]])
