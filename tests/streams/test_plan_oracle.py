"""The worker's one-pass ``MeteringSink.plan`` against its oracle, the reference path.

The reference below is the plan as it was built before the lean path: every event through
``decode_event`` + ``contributions`` + ``content_hash``, dedupe through ``classify`` on a
list of candidates, contributions pre-aggregated by ``agg_feed.pre_aggregate``.  On
generated chunks — pooled ids so that duplicates, conflicts and in-record copies are
common; records delivered twice; a dedupe store seeded with replays, expired first copies
and conflicting digests; generated and mangled lines — both must give the same kept
events (raw rows), the same dedupe entries, the same dead letters with their reasons and
details, the same outcome counts and conflicts, and the same windows (per-event and
aggregated feed rows).  The comparison itself is shown to fail on a changed plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.telemetry import generate
from schemas.errors import InvalidInput
from schemas.metering.contributions import DeadLetterReason, Unmeterable, contributions
from schemas.metering.definitions import Aggregation, MeterSet
from schemas.storage.agg_feed import AggRow, Contribution, pre_aggregate
from schemas.storage.events_table import RawRow
from schemas.timeutil import MINUTE_MS
from schemas.wire import content_hash, decode_event, encode_event, split_record
from streams.dedupe import Candidate, SeenRecord, Verdict, classify, dedupe_key
from streams.plan import EVENTS, SUM
from streams.sink import BatchPlan, MeteringSink, Record
from tests.schemas.event_cases import DATA, METER_SETS, TYPES, mangled, payloads, times, to_json
from tests.streams.sink_kit import RecordingEngine, Store

NS = "ns"
HORIZON_MS = 3_600_000
GRACE_MS = 300_000
T0 = 1_793_000_000_000  # an ingestion time in 2026


@dataclass
class Reference:
    """What the reference path decides for a chunk."""

    raw_rows: list[RawRow] = field(default_factory=list)
    seen: list[tuple[str, SeenRecord]] = field(default_factory=list)
    dead: list[tuple[int, int, int, str, str, bytes]] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    feed: list[Contribution] = field(default_factory=list)

    def count(self, outcome: str, n: int = 1) -> None:
        if n:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n


def reference_plan(
    records: Sequence[Record], store: Store, meters: MeterSet, unknown_type_is_error: bool
) -> Reference:
    ref = Reference()
    metered: list[tuple[Record, int, bytes, Any, Any, str]] = []
    positions: set[tuple[int, int]] = set()
    for rec in records:
        if (rec.partition, rec.offset) in positions:
            ref.count("redelivered")
            continue
        positions.add((rec.partition, rec.offset))
        lines = split_record(rec.value, rec.batch)
        if not lines:
            ref.dead.append(
                (
                    rec.partition,
                    rec.offset,
                    0,
                    DeadLetterReason.SCHEMA.value,
                    "the batch record holds no events",
                    rec.value,
                )
            )
        for index, line in enumerate(lines):
            try:
                event = decode_event(line)
                found = contributions(event, meters, unknown_type_is_error=unknown_type_is_error)
            except InvalidInput as exc:
                ref.dead.append(
                    (
                        rec.partition,
                        rec.offset,
                        index,
                        DeadLetterReason.SCHEMA.value,
                        str(exc),
                        line,
                    )
                )
                continue
            except Unmeterable as exc:
                ref.dead.append(
                    (rec.partition, rec.offset, index, exc.reason.value, exc.detail, line)
                )
                continue
            metered.append((rec, index, line, event, found, content_hash(event)))
    ref.count("dead_letter", len(ref.dead))
    candidates = [
        Candidate(
            dedupe_key(NS, event.source, event.id),
            rec.partition,
            rec.offset,
            digest,
            rec.timestamp_ms,
            index,
        )
        for rec, index, _, event, _, digest in metered
    ]
    decisions = classify(candidates, store.get, HORIZON_MS)
    for decision, (rec, index, line, event, found, digest) in zip(decisions, metered, strict=True):
        ref.count(decision.verdict.value)
        if decision.verdict is Verdict.CONFLICT:
            assert decision.first is not None
            ref.conflicts.append(
                f"{event.source}/{event.id} at {rec.partition}:{rec.offset}:{index} differs "
                f"from the first copy at {decision.first.partition}:{decision.first.offset}:"
                f"{decision.first.index}"
            )
        if not decision.keep:
            continue
        ref.seen.append(
            (
                decision.candidate.key,
                SeenRecord(rec.partition, rec.offset, digest, rec.timestamp_ms, index),
            )
        )
        late = rec.timestamp_ms > window_start_ms(event.time_ms) + MINUTE_MS + GRACE_MS
        ref.count("late", int(late))
        ref.raw_rows.append(
            (
                NS,
                event.source,
                event.id,
                event.type,
                event.subject,
                event.time_ms,
                line,
                rec.timestamp_ms,
                rec.partition,
                rec.offset,
                index,
                digest,
                late,
            )
        )
        minute_s = window_start_ms(rec.timestamp_ms) // 1000
        ref.feed.extend(
            (
                NS,
                c.meter,
                c.subject,
                c.group_key,
                c.window_start_ms // 1000,
                minute_s,
                c.value,
                c.uniq,
                c.event_ms,
                rec.partition,
                rec.offset,
                index,
            )
            for c in found
        )
    return ref


def window_start_ms(ms: int) -> int:
    return ms - ms % MINUTE_MS


def unique_meters(meters: MeterSet) -> frozenset[str]:
    return frozenset(m.slug for m in meters if m.aggregation is Aggregation.UNIQUE_COUNT)


def disagreements(plan: BatchPlan, ref: Reference, meters: MeterSet) -> list[str]:
    """What differs between the plan and the reference (empty when they agree)."""
    dead = [
        (d.record.partition, d.record.offset, d.index, d.reason.value, d.detail, d.value)
        for d in plan.dead
    ]
    aggregated: list[AggRow] = pre_aggregate(ref.feed, unique_meters(meters))
    pairs = {
        "raw rows": (list(plan.raw_rows), ref.raw_rows),
        "dedupe entries": (plan.seen, ref.seen),
        "dead letters": (dead, ref.dead),
        "outcomes": (plan.outcomes, ref.outcomes),
        "conflicts": (plan.conflicts, ref.conflicts),
        "feed rows": (plan.feed_rows, ref.feed),
        "aggregated rows": ([tuple(row) for row in plan.aggregated()], aggregated),
        "contributions counted": (plan.contributions, len(ref.feed)),
    }
    return [name for name, (mine, theirs) in pairs.items() if mine != theirs]


# -- generated chunks ------------------------------------------------------------------------

IDS = ["e1", "e2", "e3", "e4", "e5"]
SOURCES = ["src-a", "src-b"]
SUBJECTS = ["acme", "globex"]


@st.composite
def pooled_lines(draw: st.DrawFn) -> bytes:
    """A valid event whose key is drawn from a small pool, so that keys meet often."""
    payload = {
        "specversion": "1.0",
        "id": draw(st.sampled_from(IDS)),
        "source": draw(st.sampled_from(SOURCES)),
        "type": draw(st.sampled_from([*TYPES, "job", "job"])),
        "subject": draw(st.sampled_from(SUBJECTS)),
        "time": draw(st.one_of(st.just("2026-10-27T09:15:00.250Z"), times())),
        "data": draw(DATA),
    }
    return to_json(payload).encode()


LINES = st.one_of(
    pooled_lines(),
    pooled_lines(),
    pooled_lines(),
    payloads().map(lambda p: to_json(p).encode()),
    mangled(),
)


@st.composite
def chunks(draw: st.DrawFn) -> tuple[list[Record], Store]:
    """Records over two partitions (some packed, some single, some delivered twice, some
    empty batches), their lines often repeated verbatim, and a store seeded with first
    copies: the same positions (replays), other positions, expired ones and other digests."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(1, 24))):
        if lines and draw(st.integers(0, 3)) == 0:
            lines.append(draw(st.sampled_from(lines)))  # an exact copy (a retry)
        else:
            lines.append(draw(LINES))
    records: list[Record] = []
    next_offset = {0: draw(st.integers(0, 5)), 1: draw(st.integers(0, 5))}
    at = 0
    while at < len(lines):
        size = draw(st.integers(1, 4))
        partition = draw(st.integers(0, 1))
        offset = next_offset[partition]
        next_offset[partition] += 1
        group = lines[at : at + size]
        at += size
        ingested = T0 + draw(st.sampled_from([0, 1_000, 59_999, 60_000, HORIZON_MS + 5]))
        batch = len(group) > 1 or draw(st.booleans())
        value = b"\n".join(group) if batch else group[0]
        records.append(Record("events", partition, offset, ingested, b"k", value, batch=batch))
        if draw(st.integers(0, 9)) == 0:
            records.append(records[-1])  # the same record fetched twice in one batch
        if draw(st.integers(0, 19)) == 0:
            offset = next_offset[partition]
            next_offset[partition] += 1
            records.append(Record("events", partition, offset, ingested, b"k", b"\n", batch=True))
    store = Store()
    for rec in draw(st.lists(st.sampled_from(records), max_size=4)):
        for index, line in enumerate(split_record(rec.value, rec.batch)):
            try:
                event = decode_event(line)
            except InvalidInput:
                continue
            key = dedupe_key(NS, event.source, event.id)
            digest = content_hash(event)
            how = draw(st.sampled_from(["replay", "earlier", "expired", "other digest"]))
            if how == "replay":
                first = SeenRecord(rec.partition, rec.offset, digest, rec.timestamp_ms, index)
            elif how == "earlier":
                first = SeenRecord(rec.partition, 0, digest, T0 - 10_000, 99)
            elif how == "expired":
                first = SeenRecord(1 - rec.partition, 0, digest, T0 - 2 * HORIZON_MS, 0)
            else:
                first = SeenRecord(rec.partition, 0, "f" * len(digest), T0 - 10_000, 99)
            store.data[key] = first
    return records, store


