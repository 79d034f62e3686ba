"""Alert latency under load, and once-only through a worker SIGKILL.

    python bench/bench_alerts.py [--rate 10000] [--probes 40] [--every 1.5]

On an isolated topic and database: one supervised worker (``python -m streams worker``),
the alerts evaluator (``python -m alerts run``) and a webhook receiver in this process.
A producer offers ``--rate`` events/s of background telemetry (``bench/soak.py``'s
generator: 20 subjects, packed records, 10 % re-sent duplicates).  ``--probes``
customers each have one usage threshold (``api_calls`` ≥ 1); every ``--every`` seconds
one probe's crossing event is sent, and its broker append time (the topic keeps
LogAppendTime) is taken from the delivery report.  Latency = when the receiver got the
probe's webhook − that append time.  Half-way through, the worker child is SIGKILLed (its
supervisor starts a replacement, which replays what was not committed).

Checks: every probe's notification is received, exactly once (one request per id, no
other id); the background totals are exact at the end.  Prints the result as JSON and
writes ``bench/alerts-results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer
from soak import Offered, _free_port, _wait, health, produce

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_pipeline import percentile  # noqa: E402

from alerts.webhooks import SignatureRejected, new_secret, verify  # noqa: E402
from ingest.admin import ensure_topics, meterline_topics  # noqa: E402
from schemas.metering.definitions import load_meters  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.wire import BATCH_CONTENT_TYPE, CONTENT_TYPE_HEADER  # noqa: E402
from streams.progress import consumer_lag  # noqa: E402
from streams.reconcile import stored_totals  # noqa: E402

TARGET_S = 5.0


class Received:
    """What the receiver got: per notification id, the receive times (ms) and bodies."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.by_id: dict[str, list[int]] = {}
        self.bodies: dict[str, bytes] = {}
        self.bad = 0
        self.lock = threading.Lock()


def serve(received: Received) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            at_ms = int(time.time() * 1000)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verify(received.secret, headers, body, now_s=int(time.time()))
                status = 204
            except SignatureRejected:
                status = 401
            with received.lock:
                if status == 204:
                    key = headers["webhook-id"]
                    received.by_id.setdefault(key, []).append(at_ms)
                    received.bodies[key] = body
                else:
                    received.bad += 1
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def configure(work: Path, probes: int, receiver_url: str, secret: str) -> dict[str, str]:
    customers = "".join(
        f"  - {{id: probe-{n}, plan: pro, currency: USD, start: '2026-01-01', anchor_day: 1}}\n"
        for n in range(probes)
    )
    thresholds = "".join(
        f"  - {{id: probe-{n}, kind: usage, meter: api_calls, customer: probe-{n}, at: 1}}\n"
        for n in range(probes)
    )
    files = {
        "customers": ("customers.yaml", "customers:\n" + customers),
        "thresholds": ("thresholds.yaml", "thresholds:\n" + thresholds),
        "webhooks": (
            "webhooks.yaml",
            f"endpoints:\n  - {{id: bench, url: '{receiver_url}', secret: '{secret}'}}\n",
        ),
    }
    out = {}
    for name, (file, text) in files.items():
        (work / file).write_text(text)
        out[name] = str(work / file)
    return out


