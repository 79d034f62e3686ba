"""What the fault matrix (``bench/chaos.py``) is built from: a stack of its own that it
may kill, an isolated pipeline per case, senders that retry until every event is
acknowledged, and the exactness check.

Everything runs on 127.0.0.1.  The chaos stack is a second Kafka and ClickHouse started by
``deploy/stack.py`` under ``$METERLINE_HOME/chaos`` on ports 39092/39093/39000/38123, so
killing its broker never touches the stack ``make up`` runs for everything else.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import UsageProducer  # noqa: E402
from ingest.admin import ensure_topics, meterline_topics  # noqa: E402
from ingest.telemetry import Telemetry  # noqa: E402
from schemas.events import UsageEvent  # noqa: E402
from schemas.metering.definitions import load_meters  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.events_table import EventsTable  # noqa: E402
from streams.progress import consumer_lag  # noqa: E402
from streams.reconcile import stored_totals  # noqa: E402

CHAOS_PORTS = {
    "METERLINE_KAFKA_PORT": "39092",
    "METERLINE_KAFKA_CONTROLLER_PORT": "39093",
    "METERLINE_CLICKHOUSE_TCP_PORT": "39000",
    "METERLINE_CLICKHOUSE_HTTP_PORT": "38123",
}


class ChaosError(RuntimeError):
    """A case could not run (not: a case found a difference — that is its result)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise ChaosError(f"timed out after {timeout:.0f}s waiting for {what}")


# --------------------------------------------------------------------------- the stack


