"""The order-event simulator: determinism, pacing, injections, sinks, the line format, config."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import signal
import socket
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType
from pyspark.testing import assertDataFrameEqual

from sparkmart.config import ConfigError, Settings
from sparkmart.generate.params import PAYMENT_METHODS
from sparkmart.schemas import ORDER_EVENT_SCHEMA
from sparkmart.stream.catalog import Catalog, CatalogDirs, CatalogError, load_catalog
from sparkmart.stream.simulator import (
    DISCOUNTS,
    EVENT_CORRUPT_COLUMN,
    EVENT_JSON_OPTIONS,
    MALFORMED_KINDS,
    AnomalyLog,
    FileSink,
    InjectOptions,
    SalesDrop,
    Schedule,
    Simulator,
    SimulatorOptions,
    SocketSink,
    _sigint_sets,
    read_anomalies,
    run_simulator,
    simulate,
)

START = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)
PRICES = {101: 19.99, 102: 5.00, 103: 249.50, 104: 12.34, 105: 0.99}


class ListSink:
    """Keeps the lines in memory (the sink is not what these tests are about)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines) -> None:
        self.lines.extend(lines)

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def tiny_catalog(customers: int = 50) -> Catalog:
    return Catalog.from_records(
        range(1, customers + 1),
        PRICES,
        product_orders={101: 40, 102: 10, 103: 5, 104: 1, 105: 0},
    )


def options(**changes) -> SimulatorOptions:
    return SimulatorOptions(clock="simulated", **changes)


