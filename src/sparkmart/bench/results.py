"""Read what the benchmarks and the run monitor recorded, as small pandas tables for notebooks.

Benchmark results live in ``docs/`` (``bench/engines.json`` from the engine comparison,
``benchmarks.md`` and ``optimizations.md``, written by the benchmark commands) and per-run
Spark metrics in ``<data>/batch/runs/<run_id>.json`` (written by every batch run). These are a
few hundred rows at most, so pandas is the right tool here, not Spark.

A missing file is not an error: a fresh clone has not run ``make bench`` yet. Loaders return
None for it and ``missing_message`` says what to run; a file that exists but cannot be read
raises ``ResultsError`` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

DOCS_DIR = Path(__file__).resolve().parents[3] / "docs"
ENGINES_JSON = Path("bench") / "engines.json"
BENCHMARKS_MD = Path("benchmarks.md")
OPTIMIZATIONS_MD = Path("optimizations.md")

ENGINE_COLUMNS = ("engine", "scale", "orders", "step", "run", "seconds", "status")
OK_STATUSES = ("ok", "succeeded", "success")

# Per step of a run file: these Spark metrics (sums over the step's jobs) become columns.
RUN_STEP_METRICS = (
    "jobs",
    "stages",
    "tasks",
    "executor_cpu_seconds",
    "gc_seconds",
    "input_rows",
    "shuffle_read_bytes",
    "shuffle_write_bytes",
    "memory_spilled_bytes",
    "disk_spilled_bytes",
)


class ResultsError(ValueError):
    """A results file exists but is not what its writer produces."""


def missing_message(path: Path, command: str) -> str:
    """What a notebook prints instead of a chart when ``path`` has not been written yet."""
    return f"no results yet: {path} does not exist (run `{command}` to produce it)"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from exc


def load_engine_results(path: Path) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """(one row per measured run, machine info) from the engine comparison's JSON, or None.

    Accepts ``{"machine": {...}, "records": [...]}`` or a bare list of records; every record
    needs ``ENGINE_COLUMNS`` (``peak_rss_bytes`` and other fields are kept when present).
    """
    if not path.exists():
        return None
    payload = _read_json(path)
    if isinstance(payload, list):
        records, machine = payload, {}
    elif isinstance(payload, Mapping) and isinstance(payload.get("records"), list):
        records, machine = payload["records"], dict(payload.get("machine") or {})
    else:
        raise ResultsError(f"{path}: expected a list of records or an object with 'records'")
    for index, record in enumerate(records):
        missing = [c for c in ENGINE_COLUMNS if not isinstance(record, Mapping) or c not in record]
        if missing:
            raise ResultsError(f"{path}: record {index} lacks {', '.join(missing)}")
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        frame = pd.DataFrame(columns=list(ENGINE_COLUMNS))
    frame["seconds"] = pd.to_numeric(frame["seconds"], errors="coerce")
    frame["orders"] = pd.to_numeric(frame["orders"], errors="coerce")
    return frame, machine


def engine_summary(records: pd.DataFrame) -> pd.DataFrame:
    """Median seconds and orders/s per engine, scale and step over the successful runs.

    Runs with another status (failed, out of memory, timed out) are counted in ``failed`` so
    that an engine that could not finish a scale is visible rather than silently missing.
    """
    ok = records["status"].astype(str).str.lower().isin(OK_STATUSES)
    keys = ["engine", "scale", "orders", "step"]
    good = records[ok].groupby(keys, dropna=False)
    summary = good.agg(
        median_seconds=("seconds", "median"),
        runs=("seconds", "size"),
    )
    if "peak_rss_bytes" in records.columns:
        summary["peak_rss_mib"] = good["peak_rss_bytes"].max() / 2**20
    failed = records[~ok].groupby(keys, dropna=False).size().rename("failed")
    summary = summary.join(failed, how="outer").fillna({"runs": 0, "failed": 0}).reset_index()
    summary["orders_per_second"] = summary["orders"] / summary["median_seconds"]
    summary[["runs", "failed"]] = summary[["runs", "failed"]].astype(int)
    return summary.sort_values(keys).reset_index(drop=True)


def engine_totals(summary: pd.DataFrame) -> pd.DataFrame:
    """Median seconds of the whole job per engine and scale (``engine_summary`` rows).

    Uses the ``total`` step when the benchmark recorded one; otherwise sums the steps' medians,
    only for engine/scale pairs where no step failed (a partial sum would look fast).
    """
    keys = ["engine", "scale", "orders"]
    if (summary["step"] == "total").any():
        totals = summary[summary["step"] == "total"].drop(columns="step")
    else:
        grouped = summary.groupby(keys, dropna=False)
        totals = grouped.agg(
            median_seconds=("median_seconds", lambda s: s.sum(min_count=len(s))),
            failed=("failed", "sum"),
        ).reset_index()
        totals.loc[totals["failed"] > 0, "median_seconds"] = float("nan")
        totals["orders_per_second"] = totals["orders"] / totals["median_seconds"]
    return totals.sort_values(["orders", "engine"]).reset_index(drop=True)


def markdown_sections(path: Path) -> dict[str, str] | None:
    """The ``<!-- bench:NAME -->`` sections of a page written by ``bench.report``, by name."""
    if not path.exists():
        return None
    pattern = re.compile(r"<!-- bench:([\w-]+) -->\n(.*?)\n<!-- /bench:\1 -->", re.DOTALL)
    return {name: body for name, body in pattern.findall(path.read_text())}


def _cell_value(cell: str) -> Any:
    text = cell.strip().strip("*").strip()
    number = text.replace(",", "")
    if re.fullmatch(r"-?\d+", number):
        return int(number)
    if re.fullmatch(r"-?\d*\.\d+(e-?\d+)?", number):
        return float(number)
    return text


def markdown_tables(text: str) -> list[pd.DataFrame]:
    """Every pipe table of a Markdown text, numbers parsed (``1,234`` -> 1234, bold removed)."""
    tables: list[pd.DataFrame] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines) - 1:
        header, rule = lines[index].strip(), lines[index + 1].strip()
        if header.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", rule):
            columns = [c.strip() for c in header.strip("|").split("|")]
            rows = []
            index += 2
            while index < len(lines) and lines[index].strip().startswith("|"):
                cells = lines[index].strip().strip("|").split("|")
                cells += [""] * (len(columns) - len(cells))
                rows.append([_cell_value(c) for c in cells[: len(columns)]])
                index += 1
            tables.append(pd.DataFrame(rows, columns=columns))
        else:
            index += 1
    return tables


def load_run_steps(runs_dir: Path) -> pd.DataFrame | None:
    """One row per step of every run file in ``runs_dir`` (the batch pipeline's
    ``<run_id>.json``): wall seconds, rows and Spark's stage/shuffle metrics; None when
    there are no run files yet."""
    files = sorted(runs_dir.glob("*.json")) if runs_dir.is_dir() else []
    rows = []
    for path in files:
        run = _read_json(path)
        if not isinstance(run, Mapping) or not isinstance(run.get("steps"), list):
            raise ResultsError(f"{path}: not a run file (no 'steps' list)")
        for step in run["steps"]:
            metrics = step.get("metrics") or {}
            rows.append(
                {
                    "run_id": run.get("run_id", path.stem),
                    "run_started_at": run.get("started_at"),
                    "run_status": run.get("status"),
                    "step": step.get("name"),
                    "index": step.get("index"),
                    "seconds": step.get("seconds"),
                    "rows_in": step.get("rows_in"),
                    "rows_out": step.get("rows_out"),
                    "rows_per_second": step.get("rows_per_second"),
                    **{name: metrics.get(name) for name in RUN_STEP_METRICS},
                }
            )
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    frame["run_started_at"] = pd.to_datetime(frame["run_started_at"], utc=True, errors="coerce")
    return frame.sort_values(["run_started_at", "index"]).reset_index(drop=True)
