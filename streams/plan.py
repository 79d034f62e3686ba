"""What step 1 of the metering sink makes of a chunk of records: the :class:`Record` s it
reads, the :class:`BatchPlan` it fills (raw rows, dedupe entries, dead letters, kept
events, folded groups, spans) and the dedupe look-up it plans against
(:class:`PendingSeen`), and a plan split per ClickHouse shard (:func:`split_plan`).  The
planner that fills a plan is ``streams.planner``; ``streams.sink`` writes the plan and
records its keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

from schemas.metering.contributions import DeadLetterReason
from schemas.metering.fastpath import ContributionRow as MeterRow
from schemas.storage.agg_feed import AggRow, Contribution
from schemas.storage.cluster import shard_of
from schemas.storage.events_table import RawRow
from streams.dedupe import SeenRecord

try:  # a chunk's raw rows as columns, from the native plan to the raw insert
    from meterline_native import RawRows as NativeRawRows
except ImportError:  # not built, or built from older sources: rows are tuples in a list
    NativeRawRows = None
try:  # a chunk's folded contributions as structs, from the native plan to the windows insert
    from meterline_native import Groups as NativeGroups
except ImportError:  # not built, or built from older sources: the fold is a dictionary
    NativeGroups = None
try:  # the keys of a batch's pending chunks, one map for all of them
    from meterline_native import PendingKeys as NativePendingKeys
except ImportError:  # not built, or built from older sources: the native plan is not used
    NativePendingKeys = None

__all__ = [
    "EVENTS",
    "SUM",
    "BatchPlan",
    "DeadLetter",
    "FoldedGroups",
    "GroupKey",
    "Kept",
    "NativeGroups",
    "NativePendingKeys",
    "NativeRawRows",
    "PendingSeen",
    "Record",
    "RowsSeen",
    "SeenLookup",
    "split_plan",
]

Kept = tuple[int, int, int, int, list[MeterRow]]
"""A kept event that adds to windows: (partition, offset, index, ingestion minute in
seconds, its contributions)."""
GroupKey = tuple[str, str, str, int, int, int, str]
"""(meter, subject, group_key, window_start_ms, ingest_minute_s, partition, uniq)."""
# a group's aggregated-feed row (``agg_feed.AGG_COLUMNS``), mutable while a plan is built:
# its partial states are fields 7-10 (events, sum, max, min) and 12-16 (latest value, its
# event ms, offset, index, highest offset); the insert reads the lists as they are
GroupState = list[Any]
EVENTS, SUM = 7, 8


@dataclass(frozen=True, slots=True)
class Record:
    """A record of the events topic, as the sink needs it.

    ``batch``: the value holds several events, one per line (``schemas.wire``).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    batch: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event that cannot be metered: ``value`` is its exact bytes, ``index`` its place
    in the record."""

    record: Record
    reason: DeadLetterReason
    detail: str
    index: int = 0
    value: bytes = b""


class SeenLookup(Protocol):
    def get(self, key: str) -> SeenRecord | None: ...


class PendingSeen:
    """A dedupe store seen through the keys of planned chunks not yet finished: the raw
    rows of native plans (``add_plan``; their rows are their dedupe entries, indexed in
    one map for the batch: ``meterline_native.PendingKeys``), newest first, then entries
    added one by one (``add``), then the store."""

    def __init__(self, store: SeenLookup) -> None:
        self.store = store
        self.pending: dict[str, SeenRecord] = {}
        self.keys: Any = NativePendingKeys() if NativePendingKeys is not None else None
        """The native plans' raw rows, their keys in one map (``None`` without the
        native module: no plan is native then)."""
        self._store_get = store.get  # bound once: the planner calls get per event

    def get(self, key: str) -> SeenRecord | None:
        found = self.pending_get(key)
        return found if found is not None else self._store_get(key)

    def pending_get(self, key: str) -> SeenRecord | None:
        """Where ``key`` was accepted by a planned chunk, or ``None`` (the store not asked)."""
        if self.keys:
            found: SeenRecord | None = self.keys.find_record(key, SeenRecord)
            if found is not None:
                return found
        return self.pending.get(key)

    def add(self, entries: Sequence[tuple[str, SeenRecord]]) -> None:
        self.pending.update(entries)

    def add_plan(self, plan: BatchPlan) -> None:
        """A planned chunk's keys: a native plan's raw rows as they are (no entry built),
        any other plan's entries."""
        if type(plan.seen) is RowsSeen:
            self.keys.add(plan.seen.rows)
        else:
            self.add(plan.seen)

    def settle(self, plan: BatchPlan) -> None:
        """``plan`` is written and recorded: its raw rows stay a pending look-up without
        their events' bytes (the batch's later chunks still find its keys here first)."""
        if type(plan.seen) is RowsSeen:
            self.keys.settle(plan.seen.rows)


class RowsSeen(Sequence[tuple[str, SeenRecord]]):
    """A native plan's dedupe entries, read from its raw rows (one entry per row, in row
    order: ``RawRows.seen_entries``), built only when read."""

    __slots__ = ("_entries", "rows")

    def __init__(self, rows: Any) -> None:
        self.rows = rows
        self._entries: list[tuple[str, SeenRecord]] | None = None

    def _built(self) -> list[tuple[str, SeenRecord]]:
        if self._entries is None:
            self._entries = self.rows.seen_entries(SeenRecord)
        return self._entries

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> tuple[str, SeenRecord]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, SeenRecord]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._built()[index]

    def __iter__(self) -> Iterator[tuple[str, SeenRecord]]:
        return iter(self._built())

    def __eq__(self, other: object) -> bool:
        return self._built() == (list(other) if isinstance(other, Sequence) else other)

    __hash__ = None  # type: ignore[assignment]


