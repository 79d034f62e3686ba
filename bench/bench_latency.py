"""End-to-end latency: p50 and p99 from event to queryable row at an offered load.

What is measured.  One worker (``python -m streams worker``) meters an isolated topic
while this process offers load open-loop at ``rate`` events/s for ``seconds``: every
10 ms tick it builds that tick's events (``UsageEvent.create``, time = now, types and
subjects of ``deploy/demo/meters.yaml``, so every event is metered) and hands them to
``UsageProducer.send_many``.  The tick's start is each event's birth (its *send time*).
Ticks keep an exact schedule; a tick that starts late is counted, and the achieved
offered rate is reported.  The producer's per-event :class:`~ingest.Delivery` gives each
event's ``(partition, offset)`` — several events may share a record (``send_many`` packs
one subject's events), which changes nothing here: an event is queryable when its record
is.

"Queryable" means *visible to the meter query*: a poller thread runs
``WindowsTable.progress`` (the highest source offset per partition whose windows are
stored in ``meter_windows``) every ``POLL_SECONDS``.  The sink writes raw events first and
the windows last, in one block per batch, and a partition's batches are written in
offset order, so "stored max offset ≥ the event's offset" means the event's windows are
readable.  An event's latency is the end of the first poll that saw it, minus its send
time; the resolution is the poll interval plus one poll's query time (both reported).
All times are ``time.monotonic()`` (``CLOCK_MONOTONIC``: one clock for every process of
the machine).

Baseline, same offered load, same run, same producer, broker, ClickHouse and poller: a
*bare pipeline* — a confluent-kafka consumer in its own process, assigned every
partition (no group join), that decodes each event with ``orjson`` and every
``BARE_FLUSH_SECONDS`` hands one row per event ``(partition, offset, index, seen_ns,
data)`` to a thread doing bare clickhouse-driver ``INSERT``s (consuming never waits for
ClickHouse); the poller reads ``max(source_offset)`` per partition of that table.  It is
the floor for "Kafka + a Python consumer + a ClickHouse insert", with no Faust, dedupe,
metering or batching policy.  Its ``seen_ns`` column also gives the broker round trip
(SDK hand-over → the bare consumer received the record).  ``ratio`` is worker latency /
bare-pipeline latency, at p50 and p99.  The baseline runs first, then the worker; each
starts with a warm-up of ``WARMUP_EVENTS`` events that must be queryable before the
load starts (for the worker: process start and group join), excluded from the figures.

Kept up.  A queue keeps up when, in steady state, it serves what arrives: ``kept_up`` is
true when the events that became queryable during the second half of the offered window
were at least 90 % of the events offered in that half (the tolerance absorbs the
worker's batch granularity).  ``backlog_at_end`` counts the events sent but not yet
queryable when the offered window closed; the worker's Kafka lag then (in records,
which may carry several events each) is reported too.

Exactness.  After the load, the run waits until every sent event is queryable and the
worker's lag is zero, then checks the stored raw event count (``EventsTable.count``)
against every event sent (warm-up included); the baseline's row count is checked the
same way.

Producer.  ``pack_ms`` is the SDK's packing window (``UsageProducer(pack_ms=...)``): 0
packs only within each tick's ``send_many`` (a record per subject per tick, about
``rate / 100 / 20`` events each), a window lets a subject's events of several ticks
share a record.  Both pipelines get the same producer; the window is part of the
measured latency.

Run by hand: ``python bench/bench_latency.py [RATE] [SECONDS] [PACK_MS]`` prints the
result as JSON.
Everything lives under a ``bench_<random>`` prefix (see ``bench_pipeline.Bench``) and is
deleted at the end, on failure too.
"""

from __future__ import annotations

import bisect
import json
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

if __name__ == "__main__":  # run by hand: make the repository and bench/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_pipeline
from bench_pipeline import Bench, BenchError, percentile

from ingest import Delivery, UsageProducer
from schemas.events import UsageEvent
from schemas.settings import Settings
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.sql import Statement
from schemas.storage.windows_table import WindowsTable
from streams.progress import consumer_lag

__all__ = ["latency"]

TICK_SECONDS = 0.01
POLL_SECONDS = 0.01
BARE_FLUSH_SECONDS = 0.05
PARTITIONS = 4
WARMUP_EVENTS = 200
WARMUP_DEADLINE = 180.0
KEPT_UP_SHARE = 0.9
SUBJECTS = [f"customer-{n:03d}" for n in range(20)]

