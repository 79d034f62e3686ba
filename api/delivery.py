"""Awaitable Kafka delivery for the HTTP path: answer only after ``acks=all``.

:class:`KafkaDelivery` owns an idempotent confluent-kafka producer (``acks=all``,
``enable.idempotence``).  A request's events arrive already encoded
(:data:`api.fastingest.EncodedEvent`: the subject and the bytes ``encode_event`` writes)
and are packed into shared records by :func:`records`, the events of every subject of one
partition together, in the wire format of ``schemas.wire`` — the same records
:class:`ingest.UsageProducer` writes: each on its subjects' partition (CRC-32 of the
subject, where a record keyed by it goes), keyed by the subject when it holds one, so
every copy of an event (a retried batch included) lands on one partition, where the
worker's dedupe finds it.  A daemon thread serves delivery callbacks; one countdown per
request resolves an asyncio future on the request's event loop when the last of its
records is acknowledged, so a request awaits its own batch without blocking others and
without a thread hop per record.

What a failure costs:

* Kafka unreachable (the last metadata probe failed) — nothing is sent; 503.
* The producer's local queue is full (Kafka slower than the offered load) — the records
  not yet queued are not sent; 503, and the client retries the whole batch.
* Some records of a batch not acknowledged within ``timeout`` — the request answers 503
  and the client retries the whole batch.  Records that did land are metered once: the
  worker drops the retried copies by ``(source, id)``.  Nothing answered 2xx is ever
  only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from api.fastingest import EncodedEvent
from ingest.config import events_producer_config
from ingest.packing import Packer
from schemas.errors import DeliveryFailed, ServiceUnavailable
from schemas.wire import DEFAULT_COMPRESSION, Compression, record_value, subject_partition

__all__ = ["Delivery", "KafkaDelivery", "records"]

log = logging.getLogger(__name__)

Record = tuple[str | None, int | None, list[bytes]]
"""``(key, partition, the encoded events of one record)``: the key is the subject when the
record holds one subject's events, ``None`` when it holds several; the partition is
``None`` when the record is placed by its key (the client's partitioner)."""


def records(
    events: Sequence[EncodedEvent], max_events: int, max_bytes: int, partitions: int = 0
) -> list[Record]:
    """Group encoded events into records of at most ``max_events`` events and about
    ``max_bytes`` bytes (a single larger event gets a record of its own), by the SDK's
    rule (:class:`ingest.packing.Packer`): with ``partitions``, the events of every
    subject of one partition (:func:`~schemas.wire.subject_partition`) share records,
    placed on that partition; without, each subject's events get records of their own,
    placed by key.  A subject's events keep their order across its records; subjects need
    not be consecutive in the body."""
    packer: Packer[EncodedEvent] = Packer(0.0, max_events, max_bytes)  # no window: never due
    placed: dict[str, int] = {}  # subject -> its partition, worked out once per request
    groups: list[list[EncodedEvent]] = []
    for event in events:
        subject = event[0]
        if not partitions:
            groups += packer.put(subject, event, len(event[1]), 0.0)
            continue
        partition = placed.get(subject)
        if partition is None:
            partition = placed[subject] = subject_partition(subject, partitions)
        groups += packer.put(partition, event, len(event[1]), 0.0)
    groups += packer.drain()
    return [_record(group, placed.get(group[0][0])) for group in groups]


def _record(group: list[EncodedEvent], partition: int | None) -> Record:
    """One group as a record: keyed by its subject when it holds one subject's events."""
    first = group[0][0]
    key = first if all(subject == first for subject, _ in group) else None
    return key, partition, [value for _, value in group]


class Delivery(Protocol):
    """What the ingest route needs: send a batch and wait for every acknowledgement."""

    async def deliver(self, events: Sequence[EncodedEvent], timeout: float) -> None: ...

    def close(self) -> None: ...


class KafkaDelivery:
    """Send batches to the events topic and await their acknowledgements."""

    PROBE_EVERY_S = 5.0

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        delivery_timeout_s: float = 10.0,
        linger_ms: float = 2.0,
        record_events: int = 500,
        record_bytes: int = 256_000,
        compression: Compression = DEFAULT_COMPRESSION,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.record_events, self.record_bytes = record_events, record_bytes
        self._producer = Producer(
            events_producer_config(
                bootstrap, linger_ms, int(delivery_timeout_s * 1000), log, compression
            )
        )
        self._probed_at = float("-inf")
        self._reachable = False
        self._partitions = 0
        """The topic's partition count at the last probe (every ``PROBE_EVERY_S``): a
        request's records pack the subjects of one partition."""
        self._probe_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _check(self) -> None:
        """Fail fast with :class:`ServiceUnavailable` when Kafka or the topic is missing.

        The answer is cached for a few seconds so a busy service probes rarely."""
        with self._probe_lock:
            if time.monotonic() - self._probed_at < self.PROBE_EVERY_S and self._reachable:
                return
            try:
                topics = self._producer.list_topics(self.topic, timeout=2.0).topics
                meta = topics.get(self.topic)
                self._reachable = meta is not None and meta.error is None and bool(meta.partitions)
                if self._reachable:
                    self._partitions = len(meta.partitions)
            except KafkaException:
                self._reachable = False
            self._probed_at = time.monotonic()
            if not self._reachable:
                raise ServiceUnavailable(
                    f"Kafka at {self.bootstrap} (topic {self.topic}) is not available"
                )

    async def deliver(self, events: Sequence[EncodedEvent], timeout: float) -> None:
        """Return once Kafka acknowledged every event; raise otherwise.

        Raises :class:`ServiceUnavailable` (not reachable, nothing sent) or
        :class:`DeliveryFailed` (sent, but not every record acknowledged in time)."""
        loop = asyncio.get_running_loop()
        if not (self._reachable and time.monotonic() - self._probed_at < self.PROBE_EVERY_S):
            await loop.run_in_executor(None, self._check)
        grouped = records(events, self.record_events, self.record_bytes, self._partitions)
        if not grouped:
            return
        countdown = _Countdown(loop, len(grouped))
        produce, topic = self._producer.produce, self.topic
        try:
            for subject, partition, lines in grouped:
                value, headers = record_value(lines)
                key = None if subject is None else subject.encode("utf-8")
                if partition is None:
                    produce(topic, value=value, key=key, headers=headers, on_delivery=countdown)
                else:
                    produce(
                        topic,
                        value=value,
                        key=key,
                        headers=headers,
                        partition=partition,
                        on_delivery=countdown,
                    )
        except (BufferError, KafkaException) as exc:
            # never wait on the event loop: shed the request, the client retries it.  The
            # records already queued may still land (the retry's copies are deduplicated);
            # nobody awaits their outcome any more.  A record the client refuses outright
            # (over its message.max.bytes) is kept from here by the ingest route's check
            # of each event's size; this names any other refusal instead of a 500.
            countdown.future.cancel()
            if isinstance(exc, BufferError):
                raise DeliveryFailed("the producer's local queue is full") from None
            raise DeliveryFailed(f"the Kafka client refused a record: {exc}") from None
        try:
            await asyncio.wait_for(countdown.future, timeout)
        except TimeoutError:
            raise DeliveryFailed(
                f"{countdown.left} of {len(grouped)} records not acknowledged within {timeout:.0f}s"
            ) from None

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)
        self._producer.flush(10)


class _Countdown:
    """The delivery callback of one request's records: counts acknowledgements on the
    thread that serves callbacks and settles ``future`` on the request's loop once, at
    the last one (with the first error, if any record failed)."""

    __slots__ = ("error", "future", "left", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, records: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.left = records
        self.error: str | None = None

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            if self.error is None:
                self.error = err.str()
            self.left -= 1
            self._settle(DeliveryFailed(f"a record was not acknowledged: {self.error}"))
            return
        self.left -= 1
        if self.left == 0:
            self._settle(None)

    def _settle(self, error: Exception | None) -> None:
        # RuntimeError: the loop is closed (the service stopped), nobody awaits the request
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, error)


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
