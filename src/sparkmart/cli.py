"""The `sparkmart` command line: one app, one sub-command per stage.

Commands only parse options, build the session and call the package; the work lives in the
stage modules so that scripts for spark-submit, notebooks and tests call the same code.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from sparkmart.config import ConfigError, Settings, load_settings
from sparkmart.io.postgres import PgSettings, PostgresError
from sparkmart.schemas import ENTITIES, FORMATS

app = typer.Typer(
    help="sparkmart: retail analytics on Apache Spark (batch, streaming, ML, benchmarks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigDirOption = Annotated[
    Path | None,
    typer.Option("--config-dir", help="Directory with spark_config.json and friends."),
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="Spark profile from spark_config.json (local, test, cluster)."),
]
MasterOption = Annotated[
    str | None, typer.Option("--master", help="Override the profile's Spark master URL.")
]


def fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def echo(message: str = "") -> None:
    typer.echo(message)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn the project's expected failures into one readable line and a non-zero exit."""
    try:
        yield
    except ConfigError as exc:
        fail(f"configuration: {exc}")
    except PostgresError as exc:
        fail(f"PostgreSQL: {exc}")
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


def load(
    config_dir: Path | None,
    profile: str | None,
    master: str | None = None,
    data_dir: Path | None = None,
) -> Settings:
    return load_settings(config_dir, profile, {"master": master}, data_dir=data_dir)


def parse_formats(formats: str) -> list[str]:
    chosen = [item.strip().lower() for item in formats.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in FORMATS]
    if unknown or not chosen:
        raise ValueError(
            f"--formats: unknown format(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(FORMATS)}"
        )
    return chosen


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table: readable in a terminal and in CI logs alike."""
    cells = [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    echo(line)
    echo("  ".join("-" * w for w in widths))
    for row in cells:
        echo(
            "  ".join(
                v.rjust(w) if i > 0 else v.ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )


# --- generate ------------------------------------------------------------------------------


def run_generate_files(
    settings: Settings,
    scale: str | None,
    seed: int | None,
    out: Path | None,
    formats: list[str],
    counts_override: dict[str, int | None],
) -> dict[str, Any]:
    from sparkmart.generate import generate, resolve_counts, write_generated
    from sparkmart.spark_utils import get_spark

    gen_config = settings.pipeline["generate"]
    counts = resolve_counts(settings, scale, **counts_override)
    out_dir = out or settings.path("raw")
    spark = get_spark(settings.spark)
    started = time.perf_counter()
    data = generate(spark, counts, seed if seed is not None else gen_config["seed"], gen_config)
    summary = write_generated(data, out_dir, formats, settings.path("streaming"))
    seconds = time.perf_counter() - started
    echo(
        f"generated {', '.join(f'{counts[e]:,} {e}' for e in ENTITIES)} in {seconds:.1f} s "
        f"-> {out_dir}"
    )
    print_generate_summary(summary, formats)
    return summary


def print_generate_summary(summary: dict[str, Any], formats: list[str]) -> None:
    rows = []
    for entity in ENTITIES:
        per_format = summary[entity]
        rows.append([entity, *[per_format[fmt] for fmt in formats]])
    print_table(["entity (rows written)", *formats], rows)
    if extra := {k: v for k, v in summary.items() if k not in ENTITIES}:
        for key, value in extra.items():
            echo(f"{key}: {value}")


def run_generate_postgres(settings: Settings, seed: int | None) -> dict[str, int]:
    """Seed the previous project's tables ``public.*`` (replaced whole, all or nothing)."""
    from sparkmart.generate import postgres_seed
    from sparkmart.io.postgres import ensure_database, ensure_schemas, replace_table_atomically
    from sparkmart.schemas import PRIMARY_KEYS
    from sparkmart.spark_utils import get_spark

    pg = PgSettings.from_env()
    ensure_database(pg)
    ensure_schemas(pg)
    spark = get_spark(settings.spark)
    tables = dict(
        zip(ENTITIES, postgres_seed(spark, settings.pipeline["generate"], seed), strict=True)
    )
    written = {
        entity: replace_table_atomically(
            df, pg, f"public.{entity}", primary_key=PRIMARY_KEYS[entity]
        )
        for entity, df in tables.items()
    }
    echo(f"seeded {pg.display}: " + ", ".join(f"public.{t} {n:,} rows" for t, n in written.items()))
    return written


