"""Spark against pandas, DuckDB and Polars on the same batch workload, side by side.

    make bench                      # small + medium (SCALE=large adds large)
    sparkmart bench --scales small,medium --runs 3 --engines spark,pandas,duckdb,polars

Each engine x scale x run is its own subprocess, so peak memory (RSS of the process tree,
sampled every 0.1 s; Spark's JVM is a child of its Python driver) belongs to one engine. A
process that goes over ``--memory-cap-gb``, raises MemoryError or is killed by the kernel is an
``out_of_memory`` result, not a crash. Spark's JVM start is timed on its own (``jvm_start``)
and not counted in the workload total. Before any time is reported, the first run of every
engine at every scale is compared output by output with Spark's (``workload.compare_outputs``):
an engine whose results differ is marked ``failed`` with the difference.

Writes ``docs/bench/engines.json`` (one record per engine x scale x run x step), the charts
``docs/img/bench-*.png`` and the ``engines`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq

from sparkmart.bench.engines import ENGINES
from sparkmart.bench.engines import workload as W
from sparkmart.bench.engines.timer import StepTimer
from sparkmart.bench.report import BENCHMARKS_MD, machine_description, update_section

DOCS = BENCHMARKS_MD.parent
RESULTS_JSON = DOCS / "bench" / "engines.json"
IMAGES = DOCS / "img"
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "sparkmart-engines"
MEMORY_ERROR_EXIT = 3  # the worker's exit code after a MemoryError
REFERENCE = "spark"
TOTAL = "total"  # the workload steps summed (JVM start excluded)

# Benchmark scales: a generator preset and optional count overrides. `xlarge` is the 50M-order
# point where pandas is expected to run out of memory, `xxlarge` the 100M-order point of the
# scalability target (Spark must complete on this 24 GiB machine).
SCALES: dict[str, tuple[str, dict[str, int]]] = {
    "tiny": ("tiny", {}),
    "small": ("small", {}),
    "medium": ("medium", {}),
    "large": ("large", {}),
    "xlarge": ("large", {"orders": 50_000_000}),
    "xxlarge": ("large", {"orders": 100_000_000}),
}


# --- the worker: one engine, one run, in its own process ---------------------------------


def run_worker(
    engine: str,
    raw: Path,
    out: Path,
    as_of: dt.datetime,
    result: Path,
    config_dir: Path | None = None,
    profile: str | None = None,
) -> int:
    """Run one engine's workload; write the step times to ``result``; return the exit code."""
    timer = StepTimer()
    params = W.WorkloadParams(as_of)
    try:
        if engine == "spark":
            from sparkmart.bench.engines import spark as engine_module

            with timer.step("jvm_start"):
                spark = _bench_spark_session(config_dir, profile)
            engine_module.run(raw, out, params, timer, spark)
            spark.stop()
        else:
            module = {
                "pandas": "sparkmart.bench.engines.pandas_engine",
                "duckdb": "sparkmart.bench.engines.duckdb_engine",
                "polars": "sparkmart.bench.engines.polars_engine",
            }[engine]
            __import__(module)
            sys.modules[module].run(raw, out, params, timer)
    except MemoryError:
        result.write_text(json.dumps({"steps": timer.as_records(), "error": "MemoryError"}))
        return MEMORY_ERROR_EXIT
    result.write_text(json.dumps({"steps": timer.as_records()}))
    return 0


def _bench_spark_session(config_dir: Path | None, profile: str | None) -> Any:
    """The project's session (default profile ``local``), without event logs written."""
    import dataclasses

    from sparkmart.config import load_settings
    from sparkmart.spark_utils import get_spark

    spark_profile = load_settings(config_dir, profile).spark
    conf = {**spark_profile.conf, "spark.eventLog.enabled": "false"}
    return get_spark(dataclasses.replace(spark_profile, conf=conf))


# --- the runner ------------------------------------------------------------------------------


@dataclass
class RunResult:
    engine: str
    status: str  # ok | out_of_memory | failed | skipped
    steps: list[dict[str, Any]] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    error: str | None = None
    load_average: float | None = None


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


def _kill_tree(process: psutil.Process) -> None:
    for proc in [*process.children(recursive=True), process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)


