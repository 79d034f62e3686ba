"""Delivering a notification to a webhook endpoint: signed POSTs, retried with backoff,
every attempt logged (I/O at the edge; the decisions are the pure :func:`verdict` and
:meth:`RetrySchedule.delay_s`).

One delivery is at most ``attempts`` POSTs of the notification's body (5 by default,
``METERLINE_WEBHOOK_ATTEMPTS``), each signed when it is sent (``alerts.webhooks``: a
fresh ``webhook-timestamp``, the same ``webhook-id`` — the notification's id, the
idempotency key).  What an answer means:

* 2xx: delivered; no further attempt.
* no answer (refused, reset, timed out), 408, 429 or 5xx: retried after a wait that
  doubles from ``first_delay_s`` (2 s) up to ``max_delay_s`` (60 s), each wait cut by
  a random share of up to ``jitter`` (half) so that endpoints recovering from an outage
  are not hit by every sender at once; a ``Retry-After`` of seconds lengthens the wait
  (up to ``max_delay_s``).  Default waits: 1–2, 2–4, 4–8, 8–16 s.
* any other status (3xx, 4xx): refused for good; redirects are not followed.

The last attempt that is not delivered is logged ``failed``, earlier ones ``retrying``.

Every attempt is logged twice: a line on this module's logger, and a row of the delivery
log (``schemas.storage.deliveries_table``) written once the attempt's answer is known.
What a crash or an error costs:

* the process dies during the attempts: the rows of the attempts made so far stay; the
  caller, which has not seen the delivery finish, sends the notification again later
  with the same id — the receiver may get it twice and keeps it once by ``webhook-id``;
* the log row cannot be written (ClickHouse down): :class:`~schemas.errors.
  ServiceUnavailable` is raised after the attempt, even a delivered one, so the caller
  does not count as done a delivery the log does not show; sending again is safe for
  the same reason.

Why httpx: a timeout that covers connect, write and read, transport errors as one
exception tree (``httpx.TransportError``), and redirects off by default; it is the
client the API's tests already use.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import httpx

from alerts.endpoints import WebhookEndpoint
from alerts.notifications import Notification
from alerts.webhooks import sign
from schemas.settings import Settings
from schemas.storage.deliveries_table import DeliveriesTable, DeliveryRow
from schemas.storage.engine import Engine
from schemas.timeutil import now_ms

__all__ = [
    "Attempt",
    "ClickHouseDeliveryLog",
    "DeliveryLog",
    "DeliveryResult",
    "Outcome",
    "RetrySchedule",
    "Verdict",
    "WebhookSender",
    "verdict",
]

log = logging.getLogger(__name__)
USER_AGENT = "Meterline-Webhooks/1"


class Outcome(StrEnum):
    """What one attempt came to, as the delivery log keeps it."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"


class Verdict(StrEnum):
    """What an answer (or its absence) means for the delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


def verdict(status_code: int | None) -> Verdict:
    """``None``: no answer (network error, timeout)."""
    if status_code is None or status_code in (408, 429) or status_code >= 500:
        return Verdict.RETRY
    if 200 <= status_code < 300:
        return Verdict.DELIVERED
    return Verdict.REFUSED


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """How many attempts, how long each waits for an answer, and the waits between them."""

    attempts: int = 5
    first_delay_s: float = 2.0
    max_delay_s: float = 60.0
    timeout_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5
    """The largest share of a wait taken off at random (0: the waits are exact)."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or not 0 <= self.jitter <= 1 or self.factor < 1:
            raise ValueError(f"not a retry schedule: {self!r}")

    @classmethod
    def of(cls, settings: Settings) -> RetrySchedule:
        return cls(
            attempts=settings.webhook_attempts,
            first_delay_s=settings.webhook_first_delay_s,
            max_delay_s=settings.webhook_max_delay_s,
            timeout_s=settings.webhook_timeout_s,
        )

    def delay_s(self, failed: int, draw: float, retry_after_s: float | None = None) -> float:
        """The wait after failed attempt number ``failed`` (1-based); ``draw`` in [0, 1)."""
        base = min(self.max_delay_s, self.first_delay_s * self.factor ** (failed - 1))
        wait = base * (1 - self.jitter * draw)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_delay_s))
        return wait


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    status_code: int | None
    error: str
    outcome: Outcome
    at_ms: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    notification_id: str
    endpoint_id: str
    attempts: tuple[Attempt, ...]

    @property
    def delivered(self) -> bool:
        return self.attempts[-1].outcome is Outcome.DELIVERED


