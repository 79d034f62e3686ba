"""``meter_windows_hourly`` and ``meter_windows_daily``: the minute windows rolled up by
UTC hour and UTC day, for questions about every customer at once.

Each rollup keeps the same aggregate states as ``meter_windows`` (so any coarser window
is still exact; ``schemas.storage.window_states``), without the ingestion minute, ordered
by time first: ``(namespace, meter, window_start, subject, ...)``.  A materialized view
fills it from the main feed, next to the minute table's view; a repair feed and view of
its own let the worker write exactly what the rollup lacks after a partial failure (see
``windows_table``).

:class:`WindowStore` is the set of windows tables as the worker writes them: the minute
table and both rollups, each with its repair feed, and their progress in one query.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.storage.agg_feed import agg_feed_ddl
from schemas.storage.feed import feed_ddl
from schemas.storage.sql import Statement, lit
from schemas.storage.window_states import (
    FULL_STATES,
    StateSet,
    merge_states,
    state_columns,
    states_from_agg,
    states_from_feed,
)
from schemas.storage.windows_table import WindowsTable

__all__ = ["GRAINS", "RollupTable", "WindowStore"]

GRAINS = {"hourly": 3600, "daily": 86400}
"""Rollup name → the width of its windows in seconds (UTC-aligned)."""

_KEYS = "namespace, meter, window_start, subject, group_key, source_partition"


@dataclass(frozen=True, slots=True)
class RollupTable:
    database: str
    grain: str
    """A key of :data:`GRAINS`."""
    states: StateSet = FULL_STATES

    @property
    def seconds(self) -> int:
        return GRAINS[self.grain]

    @property
    def name(self) -> str:
        return f"{self.database}.meter_windows_{self.grain}"

    @property
    def view(self) -> str:
        return f"{self.name}_mv"

    @property
    def repair_feed(self) -> str:
        return f"{self.database}.meter_window_feed_repair_{self.grain}"

    @property
    def repair_view(self) -> str:
        return f"{self.name}_repair_mv"

    @property
    def agg_view(self) -> str:
        return f"{self.name}_agg_mv"

    @property
    def agg_repair_feed(self) -> str:
        return f"{self.database}.meter_window_agg_feed_repair_{self.grain}"

    @property
    def agg_repair_view(self) -> str:
        return f"{self.name}_agg_repair_mv"

    def _bucket(self, column: str) -> str:
        return f"toDateTime(intDiv({column}, {self.seconds}) * {self.seconds}) AS window_start"

    def table_ddl(self) -> Statement:
        return Statement(
            f"CREATE TABLE IF NOT EXISTS {self.name} ("
            " namespace String, meter String, subject String, group_key String,"
            " window_start DateTime, source_partition UInt32,"
            f"{state_columns(self.states)}"
            f") ENGINE = AggregatingMergeTree() ORDER BY ({_KEYS})"
        )

    def view_ddl(self, view: str, source: str, since_minute_s: int = 0) -> Statement:
        """The view from a feed into the rollup.  ``since_minute_s``: only rows ingested
        from that minute on (a rollup added to a live table is backfilled below it)."""
        where = f" WHERE ingest_minute_s >= {since_minute_s}" if since_minute_s else ""
        return Statement(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} TO {self.name} AS SELECT"
            f" namespace, meter, subject, group_key, {self._bucket('window_start_s')},"
            f" source_partition,{states_from_feed(self.states)}"
            f" FROM {source}{where} GROUP BY {_KEYS}"
        )

    def agg_view_ddl(self, view: str, source: str) -> Statement:
        """The view from an aggregated feed into the rollup."""
        return Statement(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} TO {self.name} AS SELECT"
            f" namespace, meter, subject, group_key, {self._bucket('window_start_s')},"
            f" source_partition,{states_from_agg(self.states)}"
            f" FROM {source} ARRAY JOIN range(events) AS k GROUP BY {_KEYS}"
        )

    def agg_ddl(self, agg_feed: str) -> list[Statement]:
        return [
            agg_feed_ddl(self.agg_repair_feed),
            self.agg_view_ddl(self.agg_view, agg_feed),
            self.agg_view_ddl(self.agg_repair_view, self.agg_repair_feed),
        ]

    def ddl(self, feed: str, since_minute_s: int = 0) -> list[Statement]:
        return [
            self.table_ddl(),
            feed_ddl(self.repair_feed),
            self.view_ddl(self.view, feed, since_minute_s),
            self.view_ddl(self.repair_view, self.repair_feed),
        ]

    def backfill(self, minute_table: str, before_minute_s: int) -> Statement:
        """Roll up the minute rows ingested before a minute (the states merge exactly)."""
        return Statement(
            f"INSERT INTO {self.name} SELECT namespace, meter, subject, group_key,"
            f" {self._bucket('toUInt32(window_start)')}, source_partition,"
            f"{merge_states(self.states)}"
            f" FROM {minute_table}"
            f" WHERE ingest_minute < toDateTime({before_minute_s}) GROUP BY {_KEYS}"
        )


@dataclass(frozen=True, slots=True)
class WindowStore:
    """The windows tables the worker writes: minute, hourly, daily."""

    database: str
    states: StateSet = FULL_STATES
    """The aggregate states their DDL keeps; what they are read and written with is the
    same either way."""

    @property
    def minute(self) -> WindowsTable:
        return WindowsTable(self.database, self.states)

    @property
    def rollups(self) -> tuple[RollupTable, ...]:
        return tuple(RollupTable(self.database, grain, self.states) for grain in GRAINS)

    def tables(self) -> dict[str, tuple[str, str]]:
        """Table label → (table, its per-event repair feed)."""
        minute = self.minute
        return {
            "minute": (minute.name, minute.repair_feed),
            **{r.grain: (r.name, r.repair_feed) for r in self.rollups},
        }

    def agg_repair_feeds(self) -> dict[str, str]:
        """Table label → its aggregated repair feed (what this build's worker writes)."""
        return {
            "minute": self.minute.agg_repair_feed,
            **{r.grain: r.agg_repair_feed for r in self.rollups},
        }

    def agg_ddl(self) -> list[Statement]:
        """The aggregated feed, its views into every table, and their repair feeds."""
        minute = self.minute
        return [*minute.agg_ddl(), *(s for r in self.rollups for s in r.agg_ddl(minute.agg_feed))]

    def feeds(self) -> list[str]:
        """Every feed whose views write the windows tables (main, aggregated, repairs)."""
        minute = self.minute
        return [
            minute.feed,
            minute.agg_feed,
            minute.repair_feed,
            minute.agg_repair_feed,
            *(f for r in self.rollups for f in (r.repair_feed, r.agg_repair_feed)),
        ]

    def views(self) -> list[tuple[str, Statement]]:
        """Every view into the windows tables: (name, its ``CREATE``)."""
        minute = self.minute
        views = [
            (minute.view, minute.view_ddl(minute.view, minute.feed)),
            (minute.repair_view, minute.view_ddl(minute.repair_view, minute.repair_feed)),
            (minute.agg_view, minute.agg_view_ddl(minute.agg_view, minute.agg_feed)),
            (
                minute.agg_repair_view,
                minute.agg_view_ddl(minute.agg_repair_view, minute.agg_repair_feed),
            ),
        ]
        for r in self.rollups:
            views += [
                (r.view, r.view_ddl(r.view, minute.feed)),
                (r.repair_view, r.view_ddl(r.repair_view, r.repair_feed)),
                (r.agg_view, r.agg_view_ddl(r.agg_view, minute.agg_feed)),
                (r.agg_repair_view, r.agg_view_ddl(r.agg_repair_view, r.agg_repair_feed)),
            ]
        return views

    def ddl(self) -> list[Statement]:
        return [
            *self.minute.ddl(),
            *(s for r in self.rollups for s in r.ddl(self.minute.feed)),
            *(s for r in self.rollups for s in r.agg_ddl(self.minute.agg_feed)),
        ]

    def progress(self, namespace: str) -> Statement:
        """Rows ``(table label, source_partition, highest stored offset)``."""
        parts = [
            f"SELECT {lit(label)} AS label, source_partition, maxMerge(max_offset) AS stored"
            f" FROM {table} WHERE namespace = {lit(namespace)} GROUP BY source_partition"
            for label, (table, _) in self.tables().items()
        ]
        return Statement(" UNION ALL ".join(parts))
