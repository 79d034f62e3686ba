"""How one partition's kept events are cut into dedupe table entries
(``streams.seen_codec.entry_slices``, pure)."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from streams.dedupe import SeenRecord
from streams.seen_codec import entry_slices


def kept_of(sizes: list[int]) -> list[tuple[str, SeenRecord]]:
    """Events of consecutive records: record ``o`` (its offset) holds ``sizes[o]``."""
    return [
        (f"k{offset}-{index}", SeenRecord(0, offset, "d", 0, index))
        for offset, n in enumerate(sizes)
        for index in range(n)
    ]


@given(st.lists(st.integers(1, 30), max_size=40), st.integers(1, 50))
def test_entries_keep_every_event_in_order_and_cut_only_between_records(
    sizes: list[int], max_events: int
) -> None:
    kept = kept_of(sizes)
    slices = entry_slices(kept, max_events)
    assert [event for part in slices for event in part] == kept
    assert all(part for part in slices) or kept == []
    ranges = []
    for part in slices:
        offsets = [record.offset for _, record in part]
        # a record's events are never split between entries ...
        assert all(sizes[o] == offsets.count(o) for o in set(offsets))
        # ... and an entry exceeds the limit only when it is a single record
        assert len(part) <= max_events or len(set(offsets)) == 1
        ranges.append((min(offsets), max(offsets)) if offsets else None)
    # disjoint offset ranges: the entries' keys ("<partition>:<first>-<last>") differ
    spans = [r for r in ranges if r is not None]
    assert all(a[1] < b[0] for a, b in pairwise(spans))
    # and no more entries than needed: two neighbours together would be over the limit
    assert all(len(a) + len(b) > max_events for a, b in pairwise(slices))


def test_events_out_of_offset_order_stay_one_entry() -> None:
    kept = [*kept_of([0, 0, 3]), *kept_of([2])]  # offsets 2, 2, 2, then 0, 0
    assert entry_slices(kept, 2) == [kept]


def test_a_write_within_the_limit_is_one_entry() -> None:
    kept = kept_of([2, 3])
    assert entry_slices(kept, 5) == [kept]