def parse(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_same_events_whatever_the_chunking():
    catalog = tiny_catalog()
    start_ms = int(START.timestamp() * 1000)
    first = Simulator(catalog, options(seed=3))
    whole = first.encode(first.events(0, 20_000), start_ms)

    second = Simulator(catalog, options(seed=3))
    bounds = [0, 1, 7, 8191, 8192, 8193, 12_000, 20_000]
    chunked = [
        line
        for a, b in itertools.pairwise(bounds)
        for line in second.encode(second.events(a, b), start_ms)
    ]
    assert chunked == whole
    ids = [event.get("event_id") for event in map(parse, whole) if event]
    assert len(set(ids) - {None}) > 19_000

    other_seed = Simulator(catalog, options(seed=4))
    assert other_seed.encode(other_seed.events(0, 100), start_ms) != whole[:100]


def test_event_and_order_ids_are_unique_and_above_batch_ids():
    simulator = Simulator(tiny_catalog(), options(seed=9, inject=InjectOptions.none()))
    events = [json.loads(line) for line in simulator.encode(simulator.events(0, 5000), 0)]
    assert [e["event_id"] for e in events[:3]] == ["9-0", "9-1", "9-2"]
    assert len({e["event_id"] for e in events}) == 5000
    assert len({e["order_id"] for e in events}) == 5000
    assert min(e["order_id"] for e in events) >= 10**12


# --- what the events look like ---------------------------------------------------------------


def test_normal_events_look_like_orders_of_catalog_customers_and_products():
    catalog = tiny_catalog()
    simulator = Simulator(catalog, options(inject=InjectOptions.none()))
    events = [json.loads(line) for line in simulator.encode(simulator.events(0, 4000), 0)]
    assert {e["customer_id"] for e in events} <= set(catalog.customer_ids.tolist())
    assert {e["product_id"] for e in events} <= set(PRICES)
    assert all(e["unit_price"] == PRICES[e["product_id"]] for e in events)
    assert {e["quantity"] for e in events} == {1, 2, 3, 4}
    assert {e["discount"] for e in events} <= set(DISCOUNTS)
    assert {e["payment_method"] for e in events} <= set(PAYMENT_METHODS)
    assert {e["status"] for e in events} == {"processing"}
    assert all(e["event_time"] == e["order_ts"] == e["updated_at"] for e in events)
    assert all(e["shipped_ts"] is None and e["delivered_ts"] is None for e in events)
    # popularity follows past orders: product 101 (40 past orders) beats 104 (1)
    products = Counter(e["product_id"] for e in events)
    assert products[101] > 5 * products[104]


def test_heavy_customers_do_not_look_like_bursts_in_clean_traffic():
    ids = range(1, 100_001)
    heavy = {customer: 500 for customer in range(1, 11)}  # the skew scenario
    catalog = Catalog.from_records(ids, PRICES, customer_orders={**dict.fromkeys(ids, 1), **heavy})
    simulator = Simulator(catalog, options(rate_per_second=100, inject=InjectOptions.none()))
    minute = simulator.events(0, 6000)  # one minute at 100 events/s
    per_customer = Counter(minute.customer_id.tolist())
    assert max(per_customer.values()) <= 4
    assert simulator.normal_orders_per_customer_minute() < 0.5


# --- injections --------------------------------------------------------------------------------

INJECT = InjectOptions(
    out_of_order_rate=0.05,
    out_of_order_max_seconds=20.0,
    late_rate=0.01,
    late_by_seconds=900.0,
    malformed_rate=0.02,
    large_order_rate=0.01,
    large_order_quantity=(30, 60),
    bursts_per_minute=2.0,
    burst_orders=15,
    burst_seconds=20.0,
    sales_drop=SalesDrop(at_seconds=600.0, duration_seconds=120.0, factor=0.25),
)


@pytest.fixture(scope="module")
def injected_run(tmp_path_factory):
    """100,000 lines at 50/s (about 35 minutes of stream time) with every injection on."""
    catalog = tiny_catalog(customers=2000)
    simulator = Simulator(catalog, options(rate_per_second=50.0, inject=INJECT, seed=11))
    sink = ListSink()
    log_dir = tmp_path_factory.mktemp("anomalies")
    summary = run_simulator(
        simulator, sink, count=100_000, anomaly_log=AnomalyLog(log_dir), start=START
    )
    return catalog, simulator, sink.lines, read_anomalies(log_dir), summary


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_every_injection_kind_appears_at_its_rate_and_is_logged(injected_run):
    _, simulator, lines, records, summary = injected_run
    n = len(lines)
    kinds = Counter(r["kind"] for r in records)
    assert kinds == Counter({k: v for k, v in summary.anomalies.items() if v})
    for kind, rate in [
        ("out_of_order", INJECT.out_of_order_rate),
        ("late", INJECT.late_rate),
        ("malformed", INJECT.malformed_rate),
        ("large_order", INJECT.large_order_rate),
    ]:
        expected = n * rate
        assert abs(kinds[kind] - expected) < 5 * np.sqrt(expected), kind  # binomial, 5 sigma
    stream_minutes = float(simulator.schedule.time_of(n - 1)) / 60
    expected_bursts = INJECT.bursts_per_minute * stream_minutes
    assert abs(kinds["customer_burst"] - expected_bursts) < 5 * np.sqrt(expected_bursts)
    assert kinds["sales_drop"] == 1
    assert summary.malformed == kinds["malformed"]
    assert summary.events == n - kinds["malformed"]
    # all four malformed shapes occur
    assert {r["detail"] for r in records if r["kind"] == "malformed"} == set(MALFORMED_KINDS)


def test_logged_anomalies_match_the_emitted_lines(injected_run):
    catalog, _, lines, records, _ = injected_run
    by_id = {}
    for line in lines:
        event = parse(line)
        if event and "event_id" in event:
            by_id[event["event_id"]] = event
    for record in records:
        event = by_id.get(record["event_id"])
        kind = record["kind"]
        if kind == "late":
            assert abs(_ms(record["end"]) - _ms(event["event_time"]) - 900_000) <= 1
        elif kind == "out_of_order":
            delay = _ms(record["end"]) - _ms(event["event_time"])
            assert 2_000 - 1 <= delay <= 20_000 + 1
        elif kind == "large_order":
            assert 30 <= event["quantity"] <= 60
            assert record["customer_id"] == event["customer_id"]
        elif kind == "malformed":  # the line is not a complete, well-typed event
            assert (
                event is None
                or "event_time" not in event
                or not isinstance(event["quantity"], int)
                or event["event_time"] == "not a time"
            )
    large = {r["event_id"] for r in records if r["kind"] == "large_order"}
    normal_quantities = {e["quantity"] for i, e in by_id.items() if i not in large}
    assert normal_quantities <= {1, 2, 3, 4, "abc"}
    customers = set(catalog.customer_ids.tolist())
    assert {e["customer_id"] for e in by_id.values()} <= customers
    assert {e["product_id"] for e in by_id.values()} <= set(PRICES)


def test_bursts_and_the_sales_drop_are_in_the_stream(injected_run):
    _, _, lines, records, _ = injected_run
    events = [e for e in map(parse, lines) if e and e.get("event_time", "").endswith("Z")]
    for burst in [r for r in records if r["kind"] == "customer_burst"]:
        start, end = _ms(burst["start"]), _ms(burst["end"])
        assert end - start <= 20_000 + 20  # within burst_seconds (+ one gap between events)
        placed = [
            e
            for e in events
            if e["customer_id"] == burst["customer_id"] and start <= _ms(e["event_time"]) <= end
        ]
        assert len(placed) >= 15
    (drop,) = [r for r in records if r["kind"] == "sales_drop"]
    start_ms = _ms(START.isoformat())
    assert _ms(drop["start"]) - start_ms == 600_000 and _ms(drop["end"]) - start_ms == 720_000
    per_second = Counter((_ms(e["event_time"]) - start_ms) // 1000 for e in events)
    inside = np.mean([per_second[s] for s in range(610, 710)])
    before = np.mean([per_second[s] for s in range(300, 590)])
    assert 0.15 < inside / before < 0.35  # factor 0.25 (some events are delayed/malformed)


def test_schedule_inverts_the_rate_including_the_drop():
    schedule = Schedule(rate=10.0, drop_start=5.0, drop_end=15.0, factor=0.5)
    times = schedule.time_of(np.arange(0, 120))
    assert times[0] == 0.0 and times[49] == pytest.approx(4.9)
    assert times[50] == pytest.approx(5.0) and times[51] == pytest.approx(5.2)
    assert times[100] == pytest.approx(15.0) and times[101] == pytest.approx(15.1)
    assert schedule.events_before(15.0) == 100
    assert list(schedule.events_before(times)) == list(range(120))


# --- realtime pacing -----------------------------------------------------------------------------


def test_realtime_clock_paces_events_to_the_rate():
    simulator = Simulator(
        tiny_catalog(), SimulatorOptions(rate_per_second=200.0, inject=InjectOptions.none())
    )
    samples: list[tuple[float, int]] = []
    began = time.perf_counter()
    summary = run_simulator(
        simulator,
        ListSink(),
        duration_seconds=2.0,
        progress=lambda s: samples.append((time.perf_counter() - began, s.lines)),
        progress_every=0.2,
    )
    assert summary.lines == 400  # every event due before 2 s
    assert 1.9 < summary.seconds < 4.0
    assert summary.stopped_by == "completed"
    assert len(samples) >= 5
    for elapsed, lines in samples:
        assert lines <= 200 * elapsed + 1  # never ahead of the schedule
        assert lines >= 200 * (elapsed - 0.6)  # and not far behind it (loose: shared machine)
    first, last = _ms(summary.first_event_time), _ms(summary.last_event_time)
    assert last - first == 1995  # event times follow the schedule: 5 ms apart


def test_stop_event_ends_a_realtime_run_with_every_file_closed(tmp_path):
    simulator = Simulator(tiny_catalog(), SimulatorOptions(rate_per_second=500.0))
    stop = threading.Event()
    threading.Timer(0.6, stop.set).start()
    sink = FileSink(tmp_path / "input", roll_seconds=10.0)  # the roll is still open at stop
    summary = run_simulator(
        simulator, sink, stop=stop, anomaly_log=AnomalyLog(tmp_path / "anomalies", 10.0)
    )
    assert summary.stopped_by == "stop"
    assert not list(tmp_path.rglob(".*"))  # no temp file left behind
    written = [line for path in (tmp_path / "input").glob("part-*.jsonl") for line in
               path.read_text().splitlines()]  # fmt: skip
    assert len(written) == summary.lines > 0


def test_ctrl_c_sets_the_stop_event_instead_of_raising():
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    with _sigint_sets(stop):
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
    assert signal.getsignal(signal.SIGINT) is previous


# --- sinks ---------------------------------------------------------------------------------------


def test_file_sink_shows_only_complete_files(tmp_path):
    sink = FileSink(tmp_path, roll_seconds=0.2)
    sink.write(['{"a":1}', '{"a":2}'])
    assert list(tmp_path.glob("part-*")) == []  # still being written, under a hidden name
    assert [p.name[0] for p in tmp_path.iterdir()] == ["."]
    time.sleep(0.25)
    sink.tick()
    sink.write(['{"a":3}'])
    sink.close()
    files = sorted(tmp_path.glob("part-*.jsonl"))
    assert [p.read_text() for p in files] == ['{"a":1}\n{"a":2}\n', '{"a":3}\n']
    assert [p.name.split("-")[1] for p in files] == ["000000", "000001"]
    assert FileSink(tmp_path)._sequence == 2  # a later run continues the numbering


def test_file_sink_drops_the_roll_of_a_failed_write(tmp_path):
    sink = FileSink(tmp_path, roll_seconds=60)
    sink.write(['{"a":1}'])
    with pytest.raises(TypeError):
        sink.write(['{"a":2}', None])  # type: ignore[list-item]
    sink.close()
    assert list(tmp_path.iterdir()) == []  # nothing half-written became visible
    sink.write(['{"a":3}'])  # and the sink still works
    sink.close()
    assert [p.read_text() for p in tmp_path.glob("part-*.jsonl")] == ['{"a":3}\n']


def test_file_sink_readers_never_see_partial_lines(tmp_path):
    simulator = Simulator(tiny_catalog(), SimulatorOptions(rate_per_second=2000.0))
    seen_bad: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            for path in (tmp_path / "input").glob("part-*.jsonl"):
                text = path.read_text()
                if not text.endswith("\n"):
                    seen_bad.append(path.name)
            time.sleep(0.01)

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        summary = run_simulator(
            simulator, FileSink(tmp_path / "input", roll_seconds=0.1), duration_seconds=1.0
        )
    finally:
        done.set()
        watcher.join()
    assert seen_bad == []
    assert summary.files_written >= 5
    lines = [
        line for path in (tmp_path / "input").glob("part-*.jsonl")
        for line in path.read_text().splitlines()
    ]  # fmt: skip
    assert len(lines) == summary.lines == 2000


def _read_all(client: socket.socket) -> list[str]:
    chunks = []
    while data := client.recv(65536):
        chunks.append(data)
    return b"".join(chunks).decode().splitlines()


def test_socket_sink_buffers_until_a_client_connects_then_streams_to_it():
    sink = SocketSink("127.0.0.1", 0)
    try:
        sink.write(["early-1", "early-2"])  # nobody listening yet: kept, not blocking
        client = socket.create_connection((sink.host, sink.port), timeout=10)
        deadline = time.monotonic() + 10
        while sink.clients_served == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        sink.write(["late-1"])
        sink.write(["late-2", "late-3"])
    finally:
        sink.close()
    assert _read_all(client) == ["early-1", "early-2", "late-1", "late-2", "late-3"]
    client.close()
    assert sink.dropped_lines == 0


def test_socket_sink_drops_the_oldest_lines_beyond_its_buffer():
    sink = SocketSink("127.0.0.1", 0, buffer_lines=3)
    sink.write(["1", "2", "3", "4", "5"])
    sink.close()
    assert sink.dropped_lines == 5  # 2 overflowed, 3 never delivered


def test_simulator_lines_reach_a_socket_client():
    simulator = Simulator(tiny_catalog(), options(inject=InjectOptions.none()))
    sink = SocketSink("127.0.0.1", 0)
    client = socket.create_connection((sink.host, sink.port), timeout=10)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.extend(_read_all(client)))
    reader.start()
    deadline = time.monotonic() + 10
    while sink.clients_served == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    summary = run_simulator(simulator, sink, count=3000, start=START)
    reader.join(timeout=20)
    client.close()
    assert len(received) == summary.lines == 3000
    assert json.loads(received[0])["event_id"] == "7-0"


# --- the line format, as Spark reads it ----------------------------------------------------------


def test_spark_parses_valid_lines_and_flags_malformed_ones(spark, tmp_path):
    inject = InjectOptions(
        out_of_order_rate=0.0, late_rate=0.0, malformed_rate=0.2, large_order_rate=0.0,
        bursts_per_minute=0.0,
    )  # fmt: skip
    simulator = Simulator(tiny_catalog(), options(rate_per_second=200.0, inject=inject, seed=5))
    summary = run_simulator(
        simulator,
        FileSink(tmp_path / "input"),
        count=400,
        anomaly_log=AnomalyLog(tmp_path / "anomalies"),
        start=START,
    )
    (tmp_path / "input" / ".part-999-unfinished.jsonl.tmp").write_text('{"event_id":"x"')

    schema = StructType(
        [*ORDER_EVENT_SCHEMA.fields, StructField(EVENT_CORRUPT_COLUMN, StringType())]
    )
    parsed = (
        spark.read.text(str(tmp_path / "input"))
        .select(F.from_json("value", schema, EVENT_JSON_OPTIONS).alias("e"))
        .select("e.*")
    )
    rows = parsed.collect()  # 400 rows: one Spark job, the checks run on the driver
    valid = [
        r for r in rows
        if r.event_id is not None and r.event_time is not None and r[EVENT_CORRUPT_COLUMN] is None
    ]  # fmt: skip
    malformed_ids = {r["event_id"] for r in read_anomalies(tmp_path / "anomalies")}
    valid_ids = {r.event_id for r in valid}
    assert len(rows) == 400  # the hidden temp file is not read
    assert len(valid_ids) == summary.events == 400 - len(malformed_ids)
    assert not valid_ids & malformed_ids
    assert summary.malformed > 40
    assert len({r.event_time.microsecond for r in valid}) > 1  # milliseconds survive

    # the values of the first two valid events, as Spark read them
    events = simulator.events(0, 400)
    expected = []
    for i in np.flatnonzero(events.kind == 0)[:2].tolist():  # 0: a normal event
        event_time = (START + dt.timedelta(milliseconds=5 * i)).replace(tzinfo=None)
        expected.append(
            Row(
                event_id=f"5-{i}",
                event_time=event_time,
                order_id=6 * 10**12 + i,
                customer_id=int(events.customer_id[i]),
                product_id=int(events.product_id[i]),
                quantity=int(events.quantity[i]),
                unit_price=Decimal(f"{events.unit_price[i]:.2f}"),
                discount=Decimal(f"{events.discount[i]:.3f}"),
                order_ts=event_time,
                status="processing",
                payment_method=PAYMENT_METHODS[int(events.payment[i])],
                shipped_ts=None,
                delivered_ts=None,
                updated_at=event_time,
                **{EVENT_CORRUPT_COLUMN: None},
            )
        )
    ids = {row.event_id for row in expected}
    assertDataFrameEqual([r for r in valid if r.event_id in ids], expected)


# --- config --------------------------------------------------------------------------------------


def test_repo_config_section_is_valid(settings):
    simulator_options = SimulatorOptions.from_config(settings.streaming["simulator"])
    assert simulator_options.rate_per_second == 100.0
    assert simulator_options.inject.large_order_quantity == (30, 60)
    assert simulator_options.inject.sales_drop.at_seconds is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"rate_per_second": 0}, "simulator.rate_per_second should be a number > 0"),
        ({"rate_per_second": "fast"}, "simulator.rate_per_second"),
        ({"seed": -1}, "simulator.seed should be an integer >= 0"),
        ({"sink": "kafka"}, "simulator.sink should be one of files, socket"),
        ({"socket_port": 70000}, "simulator.socket_port"),
        ({"roll_seconds": 0}, "simulator.roll_seconds"),
        ({"catalog": "silver"}, "simulator.catalog should be one of gold, raw"),
        ({"rate": 5}, "unknown key(s) simulator.rate"),
        ({"inject": {"late_rate": 1.5}}, "simulator.inject.late_rate"),
        ({"inject": {"late_rate": True}}, "simulator.inject.late_rate"),
        ({"inject": {"malformed_rate": 0.3, "late_rate": 0.3}}, "at most 0.5"),
        ({"inject": {"large_order_quantity": [60, 30]}}, "simulator.inject.large_order_quantity"),
        ({"inject": {"large_order_quantity": [2, 30]}}, "simulator.inject.large_order_quantity"),
        ({"inject": {"late_by_seconds": 10}}, "more than out_of_order_max_seconds"),
        ({"inject": {"burst_orders": 1}}, "simulator.inject.burst_orders"),
        ({"inject": {"bursts": 1}}, "unknown key(s) simulator.inject.bursts"),
        ({"inject": {"sales_drop": {"factor": 1.5}}}, "simulator.inject.sales_drop.factor"),
        ({"inject": {"sales_drop": {"at_seconds": -5}}}, "sales_drop.at_seconds"),
        ({"inject": {"sales_drop": 3}}, "simulator.inject.sales_drop should be a mapping"),
    ],
)
def test_bad_config_values_give_errors_naming_the_key(config, message):
    with pytest.raises(ConfigError, match=r"streaming_config\.yaml") as error:
        SimulatorOptions.from_config(config)
    assert message in str(error.value)


