"""spark-submit entry point for the generator.

    spark-submit scripts/data_generator_spark.py --scale medium --out data/batch/raw

Takes the same options as `sparkmart generate`; the package must be importable by the driver
(installed, or shipped with --py-files).
"""

import sys

from sparkmart.cli import app

if __name__ == "__main__":
    app(["generate", *sys.argv[1:]])
