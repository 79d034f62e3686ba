"""Pure window state for every aggregation kind, mergeable like ClickHouse's states.

This is the Python twin of the states ``meter_windows`` keeps (sum, count, distinct
values, max, min, latest by (event time, offset)).  ``reconcile`` folds raw events into
it to check the stored windows, and the property tests check the law the storage relies
on: merging partial states in any order equals folding all contributions at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from schemas.metering.definitions import Aggregation

__all__ = ["WindowState", "fold"]


@dataclass(frozen=True, slots=True)
class WindowState:
    total: Decimal = Decimal(0)
    count: int = 0
    distinct: frozenset[str] = frozenset()
    maximum: Decimal | None = None
    minimum: Decimal | None = None
    latest: tuple[int, int, int, Decimal] | None = None
    """(event time ms, Kafka offset, index in the record, value): the greatest
    (time, offset, index) wins."""

    def add(
        self, value: Decimal, uniq: str, event_ms: int, offset: int, index: int = 0
    ) -> WindowState:
        return self.merge(
            WindowState(value, 1, frozenset({uniq}), value, value, (event_ms, offset, index, value))
        )

    def merge(self, other: WindowState) -> WindowState:
        return WindowState(
            total=self.total + other.total,
            count=self.count + other.count,
            distinct=self.distinct | other.distinct,
            maximum=_pick(self.maximum, other.maximum, max),
            minimum=_pick(self.minimum, other.minimum, min),
            latest=_pick(self.latest, other.latest, max),
        )

    def value(self, kind: Aggregation) -> Decimal:
        if kind is Aggregation.SUM:
            return self.total
        if kind is Aggregation.COUNT:
            return Decimal(self.count)
        if kind is Aggregation.UNIQUE_COUNT:
            return Decimal(len(self.distinct))
        if kind is Aggregation.AVG:
            return self.total / self.count if self.count else Decimal(0)
        chosen = {
            Aggregation.MAX: self.maximum,
            Aggregation.MIN: self.minimum,
            Aggregation.LATEST: self.latest[3] if self.latest else None,
        }[kind]
        return chosen if chosen is not None else Decimal(0)


T = TypeVar("T", Decimal, tuple[int, int, int, Decimal])


def _pick(a: T | None, b: T | None, choose: Callable[[T, T], T]) -> T | None:
    if a is None:
        return b
    if b is None:
        return a
    return choose(a, b)


def fold(items: Iterable[tuple[Decimal, str, int, int]]) -> WindowState:
    """Fold (value, unique text, event ms, offset) contributions into one state."""
    state = WindowState()
    for value, uniq, event_ms, offset in items:
        state = state.add(value, uniq, event_ms, offset)
    return state
