"""Packing events into records over a time window (the SDK's ``pack_ms``).

Pure bookkeeping, no I/O: :class:`Packer` holds the pending events of each *lane* and
says which groups are ready to become a record — full (``max_events`` / ``max_bytes``), or
older than the window; the SDK's records and the HTTP gateway's alike.  A lane is what a
record may mix: by default the subject (one subject per record);
:class:`ingest.UsageProducer` uses the subject's partition, so the subjects that share a
partition share records too.  Every event of a subject is in one lane, so order is kept
per subject: a lane's groups come out in the order its events went in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from schemas.events import UsageEvent
from schemas.wire import encode_event

__all__ = ["Lane", "Packer", "Pending", "by_subject", "pack"]

T = TypeVar("T")
Pending = tuple[UsageEvent, bytes, Any]
"""An event, its encoded bytes and whatever the caller attached (its callback)."""
Lane = Callable[[UsageEvent], Hashable]
"""Which events may share a record: those of one lane.  A subject's events must all be
in one lane (a lane is a function of the subject), so its order is kept."""


def by_subject(event: UsageEvent) -> Hashable:
    """One subject per record."""
    return event.subject


@dataclass(slots=True)
class _Group(Generic[T]):
    first_at: float
    items: list[T] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class Packer(Generic[T]):
    """Pending items by lane.  The SDK queues events with :meth:`add` (their lane from
    ``lane``); the HTTP gateway queues already-encoded events with :meth:`put`, naming
    the lane itself."""

    window_s: float
    max_events: int
    max_bytes: int
    lane: Lane = by_subject
    _groups: dict[Hashable, _Group[T]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.window_s < 0 or self.max_events < 1 or self.max_bytes < 1:
            raise ValueError("window_s must be ≥ 0, max_events and max_bytes ≥ 1")

    def add(self: Packer[Pending], item: Pending, now: float) -> list[list[Pending]]:
        """Queue one event in its lane (see :meth:`put`)."""
        return self.put(self.lane(item[0]), item, len(item[1]), now)

    def put(self, lane: Hashable, item: T, size: int, now: float) -> list[list[T]]:
        """Queue one item of ``size`` encoded bytes in ``lane``; returns the groups that
        are ready because of it (a full group is closed before an item that would not
        fit; a record's lines are joined by one byte each)."""
        ready = []
        group = self._groups.get(lane)
        if group is not None and (
            len(group.items) >= self.max_events or group.size + size + 1 > self.max_bytes
        ):
            ready.append(group.items)
            group = None
        if group is None:
            group = self._groups[lane] = _Group(now)
        group.items.append(item)
        group.size += size + 1
        if len(group.items) >= self.max_events:
            ready.append(self._groups.pop(lane).items)
        return ready

    def due(self, now: float) -> list[list[T]]:
        """Groups whose first event has waited the whole window."""
        expired = [k for k, g in self._groups.items() if now - g.first_at >= self.window_s]
        return [self._groups.pop(k).items for k in expired]

    def drain(self) -> list[list[T]]:
        """Every pending group (on flush or close)."""
        groups = [g.items for g in self._groups.values()]
        self._groups.clear()
        return groups

    def __len__(self) -> int:
        return sum(len(g.items) for g in self._groups.values())

    def next_due(self) -> float | None:
        """When the oldest group's window closes, or ``None`` if nothing is pending."""
        return min((g.first_at + self.window_s for g in self._groups.values()), default=None)


def pack(
    events: Iterable[UsageEvent],
    max_events: int,
    max_bytes: int,
    tag: Any = None,
    lane: Lane = by_subject,
) -> Iterator[list[Pending]]:
    """Group events into records at once (no window): the events of one lane (by default
    one subject) share a record of at most ``max_events`` events and about ``max_bytes``
    bytes (a single larger event gets a record of its own).  Groups are yielded as they
    fill, the partial ones at the end; ``tag`` is attached to every event."""
    packer: Packer[Pending] = Packer(0.0, max_events, max_bytes, lane)
    for event in events:
        yield from packer.add((event, encode_event(event), tag), now=0.0)
    yield from packer.drain()