def test_run_arguments_are_checked():
    simulator = Simulator(tiny_catalog(), options())
    with pytest.raises(ValueError, match="needs a count or a duration"):
        run_simulator(simulator, ListSink())
    with pytest.raises(ValueError, match="duration should be a positive number"):
        run_simulator(simulator, ListSink(), duration_seconds=-1)


# --- the catalog ---------------------------------------------------------------------------------


def _write(path: Path, table: pa.Table) -> None:
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-00000.parquet")
    (path / "_SUCCESS").write_text("")


def _gold(root: Path) -> Path:
    money = pa.decimal128(10, 2)
    _write(root / "customers", pa.table({"customer_id": [1, 2, 3], "email": ["a", "b", "c"]}))
    _write(
        root / "products",
        pa.table(
            {"product_id": [10, 11], "price": pa.array([Decimal("9.99"), Decimal("150")], money)}
        ),
    )
    _write(root / "product_performance", pa.table({"product_id": [10], "orders": [8]}))
    _write(
        root / "customer_ltv",
        pa.table({"customer_id": [1, 3], "orders": [2, 600], "median_order_value": [20.0, 55.5]}),
    )
    return root


def test_catalog_reads_the_gold_layer(tmp_path):
    catalog = load_catalog(CatalogDirs(gold=_gold(tmp_path / "gold"), raw=tmp_path / "raw"))
    assert catalog.customer_ids.tolist() == [1, 2, 3]
    assert catalog.product_ids.tolist() == [10, 11]
    assert catalog.product_prices.tolist() == [9.99, 150.0]
    assert catalog.product_weights.tolist() == [8.5, 0.5]  # past orders + a floor
    assert catalog.customer_orders.tolist() == [2, 0, 600]
    np.testing.assert_array_equal(catalog.customer_median_order_value, [20.0, np.nan, 55.5])
    assert catalog.source.startswith("gold")


