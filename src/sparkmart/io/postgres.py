"""PostgreSQL: connection settings from the environment, and DataFrame reads and writes.

Credentials only ever come from the environment (``DATABASE_URL`` or the standard ``PG*``
variables); nothing secret lives in ``config/``. Default: ``postgresql://127.0.0.1:5432/sparkmart``
as the current OS user.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlparse

import psycopg

DEFAULT_DATABASE = "sparkmart"
PROJECT_SCHEMAS: tuple[str, ...] = ("public", "analytics", "quarantine", "streaming", "audit")


class PostgresError(RuntimeError):
    """PostgreSQL is unreachable or refused an operation; the message says which and where."""


@dataclass(frozen=True)
class PgSettings:
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = DEFAULT_DATABASE
    user: str = ""
    password: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PgSettings:
        """``DATABASE_URL`` wins; otherwise ``PGHOST``/``PGPORT``/``PGDATABASE``/``PGUSER``/
        ``PGPASSWORD``; otherwise the defaults."""
        env = os.environ if environ is None else environ
        default_user = env.get("PGUSER") or _os_user()
        if url := env.get("DATABASE_URL"):
            parsed = urlparse(url)
            if parsed.scheme not in {"postgresql", "postgres"}:
                raise PostgresError(
                    f"DATABASE_URL must start with postgresql:// (got scheme '{parsed.scheme}')"
                )
            return cls(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or 5432,
                dbname=unquote(parsed.path.lstrip("/")) or DEFAULT_DATABASE,
                user=unquote(parsed.username) if parsed.username else default_user,
                password=unquote(parsed.password) if parsed.password else None,
            )
        port = env.get("PGPORT", "5432")
        if not port.isdigit():
            raise PostgresError(f"PGPORT must be a number, got {port!r}")
        return cls(
            host=env.get("PGHOST", "127.0.0.1"),
            port=int(port),
            dbname=env.get("PGDATABASE", DEFAULT_DATABASE),
            user=default_user,
            password=env.get("PGPASSWORD"),
        )

    def with_database(self, dbname: str) -> PgSettings:
        return replace(self, dbname=dbname)

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.dbname}"

    @property
    def jdbc_properties(self) -> dict[str, str]:
        props = {"user": self.user, "driver": "org.postgresql.Driver"}
        if self.password:
            props["password"] = self.password
        return props

    @property
    def display(self) -> str:
        """Where we connect, without the password: for messages and logs."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "postgres"


def connect(pg: PgSettings, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection, or raise PostgresError saying where it could not connect."""
    try:
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            dbname=pg.dbname,
            user=pg.user,
            password=pg.password,
            autocommit=autocommit,
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise PostgresError(f"cannot connect to {pg.display}: {first_line}") from exc


def ensure_database(pg: PgSettings, maintenance_db: str = "postgres") -> bool:
    """Create ``pg.dbname`` if it does not exist; True when it was created."""
    with connect(pg.with_database(maintenance_db), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (pg.dbname,)
        ).fetchone()
        if exists:
            return False
        conn.execute(
            psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(pg.dbname))
        )
        return True


def drop_database(pg: PgSettings, maintenance_db: str = "postgres") -> None:
    with connect(pg.with_database(maintenance_db), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(pg.dbname)
            )
        )


def ensure_schemas(pg: PgSettings, schemas: tuple[str, ...] = PROJECT_SCHEMAS) -> None:
    """Create the project's schemas (public, analytics, quarantine, streaming, audit)."""
    with connect(pg, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(
                psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    psycopg.sql.Identifier(schema)
                )
            )
