"""Awaitable Kafka delivery for the HTTP path: answer only after ``acks=all``.

:class:`KafkaDelivery` owns an idempotent confluent-kafka producer (``acks=all``,
``enable.idempotence``), keyed and encoded exactly like :class:`ingest.UsageProducer`.
A request's events are packed per subject into shared records (``ingest.packing.pack``).
A daemon thread serves delivery callbacks; each callback resolves an asyncio future on
the request's event loop, so a request awaits its own batch without blocking others.

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
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingest.packing import Pending, pack
from schemas.errors import DeliveryFailed, ServiceUnavailable
from schemas.events import UsageEvent
from schemas.wire import event_key, record_value

__all__ = ["Delivery", "KafkaDelivery"]

log = logging.getLogger(__name__)


class Delivery(Protocol):
    """What the ingest route needs: send a batch and wait for every acknowledgement."""

    async def deliver(self, events: Sequence[UsageEvent], timeout: float) -> None: ...

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
        record_events: int = 500,
        record_bytes: int = 256_000,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.record_events, self.record_bytes = record_events, record_bytes
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 2,
                "delivery.timeout.ms": int(delivery_timeout_s * 1000),
                "logger": log,
            }
        )
        self._probed_at = float("-inf")
        self._reachable = False
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
                self._reachable = meta is not None and meta.error is None
            except KafkaException:
                self._reachable = False
            self._probed_at = time.monotonic()
            if not self._reachable:
                raise ServiceUnavailable(
                    f"Kafka at {self.bootstrap} (topic {self.topic}) is not available"
                )

    async def deliver(self, events: Sequence[UsageEvent], timeout: float) -> None:
        """Return once Kafka acknowledged every event; raise otherwise.

        Raises :class:`ServiceUnavailable` (not reachable, nothing sent) or
        :class:`DeliveryFailed` (sent, but not every record acknowledged in time)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._check)
        futures: list[asyncio.Future[None]] = []

        def resolver(future: asyncio.Future[None]) -> Any:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                outcome = None if err is None else DeliveryFailed(err.str())
                loop.call_soon_threadsafe(_settle, future, outcome)

            return on_delivery

        for group in pack(events, self.record_events, self.record_bytes):
            future: asyncio.Future[None] = loop.create_future()
            futures.append(future)
            self._produce(group, resolver(future))
        done, pending = await asyncio.wait(futures, timeout=timeout)
        errors = [str(f.exception()) for f in done if f.exception() is not None]
        if pending or errors:
            raise DeliveryFailed(
                f"{len(pending) + len(errors)} of {len(futures)} records not acknowledged"
                + (f": {errors[0]}" if errors else f" within {timeout:.0f}s")
            )

    def _produce(self, group: list[Pending], callback: Any) -> None:
        key = event_key(group[0][0])
        value, headers = record_value([encoded for _, encoded, _ in group])
        try:
            self._producer.produce(
                self.topic, value=value, key=key, headers=headers, on_delivery=callback
            )
        except BufferError:
            # never wait on the event loop: shed the request, the client retries it
            raise DeliveryFailed("the producer's local queue is full") from None

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)
        self._producer.flush(10)


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
