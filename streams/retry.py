"""How the sink retries one ClickHouse write (``streams.sink``): on a fresh connection,
backing off from 0.2 s to 5 s (0.5 s while a cluster's replicas disagree), until the
write's deadline, then :class:`SinkFailed`; and which of its failures are logged loudly
(:class:`RetryLog`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from schemas.errors import MeterlineError
from streams import metrics
from streams.shard import Connection, ReplicasDisagree

__all__ = ["REPLICAS_POLL_SECONDS", "RETRY_LOG_SECONDS", "RetryLog", "SinkFailed", "with_retry"]

log = logging.getLogger(__name__)
T = TypeVar("T")

REPLICAS_POLL_SECONDS = 0.5
"""How soon a shard's replicas are asked again when they disagreed on its progress
(``streams.shard.ReplicasDisagree``): one fetch away from agreeing, usually."""
RETRY_LOG_SECONDS = 10.0
"""While a write keeps failing with the same kind of error, how often a failure is logged
at WARNING (:class:`RetryLog`); the attempts between go to DEBUG."""


class SinkFailed(MeterlineError):
    """ClickHouse kept failing past the retry deadline; the batch must not be acknowledged."""


class RetryLog:
    """Which failures of one retried write are logged at WARNING (pure): the first, one
    of another kind than the last logged (its exception class), and a repeat once every
    ``interval`` seconds — so a replica down for two minutes, polled every 0.5 s, says so
    about a dozen times instead of 240, and a change of cause is never hidden."""

    def __init__(self, interval: float = RETRY_LOG_SECONDS) -> None:
        self.interval = interval
        self.failures = 0
        self._kind: type[BaseException] | None = None
        self._at = 0.0

    def loud(self, exc: BaseException, now: float) -> bool:
        """Count a failure at ``now`` (monotonic seconds); whether to log it at WARNING."""
        self.failures += 1
        if type(exc) is self._kind and now - self._at < self.interval:
            return False
        self._kind, self._at = type(exc), now
        return True


def with_retry(
    connection: Connection, action: Callable[[], T], started: float, retry_seconds: float
) -> T:
    """``action`` until it succeeds, resetting ``connection`` (the one it uses)
    between attempts; :class:`SinkFailed` past ``retry_seconds`` after ``started`` (monotonic)."""
    delay = 0.2
    failures = RetryLog()
    while True:
        try:
            result = action()
        except Exception as exc:
            # replicas that disagree are catching up: asked again soon, not backed off
            if isinstance(exc, ReplicasDisagree):
                delay = REPLICAS_POLL_SECONDS
            now = time.monotonic()
            if now - started + delay > retry_seconds:
                raise SinkFailed(
                    f"ClickHouse write failed for {retry_seconds:.0f}s: {exc!r}"
                ) from exc
            metrics.FLUSH_RETRIES.inc()
            log.log(
                logging.WARNING if failures.loud(exc, now) else logging.DEBUG,
                "ClickHouse write failed (%r), attempt %d, %.1fs into the write; retrying"
                " in %.1fs (the same error again is logged every %.0fs, up to %.0fs)",
                exc,
                failures.failures,
                now - started,
                delay,
                failures.interval,
                retry_seconds,
            )
            connection.reset()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        else:
            if failures.failures:
                log.info(
                    "ClickHouse write succeeded after %d failed attempt(s), %.1fs into it",
                    failures.failures,
                    time.monotonic() - started,
                )
            return result
