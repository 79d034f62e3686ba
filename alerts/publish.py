"""Notifications on Kafka (``METERLINE_NOTIFICATIONS_TOPIC``, ``meterline.notifications``),
for consumers that prefer a topic to webhooks.

A record per notification: key = the notification's id (its idempotency key: a consumer
keeps one per key), value = the same JSON body the webhooks carry, header ``type``.

The producer is configured as the invoice publisher's (``invoicing.publish``):
idempotent, ``acks=all``, and :meth:`NotificationPublisher.publish` returns only once
the broker acknowledged the record.  It is not transactional: a notification is one
record, there is no batch to commit together, and a transactional id per namespace
would let a second evaluator fence the first.  What a failure costs: a record that was
not acknowledged raises :class:`~schemas.errors.DeliveryFailed` and the caller sends the
notification again; a record acknowledged before a crash may then be on the topic twice,
with the same key.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

from alerts.notifications import Notification
from schemas.errors import DeliveryFailed

__all__ = ["NotificationPublisher"]


class NotificationPublisher:
    """Publishes notifications to one topic, one acknowledged record at a time."""

    def __init__(self, bootstrap: str, topic: str, *, timeout: float = 30.0) -> None:
        self.bootstrap, self.topic, self.timeout = bootstrap, topic, timeout
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "message.timeout.ms": int(timeout * 1000),
            }
        )

    def publish(self, notification: Notification) -> None:
        """The notification as one record, acknowledged by the broker, or DeliveryFailed."""
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        self._producer.produce(
            self.topic,
            key=notification.id.encode(),
            value=notification.body(),
            headers={"type": notification.type.value.encode()},
            on_delivery=delivered,
        )
        remaining = self._producer.flush(self.timeout + 5)
        if remaining:
            raise DeliveryFailed(
                f"notification {notification.id} not acknowledged by Kafka at {self.bootstrap} "
                f"within {self.timeout:.0f}s; send it again (its id keeps it once)"
            )
        if errors:
            raise DeliveryFailed(
                f"notification {notification.id} refused by Kafka ({self.topic}): {errors[0]}"
            )

    def close(self) -> None:
        self._producer.flush(self.timeout)