class FoldedGroups(Mapping[GroupKey, GroupState]):
    """A native plan's folded groups (``meterline_native.Groups``: one struct per row,
    ``schemas/native/src/folded.rs``) read as the Python fold's dictionary.  The windows
    insert encodes the rows from the structs (:meth:`BatchPlan.aggregated`); the
    dictionary, of new lists, is built only when read (tests, a plan split per shard)."""

    __slots__ = ("_dict", "native")

    def __init__(self, native: Any) -> None:
        self.native = native
        self._dict: dict[GroupKey, GroupState] | None = None

    def _built(self) -> dict[GroupKey, GroupState]:
        if self._dict is None:
            self._dict = dict(self.native.items())
        return self._dict

    def __getitem__(self, key: GroupKey) -> GroupState:
        return self._built()[key]

    def __iter__(self) -> Iterator[GroupKey]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self.native)


@dataclass(slots=True)
class BatchPlan:
    raw_rows: Sequence[RawRow] = field(default_factory=list)
    """Rows of ``usage_events`` in its column order (``events_table.COLUMNS``): tuples in a
    list, or from the native plan a ``meterline_native.RawRows``, which reads as the same
    tuples and which the raw insert encodes without the interpreter lock
    (``schemas/native/src/raw_rows.rs``)."""
    seen: Sequence[tuple[str, SeenRecord]] = field(default_factory=list)
    """The kept events' dedupe entries: a list, or from the native plan its raw rows read
    as entries (:class:`RowsSeen`)."""
    dead: list[DeadLetter] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    """The kept events that add to windows, in plan order."""
    groups: Mapping[GroupKey, GroupState] = field(default_factory=dict)
    """Their contributions folded per aggregated-feed row, in first-seen order: a
    dictionary the planner fills, or from the native plan its :class:`FoldedGroups`."""
    spans: dict[int, list[int]] = field(default_factory=dict)
    """Per partition, the lowest and highest offset of a kept event with contributions."""
    namespace: str = ""

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n

    @property
    def contributions(self) -> int:
        """How many contributions the kept events make: each one is counted in exactly one
        folded group (``len(feed_rows)``, without building them)."""
        if type(self.groups) is FoldedGroups:
            return int(self.groups.native.contributions())
        return sum(state[EVENTS] for state in self.groups.values())

    @property
    def feed_rows(self) -> list[Contribution]:
        """One row per contribution of a kept event, in the per-event feed's column order
        (built on demand: only a write that must split contributions by offset needs it)."""
        ns = self.namespace
        return [
            (ns, meter, who, group, window // 1000, minute_s, value, uniq, ms, part, off, idx)
            for part, off, idx, minute_s, rows in self.kept
            for meter, who, group, window, value, uniq, ms in rows
        ]

    def aggregated(self) -> Sequence[AggRow]:
        """The aggregated-feed rows of every contribution (``agg_feed.AGG_COLUMNS``): the
        folded groups themselves, no row built (from the native plan its ``Groups``, which
        reads as the same lists and which the insert encodes from its structs)."""
        if type(self.groups) is FoldedGroups:
            return self.groups.native  # type: ignore[no-any-return]
        return list(self.groups.values())  # type: ignore[arg-type]  # lists shaped as AggRow


def split_plan(plan: BatchPlan, shards: int) -> list[BatchPlan]:
    """The plan's rows per ClickHouse shard, by subject (``schemas.storage.cluster``):
    each part has its shard's raw rows, kept events, folded groups and spans.  The
    dedupe and dead-letter results stay with the whole plan (:meth:`MeteringSink.finish`)."""
    parts = [BatchPlan(namespace=plan.namespace) for _ in range(shards)]
    where: dict[str, int] = {}

    def shard(subject: str) -> int:
        found = where.get(subject)
        if found is None:
            found = where[subject] = shard_of(subject, shards)
        return found

    if NativeRawRows is not None and isinstance(plan.raw_rows, NativeRawRows):
        for part, rows in zip(parts, plan.raw_rows.split(shard, shards), strict=True):
            part.raw_rows = rows
    else:
        part_rows: list[list[RawRow]] = [[] for _ in range(shards)]
        for row in plan.raw_rows:
            part_rows[shard(row[4])].append(row)
        for part, rows_of_part in zip(parts, part_rows, strict=True):
            part.raw_rows = rows_of_part
    for partition, offset, index, minute_s, rows in plan.kept:
        by_shard: dict[int, list[MeterRow]] = {}
        for meter_row in rows:  # a meter may bill a subject other than the event's
            by_shard.setdefault(shard(meter_row[1]), []).append(meter_row)
        for number, own in by_shard.items():
            part = parts[number]
            part.kept.append((partition, offset, index, minute_s, own))
            span = part.spans.get(partition)
            if span is None:
                part.spans[partition] = [offset, offset]
            else:
                span[0], span[1] = min(span[0], offset), max(span[1], offset)
    for key, state in plan.groups.items():
        parts[shard(key[1])].groups[key] = state  # type: ignore[index]  # a part's is a dict
    return parts
