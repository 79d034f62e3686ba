"""Event times at the edges of what the windows can hold (``schemas.timeutil``'s
storable range), through the worker's plan and write on both ClickHouse engines: the
edges are stored, and a time one millisecond outside is a dead letter, not a chunk whose
every write fails (a window's start is ``DateTime``, 32 unsigned bits of seconds)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
import pytest

from schemas.metering.contributions import DeadLetterReason
from schemas.metering.definitions import parse_meters
from schemas.storage.engine import Engine, ServerEngine
from schemas.storage.events_table import EventsTable
from streams.plan import PendingSeen, Record
from streams.reconcile import recompute, stored_totals
from streams.sink import MeteringSink

METERS = parse_meters(
    {"meters": [{"slug": "n", "event_type": "llm", "aggregation": "SUM", "value_property": "$.n"}]}
)
ENVELOPE = {"specversion": "1.0", "source": "s", "type": "llm", "subject": "acme"}
TIMES = {
    "1970-01-01T00:00:00.000Z": True,
    "2105-12-31T23:59:59.999Z": True,
    "1969-12-31T23:59:59.999Z": False,
    "2106-01-01T00:00:00.000Z": False,
    "2106-02-07T06:28:16.000Z": False,
}


class _Unseen:
    def get(self, key: str) -> None:
        return None


class _OneAtATime:
    """The session's one chDB engine for the sink, which inserts raw rows and windows from
    two threads at once (a server engine is a connection per thread instead)."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self._engine, self._lock = engine, lock

    def execute(self, sql: str) -> Any:
        with self._lock:
            return self._engine.execute(sql)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self._engine.insert(table, columns, rows)

    def close(self) -> None:
        """The session's engine stays open for the other tests."""


def test_the_edges_are_stored_and_a_time_outside_them_is_a_dead_letter(
    engine: tuple[Engine, str], request: pytest.FixtureRequest
) -> None:
    server, database = engine
    lock = threading.Lock()

    def connect() -> Any:
        if isinstance(server, ServerEngine):
            return ServerEngine.of(request.getfixturevalue("stack"))
        return _OneAtATime(server, lock)

    sink = MeteringSink(namespace="ns", meters=METERS, engine_factory=connect, database=database)
    records = [
        Record(
            "events",
            0,
            offset,
            1_790_000_000_000,
            b"acme",
            orjson.dumps({**ENVELOPE, "id": f"e{offset}", "time": time, "data": {"n": offset + 1}}),
        )
        for offset, time in enumerate(TIMES)
    ]
    plan = sink.plan(records, PendingSeen(_Unseen()))
    assert [d.record.offset for d in plan.dead] == [2, 3, 4]
    for dead in plan.dead:
        assert dead.reason is DeadLetterReason.SCHEMA
        assert "time is outside the supported range" in dead.detail
    try:
        sink.write(plan)  # returns: nothing in the chunk the windows cannot hold
    finally:
        sink.close()
    assert stored_totals(server, database, "ns", METERS) == {("acme", "n"): Decimal(3)}
    raw = server.execute(EventsTable(database).count("ns").to_sql())
    assert int(raw[0][0]) == 2


def test_a_stored_row_the_rules_now_refuse_is_counted_as_unmeterable() -> None:
    """A raw row an older worker stored with a time outside the range (its raw insert ran
    beside the windows write that failed) is counted, not raised, by a reconcile."""
    rows = [
        (
            0,
            offset,
            0,
            1_790_000_000_000,
            orjson.dumps({**ENVELOPE, "id": f"e{offset}", "time": time, "data": {"n": 2}}).decode(),
        )
        for offset, time in enumerate(["2026-10-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z"])
    ]
    states, unmeterable = recompute(rows, METERS)
    assert unmeterable == 1
    assert {key: state.total for key, state in states.items()} == {("n", "acme"): Decimal(2)}
