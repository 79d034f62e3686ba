"""Packing events into records (``ingest.packing.pack``) and reading them back
(``schemas.wire``)."""

from __future__ import annotations

import pytest

from ingest.packing import pack
from schemas.events import UsageEvent
from schemas.wire import (
    BATCH_CONTENT_TYPE,
    decode_event,
    encode_event,
    encode_record,
    event_key,
    is_batch,
    record_value,
    split_record,
)


def ev(subject: str, n: int, note: str = "") -> UsageEvent:
    return UsageEvent.create(
        type="t", subject=subject, id=f"{subject}-{n}", data={"n": n, "note": note}
    )


def test_pack_keeps_each_subjects_order_and_never_mixes_subjects() -> None:
    events = [ev(s, n) for n in range(7) for s in ("a", "b")]
    groups = list(pack(events, max_events=3, max_bytes=1_000_000))
    for group in groups:
        assert len({e.subject for e, _, _ in group}) == 1
        assert 1 <= len(group) <= 3
    by_subject = {s: [e.id for g in groups for e, _, _ in g if e.subject == s] for s in ("a", "b")}
    assert by_subject == {s: [f"{s}-{n}" for n in range(7)] for s in ("a", "b")}
    assert sum(len(g) for g in groups) == len(events)


def test_pack_respects_the_byte_budget_and_lets_a_large_event_stand_alone() -> None:
    big = ev("a", 0, "x" * 5000)
    small = [ev("a", n) for n in range(1, 4)]
    size = len(encode_event(small[0])) + 1
    groups = list(pack([*small, big, *small], max_events=100, max_bytes=2 * size))
    assert [len(g) for g in groups] == [2, 1, 1, 2, 1]
    assert any(len(g) == 1 and g[0][0] is big for g in groups)


def test_record_round_trip_keeps_each_events_exact_bytes() -> None:
    events = [ev("a", n, "line\nbreak") for n in range(3)]
    group = next(iter(pack(events, 10, 1_000_000)))
    key = event_key(group[0][0])
    value, headers = record_value([encoded for _, encoded, _ in group])
    assert key == b"a"
    assert is_batch(headers)
    lines = split_record(value, is_batch(headers))
    assert lines == [encode_event(e) for e in events]  # the newline in data is escaped
    assert [decode_event(line).id for line in lines] == ["a-0", "a-1", "a-2"]
    assert value == encode_record(events)


def test_a_single_event_record_has_no_batch_header() -> None:
    value, headers = record_value([encode_event(ev("a", 1))])
    assert headers is None
    assert split_record(value, is_batch(headers)) == [value]


def test_batch_header_is_matched_exactly() -> None:
    assert is_batch([("Content-Type", BATCH_CONTENT_TYPE)])
    assert not is_batch([("content-type", b"application/json")])
    assert not is_batch(None)


def test_a_record_holds_one_subject() -> None:
    with pytest.raises(ValueError, match="one subject"):
        encode_record([ev("a", 1), ev("b", 1)])
    with pytest.raises(ValueError, match="max_events"):
        list(pack([ev("a", 1)], max_events=0, max_bytes=10))
