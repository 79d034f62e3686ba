"""Dedupe store memory and restart, with ``keys`` retained keys (default 20M).

    python bench/dedupe_memory.py [--keys 20000000] [--stage store|worker|all]
                                  [--full-restore]

``store`` (the default): keys go in through the worker's store API
(``TableSeenStore.put_many`` on the worker's table and
:class:`streams.seen_store.SeenIndexStore`), chunk by chunk as the worker records them
(chunks of 5,000 events over 4 partitions, one table entry per partition per chunk),
with the changelog send stubbed out: Kafka is not what is measured.  Before each chunk
is recorded its keys are looked up, as the sink's planning does (all misses); every
20th chunk also times lookups of keys stored earlier (hits).  Every 1M keys it samples
the process RSS (``VmRSS``), the block cache and the table readers' memory; the growth
per key is the least-squares slope of RSS over keys.  At the end it reopens the store in
a fresh process (Python start, every partition database opened and its persisted
changelog offset read — what Faust's recovery reads first — then 10,000 stored and
10,000 unknown keys looked up and checked), and runs the old in-memory dict index on
500k keys as a same-run baseline.

``worker``: the real supervised worker (``python -m streams worker``) on the local Kafka
and ClickHouse, on a topic, group, data directory and database of its own (deleted at
the end).  The keys are written as chunk messages to the worker's dedupe changelog and,
at the offsets Kafka gave them, into the worker's first state slot; then the worker
starts, and the stage times Faust's ready and the first new event stored, checks that a
re-sent copy of a retained key is dropped, SIGKILLs the worker child and times the
supervisor's replacement the same way (see :func:`worker_restart`).

Prints one JSON document (progress on stderr).  :func:`run_stage` is the entry point for
``bench/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import faust  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from faust.types import TP  # noqa: E402

from ingest.admin import TopicSpec, delete_state, ensure_topics, meterline_topics  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.events_table import EventsTable  # noqa: E402
from schemas.wire import BATCH_CONTENT_TYPE, CONTENT_TYPE_HEADER  # noqa: E402
from streams.dedupe import SeenRecord, dedupe_key  # noqa: E402
from streams.seen_store import SeenIndexStore, StoreLimits  # noqa: E402
from streams.seen_table import PositionedTable, TableSeenStore  # noqa: E402

T0 = 1_790_000_000_000
PARTITIONS = 4
CHECKS = 10_000


class UnsentTable(PositionedTable):
    """The worker's dedupe table without the changelog send."""

    def on_key_set(self, key: Any, value: Any) -> None:
        pass

    def on_key_del(self, key: Any) -> None:
        pass


def open_store(datadir: Path) -> tuple[TableSeenStore, SeenIndexStore]:
    app = faust.App("bench-dedupe", datadir=str(datadir), key_serializer="raw")
    limits = StoreLimits(index_and_filters_in_cache=os.environ.get("BENCH_FILTERS") == "cache")
    table = app.tables.add(
        UnsentTable(
            app,
            name="dedupe",
            partitions=PARTITIONS,
            key_type=bytes,
            value_type=bytes,
            options={"limits": limits},
        )
    )
    store = table.data
    assert isinstance(store, SeenIndexStore)
    for partition in range(PARTITIONS):  # Faust's recovery reads these first
        store.persisted_offset(TP(table.changelog_topic.topics[0], partition))
    return TableSeenStore(table), store


def key_of(i: int) -> str:
    return dedupe_key("default", "bench-source", f"{i * 2654435761 % 2**64:032x}")


