"""docs/configuration.md stays true to the code: every key, its type, shipped value and override.

The keys come from the specs in ``sparkmart.config`` and from the sections their owners validate
(quality rules, simulator, streaming query, alerts, ML parameters); the values from the shipped
files in ``config/``. No Spark needed: this reads files and imports dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from sparkmart import config as cfg
from sparkmart.batch.rules import QUALITY_KEYS
from sparkmart.ml.forecasting import ForecastParams
from sparkmart.ml.fraud import FraudParams
from sparkmart.ml.recommendation import RecommendationParams
from sparkmart.ml.satisfaction import SatisfactionParams
from sparkmart.ml.segmentation import SegmentationParams
from sparkmart.stream.alerts import ALERTS_SPEC
from sparkmart.stream.query import StreamOptions
from sparkmart.stream.simulator import InjectOptions, SalesDrop, SimulatorOptions

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
CONFIG = ROOT / "config"
FILES = (cfg.SPARK_CONFIG, cfg.PIPELINE_CONFIG, cfg.STREAMING_CONFIG, cfg.ML_CONFIG)
PROFILES = ("local", "test", "cluster")
TYPE_WORDS = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list"}
ML_PARAMS = {
    "segmentation": SegmentationParams,
    "forecasting": ForecastParams,
    "recommendation": RecommendationParams,
    "fraud": FraudParams,
    "satisfaction": SatisfactionParams,
}


# --- reading the page ------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split(" | ")]


def documented_rows() -> dict[str, dict[str, dict[str, str]]]:
    """{file: {key: {column header: cell}}} from the ``| key | ...`` tables under each file."""
    rows: dict[str, dict[str, dict[str, str]]] = {name: {} for name in FILES}
    current: str | None = None
    header: list[str] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            match = re.fullmatch(r"## `config/([^`]+)`", line)
            current = match.group(1) if match else None
        elif line.startswith("| ") and current:
            cells = _cells(line)
            if cells[0] in ("key", "setting", "variable"):
                header = cells
            elif header and header[0] == "key" and not set(line) <= set("|- "):
                key = re.sub(r"<[^>]+>", "<name>", cells[0].strip("`"))
                assert key not in rows[current], f"{current}: `{key}` documented twice"
                rows[current][key] = dict(zip(header, cells, strict=True))
    return rows


# --- what the code accepts -------------------------------------------------------------------


def spec_leaves(spec: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """(dotted key, expected type, required) for every leaf of a ``sparkmart.config`` spec."""
    for key, rule in spec.items():
        expected, required = rule if isinstance(rule, tuple) else (rule, True)
        if isinstance(expected, Mapping) and cfg.ANY_KEYS in expected:
            inner = expected[cfg.ANY_KEYS]
            inner = inner[0] if isinstance(inner, tuple) else inner
            if isinstance(inner, Mapping):
                yield from spec_leaves(inner, f"{prefix}{key}.<name>.")
                continue
            yield f"{prefix}{key}", expected, required  # free keys, one value type (conf)
        elif isinstance(expected, Mapping):
            yield from spec_leaves(expected, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", expected, required


def _fields(cls: type, *, skip: tuple[str, ...] = ()) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in skip]


def code_keys() -> dict[str, set[str]]:
    """Every key each configuration file may hold, as the code validates it."""
    pipeline = {key for key, _, _ in spec_leaves(cfg.PIPELINE_SPEC)} - {"batch.quality"}
    pipeline |= {f"batch.quality.{key}" for key in QUALITY_KEYS}
    streaming = {
        *(f"simulator.{k}" for k in _fields(SimulatorOptions, skip=("inject", "clock"))),
        *(f"simulator.inject.{k}" for k in _fields(InjectOptions, skip=("sales_drop",))),
        *(f"simulator.inject.sales_drop.{k}" for k in _fields(SalesDrop)),
        *(f"query.{k}" for k in StreamOptions.KEYS),
        *(key for key, _, _ in spec_leaves(ALERTS_SPEC, "alerts.")),
    }
    ml = {"seed"} | {
        f"{section}.{k}" for section, cls in ML_PARAMS.items() for k in _fields(cls, skip=("seed",))
    }
    return {
        cfg.SPARK_CONFIG: {key for key, _, _ in spec_leaves(cfg.SPARK_SPEC)},
        cfg.PIPELINE_CONFIG: pipeline,
        cfg.STREAMING_CONFIG: streaming,
        cfg.ML_CONFIG: ml,
    }


def shipped(name: str) -> dict[str, Any]:
    return cfg.load_file(CONFIG / name)


def data_leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if key.startswith("_"):
            continue
        if isinstance(value, Mapping) and value:
            yield from data_leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def literal(value: Any) -> str:
    """How a shipped value is written in the page: `text` for strings, JSON otherwise."""
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_every_key_the_code_accepts_is_documented_and_nothing_else(name: str) -> None:
    documented = set(documented_rows()[name])
    expected = code_keys()[name]
    missing = sorted(expected - documented)
    assert not missing, f"docs/configuration.md lacks {name} keys: {missing}"
    prefixes = {key.rsplit(".", n)[0] for key in expected for n in range(1, key.count(".") + 1)}
    unknown = sorted(documented - expected - prefixes)
    assert not unknown, f"docs/configuration.md documents {name} keys the code rejects: {unknown}"


@pytest.mark.parametrize("name", FILES)
def test_every_shipped_key_is_one_the_code_accepts(name: str) -> None:
    expected = code_keys()[name]
    leaves = [
        re.sub(r"^profiles\.[^.]+\.", "profiles.<name>.", k) for k, _ in data_leaves(shipped(name))
    ]
    leaves = [re.sub(r"^generate\.scales\.[^.]+\.", "generate.scales.<name>.", k) for k in leaves]
    owned = ("profiles.<name>.conf.", "generate.defects.", "batch.sources.")
    stray = sorted(k for k in leaves if k not in expected and not k.startswith(owned))
    assert not stray, f"config/{name} holds keys this test does not know: {stray}"


def test_spark_profile_values_types_and_overrides_match_the_code() -> None:
    rows = documented_rows()[cfg.SPARK_CONFIG]
    profiles = shipped(cfg.SPARK_CONFIG)["profiles"]
    assert rows["default_profile"]["value shipped"] == literal(
        shipped(cfg.SPARK_CONFIG)["default_profile"]
    )
    for key, (expected, required) in cfg.PROFILE_SPEC.items():
        row = rows[f"profiles.<name>.{key}"]
        kind = "mapping" if isinstance(expected, Mapping) else TYPE_WORDS[expected]
        assert row["type"] == f"{kind} ({'required' if required else 'optional'})", key
        override = "—" if key == "conf" else f"`{cfg.ENV_SPARK_PREFIX}{key.upper()}`"
        assert row["environment"] == override, key
        if key == "conf":
            continue
        for profile in PROFILES:
            value = profiles[profile].get(key)
            want = "—" if value is None else literal(value)
            assert row[f"`{profile}`"] == want, f"profiles.{profile}.{key}: page says {row}"


def test_spark_conf_table_lists_every_shipped_setting() -> None:
    text = DOC.read_text(encoding="utf-8")
    profiles = shipped(cfg.SPARK_CONFIG)["profiles"]
    for profile in PROFILES:
        for setting, value in profiles[profile].get("conf", {}).items():
            row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{setting}` |")), None)
            assert row is not None, f"conf setting {setting} is not in the conf table"
            column = 1 + PROFILES.index(profile)
            assert _cells(row)[column] == f"`{value}`", f"{profile}: {setting}"


@pytest.mark.parametrize("name", (cfg.PIPELINE_CONFIG, cfg.STREAMING_CONFIG, cfg.ML_CONFIG))
def test_shipped_values_match_the_page(name: str) -> None:
    rows = documented_rows()[name]
    wrong = []
    for key, value in data_leaves(shipped(name)):
        if key in rows and (value is None or isinstance(value, (str, int, float, bool, list))):
            cell = rows[key]["value shipped"]
            if literal(value) not in cell:
                wrong.append(f"{key}: config has {literal(value)}, page says {cell}")
    for defect, share in shipped(name).get("generate", {}).get("defects", {}).items():
        if f"`{defect}` {share}" not in rows["generate.defects"]["value shipped"]:
            wrong.append(f"generate.defects.{defect}: config has {share}")
    assert not wrong, "docs/configuration.md is out of date:\n" + "\n".join(wrong)


def test_pipeline_types_and_required_flags_match_the_spec() -> None:
    rows = documented_rows()[cfg.PIPELINE_CONFIG]
    for key, expected, required in spec_leaves(cfg.PIPELINE_SPEC):
        if key == "batch.quality":
            continue
        kind = "mapping" if isinstance(expected, Mapping) else TYPE_WORDS[expected]
        want = f"{kind} ({'required' if required else 'optional'})"
        assert rows[key]["type"] == want, f"{key}: page says {rows[key]['type']}, spec {want}"
    assert cfg.ENV_DATA_DIR in rows["paths.data_dir"]["environment"]


def test_environment_variables_the_code_reads_are_listed() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Environment variables") :]
    for variable in (cfg.ENV_CONFIG_DIR, cfg.ENV_PROFILE, cfg.ENV_DATA_DIR, "SPARKMART_LOG_JSON"):
        assert f"`{variable}" in section, variable
    assert f"`{cfg.ENV_SPARK_PREFIX}<KEY>`" in section
    for source in (ROOT / "src" / "sparkmart").rglob("*.py"):
        for variable in re.findall(
            r"environ(?:\.get)?\(\s*\"(SPARKMART_\w+)\"", source.read_text()
        ):
            assert f"`{variable}" in section, f"{variable} (read in {source.name}) is not listed"
