"""The aggregated feed: a chunk's contributions pre-aggregated per window before the insert.

Live traffic shares windows heavily (one subject's events of one minute, one partition),
so the worker sends one row per (meter, subject, group, window, ingestion minute,
partition) — and, for UNIQUE_COUNT meters, per distinct value — instead of one per
event.  A row carries the partial states: the number of events, sum, max, min, the
latest value with its (event time, offset, index), the highest source offset.

The tables keep ``countState()`` for the number of events, whose state cannot be built
from a number, so each view expands a row into ``events`` rows (``ARRAY JOIN
range(events)``): the count counts them, every other state reads only the first
(``-If(k = 0)``: the state types stay those of the per-event feed, so both feeds fill the
same tables; ``schemas.storage.window_states`` has the expressions).  The per-event feed
(``windows_table``) stays for workers of earlier builds during an upgrade; this build
writes only this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from schemas.storage.feed import DEC, WINDOW_KEY, Contribution
from schemas.storage.sql import Statement

__all__ = [
    "AGG_COLUMNS",
    "AggRow",
    "Contribution",
    "agg_feed_ddl",
    "pre_aggregate",
]

AGG_COLUMNS = (
    *WINDOW_KEY,
    "source_partition",
    "events",
    "value_sum",
    "value_max",
    "value_min",
    "uniq",
    "latest_value",
    "latest_ms",
    "latest_offset",
    "latest_index",
    "max_offset",
)
AggRow = tuple[
    str,
    str,
    str,
    str,
    int,
    int,
    int,
    int,
    Decimal,
    Decimal,
    Decimal,
    str,
    Decimal,
    int,
    int,
    int,
    int,
]


def agg_feed_ddl(name: str) -> Statement:
    return Statement(
        f"CREATE TABLE IF NOT EXISTS {name} ("
        " namespace String, meter String, subject String, group_key String,"
        " window_start_s UInt32, ingest_minute_s UInt32, source_partition UInt32,"
        f" events UInt32, value_sum {DEC}, value_max {DEC}, value_min {DEC}, uniq String,"
        f" latest_value {DEC}, latest_ms Int64, latest_offset UInt64, latest_index UInt32,"
        " max_offset UInt64"
        ") ENGINE = Null"
    )


class _Group:
    """The partial states of one aggregated row (one per group, not per event)."""

    __slots__ = ("events", "high", "latest", "low", "top", "total", "when")

    def __init__(self, value: Decimal, when: tuple[int, int, int]) -> None:
        self.events = 1
        self.total = self.high = self.low = self.latest = value
        self.when = when
        self.top = when[1]


def pre_aggregate(rows: Iterable[Contribution], unique_meters: frozenset[str]) -> list[AggRow]:
    """One row per (meter, subject, group, window, ingestion minute, partition), and per
    distinct value for the meters in ``unique_meters``; in first-seen order (pure)."""
    groups: dict[tuple[str, str, str, str, int, int, int, str], _Group] = {}
    for ns, meter, subject, group, window, ingest, value, uniq, ms, part, off, idx in rows:
        key = (
            ns,
            meter,
            subject,
            group,
            window,
            ingest,
            part,
            uniq if meter in unique_meters else "",
        )
        when = (ms, off, idx)
        state = groups.get(key)
        if state is None:
            groups[key] = _Group(value, when)
            continue
        state.events += 1
        state.total += value
        if value > state.high:
            state.high = value
        if value < state.low:
            state.low = value
        if when > state.when:
            state.latest, state.when = value, when
        if off > state.top:
            state.top = off
    return [
        (
            ns,
            meter,
            subject,
            group,
            window,
            ingest,
            part,
            g.events,
            g.total,
            g.high,
            g.low,
            uniq,
            g.latest,
            g.when[0],
            g.when[1],
            g.when[2],
            g.top,
        )
        for (ns, meter, subject, group, window, ingest, part, uniq), g in groups.items()
    ]