def record_of(i: int) -> tuple[str, SeenRecord]:
    partition = i % PARTITIONS
    return key_of(i), SeenRecord(partition, i // PARTITIONS, f"{i:024x}", T0 + i // 1000, 0)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def read_bytes() -> int:
    """Bytes read through system calls so far (page cache included): RocksDB re-reading
    blocks it cannot keep shows here first."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar")


def table_readers_bytes(store: SeenIndexStore) -> int:
    """RocksDB memory outside the block cache: open files' readers (index, filters)."""
    index = store._opened_index()
    families = [index.seen, index.chunks, index.expiry, *store._dbs.values()]
    prop = "rocksdb.estimate-table-readers-mem"
    return sum(family.property_int_value(prop) or 0 for family in families)


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def insert(datadir: Path, keys: int, chunk: int, every: int) -> dict[str, Any]:
    start_rss = rss_bytes()
    seen, store = open_store(datadir)
    opened_rss = rss_bytes()
    samples: list[dict[str, Any]] = []
    miss_s = hit_s = put_s = 0.0
    misses = hits = 0
    rng = random.Random(1)  # noqa: S311 - reproducible probes, not security
    started = time.perf_counter()
    for n, first in enumerate(range(0, keys, chunk)):
        entries = [record_of(i) for i in range(first, min(first + chunk, keys))]
        t = time.perf_counter()
        for key, _ in entries:
            if seen.get(key) is not None:
                raise AssertionError(f"{key!r} found before it was stored")
        miss_s += time.perf_counter() - t
        misses += len(entries)
        t = time.perf_counter()
        seen.put_many(entries)
        put_s += time.perf_counter() - t
        if n % 20 == 0 and first:
            probe = [rng.randrange(first) for _ in range(500)]
            t = time.perf_counter()
            for i in probe:
                key, record = record_of(i)
                if seen.get(key) != record:
                    raise AssertionError(f"key {i} not found")
            hit_s += time.perf_counter() - t
            hits += len(probe)
        done = first + len(entries)
        if done % every == 0 or done == keys:
            samples.append(
                {
                    "keys": done,
                    "rss_mb": round(rss_bytes() / 2**20, 1),
                    "block_cache_mb": round(store.rocksdb_options.cache.get_usage() / 2**20, 1),
                    "table_readers_mb": round(table_readers_bytes(store) / 2**20, 1),
                    "read_syscalls_gb": round(read_bytes() / 2**30, 1),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
    t = time.perf_counter()
    store.close()
    close_s = time.perf_counter() - t
    first_sample = samples[0]
    last = samples[-1]
    xs = [s["keys"] for s in samples]
    ys = [s["rss_mb"] * 2**20 for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / max(
        1.0, sum((x - mean_x) ** 2 for x in xs)
    )
    return {
        "keys": keys,
        "chunk_events": chunk,
        "partitions": PARTITIONS,
        "rss_before_open_mb": round(start_rss / 2**20, 1),
        "rss_after_open_mb": round(opened_rss / 2**20, 1),
        "rss_final_mb": last["rss_mb"],
        "rss_growth_bytes_per_key_fit": round(slope, 2),
        "rss_growth_bytes_per_key_first_to_last_sample": round(
            (last["rss_mb"] - first_sample["rss_mb"]) * 2**20 / max(1, last["keys"] - xs[0]), 2
        ),
        "insert_seconds": round(last["seconds"], 1),
        "put_us_per_key": round(put_s / keys * 1e6, 2),
        "lookup_miss_us": round(miss_s / misses * 1e6, 2),
        "lookup_hit_us": round(hit_s / max(1, hits) * 1e6, 2),
        "close_seconds": round(close_s, 2),
        "disk_mb": round(disk_bytes(datadir) / 2**20, 1),
        "samples": samples,
    }


class DictTable:
    """The old layout's write path: chunk entries in a dict (the memory store)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def put_at(self, key: bytes, value: bytes, partition: int) -> None:
        self.data[key] = value


def baseline(keys: int, chunk: int) -> dict[str, Any]:
    """The same work with the old in-memory index (a dict of every key), in this run: the
    per-key costs above are meant to be read against these."""
    seen = TableSeenStore(DictTable())  # type: ignore[arg-type]
    index: dict[str, SeenRecord] = {}
    miss_s = put_s = 0.0
    for first in range(0, keys, chunk):
        entries = [record_of(i) for i in range(first, first + chunk)]
        t = time.perf_counter()
        for key, _ in entries:
            if index.get(key) is not None:
                raise AssertionError(key)
        miss_s += time.perf_counter() - t
        t = time.perf_counter()
        seen.put_many(entries)
        index.update(entries)
        put_s += time.perf_counter() - t
    return {
        "keys": keys,
        "put_us_per_key": round(put_s / keys * 1e6, 2),
        "lookup_miss_us": round(miss_s / keys * 1e6, 2),
    }


def reopen(datadir: Path, keys: int) -> dict[str, Any]:
    """In a fresh process: open, then check stored and unknown keys; then wait for the
    index's key filter (built in a thread from the chunk entries) and check again."""
    t = time.perf_counter()
    seen, store = open_store(datadir)
    opened = time.perf_counter() - t
    check_keys(seen, keys)
    checked = time.perf_counter() - t
    keys_filter = store.keys.wait()
    filtered = time.perf_counter() - t
    check_keys(seen, keys)
    return {
        "open_seconds": round(opened, 3),
        "open_and_checked_seconds": round(checked, 3),
        "filter_ready_seconds": round(filtered, 3),
        "filter_mib": None if keys_filter is None else round(keys_filter.nbytes / 2**20, 1),
        "rss_mb": round(rss_bytes() / 2**20, 1),
    }


def check_keys(seen: TableSeenStore, keys: int) -> None:
    rng = random.Random(2)  # noqa: S311 - reproducible probes, not security
    for i in (rng.randrange(keys) for _ in range(CHECKS)):
        key, record = record_of(i)
        if seen.get(key) != record:
            raise AssertionError(f"key {i} wrong after reopening")
    for i in range(keys, keys + CHECKS):
        if seen.get(key_of(i)) is not None:
            raise AssertionError(f"unknown key {i} found after reopening")


# -- through the real worker, on the local Kafka and ClickHouse -------------------------


class ChangelogMessage:
    """What :meth:`SeenIndexStore.apply_changelog_batch` reads of a consumed message."""

    __slots__ = ("key", "offset", "partition", "value")

    def __init__(self, partition: int, offset: int, key: bytes, value: bytes) -> None:
        self.partition, self.offset, self.key, self.value = partition, offset, key, value

    @property
    def message(self) -> ChangelogMessage:
        return self


def chunk_of(
    namespace: str, partition: int, n: int, chunk: int, ingested: int
) -> tuple[bytes, bytes]:
    """The ``n``-th chunk entry of a partition, as the worker writes it (``TableSeenStore``)."""
    first = n * chunk
    events = [
        [
            dedupe_key(namespace, "bench-source", f"p{partition}-{first + i}"),
            first + i,
            0,
            f"{first + i:024x}",
            ingested,
        ]
        for i in range(chunk)
    ]
    return f"{partition}:{first}-{first + chunk - 1}".encode(), orjson.dumps({"e": events})


def seed(settings: Any, keys: int, chunk: int, slot: Path) -> dict[str, Any]:
    """Write ``keys`` retained keys to the worker's dedupe changelog topic, and the same
    messages, at the offsets Kafka gave them, into the worker's first state slot — what a
    worker that recorded them and stopped leaves behind."""
    partitions = settings.events_partitions
    topic = f"{settings.worker_app_id}-dedupe-changelog"
    ensure_topics(
        settings.kafka_bootstrap,
        [
            TopicSpec(
                topic, partitions, {"cleanup.policy": "compact", "max.message.bytes": str(16 << 20)}
            )
        ],
    )
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "linger.ms": 50,
            "message.max.bytes": 16 << 20,
        }
    )
    offsets: dict[tuple[int, int], int] = {}

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            raise RuntimeError(f"changelog seed not delivered: {err}")
        offsets[(msg.partition(), int(msg.key().split(b":")[1].split(b"-")[0]) // chunk)] = (
            msg.offset()
        )

    ingested = int(time.time() * 1000)
    per_partition = keys // partitions // chunk
    t = time.perf_counter()
    for n in range(per_partition):
        for partition in range(partitions):
            key, value = chunk_of(settings.namespace, partition, n, chunk, ingested)
            while True:
                try:
                    producer.produce(
                        topic, value=value, key=key, partition=partition, on_delivery=delivered
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
    if producer.flush(300):
        raise RuntimeError("the changelog seed was not delivered")
    produced_s = time.perf_counter() - t
    app = faust.App(settings.worker_app_id, datadir=str(slot), key_serializer="raw")
    table = app.tables.add(
        UnsentTable(app, name="dedupe", partitions=partitions, key_type=bytes, value_type=bytes)
    )
    store = table.data
    assert isinstance(store, SeenIndexStore)
    t = time.perf_counter()
    for n in range(per_partition):
        batch = []
        for partition in range(partitions):
            key, value = chunk_of(settings.namespace, partition, n, chunk, ingested)
            batch.append(ChangelogMessage(partition, offsets[(partition, n)], key, value))
        store.apply_changelog_batch(batch, None, None)
    store.close()
    return {
        "retained_keys": per_partition * partitions * chunk,
        "changelog_produce_s": round(produced_s, 1),
        "local_apply_s": round(time.perf_counter() - t, 1),
        "slot_disk_mb": round(disk_bytes(slot) / 2**20, 1),
        "ingested_ms": ingested,
    }


def worker_restart(keys: int, chunk: int = 5_000, full_restore: bool = False) -> dict[str, Any]:
    """Restart to consuming with ``keys`` retained keys, through the real supervised worker
    (``python -m streams worker``) on an isolated topic, group and database.

    Times, from the worker's start: Faust ready (assignment and changelog recovery done:
    only the tail after the stored offsets is read) and the first new event stored in
    ClickHouse; in the same record, a re-sent copy of a retained key must be dropped (the
    reused local state answered).  Then SIGKILLs the worker child and times the
    supervisor's replacement the same way.  ``full_restore``: also start a worker on an
    empty state directory, which restores the whole changelog (a new machine, or a host
    that crashed under an open store)."""
    tag = "ddbench_" + uuid.uuid4().hex[:8]
    home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache/meterline")
    port = free_port()
    settings = Settings().model_copy(
        update={
            "clickhouse_database": tag,
            "events_topic": f"{tag}.events",
            "dead_letter_topic": f"{tag}.dead-letter",
            "invoices_topic": f"{tag}.invoices",
            "worker_app_id": f"{tag}-metering",
            "worker_metrics_port": port,
            "worker_data_dir": str(home / "bench" / tag),
            "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
        }
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    ensure_schema(engine, settings.clickhouse_database)
    events = EventsTable(settings.clickhouse_database)
    slot = Path(settings.worker_data_dir) / settings.worker_app_id / "slot-0"
    result: dict[str, Any] = {
        "what": "python -m streams worker on the local Kafka and "
        "ClickHouse, isolated topic, group and database"
    }
    result.update(seed(settings, keys, chunk, slot))
    print(json.dumps(result), file=sys.stderr, flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update({f"METERLINE_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    log = home / "logs" / f"{tag}-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    sent = [0]

    def consumed(label: str, started: float, worker_pid: int) -> dict[str, Any]:
        ready = wait_for(lambda: health(port).get("ready"), 900, f"{label}: ready")
        ready_s = time.monotonic() - started
        del ready
        retained = dedupe_key(settings.namespace, "bench-source", "p0-7")
        sent[0] += 1
        send_events(settings, [_event("p0-7", sent[0]), _event(f"new-{sent[0]}", sent[0])])
        wait_for(lambda: stored(engine, events, settings) >= sent[0], 300, f"{label}: stored")
        stored_s = time.monotonic() - started
        time.sleep(2)  # a duplicate counted late would show by now
        if stored(engine, events, settings) != sent[0]:
            raise AssertionError(f"{label}: the re-sent copy of {retained!r} was stored")
        child = health(port).get("child_pid")
        return {
            "ready_s": round(ready_s, 1),
            "first_event_stored_s": round(stored_s, 1),
            "child_rss_mb": round(child_rss(int(child)) / 2**20, 1) if child else None,
            "duplicate_of_retained_key_dropped": True,
        }

    worker = None
    try:
        with log.open("ab") as out:
            started = time.monotonic()
            worker = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        result["start_with_local_state"] = consumed("start", started, worker.pid)
        print(json.dumps(result), file=sys.stderr, flush=True)
        old = health(port)["child_pid"]
        os.kill(int(old), signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: health(port).get("child_pid") not in (None, old), 120, "a new child")
        result["sigkill_restart"] = consumed("after SIGKILL", killed, worker.pid)
        print(json.dumps(result), file=sys.stderr, flush=True)
        if full_restore:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(120)
            shutil.rmtree(Path(settings.worker_data_dir))
            with log.open("ab") as out:
                started = time.monotonic()
                worker = subprocess.Popen(
                    [sys.executable, "-m", "streams", "worker"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            result["start_with_empty_state"] = consumed("empty state", started, worker.pid)
        print(json.dumps(result), file=sys.stderr, flush=True)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(120)
        engine.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
        engine.close()
        delete_state(settings)
        shutil.rmtree(Path(settings.worker_data_dir), ignore_errors=True)
    result["worker_log"] = str(log)
    return result


def _event(event_id: str, n: int) -> bytes:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "bench-source",
            "type": "llm.completion",
            "subject": "c0",
            "time": stamp,
            "data": {"tokens": n, "model": "small"},
        }
    )


def send_events(settings: Any, lines: list[bytes]) -> None:
    """One packed record (the SDK's layout) on the events topic."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    producer.produce(
        settings.events_topic,
        value=b"\n".join(lines),
        key=b"c0",
        headers=[(CONTENT_TYPE_HEADER, BATCH_CONTENT_TYPE)],
    )
    if producer.flush(30):
        raise RuntimeError("the test event was not delivered")


def stored(engine: Any, events: Any, settings: Any) -> int:
    return int(engine.execute(events.count(settings.namespace).to_sql())[0][0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def health(port: int) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).json())
    except (httpx.HTTPError, ValueError):
        return {}


def child_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(
        int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS")
    )


def run_stage(keys: int = 20_000_000, *, worker: bool = True) -> dict[str, Any]:
    """For ``bench/run.py``: the store benchmark (memory, bytes per key, reopen) and, with
    ``worker``, the restart of the real worker with ``keys`` retained keys."""
    command = [sys.executable, __file__, "--keys", str(keys), "--stage"]
    command.append("all" if worker else "store")
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=20_000_000)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--every", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, help="keep the store here (default: a temp dir)")
    parser.add_argument(
        "--stage",
        choices=["store", "worker", "all"],
        default="store",
        help="store: the store alone; worker: restart of the real worker; all: both",
    )
    parser.add_argument(
        "--full-restore",
        action="store_true",
        help="worker stage: also time a start on an empty state directory",
    )
    parser.add_argument("--reopen", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        print(json.dumps(baseline(args.keys, args.chunk)))
        return
    if args.reopen:
        print(json.dumps(reopen(args.reopen, args.keys)))
        return
    result: dict[str, Any] = {}
    if args.stage in ("store", "all"):
        result["store"] = store_stage(args.keys, args.chunk, args.every, args.dir)
    if args.stage in ("worker", "all"):
        result["worker"] = worker_restart(args.keys, args.chunk, args.full_restore)
    print(json.dumps(result, indent=2))


def store_stage(keys: int, chunk: int, every: int, keep: Path | None) -> dict[str, Any]:
    datadir = keep or Path(tempfile.mkdtemp(prefix="dedupe-bench-"))
    try:
        result = insert(datadir, keys, chunk, every)
        t = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--keys", str(keys), "--reopen", str(datadir)],
            capture_output=True,
            text=True,
            check=True,
        )
        result["reopen"] = json.loads(child.stdout)
        result["reopen"]["process_start_to_checked_seconds"] = round(time.perf_counter() - t, 3)
        command = [sys.executable, __file__, "--keys", str(min(keys, 500_000)), "--baseline"]
        result["baseline_dict_index"] = json.loads(
            subprocess.run(command, capture_output=True, text=True, check=True).stdout
        )
        return result
    finally:
        if keep is None:
            shutil.rmtree(datadir, ignore_errors=True)


if __name__ == "__main__":
    main()
