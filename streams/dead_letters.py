"""Reading the dead-letter topic back, and sending its events again
(``meterline dead-letters [--resend]``).

The worker sends an event it cannot meter to the dead-letter topic
(``settings.dead_letter_topic``) with its original bytes, its key and headers naming the
reason, the validation message and where it was read (``streams.app``,
``docs/metering.md`` *Dead letters*).  :func:`letter` turns one such message into a
JSON-ready entry (pure); :func:`read_letters` reads the topic from a moment on up to its
end as it stood when the read began, without a consumer group's commits, so reading
changes nothing for anyone else.

A resend (:func:`resend`) judges each letter's event by the meters it is given first
(:meth:`streams.planner.Planner.refusal`): one they still refuse stays where it is, with
the reason it would get now, so a resend never feeds the topic its own letters again.  One
they meter goes back to the events topic with its exact bytes and key
(:class:`LetterSender`); its id was never recorded, so the worker meters it once, and a
letter resent twice is a duplicate the worker drops (within the dedupe horizon).
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from schemas.errors import InvalidInput, ServiceUnavailable
from schemas.timeutil import format_ms, parse_instant
from schemas.wire import DEFAULT_COMPRESSION, Compression

__all__ = [
    "RESENT_FROM_HEADER",
    "DeadLetterEntry",
    "LetterSender",
    "Resent",
    "letter",
    "read_letters",
    "resend",
    "since_ms",
]

RESENT_FROM_HEADER = "meterline.resent-from"
"""On a resent event: the dead letter it came from (``topic/partition/offset``)."""

POLL_S = 1.0
"""How long one poll waits; the read ends once every partition reached its end."""


_AGO = re.compile(r"(\d+)([mhd])")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}


def since_ms(text: str, now_ms: int) -> int:
    """``--since``: an instant with a UTC offset (``2026-12-01T00:00Z``) or a span back
    from ``now_ms`` (``90m``, ``24h``, ``7d``), as epoch milliseconds."""
    ago = _AGO.fullmatch(text.strip())
    if ago is not None:
        return now_ms - int(ago.group(1)) * _UNIT_MS[ago.group(2)]
    ms = parse_instant(text)
    if ms is None:
        raise InvalidInput.single(
            "--since",
            text,
            "neither a time with a UTC offset nor a span back from now",
            "use ISO 8601 with an offset (2026-12-01T00:00Z) or a span: 90m, 24h, 7d",
        )
    return ms


@dataclass(frozen=True)
class DeadLetterEntry:
    """One dead letter: when it was sent, why, where its event was read, and the event."""

    at_ms: int
    reason: str
    detail: str
    source: str
    index: int | None
    key: bytes | None
    value: bytes
    position: str
    """``topic/partition/offset`` of the dead letter itself."""

    def as_json(self) -> dict[str, Any]:
        """The entry as printed: the event as text when it is UTF-8 (what a producer sent
        is JSON), else as base64 — its exact bytes either way, to fix and send again."""
        out: dict[str, Any] = {
            "at": format_ms(self.at_ms),
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "index": self.index,
            "key": None if self.key is None else self.key.decode("utf-8", "replace"),
            "dead_letter": self.position,
        }
        try:
            out["event"] = self.value.decode()
        except UnicodeDecodeError:
            out["event_base64"] = base64.b64encode(self.value).decode()
        return out


def letter(
    headers: Sequence[tuple[str, bytes | None]] | None,
    key: bytes | None,
    value: bytes | None,
    at_ms: int,
    position: str,
) -> DeadLetterEntry:
    """A dead-letter message as an entry; headers it lacks read as empty (an older worker
    sent no ``meterline.index``)."""
    found = {name: (raw or b"").decode("utf-8", "replace") for name, raw in headers or ()}
    index = found.get("meterline.index", "")
    return DeadLetterEntry(
        at_ms=at_ms,
        reason=found.get("meterline.reason", ""),
        detail=found.get("meterline.detail", ""),
        source=found.get("meterline.source", ""),
        index=int(index) if index.isdigit() else None,
        key=key,
        value=value or b"",
        position=position,
    )


def read_letters(
    bootstrap: str, topic: str, since_ms: int | None = None, timeout_s: float = 30.0
) -> Iterator[DeadLetterEntry]:
    """The topic's dead letters sent at or after ``since_ms`` (all when ``None``), each
    partition in offset order, up to the end it had when the read began.  Raises
    :class:`ServiceUnavailable` when Kafka cannot be reached within ``timeout_s``, or
    sends nothing for that long before the end."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"meterline-dead-letters-{uuid.uuid4().hex}",  # never committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.message.max.bytes": 20_000_000,
        }
    )
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=timeout_s)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                return  # no worker has dead-lettered anything yet: nothing to read
            bounds = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout_s)
                for p in sorted(found.partitions)
            }
            starts = {p: low for p, (low, _) in bounds.items()}
            if since_ms is not None:  # the first offset sent at or after it; -1: none
                asked = [TopicPartition(topic, p, since_ms) for p in bounds]
                for tp in consumer.offsets_for_times(asked, timeout_s):
                    starts[tp.partition] = tp.offset if tp.offset >= 0 else bounds[tp.partition][1]
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka at {bootstrap} is unreachable ({exc})") from exc
        ends = {p: high for p, (_, high) in bounds.items()}
        pending = {p for p in bounds if starts[p] < ends[p]}
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in sorted(pending)])
        heard = time.monotonic()
        while pending:
            message = consumer.poll(POLL_S)
            if message is None:
                if time.monotonic() - heard > timeout_s:
                    raise ServiceUnavailable(
                        f"reading {topic} from Kafka at {bootstrap}: nothing for {timeout_s:.0f}s"
                        f" with partitions {sorted(pending)} not read to their end"
                    )
                continue
            heard = time.monotonic()
            partition, error = message.partition(), message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(partition)  # its end (a transaction marker may be last)
                    continue
                raise ServiceUnavailable(f"reading {topic}: {error}")
            offset = message.offset()
            if partition not in pending or offset >= ends[partition]:
                pending.discard(partition)  # sent after the read began
                continue
            yield letter(
                message.headers(),
                message.key(),
                message.value(),
                message.timestamp()[1],
                f"{topic}/{partition}/{offset}",
            )
            if offset + 1 >= ends[partition]:
                pending.discard(partition)
    finally:
        consumer.close()


