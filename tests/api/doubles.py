"""Test doubles for the HTTP-only tests: Kafka delivery and ClickHouse replaced.

Used only where a test is about HTTP behaviour (status codes, problem bodies, auth,
negotiation); every data path is also tested against the real services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from api.app import create_app
from api.fastingest import EncodedEvent
from api.server import demo_tokens
from schemas.events import UsageEvent
from schemas.settings import Settings
from schemas.wire import decode_event
from tests.conftest import ROOT

TOKENS = demo_tokens()
ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
ACME = {"Authorization": f"Bearer {TOKENS['acme']}"}


class FakeDelivery:
    """Records what would reach Kafka: each event decoded back from the bytes it was
    given (the worker's reference decode), so tests see what the worker would see."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[UsageEvent] = []
        self.keys: list[str] = []
        self.error = error

    async def deliver(self, events: Sequence[EncodedEvent], timeout: float) -> None:
        if self.error is not None:
            raise self.error
        for subject, value in events:
            self.keys.append(subject)
            self.sent.append(decode_event(value))

    def close(self) -> None:
        pass


class FakeEngine:
    """Answers every query with the rows ``answer(sql)`` gives; records the SQL."""

    name = "fake"
    cluster: str | None = None

    def __init__(self, answer: Callable[[str], list[tuple[Any, ...]]] | None = None) -> None:
        self.answer = answer or (lambda sql: [])
        self.seen: list[str] = []

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        self.seen.append(sql)
        return self.answer(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        raise AssertionError("the API never writes to ClickHouse")

    def close(self) -> None:
        pass


def demo_settings(**update: Any) -> Settings:
    files = {
        "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
        "rate_card_file": str(ROOT / "deploy/demo/rate-card.yaml"),
        "customers_file": str(ROOT / "deploy/demo/customers.yaml"),
        "features_file": str(ROOT / "deploy/demo/features.yaml"),
    }
    return Settings(**{**files, **update})


def fake_app(
    delivery: FakeDelivery | None = None, engine: FakeEngine | None = None, **api: Any
) -> Any:
    engine = engine or FakeEngine()
    return create_app(
        demo_settings(**{f"api_{name}": value for name, value in api.items()}),
        delivery=delivery or FakeDelivery(),
        engine_factory=lambda: engine,
        lag=lambda: {0: 0, 1: 2},
    )


@contextmanager
def served(
    stack: Settings, prefix: str, **update: Any
) -> Iterator[tuple[SyncClient, Any, Settings]]:
    """The app on a fresh database of the real ClickHouse server (every table created),
    Kafka delivery faked: ``(client, engine, settings)``; the database dropped after."""
    from schemas.storage.bootstrap import ensure_schema
    from schemas.storage.engine import ServerEngine
    from schemas.storage.migrations import drop_database

    settings = demo_settings(clickhouse_database=prefix + uuid.uuid4().hex[:10], **update)
    engine = ServerEngine.of(stack)
    ensure_schema(engine, settings.clickhouse_database)
    app = create_app(
        settings,
        delivery=FakeDelivery(),
        engine_factory=lambda: ServerEngine.of(stack),
        lag=lambda: {},
    )
    try:
        yield SyncClient(app), engine, settings
    finally:
        app.state.services.reader.close()
        engine.execute(drop_database(settings.clickhouse_database).to_sql())
        engine.close()


class SyncClient:
    """A synchronous face on ``httpx.AsyncClient`` over the ASGI app, in-process.

    (Starlette's TestClient trips an anyio deprecation warning, an error under
    ``filterwarnings = error``.)"""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)