def run_engine_process(
    engine: str,
    raw: Path,
    out: Path,
    as_of: dt.datetime,
    memory_cap_bytes: int,
    timeout_seconds: float,
    spark_args: Sequence[str] = (),
) -> RunResult:
    """One engine run in a subprocess, its RSS sampled; over the cap is ``out_of_memory``."""
    load = os.getloadavg()[0]
    result_file = out.parent / f"{out.name}.json"
    command = [
        sys.executable,
        "-m",
        "sparkmart.bench.engines_bench",
        "worker",
        engine,
        "--raw",
        str(raw),
        "--out",
        str(out),
        "--as-of",
        as_of.isoformat(),
        "--result",
        str(result_file),
        *spark_args,
    ]
    out.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[float, int]] = []
    reason = None
    with tempfile.TemporaryFile() as stderr:
        popen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        process = psutil.Process(popen.pid)
        started = time.time()
        while popen.poll() is None:
            rss = _tree_rss(process)
            samples.append((time.time(), rss))
            if rss > memory_cap_bytes:
                cap_gib, elapsed = memory_cap_bytes / 2**30, time.time() - started
                reason = f"over the memory cap ({cap_gib:.1f} GiB) after {elapsed:.0f} s"
                _kill_tree(process)
            elif time.time() - started > timeout_seconds:
                reason = f"timed out after {timeout_seconds:.0f} s"
                _kill_tree(process)
            time.sleep(0.1)
        code = popen.wait()
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace").strip().splitlines()[-5:]
    peak = max((rss for _, rss in samples), default=0) or None
    steps = json.loads(result_file.read_text())["steps"] if result_file.exists() else []
    for step in steps:  # each step's peak: the samples taken while it ran (and the one before)
        inside = [rss for t, rss in samples if step["started"] - 0.1 <= t <= step["ended"] + 0.1]
        step["peak_rss_bytes"] = max(inside, default=None)
    if code == 0:
        return RunResult(engine, "ok", steps, peak, None, load)
    if reason and reason.startswith("over the memory cap"):
        return RunResult(engine, "out_of_memory", steps, peak, reason, load)
    if code == MEMORY_ERROR_EXIT:
        return RunResult(engine, "out_of_memory", steps, peak, "MemoryError", load)
    if code == -signal.SIGKILL and reason is None:
        return RunResult(engine, "out_of_memory", steps, peak, "killed (SIGKILL: OOM)", load)
    return RunResult(engine, "failed", steps, peak, reason or " | ".join(tail), load)


