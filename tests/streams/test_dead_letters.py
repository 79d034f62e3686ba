"""Reading dead letters back (``streams.dead_letters``, ``meterline dead-letters``): the
entry a message becomes (pure), ``--since``, and the read against a real Kafka topic —
every partition, from a moment on, up to the end it had when the read began; and sending
them again (``--resend``, ``--dry-run``): only what the meters now accept, exactly as it
was, to the real events topic."""

from __future__ import annotations

import base64
import socket
import subprocess

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ingest.admin import TopicSpec, ensure_topics
from schemas.errors import InvalidInput, ServiceUnavailable
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.timeutil import parse_instant
from streams.dead_letters import (
    RESENT_FROM_HEADER,
    DeadLetterEntry,
    letter,
    read_letters,
    resend,
    since_ms,
)
from streams.planner import Planner
from tests.conftest import ROOT, run_module

T0 = parse_instant("2026-12-01T12:00:00Z") or 0
HOUR = 3_600_000


def headers(reason: str, detail: str, source: str, index: int) -> list[tuple[str, bytes]]:
    """The headers the worker sends a dead letter with (``streams.app``)."""
    return [
        ("meterline.reason", reason.encode()),
        ("meterline.detail", detail.encode()),
        ("meterline.source", source.encode()),
        ("meterline.index", str(index).encode()),
    ]


def test_a_message_becomes_an_entry_with_its_event_verbatim() -> None:
    event = b'{"id":"e1","source":"s","data":{"v":"lots"}}'
    entry = letter(
        headers("value_not_numeric", "data.v: not a number", "ev/2/17", 3),
        b"acme",
        event,
        T0,
        "dl/0/5",
    )
    assert entry.as_json() == {
        "at": "2026-12-01T12:00:00.000Z",
        "reason": "value_not_numeric",
        "detail": "data.v: not a number",
        "source": "ev/2/17",
        "index": 3,
        "key": "acme",
        "dead_letter": "dl/0/5",
        "event": event.decode(),
    }


def test_bytes_that_are_not_utf8_are_given_exactly_in_base64() -> None:
    raw = b'{"id":"\xff\xfe"}'
    entry = letter(headers("schema_invalid", "not UTF-8", "ev/0/1", 0), None, raw, T0, "dl/0/0")
    shown = entry.as_json()
    assert "event" not in shown
    assert base64.b64decode(shown["event_base64"]) == raw
    assert shown["key"] is None


