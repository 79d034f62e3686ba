"""The dedupe store on disk: seen keys in RocksDB, the worker's memory bounded by options.

:class:`SeenIndexStore` is Faust's rocksdb table store (rocksdict driver) plus an index.
Under the table directory (layout, options and figures in ``docs/metering.md``):
``dedupe-<partition>.db``, Faust's own, holds the table as the changelog carries it (one
*chunk entry* per partition per written chunk, or one entry per event from older
workers) and the last changelog offset applied; ``dedupe-index.db``, one per worker,
maps ``blake2b-128(dedupe key)`` to the packed record with its chunk key and full key
(``seen``), each chunk to its keys' hashes (``chunks``), and orders chunks by newest
ingestion time for the purge (``expiry``).  One index for all partitions makes a lookup
one RocksDB read, however many partitions the worker owns; the price is two databases,
so a write is two atomic batches, ordered so that a crash between them leaves the index
holding *more* than the chunks — true entries, since a chunk is recorded only after its
events are in ClickHouse.

Invariants:

1. Index entries derive from the chunk bytes alone, on every path that writes a chunk:
   through the table (:meth:`SeenIndexStore._set`, after Faust queued the changelog
   message) and through the changelog (:meth:`apply_changelog_batch`: restores, standbys).
2. The index is written first, except that a chunk deleted through the table (the purge)
   goes before its index entries.  A restored chunk is written with its offset.
3. An index entry points at the chunk that wrote it last; removing a chunk removes only
   the entries still pointing at it: a key is forgotten only when the record it points at
   is itself past the purge threshold.
4. Only partitions the worker owns (not standbys) take local writes and are purged.
   A write after its partition was revoked (a batch finishing through a rebalance)
   reaches the changelog only; the local state stays at its persisted offset, and if the
   partition comes back, the restore replays it with whatever others wrote meanwhile.
   Lookups answer from every entry on disk (:meth:`SeenIndexStore.lookup` says why).

What a crash costs: before the local writes, nothing (the records are read again and
recorded then).  Between the index and the chunk: an index entry the table lacks (true);
the re-read records the chunk again.  Before Kafka acknowledged the message: nothing, the
persisted offset moves only then.  During a restore: nothing, it resumes after the last
message applied.  During a purge: a local delete cut short is finished by the next purge
(the expiry entry goes last); a tombstone never sent leaves an expired chunk in the
changelog, harmless (past the horizon) and purged again after any restore that brings it
back.  Host crash or power loss: the write-ahead logs are not synced, so the two
databases may come back at different points; the index records (synced) the boot it was
opened in and clears it on a clean close, and opened in another boot without one, the
store is dropped and restored from the changelog — as it is when the index is missing.

Memory (:class:`StoreLimits`): one LRU block cache per process, shared by every database
and column family, holds data blocks and is charged for the memtables.  Outside it, each
open table file keeps its bloom filter and block index, ~1.8 bytes per retained key (a
filter, the one in-memory structure that grows with the keys, and bounded by them);
``index_and_filters_in_cache`` moves those into the cache too, at a cost per lookup.  The
keys themselves live on disk.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson
from faust.stores import rocksdb
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from streams.dedupe import SeenRecord

__all__ = ["ScanIndex", "SeenIndex", "SeenIndexStore", "StoreLimits", "index_of"]

log = logging.getLogger(__name__)
MiB = 1024 * 1024
SEEN, CHUNKS, EXPIRY = "seen", "chunks", "expiry"
# an index value: this head, then the chunk key, the digest and the full dedupe key
_HEAD = struct.Struct("<IqIqHH")  # partition, offset, index, ingested_ms, len(chunk), len(digest)
_PART = struct.Struct(">I")  # big-endian prefixes sort by partition, then by time
_TIME = struct.Struct(">Q")
_COUNT = struct.Struct("<I")
_HASH = 16
_CHUNK_KEY = re.compile(rb"(\d+):\d+-\d+")
_OPENED_IN = b"meterline\0opened-in-boot"
_SYNCED = WriteOptions()
_SYNCED.sync = True
# (dedupe key, partition, offset, index, digest, ingested_ms): a plain tuple, not a
# SeenRecord, because the write path builds one per event.
Entry = tuple[str, int, int, int, str, int]


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """RocksDB sizes for one worker process (rocksdb's defaults would be a 2 GiB block
    cache and 3 × 64 MiB memtables per partition)."""

    block_cache_bytes: int = 128 * MiB
    """Shared by every database: data, index and filter blocks, and the memtables."""
    memtable_bytes: int = 32 * MiB
    """All memtables of all databases together, charged to the block cache."""
    write_buffer_bytes: int = 8 * MiB
    max_write_buffers: int = 2
    max_open_files: int = 1024
    """Per database; an open file keeps its bloom filter and block index in memory."""
    bloom_bits_per_key: int = 10
    index_and_filters_in_cache: bool = False
    """True: index and filter blocks in the block cache too (partitioned), so RocksDB's
    memory stops growing with the keys, at ~1.6x the cost of a lookup that misses; False
    (measured faster): each open file keeps its bloom filter and index in memory, ~1.8
    bytes per retained key."""
    background_jobs: int = 2


def key_hash(key: bytes) -> bytes:
    return hashlib.blake2b(key, digest_size=_HASH).digest()


def raw_entries(table_key: bytes, value: bytes) -> list[Entry]:
    """The events a table entry records: a chunk, or one event as older workers wrote it."""
    if not value.startswith(b"{"):
        r = SeenRecord.decode(value.decode())
        return [(table_key.decode(), r.partition, r.offset, r.index, r.content_hash, r.ingested_ms)]
    partition = int(table_key.split(b":", 1)[0])
    return [(k, partition, o, i, d, t) for k, o, i, d, t in orjson.loads(value)["e"]]


def _unpack(value: bytes, key: bytes) -> SeenRecord | None:
    partition, offset, index, ingested, chunk_len, digest_len = _HEAD.unpack_from(value)
    digest_at = _HEAD.size + chunk_len
    if value[digest_at + digest_len :] != key:
        return None  # another key with the same hash
    digest = value[digest_at : digest_at + digest_len].decode()
    return SeenRecord(partition, offset, digest, ingested, index)


def _points_at(value: bytes, chunk_key: bytes) -> bool:
    """Whether an index value was written by the table entry ``chunk_key`` (a chunk key
    names its partition; an older worker's entry is keyed by its unique dedupe key, and
    its changelog partition need not be the record's)."""
    chunk_len = _HEAD.unpack_from(value)[4]
    return value[_HEAD.size : _HEAD.size + chunk_len] == chunk_key


class _Index(NamedTuple):
    db: Rdict
    seen: Rdict
    chunks: Rdict
    expiry: Rdict
    seen_cf: ColumnFamily
    chunks_cf: ColumnFamily
    expiry_cf: ColumnFamily


class SeenOptions(rocksdb.RocksDBOptions):  # type: ignore[misc]  # faust is untyped here
    """Opens the databases with the shared cache and write-buffer budget."""

    def __init__(self, limits: StoreLimits) -> None:
        super().__init__(use_rocksdict=True)
        self.limits = limits
        self.cache = Cache(limits.block_cache_bytes)
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            limits.memtable_bytes, False, self.cache
        )

    def open(self, path: Path, *, read_only: bool = False) -> Rdict:
        return Rdict(str(path), options=self.as_options())

    def open_index(self, path: Path) -> _Index:
        options = self.as_options()
        options.create_missing_column_families(True)
        families = {name: self.as_options() for name in (SEEN, CHUNKS, EXPIRY)}
        db = Rdict(str(path), options=options, column_families=families)
        return _Index(
            db,
            db.get_column_family(SEEN),
            db.get_column_family(CHUNKS),
            db.get_column_family(EXPIRY),
            db.get_column_family_handle(SEEN),
            db.get_column_family_handle(CHUNKS),
            db.get_column_family_handle(EXPIRY),
        )

    def as_options(self) -> Options:
        limits = self.limits
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(limits.max_open_files)
        options.set_write_buffer_size(limits.write_buffer_bytes)
        options.set_max_write_buffer_number(limits.max_write_buffers)
        options.set_write_buffer_manager(self.write_buffers)
        options.set_max_background_jobs(limits.background_jobs)
        options.set_compression_type(DBCompressionType.lz4())
        options.set_keep_log_file_num(3)
        # most lookups miss: a bloom filter on the memtable spares its skiplist search
        options.set_memtable_whole_key_filtering(True)
        options.set_memtable_prefix_bloom_ratio(0.1)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_bloom_filter(limits.bloom_bits_per_key, False)
        # index and filter blocks live in (and are bounded by) the cache, partitioned so
        # that a lookup loads one small partition, not a whole file's filter; the top
        # level of each stays pinned (a few KiB per file)
        if limits.index_and_filters_in_cache:
            table.set_index_type(BlockBasedIndexType.two_level_index_search())
            table.set_partition_filters(True)
            table.set_cache_index_and_filter_blocks(True)
            table.set_pin_top_level_index_and_filter(True)
            table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        return options


