"""The notebooks run headless on the session's `tiny` data and show that data's numbers.

Each notebook runs in its own kernel (its own SparkSession, `test` profile) through
``sparkmart.notebooks.execute_notebook``, the same code ``make notebooks`` uses; a failing
cell fails the test with the cell's traceback. The results readers behind the performance
notebook are tested directly below on small inline records.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from sparkmart.bench import results
from sparkmart.bench.report import update_section
from sparkmart.ml.evaluation import precision_recall_curve
from sparkmart.ml.registry import model_path
from sparkmart.monitor.metrics import SparkStepMetrics, StepMetrics
from sparkmart.notebooks import NOTEBOOKS_DIR, execute_notebook, inject_parameters
from sparkmart.schemas import ENTITIES, PRIMARY_KEYS

CELL_TIMEOUT = 300


def run(name: str, parameters: dict, cwd: Path):
    return execute_notebook(
        NOTEBOOKS_DIR / f"{name}.ipynb", parameters, cell_timeout=CELL_TIMEOUT, cwd=cwd
    )


def cell_text(notebook, tag: str) -> str:
    """stdout and the plain-text results of the code cell tagged ``tag``."""
    (cell,) = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(notebook) -> int:
    return sum(
        "image/png" in o.get("data", {}) for c in notebook.cells for o in c.get("outputs", [])
    )


def test_eda_profiles_the_tiny_data(spark, tiny_raw, tiny_gold, tmp_path):
    notebook = run(
        "eda",
        {
            "RAW_DIR": str(tiny_raw),
            "GOLD_DIR": str(tiny_gold["gold_dir"]),
            "SCALE": "tiny",
            "PROFILE": "test",
        },
        tmp_path,
    )
    keys = cell_text(notebook, "rows-and-keys")
    for entity in ENTITIES:
        raw = spark.read.parquet(str(tiny_raw / "parquet" / entity))
        rows, distinct = raw.count(), raw.select(PRIMARY_KEYS[entity]).distinct().count()
        assert f"{entity}: {rows:,} raw rows, {distinct:,} distinct keys" in keys
    heavy = spark.read.parquet(str(tiny_raw / "truth" / "customers")).filter("is_heavy").count()
    assert f"the planted heavy customers ({heavy})" in cell_text(notebook, "skew")
    orders = spark.read.parquet(str(tiny_gold["gold_dir"] / "orders"))
    first, last = orders.agg(F.min(F.to_date("order_ts")), F.max(F.to_date("order_ts"))).first()
    assert f"{(last - first).days + 1:,} days;" in cell_text(notebook, "time-series")
    assert images(notebook) == 5  # nulls, defects, distributions, skew, time series


def _saved_metrics(models_dir: Path, name: str) -> dict:
    return json.loads((model_path(models_dir, name) / "metrics.json").read_text())


def _pair(text: str, pattern: str) -> tuple[float, float]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return float(match.group(1)), float(match.group(2))


def test_ml_notebook_rescores_the_saved_models(tiny_ml, tmp_path):
    models_dir = tiny_ml["models_dir"]
    notebook = run(
        "ml_experiments",
        {
            "GOLD_DIR": str(tiny_ml["gold_dir"]),
            "TRUTH_DIR": str(tiny_ml["truth_dir"]),
            "MODELS_DIR": str(models_dir),
            "SCALE": "tiny",
            "PROFILE": "test",
        },
        tmp_path,
    )
    # Re-scoring a saved model on the data it was trained on gives its recorded metrics back.
    ari, saved_ari = _pair(
        cell_text(notebook, "segmentation"), r"planted segments: (\S+) \(saved: (\S+)\)"
    )
    assert ari == saved_ari == round(_saved_metrics(models_dir, "segmentation")["ari"], 4)
    mape, saved_mape = _pair(cell_text(notebook, "forecasting"), r"MAPE (\S+) vs .*?saved: (\S+)")
    assert mape == saved_mape
    r2, saved_r2 = _pair(cell_text(notebook, "satisfaction"), r"R² (\S+) \(saved: (\S+)\)")
    assert r2 == saved_r2 == round(_saved_metrics(models_dir, "satisfaction")["r2"], 4)
    assert "test orders flagged at" in cell_text(notebook, "fraud")
    assert images(notebook) >= 6


ENGINE_RECORDS = [
    # engine, scale, orders, step, seconds of three runs (None: failed)
    ("spark", "small", 100_000, "transform", [6.0, 5.0, 9.0]),
    ("spark", "small", 100_000, "load", [2.0, 2.0, 3.0]),
    ("pandas", "small", 100_000, "transform", [1.5, 1.0, 1.25]),
    ("pandas", "small", 100_000, "load", [0.5, 0.5, 0.5]),
    ("spark", "medium", 1_000_000, "transform", [20.0, 22.0, 21.0]),
    ("spark", "medium", 1_000_000, "load", [4.0, 4.0, 4.0]),
    ("pandas", "medium", 1_000_000, "transform", [None, None, None]),
    ("pandas", "medium", 1_000_000, "load", [5.0, 5.0, 5.0]),
]


def _engine_file(path: Path) -> Path:
    records = [
        {
            "engine": engine,
            "scale": scale,
            "orders": orders,
            "step": step,
            "run": run,
            "seconds": seconds,
            "peak_rss_bytes": 2**30,
            "status": "ok" if seconds is not None else "failed",
        }
        for engine, scale, orders, step, runs in ENGINE_RECORDS
        for run, seconds in enumerate(runs)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": {"cores": 2}, "records": records}))
    return path


def test_engine_summary_medians_and_failures(tmp_path):
    frame, machine = results.load_engine_results(_engine_file(tmp_path / "engines.json"))
    assert machine == {"cores": 2}
    summary = results.engine_summary(frame).set_index(["engine", "scale", "step"])
    assert summary.loc[("spark", "small", "transform"), "median_seconds"] == 6.0
    assert summary.loc[("pandas", "medium", "transform"), "failed"] == 3
    totals = results.engine_totals(summary.reset_index()).set_index(["engine", "scale"])
    assert totals.loc[("spark", "small"), "median_seconds"] == 8.0
    assert totals.loc[("pandas", "small"), "orders_per_second"] == 100_000 / 1.75
    assert pd.isna(totals.loc[("pandas", "medium"), "median_seconds"])  # a step never finished


def test_results_readers_reject_bad_files_and_accept_missing_ones(tmp_path):
    assert results.load_engine_results(tmp_path / "absent.json") is None
    assert results.markdown_sections(tmp_path / "absent.md") is None
    assert results.load_run_steps(tmp_path / "no-runs") is None
    broken = tmp_path / "engines.json"
    broken.write_text(json.dumps([{"engine": "spark", "seconds": 1.0}]))
    with pytest.raises(results.ResultsError, match=r"engines.json: record 0 lacks scale"):
        results.load_engine_results(broken)
    broken.write_text("{not json")
    with pytest.raises(results.ResultsError, match="not valid JSON"):
        results.load_engine_results(broken)


def test_markdown_tables_read_back_what_the_benchmark_writer_wrote(tmp_path):
    page = tmp_path / "benchmarks.md"
    table = "\n".join(
        [
            "| step | median s | rows |",
            "|---|---|---|",
            "| load | 1.5 | 1,234 |",
            "| **total** | **2.0** | |",
        ]
    )
    update_section("batch", "## Batch\n\n" + table, page)
    update_section("other", "no tables here", page)
    sections = results.markdown_sections(page)
    assert list(sections) == ["batch", "other"]
    (parsed,) = results.markdown_tables(sections["batch"])
    assert parsed.to_dict("records") == [
        {"step": "load", "median s": 1.5, "rows": 1234},
        {"step": "total", "median s": 2.0, "rows": ""},
    ]


def test_run_steps_from_a_run_file(tmp_path):
    step = StepMetrics(name="quality (silver)", seconds=2.5, rows_out=900, index=1)
    step.spark = SparkStepMetrics(jobs=3, shuffle_write_bytes=2048)
    run = {"run_id": "r1", "started_at": "2026-12-01T10:00:00+00:00", "steps": [step.as_dict()]}
    (tmp_path / "r1.json").write_text(json.dumps(run))
    steps = results.load_run_steps(tmp_path)
    row = steps.iloc[0]
    assert (row["step"], row["seconds"], row["rows_out"]) == ("quality (silver)", 2.5, 900)
    assert (row["jobs"], row["shuffle_write_bytes"], row["rows_per_second"]) == (3, 2048, 360)


def test_performance_notebook_charts_results_and_says_what_is_missing(tmp_path):
    docs = tmp_path / "docs"
    _engine_file(docs / results.ENGINES_JSON)
    batch = "\n".join(
        ["| step | median s |", "|---|---|", "| ingest | 8.3 |", "| quality | 81.0 |"]
    )
    update_section("batch", batch, docs / results.BENCHMARKS_MD)
    (docs / results.OPTIMIZATIONS_MD).write_text(
        "# Optimizations\n\n## Broadcast join: orders x products\n\n"
        "| variant | median s | vs pipeline |\n|---|---|---|\n"
        "| broadcast (pipeline) | 2.0 | 1.00 |\n| sort-merge | 3.0 | 1.50 |\n"
    )
    notebook = run(
        "performance_analysis",
        {"RESULTS_DIR": str(docs), "RUNS_DIR": str(tmp_path / "runs")},
        tmp_path,
    )
    engines = cell_text(notebook, "engines")
    assert "24 runs of 2 engines" in engines
    assert "small (100,000 orders): pandas 1.8 s, spark 8.0 s" in engines
    assert "medium (1,000,000 orders): spark 25.0 s; did not finish: pandas" in engines
    optimizations = cell_text(notebook, "optimizations")
    assert "1 experiment(s), 1 result table(s): Broadcast join: orders x products" in optimizations
    assert "sort-merge" in optimizations
    assert "no results yet" in cell_text(notebook, "runs")  # no batch run in RUNS_DIR
    assert images(notebook) == 4  # engines, steps, benchmarks, optimizations


def test_inject_parameters_needs_a_parameters_cell():
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(Exception, match="no code cell tagged 'parameters'"):
        inject_parameters(notebook, {"x": 2}, "demo.ipynb")


def test_precision_recall_curve_corners(spark):
    scored = spark.createDataFrame(
        [(0.9, 1), (0.8, 0), (0.7, 1), (0.7, 0), (0.6, 0), (0.4, 1)], "score double, label int"
    )
    points = precision_recall_curve(scored, "label", "score")
    assert [(p["threshold"], p["precision"], p["recall"]) for p in points] == [
        (0.9, 1.0, 1 / 3),
        (0.7, 2 / 4, 2 / 3),
        (0.4, 3 / 6, 1.0),
    ]
