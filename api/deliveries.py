"""``GET /api/v1/notifications/deliveries``: the webhook delivery log, paged (pure parsing
and shaping; the handler is ``Handlers.notification_deliveries``).

API keys only: the log names every customer's notifications and endpoints.  Filters:
``notification`` (an id) and ``outcome`` (``delivered``, ``retrying``, ``failed``);
``limit`` (1 to 1000, default 100).  Rows come newest first, one per attempt; ``next``
is an opaque cursor to pass back as ``after`` (``null`` on the last page).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from alerts.delivery import Outcome
from schemas.errors import InvalidInput, Problem
from schemas.storage.deliveries_table import COLUMNS, DeliveriesTable, DeliveryCursor
from schemas.storage.sql import Statement
from schemas.timeutil import format_ms

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "DeliveriesQuery", "deliveries_page", "parse_deliveries"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class DeliveriesQuery:
    notification_id: str | None
    outcome: Outcome | None
    after: DeliveryCursor | None
    limit: int

    def statement(self, database: str, namespace: str) -> Statement:
        return DeliveriesTable(database).page(
            namespace,
            notification_id=self.notification_id,
            outcome=self.outcome.value if self.outcome else None,
            after=self.after,
            limit=self.limit,
        )


def parse_deliveries(params: Sequence[tuple[str, str]]) -> DeliveriesQuery:
    """The query's parameters, every problem at once (:class:`InvalidInput`)."""
    problems: list[Problem] = []
    known = {"notification", "outcome", "limit", "after"}
    values: dict[str, str] = {}
    for name, value in params:
        if name not in known:
            problems.append(Problem(name, "unknown parameter", f"use one of {sorted(known)}"))
        elif name in values:
            problems.append(Problem(name, "given twice", "give it once"))
        values[name] = value
    notification = values.get("notification") or None
    outcome: Outcome | None = None
    if values.get("outcome"):
        try:
            outcome = Outcome(values["outcome"])
        except ValueError:
            problems.append(
                Problem("outcome", f"unknown outcome {values['outcome']!r}", f"use one of {_all()}")
            )
    limit_text = values.get("limit", str(DEFAULT_LIMIT))
    if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= MAX_LIMIT):
        problems.append(Problem("limit", f"must be an integer from 1 to {MAX_LIMIT}", "e.g. 100"))
    after = None
    if values.get("after"):
        after = _cursor(values["after"])
        if after is None:
            problems.append(
                Problem("after", "not a cursor this API gave", "pass the previous page's next")
            )
    if problems:
        raise InvalidInput("delivery log query", problems)
    return DeliveriesQuery(notification, outcome, after, int(limit_text))


def deliveries_page(rows: Sequence[Sequence[Any]], limit: int) -> dict[str, Any]:
    """The answer: the rows (in ``COLUMNS`` order) as JSON, and the next page's cursor."""
    entries = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    return {
        "deliveries": [
            {
                "notification_id": str(e["notification_id"]),
                "type": str(e["notification_type"]),
                "endpoint_id": str(e["endpoint_id"]),
                "url": str(e["url"]),
                "attempt": int(e["attempt"]),
                "status_code": int(e["status_code"]) or None,
                "error": str(e["error"]),
                "outcome": str(e["outcome"]),
                "at": format_ms(int(e["at_ms"])),
                "duration_ms": int(e["duration_ms"]),
            }
            for e in entries
        ],
        "next": _next(entries[-1]) if entries and len(entries) == limit else None,
    }


def _all() -> list[str]:
    return [o.value for o in Outcome]


def _next(last: dict[str, Any]) -> str:
    key = [int(last["at_ms"]), str(last["notification_id"]), str(last["endpoint_id"])]
    return base64.urlsafe_b64encode(orjson.dumps([*key, int(last["attempt"])])).decode()


def _cursor(text: str) -> DeliveryCursor | None:
    try:
        at_ms, notification_id, endpoint_id, attempt = orjson.loads(base64.urlsafe_b64decode(text))
    except (ValueError, TypeError, binascii.Error):
        return None
    if not (
        type(at_ms) is int
        and type(attempt) is int
        and isinstance(notification_id, str)
        and isinstance(endpoint_id, str)
        and -(2**63) <= at_ms < 2**63
        and 0 <= attempt < 2**16
    ):
        return None
    return DeliveryCursor(at_ms, notification_id, endpoint_id, attempt)