@app.command()
def generate(
    scale: Annotated[
        str | None, typer.Option(help="Preset size: tiny, small, medium, large.")
    ] = "small",
    seed: Annotated[int | None, typer.Option(help="Random seed (default from config).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (default data/batch/raw).")
    ] = None,
    formats: Annotated[
        str, typer.Option(help="Comma-separated: parquet,json,csv,avro.")
    ] = ",".join(FORMATS),
    customers: Annotated[int | None, typer.Option(help="Override the preset's customers.")] = None,
    products: Annotated[int | None, typer.Option(help="Override the preset's products.")] = None,
    orders: Annotated[int | None, typer.Option(help="Override the preset's orders.")] = None,
    target: Annotated[
        str, typer.Option(help="files: raw files in every format; postgres: seed public.*.")
    ] = "files",
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
    master: MasterOption = None,
) -> None:
    """Generate synthetic customers, products and orders with planted structure and defects."""
    with clear_errors():
        settings = load(config_dir, profile, master)
        if target == "postgres":
            run_generate_postgres(settings, seed)
        elif target == "files":
            run_generate_files(
                settings,
                scale,
                seed,
                out,
                parse_formats(formats),
                {"customers": customers, "products": products, "orders": orders},
            )
        else:
            raise ValueError(f"--target: unknown target '{target}' (choose files or postgres)")


def run_batch_command(
    settings: Settings,
    input_dir: Path | None,
    source: str | None,
    out: Path | None,
    incremental: bool,
    strict: bool,
    postgres: bool,
) -> None:
    from sparkmart.batch.pipeline import BatchOptions, run_batch
    from sparkmart.batch.quality import QualityRuleError
    from sparkmart.io.postgres import ensure_database, ensure_schemas
    from sparkmart.spark_utils import get_spark

    options = BatchOptions.from_settings(
        settings,
        input_dir,
        out,
        source,
        incremental=incremental,
        strict=strict,
        export_postgres=postgres,
    )
    pg = None
    if postgres or incremental or source == "postgres":
        pg = PgSettings.from_env()
        ensure_database(pg)
        ensure_schemas(pg)
    if not options.input_dir.exists() and source != "postgres":
        raise FileNotFoundError(
            f"--input {options.input_dir} does not exist: run `sparkmart generate` first"
        )
    spark = get_spark(settings.spark)
    try:
        summary = run_batch(spark, settings, options, pg)
    except QualityRuleError as exc:
        fail(str(exc), code=3)
    echo(summary.format())
    echo(f"\noutput under {options.out_dir.resolve()}")


@app.command()
def batch(
    input: Annotated[
        Path | None, typer.Option("--input", help="Raw data root (default data/batch/raw).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="Read every entity from: parquet, json, csv, avro or postgres "
            "(default: batch.sources in config/pipeline.yaml)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Batch output root (default data/batch).")
    ] = None,
    incremental: Annotated[
        bool, typer.Option(help="Process only rows past the last run's high-water mark.")
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Fail on the first quality-rule failure instead of quarantining.")
    ] = False,
    postgres: Annotated[
        bool, typer.Option(help="Export to PostgreSQL analytics.* and write the audit trail.")
    ] = True,
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
    master: MasterOption = None,
) -> None:
    """Run the batch pipeline: bronze -> silver (+ quarantine) -> gold -> exports."""
    with clear_errors():
        settings = load(config_dir, profile, master)
        run_batch_command(settings, input, source, out, incremental, strict, postgres)


STREAM_IDLE_SECONDS = 15.0  # the demo's query stops this long after the simulator's last file

# --- stream --------------------------------------------------------------------------------


