"""A written chunk's table entry and index entries (``streams.seen_codec``): the native
encoder returns exactly the Python reference's bytes, and both read back as written."""

from __future__ import annotations

import meterline_native  # built by `make install` (schemas/native): a failure, not a skip
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import seen_codec
from streams.dedupe import SeenRecord
from streams.seen_codec import HEAD, index_entries, raw_entries, unpack

records = st.builds(
    SeenRecord,
    partition=st.just(0),  # a chunk's partition is the encoder's argument
    offset=st.integers(0, 2**63 - 1),
    content_hash=st.text(max_size=70),
    ingested_ms=st.integers(-(2**63), 2**63 - 1),
    index=st.integers(0, 2**32 - 1),
)
kept_lists = st.lists(st.tuples(st.text(max_size=40), records), min_size=1, max_size=30)


@given(kept_lists, st.integers(0, 2**32 - 1))
def test_the_native_chunk_is_the_reference_s_to_the_byte(
    kept: list[tuple[str, SeenRecord]], partition: int
) -> None:
    assert meterline_native.encode_chunk(kept, partition) == seen_codec._encode_chunk(
        kept, partition
    )


def test_the_worker_encodes_chunks_natively() -> None:
    assert seen_codec.encode_chunk is meterline_native.encode_chunk


@given(kept_lists, st.integers(0, 2**32 - 1))
def test_a_chunk_reads_back_as_its_events(
    kept: list[tuple[str, SeenRecord]], partition: int
) -> None:
    table_key, value, (pairs, hashes, newest) = seen_codec.encode_chunk(kept, partition)
    offsets = [record.offset for _, record in kept]
    assert table_key == f"{partition}:{min(offsets)}-{max(offsets)}".encode()
    entries = [
        (key, partition, r.offset, r.index, r.content_hash, r.ingested_ms) for key, r in kept
    ]
    assert raw_entries(table_key, value) == entries
    assert index_entries(entries, table_key) == (pairs, hashes, newest)
    assert hashes == b"".join(seen_codec.key_hash(key.encode()) for key, _ in kept)
    assert newest == max(0, *(r.ingested_ms for _, r in kept))
    for (key, record), (hashed, packed) in zip(kept, pairs, strict=True):
        assert hashed == seen_codec.key_hash(key.encode())
        assert unpack(packed, key.encode()) == SeenRecord(
            partition, record.offset, record.content_hash, record.ingested_ms, record.index
        )
        assert unpack(packed, key.encode() + b"x") is None  # another key: not its entry
        assert packed[HEAD.size : HEAD.size + len(table_key)] == table_key


def test_control_characters_and_quotes_are_escaped_as_json() -> None:
    key = 'ns\x1fsrc\x1fid "q" \\ \n\t\x00\x7f é 😀'
    _, value, _ = meterline_native.encode_chunk([(key, SeenRecord(1, 7, "d", 5, 2))], 1)
    assert orjson.loads(value) == {"e": [[key, 7, 2, "d", 5]]}


@pytest.mark.parametrize("encode", [meterline_native.encode_chunk, seen_codec._encode_chunk])
def test_an_empty_chunk_is_refused(encode: object) -> None:
    assert callable(encode)
    with pytest.raises(ValueError, match="a chunk has events"):
        encode([], 0)
