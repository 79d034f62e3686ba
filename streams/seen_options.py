"""RocksDB options of the dedupe store (``streams.seen_store``): one block cache per
worker process, a write-buffer budget charged to it, bloom filters; figures and the
reasons for each value in ``docs/metering.md``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from faust.stores import rocksdb
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    DBCompressionType,
    Options,
    Rdict,
    WriteBufferManager,
    WriteOptions,
)

from streams.seen_index import StoreStats

__all__ = [
    "CHUNKS",
    "EXPIRY",
    "SEEN",
    "SeenDatabases",
    "SeenOptions",
    "StoreLimits",
    "boot_id",
    "claim_for_this_boot",
    "read_store_stats",
    "release_boot_claim",
]

MiB = 1024 * 1024
SEEN, CHUNKS, EXPIRY = "seen", "chunks", "expiry"
_OPENED_IN = b"meterline\0opened-in-boot"
_SYNCED = WriteOptions()
_SYNCED.sync = True


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
    key_filter_bytes: int = 64 * MiB
    """The dedupe index's own Bloom filter (``meterline_native.KeyFilter``, 10 bits per
    key, sized for twice the keys it holds when built): up to ~53M keys at this size;
    past them there is none and every look-up reads RocksDB."""


class SeenDatabases(NamedTuple):
    """The index database and its column families (handles for reads, family objects for
    write batches)."""

    db: Rdict
    seen: Rdict
    chunks: Rdict
    expiry: Rdict
    seen_cf: ColumnFamily
    chunks_cf: ColumnFamily
    expiry_cf: ColumnFamily

    def close(self) -> None:
        for family in (self.seen, self.chunks, self.expiry, self.db):
            family.close()


def boot_id() -> bytes:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_bytes().strip()
    except OSError:  # not Linux: every start counts as the same boot
        return b"-"


def claim_for_this_boot(index: SeenDatabases) -> bool:
    """Record (synced) that the index is open in this boot, unless it was left open in
    another: a host crash, after which its unsynced write-ahead logs are not trusted
    (``False``, nothing written).  A clean close releases the claim."""
    boot = boot_id()
    opened_in = index.db.get(_OPENED_IN)
    if opened_in is not None and opened_in != boot:
        return False
    index.db.put(_OPENED_IN, boot, _SYNCED)
    return True


def release_boot_claim(index: SeenDatabases) -> None:
    index.db.delete(_OPENED_IN, _SYNCED)


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

    def open_index(self, path: Path) -> SeenDatabases:
        options = self.as_options()
        options.create_missing_column_families(True)
        families = {name: self.as_options() for name in (SEEN, CHUNKS, EXPIRY)}
        db = Rdict(str(path), options=options, column_families=families)
        return SeenDatabases(
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


def read_store_stats(
    index: SeenDatabases, partition_dbs: Iterable[Rdict], cache: Cache, key_filter_bytes: int
) -> StoreStats:
    """The dedupe store's size from RocksDB's own figures: keys of ``seen``, table-file
    bytes and pending compaction bytes summed over every database and family, and what it
    holds in memory by part (``StoreStats.memory``; ``key_filter_bytes`` is the key
    filter's, which RocksDB does not see)."""
    families = (index.seen, index.chunks, index.expiry, *partition_dbs)

    def total(name: str) -> int:
        return sum(family.property_int_value(name) or 0 for family in families)

    return StoreStats(
        keys=index.seen.property_int_value("rocksdb.estimate-num-keys") or 0,
        sst_bytes=total("rocksdb.total-sst-files-size"),
        pending_compaction_bytes=total("rocksdb.estimate-pending-compaction-bytes"),
        memory={
            "block_cache": cache.get_usage(),
            "memtables": total("rocksdb.cur-size-all-mem-tables"),
            "table_readers": total("rocksdb.estimate-table-readers-mem"),
            "key_filter": key_filter_bytes,
        },
    )