Sent = tuple[float, int, int]
"""One delivered event: (send time, partition, offset)."""


class EventFactory:
    """Metered events of the demo meters, reproducible from a seed (ids included)."""

    def __init__(self, seed: int, tag: str) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible load, not security
        self.tag = tag
        self.made = 0

    def batch(self, count: int, at: datetime) -> list[UsageEvent]:
        out = []
        for _ in range(count):
            kind, subject = self.rng.random(), self.rng.choice(SUBJECTS)
            if kind < 0.6:
                event_type = "api.request"
                data: dict[str, Any] = {
                    "endpoint": self.rng.choice(("/v1/search", "/v1/embed", "/v1/chat")),
                    "region": self.rng.choice(("eu-west", "us-east")),
                }
            elif kind < 0.9:
                event_type = "llm.completion"
                data = {"tokens": self.rng.randrange(1, 4000), "model": "small"}
            else:
                event_type = "storage.snapshot"
                data = {"gb_hours": self.rng.randrange(1, 100_000) / 1000}
            self.made += 1
            out.append(
                UsageEvent.create(
                    type=event_type,
                    subject=subject,
                    data=data,
                    source="bench-latency",
                    id=f"{self.tag}-{self.made}",
                    time=at,
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class BareTable:
    """The bare pipeline's table: one row per event, as a bare consumer stores it."""

    database: str

    @property
    def name(self) -> str:
        return f"{self.database}.bench_bare_events"

    def ddl(self) -> Statement:
        return Statement(
            f"CREATE TABLE IF NOT EXISTS {self.name} (source_partition UInt32,"
            " source_offset UInt64, source_index UInt32, seen_ns Int64, data String)"
            " ENGINE = MergeTree ORDER BY (source_partition, source_offset, source_index)"
        )

    def progress(self) -> Statement:
        """Rows ``(source_partition, highest stored offset)``."""
        return Statement(
            f"SELECT source_partition, max(source_offset) FROM {self.name}"
            " GROUP BY source_partition ORDER BY source_partition"
        )

    def seen(self) -> Statement:
        """Rows ``(source_partition, source_offset, first seen_ns)``, one per record."""
        return Statement(
            f"SELECT source_partition, source_offset, min(seen_ns) FROM {self.name}"
            " GROUP BY source_partition, source_offset"
        )

    def count(self) -> Statement:
        """Rows ``(distinct stored events,)``."""
        return Statement(
            "SELECT count() FROM (SELECT DISTINCT source_partition, source_offset,"
            f" source_index FROM {self.name})"
        )


class ProgressPoller(threading.Thread):
    """Runs a ``(partition, max offset)`` query every ``interval``; keeps each increase
    with the time the query returned."""

    def __init__(self, settings: Settings, sql: str, interval: float = POLL_SECONDS) -> None:
        super().__init__(name="progress-poller", daemon=True)
        self.settings, self.sql, self.interval = settings, sql, interval
        self.times: dict[int, list[float]] = {}
        self.offsets: dict[int, list[int]] = {}
        self.query_ms: list[float] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        engine = ServerEngine(self.settings.clickhouse_host, self.settings.clickhouse_tcp_port)
        try:
            due = time.monotonic()
            while not self._stop_event.is_set():
                started = time.monotonic()
                rows = engine.execute(self.sql)
                now = time.monotonic()
                self.query_ms.append((now - started) * 1000)
                for partition, offset in rows:
                    p, o = int(partition), int(offset)
                    if o > self.latest(p):
                        self.times.setdefault(p, []).append(now)
                        self.offsets.setdefault(p, []).append(o)
                due += self.interval
                wait = due - time.monotonic()
                if wait > 0:
                    self._stop_event.wait(wait)
                else:
                    due = time.monotonic()  # fell behind: no burst of catch-up polls
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
            self.error = exc
        finally:
            engine.close()

    def latest(self, partition: int) -> int:
        offsets = self.offsets.get(partition)
        return offsets[-1] if offsets else -1

    def check(self) -> None:
        if self.error is not None:
            raise BenchError(f"the progress poller failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def queryable_at(self, partition: int, offset: int) -> float | None:
        """When an offset was first seen stored (call after :meth:`stop`)."""
        offsets = self.offsets.get(partition, [])
        index = bisect.bisect_left(offsets, offset)
        return self.times[partition][index] if index < len(offsets) else None


@dataclass(slots=True)
class Offered:
    """What the load generator did."""

    sent: list[Sent] = field(default_factory=list)
    failed: list[Delivery] = field(default_factory=list)
    events: int = 0
    start: float = 0.0
    end: float = 0.0
    late_ticks: int = 0
    max_slip_ms: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / (self.end - self.start) if self.end > self.start else 0.0


def offer(producer: UsageProducer, factory: EventFactory, rate: int, seconds: float) -> Offered:
    """Open-loop load: tick ``k`` is due at ``start + k * TICK_SECONDS``; a late tick is
    sent at once (the offered count is kept) and counted as late."""
    out = Offered()
    ticks = round(seconds / TICK_SECONDS)
    out.start = time.monotonic()
    for k in range(ticks):
        due = out.start + k * TICK_SECONDS
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        born = time.monotonic()
        slip = born - due
        if slip > TICK_SECONDS:
            out.late_ticks += 1
        out.max_slip_ms = max(out.max_slip_ms, slip * 1000)
        count = round((k + 1) * rate * TICK_SECONDS) - round(k * rate * TICK_SECONDS)
        events = factory.batch(count, datetime.now(UTC))

        def delivered(d: Delivery, born: float = born) -> None:
            if d.ok and d.partition is not None and d.offset is not None:
                out.sent.append((born, d.partition, d.offset))
            else:
                out.failed.append(d)

        out.events += producer.send_many(events, delivered)
    out.end = time.monotonic()
    producer.flush()
    if out.failed or len(out.sent) != out.events:
        raise BenchError(
            f"{len(out.sent)} of {out.events} events delivered ({len(out.failed)} failed; "
            "one Delivery per event is expected)"
        )
    return out


def wait_queryable(
    poller: ProgressPoller, sent: list[Sent], deadline_s: float, alive: Callable[[], None]
) -> None:
    """Wait until every partition's stored offset covers the highest offset sent to it."""
    want: dict[int, int] = {}
    for _, p, o in sent:
        want[p] = max(want.get(p, -1), o)
    deadline = time.monotonic() + deadline_s
    while any(poller.latest(p) < o for p, o in want.items()):
        poller.check()
        alive()
        if time.monotonic() > deadline:
            behind = {p: (poller.latest(p), o) for p, o in want.items() if poller.latest(p) < o}
            raise BenchError(f"not queryable within {deadline_s:.0f}s: (stored, sent) {behind}")
        time.sleep(0.05)


@dataclass(slots=True)
class Observed:
    offered: Offered
    poller: ProgressPoller
    warmup: int
    warmup_seconds: float
    lag_at_end: int | None


def observe(
    settings: Settings,
    poller: ProgressPoller,
    alive: Callable[[], None],
    rate: int,
    seconds: float,
    seed: int,
    lag: Callable[[], int] | None = None,
    pack_ms: int = 0,
) -> Observed:
    """Warm up (until a first batch is queryable), offer the load, wait for the drain."""
    factory = EventFactory(seed, settings.clickhouse_database)
    started = time.monotonic()
    poller.start()
    with UsageProducer(
        settings.kafka_bootstrap, settings.events_topic, pack_ms=pack_ms
    ) as producer:
        warm = producer.send_and_wait(factory.batch(WARMUP_EVENTS, datetime.now(UTC)))
        warm_sent = [(0.0, d.partition or 0, d.offset or 0) for d in warm]
        wait_queryable(poller, warm_sent, WARMUP_DEADLINE, alive)
        warmup_seconds = time.monotonic() - started
        factory.rng.seed(seed)  # both pipelines get the same offered load
        offered = offer(producer, factory, rate, seconds)
    lag_at_end = lag() if lag else None
    wait_queryable(poller, offered.sent, 120 + 10 * seconds, alive)
    return Observed(offered, poller, len(warm), warmup_seconds, lag_at_end)


def figures(obs: Observed, queryable: list[float | None]) -> dict[str, Any]:
    """Latency percentiles, latency by second of sending, backlog and keep-up."""
    off = obs.offered
    lat_ms = [(q - s[0]) * 1000 for s, q in zip(off.sent, queryable, strict=True) if q is not None]
    by_second: dict[int, list[float]] = {}
    for (sent_at, _, _), q in zip(off.sent, queryable, strict=True):
        if q is not None:
            by_second.setdefault(int(sent_at - off.start), []).append((q - sent_at) * 1000)
    half = off.start + (off.end - off.start) / 2
    offered_half = sum(1 for s in off.sent if s[0] >= half)
    served_half = sum(1 for q in queryable if q is not None and half <= q <= off.end)
    backlog = sum(1 for q in queryable if q is None or q > off.end)
    done = [q for q in queryable if q is not None]
    polls = obs.poller.query_ms
    return {
        "p50_ms": round(percentile(lat_ms, 50), 1),
        "p99_ms": round(percentile(lat_ms, 99), 1),
        "max_ms": round(max(lat_ms), 1),
        "samples": len(lat_ms),
        "not_queryable": len(queryable) - len(lat_ms),
        "p50_ms_by_second": [round(percentile(v, 50), 1) for _, v in sorted(by_second.items())],
        "offered_events": off.events,
        "offered_rate_achieved": round(off.rate, 1),
        "late_ticks": off.late_ticks,
        "max_tick_slip_ms": round(off.max_slip_ms, 1),
        "served_share_second_half": round(served_half / offered_half, 3) if offered_half else 0,
        "kept_up": offered_half > 0 and served_half >= KEPT_UP_SHARE * offered_half,
        "backlog_at_end": backlog,
        "kafka_lag_records_at_end": obs.lag_at_end,
        "warmup_seconds": round(obs.warmup_seconds, 1),
        "drain_seconds": round(max(done) - off.end, 2) if done else None,
        "poll": {
            "interval_ms": POLL_SECONDS * 1000,
            "polls": len(polls),
            "query_p50_ms": round(percentile(polls, 50), 2),
            "query_p99_ms": round(percentile(polls, 99), 2),
        },
    }


def queryable_times(obs: Observed) -> list[float | None]:
    return [obs.poller.queryable_at(p, o) for _, p, o in obs.offered.sent]


def run_worker(
    bench: Bench, rate: int, seconds: float, seed: int, pack_ms: int = 0
) -> dict[str, Any]:
    """The product: one worker process, latency to the meter windows."""
    settings, engine = bench.prepared()
    proc = bench._start_worker(settings, 0)

    def alive() -> None:
        if proc.poll() is not None:
            raise BenchError(f"the worker exited ({proc.returncode}); logs in {bench.work}")

    def lag() -> int:
        found = consumer_lag(
            settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic
        )
        return int(found.total)

    sql = WindowsTable(settings.clickhouse_database).progress(settings.namespace).to_sql()
    poller = ProgressPoller(settings, sql)
    try:
        obs = observe(settings, poller, alive, rate, seconds, seed, lag, pack_ms)
    finally:
        poller.stop()
    deadline = time.monotonic() + 120
    while lag() != 0:
        alive()
        if time.monotonic() > deadline:
            raise BenchError("the worker's Kafka lag did not reach zero within 120 s")
        time.sleep(0.2)
    stored = engine.execute(
        EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    )
    engine.close()
    expected = obs.warmup + obs.offered.events
    out = figures(obs, queryable_times(obs))
    out.update(
        {
            "stored_events": int(stored[0][0]),
            "expected_events": expected,
            "exact": int(stored[0][0]) == expected,
            "worker_batch_max": settings.worker_batch_max,
            "worker_batch_seconds": settings.worker_batch_seconds,
        }
    )
    return out


def run_bare(
    bench: Bench, rate: int, seconds: float, seed: int, pack_ms: int = 0
) -> dict[str, Any]:
    """The baseline: a bare consumer process inserting one row per event."""
    settings, engine = bench.prepared()
    table = BareTable(settings.clickhouse_database)
    engine.execute(table.ddl().to_sql())
    log = bench.work / f"{settings.clickhouse_database}-bare.log"
    args = [
        settings.kafka_bootstrap,
        settings.events_topic,
        str(settings.events_partitions),
        settings.clickhouse_host,
        str(settings.clickhouse_tcp_port),
        table.name,
        f"{settings.worker_app_id}-bare",
    ]
    with open(log, "wb") as out_log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--bare-consumer", *args],
            stdout=out_log,
            stderr=subprocess.STDOUT,
        )

    def alive() -> None:
        if proc.poll() is not None:
            raise BenchError(f"the bare consumer exited ({proc.returncode}); see {log}")

    poller = ProgressPoller(settings, table.progress().to_sql())
    try:
        obs = observe(settings, poller, alive, rate, seconds, seed, pack_ms=pack_ms)
    finally:
        poller.stop()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    seen = {(int(p), int(o)): int(ns) / 1e9 for p, o, ns in engine.execute(table.seen().to_sql())}
    stored = int(engine.execute(table.count().to_sql())[0][0])
    engine.close()
    broker_ms = [(seen[(p, o)] - s) * 1000 for s, p, o in obs.offered.sent if (p, o) in seen]
    expected = obs.warmup + obs.offered.events
    out = figures(obs, queryable_times(obs))
    out.update(
        {
            "broker_p50_ms": round(percentile(broker_ms, 50), 1),
            "broker_p99_ms": round(percentile(broker_ms, 99), 1),
            "flush_ms": BARE_FLUSH_SECONDS * 1000,
            "stored_events": stored,
            "expected_events": expected,
            "exact": stored == expected,
        }
    )
    return out


def bare_consumer(
    bootstrap: str, topic: str, partitions: int, host: str, port: int, table: str, group: str
) -> None:
    """The bare pipeline's process: consume, ``orjson.loads`` each event, and every
    ``BARE_FLUSH_SECONDS`` hand the rows (one per event) to an insert thread, so consuming
    never waits for ClickHouse; stops cleanly on SIGTERM, after the last insert."""
    from clickhouse_driver import Client
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    batches: queue.Queue[list[tuple[int, int, int, int, str]] | None] = queue.Queue()
    failed: list[BaseException] = []

    def inserter() -> None:
        client = Client(host=host, port=port)
        columns = "source_partition, source_offset, source_index, seen_ns, data"
        try:
            while (batch := batches.get()) is not None:
                client.execute(f"INSERT INTO {table} ({columns}) VALUES", batch, types_check=False)
        except BaseException as exc:  # noqa: BLE001 - reported by the consuming loop
            failed.append(exc)
        finally:
            client.disconnect()

    thread = threading.Thread(target=inserter, name="bare-insert")
    thread.start()
    rows: list[tuple[int, int, int, int, str]] = []
    flushed = time.monotonic()
    while not stopping.is_set() and not failed:
        messages = consumer.consume(num_messages=10_000, timeout=0.005)
        seen = time.monotonic_ns()
        for msg in messages:
            if msg.error():
                raise BenchError(f"bare consumer: {msg.error()}")
            # compact JSON holds no raw newline: a packed record splits into its events
            for index, line in enumerate(msg.value().split(b"\n")):
                orjson.loads(line)
                rows.append((msg.partition(), msg.offset(), index, seen, line.decode()))
        if rows and time.monotonic() - flushed >= BARE_FLUSH_SECONDS:
            batches.put(rows)
            rows, flushed = [], time.monotonic()
    batches.put(rows or None)
    batches.put(None)
    thread.join()
    consumer.close()
    if failed:
        raise BenchError(f"bare insert failed: {failed[0]!r}") from failed[0]


def latency(
    rate: int = 10_000, seconds: float = 20.0, seed: int = 7, pack_ms: int = 0
) -> dict[str, Any]:
    """p50/p99 from event to queryable row at ``rate`` events/s offered for ``seconds``,
    next to the bare pipeline at the same load; isolated and cleaned up, on failure too."""
    wall = time.perf_counter()
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "seed": seed, "pack_ms": pack_ms}
    with bench_pipeline.isolated_bench(
        events_per_subject=1, seed=seed, repeats=1, partitions=PARTITIONS
    ) as bench:
        out["partitions"] = PARTITIONS
        out["tick_ms"] = TICK_SECONDS * 1000
        out["poll_ms"] = POLL_SECONDS * 1000
        print("latency baseline: bare consumer + insert …", flush=True)
        baseline = run_bare(bench, rate, seconds, seed, pack_ms)
        print("latency: worker …", flush=True)
        worker = run_worker(bench, rate, seconds, seed, pack_ms)
    out.update(worker)
    out["baseline"] = baseline
    out["ratio"] = {
        "p50": round(worker["p50_ms"] / baseline["p50_ms"], 2),
        "p99": round(worker["p99_ms"] / baseline["p99_ms"], 2),
    }
    out["exact"] = worker["exact"] and baseline["exact"]
    out["wall_seconds"] = round(time.perf_counter() - wall, 1)
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare-consumer":
        boot, topic, parts, host, port, table, group = sys.argv[2:9]
        bare_consumer(boot, topic, int(parts), host, int(port), table, group)
        sys.exit(0)
    rate_arg = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seconds_arg = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    pack_arg = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    print(json.dumps(latency(rate_arg, seconds_arg, pack_ms=pack_arg), indent=2))
