"""``meter_windows``: one-minute windows per (meter, subject, group-by values), as
mergeable aggregate states, so that any coarser window is computed exactly; and its
rollups by hour and by day (``schemas.storage.rollups``).

Layout.  ``meter_windows`` is ordered by subject first — ``(namespace, meter, subject,
window_start, ...)`` — so one customer's usage over a long range reads only that
customer's rows (the API's subject queries, the customer view, billing, reconcile).  The
rollups are ordered by time first, for questions about every customer at once
(dashboards, top customers).  ``schemas.storage.planner`` picks the table for a query.

Write path.  The worker inserts one row per (event, meter) into ``meter_window_feed``, a
``Null`` table; three materialized views aggregate each insert block into
``meter_windows`` and the two rollups (AggregatingMergeTree).  None of them has a
PARTITION BY, so one insert becomes exactly one part per table.  The views of one insert
are not atomic together (a failure can land the block in some tables and not others), so
each table also has a repair feed of its own, and every table keeps its own progress
(below): after a failure the worker writes each table exactly what it lacks.

Ingestion time.  Minute rows are also keyed by ``ingest_minute``, the minute the broker
appended the event (its LogAppendTime), so usage can be read *as of* an ingestion cutoff —
a closed period re-rated with the same cutoff gives the same numbers — and usage that
arrived after a cutoff can be billed as an adjustment.  An event is *late* when its
ingest minute is past its window's end plus the grace; it is still counted in its own
window.  The rollups drop the ingestion minute: billing reads the minute table.

Progress.  Each row also carries ``maxState(source_offset)`` per source partition.
Because it is written in the same part as the aggregates, the highest offset a table
reports for a partition is exactly the last event whose contribution that table holds.
After a crash the worker skips contributions at or below it, table by table, so a batch
that was written but not yet committed to Kafka is never counted twice.

States kept: sum and count always, and of uniqExact, max, min and argMax those the
database's meters need (``schemas.storage.window_states``); AVG is sum / count, computed
in Python with Decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from schemas.metering.definitions import Aggregation
from schemas.storage.agg_feed import AGG_COLUMNS, AggRow, agg_feed_ddl
from schemas.storage.feed import FEED_COLUMNS, FeedRow, feed_ddl
from schemas.storage.sql import OnTable, Statement, lit
from schemas.storage.window_states import (
    FULL_STATES,
    StateSet,
    state_columns,
    states_from_agg,
    states_from_feed,
)

__all__ = [
    "FEED_COLUMNS",
    "GROUP_KEYS",
    "LATEST_TYPE_MARK",
    "MINUTE_GRANULE_ROWS",
    "SORTING_KEY",
    "FeedRow",
    "MeterQuery",
    "MeterSubjects",
    "RangeQuery",
    "UsageQuery",
    "WindowSize",
    "WindowsTable",
    "finish_value",
    "value_columns",
]

LATEST_TYPE_MARK = "Tuple(Int64,UInt64,UInt32)"
"""How ``value_latest``'s tie-break tuple reads in ``system.columns`` (spaces removed)."""

GROUP_KEYS = "namespace, meter, window_start, subject, group_key, ingest_minute, source_partition"
"""What a view groups a feed block by: a minute row's identity."""
SORTING_KEY = "namespace, meter, subject, window_start, group_key, ingest_minute, source_partition"
"""Subject first: one customer over a long range reads only its own rows."""
MINUTE_GRANULE_ROWS = 1024
"""``index_granularity`` of ``meter_windows``: rows per index mark.  One customer's
period is a few rows in each of the table's parts, and a read takes whole granules: with
ClickHouse's default 8,192 a customer's three meters over a month read ~95,000 rows, with
1,024 ~11,600, and the statement took 9.5 ms instead of 16.6 ms on a busy 2-core box
(``docs/benchmarks.md``, *Entitlement check*).  The index grows eight times: one mark per
1,024 rows, ~1 MB of marks per billion rows per key column."""


class WindowSize(StrEnum):
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"
    MONTH = "MONTH"


