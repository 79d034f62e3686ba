"""The alerts evaluator as a service: ``python -m alerts run``.

* **One evaluator at a time.**  Every instance joins the consumer group
  ``meterline-alerts-<namespace>`` on the notifications topic (one partition); the one
  the group assigns partition 0 to evaluates, the others wait (:class:`Leadership`).  It
  reads no record: the partition is paused as soon as it is assigned, and the group only
  elects.  An instance that dies is out of the group after its session timeout
  (``worker_session_timeout``, 10 s), and another takes over; the new leader reads the
  ids already raised and what was left unsent (``alerts.evaluator``), so a handover
  raises nothing twice.
* **Evaluation** every ``alerts_interval_s`` (1 s) on the main thread; a failed read
  (ClickHouse away) is logged and tried again at the next tick.
* **Sending** on a thread of its own (``alerts.notifier``: the topic, then each webhook
  endpoint with its retries), so an endpoint that is down does not hold up evaluation;
  a notification Kafka did not acknowledge is tried again after a pause, with the same
  id.  Once sent, it is recorded as sent.
* ``/healthz`` (200 while the loop runs: the last tick, as leader or standby, is less
  than 30 s old) and ``/metrics`` on ``alerts_port`` when it is set.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clickhouse_driver.errors import Error as ClickHouseError
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from alerts.evaluator import Evaluator, Raised, Watch
from alerts.notifier import Notifier
from alerts.thresholds import Kind, load_thresholds
from invoicing.credit_ledger import read_book
from invoicing.credits import CreditBook, credit_held
from invoicing.customers import Customer, load_customers
from rating import load_rate_card
from schemas.errors import MeterlineError
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import require_configured
from schemas.storage.engine import Engine, ServerEngine
from schemas.storage.notifications_table import NotificationsTable

__all__ = ["Leadership", "Sender", "run"]

log = logging.getLogger(__name__)

RAISED = Counter("meterline_alerts_raised_total", "Notifications raised by thresholds crossed")
SENT = Counter("meterline_alerts_sent_total", "Notifications on the topic and delivered")
RESENDS = Counter("meterline_alerts_send_retries_total", "Sends tried again after a failure")
LEADER = Gauge("meterline_alerts_leader", "1 while this instance is the one evaluating")
TICK = Gauge("meterline_alerts_last_tick_seconds", "Unix time of the last evaluation loop pass")
HEALTHY_WITHIN_S = 30.0
RESEND_PAUSE_S = 2.0
#: What a tick or a send may meet and survive: the product's errors (a service away) and
#: the server's own (e.g. a table dropped under it); the next attempt tries again.
RETRIED = (MeterlineError, ClickHouseError)


class Leadership:
    """Whether this instance holds partition 0 of the group's one-partition topic."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.notifications_topic
        self._leader = False
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"meterline-alerts-{settings.namespace}",
                "enable.auto.commit": False,
                "session.timeout.ms": int(settings.worker_session_timeout * 1000),
                "heartbeat.interval.ms": 1000,
            }
        )
        self._consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            consumer.pause(partitions)  # the group elects; no record is read
        self._leader = any(p.partition == 0 for p in partitions)
        log.info("alerts leadership: %s", "leader" if self._leader else "standby")

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._leader = False
        log.info("alerts leadership: revoked")

    def poll(self) -> bool:
        """Serve the group's callbacks and heartbeats; ``True`` while leader."""
        message = self._consumer.poll(0)
        if message is not None and message.error() is not None:
            log.warning("alerts leadership: %s", message.error())
        LEADER.set(1 if self._leader else 0)
        return self._leader

    def close(self) -> None:
        self._consumer.close()


class Sender:
    """Sends raised notifications on a thread of its own, in the order raised."""

    def __init__(self, notify: Callable[[Raised], None]) -> None:
        self._notify = notify
        self._queue: queue.Queue[Raised | None] = queue.Queue()
        self._unsent: set[str] = set()  # queued or being sent
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="alerts-sender", daemon=True)
        self._thread.start()

    def put(self, raised: Raised) -> None:
        """Queue ``raised`` unless it is queued or being sent already (a new term of
        leadership finds this instance's own unsent notifications pending)."""
        with self._lock:
            if raised.row.id in self._unsent:
                return
            self._unsent.add(raised.row.id)
        self._queue.put(raised)

    def alive(self) -> bool:
        """Whether the sending thread still runs (an error it does not retry ends it)."""
        return self._thread.is_alive()

    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=120)

    def _run(self) -> None:
        try:
            self._send_all()
        except Exception:  # a bug, not a service away: end, logged; alive() tells the loop
            log.exception("alerts: the sender stopped")

    def _send_all(self) -> None:
        while True:
            raised = self._queue.get()
            if raised is None:
                return
            while True:
                try:
                    self._notify(raised)
                    SENT.inc()
                    log.info("alerts: sent %s", raised.row.id)
                    with self._lock:
                        self._unsent.discard(raised.row.id)
                    break
                except RETRIED as exc:  # Kafka or the log away: the same id again
                    RESENDS.inc()
                    log.warning("notification %s not sent (%s); again", raised.row.id, exc)
                    time.sleep(RESEND_PAUSE_S)


