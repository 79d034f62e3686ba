"""HTTP ingest benchmark: ``POST /api/v1/events`` against the bare producer, same run.

Standalone: ``.venv/bin/python bench/bench_http.py [--events N] [--workers 1,2]``
(needs the Kafka of ``make up``); ``bench/run.py`` runs it as one stage of ``make bench``.

What is measured, on a fresh topic per run (prefix ``bench_http_<random>``, deleted at
the end):

- **gateway**: ``python -m api serve --workers W`` as a child process; C clients (one
  keep-alive connection each, one request in flight each) post pre-encoded batches of
  B events (``application/cloudevents-batch+json``, as the SDK writes events) until
  every batch was answered 204.  A 429/503 is retried with the same bytes after a short
  pause (duplicates are allowed, the worker drops them by id); any other answer stops
  the run.  Events/s = events answered 204 ÷ wall time from the first request to the
  last answer; CPU = the server processes' user + system time over the same span
  (``/proc``), per event.
- **baseline**: one confluent-kafka producer (``acks=all``, idempotent, as the gateway
  configures it) sending the same events, packed into the same records (per batch, one
  record per subject), produce + poll + flush, in this process; CPU = this process's
  CPU time (librdkafka threads included).
- **exactness**: the topic is read back to its end; every event of every 204'd batch
  must be there with exactly the bytes ``schemas.wire.encode_event`` writes for it (what
  the worker reads), no other event may be there, and an event may appear more than
  once only if its batch was retried.

The clients run in this process (asyncio, raw HTTP/1.1 on pre-built requests, about
30 µs of CPU a request) on the same 2 cores as the server, Kafka and ClickHouse: the
figures include that contention, as a load generator on the box would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
from bench_pipeline import drop_prefixed  # noqa: E402
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from api.delivery import records  # noqa: E402
from api.server import demo_tokens, free_port  # noqa: E402
from ingest.admin import TopicSpec, ensure_topics, meterline_topics  # noqa: E402
from ingest.telemetry import generate  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.wire import (  # noqa: E402
    encode_event,
    is_batch,
    record_value,
    split_record,
    subject_partition,
)

SUBJECTS = [f"customer-{n:03d}" for n in range(20)]
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)
CLK_TCK = os.sysconf("SC_CLK_TCK")
RECORD_EVENTS, RECORD_BYTES = 500, 256_000  # KafkaDelivery's defaults
Batch = tuple[bytes, list[tuple[str, bytes, bytes]]]
"""``(request body, [(subject, id, encoded event), ...])`` of one batch."""


class BenchError(RuntimeError):
    """The run cannot give a trustworthy figure (an unexpected answer, a lost event)."""


# -- the events ---------------------------------------------------------------------------


def batches(events: int, batch: int, seed: int) -> list[Batch]:
    """``events`` unique generated usage events (20 subjects, October) in batches."""
    per_subject = events // len(SUBJECTS) + 1
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), per_subject, seed=seed)
    unique: dict[str, Any] = {}
    for event in telemetry.events:
        unique.setdefault(event.id, event)
    chosen = list(unique.values())[:events]
    if len(chosen) < events:
        raise BenchError(f"generated only {len(chosen)} unique events")
    out: list[Batch] = []
    for start in range(0, events, batch):
        items = [(e.subject, e.id.encode(), encode_event(e)) for e in chosen[start : start + batch]]
        out.append((b"[" + b",".join(line for _, _, line in items) + b"]", items))
    return out


# -- process CPU --------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """``(parent pid, user + system CPU seconds)`` of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and its live descendants."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = stat
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in members]
        members.update(children)
        frontier.extend(children)
    return sum(cpu.get(pid, 0.0) for pid in members)


