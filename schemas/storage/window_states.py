"""Which aggregate states the windows tables keep: every aggregation's, or only what
SUM, COUNT and AVG meters need.

Each windows table (``meter_windows`` and its rollups) keeps a row's value as mergeable
aggregate states, and ClickHouse pays for every state column on every row it writes and
merges, whether or not the state holds anything (``docs/benchmarks.md``, *What a windows
row costs the server*).  Two sets, chosen when a database is created
(``clickhouse_window_states``):

* ``full`` (the default): sum, count, uniqExact (UNIQUE_COUNT), max, min, argMax by
  (event time, Kafka offset, index within the record) (LATEST), and the write progress —
  every aggregation, for any meter defined at any time;
* ``additive``: sum, count and the write progress — SUM, COUNT and AVG meters only (AVG is
  sum / count).  A windows row costs the server about 0.6 of the full set's CPU.

The set is read back from the database's own columns (:func:`states_of`), never from the
setting, and checked against the meters at every start (:func:`check_meters`): a meter
whose aggregation needs a state the database does not keep is refused before anything is
read or written, naming the meter and the fix.  A database does not change set: the way to
the other one is a new database, re-metered from the raw events (``meterline backfill``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from schemas.errors import InvalidInput, Problem
from schemas.metering.definitions import Aggregation, MeterDefinition
from schemas.storage.feed import DEC
from schemas.storage.sql import Statement, lit

if TYPE_CHECKING:
    from schemas.storage.engine import Engine

__all__ = [
    "WindowStates",
    "check_meters",
    "merge_states",
    "state_columns",
    "states_from_agg",
    "states_from_feed",
    "states_in",
    "states_of",
    "states_query",
]


class WindowStates(StrEnum):
    FULL = "full"
    ADDITIVE = "additive"

    @property
    def aggregations(self) -> frozenset[Aggregation]:
        """The aggregations whose meters these states answer."""
        if self is WindowStates.FULL:
            return frozenset(Aggregation)
        return frozenset({Aggregation.SUM, Aggregation.COUNT, Aggregation.AVG})


@dataclass(frozen=True, slots=True)
class _State:
    column: str
    type: str
    from_feed: str
    """Its state over a block of per-event feed rows (``windows_table``'s views)."""
    from_agg: str
    """Its state over a block of aggregated rows expanded by ``ARRAY JOIN range(events) AS
    k`` (``agg_feed``'s views): every state but the count reads the first copy only."""
    additive: bool
    """Kept by the ``additive`` set too."""

    @property
    def merge(self) -> str:
        """Its state re-aggregated from stored states (a rollup filled from the minutes)."""
        function = self.type.removeprefix("AggregateFunction(").split(",")[0].rstrip(")")
        return f"{function}MergeState({self.column})"


_STATES = (
    _State("value_sum", f"AggregateFunction(sum, {DEC})", "sumState(value)",
           "sumStateIf(value_sum, k = 0)", True),
    _State("event_count", "AggregateFunction(count)", "countState()", "countState()", True),
    _State("value_uniq", "AggregateFunction(uniqExact, String)", "uniqExactState(uniq)",
           "uniqExactStateIf(uniq, k = 0)", False),
    _State("value_max", f"AggregateFunction(max, {DEC})", "maxState(value)",
           "maxStateIf(value_max, k = 0)", False),
    _State("value_min", f"AggregateFunction(min, {DEC})", "minState(value)",
           "minStateIf(value_min, k = 0)", False),
    _State("value_latest", f"AggregateFunction(argMax, {DEC}, Tuple(Int64, UInt64, UInt32))",
           "argMaxState(value, (event_ms, source_offset, source_index))",
           "argMaxStateIf(latest_value, (latest_ms, latest_offset, latest_index), k = 0)",
           False),
    _State("max_offset", "AggregateFunction(max, UInt64)", "maxState(source_offset)",
           "maxStateIf(max_offset, k = 0)", True),
)  # fmt: skip
"""Every state a windows table can keep, in column order."""


def _kept(states: WindowStates) -> tuple[_State, ...]:
    return tuple(s for s in _STATES if states is WindowStates.FULL or s.additive)


def state_columns(states: WindowStates) -> str:
    """The state columns of a windows table's ``CREATE TABLE``, with a leading space."""
    return " " + ", ".join(f"{s.column} {s.type}" for s in _kept(states))


def states_from_feed(states: WindowStates) -> str:
    """The states of a block of per-event feed rows, as a view computes them."""
    return " " + ", ".join(f"{s.from_feed} AS {s.column}" for s in _kept(states))


def states_from_agg(states: WindowStates) -> str:
    """The states of a block of aggregated rows; the source is ``… ARRAY JOIN
    range(events) AS k``."""
    return " " + ", ".join(f"{s.from_agg} AS {s.column}" for s in _kept(states))


def merge_states(states: WindowStates) -> str:
    """The states re-aggregated from a windows table's stored ones."""
    return " " + ", ".join(f"{s.merge} AS {s.column}" for s in _kept(states))


def states_query(database: str) -> Statement:
    """Rows ``(column,)``: the state columns ``meter_windows`` of ``database`` has (on a
    cluster, its ``Distributed`` table's, which are the shards')."""
    names = ", ".join(lit(s.column) for s in _STATES)
    return Statement(
        f"SELECT name FROM system.columns WHERE database = {lit(database)}"
        f" AND table = 'meter_windows' AND name IN ({names})"
    )


def states_of(columns: Iterable[str]) -> WindowStates | None:
    """The set a windows table keeps, from its state columns; ``None``: no table (or no
    state column: nothing to read)."""
    found = set(columns)
    if not found:
        return None
    if all(s.column in found for s in _STATES):
        return WindowStates.FULL
    return WindowStates.ADDITIVE


def states_in(engine: Engine, database: str) -> WindowStates | None:
    """The set ``database``'s windows tables keep; ``None``: it has none."""
    return states_of(str(name) for (name,) in engine.execute(states_query(database).to_sql()))


def check_meters(meters: Iterable[MeterDefinition], states: WindowStates, database: str) -> None:
    """Refuse meters whose aggregation ``states`` cannot answer, naming each and the fix."""
    kept = ", ".join(sorted(a.value for a in states.aggregations))
    problems = [
        Problem(
            path=f"{meter.slug}.aggregation",
            message=f"{meter.aggregation.value} needs window states that ClickHouse database "
            f"{database} does not keep: it was created with the {states.value} ones, which "
            f"answer {kept} meters only",
            fix="meter it in a database created with METERLINE_CLICKHOUSE_WINDOW_STATES=full "
            "(the default), re-metered from the raw events (`meterline backfill`), or give "
            f"the meter one of {kept}",
        )
        for meter in meters
        if meter.aggregation not in states.aggregations
    ]
    if problems:
        raise InvalidInput("meters", problems)
