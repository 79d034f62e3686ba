"""The planner's native loop (``schemas/native/src/plan_loop.rs``) against its Python loop.

``Planner.plan`` runs the native loop when the native module has it, and the Python loop
otherwise; both must fill a plan with equal objects in the same order: raw rows, dedupe
entries, dead letters (reason, detail, index, bytes), outcomes, conflicts, kept events,
folded groups (their keys, their order and their states) and spans.  The chunks are the
oracle's generated ones (``test_plan_oracle.chunks``: pooled keys, replays, expired and
conflicting first copies, records delivered twice, empty batches, mangled lines), looked
up through a ``PendingSeen`` holding part of the store as earlier chunks would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meterline_native import KeyFilter

from streams.dedupe import SeenRecord
from streams.plan import EVENTS, SUM, BatchPlan, FoldedGroups, PendingSeen, Record
from streams.planner import Planner
from streams.seen_codec import encode_chunk, key_hash, partition_slices
from streams.seen_table import ENTRY_EVENTS
from tests.schemas.event_cases import METER_SETS
from tests.streams.sink_kit import Store
from tests.streams.test_plan_oracle import GRACE_MS, HORIZON_MS, NS, T0, chunks


def planner(meter_set: str, unknown_type_is_error: bool) -> Planner:
    meters, _ = METER_SETS[meter_set]
    return Planner(
        namespace=NS,
        meters=meters,
        unknown_type_is_error=unknown_type_is_error,
        horizon_ms=HORIZON_MS,
        late_grace_ms=GRACE_MS,
    )


def both(planner: Planner, records: list[Record], lookup: Any) -> tuple[BatchPlan, BatchPlan]:
    native = planner._native_plan
    assert native is not None, "the native module is built by `make install` (schemas/native)"
    try:
        planner._native_plan = None
        python = planner.plan(records, lookup)
    finally:
        planner._native_plan = native
    return planner.plan(records, lookup), python


def typed(value: Any) -> Any:
    """``value`` with every type spelt out: ``1 == True == Decimal(1)`` must not pass."""
    if isinstance(value, tuple | list):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, Mapping):  # the native fold's groups read as the dictionary
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    return (type(value).__name__, value)


def fields(plan: BatchPlan) -> dict[str, Any]:
    dead = [(d.record, d.reason, d.detail, d.index, d.value) for d in plan.dead]
    seen = [(key, msgspec.structs.astuple(record)) for key, record in plan.seen]
    return {
        "raw rows": typed(list(plan.raw_rows)),
        "dedupe entries": typed(seen),
        "dead letters": dead,
        "outcomes": plan.outcomes,
        "conflicts": plan.conflicts,
        "kept": typed(plan.kept),
        "groups": typed(plan.groups),
        "spans": typed(plan.spans),
    }


def differences(native: BatchPlan, python: BatchPlan) -> list[str]:
    mine, theirs = fields(native), fields(python)
    return [name for name in mine if mine[name] != theirs[name]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from(sorted(METER_SETS)), st.booleans(), st.integers(0, 3))
def test_the_native_loop_fills_the_plan_as_the_python_loop(
    chunk: tuple[list[Record], Store], meter_set: str, unknown: bool, split: int
) -> None:
    records, store = chunk
    pending = PendingSeen(store)  # some first copies as an earlier chunk's pending keys
    pending.add([item for n, item in enumerate(store.data.items()) if n % 4 < split])
    native, python = both(planner(meter_set, unknown), records, pending)
    assert differences(native, python) == []
    assert type(native.groups) is FoldedGroups  # the native fold (``folded.rs``) is held
    assert type(python.groups) is dict  # to the Python loop's dictionary
    assert [tuple(row) for row in native.aggregated()] == [tuple(r) for r in python.aggregated()]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from(sorted(METER_SETS)), st.integers(0, 12))
def test_a_planned_chunk_s_keys_are_seen_by_the_next_as_the_python_loop_sees_them(
    chunk: tuple[list[Record], Store], meter_set: str, cut: int
) -> None:
    """Two chunks of one batch: the native loop finds the first chunk's keys in its raw
    rows (``PendingSeen.add_plan``: no entry built), the Python loop in its entries; the
    second chunk's plans are equal, and ``PendingSeen.get`` answers alike for every key."""
    records, store = chunk
    first, second = records[:cut], records[cut:]
    plans = []
    for native in (True, False):
        loop = planner(meter_set, False)
        if not native:
            loop._native_plan = None
        pending = PendingSeen(store)
        earlier = loop.plan(first, pending)
        pending.add_plan(earlier)
        assert bool(pending.keys) == native
        plans.append((loop.plan(second, pending), pending, earlier))
    (native_plan, native_pending, earlier), (python_plan, python_pending, _) = plans
    assert differences(native_plan, python_plan) == []
    for key, _ in earlier.seen:
        assert native_pending.get(key) == python_pending.get(key) is not None
    assert native_pending.get("ns\x1fnowhere\x1fat all") is None
    native_pending.settle(earlier)  # written: its keys stay, its events' bytes go
    (settled,) = native_pending.keys.chunks()
    assert settled is not earlier.raw_rows
    assert [row[6] for row in settled] == [b""] * len(earlier.raw_rows)
    assert [row[:6] + row[7:] for row in settled] == [r[:6] + r[7:] for r in earlier.raw_rows]
    for key, _ in earlier.seen:
        assert native_pending.get(key) == python_pending.get(key)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from(sorted(METER_SETS)), st.sampled_from([1, 2, 3, ENTRY_EVENTS]))
