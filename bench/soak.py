"""``make soak``: millions of events at a fixed offered rate through the real worker.

    python bench/soak.py [--events 20000000] [--rate 20000]

One supervised worker (``python -m streams worker``) meters an isolated topic while a
producer offers ``--rate`` events/s (packed NDJSON records of one subject each, 10 %
re-sent duplicates packed the same way a little later, the demo meters).  Every 5 s the
harness samples the worker child's RSS (and its anonymous part), its CPU time, the
dedupe store's memory by part as the worker reports it
(``meterline_stream_dedupe_memory_bytes``, read from RocksDB every 15 s), the consumer
lag and the events stored so far.  At the end it waits for zero lag, checks the stored
totals per (subject, meter) against the totals of the events it generated (duplicates
excluded) and the raw-event count, then SIGKILLs the worker child and times its
replacement until it consumes again — with every key of the run retained in the dedupe
state.  Figures go to ``bench/soak-results.json``, the chart to ``docs/soak.png``, a
summary to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.admin import delete_state, ensure_topics, meterline_topics  # noqa: E402
from schemas.metering.definitions import load_meters  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.events_table import EventsTable  # noqa: E402
from schemas.wire import record_value  # noqa: E402
from streams.progress import consumer_lag  # noqa: E402
from streams.reconcile import stored_totals  # noqa: E402

SUBJECTS = 20
PER_RECORD = 200
MODELS = ("small", "large")


@dataclass
class Offered:
    """What the producer sent, and the truth it implies."""

    sent: int = 0
    unique: int = 0
    duplicates: int = 0
    truth: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    done: bool = False
    behind_s: float = 0.0


def produce(settings: Settings, events: int, rate: float, offered: Offered, run: str) -> None:
    """Offer ``events`` at ``rate`` events/s: every 0.1 s one record per subject."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    tick_events = max(int(rate / 10), 1)
    started = time.monotonic()
    n = 0
    resend: dict[int, list[bytes]] = {}  # per subject, the lines to send again later
    resending = 0
    tick = 0
    while n < events:
        due = started + tick / 10
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            offered.behind_s = -pause
        now_ms = int(time.time() * 1000)
        stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        by_subject: dict[int, list[bytes]] = {}
        for _ in range(min(tick_events, events - n)):
            subject = n % SUBJECTS
            tokens = 1 + (n * 7919) % 4000
            line = orjson.dumps(
                {
                    "specversion": "1.0",
                    "id": f"{run}-{n}",
                    "source": "soak",
                    "type": "llm.completion",
                    "subject": f"c{subject}",
                    "time": stamp + "Z",
                    "data": {"tokens": tokens, "model": MODELS[n % 2]},
                }
            )
            by_subject.setdefault(subject, []).append(line)
            key = (f"c{subject}", "llm_tokens")
            offered.truth[key] = offered.truth.get(key, Decimal(0)) + tokens
            offered.unique += 1
            if n % 10 == 0:
                resend.setdefault(subject, []).append(line)
                resending += 1
            n += 1
        for subject, lines in by_subject.items():
            _send_packed(producer, settings.events_topic, subject, lines)
        if resending >= PER_RECORD:  # the duplicates: exact re-sends, later, packed
            for subject, lines in resend.items():
                _send_packed(producer, settings.events_topic, subject, lines)
            offered.duplicates += resending
            resend, resending = {}, 0
        offered.sent = n + offered.duplicates
        tick += 1
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the soak producer could not deliver everything")
    offered.done = True


def _send_packed(producer: Producer, topic: str, subject: int, lines: list[bytes]) -> None:
    """``lines`` of subject ``c<subject>`` in records of up to ``PER_RECORD`` events."""
    key = f"c{subject}".encode()
    for start in range(0, len(lines), PER_RECORD):
        value, headers = record_value(lines[start : start + PER_RECORD])
        _send(producer, topic, key, value, headers)


def _send(producer: Producer, topic: str, key: bytes, value: bytes, headers: Any) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)


def child_stats(pid: int) -> tuple[int, float]:
    """(RSS in bytes, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss * 1024, (int(fields[11]) + int(fields[12])) / ticks


def anonymous_bytes(pid: int) -> int:
    """The anonymous part of a process's RSS (heaps, arenas, RocksDB's memory; not the
    mapped libraries), from ``/proc/<pid>/smaps_rollup``."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) * 1024
    return 0


