"""What became of each sent event: :class:`Delivery` per event, the running
:class:`DeliveryReport`, and how a record's outcome reaches both and the caller's
callbacks (:func:`report_record`).  No I/O: the producer (``ingest.producer``) calls it
from whichever thread serves the Kafka client's acknowledgements."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Callback", "Delivery", "DeliveryReport", "report_record"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one send: where it landed, or why it did not."""

    source: str
    id: str
    partition: int | None
    offset: int | None
    error: str | None = None
    index: int = 0
    """The event's place in its record (0 unless several events share the record)."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class DeliveryReport:
    delivered: int = 0
    failed: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def count(self, delivered: int, failed: Iterable[Delivery] = ()) -> None:
        """Add a record's outcomes.  Two threads may serve the client's reports at once
        (the packing thread and a caller's ``flush``), so no count is lost between them."""
        with self._lock:
            self.delivered += delivered
            self.failed.extend(failed)

    @property
    def pending_errors(self) -> bool:
        return bool(self.failed)

    def failures(self) -> str:
        """``N events were not accepted; first: source/id: reason`` (some failed)."""
        first = self.failed[0]
        return (
            f"{len(self.failed)} events were not accepted; first: "
            f"{first.source}/{first.id}: {first.error}"
        )


Callback = Callable[[Delivery], None]

Sent = tuple[str, str, Callback | None]
"""An event of a record as its outcome needs it: ``(source, id, callback)``."""


def report_record(
    report: DeliveryReport,
    events: Sequence[Sent],
    partition: int | None,
    offset: int | None,
    error: str | None,
) -> None:
    """One record's outcome, event by event: counted in ``report``, then handed to each
    event's callback (``error`` is ``None`` when the record landed at
    ``partition``/``offset``)."""
    if error is None and all(callback is None for _, _, callback in events):
        report.count(len(events))  # no callback to hand a Delivery to
        return
    outcomes = [
        Delivery(source, event_id, partition, offset, error, index)
        for index, (source, event_id, _) in enumerate(events)
    ]
    if error is None:
        report.count(len(outcomes))
    else:
        report.count(0, outcomes)
    for outcome, (_, _, callback) in zip(outcomes, events, strict=True):
        if callback is not None:
            _call(callback, outcome)


def _call(callback: Callback, outcome: Delivery) -> None:
    """Hand ``outcome`` to the caller's callback.  A callback that raises is logged with
    its traceback and the SDK goes on: the report still counts every outcome of the
    record, and the packing thread (which serves callbacks too) keeps producing."""
    try:
        callback(outcome)
    except Exception:
        log.exception(
            "the delivery callback raised for %s/%s (%s); the SDK goes on",
            outcome.source,
            outcome.id,
            "delivered" if outcome.ok else f"failed: {outcome.error}",
        )