def make_sink(meters: MeterSet, unknown_type_is_error: bool) -> MeteringSink:
    return MeteringSink(
        namespace=NS,
        meters=meters,
        engine_factory=RecordingEngine,
        database="db",
        unknown_type_is_error=unknown_type_is_error,
        horizon_ms=HORIZON_MS,
        late_grace_ms=GRACE_MS,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from(sorted(METER_SETS)), st.booleans())
def test_plan_agrees_with_the_reference_path(
    chunk: tuple[list[Record], Store], meter_set: str, unknown_type_is_error: bool
) -> None:
    records, store = chunk
    meters, _ = METER_SETS[meter_set]
    plan = make_sink(meters, unknown_type_is_error).plan(records, store)
    ref = reference_plan(records, store, meters, unknown_type_is_error)
    assert disagreements(plan, ref, meters) == []


def test_the_oracle_finds_each_kind_of_difference() -> None:
    """The comparison is not vacuous: a chunk with a duplicate, a conflict, a dead letter
    and windows agrees, and every single change to the plan is reported."""
    meters, _ = METER_SETS["all_kinds"]
    job = (
        '{{"id":"{id}","source":"s","type":"job","subject":"acme",'
        '"time":"2026-10-01T09:15:00Z","data":{{"meta":{{"plan":"pro","cost":1}},'
        '"items":[1,2],"cost usd":"x",{data}}}}}'
    )
    lines = [
        job.format(id="a", data='"v":2,"user":"u1","region":"eu"'),
        job.format(id="a", data='"v":2,"user":"u1","region":"eu"'),
        job.format(id="a", data='"v":3,"user":"u1"'),
        job.format(id="b", data='"v":5,"user":"u2"'),
        "{not json",
    ]
    records = [Record("events", 0, 7, T0, b"acme", "\n".join(lines).encode(), batch=True)]
    store = Store()
    ref = reference_plan(records, store, meters, False)
    assert ref.outcomes == {"new": 2, "duplicate": 1, "conflict": 1, "dead_letter": 1, "late": 2}

    def fresh() -> BatchPlan:
        plan = make_sink(meters, False).plan(records, store)
        assert disagreements(plan, ref, meters) == []
        return plan

    changed = fresh()
    changed.raw_rows = list(changed.raw_rows)[:-1]
    assert disagreements(changed, ref, meters) == ["raw rows"]
    changed = fresh()
    changed.seen = [(changed.seen[0][0], SeenRecord(0, 8, "x", T0, 0)), *changed.seen[1:]]
    assert disagreements(changed, ref, meters) == ["dedupe entries"]
    changed = fresh()
    changed.dead.clear()
    assert disagreements(changed, ref, meters) == ["dead letters"]
    changed = fresh()
    changed.count("duplicate")
    assert disagreements(changed, ref, meters) == ["outcomes"]
    changed = fresh()
    changed.conflicts.clear()
    assert disagreements(changed, ref, meters) == ["conflicts"]
    changed = fresh()
    changed.groups = dict(changed.groups)  # the native fold's rows as the lists they read as
    state = next(iter(changed.groups.values()))
    state[SUM] += 1
    assert disagreements(changed, ref, meters) == ["aggregated rows"]
    changed = fresh()
    changed.groups = dict(changed.groups)
    next(iter(changed.groups.values()))[EVENTS] += 1  # one event counted twice
    assert disagreements(changed, ref, meters) == ["aggregated rows", "contributions counted"]
    changed = fresh()
    changed.kept.pop()
    assert "feed rows" in disagreements(changed, ref, meters)


@pytest.mark.parametrize("meter_set", sorted(METER_SETS))
def test_generated_telemetry_agrees_with_the_reference_path(meter_set: str) -> None:
    """The demo's own generated traffic, packed per subject with 10 % duplicates."""
    meters, _ = METER_SETS[meter_set]
    subjects = [f"customer-{n}" for n in range(5)]
    begin = datetime(2026, 10, 27, 9, tzinfo=UTC)
    events = generate(subjects, begin, timedelta(hours=2), 400, seed=11).events
    by_subject: dict[str, list[bytes]] = {}
    for event in events:
        by_subject.setdefault(event.subject, []).append(encode_event(event))
    records: list[Record] = []
    for offset, (_, lines) in enumerate(sorted(by_subject.items())):
        for start in range(0, len(lines), 50):
            value = b"\n".join(lines[start : start + 50])
            records.append(Record("events", offset % 2, len(records), T0, b"k", value, batch=True))
    store = Store()
    plan = make_sink(meters, False).plan(records, store)
    ref = reference_plan(records, store, meters, False)
    assert disagreements(plan, ref, meters) == []
    assert plan.outcomes.get("duplicate", 0) > 0
    assert plan.groups
