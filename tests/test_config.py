"""Configuration: the files load, overrides apply in order, and mistakes name file and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sparkmart.config import ConfigError, load_settings
from sparkmart.spark_utils import spark_conf_for

from .conftest import CONFIG_DIR


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_repo_config_loads_every_profile() -> None:
    for profile in ("local", "test", "cluster"):
        settings = load_settings(CONFIG_DIR, profile=profile)
        assert settings.spark.name == profile
    assert load_settings(CONFIG_DIR).spark.name == "local"


def test_profile_becomes_spark_settings() -> None:
    conf = spark_conf_for(load_settings(CONFIG_DIR, profile="test").spark)
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.sql.shuffle.partitions"] == "2"
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_missing_file_names_the_file(config_dir: Path) -> None:
    (config_dir / "ml_params.json").unlink()
    with pytest.raises(ConfigError, match=r"ml_params\.json: configuration file not found"):
        load_settings(config_dir)


def test_unknown_key_names_file_and_key(config_dir: Path) -> None:
    edit_json(
        config_dir / "spark_config.json",
        lambda d: d["profiles"]["local"].update(shuffle_partitons=4),
    )
    with pytest.raises(ConfigError) as err:
        load_settings(config_dir, profile="local")
    message = str(err.value)
    assert "spark_config.json" in message
    assert "profiles.local.shuffle_partitons" in message
    assert "allowed here" in message


def test_wrong_type_says_what_was_expected(config_dir: Path) -> None:
    edit_yaml(config_dir / "pipeline.yaml", lambda d: d["generate"].update(days="two years"))
    with pytest.raises(
        ConfigError,
        match=r"pipeline\.yaml: key 'generate\.days' should be an "
        r"integer, got str 'two years'",
    ):
        load_settings(config_dir)


def test_missing_required_key(config_dir: Path) -> None:
    edit_json(config_dir / "spark_config.json", lambda d: d["profiles"]["test"].pop("master"))
    with pytest.raises(ConfigError, match=r"missing key 'profiles\.test\.master'"):
        load_settings(config_dir, profile="test")


def test_broken_syntax_is_reported(config_dir: Path) -> None:
    (config_dir / "streaming_config.yaml").write_text("simulator: [unclosed\n")
    with pytest.raises(ConfigError, match=r"streaming_config\.yaml: cannot parse"):
        load_settings(config_dir)


def test_unknown_profile_lists_the_defined_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown profile 'prod' \(defined: cluster, local, "
        r"test\)",
    ):
        load_settings(CONFIG_DIR, profile="prod")


def test_environment_overrides_file_and_flags_override_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPARKMART_PROFILE", "test")
    monkeypatch.setenv("SPARKMART_SPARK_SHUFFLE_PARTITIONS", "7")
    monkeypatch.setenv("SPARKMART_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("SPARKMART_SPARK_ADAPTIVE", "false")
    settings = load_settings(CONFIG_DIR)
    assert settings.spark.name == "test"
    assert settings.spark.shuffle_partitions == 7
    assert settings.spark.master == "local[1]"
    assert settings.spark.adaptive is False

    flagged = load_settings(CONFIG_DIR, spark_overrides={"master": "local[2]"})
    assert flagged.spark.master == "local[2]"


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARKMART_SPARK_SHUFFLE_PARTITIONS", "many")
    with pytest.raises(ConfigError, match="SPARKMART_SPARK_SHUFFLE_PARTITIONS"):
        load_settings(CONFIG_DIR)


def test_data_dir_override_moves_every_layer(tmp_path: Path) -> None:
    settings = load_settings(CONFIG_DIR, data_dir=tmp_path)
    assert settings.path("raw") == tmp_path / "batch" / "raw"
    assert settings.path("models") == tmp_path / "models"
    # Spark's event logs follow the data dir too ("{data_dir}/spark-events" in the profile)
    assert settings.spark.conf["spark.eventLog.dir"] == f"{tmp_path}/spark-events"
    with pytest.raises(ConfigError, match="no path named 'gold_old'"):
        settings.path("gold_old")
