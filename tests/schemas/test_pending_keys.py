"""A batch's pending keys in one map (``meterline_native.PendingKeys``): every look-up
answers as asking each pending chunk's rows in turn, newest first, would — whatever the
keys' hashes, down to every key sharing one."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from meterline_native import PendingKeys, RawRows

from streams.dedupe import SeenRecord

IDS = ["a", "b", "c", "d", "é", "a\x1fb"]
"""Few ids, so that chunks share keys (an id with the separator in it too)."""


def _row(source: str, event_id: str, offset: int, index: int) -> tuple[Any, ...]:
    return (
        "ns", source, event_id, "tokens", "acme", 1_000, b"{}", 2_000 + offset,
        offset % 3, offset, index, f"digest-{offset}-{index}", False,
    )  # fmt: skip


_chunk = st.lists(st.tuples(st.sampled_from(["s", "s\x1fa"]), st.sampled_from(IDS)), max_size=8)


def _oracle(chunks: list[RawRows], key: str) -> SeenRecord | None:
    """Each chunk asked in turn, newest first (its last row with the key answering)."""
    for rows in reversed(chunks):
        found: SeenRecord | None = rows.find_record(key, SeenRecord)
        if found is not None:
            return found
    return None


@given(st.lists(_chunk, max_size=6), st.sampled_from([1, 2, 64]), st.sets(st.integers(0, 5)))
def test_a_key_is_found_where_the_newest_pending_chunk_accepted_it(
    chunks: list[list[tuple[str, str]]], hash_bits: int, settled: set[int]
) -> None:
    keys = PendingKeys(hash_bits=hash_bits)
    added = []
    for number, chunk in enumerate(chunks):
        rows = RawRows([_row(s, i, number, at) for at, (s, i) in enumerate(chunk)])
        keys.add(rows)
        added.append(rows)
    for number in settled & set(range(len(added))):
        assert keys.settle(added[number])
    assert not keys.settle(RawRows())  # never added
    assert len(keys) == len(added)
    held = keys.chunks()
    for number, rows in enumerate(added):  # settled: the same rows without their data
        assert (held[number] is rows) == (number not in settled)
        assert [r[:6] + r[7:] for r in held[number]] == [r[:6] + r[7:] for r in rows]
    for source in ["s", "s\x1fa", "t"]:
        for event_id in [*IDS, "z", "b\x1fa"]:
            key = f"ns\x1f{source}\x1f{event_id}"
            assert keys.find_record(key, SeenRecord) == _oracle(added, key)