@app.command()
def simulate(
    rate: Annotated[
        float | None, typer.Option(help="Events per second (default from streaming_config.yaml).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Seconds to run (default: until Ctrl-C or --count).")
    ] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
    sink: Annotated[
        str | None, typer.Option(help="files (data/streaming/input) or socket (127.0.0.1).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default from config).")] = None,
    clock: Annotated[
        str,
        typer.Option(help="realtime: paced, event time = now; simulated: as fast as possible."),
    ] = "realtime",
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
) -> None:
    """Emit a stream of order events (with planted anomalies) for `sparkmart stream`."""
    from sparkmart.stream.simulator import simulate as run_simulation

    with clear_errors():
        settings = load(config_dir, profile)
        summary = run_simulation(
            settings,
            rate=rate,
            duration=duration,
            count=count,
            sink=sink,
            seed=seed,
            clock=clock,
            progress=print_simulator_progress,
        )
        print_simulator_progress(summary)
        planted = {kind: n for kind, n in summary.anomalies.items() if n}
        echo(
            f"simulator {summary.stopped_by}: {summary.lines:,} lines "
            f"({summary.events:,} events, {summary.malformed:,} malformed) in "
            f"{summary.seconds:.1f} s, {summary.files_written:,} files; planted "
            + (", ".join(f"{kind} {n:,}" for kind, n in planted.items()) or "nothing")
        )


def print_simulator_progress(summary: Any) -> None:
    if (summary.seconds and int(summary.seconds) % 5 == 0) or summary.stopped_by != "running":
        echo(
            f"simulator: {summary.lines:,} lines in {summary.seconds:.0f} s "
            f"({summary.achieved_rate:,.0f}/s), last event time {summary.last_event_time}"
        )


@app.command()
def stream(
    source: Annotated[
        str | None, typer.Option(help="files (replayable, exactly-once) or socket (demo only).")
    ] = None,
    trigger: Annotated[
        float | None, typer.Option(help="Seconds between micro-batches (default from config).")
    ] = None,
    until_idle: Annotated[
        float | None,
        typer.Option("--until-idle", help="Stop after this many seconds without new input."),
    ] = None,
    simulate_rate: Annotated[
        float | None,
        typer.Option(
            "--simulate",
            help="Also run the simulator at this rate (events/s) in a child process.",
        ),
    ] = None,
    simulate_seconds: Annotated[
        float | None,
        typer.Option("--simulate-seconds", help="How long the simulator runs (default: forever)."),
    ] = None,
    query_name: Annotated[
        str, typer.Option(help="Query name: its checkpoint and ledger rows.")
    ] = "orders",
    fresh: Annotated[
        bool,
        typer.Option(
            help="Start afresh: empty data/streaming (input, checkpoints, output, anomalies) "
            "and the streaming tables first."
        ),
    ] = False,
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
    master: MasterOption = None,
) -> None:
    """Run the streaming query: live metrics and alerts into PostgreSQL streaming.*."""
    with clear_errors():
        settings = load(config_dir, profile, master)
        run_stream_command(
            settings,
            source,
            trigger,
            until_idle,
            simulate_rate,
            simulate_seconds,
            query_name,
            fresh=fresh,
        )


def run_stream_command(
    settings: Settings,
    source: str | None,
    trigger: float | None,
    until_idle: float | None,
    simulate_rate: float | None,
    simulate_seconds: float | None,
    query_name: str = "orders",
    fresh: bool = False,
) -> None:
    from sparkmart.io.postgres import ensure_database, ensure_schemas
    from sparkmart.stream.query import format_latest, latest_metrics, run_stream
    from sparkmart.stream.scoring import format_scores, load_and_score

    pg = PgSettings.from_env()
    ensure_database(pg)
    ensure_schemas(pg)
    if fresh:
        reset_streaming(settings, pg)
    simulator = None
    if simulate_rate is not None:
        simulator = start_simulator_process(settings, simulate_rate, simulate_seconds)
    try:
        summary = run_stream(
            settings,
            source=source,
            trigger_seconds=trigger,
            until_idle=until_idle,
            progress=echo,
            query_name=query_name,
        )
    finally:
        if simulator is not None:
            stop_process(simulator)
    echo(summary.format())
    echo("")
    echo(format_latest(latest_metrics(pg, settings)))
    anomalies = settings.path("streaming") / "anomalies"
    if anomalies.is_dir():
        echo("\nalerts against the simulator's planted anomalies:")
        echo(format_scores(load_and_score(pg, anomalies, query_name)))