def test_missing_headers_read_as_empty() -> None:
    entry = letter([("meterline.reason", b"schema_invalid")], None, None, T0, "dl/1/0")
    assert (entry.reason, entry.detail, entry.source, entry.index, entry.value) == (
        "schema_invalid",
        "",
        "",
        None,
        b"",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", T0 - 90 * 60_000),
        ("24h", T0 - 24 * HOUR),
        ("7d", T0 - 7 * 24 * HOUR),
        ("2026-11-30T00:00Z", parse_instant("2026-11-30T00:00Z")),
        ("2026-12-01T13:00:00+01:00", T0),
    ],
)
def test_since_is_an_instant_or_a_span_back_from_now(text: str, expected: int) -> None:
    assert since_ms(text, T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-12-01T00:00", "5 hours", "10s"])
def test_a_since_that_is_neither_names_the_option_and_the_fix(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        since_ms(text, T0)
    message = str(caught.value)
    assert "--since" in message
    assert "90m, 24h, 7d" in message


def send_letters(settings: Settings) -> None:
    """Five dead letters over two partitions, sent 3 h, 2 h, 1 h and 0 h before T0 and one
    after it (explicit message timestamps)."""
    ensure_topics(settings.kafka_bootstrap, [TopicSpec(settings.dead_letter_topic, 2)])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    letters = [
        (0, T0 - 3 * HOUR, "schema_invalid", b"{"),
        (1, T0 - 2 * HOUR, "value_missing", b'{"id":"b"}'),
        (0, T0 - 1 * HOUR, "value_not_numeric", b'{"id":"c"}'),
        (1, T0, "value_missing", b'{"id":"d"}'),
        (0, T0 + 1 * HOUR, "schema_invalid", b"\xff"),
    ]
    for n, (partition, at, reason, value) in enumerate(letters):
        producer.produce(
            settings.dead_letter_topic,
            value=value,
            key=f"k{n}".encode(),
            partition=partition,
            timestamp=at,
            headers=headers(reason, f"detail {n}", f"{settings.events_topic}/0/{n}", n),
        )
    assert producer.flush(30) == 0


def test_the_topic_is_read_from_a_moment_on_over_every_partition(isolated: Settings) -> None:
    topic = isolated.dead_letter_topic
    assert list(read_letters(isolated.kafka_bootstrap, topic)) == []  # no topic yet
    send_letters(isolated)
    everything = list(read_letters(isolated.kafka_bootstrap, topic))
    assert sorted((e.at_ms, e.reason, e.value) for e in everything) == [
        (T0 - 3 * HOUR, "schema_invalid", b"{"),
        (T0 - 2 * HOUR, "value_missing", b'{"id":"b"}'),
        (T0 - 1 * HOUR, "value_not_numeric", b'{"id":"c"}'),
        (T0, "value_missing", b'{"id":"d"}'),
        (T0 + 1 * HOUR, "schema_invalid", b"\xff"),
    ]
    assert {e.position.rsplit("/", 2)[1] for e in everything} == {"0", "1"}
    recent = list(read_letters(isolated.kafka_bootstrap, topic, T0 - 90 * 60_000))
    assert sorted(e.key for e in recent if e.key) == [b"k2", b"k3", b"k4"]
    assert list(read_letters(isolated.kafka_bootstrap, topic, T0 + 2 * HOUR)) == []


def test_the_command_prints_json_lines_and_a_count_by_reason(isolated: Settings) -> None:
    send_letters(isolated)

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return run_module(isolated, "streams", "dead-letters", *args)

    done = command("--since", "2026-12-01T10:30Z", "--reason", "value_missing")
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(e["at"], e["event"]) for e in lines] == [
        ("2026-12-01T12:00:00.000Z", '{"id":"d"}'),
    ]
    assert (
        f"1 dead letter(s) in {isolated.dead_letter_topic} since 2026-12-01T10:30:00.000Z"
        " (value_missing: 1)" in done.stderr
    )
    everything = command()
    assert everything.returncode == 0, everything.stderr
    assert len(everything.stdout.splitlines()) == 5
    assert "(schema_invalid: 2, value_missing: 2, value_not_numeric: 1)" in everything.stderr
    wrong = command("--reason", "too_late")
    assert wrong.returncode == 2
    assert "not a dead-letter reason" in wrong.stderr
    assert "value_missing" in wrong.stderr  # the fix lists the reasons


def test_a_kafka_that_does_not_answer_is_named_not_waited_for_forever() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServiceUnavailable, match=f"127.0.0.1:{port} is unreachable"):
        list(read_letters(f"127.0.0.1:{port}", "meterline.dead-letter", timeout_s=2))


# an event the demo meters accept (llm_tokens), and two they refuse
METERED = (
    b'{"specversion":"1.0","id":"evt-7","source":"gateway","type":"llm.completion",'
    b'"subject":"customer-1","time":"2026-12-01T11:59:00.000Z",'
    b'"data":{"tokens":"120","model":"m-1"}}'
)
NOT_NUMERIC = METERED.replace(b'"120"', b'"lots"').replace(b"evt-7", b"evt-8")


def entry(value: bytes, n: int) -> DeadLetterEntry:
    return DeadLetterEntry(T0, "value_missing", "d", "t/0/0", 0, b"k", value, f"dl/0/{n}")


def demo_planner() -> Planner:
    return Planner(namespace="default", meters=load_meters(ROOT / "deploy/demo/meters.yaml"))


