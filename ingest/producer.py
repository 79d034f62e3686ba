"""The producer SDK: send usage events to the events topic, exactly as accepted.

``UsageProducer`` wraps an idempotent confluent-kafka producer (``acks=all``,
``enable.idempotence``): a retried send inside the client cannot duplicate a record, and a
record the broker acknowledged is on every in-sync replica.  Records go to their
subjects' partition (``ingest.partitions``: where a record keyed by the subject goes), so
one customer's events stay in order on one partition; the client batches them
(``linger.ms``) and compresses each batch (``compression``, ``zstd`` by default:
``schemas.wire``).

The events of the subjects of one partition share records (``pack_subjects=False``: of
one subject, keyed by it) of up to ``record_events`` events / ``record_bytes`` bytes
(``schemas.wire``: one compact JSON per line, header ``content-type:
application/x-ndjson``).  The worker's cost is mostly per record, so packing is what lets
one worker meter tens of thousands of events per second; each event still gets its own
:class:`Delivery`, with its index in the record.  By default (``pack_ms``,
:data:`DEFAULT_PACK_MS`) events wait up to 50 ms for company, across calls, before a
background thread produces their record: a service that calls :meth:`send` once per
event gets packed records too, even for subjects that each send rarely.  ``pack_ms=0``
turns the window off: :meth:`send` then puts each event in a record of its own, and
:meth:`send_many` packs only the events of one call.  :meth:`flush` and :meth:`close`
produce whatever is waiting.
Delivery callbacks run on whichever thread serves the client's reports: the caller's
(in :meth:`send`, :meth:`send_many`, :meth:`flush`) or, with the window on, the packing
thread's, which serves them every quarter window, so a callback arrives soon after the
broker's acknowledgement even when the caller sends nothing more.  A callback may send
(its events are waited for by :meth:`flush`); it may not flush or close, which would wait
for the callbacks being served (a ``RuntimeError`` says so).  A producer its owner never
closes is flushed anyway, with a warning, when it is garbage-collected or at interpreter
exit (``ingest.lifecycle``: the packing thread holds it weakly), so the events it held are
not lost with it.

Delivery is asynchronous (the outcomes themselves: ``ingest.outcomes``).  Each outcome
reaches the caller three ways: an optional
per-event callback (one that raises is logged, and changes nothing else), the running
:class:`DeliveryReport`, and :meth:`flush` / :meth:`close`, which wait for every pending
record.  An event is accepted only once its
delivery succeeded; :meth:`send_and_wait` does both and raises
:class:`~schemas.errors.DeliveryFailed` naming each event that was not accepted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from ingest import lifecycle
from ingest.config import events_producer_config
from ingest.outcomes import Callback, Delivery, DeliveryReport, report_record
from ingest.packing import Lane, Packer, Pending, by_subject, pack
from ingest.partitions import Partitions
from schemas.errors import DeliveryFailed, ServiceUnavailable
from schemas.events import UsageEvent
from schemas.wire import DEFAULT_COMPRESSION, Compression, encode_event, event_key, record_value

__all__ = ["DEFAULT_PACK_MS", "UsageProducer"]

log = logging.getLogger(__name__)

DEFAULT_PACK_MS = 50
"""How long a subject's events wait for company before their record is produced, by
default: at most this much latency added to an event (the pipeline's own is ~0.5 s at
p50), for records the worker meters several times faster than one event per record
(``docs/benchmarks.md``, *The SDK's packing window by default*)."""


class UsageProducer:
    _closed = True  # until ``__init__`` completes: a producer that failed to start holds nothing

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        linger_ms: int = 5,
        record_events: int = 500,
        record_bytes: int = 256_000,
        pack_ms: int = DEFAULT_PACK_MS,
        delivery_timeout_ms: int = 30_000,
        connect_timeout: float = 10.0,
        compression: Compression = DEFAULT_COMPRESSION,
        pack_subjects: bool = True,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        if pack_ms < 0 or record_events < 1 or record_bytes < 1:
            raise ValueError(
                f"pack_ms={pack_ms}, record_events={record_events}, record_bytes={record_bytes}:"
                " pack_ms is a window in milliseconds (0 turns packing across calls off), "
                "record_events and record_bytes are at least 1"
            )
        self.bootstrap = bootstrap
        self.topic = topic
        self.report = DeliveryReport()
        self.record_events = record_events
        self.record_bytes = record_bytes
        self.pack_ms = pack_ms
        self.pack_subjects = pack_subjects
        self._lock = threading.RLock()
        """Held while the packer hands groups to the client, so each subject's records
        stay in order.  Re-entrant: a delivery callback served there may send."""
        self._serving = threading.local()
        """``active`` while this thread serves the client's reports (callbacks run then):
        the client must not be polled again from inside a callback."""
        self._stop = threading.Event()
        self._packing: threading.Thread | None = None
        config = events_producer_config(bootstrap, linger_ms, delivery_timeout_ms, log, compression)
        config.update({"batch.size": 1_000_000, "queue.buffering.max.messages": 500_000})
        self._producer = Producer({**config, **(extra_config or {})})
        self._partitions = Partitions(
            self._producer, topic, self._check_reachable(connect_timeout), time.monotonic()
        )
        lane: Lane = self._partitions.of if pack_subjects else by_subject
        self._packer: Packer[Pending] = Packer(pack_ms / 1000, record_events, record_bytes, lane)
        self._closing_timeout = delivery_timeout_ms / 1000 + 5.0
        if pack_ms > 0:  # the thread holds the producer weakly: dropping it ends the thread
            self._packing = lifecycle.start_packing(
                self, self._stop, max(pack_ms / 4000, 0.001), f"meterline-pack-{topic}"
            )
        self._closed = False
        lifecycle.register(self)

    def _check_reachable(self, timeout: float) -> int:
        """The topic's partition count, or :class:`ServiceUnavailable` naming the fix."""
        try:
            metadata = self._producer.list_topics(self.topic, timeout=timeout)
        except KafkaException as exc:
            raise ServiceUnavailable(
                f"Kafka at {self.bootstrap} is unreachable (no answer within {timeout:.0f}s: "
                f"{exc}); start it with `make up` or check METERLINE_KAFKA_PORT"
            ) from None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise ServiceUnavailable(
                f"topic {self.topic!r} does not exist on {self.bootstrap}; "
                "create it with `python -m streams init`"
            )
        return len(topic.partitions)

    def send(self, event: UsageEvent, on_delivery: Callback | None = None) -> None:
        """Queue one event; its :class:`Delivery` arrives via callback, report and flush.

        It waits (at most ``pack_ms``) to share a record with the next events of its
        partition's subjects (``pack_subjects=False``: of its own subject); with
        ``pack_ms=0`` it is a record of its own."""
        if self._packing is not None:
            self._add([event], on_delivery)
            return
        self._keep_partitions_fresh()
        with self._lock:
            self._produce_held([(event, encode_event(event), on_delivery)], held=False)

    def send_many(self, events: Iterable[UsageEvent], on_delivery: Callback | None = None) -> int:
        """Queue events, packing the events of the subjects of one partition into shared
        records (``pack_subjects=False``: the events of one subject).

        Order is kept per subject (one subject's records go to one partition, in order).
        Partly filled records wait up to ``pack_ms`` for more events; with ``pack_ms=0``
        every record is produced before this returns.  Returns the number of events queued.
        """
        if self._packing is not None:
            return self._add(events, on_delivery)
        self._keep_partitions_fresh()
        count = 0
        with self._lock:  # the partition count does not change between packing and producing
            for group in pack(
                events, self.record_events, self.record_bytes, on_delivery, self._packer.lane
            ):
                self._produce_held(group, held=False)
                count += len(group)
        return count

    @property
    def waiting(self) -> int:
        """Events held for packing (``pack_ms``), not yet handed to the Kafka client."""
        with self._lock:
            return len(self._packer)

    def _add(self, events: Iterable[UsageEvent], on_delivery: Callback | None) -> int:
        count = 0
        with self._lock:  # held while producing, so each subject's records stay in order
            for event in events:
                for group in self._packer.add(
                    (event, encode_event(event), on_delivery), time.monotonic()
                ):
                    self._produce_held(group)
                count += 1
        return count

    def _keep_partitions_fresh(self) -> None:
        """Re-read the topic's partition count when due; if it changed, what was packed for
        the old count is produced first (each subject's events stay in order)."""
        count = self._partitions.reread(time.monotonic()) if self.pack_subjects else None
        if count is None or count == self._partitions.count:
            return
        log.info(
            "topic %r has %d partitions now (was %d)", self.topic, count, self._partitions.count
        )
        with self._lock:
            for group in self._packer.drain():
                self._produce_held(group)
            self._partitions.count = count

    def _pack_tick(self) -> None:
        """Produce the groups whose window closed (a turn of the packing thread)."""
        self._keep_partitions_fresh()
        with self._lock:
            for group in self._packer.due(time.monotonic()):
                self._produce_held(group)
        self._serve(0)  # the acknowledged records' callbacks, without a send

    def _produce_held(self, group: list[Pending], *, held: bool = True) -> None:
        """Produce a group; if the client refuses it (a record over ``message.max.bytes``;
        for a group the packer ``held``, also a full local queue while a delivery callback
        sends, which ``pack_ms=0`` raises instead), each of its events is reported failed
        with the client's reason — to its callback, the report, and so to :meth:`flush` /
        :meth:`close` — and the groups after it still go out."""
        try:
            self._produce(group)
        except (KafkaException, BufferError) as exc:
            if isinstance(exc, BufferError) and not held:
                raise
            error = exc.args[0] if exc.args else None
            reason = f"not produced: {error.str() if isinstance(error, KafkaError) else exc}"
            log.error(
                "%d events (the first of subject %r) %s", len(group), group[0][0].subject, reason
            )
            sent = [(event.source, event.id, callback) for event, _, callback in group]
            report_record(self.report, sent, None, None, reason)

    def _produce(self, group: list[Pending]) -> None:
        sent = [(event.source, event.id, callback) for event, _, callback in group]

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                report_record(self.report, sent, msg.partition(), msg.offset(), None)
            else:
                report_record(self.report, sent, None, None, err.str())

        first = group[0][0]
        value, headers = record_value([encoded for _, encoded, _ in group])
        placed: dict[str, Any] = {"key": event_key(first)}
        if self.pack_subjects:  # placed by the subjects' partition; a key only if one subject
            placed["partition"] = self._partitions.of(first)
            if any(event.subject != first.subject for event, _, _ in group):
                placed["key"] = None
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, headers=headers, on_delivery=delivered, **placed
                )
                break
            except BufferError:
                if self._in_callback():
                    raise BufferError(
                        "the Kafka client's local queue is full (queue.buffering.max.messages)"
                        " while a delivery callback sends: send from outside the callback, or"
                        " raise the limit in extra_config"
                    ) from None
                self._serve(0.05)  # local queue full: serve callbacks, then retry
        self._serve(0)

    def _in_callback(self) -> bool:
        return bool(getattr(self._serving, "active", False))

    def _refuse_in_callback(self, call: str) -> None:
        if self._in_callback():
            raise RuntimeError(
                f"{call} from inside a delivery callback would wait for the callbacks it is "
                "serving: call it after the callback returns"
            )

    def _serve(self, timeout: float) -> None:
        """Serve the client's delivery reports: their callbacks run here.  From inside a
        callback (a callback that sends) it does nothing: the client's poll is not
        re-entrant, and the poll already running serves what comes."""
        if self._in_callback():
            return
        self._serving.active = True
        try:
            self._producer.poll(timeout)
        finally:
            self._serving.active = False

    def flush(self, timeout: float = 60.0) -> DeliveryReport:
        """Wait for every queued event; raise if any is still undelivered at the deadline.
        Events sent by delivery callbacks meanwhile are waited for too."""
        self._refuse_in_callback("flush")
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for group in self._packer.drain():
                    self._produce_held(group)
            self._serving.active = True
            try:
                remaining = self._producer.flush(max(deadline - time.monotonic(), 0.0))
            finally:
                self._serving.active = False
            if remaining or not self.waiting:  # a callback may have sent while it waited
                break
        if remaining:
            raise DeliveryFailed(
                f"{remaining} records still undelivered after {timeout:.0f}s to {self.bootstrap}"
            )
        return self.report

    def send_and_wait(self, events: Iterable[UsageEvent], timeout: float = 30.0) -> list[Delivery]:
        """Send and wait for every event; raise :class:`DeliveryFailed` unless all landed."""
        outcomes: list[Delivery] = []
        self.send_many(events, outcomes.append)
        self.flush(timeout)
        failed = [d for d in outcomes if not d.ok]
        if failed:
            names = ", ".join(f"{d.source}/{d.id}: {d.error}" for d in failed[:10])
            raise DeliveryFailed(f"{len(failed)} of {len(outcomes)} events not accepted: {names}")
        return outcomes

    def close(self, timeout: float = 60.0) -> DeliveryReport:
        """Flush on close; raise if anything failed, so no loss goes unnoticed."""
        self._refuse_in_callback("close")
        self._mark_closed()
        report = self.flush(timeout)
        if report.failed:
            raise DeliveryFailed(report.failures())
        return report

    def _mark_closed(self) -> None:
        """Closed by its owner: the packing thread stops, and neither the exit hook nor the
        garbage collector flushes it again."""
        self._closed = True
        lifecycle.unregister(self)
        self._stop_packing()

    def _stop_packing(self) -> None:
        if self._packing is not None:
            self._stop.set()
            if self._packing is not threading.current_thread():
                self._packing.join(5)
            self._packing = None

    def _close_unclosed(self, when: str) -> None:
        """A producer its owner never closed: what it still holds is produced and waited
        for (at most the delivery timeout), with a warning, instead of being lost with the
        process or the object.  A failure is logged: there is no caller left to raise to."""
        if self._closed:
            return
        events, records = self.waiting, len(self._producer)
        self._mark_closed()
        if not events and not records:
            return
        log.warning(
            "a UsageProducer for topic %r was not closed: producing the %d events it held "
            "and waiting for its %d undelivered records %s; call close() (or use it in a "
            "`with` block) so a failed delivery raises where you can handle it",
            self.topic,
            events,
            records,
            when,
        )
        try:
            self.flush(self._closing_timeout)
        except DeliveryFailed as exc:
            log.error("a UsageProducer for topic %r, flushed %s: %s", self.topic, when, exc)
        if self.report.failed:
            log.error(
                "a UsageProducer for topic %r, flushed %s: %s",
                self.topic,
                when,
                self.report.failures(),
            )

    def __del__(self) -> None:
        self._close_unclosed("as it was garbage-collected")

    def __enter__(self) -> UsageProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._mark_closed()
            self.flush()