class DeliveryLog(Protocol):
    """Where attempts are recorded; :meth:`record` raises if the row was not kept."""

    def record(self, row: DeliveryRow) -> None: ...


class ClickHouseDeliveryLog:
    """The delivery log in ClickHouse: one insert per attempt, as soon as it is known."""

    def __init__(self, engine: Engine, database: str) -> None:
        self.engine, self.table = engine, DeliveriesTable(database)

    def record(self, row: DeliveryRow) -> None:
        self.engine.insert(*self.table.insert([row]))


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int | None
    error: str
    retry_after_s: float | None


class WebhookSender:
    """Delivers notifications to endpoints (:meth:`deliver`), one at a time, blocking.

    ``sleep``, ``draw`` and ``clock_ms`` are the waits, the jitter's random numbers and
    the clock; tests pass a short schedule instead of replacing them."""

    def __init__(
        self,
        namespace: str,
        deliveries: DeliveryLog,
        schedule: RetrySchedule | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        draw: Callable[[], float] = random.random,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.namespace, self.deliveries = namespace, deliveries
        self.schedule = schedule or RetrySchedule()
        self._sleep, self._draw, self._clock_ms = sleep, draw, clock_ms
        self._client = httpx.Client(
            timeout=self.schedule.timeout_s,
            follow_redirects=False,
            headers={"user-agent": USER_AGENT, "content-type": "application/json"},
        )

    def deliver(self, notification: Notification, endpoint: WebhookEndpoint) -> DeliveryResult:
        """POST ``notification`` to ``endpoint`` until it is accepted, refused, or the
        schedule's attempts are spent; every attempt is logged before the next starts."""
        attempts: list[Attempt] = []
        for number in range(1, self.schedule.attempts + 1):
            started = self._clock_ms()
            answer = self._post(notification, endpoint, started // 1000)
            decided = verdict(answer.status_code)
            if decided is Verdict.DELIVERED:
                outcome = Outcome.DELIVERED
            elif decided is Verdict.RETRY and number < self.schedule.attempts:
                outcome = Outcome.RETRYING
            else:
                outcome = Outcome.FAILED
            attempt = Attempt(
                number,
                answer.status_code,
                answer.error,
                outcome,
                started,
                max(0, self._clock_ms() - started),
            )
            attempts.append(attempt)
            self._record(notification, endpoint, attempt)
            if outcome is not Outcome.RETRYING:
                break
            self._sleep(self.schedule.delay_s(number, self._draw(), answer.retry_after_s))
        return DeliveryResult(notification.id, endpoint.id, tuple(attempts))

    def _post(self, notification: Notification, endpoint: WebhookEndpoint, now_s: int) -> _Answer:
        body = notification.body()
        headers = sign(endpoint.secret, notification.id, now_s, body)
        try:
            with self._client.stream("POST", endpoint.url, content=body, headers=headers) as r:
                # the answer's body is never read: only its status counts
                reason = "" if r.is_success else f"HTTP {r.status_code} {r.reason_phrase}".strip()
                return _Answer(r.status_code, reason, _retry_after(r.headers.get("retry-after")))
        except httpx.TransportError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return _Answer(None, detail, None)

    def _record(
        self, notification: Notification, endpoint: WebhookEndpoint, attempt: Attempt
    ) -> None:
        status = attempt.status_code if attempt.status_code is not None else "no answer"
        level = logging.INFO if attempt.outcome is Outcome.DELIVERED else logging.WARNING
        log.log(
            level,
            "webhook %s to %s (%s) attempt %d: %s, %s%s",
            notification.id,
            endpoint.id,
            endpoint.url,
            attempt.number,
            status,
            attempt.outcome.value,
            f" ({attempt.error})" if attempt.error else "",
        )
        self.deliveries.record(
            DeliveryRow(
                self.namespace,
                notification.id,
                notification.type.value,
                endpoint.id,
                endpoint.url,
                attempt.number,
                attempt.status_code or 0,
                attempt.error,
                attempt.outcome.value,
                attempt.at_ms,
                attempt.duration_ms,
            )
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _retry_after(text: str | None) -> float | None:
    """A ``Retry-After`` of whole seconds (an HTTP-date is ignored: the backoff stands)."""
    if text is None or not text.strip().isdigit():
        return None
    return float(text.strip())
