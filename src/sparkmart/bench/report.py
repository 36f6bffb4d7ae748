"""Keep ``docs/benchmarks.md`` as a set of sections, each rewritten by the benchmark that owns it.

A benchmark replaces only its own section (between ``<!-- bench:NAME -->`` markers), so running
one benchmark never erases the numbers of another.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCHMARKS_MD = Path(__file__).resolve().parents[3] / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Every number here was measured by a command in this repository on the machine described in each
section; nothing is typed in by hand. Rerun a section with the command named in it. These
machines are shared and noisy: each time is the median of several runs, and ratios compare runs
made side by side in one process.
"""


def machine_description() -> str:
    """One line about the machine: cores, memory, CPU model, Python and Java."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "unknown memory"
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
        java_version = java.stderr.splitlines()[0] if java.stderr else "java unknown"
    except OSError:
        java_version = "java not found"
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory}, Python {platform.python_version()}, "
        f"{java_version}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def update_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> Path:
    """Replace (or append) the section ``name`` of the benchmarks page with ``body``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_benchmark_cli(
    section: str,
    description: str,
    run: Callable[[str, int, str, Path], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
    argv: list[str] | None = None,
) -> None:
    """The shared command line of every benchmark: run in a scratch dir, print, update docs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="local")
    parser.add_argument("--no-write", action="store_true", help="print only; keep docs as is")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sparkmart-bench-") as scratch:
        result = run(args.scale, args.runs, args.profile, Path(scratch))
    text = report(result)
    print(text)
    if not args.no_write:
        print(f"\nwritten to {update_section(section, text)}")