def test_a_resend_sends_only_what_the_meters_accept_in_order_and_in_batches() -> None:
    letters = [entry(v, n) for n, v in enumerate([METERED, b"{", METERED, NOT_NUMERIC, METERED])]
    batches: list[list[str]] = []

    def send(batch: list[DeadLetterEntry]) -> list[str]:
        batches.append([e.position for e in batch])
        return [f"events/0/{e.position.rsplit('/', 1)[1]}" for e in batch]

    done = list(resend(letters, demo_planner().refusal, send, batch=2))
    assert [d.entry.position for d in done] == [e.position for e in letters]  # in order
    assert batches == [["dl/0/0", "dl/0/2"], ["dl/0/4"]]
    assert [d.sent_to for d in done] == ["events/0/0", None, "events/0/2", None, "events/0/4"]
    refused = {d.entry.position: d.refused for d in done if d.refused is not None}
    assert refused["dl/0/1"] is not None
    assert refused["dl/0/1"][0] == "schema_invalid"
    assert refused["dl/0/3"] is not None
    assert refused["dl/0/3"][0] == "value_not_numeric"
    assert "tokens" in refused["dl/0/3"][1]  # the detail names the field
    assert done[3].as_json() == {
        "dead_letter": "dl/0/3",
        "reason": "value_missing",
        "resent": False,
        "refused_now": "value_not_numeric",
        "detail_now": refused["dl/0/3"][1],
    }
    assert done[0].as_json() == {
        "dead_letter": "dl/0/0",
        "reason": "value_missing",
        "resent": True,
        "sent_to": "events/0/0",
    }


def test_a_dry_run_judges_every_letter_and_sends_nothing() -> None:
    done = list(resend([entry(METERED, 0), entry(b"{", 1)], demo_planner().refusal, None))
    assert [(d.refused is None, d.sent_to) for d in done] == [(True, None), (False, None)]


def read_events(settings: Settings) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every message of the events topic: key, value, headers."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "t",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = (
            consumer.list_topics(settings.events_topic, timeout=30)
            .topics[settings.events_topic]
            .partitions
        )
        out = []
        for p in sorted(partitions):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.events_topic, p), timeout=30
            )
            if high <= low:
                continue
            consumer.assign([TopicPartition(settings.events_topic, p, low)])
            while low < high:
                message = consumer.poll(30)
                assert message is not None
                assert message.error() is None
                out.append((message.key(), message.value(), message.headers() or []))
                low = message.offset() + 1
        return out
    finally:
        consumer.close()


def test_the_command_resends_the_accepted_events_exactly_and_leaves_the_rest(
    isolated: Settings,
) -> None:
    ensure_topics(
        isolated.kafka_bootstrap,
        [TopicSpec(isolated.dead_letter_topic, 1), TopicSpec(isolated.events_topic, 2)],
    )
    producer = Producer({"bootstrap.servers": isolated.kafka_bootstrap})
    for n, (reason, value) in enumerate(
        [("value_missing", METERED), ("schema_invalid", b"{"), ("value_not_numeric", NOT_NUMERIC)]
    ):
        producer.produce(
            isolated.dead_letter_topic,
            value=value,
            key=b"customer-1",
            headers=headers(reason, f"detail {n}", f"{isolated.events_topic}/0/{n}", 0),
        )
    assert producer.flush(30) == 0

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return run_module(isolated, "streams", "dead-letters", *args)

    dry = command("--dry-run")
    assert dry.returncode == 1, dry.stderr  # letters stay behind: a script can tell
    assert [orjson.loads(line)["resent"] for line in dry.stdout.splitlines()] == [
        True,
        False,
        False,
    ]
    assert f"would resend 1 dead letter(s) of {isolated.dead_letter_topic}" in dry.stderr
    assert "2 still refused by these meters (schema_invalid: 1, value_not_numeric: 1)" in (
        dry.stderr
    )
    assert read_events(isolated) == []  # a dry run sends nothing

    done = command("--resend", "--reason", "value_missing")
    assert done.returncode == 0, done.stderr
    [line] = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert line["dead_letter"] == f"{isolated.dead_letter_topic}/0/0"
    assert line["sent_to"].startswith(f"{isolated.events_topic}/")
    assert (
        f"resent 1 dead letter(s) of {isolated.dead_letter_topic} to {isolated.events_topic}"
        in (done.stderr)
    )
    assert read_events(isolated) == [
        (
            b"customer-1",
            METERED,
            [(RESENT_FROM_HEADER, f"{isolated.dead_letter_topic}/0/0".encode())],
        )
    ]
    both = command("--resend", "--dry-run")
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
