"""spark-submit entry point for the streaming query.

    spark-submit scripts/stream_pipeline.py --source files --until-idle 30
    spark-submit scripts/stream_pipeline.py --source socket --host 127.0.0.1 --port 9999

Options: ``--help``. The package must be importable by the driver and executors (installed, or
shipped with --py-files); PostgreSQL comes from DATABASE_URL / PG* as everywhere else.
"""

import sys

from sparkmart.stream.query import main

if __name__ == "__main__":
    sys.exit(main())
