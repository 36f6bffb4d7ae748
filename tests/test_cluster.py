"""The batch pipeline on a real Spark standalone cluster equals local mode.

`scripts/cluster.sh` (what `make cluster-up` / `cluster-down` / `cluster-submit` run) starts a
master and two one-core workers on 127.0.0.1 on ports of this test's own, the pipeline goes
through spark-submit with the package zipped for --py-files, and the master's and workers' JSON
show where it ran. The driver and the executors run an interpreter that has the project's
dependencies but not sparkmart itself, as on a cluster node: the package can only come from
the zip. Parquet input keeps the run short; docs/cluster.md says how Avro input was checked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import urllib.request
import uuid
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from sparkmart.batch.pipeline import BatchOptions, run_batch
from sparkmart.config import Settings
from sparkmart.schemas import ENTITIES

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "cluster.sh"
CONFIG_DIR = REPO_ROOT / "config"
SOURCE = "parquet"
SUBMIT_TIMEOUT_SECONDS = 500  # below pytest's 600 s timeout, so the cleanup below runs
GOLD_TABLES = (*ENTITIES, "customer_ltv", "product_performance", "sales_trends", "cohorts")


def free_ports() -> tuple[int, int, int, int]:
    """Master, master UI and REST ports, and the first of two consecutive worker UI ports."""
    while True:
        held = []
        try:
            for _ in range(3):
                sock = socket.socket()
                sock.bind(("0.0.0.0", 0))
                held.append(sock)
            worker = socket.socket()
            worker.bind(("0.0.0.0", 0))
            held.append(worker)
            port = worker.getsockname()[1]
            if port >= 65535:
                continue
            try:
                neighbour = socket.socket()
                held.append(neighbour)
                neighbour.bind(("0.0.0.0", port + 1))
            except OSError:
                continue
            master, ui, rest = (sock.getsockname()[1] for sock in held[:3])
            return master, ui, rest, port
        finally:
            for sock in held:
                sock.close()


def python_without_sparkmart(root: Path) -> Path:
    """A venv that sees this venv's packages (pyspark, fastavro...) but not sparkmart: the
    editable install is a .pth file, and a path listed in another .pth is not scanned for them."""
    venv.create(root, with_pip=False, symlinks=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = root / "lib" / version / "site-packages"
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin" / "python"


@dataclass(frozen=True)
class Cluster:
    env: dict[str, str]
    directory: Path
    master_ui: str

    def run(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def master(self) -> dict:
        with urllib.request.urlopen(f"{self.master_ui}/json/", timeout=10) as response:
            return json.load(response)

    def pids(self) -> list[int]:
        return [int(p.read_text()) for p in self.directory.glob("*.pid") if p.read_text().strip()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    master, ui, rest, worker_ui = free_ports()
    directory = tmp_path_factory.mktemp("cluster")
    env = {
        **os.environ,
        "SPARKMART_CLUSTER_DIR": str(directory),
        "SPARKMART_MASTER_PORT": str(master),
        "SPARKMART_MASTER_UI_PORT": str(ui),
        "SPARKMART_MASTER_REST_PORT": str(rest),
        "SPARKMART_WORKER_UI_PORT": str(worker_ui),
        "SPARKMART_WORKER_MEMORY": "1g",
        "SPARKMART_EXECUTOR_MEMORY": "1g",
    }
    handle = Cluster(env, directory, f"http://127.0.0.1:{ui}")
    try:
        started = handle.run("up")
        assert started.returncode == 0, started.stdout + started.stderr
        yield handle
    finally:
        handle.run("down")  # also when `up` or a test failed: no JVM outlives the test


def layer(spark: SparkSession, out_dir: Path, name: str, table: str) -> DataFrame:
    frame = spark.read.parquet(str(out_dir / name / table))
    return frame.drop(*[c for c in frame.columns if c.startswith("_") or c == "order_month"])


def test_up_is_idempotent(cluster: Cluster) -> None:
    pids = sorted(cluster.pids())
    again = cluster.run("up")
    assert again.returncode == 0, again.stderr
    assert "master already running" in again.stdout
    assert sorted(cluster.pids()) == pids and len(pids) == 3
    workers = cluster.master()["workers"]
    assert [(w["state"], w["cores"]) for w in workers] == [("ALIVE", 1), ("ALIVE", 1)]


def test_a_taken_port_is_a_clear_error(cluster: Cluster, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cluster.run(
            "up", SPARKMART_CLUSTER_DIR=str(tmp_path), SPARKMART_MASTER_PORT=str(port)
        )
    assert result.returncode != 0
    assert f"port {port} (master) is already in use" in result.stderr
    assert not list(tmp_path.glob("*.pid"))  # nothing was started


def test_batch_pipeline_on_the_cluster_equals_local_mode(
    cluster: Cluster,
    spark: SparkSession,
    settings: Settings,
    tiny_raw: Path,
    tmp_path: Path,
) -> None:
    bare_python = python_without_sparkmart(tmp_path / "node-python")
    no_sparkmart = subprocess.run([str(bare_python), "-c", "import sparkmart"], check=False)
    assert no_sparkmart.returncode != 0  # else the zip would not be needed
    app_name = f"sparkmart-cluster-test-{uuid.uuid4().hex[:8]}"
    submit_args = (
        f"--conf spark.pyspark.python={bare_python} "
        f"--conf spark.pyspark.driver.python={bare_python} "
        "--conf spark.ui.enabled=false"
    )
    cluster_out = tmp_path / "cluster"
    submit = subprocess.Popen(
        [
            *("bash", str(CLUSTER_SCRIPT), "submit", "--config-dir", str(CONFIG_DIR)),
            *("--profile", "test"),  # the local run's settings (a later --profile wins)
            *("--input", str(tiny_raw), "--source", SOURCE, "--out", str(cluster_out)),
            "--no-postgres",
        ],
        env={**cluster.env, "SPARKMART_APP_NAME": app_name, "SPARKMART_SUBMIT_ARGS": submit_args},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: driver JVM and Python stop together
    )
    # The same pipeline in local mode, in this session, while the cluster run starts its JVMs.
    local_out = tmp_path / "local"
    try:
        options = BatchOptions.from_settings(
            settings, tiny_raw, local_out, SOURCE, export_postgres=False
        )
        local = run_batch(spark, settings, options, None)
        output, _ = submit.communicate(timeout=SUBMIT_TIMEOUT_SECONDS)
    finally:
        if submit.poll() is None:  # failed or timed out here: leave no driver behind
            os.killpg(submit.pid, signal.SIGKILL)
            submit.wait()
    assert submit.returncode == 0, output[-5000:]
    assert local.counts is not None and local.counts.balanced

    # It ran on the cluster: the master lists it as finished, and both workers ran an executor.
    master = cluster.master()
    apps = [app for app in master["completedapps"] if app["name"] == app_name]
    assert [app["state"] for app in apps] == ["FINISHED"], master["completedapps"]
    app_id = apps[0]["id"]
    assert app_id in output  # the run summary names the Spark application it ran as
    for worker in master["workers"]:
        with urllib.request.urlopen(f"{worker['webuiaddress']}/json/", timeout=10) as response:
            executors = json.load(response)["finishedexecutors"]
        assert app_id in {executor["appid"] for executor in executors}, worker["id"]

    for entity in ENTITIES:
        assertDataFrameEqual(
            layer(spark, cluster_out, "silver", entity), layer(spark, local_out, "silver", entity)
        )
    for table in GOLD_TABLES:
        assertDataFrameEqual(
            layer(spark, cluster_out, "gold", table), layer(spark, local_out, "gold", table)
        )


def test_down_stops_every_jvm(cluster: Cluster) -> None:
    pids = cluster.pids()
    assert len(pids) == 3
    stopped = cluster.run("down")
    assert stopped.returncode == 0, stopped.stderr
    assert not [pid for pid in pids if alive(pid)]
    assert not list(cluster.directory.glob("*.pid"))
    leftovers = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if str(cwd.readlink()).startswith(str(cluster.directory)):
                leftovers.append(cwd.parent.name)
        except OSError:
            continue
    assert not leftovers  # no executor JVM left in a worker's directory
    assert cluster.run("status").returncode != 0