def _select_value(kind: Aggregation) -> str:
    """The SQL columns a kind needs; :func:`finish_value` turns them into one value."""
    return {
        Aggregation.SUM: "sumMerge(value_sum)",
        Aggregation.COUNT: "countMerge(event_count)",
        Aggregation.UNIQUE_COUNT: "uniqExactMerge(value_uniq)",
        Aggregation.MAX: "maxMerge(value_max)",
        Aggregation.MIN: "minMerge(value_min)",
        Aggregation.AVG: "sumMerge(value_sum), countMerge(event_count)",
        Aggregation.LATEST: "argMaxMerge(value_latest)",
    }[kind]


def value_columns(kind: Aggregation) -> tuple[str, ...]:
    """The SQL columns a kind needs, one by one (:func:`finish_value` takes them)."""
    return tuple(_select_value(kind).split(", "))


def _rank_value(kind: Aggregation) -> str:
    """The value a kind is ranked by (AVG: sum / count)."""
    if kind is Aggregation.AVG:
        return "sumMerge(value_sum) / countMerge(event_count)"
    return _select_value(kind)


def finish_value(kind: Aggregation, columns: Sequence[object]) -> Decimal:
    """The meter value from the columns :func:`_select_value` produced, as a Decimal."""
    if kind is Aggregation.AVG:
        total, count = columns
        assert isinstance(count, int)
        return Decimal(0) if count == 0 else Decimal(str(total)) / Decimal(count)
    (value,) = columns
    return Decimal(value) if isinstance(value, int) else Decimal(str(value))


def _width(kind: Aggregation) -> int:
    return 2 if kind is Aggregation.AVG else 1


