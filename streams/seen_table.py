"""The worker's dedupe store over its Faust table (:class:`TableSeenStore`): one table
entry per partition and written chunk, its changelog partition chosen per write
(:class:`PositionedTable`), looked up through the on-disk index
(:class:`streams.seen_store.SeenIndexStore`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from streams.dedupe import SeenRecord
from streams.plan import RowsSeen
from streams.seen_codec import encode_chunk, partition_slices
from streams.seen_index import SeenIndex
from streams.seen_store import SeenIndexStore, index_of

__all__ = ["ENTRY_EVENTS", "PURGE_SLICE", "PositionedTable", "TableSeenStore"]

ENTRY_EVENTS = 5000
"""Events per dedupe table entry (one changelog message) at most, cut between records (a
record larger than this is an entry of its own): the unit a restore applies and a purge
drops, whatever the size of the ClickHouse write the entries come from."""
PURGE_SLICE = 20
"""Table entries (of up to ``ENTRY_EVENTS`` events each) purged per slice."""


class PositionedTable(faust.Table):  # type: ignore[misc]  # faust is untyped here
    """A table whose changelog partition is chosen per write by :meth:`put_at`, stored on
    disk by :class:`SeenIndexStore` whatever store URL the app names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_partition: int | None = None

    def _new_store_by_url(self, url: Any) -> SeenIndexStore:
        return SeenIndexStore(
            "rocksdb://",
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )

    def partition_for_key(self, key: Any) -> int | None:
        if self._write_partition is not None:
            return self._write_partition
        return super().partition_for_key(key)  # type: ignore[no-any-return]

    def put_at(self, key: bytes, value: bytes, partition: int) -> None:
        self._write_partition = partition
        try:
            self[key] = value
        finally:
            self._write_partition = None

    def delete_at(self, key: bytes, partition: int) -> None:
        self._write_partition = partition
        try:
            del self[key]
        finally:
            self._write_partition = None


@dataclass(slots=True)
class TableSeenStore:
    """The dedupe store over a Faust table: one table entry per partition per write.

    Each :meth:`put_many` (one written chunk) adds, per partition, one entry keyed
    ``b"<partition>:<first offset>-<last offset>"`` and written to that changelog
    partition; its value lists the kept events,
    ``{"e": [[dedupe key, offset, index, digest, ingested_ms], ...]}``.  A changelog
    message per partition and chunk, instead of one per event or per record, keeps the
    changelog off the worker's hot path (small live records would otherwise cost one
    Kafka send each).  Lookups go to the table's store, which indexes every entry by key
    on disk as it is written or restored (:mod:`streams.seen_store`); entries written by
    older workers (one per event, keyed by the dedupe key) are read as well.
    """

    table: PositionedTable
    index: SeenIndex = field(init=False)
    get: Callable[[str], SeenRecord | None] = field(init=False)
    """Where a dedupe key was first accepted: the index's own ``lookup``, bound once, so
    the planner's per-event look-up makes no call through this object."""

    def __post_init__(self) -> None:
        self.index = index_of(self.table)
        self.get = self.index.lookup

    def key_filter(self) -> Any:
        """The index's key filter in use (``streams.seen_filter``), or ``None``: a key it
        rules out is one :attr:`get` answers ``None`` for without reading.  The planner
        asks once per chunk; no key is indexed while a chunk is planned."""
        keys = getattr(self.index, "keys", None)
        return None if keys is None else keys.current

    def get_many(self, keys: Sequence[str]) -> list[SeenRecord | None]:
        """One lookup per key (rocksdict's multi-get measured no faster here)."""
        return [self.index.lookup(key) for key in keys]

    def put_many(self, entries: Sequence[tuple[str, SeenRecord]]) -> None:
        """Record ``entries`` in table entries of at most ``ENTRY_EVENTS`` events, cut by
        partition.  A native plan's entries (``RowsSeen``) are encoded from its raw rows
        (``meterline_native.RawRows.seen_chunks``: the rows *are* the entries, in the same
        order), the same bytes as :func:`encode_chunk` of the entries, without reading a
        ``SeenRecord`` per event."""
        if type(entries) is RowsSeen:
            chunks = entries.rows.seen_chunks(ENTRY_EVENTS)
        else:
            chunks = (
                (partition, encode_chunk(part, partition))
                for partition, part in partition_slices(entries, ENTRY_EVENTS)
            )
        for partition, (table_key, value, indexed) in chunks:
            self.index.prepare(value, indexed)  # the index need not read the entry back
            self.table.put_at(table_key, value, partition)

    def invalidate(self) -> None:
        """The assignment changed or a recovery ended: purge the partitions owned now."""
        self.index.refresh()

    def purge(self, threshold_ms: int, max_entries: int | None = None) -> int:
        """Drop entries whose newest event was ingested before ``threshold_ms``, at most
        ``max_entries`` of them (oldest first); the number of events dropped."""
        dropped = 0
        for table_key, partition, events in self.index.expired(threshold_ms, max_entries):
            self.table.delete_at(table_key, partition)
            dropped += events
        return dropped
