"""spark-submit entry point for the ML models (train, evaluate, score).

    spark-submit scripts/ml_models.py train --models segmentation,fraud
    spark-submit scripts/ml_models.py score            # writes gold + PostgreSQL analytics.*

The package must be importable by the driver and executors (installed, or --py-files).
"""

import argparse
import sys

from sparkmart.config import load_settings
from sparkmart.io.postgres import PgSettings
from sparkmart.ml.pipeline import MODELS, run_ml
from sparkmart.spark_utils import get_spark

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["train", "evaluate", "score"])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--config-dir")
    parser.add_argument("--profile")
    parser.add_argument("--data-dir")
    parser.add_argument("--no-postgres", action="store_true", help="score: gold Parquet only")
    args = parser.parse_args()
    settings = load_settings(args.config_dir, args.profile, data_dir=args.data_dir)
    pg = None if args.no_postgres or args.action != "score" else PgSettings.from_env()
    summary = run_ml(settings, get_spark(settings.spark), args.action, args.models.split(","), pg)
    print(summary.format())
    sys.exit(summary.exit_status)  # evaluate: 1 when a target is missed
