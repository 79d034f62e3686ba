"""One real pipeline run shared by the API's integration tests: events posted through the
API in all three content types (real Kafka), metered by a real worker into a real
ClickHouse, then read back through the API.  The expected values are computed here,
independently, from the events as sent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from api.app import create_app
from api.server import free_port
from ingest.admin import ensure_topics, meterline_topics
from invoicing.ledger import store_issued
from invoicing.periods import month_period
from invoicing.plan import plan_subscription
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.invoices_table import InvoicesTable
from schemas.timeutil import format_ms, to_ms
from streams.progress import consumer_lag
from tests.api.doubles import ADMIN
from tests.conftest import WorkerProcess, isolated_settings, wait_until
from tests.invoicing.helpers import DEMO_CARD, METERS, UsageLog, customer

FIXED = datetime(2026, 10, 14, 9, 0, tzinfo=UTC)
"""A past hour for the exact-value checks (in October, before the current period)."""


def event(subject: str, kind: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "api-test",
        "type": kind,
        "subject": subject,
        "time": format_ms(to_ms(at)),
        "data": data,
    }


@dataclass
class Run:
    settings: Settings
    now: datetime
    posted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Content type → the events posted with it."""
    invoice_id: str = ""

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for batch in self.posted.values() for e in batch]


def raw_body(events: list[dict[str, Any]], single: bool) -> bytes:
    # Written by hand so decimals go out exactly as typed, never through a float.
    def one(e: dict[str, Any]) -> str:
        data = ",".join(
            f'"{k}":{v}' if k in ("tokens", "gb_hours") else f'"{k}":"{v}"'
            for k, v in e["data"].items()
        )
        head = orjson.dumps({k: v for k, v in e.items() if k != "data"}).decode()
        return head[:-1] + f',"data":{{{data}}}}}'

    text = one(events[0]) if single else "[" + ",".join(one(e) for e in events) + "]"
    return text.encode()


def recent_traffic(live: datetime) -> list[dict[str, Any]]:
    """initech's calls over the last hours, so the chart has a shape (not used for sums
    other tests assert on)."""
    out = []
    for hours_ago, count in ((1, 3), (2, 1), (3, 4), (4, 2), (5, 5)):
        at = live - timedelta(hours=hours_ago)
        out += [event("initech", "api.request", at, endpoint="/v1/c", region="ap")] * count
    return [{**e, "id": uuid.uuid4().hex} for e in out]


def demo_events(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per content type, events with decimals that floats would get wrong."""
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # "live" usage must fall in the current billing period, even just after midnight on the 1st
    live = max(now.replace(second=0, microsecond=0) - timedelta(minutes=2), month_start)
    return {
        "application/cloudevents+json": [
            event("acme", "llm.completion", FIXED + timedelta(minutes=5), tokens="0.1", model="m1"),
        ],
        "application/cloudevents-batch+json": [
            event("acme", "llm.completion", FIXED + timedelta(minutes=7), tokens="0.2", model="m1"),
            event(
                "globex",
                "llm.completion",
                FIXED + timedelta(minutes=9),
                tokens="123456789012345678.123456789",  # the most digits a value may have
                model="m2",
            ),
            event("acme", "api.request", live, endpoint="/v1/a", region="eu"),
            event("acme", "api.request", live, endpoint="/v1/a", region="us"),
            event("globex", "api.request", live, endpoint="/v1/b", region="eu"),
            *recent_traffic(live),
        ],
        "application/json": [
            event(
                "acme",
                "llm.completion",
                FIXED + timedelta(minutes=59),
                tokens="0.000000001",
                model="m2",
            ),
            event("umbrella-eu", "api.request", live, endpoint="/v1/a", region="eu"),
            event("acme", "llm.completion", live, tokens="1500", model="m1"),
        ],
    }


async def post_all(settings: Settings, posted: dict[str, list[dict[str, Any]]]) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        for kind, events in posted.items():
            single = kind == "application/cloudevents+json"
            bodies = [raw_body(events, single)]
            if kind == "application/json":  # one event alone, then the rest as an array
                bodies = [raw_body(events[:1], True), raw_body(events[1:], False)]
            for body in bodies:
                answer = await http.post(
                    "/api/v1/events", content=body, headers={**ADMIN, "content-type": kind}
                )
                assert answer.status_code == 204, answer.text
        # a retried batch (same ids) is acknowledged again and metered once
        again = raw_body(posted["application/cloudevents-batch+json"], False)
        answer = await http.post(
            "/api/v1/events",
            content=again,
            headers={**ADMIN, "content-type": "application/cloudevents-batch+json"},
        )
        assert answer.status_code == 204
    app.state.services.delivery.close()


def store_invoice(settings: Settings, engine: ServerEngine) -> str:
    """An issued October invoice for acme, built and stored as the billing run does it."""
    october = month_period("2026-10")
    usage = UsageLog()
    usage.add("acme", "llm_tokens", october.start_s + 60, october.start_s + 120, "0.300000001")
    invoice = plan_subscription(
        namespace=settings.namespace,
        customer=customer(id="acme", plan="starter"),
        index=0,
        periods=[october],
        history=[],
        cutoff_s=october.end_s + 3600,
        read=usage,
        card=DEMO_CARD,
        meters=METERS,
        created_ms=to_ms(datetime(2026, 11, 1, 0, 5, tzinfo=UTC)),
    ).invoices[0]
    table = InvoicesTable(settings.clickhouse_database)
    store_issued(engine, table, settings.namespace, [invoice.to_json()])
    return invoice.id


def run_pipeline(base: Settings, work: Path) -> Iterator[Run]:
    settings = isolated_settings(
        base, work, worker_batch_seconds=0.2, worker_metrics_port=free_port()
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    ensure_schema(engine, settings.clickhouse_database)
    run = Run(settings, datetime.now(UTC), demo_events(datetime.now(UTC)))
    asyncio.run(post_all(settings, run.posted))
    run.invoice_id = store_invoice(settings, engine)

    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    workers = WorkerProcess(settings, logs)
    worker = workers.start()
    expected = len(run.events)  # the retried batch is dropped as duplicates
    events_table = EventsTable(settings.clickhouse_database)

    def caught_up() -> bool:
        assert worker.poll() is None, f"worker exited:\n{workers.logs()}"
        lag = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
        if lag.produced == 0 or lag.total:
            return False
        # A record can carry several events (packed per subject): count stored events.
        stored = engine.execute(events_table.count(settings.namespace).to_sql())
        return int(stored[0][0]) == expected

    try:
        wait_until(caught_up, 120, "the worker to meter every posted event")
        yield run
    finally:
        workers.stop_all()
        engine.close()
