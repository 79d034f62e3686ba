"""``webhook_deliveries``: the delivery log, one row per attempt to POST a notification.

Append-only (a MergeTree; no row is ever changed): an attempt is written once its answer
is known — the HTTP status (``0``: no answer), the error text, and the outcome
(``delivered``, ``retrying``: another attempt follows, ``failed``: the last one).  A
notification sent again after a crash of its sender starts at attempt 1 again: both
series stay, told apart by ``at_ms``.  ``alerts.delivery`` writes it; the API pages
through it (``GET /api/v1/notifications/deliveries``), newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.storage.sql import Statement, lit

__all__ = ["COLUMNS", "DeliveriesTable", "DeliveryCursor", "DeliveryRow"]

COLUMNS = (
    "namespace",
    "notification_id",
    "notification_type",
    "endpoint_id",
    "url",
    "attempt",
    "status_code",
    "error",
    "outcome",
    "at_ms",
    "duration_ms",
)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    namespace: str
    notification_id: str
    notification_type: str
    endpoint_id: str
    url: str
    attempt: int
    status_code: int
    """The HTTP status of the answer; 0 when there was none (refused, timed out)."""
    error: str
    outcome: str
    at_ms: int
    """When the attempt started, epoch milliseconds."""
    duration_ms: int

    def as_row(self) -> tuple[object, ...]:
        return (
            self.namespace,
            self.notification_id,
            self.notification_type,
            self.endpoint_id,
            self.url,
            self.attempt,
            self.status_code,
            self.error,
            self.outcome,
            self.at_ms,
            self.duration_ms,
        )


@dataclass(frozen=True, slots=True)
class DeliveryCursor:
    """Where a page ended: the last row's ``(at_ms, notification_id, endpoint_id,
    attempt)``; the next page holds the rows after it in the listing's order."""

    at_ms: int
    notification_id: str
    endpoint_id: str
    attempt: int


class DeliveriesTable:
    def __init__(self, database: str) -> None:
        self.name = f"{database}.webhook_deliveries"

    def ddl(self) -> list[Statement]:
        return [
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.name} ("
                " namespace String, notification_id String, notification_type String,"
                " endpoint_id String, url String, attempt UInt16, status_code UInt16,"
                " error String, outcome String, at_ms Int64, duration_ms Int64"
                ") ENGINE = MergeTree() ORDER BY (namespace, notification_id, endpoint_id, at_ms)"
            )
        ]

    def insert(
        self, rows: Sequence[DeliveryRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.name, COLUMNS, [row.as_row() for row in rows]

    def page(
        self,
        namespace: str,
        *,
        notification_id: str | None = None,
        outcome: str | None = None,
        after: DeliveryCursor | None = None,
        limit: int = 100,
    ) -> Statement:
        """Rows in :data:`COLUMNS` order, newest first (ties by notification, endpoint and
        attempt, descending), at most ``limit``, after the ``after`` cursor."""
        where = [f"namespace = {lit(namespace)}"]
        if notification_id is not None:
            where.append(f"notification_id = {lit(notification_id)}")
        if outcome is not None:
            where.append(f"outcome = {lit(outcome)}")
        if after is not None:
            where.append(_before(after))
        return Statement(
            f"SELECT {', '.join(COLUMNS)} FROM {self.name} WHERE {' AND '.join(where)}"
            " ORDER BY at_ms DESC, notification_id DESC, endpoint_id DESC, attempt DESC"
            f" LIMIT {int(limit)}"
        )


def _before(cursor: DeliveryCursor) -> str:
    """Rows that sort after ``cursor`` in the descending listing, spelt out column by
    column (tuple comparison is not relied on: the 18.16 server must run it too)."""
    at, nid, eid, n = (
        lit(cursor.at_ms),
        lit(cursor.notification_id),
        lit(cursor.endpoint_id),
        lit(cursor.attempt),
    )
    return (
        f"(at_ms < {at} OR (at_ms = {at} AND (notification_id < {nid}"
        f" OR (notification_id = {nid} AND (endpoint_id < {eid}"
        f" OR (endpoint_id = {eid} AND attempt < {n}))))))"
    )
