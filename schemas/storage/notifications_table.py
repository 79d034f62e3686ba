"""``notifications``: every notification raised, recorded before it is sent anywhere.

A notification is recorded when it is raised (``sent_ms`` 0) and again once it is on the
topic and delivered (``sent_ms`` the instant): its type, the subscription and threshold
it is about, the start of the billing period it belongs to, when it was raised, and its
body (the bytes webhooks and the Kafka topic carry).  Reads group by id.  The id is
derived from what makes the notification unique
(``alerts.thresholds.notification_id``), so recording it twice — an evaluator restarted
after a crash, or two evaluators at once — comes to one notification, and an evaluator
that starts reads the ids already raised for the current periods and never raises them
again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.storage.sql import Statement, lit

__all__ = ["NotificationRow", "NotificationsTable"]

COLUMNS = (
    "namespace",
    "id",
    "type",
    "customer",
    "subscription",
    "threshold",
    "period_start_ms",
    "raised_ms",
    "sent_ms",
    "body",
)


@dataclass(frozen=True, slots=True)
class NotificationRow:
    namespace: str
    id: str
    type: str
    customer: str
    subscription: str
    threshold: str
    period_start_ms: int
    raised_ms: int
    body: str
    sent_ms: int = 0

    def as_row(self) -> tuple[object, ...]:
        return (
            self.namespace,
            self.id,
            self.type,
            self.customer,
            self.subscription,
            self.threshold,
            self.period_start_ms,
            self.raised_ms,
            self.sent_ms,
            self.body,
        )


class NotificationsTable:
    def __init__(self, database: str) -> None:
        self.name = f"{database}.notifications"

    def ddl(self) -> list[Statement]:
        return [
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.name} ("
                " namespace String, id String, type String, customer String,"
                " subscription String, threshold String, period_start_ms Int64,"
                " raised_ms Int64, sent_ms Int64, body String"
                ") ENGINE = ReplacingMergeTree() ORDER BY (namespace, id)"
            )
        ]

    def insert(
        self, rows: Sequence[NotificationRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.name, COLUMNS, [row.as_row() for row in rows]

    def raised_since(self, namespace: str, period_start_ms: int) -> Statement:
        """Rows ``(id,)`` of every notification of a period starting at or after
        ``period_start_ms``: what an evaluator must not raise again."""
        return Statement(
            f"SELECT DISTINCT id FROM {self.name} WHERE namespace = {lit(namespace)}"
            f" AND period_start_ms >= {int(period_start_ms)}"
        )

    def pending(self, namespace: str, period_start_ms: int) -> Statement:
        """Rows ``(id, type, customer, subscription, threshold, period_start_ms,
        raised_ms, body)`` — a :class:`NotificationRow`'s fields in order — of the
        notifications of periods starting at or after ``period_start_ms`` that were
        raised but never recorded as sent: what a crash left, oldest first."""
        return Statement(
            "SELECT id, any(type), any(customer), any(subscription), any(threshold),"
            " any(period_start_ms), min(raised_ms) AS raised, any(body)"
            f" FROM {self.name} WHERE namespace = {lit(namespace)}"
            f" AND period_start_ms >= {int(period_start_ms)}"
            " GROUP BY id HAVING max(sent_ms) = 0 ORDER BY raised, id"
        )

    def listing(self, namespace: str, customer: str | None, limit: int) -> Statement:
        """Rows ``(id, type, customer, subscription, threshold, period_start_ms,
        raised_ms, body, sent_ms)``, the latest raised first; one customer's when given
        (``sent_ms`` 0: not sent yet)."""
        only = "" if customer is None else f" AND customer = {lit(customer)}"
        return Statement(
            "SELECT id, any(type), any(customer), any(subscription), any(threshold),"
            " any(period_start_ms), min(raised_ms) AS raised, any(body), max(sent_ms)"
            f" FROM {self.name} WHERE namespace = {lit(namespace)}{only}"
            f" GROUP BY id ORDER BY raised DESC, id LIMIT {int(limit)}"
        )