class WindowsTable:
    def __init__(self, database: str, states: StateSet = FULL_STATES) -> None:
        self.database = database
        self.states = states
        """The aggregate states its DDL keeps (``window_states``); readers need not say."""
        self.feed = f"{database}.meter_window_feed"
        self.name = f"{database}.meter_windows"
        self.view = f"{database}.meter_windows_mv"
        self.repair_feed = f"{database}.meter_window_feed_repair_minute"
        self.repair_view = f"{database}.meter_windows_repair_mv"
        self.agg_feed = f"{database}.meter_window_agg_feed"
        self.agg_view = f"{database}.meter_windows_agg_mv"
        self.agg_repair_feed = f"{database}.meter_window_agg_feed_repair_minute"
        self.agg_repair_view = f"{database}.meter_windows_agg_repair_mv"

    def table_ddl(self, name: str) -> Statement:
        return Statement(
            f"CREATE TABLE IF NOT EXISTS {name} ("
            " namespace String, meter String, subject String, group_key String,"
            " window_start DateTime, ingest_minute DateTime, source_partition UInt32,"
            f"{state_columns(self.states)}"
            f") ENGINE = AggregatingMergeTree() ORDER BY ({SORTING_KEY})"
            f" SETTINGS index_granularity = {MINUTE_GRANULE_ROWS}"
        )

    def view_ddl(self, view: str, source: str) -> Statement:
        """The view from a feed (the main one or the repair feed) into ``meter_windows``."""
        return Statement(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} TO {self.name} AS SELECT"
            " namespace, meter, subject, group_key,"
            " toDateTime(window_start_s) AS window_start,"
            " toDateTime(ingest_minute_s) AS ingest_minute, source_partition,"
            f"{states_from_feed(self.states)}"
            f" FROM {source} GROUP BY {GROUP_KEYS}"
        )

    def agg_view_ddl(self, view: str, source: str) -> Statement:
        """The view from an aggregated feed (``agg_feed``) into ``meter_windows``."""
        return Statement(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} TO {self.name} AS SELECT"
            " namespace, meter, subject, group_key,"
            " toDateTime(window_start_s) AS window_start,"
            " toDateTime(ingest_minute_s) AS ingest_minute, source_partition,"
            f"{states_from_agg(self.states)}"
            f" FROM {source} ARRAY JOIN range(events) AS k GROUP BY {GROUP_KEYS}"
        )

    def agg_ddl(self) -> list[Statement]:
        return [
            agg_feed_ddl(self.agg_feed),
            agg_feed_ddl(self.agg_repair_feed),
            self.agg_view_ddl(self.agg_view, self.agg_feed),
            self.agg_view_ddl(self.agg_repair_view, self.agg_repair_feed),
        ]

    def ddl(self) -> list[Statement]:
        return [
            feed_ddl(self.feed),
            feed_ddl(self.repair_feed),
            self.table_ddl(self.name),
            self.view_ddl(self.view, self.feed),
            self.view_ddl(self.repair_view, self.repair_feed),
            *self.agg_ddl(),
        ]

    def agg_insert_args(
        self, rows: Sequence[AggRow], feed: str | None = None
    ) -> tuple[str, tuple[str, ...], Sequence[AggRow]]:
        """The insert of aggregated rows into ``feed`` (default: the aggregated feed)."""
        return feed or self.agg_feed, AGG_COLUMNS, rows

    def insert_args(
        self, rows: Sequence[FeedRow], feed: str | None = None
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        """The insert of feed rows into ``feed`` (default: the main feed)."""
        return feed or self.feed, FEED_COLUMNS, [row.as_row() for row in rows]

    def progress(self, namespace: str) -> Statement:
        """Rows ``(source_partition, last stored offset)`` for a namespace."""
        return Statement(
            f"SELECT source_partition, maxMerge(max_offset) FROM {self.name}"
            f" WHERE namespace = {lit(namespace)} GROUP BY source_partition"
            " ORDER BY source_partition"
        )

    def meter_progress(self, namespace: str, meter: str) -> Statement:
        """Rows ``(source_partition, highest offset)`` that one meter has windows for."""
        return Statement(
            f"SELECT source_partition, maxMerge(max_offset) FROM {self.name}"
            f" WHERE namespace = {lit(namespace)} AND meter = {lit(meter)}"
            " GROUP BY source_partition ORDER BY source_partition"
        )

    def chunk_exists(
        self,
        namespace: str,
        meter: str,
        partition: int,
        start_s: int,
        end_s: int,
        table: str | None = None,
    ) -> Statement:
        """Rows ``(count,)``: whether a meter has windows from one partition in a range of
        ``table`` (default ``meter_windows``; a rollup's range must be on its grain)."""
        return Statement(
            f"SELECT count() FROM {table or self.name} WHERE namespace = {lit(namespace)}"
            f" AND meter = {lit(meter)} AND source_partition = {partition}"
            f" AND window_start >= toDateTime({start_s}) AND window_start < toDateTime({end_s})"
        )


@dataclass(frozen=True, slots=True)
class UsageQuery(OnTable):
    """A meter's value per subject over ``[start_s, end_s)`` (epoch seconds, UTC).

    Result rows: ``(subject, *value columns)``; pass the value columns to
    :func:`finish_value`.
    """

    namespace: str
    meter: str
    kind: Aggregation
    start_s: int
    end_s: int
    ingested_from_s: int | None = None
    ingested_before_s: int | None = None
    """Optional ingestion-time bounds ``[from, before)``, in whole minutes: usage as of a
    cutoff (reproducible invoices) or usage that arrived after one (adjustments)."""
    subjects: tuple[str, ...] | None = None
    """Only these subjects (one customer's quote or estimate); ``None``: every subject."""

    def _sql(self, table: str) -> str:
        where = [
            f"namespace = {lit(self.namespace)}",
            f"meter = {lit(self.meter)}",
            f"window_start >= toDateTime({self.start_s})",
            f"window_start < toDateTime({self.end_s})",
        ]
        if self.subjects is not None:
            where.append(f"subject IN ({', '.join(lit(s) for s in self.subjects) or lit('')})")
        if self.ingested_from_s is not None:
            where.append(f"ingest_minute >= toDateTime({self.ingested_from_s})")
        if self.ingested_before_s is not None:
            where.append(f"ingest_minute < toDateTime({self.ingested_before_s})")
        return (
            f"SELECT subject, {_select_value(self.kind)} FROM {table}"
            f" WHERE {' AND '.join(where)} GROUP BY subject ORDER BY subject"
        )

    @property
    def width(self) -> int:
        return _width(self.kind)


@dataclass(frozen=True, slots=True)
class MeterQuery(OnTable):
    """Windowed meter values, in the shape of OpenMeter's meter query.

    Result rows: ``(window_start_s, subject, *group values, *value columns)``.  Window
    ends are computed by the caller (a DAY or MONTH in a timezone is not a fixed length).
    """

    namespace: str
    meter: str
    kind: Aggregation
    start_s: int
    end_s: int
    window_size: WindowSize = WindowSize.HOUR
    timezone: str = "UTC"
    subjects: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()
    filter_group_by: tuple[tuple[str, str], ...] = ()
    across_subjects: bool = False
    """One row per window (and group) for all subjects together: the states are merged
    across subjects, so MAX, UNIQUE_COUNT and LATEST stay exact.  ``subject`` is ''."""
    top: int | None = None
    """Only the ``top`` rows with the highest value (ties by subject), highest first."""

    def _bucket(self) -> str:
        tz = lit(self.timezone)
        return {
            WindowSize.MINUTE: "toUnixTimestamp(window_start)",
            WindowSize.HOUR: f"toUnixTimestamp(toStartOfHour(window_start, {tz}))",
            WindowSize.DAY: f"toUnixTimestamp(toStartOfDay(window_start, {tz}))",
            WindowSize.MONTH: (
                f"toUnixTimestamp(toDateTime(toStartOfMonth(window_start, {tz}), {tz}))"
            ),
        }[self.window_size]

    def _sql(self, table: str) -> str:
        groups = [
            f"visitParamExtractString(group_key, {lit(name)}) AS g_{i}"
            for i, name in enumerate(self.group_by)
        ]
        where = [
            f"namespace = {lit(self.namespace)}",
            f"meter = {lit(self.meter)}",
            f"window_start >= toDateTime({self.start_s})",
            f"window_start < toDateTime({self.end_s})",
        ]
        if self.subjects:
            where.append(f"subject IN ({', '.join(lit(s) for s in self.subjects)})")
        for name, value in self.filter_group_by:
            where.append(f"visitParamExtractString(group_key, {lit(name)}) = {lit(value)}")
        # not aliased 'subject': ClickHouse would read the alias in WHERE subject IN (...)
        who = "'' AS all_subjects" if self.across_subjects else "subject"
        keys = ["bucket", *([] if self.across_subjects else ["subject"])]
        keys += [f"g_{i}" for i in range(len(groups))]
        select = [f"{self._bucket()} AS bucket", who, *groups, _select_value(self.kind)]
        order = ", ".join(keys)
        if self.top is not None:
            order = f"{_rank_value(self.kind)} DESC, {order} LIMIT {int(self.top)}"
        return (
            f"SELECT {', '.join(select)} FROM {table} WHERE {' AND '.join(where)}"
            f" GROUP BY {', '.join(keys)} ORDER BY {order}"
        )

    @property
    def width(self) -> int:
        return _width(self.kind)


@dataclass(frozen=True, slots=True)
class RangeQuery(MeterQuery):
    """A meter query without windows: one bucket for the whole range, keyed by its start."""

    def _bucket(self) -> str:
        return f"toUInt32({self.start_s})"


@dataclass(frozen=True, slots=True)
class MeterSubjects(OnTable):
    """Rows ``(subject,)``: every subject with usage on a meter, sorted."""

    namespace: str
    meter: str
    subjects: tuple[str, ...] | None = None
    """When set, only these subjects (a customer token's view)."""

    def _sql(self, table: str) -> str:
        where = [f"namespace = {lit(self.namespace)}", f"meter = {lit(self.meter)}"]
        if self.subjects is not None:
            listed = ", ".join(lit(s) for s in self.subjects) or "''"
            where.append(f"subject IN ({listed})")
        return f"SELECT DISTINCT subject FROM {table} WHERE {' AND '.join(where)} ORDER BY subject"
