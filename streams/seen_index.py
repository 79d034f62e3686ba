"""What the worker asks of its dedupe table's index (:class:`SeenIndex`), and the
scanning stand-in for a table whose store keeps no index (:class:`ScanIndex`, unit tests).
The worker's own index is :class:`streams.seen_store.SeenIndexStore`."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from streams.dedupe import SeenRecord
from streams.seen_codec import Indexed, raw_entries

__all__ = ["ScanIndex", "SeenIndex", "StoreStats"]


class StoreStats(NamedTuple):
    """What a dedupe store holds on the worker's disk and in its memory, from RocksDB's own
    estimates."""

    keys: int
    """Dedupe keys indexed (estimated: exact in memtables, from file metadata on disk)."""
    sst_bytes: int
    """Bytes of the store's table files, every database and column family."""
    pending_compaction_bytes: int
    """Bytes RocksDB estimates its compaction still has to rewrite: a figure that keeps
    growing means compaction falls behind the writes."""
    memory: dict[str, int]
    """Bytes the store holds in memory, by part: ``block_cache`` (RocksDB's cache, shared
    by every database: data blocks and the memtables charged to it; bounded by
    ``StoreLimits.block_cache_bytes``), ``memtables`` (every database's, inside
    ``block_cache``), ``table_readers`` (the open table files' bloom filters and block
    indexes, outside the cache: they grow with the keys on disk) and ``key_filter`` (the
    index's own Bloom filter, and the one being built)."""


class SeenIndex(Protocol):
    def lookup(self, key: str) -> SeenRecord | None: ...
    def prepare(self, value: bytes, indexed: Indexed) -> None: ...
    def expired(
        self, threshold_ms: int, limit: int | None = None
    ) -> list[tuple[bytes, int, int]]: ...
    def refresh(self) -> None: ...
    def store_stats(self) -> StoreStats | None: ...


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

    def prepare(self, value: bytes, indexed: Indexed) -> None:
        """Nothing to prepare: lookups read the table itself."""

    def refresh(self) -> None:
        pass

    def store_stats(self) -> StoreStats | None:
        """Nothing on disk."""
        return None