class SeenIndexStore(rocksdb.Store):  # type: ignore[misc]  # faust is untyped here
    """Faust's rocksdb store, plus the worker's dedupe index (module docstring).

    The table's ``options`` may carry ``limits`` (:class:`StoreLimits`)."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        limits = (kwargs.get("options") or {}).get("limits") or StoreLimits()
        super().__init__(url, app, table, driver="rocksdict", **kwargs)
        self.rocksdb_options = SeenOptions(limits)
        self._index: _Index | None = None
        self._assigned: set[int] | None = None  # None: not in a consumer group (tests, bench)
        self._owned: frozenset[int] | None = None  # owned (purged) partitions; None: all
        self._owned_known = False

    # -- lookups ------------------------------------------------------------------------
    def lookup(self, key: str) -> SeenRecord | None:
        """Where ``key`` was first accepted, as far as this worker's disk knows.

        Every index entry is true whichever partition it belongs to (a chunk is recorded
        only after its events are in ClickHouse), so an entry of a partition this worker
        no longer owns, or holds as a standby, answers too: at worst it is older than the
        changelog, never wrong.  Answering "unseen" instead would let a batch finishing
        through a rebalance meter a duplicate of a record it knows."""
        key_bytes = key.encode()
        value = self._opened_index().seen.get(key_hash(key_bytes))
        if value is None:
            return None
        return _unpack(value, key_bytes)

    def expired(self, threshold_ms: int, limit: int | None = None) -> list[tuple[bytes, int, int]]:
        """``(chunk key, partition, events)`` of owned chunks whose newest event was
        ingested before ``threshold_ms``, oldest first per partition; at most ``limit``."""
        out: list[tuple[bytes, int, int]] = []
        it = self._opened_index().expiry.iter()
        it.seek_to_first()
        while it.valid() and (limit is None or len(out) < limit):
            key: bytes = it.key()
            partition = _PART.unpack_from(key)[0]
            if not self._owns(partition) or _TIME.unpack_from(key, 4)[0] >= threshold_ms:
                it.seek(_PART.pack(partition + 1))
                continue
            out.append((key[12:], partition, _COUNT.unpack(it.value())[0]))
            it.next()
        return out

    def refresh(self) -> None:
        """Recompute which partitions this worker owns, the ones it purges (after an
        assignment or a recovery)."""
        self._owned_known = False

    def _owns(self, partition: int) -> bool:
        if not self._owned_known:
            self._owned = None
            if self._assigned is not None:
                topics = self.table.changelog_topic.topics
                standbys = self.app.assignor.assigned_standbys()
                self._owned = frozenset(
                    p for p in self._assigned if not any((t, p) in standbys for t in topics)
                )
            self._owned_known = True
        return self._owned is None or partition in self._owned

    # -- writes: through the table and through the changelog ----------------------------
    def _set(self, key: bytes, value: bytes | None) -> None:
        self._write_owned(key, value)

    def _del(self, key: bytes) -> None:
        self._write_owned(key, None)

    def _write_owned(self, key: bytes, value: bytes | None) -> None:
        partition = self._partition_of(key)
        if self._assigned is not None and partition not in self._assigned:
            log.info("partition %d is not ours: %r goes to the changelog only", partition, key)
            return
        self._apply(partition, key, value, None)

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Restore (active or standby): each message, its index first, then the chunk
        with its offset."""
        for event in batch:
            message = event.message
            if message.key is None:
                raise TypeError(f"Changelog entry is missing key: {message}")
            self._apply(message.partition, message.key, message.value, message.offset)

    def _apply(self, partition: int, key: bytes, value: bytes | None, offset: int | None) -> None:
        index = self._opened_index()
        db = self._db_for_partition(partition)
        changes = WriteBatch(raw_mode=True)
        self._unindex(changes, index, partition, key)
        if value is not None:
            self._index_chunk(changes, index, partition, key, value)
        table = WriteBatch(raw_mode=True)
        if value is None:
            table.delete(key)
        else:
            table.put(key, value)
        if offset is not None:
            table.put(self.offset_key, str(offset).encode())
        if value is None and offset is None:  # deleted through the table: the chunk first
            db.write(table)
            index.db.write(changes)
        else:
            index.db.write(changes)
            db.write(table)

    @staticmethod
    def _index_chunk(
        batch: WriteBatch, index: _Index, partition: int, chunk_key: bytes, value: bytes
    ) -> None:
        entries = _entries_or_log(chunk_key, value)
        if not entries:
            return
        hashes = []
        put, family, head, chunk_len = batch.put, index.seen_cf, _HEAD.pack, len(chunk_key)
        for key_text, partition_, offset, position, digest, ingested in entries:  # hot loop
            key, digest_bytes = key_text.encode(), digest.encode()
            hashed = key_hash(key)
            hashes.append(hashed)
            packed = head(partition_, offset, position, ingested, chunk_len, len(digest_bytes))
            put(hashed, packed + chunk_key + digest_bytes + key, family)
        prefix = _PART.pack(partition)
        newest = _TIME.pack(max(0, max(entry[5] for entry in entries)))
        batch.put(prefix + chunk_key, newest + b"".join(hashes), index.chunks_cf)
        batch.put(prefix + newest + chunk_key, _COUNT.pack(len(entries)), index.expiry_cf)

    @staticmethod
    def _unindex(batch: WriteBatch, index: _Index, partition: int, chunk_key: bytes) -> None:
        prefix = _PART.pack(partition)
        known = index.chunks.get(prefix + chunk_key)
        if known is None:
            return
        for at in range(_TIME.size, len(known), _HASH):
            hashed = known[at : at + _HASH]
            current = index.seen.get(hashed)
            if current is not None and _points_at(current, chunk_key):
                batch.delete(hashed, index.seen_cf)
        batch.delete(prefix + chunk_key, index.chunks_cf)
        batch.delete(prefix + known[: _TIME.size] + chunk_key, index.expiry_cf)

    def _partition_of(self, key: bytes) -> int:
        chunk = _CHUNK_KEY.fullmatch(key)
        if chunk is not None:
            return int(chunk.group(1))
        return int(self.table.partition_for_key(key))  # an entry of an older worker

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        if self._assigned is None or tp.partition in self._assigned:
            super().set_persisted_offset(tp, offset)

    # -- lifecycle -----------------------------------------------------------------------
    def _opened_index(self) -> _Index:
        if self._index is None:
            self._index = self._open_index(self.path / f"{self.basename}-index.db")
        return self._index

    def _open_index(self, path: Path) -> _Index:
        boot = _boot_id()
        if path.exists():
            index = self.rocksdb_options.open_index(path)
            opened_in = index.db.get(_OPENED_IN)
            if opened_in is None or opened_in == boot:
                index.db.put(_OPENED_IN, boot, _SYNCED)
                return index
            log.warning("the host restarted under the open dedupe store: restoring it anew")
            _close_index(index)
            del index  # its column family handles keep the database open
            shutil.rmtree(path)
        self._drop_partitions()
        index = self.rocksdb_options.open_index(path)
        index.db.put(_OPENED_IN, boot, _SYNCED)
        return index

    def _drop_partitions(self) -> None:
        """Partition databases without a trusted index are restored from the changelog
        (none is open: a partition opens only after the index)."""
        pattern = re.compile(rf"{re.escape(str(self.basename))}-\d+\.db")
        for path in self.path.glob(f"{self.basename}-*.db"):
            if pattern.fullmatch(path.name):
                log.warning("dropping %s: Faust restores it from the changelog", path)
                shutil.rmtree(path)

    def _open_for_partition(self, partition: int) -> Rdict:
        self._opened_index()
        db: Rdict = self.rocksdb_options.open(self.partition_path(partition))
        return db

    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:
        topics = self.table.changelog_topic.topics
        self._assigned = {tp.partition for tp in assigned if tp.topic in topics}
        log.info("dedupe store: changelog partitions %s assigned", sorted(self._assigned))
        self.refresh()
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        self.refresh()

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        self.refresh()
        await super().on_recovery_completed(active_tps, standby_tps)

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        """Close (and flush) a revoked partition's database, releasing its lock; Faust's
        own version only drops its reference."""
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._close(tp.partition)

    async def stop(self) -> None:
        self.close()
        await super().stop()

    def reset_state(self) -> None:
        self.close()
        super().reset_state()

    def close(self) -> None:
        """Flush and close every database; a clean close clears the boot record."""
        for partition in list(self._dbs):
            self._close(partition)
        index, self._index = self._index, None
        if index is not None:
            for family in (index.seen, index.chunks, index.expiry):
                family.flush()
            index.db.delete(_OPENED_IN, _SYNCED)
            _close_index(index)

    def _close(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            log.info("closing dedupe table of partition %d", partition)
            db.close()


def _close_index(index: _Index) -> None:
    for family in (index.seen, index.chunks, index.expiry, index.db):
        family.close()


def _boot_id() -> bytes:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_bytes().strip()
    except OSError:  # not Linux: every start counts as the same boot
        return b"-"


def _entries_or_log(chunk_key: bytes, value: bytes) -> list[Entry]:
    try:
        return raw_entries(chunk_key, value)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.error("dedupe entry %r cannot be read, its keys are not indexed: %r", chunk_key, exc)
        return []


class SeenIndex(Protocol):
    def lookup(self, key: str) -> SeenRecord | None: ...
    def expired(
        self, threshold_ms: int, limit: int | None = None
    ) -> list[tuple[bytes, int, int]]: ...
    def refresh(self) -> None: ...


class ScanIndex:
    """Lookups by scanning a table whose store does not index (a plain mapping standing in
    for the table in unit tests): no memory beyond the table, O(entries) per lookup.  The
    worker always uses :class:`SeenIndexStore`."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def lookup(self, key: str) -> SeenRecord | None:
        found = None
        for table_key, value in self.table.items():
            for entry_key, partition, offset, index, digest, ingested in raw_entries(
                table_key, value
            ):
                if entry_key == key:  # the newest entry wins, as in the index
                    found = SeenRecord(partition, offset, digest, ingested, index)
        return found

    def expired(self, threshold_ms: int, limit: int | None = None) -> list[tuple[bytes, int, int]]:
        out = []
        for table_key, value in self.table.items():
            entries = raw_entries(table_key, value)
            if entries and max(e[5] for e in entries) < threshold_ms:
                out.append((table_key, entries[0][1], len(entries)))
        return out[:limit]

    def refresh(self) -> None:
        pass


def index_of(table: Any) -> SeenIndex:
    data = getattr(table, "data", None)
    return data if isinstance(data, SeenIndexStore) else ScanIndex(table)