@dataclass
class ChaosStack:
    """Kafka and ClickHouse of the fault matrix's own (see the module docstring)."""

    home: Path

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
        return {**base, "METERLINE_HOME": str(self.home), **CHAOS_PORTS}

    def stack(self, command: str) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "stack.py"), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise ChaosError(f"stack.py {command} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    @property
    def data_dir(self) -> Path:
        return self.home / "clickhouse" / "data"

    def up(self) -> None:
        """Start the stack; ClickHouse's data directory is a tmpfs of its own, so that the
        disk-full case can fill it (mounting needs root, as everything here runs)."""
        if not os.path.ismount(self.data_dir):
            self.stack("down")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            mount = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", str(self.data_dir)],
                capture_output=True,
                text=True,
                check=False,
            )
            if mount.returncode != 0:
                raise ChaosError(
                    f"could not mount a tmpfs for ClickHouse's data ({mount.stderr.strip()}); "
                    "make chaos needs root"
                )
        self.stack("up")

    def down(self) -> None:
        self.stack("down")
        if os.path.ismount(self.data_dir):
            subprocess.run(["umount", str(self.data_dir)], check=False)

    def pid(self, service: str) -> int:
        record = json.loads((self.home / "run" / f"{service}.pid").read_text())
        return int(record["pid"])

    def kill(self, service: str) -> None:
        """SIGKILL the server (its whole process group) and wait until it is gone."""
        pid = self.pid(service)
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 30, f"{service} death")

    def disk_full(self, on: bool) -> None:
        """Fill ClickHouse's data filesystem to the last byte (a file of all the free
        space), or free it again; confirmed by an insert on a new connection."""
        filler = self.data_dir / "chaos-filler"

        def engine() -> ServerEngine:  # a new session per probe
            return ServerEngine("127.0.0.1", int(CHAOS_PORTS["METERLINE_CLICKHOUSE_TCP_PORT"]))

        setup = engine()
        try:
            setup.execute(
                "CREATE TABLE IF NOT EXISTS default.chaos_probe (x UInt8)"
                " ENGINE = MergeTree ORDER BY x"
            )
        finally:
            setup.close()
        if on:
            stat = os.statvfs(self.data_dir)
            block = b"\1" * (1 << 20)
            with filler.open("wb", buffering=0) as out:
                try:
                    for _ in range(stat.f_bavail * stat.f_frsize // len(block) + 1):
                        out.write(block)
                    while True:  # then the last blocks, 4 KiB at a time
                        out.write(block[:4096])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        else:
            filler.unlink(missing_ok=True)

        def applied() -> bool:
            probe = engine()
            try:
                probe.insert("default.chaos_probe", ("x",), [(1,)])
                accepted = True
            except Exception:  # noqa: BLE001 - any refusal means the disk is full
                accepted = False
            finally:
                probe.close()
            return accepted != on

        wait_for(applied, 60, f"ClickHouse disk full={on}", every=0.5)

    def settings(self) -> Settings:
        return Settings(
            kafka_port=int(CHAOS_PORTS["METERLINE_KAFKA_PORT"]),
            clickhouse_tcp_port=int(CHAOS_PORTS["METERLINE_CLICKHOUSE_TCP_PORT"]),
            clickhouse_http_port=int(CHAOS_PORTS["METERLINE_CLICKHOUSE_HTTP_PORT"]),
        )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


# --------------------------------------------------------------------------- one case's pipeline


@dataclass
class Pipeline:
    """Isolated topics, database and consumer group on the chaos stack; supervised workers."""

    settings: Settings
    work: Path
    engine: ServerEngine
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    api: subprocess.Popen[bytes] | None = None
    api_url: str = ""

    @classmethod
    def create(cls, stack: ChaosStack, work: Path, **extra: Any) -> Pipeline:
        tag = "c" + uuid.uuid4().hex[:10]
        settings = stack.settings().model_copy(
            update={
                "clickhouse_database": f"chaos_{tag}",
                "events_topic": f"{tag}.events",
                "dead_letter_topic": f"{tag}.dead-letter",
                "invoices_topic": f"{tag}.invoices",
                "worker_app_id": f"{tag}-metering",
                "events_partitions": 4,
                "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
                "rate_card_file": str(ROOT / "deploy/demo/rate-card.yaml"),
                "customers_file": str(ROOT / "deploy/demo/customers.yaml"),
                "worker_batch_seconds": 0.2,
                "worker_stall_seconds": 30.0,
                "worker_heartbeat_seconds": 15.0,
                **extra,
            }
        )
        work.mkdir(parents=True, exist_ok=True)
        ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
        engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
        ensure_schema(engine, settings.clickhouse_database)
        return cls(settings, work, engine)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
        for name, value in self.settings.model_dump().items():
            env[f"METERLINE_{name.upper()}"] = str(value)
        return {**env, **extra}

    def start_worker(self) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        port = free_port()
        with open(self.work / f"worker-{index}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                cwd=ROOT,
                env=self.env(
                    METERLINE_WORKER_METRICS_PORT=str(port),
                    METERLINE_WORKER_DATA_DIR=str(self.work / f"worker-{index}"),
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(proc)
        self.ports.append(port)
        wait_for(lambda: self.health(index).get("ready"), 180, f"worker {index} to be ready")
        return proc

    def health(self, index: int = 0) -> dict[str, Any]:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.ports[index]}/healthz", timeout=3)
            return dict(answer.json())
        except (httpx.HTTPError, ValueError):
            return {}

    def restarts(self, index: int = 0) -> dict[str, float]:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.ports[index]}/metrics", timeout=5).text
        except httpx.HTTPError:
            return {}
        prefix = 'meterline_worker_restarts_total{reason="'
        out = {}
        for line in text.splitlines():
            if line.startswith(prefix):
                value = float(line.rsplit(" ", 1)[1])
                if value:
                    out[line[len(prefix) :].split('"', 1)[0]] = value
        return out

    def start_api(self, **extra: str) -> str:
        port = free_port()
        with open(self.work / "api.log", "wb") as log:
            self.api = subprocess.Popen(
                [sys.executable, "-m", "api", "serve", "--port", str(port)],
                cwd=ROOT,
                env=self.env(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.api_url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, 60, "the API to answer")
        return self.api_url

    def caught_up(self) -> bool:
        try:
            lag = consumer_lag(
                self.settings.kafka_bootstrap,
                self.settings.worker_app_id,
                self.settings.events_topic,
                timeout=5,
            )
        except Exception:  # noqa: BLE001 - the broker may be down in a case
            return False
        return lag.produced > 0 and lag.total == 0

    def totals(self) -> dict[tuple[str, str], Decimal]:
        meters = load_meters(self.settings.meters_file)
        return stored_totals(
            self.engine, self.settings.clickhouse_database, self.settings.namespace, meters
        )

    def stored_events(self) -> int:
        table = EventsTable(self.settings.clickhouse_database)
        return int(self.engine.execute(table.count(self.settings.namespace).to_sql())[0][0])

    def wait_exact(
        self, truth: dict[tuple[str, str], Decimal], unique: int, timeout: float
    ) -> float:
        """Seconds until every record is committed and totals and rows equal the truth."""
        started = time.monotonic()

        def exact() -> bool:
            if not self.caught_up():
                return False
            try:
                return self.totals() == truth and self.stored_events() == unique
            except Exception:  # noqa: BLE001 - ClickHouse may be down in a case
                return False

        wait_for(exact, timeout, "exact totals", every=1.0)
        return time.monotonic() - started

    def difference(self, truth: dict[tuple[str, str], Decimal]) -> Decimal:
        """Sum of |stored - expected| over (subject, meter): 0 when exact."""
        got = self.totals()
        keys = set(got) | set(truth)
        return sum(
            (abs(got.get(k, Decimal(0)) - truth.get(k, Decimal(0))) for k in keys), Decimal(0)
        )

    def close(self) -> None:
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.engine.close()


# --------------------------------------------------------------------------- senders


@dataclass
class Sent:
    events: int = 0
    retried: int = 0
    requests: dict[int, int] = field(default_factory=dict)


class SdkSender(threading.Thread):
    """Sends events through the SDK at ``rate`` events/s; events whose delivery failed
    (a broker outage past the delivery timeout) are sent again until acknowledged."""

    def __init__(self, settings: Settings, events: Sequence[UsageEvent], rate: float) -> None:
        super().__init__(name="sdk-sender", daemon=True)
        self.settings, self.events, self.rate = settings, list(events), rate
        self.sent = Sent()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the case
            self.error = exc

    def _producer(self) -> UsageProducer:
        producer: UsageProducer = wait_for(
            lambda: _try(self._connect), 300, "Kafka for the SDK", every=1.0
        )
        return producer

    def _connect(self) -> UsageProducer:
        return UsageProducer(
            self.settings.kafka_bootstrap, self.settings.events_topic, delivery_timeout_ms=20_000
        )

    def _run(self) -> None:
        pending = list(self.events)
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            producer = self._producer()
            by_key = {(e.source, e.id): e for e in pending}
            step = max(int(self.rate / 10), 1)
            for start in range(0, len(pending), step):
                tick = time.monotonic()
                producer.send_many(pending[start : start + step])
                self.sent.events += len(pending[start : start + step])
                time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
            producer.flush(120)  # every record delivered or failed by now (20 s timeout)
            failed = {(d.source, d.id) for d in producer.report.failed}
            pending = [by_key[key] for key in failed if key in by_key]
            self.sent.retried += len(pending)
        if pending:
            raise ChaosError(f"{len(pending)} events never acknowledged by Kafka")


class ApiSender(threading.Thread):
    """Posts batches to the API at about ``rate`` events/s; a batch answered 429 or 503
    (or not answered) is posted again after ``Retry-After`` until it gets 204."""

    def __init__(
        self, url: str, events: Sequence[UsageEvent], rate: float, batch: int = 50
    ) -> None:
        super().__init__(name="api-sender", daemon=True)
        self.url, self.events, self.rate, self.batch = url, list(events), rate, batch
        self.sent = Sent()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the case
            self.error = exc

    def _run(self) -> None:
        from api.server import demo_tokens

        headers = {
            "Authorization": f"Bearer {demo_tokens()['admin']}",
            "content-type": "application/cloudevents-batch+json",
        }
        with httpx.Client(timeout=30) as http:
            for start in range(0, len(self.events), self.batch):
                body = _batch_body(self.events[start : start + self.batch])
                deadline = time.monotonic() + 600
                while True:
                    try:
                        answer = http.post(
                            f"{self.url}/api/v1/events", content=body, headers=headers
                        )
                        code = answer.status_code
                        wait = float(answer.headers.get("retry-after", "1"))
                    except httpx.HTTPError:
                        code, wait = 0, 1.0
                    self.sent.requests[code] = self.sent.requests.get(code, 0) + 1
                    if code == 204:
                        break
                    if code not in (0, 429, 503) or time.monotonic() > deadline:
                        raise ChaosError(f"API answered {code} for a valid batch")
                    self.sent.retried += 1
                    time.sleep(wait)
                self.sent.events += self.batch
                time.sleep(self.batch / self.rate)


def _batch_body(events: Sequence[UsageEvent]) -> bytes:
    from schemas.wire import encode_event

    return b"[" + b",".join(encode_event(e) for e in events) + b"]"


def _try(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except Exception:  # noqa: BLE001 - the caller retries until its deadline
        return None


def merge(*parts: Telemetry) -> Telemetry:
    out = Telemetry()
    for part in parts:
        out.events += part.events
        out.unique += part.unique
        out.duplicates += part.duplicates
        for key, value in part.truth.items():
            out.truth[key] = out.truth.get(key, Decimal(0)) + value
    return out
