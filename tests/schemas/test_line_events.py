"""An invoice line's events on both engines: the filter is the line's (type, subjects,
event time, ingestion cutoff), a rewritten event counts once, the digest is the
documented recipe computed in Python, and paging by (source, id) returns every event
once."""

from __future__ import annotations

import hashlib

import pytest

from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable, LineEvents, RawEventRow

pytestmark = [pytest.mark.integration, pytest.mark.chdb]

T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z, ms


def row(source: str, event_id: str, **fields: object) -> RawEventRow:
    base: dict[str, object] = {
        "namespace": "ns", "source": source, "id": event_id, "type": "api", "subject": "acme",
        "time_ms": T0 + 1_000, "data": '{"n": 1}', "ingested_ms": T0 + 2_000,
        "source_partition": 0, "source_offset": 0, "source_index": 0, "content_hash": "h",
    }  # fmt: skip
    base.update(fields)
    return RawEventRow(**base)  # type: ignore[arg-type]


def recipe(events: list[RawEventRow]) -> list[tuple[str, int, str]]:
    """Each subject's digest as docs/invoicing.md tells a customer to compute it."""
    out = []
    for subject in sorted({e.subject for e in events}):
        hashes = sorted(
            hashlib.sha256(
                f"{e.source}\0{e.id}\0".encode()
                + (e.data if isinstance(e.data, bytes) else e.data.encode())
            ).hexdigest()
            for e in events
            if e.subject == subject
        )
        out.append((subject, len(hashes), hashlib.sha256("\n".join(hashes).encode()).hexdigest()))
    return out


def test_line_events_and_their_digest(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    table = EventsTable(database)
    billed = [
        row("s1", "a"),
        row("s1", "b", data='{"n": 2.50, "é": "ü"}', subject="acme-eu"),
        row("s2", "a", time_ms=T0 + 59_999),
        row("s0", "z", ingested_ms=T0 + 59_999),
    ]
    others = [
        row("s1", "c", type="other"),
        row("s1", "d", subject="globex"),
        row("s1", "e", time_ms=T0 + 60_000),  # after the window range
        row("s1", "f", time_ms=T0 - 1),  # before it
        row("s1", "g", ingested_ms=T0 + 60_000),  # at the cutoff: not billed
        row("s1", "h", namespace="other"),
    ]
    eng.insert(*table.insert_args([*billed, *others]))
    eng.insert(*table.insert_args([billed[0]]))  # a rewrite after a crash
    line = LineEvents("ns", "api", ("acme", "acme-eu"), T0, T0 + 60_000, T0 + 60_000)
    assert [tuple(r) for r in eng.execute(line.evidence(table.name).to_sql())] == recipe(billed)
    everyone = LineEvents("ns", "api", None, T0, T0 + 60_000, T0 + 60_000)
    assert [tuple(r) for r in eng.execute(everyone.evidence(table.name).to_sql())] == recipe(
        [*billed, others[1]]
    )

    seen: list[tuple[str, str]] = []
    after = None
    while True:
        rows = eng.execute(line.page(table.name, after, 2).to_sql())
        if not rows:
            break
        for source, event_id, subject, time_ms, ingested_ms, data, hashed in rows:
            original = next(e for e in billed if (e.source, e.id) == (source, event_id))
            assert (subject, time_ms, ingested_ms, data) == (
                original.subject, original.time_ms, original.ingested_ms, original.data,
            )  # fmt: skip
            assert hashed == hashlib.sha256(f"{source}\0{event_id}\0{data}".encode()).hexdigest()
            seen.append((source, event_id))
        after = seen[-1]
    assert seen == sorted((e.source, e.id) for e in billed)

    empty = LineEvents("ns", "api", ("nobody",), T0, T0 + 60_000, T0 + 60_000)
    assert list(eng.execute(empty.evidence(table.name).to_sql())) == []