def reset_streaming(settings: Settings, pg: PgSettings) -> None:
    """Forget every earlier streaming run: its files, checkpoints and PostgreSQL rows."""
    import shutil

    from sparkmart.stream.tables import ensure_stream_tables, truncate_stream_tables

    root = settings.path("streaming")
    for name in ("input", "checkpoints", "output", "anomalies"):
        shutil.rmtree(root / name, ignore_errors=True)
    ensure_stream_tables(pg)
    truncate_stream_tables(pg)
    echo(f"streaming state reset: {root}/{{input,checkpoints,output,anomalies}} and streaming.*")


def start_simulator_process(settings: Settings, rate: float, seconds: float | None) -> Any:
    """The simulator in its own process, so its encoding does not compete with the driver's GIL."""
    import subprocess

    command = [
        sys.executable,
        "-m",
        "sparkmart.cli",
        "simulate",
        "--rate",
        str(rate),
        "--config-dir",
        str(settings.config_dir),
    ]
    if seconds is not None:
        command += ["--duration", str(seconds)]
    env = {**os.environ, "SPARKMART_DATA_DIR": str(settings.data_dir)}
    log = settings.path("streaming") / "simulator.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    echo(f"simulator: {rate:g} events/s{f' for {seconds:g} s' if seconds else ''} (log: {log})")
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def stop_process(process: Any, timeout: float = 10.0) -> None:
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- ml ------------------------------------------------------------------------------------


@app.command()
def ml(
    actions: Annotated[
        list[str],
        typer.Argument(help="train, evaluate and/or score, run in the order given."),
    ],
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated subset of segmentation, forecasting, recommendation, "
            "fraud, satisfaction (default: all)."
        ),
    ] = None,
    postgres: Annotated[
        bool, typer.Option(help="score: also update PostgreSQL analytics.*.")
    ] = True,
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
    master: MasterOption = None,
) -> None:
    """Train, evaluate or score the models on the gold layer (docs/ml.md)."""
    with clear_errors():
        settings = load(config_dir, profile, master)
        run_ml_command(settings, actions, models, postgres)


def run_ml_command(
    settings: Settings, actions: list[str], models: str | None, postgres: bool
) -> None:
    from sparkmart.ml.core import MLError
    from sparkmart.ml.pipeline import run_ml
    from sparkmart.spark_utils import get_spark

    unknown = [a for a in actions if a not in ("train", "evaluate", "score")]
    if unknown or not actions:
        raise ValueError(
            f"unknown action(s) {', '.join(unknown) or '(none given)'}: "
            "choose from train, evaluate, score"
        )
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else None
    pg = PgSettings.from_env() if postgres else None
    spark = get_spark(settings.spark)
    status = 0
    for action in actions:
        try:
            summary = run_ml(settings, spark, action, chosen, pg=pg)  # type: ignore[arg-type]
        except MLError as exc:
            fail(str(exc))
        echo(summary.format())
        status = max(status, summary.exit_status)  # 1 when `evaluate` misses a target
    if status:
        raise typer.Exit(status)


# --- dashboard -----------------------------------------------------------------------------


@app.command()
def dashboard(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: dashboard.host).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: dashboard.port).")] = None,
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
) -> None:
    """Serve the web dashboard (live sales, analytics, run monitor) until Ctrl-C."""
    from sparkmart.dashboard.app import DashboardError, serve

    with clear_errors():
        try:
            serve(load(config_dir, profile), host=host, port=port, announce=echo)
        except DashboardError as exc:
            fail(str(exc))


def dashboard_hint(settings: Settings) -> str:
    from sparkmart.dashboard.app import DashboardOptions, dashboard_url

    options = DashboardOptions.from_settings(settings)
    return (
        f"watch it: `make dashboard` (or `sparkmart dashboard`), then open "
        f"{dashboard_url(options.host, options.port)}live; `make stream` in another terminal "
        "feeds the live page"
    )