def ensure_data(scale: str, data_dir: Path) -> Path:
    """Generated raw Parquet for ``scale`` under ``data_dir``, generated once and reused."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    raw = data_dir / scale
    if all((raw / "parquet" / e / "_SUCCESS").exists() for e in W.ENTITIES):
        return raw
    preset, overrides = SCALES[scale]
    shutil.rmtree(raw, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "sparkmart.cli",
        "generate",
        "--scale",
        preset,
        "--out",
        str(raw),
        "--formats",
        "parquet",
        *[arg for key, value in overrides.items() for arg in (f"--{key}", str(value))],
    ]
    print(f"generating {scale}: {' '.join(command[2:])}", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return raw


def raw_counts(raw: Path) -> dict[str, int]:
    """Rows per raw entity, from the Parquet footers."""
    return {
        entity: sum(
            pq.ParquetFile(f).metadata.num_rows for f in W.parquet_files(W.raw_path(raw, entity))
        )
        for entity in W.ENTITIES
    }


def _records(scale: str, orders: int, run: int, result: RunResult) -> list[dict[str, Any]]:
    base = {"engine": result.engine, "scale": scale, "orders": orders, "run": run}
    records = [
        {
            **base,
            "step": s["step"],
            "seconds": round(s["seconds"], 4),
            "peak_rss_bytes": s.get("peak_rss_bytes"),
            "status": result.status,
            "load_average": result.load_average,
        }
        for s in result.steps
    ]
    work = [s for s in result.steps if s["step"] in W.STEPS]
    complete = result.status == "ok" and len(work) == len(W.STEPS)
    records.append(
        {
            **base,
            "step": TOTAL,
            "seconds": round(sum(s["seconds"] for s in work), 4) if complete else None,
            "peak_rss_bytes": result.peak_rss_bytes,
            "status": result.status,
            "load_average": result.load_average,
            **({"error": result.error} if result.error else {}),
        }
    )
    return records


def run_comparison(
    scales: Sequence[str],
    engines: Sequence[str],
    runs: int,
    data_dir: Path,
    scratch: Path,
    memory_cap_bytes: int,
    timeout_seconds: float,
    spark_args: Sequence[str] = (),
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every engine x scale x run, equality checked on the first run; the results document.

    ``on_progress`` gets the document so far after every run (to save partial results).
    """
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(
            f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}"
        )
    if runs < 1:
        raise ValueError(f"--runs must be >= 1, got {runs}")
    as_of = dt.datetime.now(dt.UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    started = time.time()
    records: list[dict[str, Any]] = []
    equality: dict[str, dict[str, str]] = {}
    counts: dict[str, dict[str, int]] = {}
    load_start = os.getloadavg()

    def document(done: Sequence[str]) -> dict[str, Any]:
        return _document(
            done,
            engines,
            runs,
            started,
            load_start,
            memory_cap_bytes,
            as_of,
            counts,
            equality,
            records,
        )

    for scale in scales:
        raw = ensure_data(scale, data_dir)
        counts[scale] = raw_counts(raw)
        orders = counts[scale]["orders"]
        equality[scale] = {}
        excluded: dict[str, str] = {}  # engine -> why its later runs are skipped
        for run in range(1, runs + 1):
            for engine in engines:
                out = scratch / scale / f"{engine}-run{run}"
                if engine in excluded:
                    result = RunResult(engine, "skipped", error=excluded[engine])
                else:
                    result = run_engine_process(
                        engine, raw, out, as_of, memory_cap_bytes, timeout_seconds, spark_args
                    )
                    if result.status != "ok":
                        excluded[engine] = f"run {run}: {result.status}"
                total = sum(s["seconds"] for s in result.steps if s["step"] in W.STEPS)
                print(
                    f"{scale:>7} run {run} {engine:>7}: {result.status:<13} "
                    f"{total:7.1f} s  peak {(result.peak_rss_bytes or 0) / 2**30:5.2f} GiB"
                    + (f"  ({result.error})" if result.error else ""),
                    flush=True,
                )
                records.extend(_records(scale, orders, run, result))
            if run == 1:
                _check_equality(scale, engines, scratch, records, equality[scale], excluded)
            for engine in engines:
                shutil.rmtree(scratch / scale / f"{engine}-run{run}", ignore_errors=True)
            if on_progress is not None:  # save after every run: an interrupted bench keeps them
                on_progress(document(list(counts)))
    return document(list(scales))


def _document(
    scales: Sequence[str],
    engines: Sequence[str],
    runs: int,
    started: float,
    load_start: Sequence[float],
    memory_cap_bytes: int,
    as_of: dt.datetime,
    counts: dict[str, dict[str, int]],
    equality: dict[str, dict[str, str]],
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """The results document (docs/bench/engines.json) of the scales measured so far."""
    command = ["sparkmart bench", "--scales", ",".join(scales), "--runs", str(runs)]
    return {
        "command": " ".join([*command, "--engines", ",".join(engines)]),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_seconds": round(time.time() - started, 1),
        "machine": {
            "description": machine_description(),
            "cpu_count": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total,
            "load_average_start": [round(v, 2) for v in load_start],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
        "memory_cap_bytes": memory_cap_bytes,
        "as_of": as_of.isoformat(),
        "runs": runs,
        "engines": list(engines),
        "scales": {s: {"counts": counts[s]} for s in scales},
        "steps": ["jvm_start", *W.STEPS, TOTAL],
        "equality": {s: equality[s] for s in scales},
        "records": [r for r in records if r["scale"] in scales],
    }


def _check_equality(
    scale: str,
    engines: Sequence[str],
    scratch: Path,
    records: list[dict[str, Any]],
    verdicts: dict[str, str],
    excluded: dict[str, str],
) -> None:
    """Compare every engine's first run with the reference; mark those that differ failed."""
    ok = {
        r["engine"]
        for r in records
        if r["scale"] == scale and r["run"] == 1 and r["step"] == TOTAL and r["status"] == "ok"
    }
    reference = REFERENCE if REFERENCE in ok else next((e for e in engines if e in ok), None)
    for engine in engines:
        if engine not in ok:
            verdicts[engine] = "not compared: no complete run"
            continue
        if engine == reference:
            verdicts[engine] = "reference"
            continue
        mismatches = W.compare_outputs(
            scratch / scale / f"{reference}-run1", scratch / scale / f"{engine}-run1"
        )
        if not mismatches:
            verdicts[engine] = f"equal to {reference}"
            continue
        verdicts[engine] = f"differs from {reference}: " + "; ".join(map(str, mismatches))
        excluded[engine] = "results differ from the reference"
        print(f"{scale:>7} {engine}: {verdicts[engine]}", flush=True)
        for record in records:
            if record["engine"] == engine and record["scale"] == scale:
                record["status"] = "failed"
                if record["step"] == TOTAL:
                    record["error"] = verdicts[engine]


def main(argv: list[str] | None = None) -> None:
    """``worker`` runs one engine (internal); otherwise the comparison with its report."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["worker"]:
        parser = argparse.ArgumentParser(prog="engines_bench worker")
        parser.add_argument("engine", choices=ENGINES)
        parser.add_argument("--raw", type=Path, required=True)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--as-of", type=dt.datetime.fromisoformat, required=True)
        parser.add_argument("--result", type=Path, required=True)
        parser.add_argument("--config-dir", type=Path)
        parser.add_argument("--profile")
        w = parser.parse_args(args[1:])
        sys.exit(run_worker(w.engine, w.raw, w.out, w.as_of, w.result, w.config_dir, w.profile))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="small,medium")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--memory-cap-gb", type=float, default=16.0)
    parser.add_argument("--timeout-minutes", type=float, default=30.0)
    parser.add_argument("--no-write", action="store_true", help="print only; keep docs as is")
    parser.add_argument("--config-dir", type=Path)
    parser.add_argument("--profile")
    options = parser.parse_args(args)
    bench(
        [s.strip() for s in options.scales.split(",") if s.strip()],
        [e.strip() for e in options.engines.split(",") if e.strip()],
        options.runs,
        options.data_dir,
        options.memory_cap_gb,
        options.timeout_minutes,
        write=not options.no_write,
        config_dir=options.config_dir,
        profile=options.profile,
    )


def merge_previous(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """Stamp each measured scale with when, how often and under what load; keep older scales.

    A scale measured before (e.g. ``large`` by ``make bench SCALE=large``) and not in this run
    stays in the results with its own stamp, so one file holds every scale.
    """
    for scale, info in document["scales"].items():
        loads = [
            r["load_average"]
            for r in document["records"]
            if r["scale"] == scale and r["step"] == TOTAL and r["load_average"] is not None
        ]
        info.setdefault("measured_at", document["measured_at"])
        info.setdefault("runs", len({r["run"] for r in document["records"] if r["scale"] == scale}))
        info.setdefault(
            "load_average_median", round(statistics.median(loads), 2) if loads else None
        )
    if not path.exists():
        return document
    try:
        previous = json.loads(path.read_text())
        old_scales = {s: i for s, i in previous["scales"].items() if s not in document["scales"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return document  # not a results file of this shape: replaced
    if not old_scales or previous.get("engines") != document["engines"]:
        return document
    merged = dict(document)
    order = [s for s in SCALES if s in old_scales or s in document["scales"]]
    all_scales = {**old_scales, **document["scales"]}
    merged["scales"] = {s: all_scales[s] for s in order}
    all_equality = {**{s: previous["equality"][s] for s in old_scales}, **document["equality"]}
    merged["equality"] = {s: all_equality[s] for s in order}
    merged["records"] = [r for r in previous["records"] if r["scale"] in old_scales]
    merged["records"] += document["records"]
    return merged


def bench(
    scales: Sequence[str],
    engines: Sequence[str],
    runs: int,
    data_dir: Path = DEFAULT_DATA_DIR,
    memory_cap_gb: float = 16.0,
    timeout_minutes: float = 30.0,
    write: bool = True,
    config_dir: Path | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Run the comparison, print the table, and (``write``) update JSON, charts and docs."""
    from sparkmart.bench import engines_report

    spark_args = [
        *(["--config-dir", str(config_dir)] if config_dir else []),
        *(["--profile", profile] if profile else []),
    ]
    data_dir.mkdir(parents=True, exist_ok=True)

    def save(document: dict[str, Any]) -> None:
        document = merge_previous(document, RESULTS_JSON)
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(document, indent=1) + "\n")
        charts = engines_report.write_charts(document, IMAGES)
        path = update_section("engines", engines_report.markdown(document, charts))
        print(f"written: {RESULTS_JSON}, {', '.join(map(str, charts))}, {path}", flush=True)

    with tempfile.TemporaryDirectory(prefix="engines-", dir=data_dir.parent) as scratch:
        result = run_comparison(
            scales,
            engines,
            runs,
            data_dir,
            Path(scratch),
            int(memory_cap_gb * 2**30),
            timeout_minutes * 60,
            spark_args,
            on_progress=save if write else None,
        )
    print()
    print(engines_report.summary_table(result))
    for scale in scales:
        print(f"\nPer step at `{scale}` (median seconds):\n")
        print(engines_report.step_table(result, scale))
    return result


if __name__ == "__main__":
    main()
