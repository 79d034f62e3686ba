"""A notification: what Meterline tells a customer's systems, by webhook and on Kafka (pure).

A notification has a type (:class:`NotificationType`), an id, the instant it is about
(UTC, to the millisecond) and a JSON payload (``data``).  The id is the idempotency key:
it is the ``webhook-id`` of every attempt to deliver it and the key of its Kafka record,
so a receiver that keeps the ids it has processed handles each notification once, however
often it arrives.  Whoever raises a notification derives the id from what makes it unique
(a threshold's crossing in a period: ``alerts.thresholds.notification_id``; an invoice:
its id), so raising it again after a crash gives the same id, not a second notification.

The body sent (webhook and Kafka alike) is compact JSON, built once::

    {"id": "ntf_…", "type": "alert.threshold_reached",
     "timestamp": "2026-11-03T10:15:00.123Z", "data": {…}}

``data`` holds strings, integers, booleans, null, lists, string-keyed mappings and
:class:`~decimal.Decimal`, written as a string (``"12.50"``) so no amount passes through
a binary float; a float is refused with its path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

from schemas.errors import InvalidInput, Problem
from schemas.timeutil import format_ms

__all__ = ["Notification", "NotificationType"]

MAX_ID_CHARS = 128


class NotificationType(StrEnum):
    """What happened.  The value is the ``type`` of the body, dotted as Standard Webhooks
    suggests (``<resource>.<event>``)."""

    THRESHOLD_REACHED = "alert.threshold_reached"
    INVOICE_ISSUED = "invoice.issued"


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification; :meth:`body` is what every channel carries."""

    id: str
    type: NotificationType
    at_ms: int
    """The instant the notification is about, epoch milliseconds (UTC)."""
    data: Mapping[str, Any]
    _body: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = _id_problems(self.id)
        if not isinstance(self.type, NotificationType):
            problems.append(
                Problem("type", f"unknown type {self.type!r}", f"use one of {_types()}")
            )
        if isinstance(self.at_ms, bool) or not isinstance(self.at_ms, int) or self.at_ms < 0:
            problems.append(
                Problem("at_ms", "not epoch milliseconds", "pass an int, e.g. to_ms(moment)")
            )
        problems.extend(_data_problems(self.data, "data"))
        if problems:
            raise InvalidInput("notification", problems)
        document = {
            "id": self.id,
            "type": self.type.value,
            "timestamp": format_ms(self.at_ms),
            "data": self.data,
        }
        object.__setattr__(self, "_body", orjson.dumps(document, default=_decimal_text))

    def body(self) -> bytes:
        """The compact JSON body, the same bytes for every attempt and channel."""
        return self._body


def _types() -> list[str]:
    return [t.value for t in NotificationType]


def _id_problems(notification_id: object) -> list[Problem]:
    if (
        not isinstance(notification_id, str)
        or not 1 <= len(notification_id) <= MAX_ID_CHARS
        or not notification_id.isascii()
        or not notification_id.replace("_", "").replace("-", "").isalnum()
    ):
        return [
            Problem(
                "id",
                f"{notification_id!r} is not 1 to {MAX_ID_CHARS} letters, digits, _ or -",
                "derive it from what makes the notification unique, e.g. ntf_<hex digest>",
            )
        ]
    return []


def _data_problems(value: object, path: str) -> list[Problem]:
    if isinstance(value, Mapping):
        problems = []
        for key, item in value.items():
            if not isinstance(key, str):
                problems.append(Problem(f"{path}.{key!r}", "a key is not a string", "use text"))
            else:
                problems.extend(_data_problems(item, f"{path}.{key}"))
        return problems
    if isinstance(value, list | tuple):
        return [p for i, item in enumerate(value) for p in _data_problems(item, f"{path}[{i}]")]
    if isinstance(value, float):
        return [Problem(path, "a float", 'pass a Decimal (written as a string, e.g. "12.50")')]
    if isinstance(value, Decimal) and not value.is_finite():
        return [Problem(path, f"{value} is not a finite number", "pass a finite Decimal")]
    if value is None or isinstance(value, str | int | bool | Decimal):
        return []
    return [
        Problem(
            path,
            f"a {type(value).__name__} is not JSON",
            "pass text, an int, a Decimal, a bool, a list or a mapping",
        )
    ]


def _decimal_text(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")  # refused before