def send_probe(producer: Producer, settings: Settings, n: int, appended: dict[int, int]) -> None:
    """Probe ``n``'s crossing event; its append time lands in ``appended[n]``."""
    event = {
        "specversion": "1.0",
        "id": f"probe-{n}",
        "source": "bench",
        "type": "api.request",
        "subject": f"probe-{n}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "data": {"endpoint": "/v1/x", "region": "eu"},
    }

    def done(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            appended[n] = msg.timestamp()[1]

    producer.produce(
        settings.events_topic,
        key=f"probe-{n}".encode(),
        value=orjson.dumps(event),
        headers=[(CONTENT_TYPE_HEADER, BATCH_CONTENT_TYPE)],
        on_delivery=done,
    )
    producer.flush(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--every", type=float, default=1.5)
    args = parser.parse_args(argv)
    tag = "alerts_" + uuid.uuid4().hex[:8]
    home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache/meterline")
    work = home / "bench" / tag
    work.mkdir(parents=True, exist_ok=True)
    secret = new_secret()
    received = Received(secret)
    server = serve(received)
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    files = configure(work, args.probes, url, secret)
    worker_port, alerts_port = _free_port(), _free_port()
    settings = Settings().model_copy(
        update={
            "clickhouse_database": tag,
            "events_topic": f"{tag}.events",
            "dead_letter_topic": f"{tag}.dead-letter",
            "invoices_topic": f"{tag}.invoices",
            "notifications_topic": f"{tag}.notifications",
            "worker_app_id": f"{tag}-metering",
            "worker_metrics_port": worker_port,
            "worker_data_dir": str(work / "worker"),
            "alerts_port": alerts_port,
            "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
            "rate_card_file": str(ROOT / "deploy/demo/rate-card.yaml"),
            "customers_file": files["customers"],
            "thresholds_file": files["thresholds"],
            "webhooks_file": files["webhooks"],
        }
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine.of(settings)
    ensure_schema(engine, settings.clickhouse_database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update({f"METERLINE_{k.upper()}": str(v) for k, v in settings.model_dump().items()})
    procs = []
    for name, module in (("worker", "streams"), ("alerts", "alerts")):
        with (work / f"{name}.log").open("wb") as out:
            command = [sys.executable, "-m", module, "worker" if name == "worker" else "run"]
            procs.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            )  # fmt: skip
    result: dict[str, Any] = {"rate": args.rate, "probes": args.probes, "database": tag}
    try:
        _wait(lambda: health(worker_port).get("ready"), 180, "the worker to be ready")
        duration = args.probes * args.every + 10
        offered = Offered()
        background = threading.Thread(
            target=produce,
            args=(settings, int(args.rate * duration), args.rate, offered, tag),
            daemon=True,
        )
        background.start()
        time.sleep(5)  # the stream flowing before the first probe
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
        appended: dict[int, int] = {}
        kill_at = args.probes // 2
        killed_ms = 0
        for n in range(args.probes):
            if n == kill_at:
                child = health(worker_port).get("child_pid")
                if child:
                    os.kill(int(child), signal.SIGKILL)
                    killed_ms = int(time.time() * 1000)
            send_probe(producer, settings, n, appended)
            time.sleep(args.every)
        _wait(lambda: len(received.by_id) >= args.probes, 120, "every probe's webhook")
        background.join(timeout=duration * 4 + 300)
        _wait(lambda: offered.done and consumer_lag(
            settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic
        ).total == 0, 600, "the worker to catch up")  # fmt: skip
        time.sleep(5)  # ticks after the end: nothing may be raised again
        ids = {f"probe-{n}": n for n in range(args.probes)}
        latencies: dict[int, float] = {}
        for key, times in received.by_id.items():
            body = orjson.loads(received.bodies[key])
            n = ids[body["data"]["customer"]]
            latencies[n] = (times[0] - appended[n]) / 1000
        steady = [s for n, s in latencies.items() if abs(appended[n] - killed_ms) > 20_000]
        around = {n: s for n, s in latencies.items() if abs(appended[n] - killed_ms) <= 20_000}
        totals = stored_totals(
            engine, settings.clickhouse_database, settings.namespace,
            load_meters(settings.meters_file),
        )  # fmt: skip
        tokens = {k: v for k, v in totals.items() if k[1] == "llm_tokens"}
        result.update(
            {
                "received_ids": len(received.by_id),
                "requests": sum(len(t) for t in received.by_id.values()),
                "bad_signatures": received.bad,
                "once": all(len(t) == 1 for t in received.by_id.values())
                and len(received.by_id) == args.probes,
                "latency_s": {
                    "p50": round(percentile(list(latencies.values()), 50), 2),
                    "p95": round(percentile(list(latencies.values()), 95), 2),
                    "max": round(max(latencies.values()), 2),
                },
                "steady_max_s": round(max(steady), 2) if steady else None,
                "around_kill_s": {n: round(s, 2) for n, s in sorted(around.items())},
                "target_s": TARGET_S,
                "within_target": bool(steady) and max(steady) <= TARGET_S,
                "background_exact": tokens == offered.truth,
                "background_events": offered.sent,
            }
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)
        server.shutdown()
        engine.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
        engine.close()
    (ROOT / "bench" / "alerts-results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if result.get("once") and result.get("background_exact") else 1


if __name__ == "__main__":
    sys.exit(main())
