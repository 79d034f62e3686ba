"""``send``: a file of events is validated whole, then delivered to the real Kafka."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer

from ingest.admin import ensure_topics, meterline_topics
from ingest.cli import main, read_events
from schemas.errors import InvalidInput
from schemas.settings import Settings
from tests.conftest import settings_env


def line(n: int, value: str = "1.10") -> bytes:
    return (
        b'{"specversion":"1.0","id":"e%d","source":"cli","type":"llm","subject":"acme",'
        b'"time":"2026-11-01T00:00:00Z","data":{"tokens":%s}}' % (n, value.encode())
    )


def test_every_line_is_checked_and_every_problem_named() -> None:
    body = b"\n".join([line(1), b"", b"not json", line(2), b'{"id": "x"}'])
    with pytest.raises(InvalidInput) as refused:
        read_events(body, "events.ndjson")
    paths = [p.path for p in refused.value.problems]
    assert paths[0] == "line 3"
    assert {"line 5: source", "line 5: type", "line 5: subject", "line 5: time"} <= set(paths)
    assert "nothing was sent" in str(refused.value)


def test_numbers_stay_exact_and_blank_lines_are_skipped() -> None:
    events = read_events(b"\n".join([line(1, "0.1000000000000000000001"), b"  ", line(2)]))
    assert [e.id for e in events] == ["e1", "e2"]
    assert events[0].data == {"tokens": Decimal("0.1000000000000000000001")}


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no events"):
        read_events(b"\n\n")


@pytest.mark.integration
def test_send_delivers_the_file(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(line(n) for n in range(25)) + b"\n")
    for name, value in settings_env(isolated).items():
        if name.startswith("METERLINE_"):
            monkeypatch.setenv(name, value)
    assert os.environ["METERLINE_EVENTS_TOPIC"] == isolated.events_topic
    assert main(["send", str(path)]) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": isolated.kafka_bootstrap,
            "group.id": "send-test",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([isolated.events_topic])
    ids: list[str] = []
    try:
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is None or message.error():
                if len(ids) >= 25:
                    break
                continue
            ids += [orjson.loads(event)["id"] for event in message.value().split(b"\n")]
    finally:
        consumer.close()
    assert sorted(ids) == sorted(f"e{n}" for n in range(25))
