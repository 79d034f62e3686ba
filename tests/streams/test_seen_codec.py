"""A written chunk's table entry and index entries (``streams.seen_codec``): the native
encoder returns exactly the Python reference's bytes, and both read back as written."""

from __future__ import annotations

from typing import Any

import meterline_native  # built by `make install` (schemas/native): a failure, not a skip
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import seen_codec
from streams.dedupe import SeenRecord
from streams.seen_codec import (
    COMPACT,
    HEAD,
    digest_bytes,
    index_entries,
    points_at,
    raw_entries,
    unpack,
)

records = st.builds(
    SeenRecord,
    partition=st.just(0),  # a chunk's partition is the encoder's argument
    offset=st.integers(0, 2**63 - 1),
    # the worker's digests are hexadecimal (a compact index value); any other text is kept
    # with its key, as earlier workers kept every digest
    content_hash=st.one_of(st.binary(max_size=40).map(bytes.hex), st.text(max_size=70)),
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
    # in the order of the key hashes (the index's memtable takes them faster so), one
    # key's entries in record order (the later is put last and wins)
    order = sorted(range(len(kept)), key=lambda n: seen_codec.key_hash(kept[n][0].encode()))
    in_order = [kept[n] for n in order]
    assert hashes == b"".join(seen_codec.key_hash(key.encode()) for key, _ in in_order)
    assert newest == max(0, *(r.ingested_ms for _, r in kept))
    for (key, record), (hashed, packed) in zip(in_order, pairs, strict=True):
        assert hashed == seen_codec.key_hash(key.encode())
        as_written = SeenRecord(
            partition, record.offset, record.content_hash, record.ingested_ms, record.index
        )
        assert unpack(packed, key.encode()) == as_written
        assert packed[HEAD.size : HEAD.size + len(table_key)] == table_key
        raw = digest_bytes(record.content_hash)
        if raw is not None:  # compact: the digest's bytes, no key to tell another by
            assert packed == packed[: HEAD.size + len(table_key)] + raw
            assert unpack(packed, key.encode() + b"x") == as_written
        else:
            assert packed.endswith(record.content_hash.encode() + key.encode())
            assert unpack(packed, key.encode() + b"x") is None  # another key: not its entry


def test_a_worker_s_digest_is_kept_as_its_bytes_without_the_key() -> None:
    digest = "0123456789abcdef01234567"  # content_hash: blake2b-96, hexadecimal
    key = "default\x1fsensor-7\x1f" + "e" * 36
    table_key, _, (pairs, _, _) = seen_codec.encode_chunk(
        [(key, SeenRecord(2, 9, digest, 5, 1))], 2
    )
    [(hashed, packed)] = pairs
    assert hashed == seen_codec.key_hash(key.encode())
    assert len(packed) == HEAD.size + len(table_key) + 12  # was + 24 + len(key)
    assert HEAD.unpack_from(packed)[5] == COMPACT | 12
    assert unpack(packed, key.encode()) == SeenRecord(2, 9, digest, 5, 1)
    for not_lowercase_hex in ("0123456789ABCDEF01234567", "abc", "ab cd", "xy"):
        assert digest_bytes(not_lowercase_hex) is None


def test_an_index_value_as_earlier_workers_wrote_it_reads_back_unchanged() -> None:
    """An upgrade keeps the index it finds: a value with the digest's text and the full
    key (every value before the compact form) answers as before, and names its key."""
    key, digest, chunk_key = b"default\x1fsrc\x1fid-1", b"0123456789abcdef01234567", b"3:40-45"
    legacy = HEAD.pack(3, 41, 2, 1_700_000_000_000, len(chunk_key), len(digest))
    legacy += chunk_key + digest + key
    assert unpack(legacy, key) == SeenRecord(3, 41, digest.decode(), 1_700_000_000_000, 2)
    assert unpack(legacy, key + b"x") is None
    assert points_at(legacy, chunk_key)


@pytest.mark.parametrize("encode", [meterline_native.encode_chunk, seen_codec._encode_chunk])
def test_a_digest_too_long_for_an_index_value_is_refused(encode: Any) -> None:
    fits, too_long = "z" * (COMPACT - 1), "z" * COMPACT
    encode([("k", SeenRecord(0, 1, fits, 2, 0))], 0)
    with pytest.raises(OverflowError, match=f"a content digest of {COMPACT} bytes is too long"):
        encode([("k", SeenRecord(0, 1, too_long, 2, 0))], 0)


def test_control_characters_and_quotes_are_escaped_as_json() -> None:
    key = 'ns\x1fsrc\x1fid "q" \\ \n\t\x00\x7f é 😀'
    _, value, _ = meterline_native.encode_chunk([(key, SeenRecord(1, 7, "d", 5, 2))], 1)
    assert orjson.loads(value) == {"e": [[key, 7, 2, "d", 5]]}


@pytest.mark.parametrize("encode", [meterline_native.encode_chunk, seen_codec._encode_chunk])
def test_an_empty_chunk_is_refused(encode: object) -> None:
    assert callable(encode)
    with pytest.raises(ValueError, match="a chunk has events"):
        encode([], 0)
