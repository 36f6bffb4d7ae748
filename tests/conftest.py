"""Shared fixtures: one SparkSession and one fresh PostgreSQL database per test session."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from sparkmart.batch.analytics import build_gold
from sparkmart.batch.export import PARTITION_COLUMNS, with_order_month, write_parquet_atomically
from sparkmart.config import Settings, load_settings
from sparkmart.generate import generate, resolve_counts
from sparkmart.io.postgres import (
    PgSettings,
    PostgresError,
    drop_database,
    ensure_database,
    ensure_schemas,
)
from sparkmart.ml.pipeline import run_ml
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


# Small grids: these tests check that the pipelines work, not how good they are.
TINY_ML = {
    "seed": 7,
    "segmentation": {"k_min": 3, "k_max": 4, "max_iter": 10, "restarts": 1},
    "forecasting": {
        "horizon_days": 30,
        "lag_days": [35],
        "moving_average_days": [7],
        "cv_folds": 1,
        "reg_params": [0.01],
        "elastic_net_params": [0.0],
    },
    "recommendation": {"rank": 2, "max_iter": 2, "top_n": 5, "holdout_days": 120},
    "fraud": {"reg_params": [0.01], "cv_folds": 2, "max_iter": 10, "min_positives": 2},
    "satisfaction": {"reg_params": [0.0], "cv_folds": 2},
}


@pytest.fixture(scope="session")
def tiny_gold(
    spark: SparkSession,
    settings: Settings,
    tiny_raw: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """Gold customers, products and orders of `tiny` data, and the generator's truth.

    Built from the generator's clean rows with the batch's gold transforms (the quality steps
    are tested elsewhere and would only slow these tests down). The truth is the session's
    `tiny` run (same seed and counts, so the same rows), not generated a second time.
    """
    gen_config = settings.pipeline["generate"]
    root = tmp_path_factory.mktemp("ml_tiny")
    data = generate(spark, resolve_counts(settings, "tiny"), gen_config["seed"], gen_config)
    clean = {}
    for entity, frame in data.clean.items():
        frame.write.parquet(str(root / "clean" / entity))
        clean[entity] = spark.read.parquet(str(root / "clean" / entity))
    gold = build_gold(clean["customers"], clean["products"], clean["orders"])
    for name in ("customers", "products", "orders"):
        frame = gold[name].transform(with_order_month) if name == "orders" else gold[name]
        write_parquet_atomically(frame, root / "gold" / name, PARTITION_COLUMNS.get(name))
    return {"gold_dir": root / "gold", "truth_dir": tiny_raw / "truth"}


@pytest.fixture(scope="session")
def tiny_ml(
    spark: SparkSession,
    settings: Settings,
    tiny_gold: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    """The five models trained on the `tiny` gold tables."""
    dirs: dict = {**tiny_gold, "models_dir": tmp_path_factory.mktemp("models")}
    tiny_settings = dataclasses.replace(settings, ml=TINY_ML)
    return {**dirs, "summary": run_ml(tiny_settings, spark, "train", None, **dirs)}
