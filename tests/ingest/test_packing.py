"""The SDK's packing window (``ingest.packing.Packer``): pure, no Kafka."""

from __future__ import annotations

import pytest

from ingest.packing import Packer, Pending
from schemas.events import UsageEvent
from schemas.wire import encode_event


def item(subject: str, n: int) -> Pending:
    event = UsageEvent.create(type="t", subject=subject, id=f"{subject}-{n}", data={"n": n})
    return (event, encode_event(event), None)


def ids(groups: list[list[Pending]]) -> list[list[str]]:
    return [[e.id for e, _, _ in g] for g in groups]


def test_a_group_waits_for_its_window_then_is_due() -> None:
    packer: Packer[Pending] = Packer(window_s=0.05, max_events=10, max_bytes=10_000)
    assert packer.add(item("a", 0), now=1.0) == []
    assert packer.add(item("b", 0), now=1.02) == []
    assert packer.add(item("a", 1), now=1.04) == []
    assert packer.due(now=1.049) == []
    assert ids(packer.due(now=1.05)) == [["a-0", "a-1"]]  # measured from its first event
    assert packer.next_due() == pytest.approx(1.07)
    assert ids(packer.due(now=1.07)) == [["b-0"]]
    assert len(packer) == 0


def test_a_full_group_is_ready_at_once_and_order_is_kept() -> None:
    packer: Packer[Pending] = Packer(window_s=10, max_events=3, max_bytes=10_000)
    ready = [g for n in range(7) for g in packer.add(item("a", n), now=0)]
    assert ids(ready) == [["a-0", "a-1", "a-2"], ["a-3", "a-4", "a-5"]]
    assert ids(packer.drain()) == [["a-6"]]


def test_the_byte_budget_closes_a_group_before_an_event_that_would_not_fit() -> None:
    first = item("a", 0)
    packer: Packer[Pending] = Packer(window_s=10, max_events=100, max_bytes=(len(first[1]) + 1) * 2)
    assert packer.add(first, now=0) == []
    assert packer.add(item("a", 1), now=0) == []
    assert ids(packer.add(item("a", 2), now=0)) == [["a-0", "a-1"]]
    assert ids(packer.drain()) == [["a-2"]]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_events"):
        Packer(window_s=0.01, max_events=0, max_bytes=1)
