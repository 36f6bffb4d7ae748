"""Saved models: ``<models>/<name>/<version>/`` with the whole Spark ML pipeline and its reports.

A version directory holds ``model/`` (``PipelineModel.save``: feature steps and estimator
together, so scoring applies exactly the training-time steps), ``metrics.json``,
``params.json``, ``report.json`` (metrics, chosen parameters, timings) and ``outputs/``
(tables made while training, e.g. the forecast). Versions are
incrementing integers; ``<name>/latest`` names the newest complete one. A version is written
under a temporary name and renamed into place, and ``latest`` is replaced atomically, so a
failed save never leaves a half-written model behind the pointer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.ml import PipelineModel

from sparkmart.ml.core import MLError, TrainResult

LATEST = "latest"
MODEL_DIR = "model"
OUTPUTS_DIR = "outputs"  # tables made while training (forecast, association rules), as Parquet


class ModelNotFoundError(MLError, FileNotFoundError):
    """No saved model (or not the requested version) under the models directory."""


@dataclass(frozen=True)
class SavedModel:
    name: str
    version: str
    path: Path
    model: PipelineModel
    metrics: dict[str, Any]
    params: dict[str, Any]


def _versions(model_root: Path) -> list[int]:
    if not model_root.is_dir():
        return []
    return sorted(int(p.name) for p in model_root.iterdir() if p.is_dir() and p.name.isdigit())


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def save_model(models_dir: Path, result: TrainResult) -> Path:
    """Store a trained model as the next version of ``result.name``; returns its directory."""
    model_root = models_dir / result.name
    model_root.mkdir(parents=True, exist_ok=True)
    staged = model_root / f".tmp-{uuid.uuid4().hex[:8]}"
    try:
        result.model.write().overwrite().save(str(staged / MODEL_DIR))
        for table, frame in result.outputs.items():
            frame.write.parquet(str(staged / OUTPUTS_DIR / table))
        _write_json(staged / "metrics.json", result.metrics)
        _write_json(staged / "params.json", result.params)
        report = {
            "model": result.name,
            "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "metrics": result.metrics,
            "params": result.params,
            "timings_seconds": result.timings,
        }
        _write_json(staged / "report.json", report)
        while True:  # another process may take the same number: try the next one
            version = (_versions(model_root) or [0])[-1] + 1
            target = model_root / str(version)
            try:
                staged.rename(target)
                break
            except OSError:
                if not target.exists():
                    raise
        pointer = model_root / f".{LATEST}-{uuid.uuid4().hex[:8]}"
        pointer.write_text(f"{version}\n")
        os.replace(pointer, model_root / LATEST)
        return target
    finally:
        if staged.exists():
            shutil.rmtree(staged)


def latest_version(models_dir: Path, name: str) -> str | None:
    pointer = models_dir / name / LATEST
    return pointer.read_text().strip() if pointer.exists() else None


def model_path(models_dir: Path, name: str, version: str | None = None) -> Path:
    """The directory of a saved version (default: latest); ModelNotFoundError if there is none."""
    chosen = version or latest_version(models_dir, name)
    if chosen is None:
        raise ModelNotFoundError(
            f"no saved '{name}' model under {models_dir / name}: "
            f"run `sparkmart ml train --models {name}` first"
        )
    path = models_dir / name / str(chosen)
    if not (path / MODEL_DIR).is_dir():
        available = ", ".join(str(v) for v in _versions(models_dir / name)) or "none"
        raise ModelNotFoundError(
            f"model '{name}' version {chosen} not found at {path} (versions: {available})"
        )
    return path


def load_model(models_dir: Path, name: str, version: str | None = None) -> SavedModel:
    """Load a saved pipeline with its metrics and parameters."""
    path = model_path(models_dir, name, version)
    try:
        model = PipelineModel.load(str(path / MODEL_DIR))
    except Exception as exc:  # Spark raises Py4J / analysis errors for a damaged directory
        raise ModelNotFoundError(f"model '{name}' at {path} cannot be loaded: {exc}") from exc
    metrics = json.loads((path / "metrics.json").read_text())
    params = json.loads((path / "params.json").read_text())
    return SavedModel(name, path.name, path, model, metrics, params)