def broker_pids() -> list[int]:
    """The local Kafka broker's process (``kafka.Kafka`` on its command line), to report
    the broker's CPU next to the gateway's; empty if it is not found."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


def cpu_of(pids: list[int]) -> float:
    return sum(stat[1] for stat in map(_stat, pids) if stat is not None)


# -- the gateway and its clients ----------------------------------------------------------


@dataclass
class Load:
    """What one load run saw."""

    accepted: list[int] = field(default_factory=list)  # batch indexes answered 204
    retried: set[int] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


def _request(body: bytes, token: str) -> bytes:
    head = (
        "POST /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/cloudevents-batch+json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _client(
    port: int, token: str, work: list[Batch], queue: Iterator[int], load: Load
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index in queue:
            request = _request(work[index][0], token)
            while True:
                sent = time.perf_counter()
                writer.write(request)
                status, body = await _answer(reader)
                load.statuses[status] += 1
                if status == 204:
                    load.latencies.append(time.perf_counter() - sent)
                    load.accepted.append(index)
                    break
                if status in (429, 503):
                    load.retried.add(index)
                    await asyncio.sleep(0.05)
                    continue
                raise BenchError(f"batch {index}: HTTP {status} {body[:300]!r}")
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


def post_all(port: int, token: str, work: list[Batch], indexes: range, clients: int) -> Load:
    """Post the batches ``indexes`` of ``work`` from ``clients`` connections."""
    load = Load()
    queue = iter(indexes)  # shared: each client takes the next batch when it is free

    async def run() -> None:
        await asyncio.gather(*(_client(port, token, work, queue, load) for _ in range(clients)))

    asyncio.run(run())
    return load


@contextmanager
def gateway(
    topic: str, database: str, workers: int, extra_env: dict[str, str], root: Path = ROOT
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m api serve`` on a free port writing to ``topic`` (its schema check and
    read routes on ``database``, created at start); stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "METERLINE_EVENTS_TOPIC": topic,
        "METERLINE_CLICKHOUSE_DATABASE": database,
        "METERLINE_API_MAX_INGEST_IN_FLIGHT": "64",
        **extra_env,
    }
    command = [sys.executable, "-m", "api", "serve", "--port", str(port)]
    if workers != 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BenchError(f"the gateway exited with code {process.returncode}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=1
                ) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError("the gateway did not answer within 60 s") from None
                time.sleep(0.2)
        yield process, port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


# -- the bench ----------------------------------------------------------------------------


class HttpBench:
    def __init__(self, events: int, batch: int, seed: int) -> None:
        self.prefix = "bench_http_" + uuid.uuid4().hex[:8]
        self.settings = Settings()
        self.bootstrap = self.settings.kafka_bootstrap
        self.batch = batch
        self.work = batches(events, batch, seed)
        self.events = sum(len(items) for _, items in self.work)
        self.token = demo_tokens()["admin"]
        self._n = 0
        self.env = {k: v for k, v in os.environ.items() if k.startswith("METERLINE_API_")}

    def topic(self) -> str:
        self._n += 1
        name = f"{self.prefix}_{self._n}.events"
        spec = meterline_topics(self.settings.model_copy(update={"events_topic": name}))[0]
        ensure_topics(self.bootstrap, [TopicSpec(name, spec.partitions, spec.config)])
        return name

    def cleanup(self) -> dict[str, int]:
        """Delete this run's topics and ClickHouse database."""
        engine = ServerEngine(self.settings.clickhouse_host, self.settings.clickhouse_tcp_port)
        try:
            topics, databases = drop_prefixed(self.bootstrap, engine, self.prefix)
        finally:
            engine.close()
        return {"topics": topics, "databases": databases}

    def baseline(self) -> dict[str, Any]:
        """The bare producer: the same events in the same records, acks=all, compressed
        as the gateway compresses them (``METERLINE_KAFKA_COMPRESSION``)."""
        topic = self.topic()
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 2,
                "compression.type": self.settings.kafka_compression,
            }
        )
        failed: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        # metadata before the clock starts; the gateway's records: a partition's subjects
        partitions = len(producer.list_topics(topic, timeout=10).topics[topic].partitions)
        started, cpu = time.perf_counter(), time.process_time()
        for _, items in self.work:
            for subject, partition, lines in records(
                [(s, line) for s, _, line in items], RECORD_EVENTS, RECORD_BYTES, partitions
            ):
                value, headers = record_value(lines)
                while True:
                    try:
                        producer.produce(
                            topic,
                            value=value,
                            key=None if subject is None else subject.encode(),
                            headers=headers,
                            partition=partition,
                            on_delivery=on_delivery,
                        )
                        break
                    except BufferError:
                        producer.poll(0.01)
                producer.poll(0)
        left = producer.flush(60)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        if left or failed:
            raise BenchError(f"baseline: {left} records unsent, {len(failed)} failed")
        check = self.check(topic, Load(accepted=list(range(len(self.work)))))
        return {
            "events_per_second": self.events / wall,
            "cpu_us_per_event": cpu / self.events * 1e6,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "check": check,
        }

    def gateway_run(self, workers: int, clients: int, root: Path = ROOT) -> dict[str, Any]:
        """One server start on a fresh topic: a warm-up tenth, then the timed rest.
        ``root``: the source tree whose gateway runs (another git ref's, to compare)."""
        topic = self.topic()
        warm = max(1, len(self.work) // 10)
        with gateway(topic, self.prefix, workers, self.env, root) as (process, port):
            warmup = post_all(port, self.token, self.work, range(warm), clients)
            broker = broker_pids()
            cpu_before, client_cpu = tree_cpu(process.pid), time.process_time()
            broker_cpu = cpu_of(broker)
            started = time.perf_counter()
            load = post_all(port, self.token, self.work, range(warm, len(self.work)), clients)
            wall = time.perf_counter() - started
            server_cpu = tree_cpu(process.pid) - cpu_before
            client_cpu = time.process_time() - client_cpu
            broker_cpu = cpu_of(broker) - broker_cpu
        timed = sum(len(self.work[i][1]) for i in load.accepted)
        whole = Load(
            accepted=warmup.accepted + load.accepted,
            retried=warmup.retried | load.retried,
            statuses=warmup.statuses + load.statuses,
        )
        check = self.check(topic, whole)
        latencies = sorted(load.latencies)
        return {
            "workers": workers,
            "clients": clients,
            "batch": self.batch,
            "events_per_second": timed / wall,
            "server_cpu_us_per_event": server_cpu / timed * 1e6,
            "server_cpu_cores": server_cpu / wall,
            "client_cpu_us_per_event": client_cpu / timed * 1e6,
            "broker_cpu_us_per_event": broker_cpu / timed * 1e6,
            "load_average_1m": os.getloadavg()[0],
            "wall_seconds": wall,
            "events_timed": timed,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "statuses": {str(k): v for k, v in sorted(whole.statuses.items())},
            "retried_batches": len(whole.retried),
            "check": check,
        }

    def check(self, topic: str, load: Load) -> dict[str, Any]:
        """Read ``topic`` to its end: every accepted event exactly as encoded, nothing else,
        repeats only from retried batches.  Raises :class:`BenchError` otherwise."""
        expected: dict[bytes, bytes] = {}
        retried_ids: set[bytes] = set()
        sent_ids: set[bytes] = set()
        for index, (_, items) in enumerate(self.work):
            for _, id_, _line in items:
                sent_ids.add(id_)
                if index in load.retried:
                    retried_ids.add(id_)
        for index in load.accepted:
            for _, id_, line in self.work[index][1]:
                expected[id_] = line
        seen = Counter[bytes]()
        wrong: list[str] = []
        for key, partition, partitions, line in read_topic(self.bootstrap, topic):
            event = orjson.loads(line)
            id_ = event["id"].encode()
            seen[id_] += 1
            if id_ in expected and expected[id_] != line:
                wrong.append(f"{id_!r}: other bytes than encode_event writes")
            elif id_ not in sent_ids:
                wrong.append(f"{id_!r}: never sent")
            if key and event["subject"] != key:  # a record of several subjects has no key
                wrong.append(f"{id_!r}: under key {key!r}")
            if subject_partition(event["subject"], partitions) != partition:
                wrong.append(f"{id_!r}: on partition {partition}, not its subject's")
        missing = [i for i in expected if seen[i] == 0]
        repeated = [i for i, n in seen.items() if n > 1 and i not in retried_ids]
        if missing or repeated or wrong:
            raise BenchError(
                f"topic {topic}: {len(missing)} accepted events missing, {len(repeated)} "
                f"repeated without a retry, {len(wrong)} wrong: {(missing + repeated)[:3]} "
                f"{wrong[:3]}"
            )
        return {
            "accepted_events": len(expected),
            "events_in_topic": sum(seen.values()),
            "unique_in_topic": len(seen),
            "exact": True,
        }


def read_topic(bootstrap: str, topic: str) -> Iterator[tuple[str, int, int, bytes]]:
    """``(key, partition, the topic's partition count, event line)`` of every event in
    ``topic``, up to its end now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-check",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        left = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + 300
        while left:
            if time.monotonic() > deadline:
                raise BenchError(f"could not read {topic} to its end")
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    raise BenchError(f"reading {topic}: {msg.error()}")
                key = (msg.key() or b"").decode()
                for line in split_record(msg.value() or b"", is_batch(msg.headers())):
                    yield key, msg.partition(), len(partitions), line
                if msg.offset() + 1 >= ends[msg.partition()]:
                    left.discard(msg.partition())
    finally:
        consumer.close()


def median_of(runs: list[dict[str, Any]], name: str) -> float:
    return float(statistics.median(r[name] for r in runs))


def run(
    events: int = 200_000,
    batch: int = 100,
    workers: tuple[int, ...] = (1, 2),
    clients: tuple[int, ...] = (8, 1),
    repeats: int = 1,
    seed: int = 7,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole stage: baseline and gateway runs, alternating, ``repeats`` times each."""
    bench = HttpBench(events, batch, seed)
    out: dict[str, Any] = {"events": bench.events, "batch": batch, "baseline": [], "gateway": []}
    try:
        for _ in range(repeats):
            out["baseline"].append(bench.baseline())
            log(f"baseline: {out['baseline'][-1]['events_per_second']:,.0f} events/s")
            for w in workers:
                for c in clients:
                    result = bench.gateway_run(w, c)
                    out["gateway"].append(result)
                    log(
                        f"gateway, {w} process(es), {c} client(s): "
                        f"{result['events_per_second']:,.0f} events/s, server CPU "
                        f"{result['server_cpu_us_per_event']:.1f} µs/event (client "
                        f"{result['client_cpu_us_per_event']:.1f}, broker "
                        f"{result['broker_cpu_us_per_event']:.1f}), p50 "
                        f"{result['p50_ms']:.1f} ms, load {result['load_average_1m']:.1f}; exact"
                    )
    finally:
        log(f"cleanup: {bench.cleanup()}")
    base = median_of(out["baseline"], "events_per_second")
    out["baseline_events_per_second"] = base
    out["baseline_cpu_us_per_event"] = median_of(out["baseline"], "cpu_us_per_event")
    out["summary"] = {}
    for w in workers:
        for c in clients:
            runs = [r for r in out["gateway"] if r["workers"] == w and r["clients"] == c]
            rate = median_of(runs, "events_per_second")
            out["summary"][f"{w}x{c}"] = {
                "workers": w,
                "clients": c,
                "events_per_second": rate,
                "min": min(r["events_per_second"] for r in runs),
                "max": max(r["events_per_second"] for r in runs),
                "server_cpu_us_per_event": median_of(runs, "server_cpu_us_per_event"),
                "ratio_to_baseline": rate / base,
            }
    return out


def table(result: dict[str, Any]) -> list[str]:
    """Markdown rows of the stage, for ``docs/benchmarks.md`` and the console."""
    base = result["baseline_events_per_second"]
    base_cpu = result["baseline_cpu_us_per_event"]
    rows = []
    for s in result["summary"].values():
        rows.append(
            f"| HTTP ingest: `POST /api/v1/events`, {s['workers']} uvicorn process(es), "
            f"{s['clients']} client(s) × batches of {result['batch']}, 204 after acks=all; "
            f"every 204'd event read back exactly | {s['events_per_second']:,.0f} events/s "
            f"({s['min']:,.0f}–{s['max']:,.0f}), server CPU "
            f"{s['server_cpu_us_per_event']:.1f} µs/event "
            f"({s['server_cpu_us_per_event'] / base_cpu:.1f}× the baseline's) | "
            "bare confluent-kafka producer, "
            f"same events and records: {base:,.0f} events/s, {base_cpu:.1f} µs/event | "
            f"{s['ratio_to_baseline']:.3f} |"
        )
    return rows


def compare(ref: str, events: int, batch: int, repeats: int) -> int:
    """Before/after in one run: the gateway at ``ref`` and the current one, alternating
    (1 process; 8 and 1 clients), on the same events."""
    from bench_pipeline import checkout

    bench = HttpBench(events, batch, seed=7)
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        with checkout(ref) as tree:
            for _ in range(repeats):
                for name, root in ((ref, tree), ("current", ROOT)):
                    for clients in (8, 1):
                        result = bench.gateway_run(1, clients, root)
                        rows.setdefault(f"{name}, {clients} client(s)", []).append(result)
                        print(
                            f"{name}, {clients} client(s): "
                            f"{result['events_per_second']:,.0f} events/s, server CPU "
                            f"{result['server_cpu_us_per_event']:.1f} µs/event; exact",
                            flush=True,
                        )
    finally:
        print(f"cleanup: {bench.cleanup()}")
    for name, runs in rows.items():
        print(
            f"{name}: median {median_of(runs, 'events_per_second'):,.0f} events/s, "
            f"server CPU {median_of(runs, 'server_cpu_us_per_event'):.1f} µs/event"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--workers", default="1,2", help="uvicorn process counts, e.g. 1,2")
    parser.add_argument("--clients", default="8,1", help="concurrent clients, e.g. 8,1")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--compare-ref",
        help="also run the gateway of this git ref (1 process; 8 and 1 clients), e.g. HEAD",
    )
    args = parser.parse_args(argv)
    if args.compare_ref:
        return compare(args.compare_ref, args.events, args.batch, args.repeats)
    result = run(
        args.events,
        args.batch,
        tuple(int(w) for w in args.workers.split(",")),
        tuple(int(c) for c in args.clients.split(",")),
        args.repeats,
    )
    print("\n".join(table(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