def test_catalog_falls_back_to_raw_and_skips_defective_rows(tmp_path):
    raw = tmp_path / "raw" / "parquet"
    _write(raw / "customers", pa.table({"customer_id": [1, 1, 2, None]}))  # duplicate, null id
    _write(raw / "products", pa.table({"product_id": [10, 11, 12], "price": [4.5, None, -1.0]}))
    _write(raw / "orders", pa.table({"product_id": [10, 10, 12, 99, None]}))
    catalog = load_catalog(CatalogDirs(gold=tmp_path / "gold", raw=tmp_path / "raw"))
    assert catalog.customer_ids.tolist() == [1, 2]
    assert catalog.product_ids.tolist() == [10]
    assert catalog.product_weights.tolist() == [2.5]
    assert catalog.customer_orders is None
    assert catalog.source.startswith("raw")


def test_catalog_missing_everywhere_says_what_to_run(tmp_path):
    with pytest.raises(CatalogError, match="run `sparkmart batch` or `sparkmart generate` first"):
        load_catalog(CatalogDirs(gold=tmp_path / "gold", raw=tmp_path / "raw"))
    with pytest.raises(ValueError, match="catalog source"):
        load_catalog(CatalogDirs(gold=tmp_path, raw=tmp_path), source="silver")


def test_catalog_rejects_unusable_input():
    with pytest.raises(CatalogError, match="customer_ids is empty"):
        Catalog.from_records([], PRICES)
    with pytest.raises(CatalogError, match="product_ids is empty"):
        Catalog.from_records([1], {1: None})


# --- from settings -------------------------------------------------------------------------------


def test_simulate_from_settings_writes_input_and_anomaly_log(settings: Settings, tmp_path):
    paths = {**settings.pipeline["paths"], "data_dir": str(tmp_path)}
    local = dataclasses.replace(settings, pipeline={**settings.pipeline, "paths": paths})
    _gold(local.path("gold"))
    summary = simulate(local, rate=1000, count=5000, clock="simulated", seed=2)
    assert summary.lines == 5000 and summary.clock == "simulated"
    files = list((tmp_path / "streaming" / "input").glob("part-*.jsonl"))
    assert sum(len(p.read_text().splitlines()) for p in files) == 5000
    logged = read_anomalies(tmp_path / "streaming" / "anomalies")
    assert len(logged) == sum(summary.anomalies.values()) > 0
    assert json.loads(files[0].read_text().splitlines()[0])["event_id"].startswith("2-")
