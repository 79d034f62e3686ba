"""Sending one notification everywhere it goes: the Kafka topic, then each webhook
endpoint that takes its type.  What an alerts evaluator (or billing) calls.

Order and what a failure costs:

1. **Publish** to the notifications topic (acknowledged).  If Kafka refuses, nothing was
   sent anywhere; :class:`~schemas.errors.DeliveryFailed` reaches the caller, who tries
   again later.
2. **Deliver** to each subscribed endpoint in turn (``alerts.delivery``: retries, every
   attempt logged).  An endpoint that stays down is a ``failed`` delivery in the log and
   in the report, not an error: the others are still tried.  A crash here means the
   caller sends the notification again: the topic gets a second record with the same key
   and endpoints may get it twice with the same ``webhook-id``; both keep it once.

Endpoints are tried one after the other, so a slow endpoint delays the next by up to its
whole retry schedule (about a minute by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.delivery import ClickHouseDeliveryLog, DeliveryResult, RetrySchedule, WebhookSender
from alerts.endpoints import WebhookEndpoint, load_endpoints, subscribed
from alerts.notifications import Notification
from alerts.publish import NotificationPublisher
from schemas.settings import Settings
from schemas.storage.engine import Engine

__all__ = ["Notifier", "NotifyReport"]


@dataclass(frozen=True, slots=True)
class NotifyReport:
    notification_id: str
    deliveries: tuple[DeliveryResult, ...]

    @property
    def failed(self) -> tuple[str, ...]:
        """The endpoints that did not accept the notification."""
        return tuple(d.endpoint_id for d in self.deliveries if not d.delivered)


class Notifier:
    def __init__(
        self,
        endpoints: Sequence[WebhookEndpoint],
        sender: WebhookSender,
        publisher: NotificationPublisher,
    ) -> None:
        self.endpoints, self.sender, self.publisher = tuple(endpoints), sender, publisher

    @classmethod
    def of(cls, settings: Settings, engine: Engine) -> Notifier:
        """The endpoints, schedule and topic the settings name; attempts logged through
        ``engine`` (used from one thread: clickhouse-driver clients are not thread-safe)."""
        return cls(
            load_endpoints(settings.webhooks_file),
            WebhookSender(
                settings.namespace,
                ClickHouseDeliveryLog(engine, settings.clickhouse_database),
                RetrySchedule.of(settings),
            ),
            NotificationPublisher(settings.kafka_bootstrap, settings.notifications_topic),
        )

    def notify(self, notification: Notification) -> NotifyReport:
        self.publisher.publish(notification)
        results = [
            self.sender.deliver(notification, endpoint)
            for endpoint in subscribed(self.endpoints, notification.type)
        ]
        return NotifyReport(notification.id, tuple(results))

    def close(self) -> None:
        self.sender.close()
        self.publisher.close()
