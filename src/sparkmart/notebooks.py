"""Execute the project's notebooks headless, with their parameters set from outside.

Each notebook starts with a code cell tagged ``parameters`` (data dirs, models dir, scale,
Spark profile). ``execute_notebook`` inserts a cell tagged ``injected-parameters`` right after
it (the papermill convention) and runs every cell with nbclient in a fresh kernel: the
project's own interpreter, found through a kernel spec written to a temporary directory, so
the user's Jupyter set-up (``~/.local/share/jupyter``) is neither read nor changed.

``python -m sparkmart.notebooks`` (``make notebooks``) executes them in place on the demo's
data, generating what is missing first, so the committed notebooks show real outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = ("eda", "performance_analysis", "ml_experiments")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
KERNEL_NAME = "sparkmart-python"
SPARKMART = Path(sys.executable).parent / "sparkmart"


class NotebookError(RuntimeError):
    """A notebook is malformed (no parameters cell) or a cell failed."""


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def inject_parameters(notebook: Any, parameters: Mapping[str, Any], name: str = "") -> None:
    """Put ``parameters`` in a cell after the ``parameters`` cell (replacing an earlier one)."""
    import nbformat

    cells = [c for c in notebook.cells if INJECTED_TAG not in _tags(c)]
    positions = [i for i, c in enumerate(cells) if PARAMETERS_TAG in _tags(c)]
    if not positions:
        raise NotebookError(f"{name or 'notebook'}: no code cell tagged '{PARAMETERS_TAG}'")
    source = "# Parameters set by `python -m sparkmart.notebooks` (or the tests)\n" + "\n".join(
        f"{key} = {value!r}" for key, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cells.insert(positions[0] + 1, cell)
    notebook.cells = cells


def strip_noise(notebook: Any) -> None:
    """Drop stderr streams (log lines of sparkmart and Spark) from the outputs; results are
    printed to stdout or displayed, and a failing cell shows as an error output, not stderr."""
    for cell in notebook.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]


def _kernel_spec_manager(directory: Path) -> Any:
    """A kernel spec for this interpreter, in ``directory`` only."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = directory / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sparkmart (Python)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(directory)])


def execute_notebook(
    path: Path,
    parameters: Mapping[str, Any],
    output: Path | None = None,
    cell_timeout: int = 600,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Run ``path`` with ``parameters`` injected; returns the executed notebook (stderr
    streams dropped) and writes it to ``output`` when given. A failing cell raises
    nbclient's ``CellExecutionError`` with the cell's source and traceback."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    inject_parameters(notebook, parameters, path.name)
    with tempfile.TemporaryDirectory(prefix="sparkmart-kernels-") as kernels:
        manager = KernelManager(
            kernel_name=KERNEL_NAME, kernel_spec_manager=_kernel_spec_manager(Path(kernels))
        )
        client = NotebookClient(
            notebook,
            km=manager,
            timeout=cell_timeout,
            kernel_name=KERNEL_NAME,
            record_timing=False,  # no per-cell timestamps: re-running changes only real outputs
            resources={"metadata": {"path": str(cwd or Path.cwd())}},
        )
        kernel_env = {**os.environ, **(env or {})}
        client.execute(env=kernel_env)
    strip_noise(notebook)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    if output is not None:
        nbformat.write(notebook, output)
    return notebook


# --- make notebooks ---------------------------------------------------------------------------


def _run(command: Sequence[str], env: Mapping[str, str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(list(command), check=True, env={**os.environ, **env})


def prepare(data_dir: Path, scale: str, profile: str | None) -> None:
    """Generate, run the batch pipeline and train the models on ``data_dir`` where missing."""
    raw, batch, models = data_dir / "batch" / "raw", data_dir / "batch", data_dir / "models"
    env = {"SPARKMART_DATA_DIR": str(data_dir)}
    common = ["--profile", profile] if profile else []
    if not (raw / "truth").is_dir():
        generate = ["generate", "--scale", scale, "--formats", "parquet", "--out", str(raw)]
        _run([str(SPARKMART), *generate, *common], env)
    if not (batch / "gold" / "orders").is_dir():
        run_batch = ["batch", "--input", str(raw), "--out", str(batch), "--no-postgres"]
        _run([str(SPARKMART), *run_batch, *common], env)
    if not all((models / name / "latest").exists() for name in _MODEL_NAMES):
        _run([str(SPARKMART), "ml", "train", *common], env)


_MODEL_NAMES = ("segmentation", "forecasting", "recommendation", "fraud", "satisfaction")


def notebook_parameters(
    name: str, data_dir: Path, scale: str, profile: str, docs_dir: Path | None = None
) -> dict[str, Any]:
    """The parameters of notebook ``name`` for the data under ``data_dir``."""
    batch = data_dir / "batch"
    if name == "eda":
        return {
            "RAW_DIR": str(batch / "raw"),
            "GOLD_DIR": str(batch / "gold"),
            "SCALE": scale,
            "PROFILE": profile,
        }
    if name == "performance_analysis":
        results_dir = str(docs_dir) if docs_dir else None  # None: the checkout's docs/
        return {"RESULTS_DIR": results_dir, "RUNS_DIR": str(batch / "runs")}
    if name == "ml_experiments":
        return {
            "GOLD_DIR": str(batch / "gold"),
            "TRUTH_DIR": str(batch / "raw" / "truth"),
            "MODELS_DIR": str(data_dir / "models"),
            "SCALE": scale,
            "PROFILE": profile,
        }
    raise NotebookError(f"unknown notebook '{name}' (choose from {', '.join(NOTEBOOKS)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Execute notebooks/*.ipynb in place.")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--scale", default="small", help="scale to generate when data is missing")
    parser.add_argument("--profile", default="local")
    parser.add_argument("--docs-dir", type=Path, default=None, help="default: docs/ here")
    parser.add_argument("--only", default=",".join(NOTEBOOKS), help="comma-separated names")
    parser.add_argument("--no-prepare", action="store_true", help="do not generate missing data")
    parser.add_argument("--cell-timeout", type=int, default=1800)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        choices = ", ".join(NOTEBOOKS)
        parser.error(f"unknown notebook(s) {', '.join(unknown)} (choose from {choices})")
    if not args.no_prepare:
        prepare(args.data_dir, args.scale, args.profile)
    for name in names:
        path = NOTEBOOKS_DIR / f"{name}.ipynb"
        started = time.perf_counter()
        params = notebook_parameters(name, args.data_dir, args.scale, args.profile, args.docs_dir)
        execute_notebook(path, params, output=path, cell_timeout=args.cell_timeout)
        size = path.stat().st_size / 2**20
        print(f"{path}: executed in {time.perf_counter() - started:.0f} s, {size:.2f} MiB")


if __name__ == "__main__":
    main()
