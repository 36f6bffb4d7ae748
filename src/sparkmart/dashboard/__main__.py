"""``python -m sparkmart.dashboard [--host H] [--port P] [--config-dir DIR]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sparkmart.config import ConfigError, load_settings
from sparkmart.dashboard.app import DashboardError, serve
from sparkmart.io.postgres import PostgresError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sparkmart.dashboard", description="Serve sparkmart's web dashboard."
    )
    parser.add_argument("--host", help="address to listen on (default: dashboard.host)")
    parser.add_argument("--port", type=int, help="port (default: dashboard.port)")
    parser.add_argument("--config-dir", help="configuration directory (default: ./config)")
    args = parser.parse_args(argv)
    try:
        serve(load_settings(args.config_dir), host=args.host, port=args.port)
    except (ConfigError, DashboardError, PostgresError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
