"""The byte layout of the dedupe table and its index (``streams.seen_store``): a written
chunk's table entry and index values, chunk and expiry keys, and how a table entry's
events are read (pure)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from itertools import pairwise
from operator import itemgetter

import orjson

from streams.dedupe import SeenRecord

__all__ = [
    "COMPACT",
    "COUNT",
    "HASH_BYTES",
    "HEAD",
    "PART",
    "TIME",
    "Entry",
    "Indexed",
    "digest_bytes",
    "encode_chunk",
    "entry_slices",
    "index_entries",
    "key_hash",
    "partition_slices",
    "points_at",
    "raw_entries",
    "unpack",
]

# An index value: this head, then the chunk key and the digest.  A compact value (every
# digest the worker makes is lowercase hexadecimal) holds the digest's bytes and flags its
# length with COMPACT; any other digest is held as text followed by the full dedupe key,
# the form earlier workers wrote for every event.  Both read back alike, so an index
# written before the compact form needs no migration.
HEAD = struct.Struct("<IqIqHH")  # partition, offset, index, ingested_ms, len(chunk), len(digest)
COMPACT = 0x8000  # in the digest length: the digest's bytes, and no key after them
PART = struct.Struct(">I")  # big-endian prefixes sort by partition, then by time
TIME = struct.Struct(">Q")
COUNT = struct.Struct("<I")
HASH_BYTES = 16
# (dedupe key, partition, offset, index, digest, ingested_ms): an event as a table entry
# records it (``raw_entries``; a restore reads these back from the changelog's bytes).
Entry = tuple[str, int, int, int, str, int]
Indexed = tuple[list[tuple[bytes, bytes]], bytes, int]
"""A chunk's index entries: ``(key hash, index value)`` per event in the order of the key
hashes (events of one key in record order), the hashes joined in that order, and the
newest ``ingested_ms`` (at least 0).

