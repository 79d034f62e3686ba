"""What the end-to-end tests share: the subjects, preparing an isolated pipeline,
sending telemetry, reading the stored totals and waiting for the worker to commit."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ingest import UsageProducer
from ingest.admin import ensure_topics, meterline_topics
from ingest.telemetry import Telemetry
from invoicing.customers import load_customers
from invoicing.periods import month_period
from invoicing.run import BillingRun, KafkaPublisher, RunResult, run_period
from rating import load_rate_card
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from streams.progress import consumer_lag
from streams.reconcile import stored_totals as totals_of
from tests.conftest import WorkerProcess, wait_until

SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)


def prepare(settings: Settings) -> ServerEngine:
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    ensure_schema(engine, settings.clickhouse_database)
    return engine


def send(settings: Settings, telemetry: Telemetry) -> None:
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(telemetry.events)
    assert producer.report.delivered == len(telemetry.events)
    assert not producer.report.failed


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