def dedupe_memory(port: int) -> dict[str, float]:
    """The worker's ``meterline_stream_dedupe_memory_bytes`` by part, in MB (empty while
    the child's metrics are not in the supervisor's scrape)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
    except httpx.HTTPError:
        return {}
    return {
        sample.labels["part"]: round(sample.value / 2**20, 1)
        for family in text_string_to_metric_families(text)
        if family.name == "meterline_stream_dedupe_memory_bytes"
        for sample in family.samples
    }


def health(port: int) -> dict[str, Any]:
    try:
        return dict(httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3).json())
    except (httpx.HTTPError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--rate", type=float, default=20_000)
    args = parser.parse_args(argv)
    tag = "soak_" + uuid.uuid4().hex[:8]
    base = Settings()
    port = _free_port()
    home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache/meterline")
    settings = base.model_copy(
        update={
            "clickhouse_database": tag,
            "events_topic": f"{tag}.events",
            "dead_letter_topic": f"{tag}.dead-letter",
            "invoices_topic": f"{tag}.invoices",
            "notifications_topic": f"{tag}.notifications",
            "worker_app_id": f"{tag}-metering",
            "worker_metrics_port": port,
            "worker_data_dir": str(home / "soak" / tag),
            "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
        }
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    ensure_schema(engine, settings.clickhouse_database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update({f"METERLINE_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    log = home / "logs" / f"{tag}-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    samples: list[dict[str, Any]] = []
    result: dict[str, Any] = {"events": args.events, "rate": args.rate, "database": tag}
    try:
        _wait(lambda: health(port).get("ready"), 180, "the worker to be ready")
        offered = Offered()
        producer = threading.Thread(
            target=produce, args=(settings, args.events, args.rate, offered, tag), daemon=True
        )
        started = time.monotonic()
        producer.start()
        events_table = EventsTable(settings.clickhouse_database)
        last = (started, 0, 0.0)
        while True:
            time.sleep(5)
            state = health(port)
            pid = state.get("child_pid")
            rss, cpu = child_stats(int(pid)) if pid else (0, 0.0)
            anonymous = anonymous_bytes(int(pid)) if pid else 0
            stored = int(
                engine.execute(events_table.rows_written(settings.namespace).to_sql())[0][0]
            )
            lag = consumer_lag(
                settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic
            )
            now = time.monotonic()
            rate = (stored - last[1]) / (now - last[0])
            cpu_per_event = (cpu - last[2]) / max(stored - last[1], 1) * 1e6
            samples.append(
                {
                    "t": round(now - started, 1),
                    "rss_mb": round(rss / 2**20, 1),
                    "anonymous_mb": round(anonymous / 2**20, 1),
                    "dedupe_memory_mb": dedupe_memory(port),
                    "lag_records": lag.total,
                    "stored": stored,
                    "events_per_s": round(rate),
                    "cpu_us_per_event": round(cpu_per_event, 2),
                    "offered": offered.sent,
                    "producer_behind_s": round(offered.behind_s, 2),
                }
            )
            print(json.dumps(samples[-1]), flush=True)
            last = (now, stored, cpu)
            if offered.done and lag.total == 0:
                break
            if now - started > args.events / args.rate * 4 + 600:
                raise RuntimeError("the worker did not catch up")
        result["seconds"] = round(time.monotonic() - started, 1)
        totals = stored_totals(
            engine,
            settings.clickhouse_database,
            settings.namespace,
            load_meters(settings.meters_file),
        )
        tokens = {k: v for k, v in totals.items() if k[1] == "llm_tokens"}
        unique = int(engine.execute(events_table.count(settings.namespace).to_sql())[0][0])
        result["exact"] = tokens == offered.truth and unique == offered.unique
        result["unique"], result["duplicates"] = offered.unique, offered.duplicates
        result["stored_unique"] = unique
        result["restart_s"] = restart(port)
        result["samples"] = samples
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        engine.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
        engine.close()
        # the run's topics, consumer group and dedupe state: gigabytes at 20M events
        delete_state(settings)
        data_dir = Path(settings.worker_data_dir)
        if data_dir.exists():
            shutil.rmtree(data_dir)
    (ROOT / "bench" / "soak-results.json").write_text(json.dumps(result, indent=1) + "\n")
    chart(result, ROOT / "docs" / "soak.png")
    print(summary(result))
    return 0 if result.get("exact") else 1


def restart(port: int) -> float:
    """SIGKILL the worker child; seconds until its replacement is ready again."""
    old = health(port)["child_pid"]
    os.kill(int(old), signal.SIGKILL)
    killed = time.monotonic()
    _wait(
        lambda: (s := health(port)).get("child_pid") not in (None, old) and s.get("ready"),
        600,
        "the replacement to be ready",
    )
    return round(time.monotonic() - killed, 1)


def summary(result: dict[str, Any]) -> str:
    samples = result["samples"]
    steady = samples[len(samples) // 4 :] or samples
    cpu = sorted(s["cpu_us_per_event"] for s in steady if s["events_per_s"] > 0)
    return (
        f"soak: {result['unique']:,} events (+{result['duplicates']:,} duplicates) offered at "
        f"{result['rate']:,.0f}/s, done in {result['seconds']:.0f} s; exact: {result['exact']}; "
        f"final worker RSS {samples[-1]['rss_mb']:.0f} MB; max lag "
        f"{max(s['lag_records'] for s in samples):,} records; median CPU "
        f"{cpu[len(cpu) // 2] if cpu else 0:.1f} µs/event; restart with every key retained: "
        f"{result['restart_s']:.1f} s"
    )


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, [s["rss_mb"] for s in samples], color="#2563eb", label="RSS")
    if any(s.get("dedupe_memory_mb") for s in samples):
        rocksdb = [_dedupe_total(s) for s in samples]
        axes[0].plot(t, rocksdb, color="#9333ea", label="dedupe store (RocksDB + key filter)")
        axes[0].plot(
            t,
            [s["rss_mb"] - r for s, r in zip(samples, rocksdb, strict=True)],
            color="#6b7280",
            label="the rest",
        )
        axes[0].legend(loc="upper left")
    axes[0].set_ylabel("worker memory (MB)")
    axes[1].plot(t, [s["lag_records"] for s in samples], color="#dc2626")
    axes[1].set_ylabel("consumer lag (records)")
    axes[2].plot(t, [s["events_per_s"] for s in samples], color="#16a34a", label="stored")
    axes[2].axhline(result["rate"], color="#6b7280", linestyle="--", label="offered")
    axes[2].set_ylabel("events/s")
    axes[2].set_xlabel("seconds")
    axes[2].legend(loc="lower right")
    fig.suptitle(
        f"soak: {result['unique']:,} events at {result['rate']:,.0f}/s offered, one worker "
        f"(exact: {result['exact']})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _dedupe_total(sample: dict[str, Any]) -> float:
    """The dedupe store's memory in a sample: the block cache (memtables inside it), the
    table readers and the key filter."""
    parts = sample.get("dedupe_memory_mb") or {}
    return float(sum(v for k, v in parts.items() if k != "memtables"))


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
