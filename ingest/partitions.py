"""Which partition of the events topic a subject's events go to, as the SDK sees it.

The SDK packs the events of every subject that shares a partition into one record
(``ingest.packing``), so it places records itself: each on its subjects' partition,
:func:`schemas.wire.subject_partition` of the topic's partition count — where Kafka's
default partitioner puts a record keyed by the subject, so the gateway, ``kcat`` and the
SDK agree.  :class:`Partitions` keeps that count, read from the broker's metadata when the
producer starts and again every :data:`REFRESH_S`: a topic given more partitions is
picked up within that, as the Kafka client itself picks up new partitions for keyed
records (its metadata refresh).  A subject moves partition then, as with any keyed
producer; the producer sends what it packed for the old count first, so each subject's
events still leave in order.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from confluent_kafka import KafkaException

from schemas.events import UsageEvent
from schemas.wire import subject_partition

__all__ = ["REFRESH_S", "Partitions"]

log = logging.getLogger(__name__)

REFRESH_S = 30.0
"""How often the partition count is read again."""


class _TopicMetadata(Protocol):
    @property
    def error(self) -> object: ...
    @property
    def partitions(self) -> Mapping[int, object]: ...


class _ClusterMetadata(Protocol):
    @property
    def topics(self) -> Mapping[str, _TopicMetadata]: ...


class _Metadata(Protocol):
    """The one call :class:`Partitions` makes: the client's ``list_topics``."""

    def list_topics(self, topic: str, timeout: float) -> _ClusterMetadata: ...


class Partitions:
    def __init__(self, client: _Metadata, topic: str, count: int, now: float) -> None:
        if count < 1:
            raise ValueError(f"topic {topic!r} has no partitions")
        self.client, self.topic, self.count = client, topic, count
        self._due = now + REFRESH_S

    def of(self, event: UsageEvent) -> int:
        """The partition of ``event``'s subject (a packing lane)."""
        return subject_partition(event.subject, self.count)

    def reread(self, now: float) -> int | None:
        """The topic's partition count, read from the broker if :data:`REFRESH_S` has
        passed since the last read, else ``None`` (and ``None``, logged, if the broker
        does not answer within a second: the count stays as it was)."""
        if now < self._due:
            return None
        self._due = now + REFRESH_S
        try:
            metadata = self.client.list_topics(self.topic, timeout=1.0)
        except KafkaException as exc:
            log.warning(
                "partition count of topic %r not re-read (%s): %d partitions kept, "
                "read again in %.0f s",
                self.topic,
                exc,
                self.count,
                REFRESH_S,
            )
            return None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            log.warning(
                "topic %r not in the broker's metadata (%s): %d partitions kept",
                self.topic,
                "missing" if topic is None else topic.error or "no partitions",
                self.count,
            )
            return None
        return len(topic.partitions)
