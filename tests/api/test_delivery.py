"""KafkaDelivery's failure path with a real client and no broker: nothing is sent, and
the API answers 503 with Retry-After (no test double for Kafka here)."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from api.app import create_app
from api.delivery import KafkaDelivery
from api.server import free_port
from api.settings import ApiSettings
from schemas.errors import ServiceUnavailable
from schemas.events import UsageEvent
from tests.api.doubles import ADMIN, FakeEngine, SyncClient, demo_settings

EVENT = UsageEvent.create(type="api.request", subject="acme")


def test_unreachable_kafka_fails_fast_with_service_unavailable() -> None:
    delivery = KafkaDelivery(f"127.0.0.1:{free_port()}", "nowhere", delivery_timeout_s=2)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailable):
            asyncio.run(delivery.deliver([EVENT], timeout=2))
    finally:
        delivery.close()
    assert time.monotonic() - started < 10


def test_api_answers_503_with_retry_after_when_kafka_is_down() -> None:
    settings = demo_settings(kafka_port=free_port())
    engine = FakeEngine()
    app = create_app(
        settings, ApiSettings(retry_after_s=3), engine_factory=lambda: engine, lag=lambda: {}
    )
    answer = SyncClient(app).post(
        "/api/v1/events",
        content=orjson.dumps(EVENT.to_wire()),
        headers={**ADMIN, "content-type": "application/cloudevents+json"},
    )
    app.state.services.delivery.close()
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "3"
    assert answer.json()["title"] == "Kafka unavailable"
