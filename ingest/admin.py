"""Kafka topics Meterline owns, created idempotently with the settings they need.

The events topic stamps records with the broker's append time (``LogAppendTime``): that
time is the event's ingestion time, stable across re-reads, and retention counts from it
— a backdated event cannot fall out of retention before the worker has read it.

Every topic gets ``topic_replication_factor`` replicas and ``min.insync.replicas`` of
``topic_min_insync_replicas`` (1 and 1 on one broker; 3 and 2 on a cluster, where a
broker can be lost without losing or refusing an acknowledged event).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.errors import InvalidInput, ServiceUnavailable
from schemas.settings import Settings

__all__ = [
    "MAX_RECORD_BYTES",
    "TopicSpec",
    "delete_state",
    "delete_topics",
    "ensure_topics",
    "meterline_topics",
]

DAY_MS = 86_400_000
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""The largest record the events topic accepts, from any producer.  The dead-letter
topic accepts the same, so the worker can always dead-letter a record verbatim (the
SDK and the API write records of at most 256 KB)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = 1


def meterline_topics(settings: Settings) -> list[TopicSpec]:
    replicas = settings.topic_replication_factor
    insync = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    return [
        TopicSpec(
            settings.events_topic,
            settings.events_partitions,
            {
                "message.timestamp.type": "LogAppendTime",
                "retention.ms": str(14 * DAY_MS),
                "max.message.bytes": str(MAX_RECORD_BYTES),
                **insync,
            },
            replicas,
        ),
        TopicSpec(
            settings.dead_letter_topic,
            1,
            {"retention.ms": "-1", "max.message.bytes": str(MAX_RECORD_BYTES), **insync},
            replicas,
        ),
        TopicSpec(settings.invoices_topic, 1, {"retention.ms": "-1", **insync}, replicas),
        TopicSpec(
            settings.notifications_topic,
            1,
            {"retention.ms": str(30 * DAY_MS), **insync},
            replicas,
        ),
    ]


def ensure_topics(bootstrap: str, specs: list[TopicSpec], timeout: float = 15.0) -> None:
    """Create missing topics; refuse an existing topic whose partition count or
    replication factor differs from its spec."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise ServiceUnavailable(
            f"Kafka at {bootstrap} did not answer within {timeout:.0f}s ({exc}); "
            "start it with `make up`"
        ) from exc
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    config=s.config,
                )
                for s in missing
            ],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise ServiceUnavailable(f"could not create topic {name}: {exc}") from exc
    existing = _wait_visible(admin, [s.name for s in specs], timeout)
    for spec in specs:
        found = len(existing[spec.name].partitions)
        if found != spec.partitions:
            raise InvalidInput.single(
                "topic layout",
                spec.name,
                f"has {found} partitions, settings say {spec.partitions}",
                "set METERLINE_EVENTS_PARTITIONS to match, or recreate the topic",
            )
        replicas = min(len(p.replicas) for p in existing[spec.name].partitions.values())
        if replicas != spec.replication_factor:
            raise InvalidInput.single(
                "topic layout",
                spec.name,
                f"has {replicas} replica(s) per partition, settings say {spec.replication_factor}",
                "set METERLINE_TOPIC_REPLICATION_FACTOR to match, or add replicas with "
                "kafka-reassign-partitions",
            )


def _wait_visible(admin: AdminClient, names: list[str], timeout: float) -> dict[str, Any]:
    """Metadata right after CreateTopics may not list the new topics yet: poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(name in topics and topics[name].partitions for name in names):
            return dict(topics)
        if time.monotonic() > deadline:
            missing = [n for n in names if n not in topics]
            raise ServiceUnavailable(f"topics {missing} not visible {timeout:.0f}s after creation")
        time.sleep(0.1)


def delete_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Delete every topic of a namespace's pipeline: its meterline topics and the worker's
    own (changelogs, repartitions: named after ``worker_app_id``).  Returns their names."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    existing = admin.list_topics(timeout=timeout).topics
    prefix = settings.worker_app_id
    ours = {s.name for s in meterline_topics(settings)}
    names = [name for name in existing if name in ours or name.startswith(f"{prefix}-")]
    if names:
        for future in admin.delete_topics(names, operation_timeout=timeout).values():
            future.result(timeout)
    return names


def delete_state(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Delete every topic and the consumer group of a namespace's pipeline.

    Used by ``python -m streams reset``: the dedupe changelog and the metered data must go
    together, or a fresh database would be fed by a worker that thinks it has seen
    everything already.
    """
    names = delete_topics(settings, timeout)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    groups = admin.delete_consumer_groups([settings.worker_app_id], request_timeout=timeout)
    for future in groups.values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if "GROUP_ID_NOT_FOUND" not in str(exc):
                raise
    return names