Why sorted: the index's memtable is a skip list, and RocksDB resumes each insert of a
write batch from where the previous one ended, so a batch of keys in ascending order is
inserted faster than the same keys at random (a chunk's key hashes are random): 600,000
keys in batches of 5,000, ×0.70–0.75 the CPU per key written (``docs/benchmarks.md``,
eighteenth round).  The sort is stable, so where one key has two
entries in a chunk the later is still put last and wins."""


_first = itemgetter(0)


def _key_hash(key: bytes) -> bytes:
    """``blake2b-128(key)``, how the index names a dedupe key."""
    return hashlib.blake2b(key, digest_size=HASH_BYTES).digest()


def digest_bytes(digest: str) -> bytes | None:
    """The bytes a lowercase hexadecimal ``digest`` spells (which ``bytes.hex`` turns back
    into the same text), or ``None`` for any other text."""
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        return None
    return raw if raw.hex() == digest else None


def index_entries(entries: Sequence[Entry], chunk_key: bytes) -> Indexed:
    """The index entries of the events a chunk entry ``chunk_key`` records."""
    pairs = []
    head, chunk_len = HEAD.pack, len(chunk_key)
    for key_text, partition, offset, position, digest, ingested in entries:
        key = key_text.encode()
        raw = digest_bytes(digest)
        if raw is not None and len(raw) < COMPACT:
            packed = head(partition, offset, position, ingested, chunk_len, COMPACT | len(raw))
            pairs.append((key_hash(key), packed + chunk_key + raw))
        else:
            text = digest.encode()
            if len(text) >= COMPACT:
                raise OverflowError(f"a content digest of {len(text)} bytes is too long")
            packed = head(partition, offset, position, ingested, chunk_len, len(text))
            pairs.append((key_hash(key), packed + chunk_key + text + key))
    pairs.sort(key=_first)
    newest = max(0, max((entry[5] for entry in entries), default=0))
    return pairs, b"".join(hashed for hashed, _ in pairs), newest


def _encode_chunk(
    kept: list[tuple[str, SeenRecord]], partition: int
) -> tuple[bytes, bytes, Indexed]:
    """``(table key, table value, index entries)`` of one partition's kept events, in
    record order: the key ``b"<partition>:<first offset>-<last offset>"``, the value
    ``{"e": [[dedupe key, offset, index, digest, ingested_ms], ...]}``."""
    if not kept:
        raise ValueError("a chunk has events")
    offsets = [record.offset for _, record in kept]
    value = orjson.dumps(
        {"e": [[key, r.offset, r.index, r.content_hash, r.ingested_ms] for key, r in kept]}
    )
    table_key = f"{partition}:{min(offsets)}-{max(offsets)}".encode()
    entries = [
        (key, partition, r.offset, r.index, r.content_hash, r.ingested_ms) for key, r in kept
    ]
    return table_key, value, index_entries(entries, table_key)


try:  # the same results from the native module (schemas/native), tested equal
    # (tests/streams/test_key_filter.py, test_seen_codec.py): ``key_hash`` 0.2 µs a key
    # instead of 0.9, ``encode_chunk`` a chunk in one call
    from meterline_native import encode_chunk, key_hash
except ImportError:  # not built, or built from older sources: the Python reference
    encode_chunk, key_hash = _encode_chunk, _key_hash


def raw_entries(table_key: bytes, value: bytes) -> list[Entry]:
    """The events a table entry records: a chunk, or one event as older workers wrote it."""
    if not value.startswith(b"{"):
        r = SeenRecord.decode(value.decode())
        return [(table_key.decode(), r.partition, r.offset, r.index, r.content_hash, r.ingested_ms)]
    partition = int(table_key.split(b":", 1)[0])
    return [(k, partition, o, i, d, t) for k, o, i, d, t in orjson.loads(value)["e"]]


def unpack(value: bytes, key: bytes) -> SeenRecord | None:
    """The record an index value holds for ``key``: ``None`` when the value names another
    key with the same hash (only a value that carries its key can tell; the odds of two
    keys sharing 128 bits of hash are in ``docs/metering.md``)."""
    partition, offset, index, ingested, chunk_len, digest_len = HEAD.unpack_from(value)
    digest_at = HEAD.size + chunk_len
    if digest_len & COMPACT:
        digest = value[digest_at : digest_at + (digest_len ^ COMPACT)].hex()
        return SeenRecord(partition, offset, digest, ingested, index)
    if value[digest_at + digest_len :] != key:
        return None  # another key with the same hash
    digest = value[digest_at : digest_at + digest_len].decode()
    return SeenRecord(partition, offset, digest, ingested, index)


def points_at(value: bytes, chunk_key: bytes) -> bool:
    """Whether an index value was written by the table entry ``chunk_key`` (a chunk key
    names its partition; an older worker's entry is keyed by its unique dedupe key, and
    its changelog partition need not be the record's)."""
    chunk_len = HEAD.unpack_from(value)[4]
    return value[HEAD.size : HEAD.size + chunk_len] == chunk_key


def partition_slices(
    entries: Sequence[tuple[str, SeenRecord]], max_events: int
) -> list[tuple[int, list[tuple[str, SeenRecord]]]]:
    """A written chunk's kept events as table entries (pure): grouped by their partition,
    partitions in the order they first appear, events in record order, each partition cut
    by :func:`entry_slices`."""
    by_partition: dict[int, list[tuple[str, SeenRecord]]] = {}
    for entry in entries:  # per event: no list or tuple built
        kept = by_partition.get(entry[1].partition)
        if kept is None:
            kept = by_partition[entry[1].partition] = []
        kept.append(entry)
    return [
        (partition, part)
        for partition, kept in by_partition.items()
        for part in entry_slices(kept, max_events)
    ]


def entry_slices(
    kept: list[tuple[str, SeenRecord]], max_events: int
) -> list[list[tuple[str, SeenRecord]]]:
    """One partition's kept events, in record order, cut into table entries of at most
    ``max_events`` events (a record with more is an entry of its own), only between
    records (pure).  The entries of one write then cover disjoint offset ranges, so their
    keys differ; if the offsets are not in order (never on the worker's path), the events
    stay one entry rather than risk two entries with one key."""
    if len(kept) <= max_events:
        return [kept]
    offsets = [record.offset for _, record in kept]
    if any(a > b for a, b in pairwise(offsets)):
        return [kept]
    out: list[list[tuple[str, SeenRecord]]] = []
    start = i = 0
    while i < len(kept):
        end = i + 1  # [i, end): one record's events
        while end < len(kept) and offsets[end] == offsets[i]:
            end += 1
        if end - start > max_events and i > start:
            out.append(kept[start:i])
            start = i
        i = end
    out.append(kept[start:])
    return out
