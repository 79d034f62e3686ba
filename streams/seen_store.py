"""The dedupe store on disk: seen keys in RocksDB, the worker's memory bounded by options.

:class:`SeenIndexStore` is Faust's rocksdb table store (rocksdict driver) plus an index.
Under the table directory (layout, options and figures in ``docs/metering.md``):
``dedupe-<partition>.db``, Faust's own, holds the table as the changelog carries it (one
*chunk entry* per partition per written chunk, or one entry per event from older workers)
and the last changelog offset applied; ``dedupe-index.db``, one per worker, maps
``blake2b-128(dedupe key)`` to the packed record with its chunk key and digest (``seen``;
the layout is ``seen_codec``'s), each chunk to its keys' hashes (``chunks``), and orders
chunks by newest ingestion time for the purge (``expiry``).  One index for all partitions
makes a lookup one RocksDB read, however many partitions the worker owns; the price is
two databases, so a write is two atomic batches, ordered so that a crash between them
leaves the index holding *more* than the chunks — true entries, since a chunk is recorded
only after its events are in ClickHouse.

Invariants:

1. Index entries derive from the chunk bytes alone, on every path that writes a chunk:
   through the table (:meth:`SeenIndexStore._set`, after Faust queued the changelog
   message) and through the changelog (:meth:`apply_changelog_batch`: restores, standbys).
   The writer hands over the index entries it encoded with the bytes (:meth:`prepare`,
   ``seen_codec.encode_chunk``), used only when the bytes written are equal to theirs,
   so it need not read them back.
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

import logging
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from faust.stores import rocksdb
from rocksdict import Rdict, WriteBatch

from streams.dedupe import SeenRecord
from streams.seen_codec import (
    COUNT,
    HASH_BYTES,
    PART,
    TIME,
    Entry,
    Indexed,
    index_entries,
    key_hash,
    points_at,
    raw_entries,
    unpack,
)
from streams.seen_filter import IndexFilter
from streams.seen_index import ScanIndex, SeenIndex, StoreStats
from streams.seen_options import (
    SeenDatabases,
    SeenOptions,
    StoreLimits,
    claim_for_this_boot,
    read_store_stats,
    release_boot_claim,
)

__all__ = ["SeenIndexStore", "StoreLimits", "index_of"]

log = logging.getLogger(__name__)
_CHUNK_KEY = re.compile(rb"(\d+):\d+-\d+")


class SeenIndexStore(rocksdb.Store):  # type: ignore[misc]  # faust is untyped here
    """Faust's rocksdb store, plus the worker's dedupe index (module docstring).

    The table's ``options`` may carry ``limits`` (:class:`StoreLimits`) and
    ``on_restored``, called with the number of changelog messages each restored batch
    applied (the worker's heartbeat reports it: a long restore is progress)."""

    def __init__(self, url: Any, app: Any, table: Any, **kwargs: Any) -> None:
        options = kwargs.get("options") or {}
        limits = options.get("limits") or StoreLimits()
        self._on_restored: Callable[[int], None] | None = options.get("on_restored")
        super().__init__(url, app, table, driver="rocksdict", **kwargs)
        self.rocksdb_options = SeenOptions(limits)
        self._index: SeenDatabases | None = None
        self._assigned: set[int] | None = None  # None: not in a consumer group (tests, bench)
        self._owned: frozenset[int] | None = None  # owned (purged) partitions; None: all
        self._owned_known = False
        self._prepared: tuple[bytes, Indexed] | None = None
        self.keys = IndexFilter(limits.key_filter_bytes)
        """Asked before RocksDB: a look-up it rules out reads nothing (``seen_filter``)."""

    # -- lookups ------------------------------------------------------------------------
    def lookup(self, key: str) -> SeenRecord | None:
        """Where ``key`` was first accepted, as far as this worker's disk knows.

        Every index entry is true whichever partition it belongs to (a chunk is recorded
        only after its events are in ClickHouse), so an entry of a partition this worker
        no longer owns, or holds as a standby, answers too: at worst it is older than the
        changelog, never wrong.  Answering "unseen" instead would let a batch finishing
        through a rebalance meter a duplicate of a record it knows."""
        keys = self.keys.current
        if keys is not None and not keys.may_contain_key(key):  # hashed natively
            return None
        key_bytes = key.encode()
        index = self._index if self._index is not None else self._opened_index()
        value = index.seen.get(key_hash(key_bytes))
        return None if value is None else unpack(value, key_bytes)

    def prepare(self, value: bytes, indexed: Indexed) -> None:
        """The index entries of the chunk ``value`` about to be written through the table,
        as :func:`~streams.seen_codec.index_entries` would make them from ``value``: the
        next write through the table indexes them without reading the bytes back, if it
        writes equal bytes (otherwise, and for any later write, the bytes are read)."""
        self._prepared = (value, indexed)

    def expired(self, threshold_ms: int, limit: int | None = None) -> list[tuple[bytes, int, int]]:
        """``(chunk key, partition, events)`` of owned chunks whose newest event was
        ingested before ``threshold_ms``, oldest first per partition; at most ``limit``."""
        out: list[tuple[bytes, int, int]] = []
        it = self._opened_index().expiry.iter()
        it.seek_to_first()
        while it.valid() and (limit is None or len(out) < limit):
            key: bytes = it.key()
            partition = PART.unpack_from(key)[0]
            if not self._owns(partition) or TIME.unpack_from(key, 4)[0] >= threshold_ms:
                it.seek(PART.pack(partition + 1))
                continue
            out.append((key[12:], partition, COUNT.unpack(it.value())[0]))
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
        prepared, self._prepared = self._prepared, None  # for this write only
        partition = self._partition_of(key)
        if self._assigned is not None and partition not in self._assigned:
            log.info("partition %d is not ours: %r goes to the changelog only", partition, key)
            return
        self._apply(partition, key, value, None, prepared)

    def apply_changelog_batch(self, batch: Iterable[Any], to_key: Any, to_value: Any) -> None:
        """Restore (active or standby): each message, its index first, then the chunk
        with its offset."""
        applied = 0
        for event in batch:
            message = event.message
            if message.key is None:
                raise TypeError(f"Changelog entry is missing key: {message}")
            self._apply(message.partition, message.key, message.value, message.offset)
            applied += 1
        if self._on_restored is not None and applied:
            self._on_restored(applied)

    def _apply(
        self,
        partition: int,
        key: bytes,
        value: bytes | None,
        offset: int | None,
        prepared: tuple[bytes, Indexed] | None = None,
    ) -> None:
        index = self._opened_index()
        db = self._db_for_partition(partition)
        changes = WriteBatch(raw_mode=True)
        self._unindex(changes, index, partition, key)
        if value is not None:
            indexed = (
                prepared[1]
                if prepared is not None and prepared[0] == value
                else index_entries(_entries_or_log(key, value), key)
            )
            self._index_chunk(changes, index, partition, key, indexed, self.keys)
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
        self.keys.after_write(index)

    @staticmethod
    def _index_chunk(
        batch: WriteBatch,
        index: SeenDatabases,
        partition: int,
        chunk_key: bytes,
        indexed: Indexed,
        keys: IndexFilter | None = None,
    ) -> None:
        """Index a chunk's events into ``batch``; their hashes go into the filters ``keys``
        first (a "maybe" before the entry exists is harmless, an "absent" after is not)."""
        pairs, hashed_keys, newest_ms = indexed
        if not pairs:
            return
        if keys is not None:
            keys.add(hashed_keys)
        put, family = batch.put, index.seen_cf
        for hashed, value in pairs:  # hot loop
            put(hashed, value, family)
        prefix, newest = PART.pack(partition), TIME.pack(newest_ms)
        batch.put(prefix + chunk_key, newest + hashed_keys, index.chunks_cf)
        batch.put(prefix + newest + chunk_key, COUNT.pack(len(pairs)), index.expiry_cf)

    @staticmethod
    def _unindex(batch: WriteBatch, index: SeenDatabases, partition: int, chunk_key: bytes) -> None:
        prefix = PART.pack(partition)
        known = index.chunks.get(prefix + chunk_key)
        if known is None:
            return
        for at in range(TIME.size, len(known), HASH_BYTES):
            hashed = known[at : at + HASH_BYTES]
            current = index.seen.get(hashed)
            if current is not None and points_at(current, chunk_key):
                batch.delete(hashed, index.seen_cf)
        batch.delete(prefix + chunk_key, index.chunks_cf)
        batch.delete(prefix + known[: TIME.size] + chunk_key, index.expiry_cf)

    def _partition_of(self, key: bytes) -> int:
        chunk = _CHUNK_KEY.fullmatch(key)
        if chunk is not None:
            return int(chunk.group(1))
        return int(self.table.partition_for_key(key))  # an entry of an older worker

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        if self._assigned is None or tp.partition in self._assigned:
            super().set_persisted_offset(tp, offset)

    def store_stats(self) -> StoreStats | None:
        """``None`` while the index is not open (never opened for this); event loop only."""
        if self._index is None:
            return None
        cache = self.rocksdb_options.cache
        return read_store_stats(self._index, self._dbs.values(), cache, self.keys.nbytes)

    # -- lifecycle -----------------------------------------------------------------------
    def _opened_index(self) -> SeenDatabases:
        if self._index is None:
            index = self._open_index(self.path / f"{self.basename}-index.db")
            self._index = index
            self.keys.close()
            self.keys.start(index)
        return self._index

    def _open_index(self, path: Path) -> SeenDatabases:
        if path.exists():
            index = self.rocksdb_options.open_index(path)
            if claim_for_this_boot(index):
                return index
            log.warning("the host restarted under the open dedupe store: restoring it anew")
            index.close()
            del index  # its column family handles keep the database open
            shutil.rmtree(path)
        self._drop_partitions()
        index = self.rocksdb_options.open_index(path)
        claim_for_this_boot(index)
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
        self.keys.close()  # stops a build before the index closes under its iterator
        index, self._index = self._index, None
        if index is not None:
            for family in (index.seen, index.chunks, index.expiry):
                family.flush()
            release_boot_claim(index)
            index.close()

    def _close(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            log.info("closing dedupe table of partition %d", partition)
            db.close()


def _entries_or_log(chunk_key: bytes, value: bytes) -> list[Entry]:
    try:
        return raw_entries(chunk_key, value)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.error("dedupe entry %r cannot be read, its keys are not indexed: %r", chunk_key, exc)
        return []


def index_of(table: Any) -> SeenIndex:
    data = getattr(table, "data", None)
    return data if isinstance(data, SeenIndexStore) else ScanIndex(table)