@app.command()
def bench(
    scales: Annotated[
        str,
        typer.Option(
            help="Comma-separated: tiny, small, medium, large, xlarge (50M orders), xxlarge (100M)."
        ),
    ] = "small,medium",
    runs: Annotated[int, typer.Option(help="Runs per engine and scale (median reported).")] = 3,
    engines: Annotated[
        str, typer.Option(help="Comma-separated: spark, pandas, duckdb, polars.")
    ] = "spark,pandas,duckdb,polars",
    data_dir: Annotated[
        Path | None, typer.Option(help="Generated data per scale (reused; default in /tmp).")
    ] = None,
    memory_cap_gb: Annotated[
        float, typer.Option(help="A run whose process tree exceeds this is out_of_memory.")
    ] = 16.0,
    timeout_minutes: Annotated[
        float, typer.Option(help="A run taking longer than this is recorded as failed.")
    ] = 30.0,
    write: Annotated[
        bool, typer.Option(help="Write docs/bench/engines.json, the charts and the docs section.")
    ] = True,
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
) -> None:
    """Spark vs pandas, DuckDB and Polars on the batch workload (docs/benchmarks.md)."""
    from sparkmart.bench import engines_bench

    with clear_errors():
        load(config_dir, profile)  # fail early on bad configuration
        engines_bench.bench(
            [s.strip() for s in scales.split(",") if s.strip()],
            [e.strip() for e in engines.split(",") if e.strip()],
            runs,
            data_dir or engines_bench.DEFAULT_DATA_DIR,
            memory_cap_gb,
            timeout_minutes,
            write=write,
            config_dir=config_dir,
            profile=profile,
        )


@app.command()
def demo(
    scale: Annotated[str, typer.Option(help="Preset size for the generated data.")] = "small",
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Root of all output (default data/).")
    ] = None,
    ml_models: Annotated[
        bool, typer.Option("--ml/--no-ml", help="Train the models and write their scores.")
    ] = True,
    stream_seconds: Annotated[
        float, typer.Option(help="Seconds of simulated orders to stream (0: skip streaming).")
    ] = 60.0,
    stream_rate: Annotated[float, typer.Option(help="Simulated orders per second.")] = 100.0,
    config_dir: ConfigDirOption = None,
    profile: ProfileOption = None,
    master: MasterOption = None,
) -> None:
    """The main job end to end: generate, seed PostgreSQL, batch, ML, a minute of streaming."""
    with clear_errors():
        started = time.perf_counter()
        settings = load(config_dir, profile, master, data_dir=data_dir)
        echo(f"== 1/5 generate '{scale}' data in {', '.join(FORMATS)} ==")
        run_generate_files(
            settings,
            scale,
            None,
            None,
            list(FORMATS),
            {"customers": None, "products": None, "orders": None},
        )
        echo("\n== 2/5 seed PostgreSQL public.* (the previous project's tables) ==")
        run_generate_postgres(settings, None)
        echo("\n== 3/5 batch pipeline: bronze -> silver (+ quarantine) -> gold -> exports ==")
        run_batch_command(settings, None, None, None, False, False, True)
        if ml_models:
            echo("\n== 4/5 machine learning: train on gold, check each target, write scores ==")
            run_ml_command(settings, ["train", "score"], None, True)
        if stream_seconds > 0:
            echo(
                f"\n== 5/5 streaming: simulator at {stream_rate:g} events/s for "
                f"{stream_seconds:g} s, streaming query -> streaming.* =="
            )
            run_stream_command(
                settings,
                None,
                None,
                STREAM_IDLE_SECONDS,
                stream_rate,
                stream_seconds,
                "demo",
                fresh=True,
            )
        pg = PgSettings.from_env()
        echo(
            f"\ndemo finished in {time.perf_counter() - started:.0f} s; "
            f"output under {settings.data_dir.resolve()}\n"
            f"query the results: psql '{pg.display}' -c 'SELECT * FROM analytics.sales_trends "
            "WHERE grain = $$month$$ ORDER BY period_start'\n"
            f"{dashboard_hint(settings)}"
        )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