class LiveCredit:
    """Each customer's prepaid credit in its subscription's currency, from the ledger
    (``invoicing.credit_ledger``), read once per evaluation instant for every watched
    customer: ``(granted, remaining)`` of the grants in effect, or ``None`` without one."""

    def __init__(self, engine: Engine, settings: Settings, customers: Sequence[str]) -> None:
        self.engine, self.settings, self.customers = engine, settings, list(customers)
        self._at: datetime | None = None
        self._books: dict[str, CreditBook] = {}

    def __call__(self, customer: Customer, now: datetime) -> tuple[Decimal, Decimal] | None:
        if now != self._at:
            database, namespace = self.settings.clickhouse_database, self.settings.namespace
            self._books = read_book(self.engine, database, namespace, self.customers).by_customer()
            self._at = now
        book = self._books.get(customer.id)
        held = None if book is None else credit_held(book, customer.id, customer.currency, now)
        return None if held is None else (held.granted, held.remaining)


def _notify_with(settings: Settings) -> Callable[[Raised], None]:
    """Publish and deliver (``alerts.notifier``), then record as sent; the sender
    thread's own ClickHouse connection (clients are not shared across threads)."""
    engine = ServerEngine.of(settings)
    notifier = Notifier.of(settings, engine)
    table = NotificationsTable(settings.clickhouse_database)

    def notify(raised: Raised) -> None:
        report = notifier.notify(raised.notification)
        if report.failed:
            log.warning("notification %s not accepted by %s", raised.row.id, report.failed)
        engine.insert(*table.insert([raised.sent(int(time.time() * 1000))]))

    return notify


def _serve_health(port: int, last_tick: Callable[[], float]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, kind, status = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path == "/healthz":
                fresh = time.time() - last_tick() < HEALTHY_WITHIN_S
                body, kind = (b"ok\n" if fresh else b"stalled\n"), "text/plain"
                status = 200 if fresh else 503
            else:
                body, kind, status = b"not found\n", "text/plain", 404
            self.send_response(status)
            self.send_header("content-type", kind)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="alerts-health", daemon=True).start()
    return server


def run(settings: Settings, *, ticks: int | None = None) -> int:
    """Evaluate until SIGTERM/SIGINT (or ``ticks`` loop passes, for tests)."""
    meters = load_meters(settings.meters_file)
    thresholds = (
        load_thresholds(settings.thresholds_file, meters.slugs())
        if settings.thresholds_file
        else ()
    )
    customers = load_customers(settings.customers_file)
    engine = ServerEngine.of(settings)
    # the schema's version, and the window states the meters read here need
    require_configured(engine, settings, meters=meters.meters)
    credit = LiveCredit(engine, settings, sorted({c.id for c in customers}))
    watch = Watch(
        settings.namespace,
        settings.clickhouse_database,
        meters,
        customers,
        load_rate_card(settings.rate_card_file, known_meters=meters.slugs()),
        thresholds,
        credit if any(t.kind is Kind.CREDIT for t in thresholds) else None,
    )
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    last_tick = [time.time()]
    health = (
        _serve_health(settings.alerts_port, lambda: last_tick[0]) if settings.alerts_port else None
    )
    sender = Sender(_notify_with(settings))
    leadership = Leadership(settings)
    evaluator: Evaluator | None = None
    log.info("alerts: %d thresholds over %d subscriptions", len(thresholds), len(watch.customers))
    passes = 0
    try:
        while not stopping.is_set() and (ticks is None or passes < ticks):
            passes += 1
            if not sender.alive():  # what it held is recorded unsent: the next leader sends it
                log.error("alerts: the sender stopped on an error; exiting so a restart resends")
                return 1
            last_tick[0] = time.time()
            TICK.set(last_tick[0])
            leader = leadership.poll()
            if not leader or not thresholds:
                evaluator = None  # a later term starts from what is stored
                stopping.wait(settings.alerts_interval_s)
                continue
            now = datetime.now(UTC)
            try:
                if evaluator is None:
                    evaluator = Evaluator(engine, watch, sender.put)
                    evaluator.load_raised(now)
                    for left in evaluator.pending(now):
                        sender.put(left)
                for raised in evaluator.tick(now):
                    RAISED.inc()
                    log.info("alerts: raised %s (%s, %s)", raised.row.id, raised.row.threshold,
                             raised.row.customer)  # fmt: skip
            except RETRIED as exc:
                log.warning("alerts: evaluation failed (%s); again in %ss", exc,
                            settings.alerts_interval_s)  # fmt: skip
                evaluator = None
            stopping.wait(settings.alerts_interval_s)
    finally:
        leadership.close()
        sender.close()
        engine.close()
        if health is not None:
            health.shutdown()
    return 0
