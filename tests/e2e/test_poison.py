"""A record as large as the events topic accepts (10 MB here) that is not a valid event is
dead-lettered verbatim, and the worker goes on metering: it is not a poison pill that
crash-loops the worker (the Faust producer refused anything over 1 MB before)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from confluent_kafka import Consumer, Producer

from ingest.telemetry import generate
from schemas.settings import Settings
from tests.conftest import WorkerProcess, wait_until
from tests.e2e.pipeline_kit import OCTOBER, SUBJECTS, prepare, send, stored_totals, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BIG = (
    b'{"specversion":"1.0","id":"big","source":"t","type":"api.request","subject":"'
    + b"x" * (10 * 1024 * 1024)
    + b'","time":"2026-10-30T00:00:00Z","data":{}}'
)


def test_a_10_mb_invalid_record_is_dead_lettered_and_metering_goes_on(
    isolated: Settings, workers: WorkerProcess
) -> None:
    engine = prepare(isolated)
    before = generate(SUBJECTS, OCTOBER, timedelta(days=31), 100, seed=31)
    after = generate(SUBJECTS, OCTOBER, timedelta(days=31), 100, seed=32, id_prefix="after-")
    send(isolated, before)
    raw = Producer({"bootstrap.servers": isolated.kafka_bootstrap, "message.max.bytes": 20_000_000})
    raw.produce(isolated.events_topic, key=b"acme", value=BIG)
    assert raw.flush(60) == 0
    send(isolated, after)
    workers.start()
    wait_caught_up(isolated, workers, timeout=180)

    truth = dict(before.truth)
    for key, value in after.truth.items():
        truth[key] = truth.get(key, 0) + value
    assert stored_totals(engine, isolated) == truth

    consumer = Consumer(
        {
            "bootstrap.servers": isolated.kafka_bootstrap,
            "group.id": f"{isolated.worker_app_id}-dlq-check",
            "auto.offset.reset": "earliest",
            "fetch.message.max.bytes": 20_000_000,
        }
    )
    consumer.subscribe([isolated.dead_letter_topic])
    try:
        letter = wait_until(
            lambda: (m := consumer.poll(1.0)) is not None and not m.error() and m,
            60,
            "the dead letter",
        )
    finally:
        consumer.close()
    assert letter.value() == BIG  # verbatim
    assert dict(letter.headers())["meterline.reason"] == b"schema_invalid"
    assert "worker exited" not in workers.logs()
    assert "restarting in" not in workers.logs()
    engine.close()
