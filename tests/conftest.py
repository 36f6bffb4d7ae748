"""Shared fixtures: one SparkSession and one fresh PostgreSQL database per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from sparkmart.config import Settings, load_settings
from sparkmart.io.postgres import (
    PgSettings,
    PostgresError,
    drop_database,
    ensure_database,
    ensure_schemas,
)
from sparkmart.spark_utils import get_spark

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "config"


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings from the repo's config with the `test` profile and a temporary data dir."""
    return load_settings(CONFIG_DIR, profile="test", data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def spark(settings: Settings) -> Iterator[SparkSession]:
    session = get_spark(settings.spark)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgSettings]:
    """A fresh database with the project's schemas, dropped when the session ends."""
    base = PgSettings.from_env()
    test_db = base.with_database(f"sparkmart_test_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    try:
        ensure_database(test_db)
        ensure_schemas(test_db)
    except PostgresError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable ({exc}); run `make setup`")
    yield test_db
    drop_database(test_db)


@pytest.fixture(scope="session")
def tiny_raw(spark: SparkSession, settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """`tiny` generated data (1,000 rows per entity) in every format, written once per session."""
    from sparkmart.generate import generate, resolve_counts, write_generated
    from sparkmart.schemas import FORMATS

    gen_config = settings.pipeline["generate"]
    out = tmp_path_factory.mktemp("tiny_raw")
    data = generate(spark, resolve_counts(settings, "tiny"), gen_config["seed"], gen_config)
    write_generated(data, out, list(FORMATS), None)
    return out
