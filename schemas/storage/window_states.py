"""Which aggregate states the windows tables keep: only those the meters need, or every
aggregation's.

Each windows table (``meter_windows`` and its rollups) keeps a row's value as mergeable
aggregate states, and ClickHouse pays for every state column on every row it writes and
merges, whether or not the state holds anything (``docs/benchmarks.md``, *What a windows
row costs the server*).  Every table keeps sum, count and the write progress (SUM, COUNT
and AVG meters: AVG is sum / count); four states serve one aggregation each: uniqExact
(UNIQUE_COUNT), max (MAX), min (MIN), argMax by (event time, Kafka offset, index within
the record) (LATEST).  The kept set (:class:`StateSet`) is read back from the database's
own columns (:func:`states_in`), never from the setting.

``clickhouse_window_states`` (:class:`WindowStates`) chooses how it is kept:

* ``needed`` (the default): a new database keeps the states its meters need, and when a
  meter needs one it does not keep, the start that sees the meter adds it
  (``schemas.storage.state_migration``: a column on each windows table, the views rebuilt
  with writes paused).  Meters that already had windows then are recorded in
  ``window_state_gaps`` (:class:`GapsTable`): their earlier windows lack the state, so a
  meter of theirs redefined to need it is refused instead of answered wrongly.  A cluster
  database keeps every state (cluster databases are not migrated);
* ``full``: every state, for any meter defined at any time (re-defining a meter's
  aggregation over its history stays exact);
* ``additive``: sum and count only; other meters are refused.

A meter whose aggregation needs a state the database does not keep (and will not add), or
lacks over its history, is refused at every start before anything is read or written,
naming the meter and the fix (:func:`check_meters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    "ADDITIVE_STATES",
    "FULL_STATES",
    "GapsTable",
    "StateSet",
    "WindowStates",
    "add_columns",
    "check_meters",
    "merge_states",
    "needed_states",
    "state_columns",
    "states_from_agg",
    "states_from_feed",
    "states_in",
    "states_of",
    "states_query",
]


@dataclass(frozen=True, slots=True)
class _State:
    column: str
    type: str
    from_feed: str
    """Its state over a block of per-event feed rows (``windows_table``'s views)."""
    from_agg: str
    """Its state over a block of aggregated rows expanded by ``ARRAY JOIN range(events) AS
    k`` (``agg_feed``'s views): every state but the count reads the first copy only."""
    serves: Aggregation | None
    """The one aggregation that needs it; ``None``: every table keeps it."""

    @property
    def merge(self) -> str:
        """Its state re-aggregated from stored states (a rollup filled from the minutes)."""
        function = self.type.removeprefix("AggregateFunction(").split(",")[0].rstrip(")")
        return f"{function}MergeState({self.column})"


_STATES = (
    _State("value_sum", f"AggregateFunction(sum, {DEC})", "sumState(value)",
           "sumStateIf(value_sum, k = 0)", None),
    _State("event_count", "AggregateFunction(count)", "countState()", "countState()", None),
    _State("value_uniq", "AggregateFunction(uniqExact, String)", "uniqExactState(uniq)",
           "uniqExactStateIf(uniq, k = 0)", Aggregation.UNIQUE_COUNT),
    _State("value_max", f"AggregateFunction(max, {DEC})", "maxState(value)",
           "maxStateIf(value_max, k = 0)", Aggregation.MAX),
    _State("value_min", f"AggregateFunction(min, {DEC})", "minState(value)",
           "minStateIf(value_min, k = 0)", Aggregation.MIN),
    _State("value_latest", f"AggregateFunction(argMax, {DEC}, Tuple(Int64, UInt64, UInt32))",
           "argMaxState(value, (event_ms, source_offset, source_index))",
           "argMaxStateIf(latest_value, (latest_ms, latest_offset, latest_index), k = 0)",
           Aggregation.LATEST),
    _State("max_offset", "AggregateFunction(max, UInt64)", "maxState(source_offset)",
           "maxStateIf(max_offset, k = 0)", None),
)  # fmt: skip
"""Every state a windows table can keep, in column order."""
_BY_COLUMN = {s.column: s for s in _STATES}
_FOR = {s.serves: s.column for s in _STATES if s.serves is not None}


@dataclass(frozen=True, slots=True)
class StateSet:
    """The states a database's windows tables keep: sum, count and progress always, and
    ``optional`` (column names) of the four that serve one aggregation each."""

    optional: frozenset[str] = frozenset()

    @property
    def states(self) -> tuple[_State, ...]:
        """The kept states, in column order."""
        return tuple(s for s in _STATES if s.serves is None or s.column in self.optional)

    @property
    def aggregations(self) -> frozenset[Aggregation]:
        """The aggregations whose meters these states answer."""
        return frozenset(a for a in Aggregation if a not in _FOR or _FOR[a] in self.optional)

    @property
    def label(self) -> str:
        """``full``, ``additive``, or ``additive + <columns>``."""
        if self == FULL_STATES:
            return "full"
        extra = [s.column for s in self.states if s.serves is not None]
        return " + ".join(["additive", *extra])

    def __or__(self, other: StateSet) -> StateSet:
        return StateSet(self.optional | other.optional)

    def __sub__(self, other: StateSet) -> StateSet:
        return StateSet(self.optional - other.optional)


FULL_STATES = StateSet(frozenset(_FOR.values()))
ADDITIVE_STATES = StateSet()


def needed_states(meters: Iterable[MeterDefinition]) -> StateSet:
    """The states ``meters`` need (pure)."""
    return StateSet(frozenset(_FOR[m.aggregation] for m in meters if m.aggregation in _FOR))


class WindowStates(StrEnum):
    """How a database's windows states are chosen (the ``clickhouse_window_states``
    setting); see the module's text."""

    NEEDED = "needed"
    FULL = "full"
    ADDITIVE = "additive"

    def for_new(self, meters: Iterable[MeterDefinition] | None, *, cluster: bool) -> StateSet:
        """The states a new database keeps.  ``needed`` without the meters (a database
        created before any meter is known), or on a cluster, keeps every one."""
        if self is WindowStates.ADDITIVE:
            return ADDITIVE_STATES
        if self is WindowStates.FULL or meters is None or cluster:
            return FULL_STATES
        return needed_states(meters)


def state_columns(states: StateSet) -> str:
    """The state columns of a windows table's ``CREATE TABLE``, with a leading space."""
    return " " + ", ".join(f"{s.column} {s.type}" for s in states.states)


def states_from_feed(states: StateSet) -> str:
    """The states of a block of per-event feed rows, as a view computes them."""
    return " " + ", ".join(f"{s.from_feed} AS {s.column}" for s in states.states)


def states_from_agg(states: StateSet) -> str:
    """The states of a block of aggregated rows; the source is ``… ARRAY JOIN
    range(events) AS k``."""
    return " " + ", ".join(f"{s.from_agg} AS {s.column}" for s in states.states)


def merge_states(states: StateSet) -> str:
    """The states re-aggregated from a windows table's stored ones."""
    return " " + ", ".join(f"{s.merge} AS {s.column}" for s in states.states)


def add_columns(table: str, kept: StateSet, added: StateSet) -> list[Statement]:
    """``ALTER TABLE … ADD COLUMN`` for each state of ``added`` that ``kept`` lacks, each
    after the column before it in the full order, so the table's columns stay in that
    order (copies between windows tables insert by position).  Rows already stored read
    the new state as empty."""
    statements = []
    have = set(kept.optional)
    previous = _STATES[0].column
    for state in _STATES:
        if state.column in added.optional and state.column not in have:
            statements.append(
                Statement(
                    f"ALTER TABLE {table} ADD COLUMN {state.column} {state.type} AFTER {previous}"
                )
            )
            have.add(state.column)
        if state.serves is None or state.column in have:
            previous = state.column
    return statements


def states_query(database: str, table: str = "meter_windows") -> Statement:
    """Rows ``(column,)``: the state columns ``table`` of ``database`` has (the default,
    ``meter_windows``, on a cluster is the ``Distributed`` table, whose columns are the
    shards')."""
    names = ", ".join(lit(s.column) for s in _STATES)
    return Statement(
        f"SELECT name FROM system.columns WHERE database = {lit(database)}"
        f" AND table = {lit(table)} AND name IN ({names})"
    )


def states_of(columns: Iterable[str]) -> StateSet | None:
    """The set a windows table keeps, from its state columns; ``None``: no table (or no
    state column: nothing to read)."""
    found = set(columns)
    if not found:
        return None
    return StateSet(frozenset(c for c in found if c in _BY_COLUMN and _BY_COLUMN[c].serves))


def states_in(engine: Engine, database: str, table: str = "meter_windows") -> StateSet | None:
    """The set ``database``'s windows tables keep (or one of them, ``table``); ``None``:
    it has no such table."""
    rows = engine.execute(states_query(database, table).to_sql())
    return states_of(str(name) for (name,) in rows)


@dataclass(frozen=True, slots=True)
class GapsTable:
    """``window_state_gaps``: for each state added to an existing database, the meters
    that had windows then (their earlier windows lack it).  Append-only; read whole."""

    database: str

    @property
    def name(self) -> str:
        return f"{self.database}.window_state_gaps"

    def ddl(self) -> Statement:
        return Statement(
            f"CREATE TABLE IF NOT EXISTS {self.name} (state String, namespace String,"
            " meter String, added_at DateTime) ENGINE = MergeTree() ORDER BY (state, meter)"
        )

    def record(self, column: str, windows_table: str) -> Statement:
        """Every (namespace, meter) with windows in ``windows_table``, as lacking ``column``."""
        return Statement(
            f"INSERT INTO {self.name} (state, namespace, meter, added_at)"
            f" SELECT {lit(column)}, namespace, meter, now() FROM {windows_table}"
            " GROUP BY namespace, meter"
        )

    def read(self) -> Statement:
        """Rows ``(meter, state)``, each pair once."""
        return Statement(f"SELECT DISTINCT meter, state FROM {self.name} ORDER BY meter, state")


def gaps_of(rows: Iterable[tuple[object, object]]) -> dict[str, frozenset[str]]:
    """Meter → the state columns its earlier windows lack, from :meth:`GapsTable.read`."""
    gaps: dict[str, set[str]] = {}
    for meter, state in rows:
        gaps.setdefault(str(meter), set()).add(str(state))
    return {meter: frozenset(states) for meter, states in gaps.items()}


def check_meters(
    meters: Iterable[MeterDefinition],
    kept: StateSet,
    database: str,
    gaps: Mapping[str, frozenset[str]] | None = None,
    *,
    fix_missing: str = "",
) -> None:
    """Refuse meters whose aggregation ``kept`` cannot answer, or whose earlier windows lack
    the state it needs (``gaps``), naming each and the fix.  ``fix_missing``: how to get
    a missing state (default: a new database with every state)."""
    problems = []
    answered = ", ".join(sorted(a.value for a in kept.aggregations))
    for meter in meters:
        column = _FOR.get(meter.aggregation)
        if column is None:
            continue
        if column not in kept.optional:
            problems.append(
                Problem(
                    path=f"{meter.slug}.aggregation",
                    message=f"{meter.aggregation.value} needs the {column} window state, "
                    f"which ClickHouse database {database} does not keep (it keeps "
                    f"{kept.label}, answering {answered} meters)",
                    fix=fix_missing
                    or "start with METERLINE_CLICKHOUSE_WINDOW_STATES=needed (the default) "
                    "to add the state, meter it in a database created with =full, "
                    f"re-metered from the raw events (`meterline backfill`), or give the "
                    f"meter one of {answered}",
                )
            )
        elif column in (gaps or {}).get(meter.slug, frozenset()):
            problems.append(
                Problem(
                    path=f"{meter.slug}.aggregation",
                    message=f"{meter.slug} has windows stored before ClickHouse database "
                    f"{database} kept the {column} state, so its {meter.aggregation.value} "
                    "over them would be wrong (its aggregation changed after they were "
                    "written)",
                    fix="give the redefined meter a new slug and re-meter its history from "
                    "the raw events (`meterline backfill`), or meter it in a new database",
                )
            )
    if problems:
        raise InvalidInput("meters", problems)
