"""What the end-to-end tests share: the subjects, preparing an isolated pipeline,
sending telemetry, reading the stored totals and waiting for the worker to commit."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from ingest import UsageProducer
from ingest.admin import ensure_topics, meterline_topics
from ingest.telemetry import Telemetry
from invoicing.customers import load_customers
from invoicing.document import UsageLine
from invoicing.periods import month_period
from invoicing.run import BillingRun, KafkaPublisher, RunResult, run_period
from invoicing.verify import check_line
from rating import load_rate_card
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable, LineEvents
from schemas.storage.windows_table import WindowsTable
from schemas.timeutil import format_ms
from schemas.wire import decode_event, is_batch, split_record
from streams.progress import consumer_lag
from streams.reconcile import stored_totals as totals_of
from tests.conftest import OPENED_ENGINES, ROOT, WorkerProcess, wait_until

SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)


def prepare(settings: Settings) -> ServerEngine:
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine.of(settings)
    OPENED_ENGINES.append(engine)  # closed after the test, however it ends
    ensure_schema(
        engine,
        settings.clickhouse_database,
        settings.clickhouse_window_states,
        load_meters(settings.meters_file).meters,
    )
    return engine


def send(settings: Settings, telemetry: Telemetry) -> None:
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(telemetry.events)
    assert producer.report.delivered == len(telemetry.events)
    assert not producer.report.failed


def records_of_several_subjects(settings: Settings, timeout: float = 60) -> int:
    """How many records of the events topic pack the events of more than one subject
    (read to its end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([settings.events_topic])
    mixed, deadline = 0, time.monotonic() + timeout
    ended: set[int] = set()
    while len(ended) < settings.events_partitions and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            ended.add(msg.partition())
            continue
        lines = split_record(msg.value(), is_batch(msg.headers()))
        mixed += len({decode_event(line).subject for line in lines}) > 1
    consumer.close()
    assert len(ended) == settings.events_partitions, "the events topic was not read to its end"
    return mixed


def stored_totals(engine: ServerEngine, settings: Settings) -> dict[tuple[str, str], Decimal]:
    meters = load_meters(settings.meters_file)
    return totals_of(engine, settings.clickhouse_database, settings.namespace, meters)


def wait_caught_up(settings: Settings, workers: WorkerProcess, timeout: float = 120) -> None:
    def done() -> bool:
        if any(p.poll() is not None for p in workers.procs[-1:]):
            pytest.fail(f"worker exited early:\n{workers.logs()}")
        lag = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
        return lag.produced > 0 and lag.total == 0

    wait_until(done, timeout, "the worker to commit every record")


def wait_some_stored(settings: Settings, engine: ServerEngine, timeout: float = 120) -> None:
    """Until the windows hold part of the stream (a worker has written at least once)."""
    windows = WindowsTable(settings.clickhouse_database)

    def some_stored() -> bool:
        progress = engine.execute(windows.progress(settings.namespace).to_sql())
        return sum(int(o) + 1 for _, o in progress) > 0

    wait_until(some_stored, timeout, "the worker to store part of the stream", every=0.05)


def bill_october(settings: Settings, engine: ServerEngine) -> RunResult:
    """Bill October 2026 as ``meterline bill --period 2026-10`` does, on the demo config."""
    meters = load_meters(settings.meters_file)
    return run_period(
        BillingRun(
            namespace=settings.namespace,
            database=settings.clickhouse_database,
            period=month_period("2026-10"),
            customers=load_customers(settings.customers_file),
            card=load_rate_card(settings.rate_card_file, known_meters=meters.slugs()),
            meters=meters,
        ),
        engine=engine,
        publish=KafkaPublisher(settings.kafka_bootstrap, settings.invoices_topic),
    )


def verify_every_line(settings: Settings, engine: ServerEngine, result: RunResult) -> int:
    """Recompute every metered line of the run's invoices from the raw events it bills,
    as a customer would (``invoicing.verify.check_line``), reading the events straight
    from ClickHouse; every check must hold.  Returns the number of lines checked."""
    card = load_rate_card(settings.rate_card_file)
    table = EventsTable(settings.clickhouse_database).name
    checked = 0
    for invoice in result.invoices:
        document = invoice.document()
        for line in document.lines:
            if not isinstance(line, UsageLine) or line.evidence is None:
                continue
            evidence = line.evidence
            query = LineEvents(
                settings.namespace,
                evidence.event_type,
                tuple(evidence.subjects),
                invoice.period.start_s * 1000,
                invoice.period.end_s * 1000,
                invoice.cutoff_s * 1000,
            )
            rows = engine.execute(query.page(table, None, 10**9).to_sql())
            events = [
                {"source": r[0], "id": r[1], "subject": r[2], "time": format_ms(r[3]),
                 "event": r[5], "hash": r[6]}
                for r in rows
            ]  # fmt: skip
            checks = check_line(document, line.line_no, events, card)
            assert all(check.ok for check in checks), [str(c) for c in checks]
            checked += 1
    return checked


@contextmanager
def checkout(commit: str, path: Path) -> Iterator[Path]:
    """An earlier build of this repository at ``path`` (a git worktree), removed after."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"cannot check out {commit}: {done.stderr}"
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False
        )