def test_the_dedupe_entries_read_from_the_raw_rows_are_the_seen_entries(
    chunk: tuple[list[Record], Store], meter_set: str, max_events: int
) -> None:
    """The native plan makes its raw rows one to one with its dedupe entries, in the same
    order, so the table entries the worker records from the raw rows
    (``TableSeenStore.put_raw_rows``) are the ones ``put_many`` encodes from the entries:
    the same partitions, cuts, keys, values and index entries, to the byte."""
    records, store = chunk
    plan = planner(meter_set, False).plan(records, PendingSeen(store))
    assert len(plan.raw_rows) == len(plan.seen)
    from_rows = plan.raw_rows.seen_chunks(max_events)  # type: ignore[attr-defined]
    from_seen = [
        (partition, encode_chunk(part, partition))
        for partition, part in partition_slices(plan.seen, max_events)
    ]
    assert from_rows == from_seen


def test_the_comparison_sees_each_field() -> None:
    """A chunk with a new event, a duplicate, a conflict, a replay, a dead letter, an empty
    batch and a record delivered twice: both loops agree, and a change to any field is
    reported."""
    job = (
        '{{"specversion":"1.0","id":"{id}","source":"s","type":"job","subject":"acme",'
        '"time":"2026-10-26T07:00:00Z","data":{{"meta":{{"plan":"pro","cost":1}},'
        '"items":[1,2],"cost usd":"x","v":{v},"user":"u1","region":"eu"}}}}'
    )
    lines = [job.format(id="a", v=2), job.format(id="a", v=2), job.format(id="a", v=3)]
    first = Record("events", 0, 7, T0, b"k", "\n".join([*lines, "{nope"]).encode(), batch=True)
    records = [
        first,
        first,
        Record("events", 1, 3, T0, b"k", b"\n", batch=True),
        Record("events", 1, 4, T0, b"k", job.format(id="b", v=5).encode()),
    ]
    native, python = both(planner("all_kinds", False), records, PendingSeen(Store()))
    assert differences(native, python) == []
    assert native.outcomes == {
        "redelivered": 1,
        "conflict": 1,
        "new": 2,
        "duplicate": 1,
        "late": 2,
        "dead_letter": 2,
    }
    mutations: dict[str, Callable[[BatchPlan], object]] = {
        "raw rows": lambda plan: setattr(plan, "raw_rows", list(plan.raw_rows)[:-1]),
        "dedupe entries": lambda plan: setattr(plan, "seen", list(plan.seen)[:-1]),
        "dead letters": lambda plan: plan.dead.pop(),
        "outcomes": lambda plan: plan.count("new"),
        "conflicts": lambda plan: plan.conflicts.pop(),
        "kept": lambda plan: plan.kept.pop(),
        "groups": lambda plan: next(iter(plan.groups.values())).__setitem__(SUM, Decimal(0)),
        "spans": lambda plan: plan.spans[0].__setitem__(0, 6),
    }
    assert sorted(mutations) == sorted(fields(native))
    for name, change in mutations.items():
        changed, _ = both(planner("all_kinds", False), records, PendingSeen(Store()))
        change(changed)
        assert differences(changed, python) == [name]
    # a value of another type that compares equal is a difference too
    changed, _ = both(planner("all_kinds", False), records, PendingSeen(Store()))
    state = next(iter(changed.groups.values()))
    state[EVENTS] = Decimal(state[EVENTS])
    assert differences(changed, python) == ["groups"]


class FilteredStore(Store):
    """A store with a key filter over its keys, as the worker's index has, that notes the
    keys it is asked for."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data.update(data)
        self.asked: list[str] = []
        self.keys = KeyFilter(0)
        for key in data:
            self.keys.add_all(key_hash(key.encode()))

    def get(self, key: str) -> Any:
        self.asked.append(key)
        return super().get(key)

    def key_filter(self) -> Any:
        return self.keys


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from(sorted(METER_SETS)))
def test_a_key_the_filter_rules_out_is_not_looked_up(
    chunk: tuple[list[Record], Store], meter_set: str
) -> None:
    """The native loop asks the store's key filter first: the same plan, and the store is
    asked for exactly the keys the Python loop asks for that the filter does not rule out
    (every stored key among them)."""
    records, seeded = chunk
    native_store, python_store = FilteredStore(seeded.data), FilteredStore(seeded.data)
    native = planner(meter_set, False).plan(records, PendingSeen(native_store))
    in_python = planner(meter_set, False)
    in_python._native_plan = None
    python = in_python.plan(records, PendingSeen(python_store))
    assert differences(native, python) == []
    may_hold = native_store.keys.may_contain_key
    assert native_store.asked == [key for key in python_store.asked if may_hold(key)]
    assert {key for key in python_store.asked if key in seeded.data} <= set(native_store.asked)


def test_the_filter_spares_the_look_up_of_new_keys() -> None:
    job = (
        '{{"specversion":"1.0","id":"{id}","source":"s","type":"api.request",'
        '"subject":"acme","time":"2026-10-26T07:00:00Z","data":{{}}}}'
    )
    records = [Record("events", 0, n, T0, b"k", job.format(id=n).encode()) for n in range(5)]
    stored = SeenRecord(0, 0, "d", T0, 0)
    store = FilteredStore({f"{NS}\x1fs\x1f3": stored})
    plan = planner("demo", False).plan(records, PendingSeen(store))
    assert store.asked == [f"{NS}\x1fs\x1f3"]
    assert plan.outcomes.get("new") == 4
