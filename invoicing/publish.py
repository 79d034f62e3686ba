"""Publishing invoices to Kafka in transactions, and finding what a crashed run committed.

The producer's ``transactional.id`` is stable per namespace and topic
(``meterline-invoicing.<namespace>.<topic>``): a new run's ``init_transactions`` fences
any older incarnation and makes the broker abort its open transaction, so after
:meth:`KafkaPublisher.committed` has read the topic with ``isolation.level =
read_committed`` nothing of the crashed run is still undecided.  One consequence: two
billing runs of one namespace do not run side by side — the newer fences the older,
which fails with :class:`DeliveryFailed` and leaves drafts the next run finishes.

Test hooks (used by the crash test, read by the CLI from the environment):
``crash_after_records`` SIGKILLs the process after that many records were produced and
flushed *inside* the open transaction; ``crash_after_commit`` SIGKILLs it right after
the commit, before anything is stored in ClickHouse.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Collection, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from schemas.errors import DeliveryFailed, ServiceUnavailable

__all__ = ["KafkaPublisher", "transactional_id"]


def transactional_id(namespace: str, topic: str) -> str:
    return f"meterline-invoicing.{namespace}.{topic}"


class KafkaPublisher:
    """Transactional publication of ``(key, value)`` records to one topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        namespace: str = "default",
        *,
        timeout: float = 30.0,
        crash_after_records: int | None = None,
        crash_after_commit: bool = False,
    ) -> None:
        self.bootstrap, self.topic, self.timeout = bootstrap, topic, timeout
        self.transactional_id = transactional_id(namespace, topic)
        self._crash_after_records = crash_after_records
        self._crash_after_commit = crash_after_commit
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": self.transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "transaction.timeout.ms": 60_000,
            }
        )
        self._ready = False

    def _init(self) -> None:
        if self._ready:
            return
        try:
            self._producer.init_transactions(self.timeout)
        except KafkaException as exc:
            raise ServiceUnavailable(
                f"Kafka at {self.bootstrap} did not start the invoice transaction: {exc}"
            ) from exc
        self._ready = True

    def publish(self, records: Sequence[tuple[str, bytes]]) -> None:
        """All ``records`` in one transaction: committed together or not at all."""
        if not records:
            return
        self._init()
        try:
            self._producer.begin_transaction()
            for number, (key, value) in enumerate(records, start=1):
                self._producer.produce(self.topic, key=key.encode(), value=value)
                if number == self._crash_after_records:
                    self._producer.flush(self.timeout)
                    os.kill(os.getpid(), signal.SIGKILL)
            self._producer.commit_transaction(self.timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                self._producer.abort_transaction(self.timeout)
            raise DeliveryFailed(f"invoice transaction not committed: {exc}") from exc
        if self._crash_after_commit:
            os.kill(os.getpid(), signal.SIGKILL)

    def committed(self, keys: Collection[str], since_ms: int) -> set[str]:
        """Which of ``keys`` are on the topic in committed transactions.

        Reads from the first record stamped at or after ``since_ms`` up to the end offset
        seen at the start; that offset is only passed once every older transaction is
        decided (our own crashed one was aborted by ``init_transactions`` just before).
        """
        self._init()
        wanted = set(keys)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"meterline-invoicing-scan-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        found: set[str] = set()
        try:
            metadata = consumer.list_topics(self.topic, timeout=self.timeout).topics.get(self.topic)
            if metadata is None or metadata.error is not None:
                return found
            starts = consumer.offsets_for_times(
                [TopicPartition(self.topic, p, since_ms) for p in sorted(metadata.partitions)],
                timeout=self.timeout,
            )
            ends = {
                tp.partition: consumer.get_watermark_offsets(tp, timeout=self.timeout)[1]
                for tp in starts
            }
            todo = [tp for tp in starts if 0 <= tp.offset < ends[tp.partition]]
            if not todo:
                return found
            consumer.assign(todo)
            deadline = time.monotonic() + 2 * self.timeout + 60
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    key = (message.key() or b"").decode()
                    if key in wanted:
                        found.add(key)
                positions = consumer.position(todo)
                if all(tp.offset >= ends[tp.partition] for tp in positions):
                    return found
            raise ServiceUnavailable(
                f"could not read {self.topic} to its end within the deadline; an open "
                "transaction may be holding it; retry the run"
            )
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka at {self.bootstrap} did not answer: {exc}") from exc
        finally:
            consumer.close()