@dataclass(frozen=True)
class Resent:
    """What a resend did with one dead letter: sent to ``sent_to`` (``topic/partition/
    offset``; ``None`` on a dry run), or kept because the meters still refuse its event
    (``refused``: the reason and detail it would get now)."""

    entry: DeadLetterEntry
    refused: tuple[str, str] | None = None
    sent_to: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dead_letter": self.entry.position,
            "reason": self.entry.reason,
            "resent": self.refused is None,
        }
        if self.refused is not None:
            out["refused_now"], out["detail_now"] = self.refused
        elif self.sent_to is not None:
            out["sent_to"] = self.sent_to
        return out


def resend(
    entries: Iterable[DeadLetterEntry],
    refusal: Callable[[bytes], tuple[str, str] | None],
    send: Callable[[list[DeadLetterEntry]], list[str]] | None,
    batch: int = 1_000,
) -> Iterator[Resent]:
    """Each dead letter, in order, judged by ``refusal`` (the current meters' verdict on
    its event: ``(reason, detail)``, or ``None`` when they meter it); the ones they meter
    are passed to ``send`` up to ``batch`` at a time, which returns where each went
    (``send`` ``None``: a dry run, nothing is sent)."""
    held: list[Resent] = []
    sending: list[DeadLetterEntry] = []

    def release() -> Iterator[Resent]:
        sent = iter(send(sending) if send is not None and sending else [])
        for done in held:
            yield (
                done
                if done.refused is not None or send is None
                else replace(done, sent_to=next(sent))
            )
        held.clear()
        sending.clear()

    for entry in entries:
        refused = refusal(entry.value)
        if refused is not None:
            held.append(Resent(entry, refused=(str(refused[0]), refused[1])))
            continue
        held.append(Resent(entry))
        sending.append(entry)
        if len(sending) >= batch:
            yield from release()
    yield from release()


class LetterSender:
    """Sends dead letters' events back to the events topic the way producers send events
    (idempotent, ``acks=all``: ``ingest.config.events_producer_config``): one event per
    record, its exact bytes, its original key, and the header :data:`RESENT_FROM_HEADER`.
    A call returns once Kafka acknowledged every event it was given, with where each is."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        timeout_s: float = 30.0,
        compression: Compression = DEFAULT_COMPRESSION,
    ) -> None:
        from confluent_kafka import Producer

        from ingest.config import events_producer_config

        self.topic, self.timeout_s = topic, timeout_s
        self._producer = Producer(
            events_producer_config(bootstrap, 5, int(timeout_s * 1000), compression=compression)
        )

    def __call__(self, entries: list[DeadLetterEntry]) -> list[str]:
        delivered: dict[int, tuple[Any, Any]] = {}
        for n, entry in enumerate(entries):
            self._producer.produce(
                self.topic,
                value=entry.value,
                key=entry.key,
                headers=[(RESENT_FROM_HEADER, entry.position.encode())],
                on_delivery=lambda err, msg, n=n: delivered.__setitem__(n, (err, msg)),
            )
            self._producer.poll(0)
        self._producer.flush(self.timeout_s)
        out = []
        for n, entry in enumerate(entries):
            err, msg = delivered.get(n, ("no acknowledgement in time", None))
            if err is not None:
                raise ServiceUnavailable(
                    f"resending {entry.position} to {self.topic}: {err}; others of its batch may"
                    " be sent: run the resend again (an event sent twice is a duplicate the"
                    " worker drops)"
                )
            out.append(f"{msg.topic()}/{msg.partition()}/{msg.offset()}")
        return out
