"""The Faust worker: thin glue between the events topic and :class:`MeteringSink`.

:func:`create_worker` builds everything from settings; importing this module does no work.
Faust can skip records around its post-recovery seek (seen here: a restarted worker's
second batch started 19 offsets past the first one's end).  The sink refuses any batch
whose offsets jump forward within a partition, and the worker exits unacknowledged;
``python -m streams worker`` supervises the worker process and restarts it, so the
skipped records are read again.

The agent takes batches with ``Stream.take_events`` — Faust acknowledges a batch's
records only when the loop comes back for the next batch, i.e. after the ClickHouse write
and the dedupe records.  Faust acknowledges a buffer even when the loop body raises, so
on any failure the worker exits at once (``os._exit``) instead of letting an unwritten
batch be acknowledged and committed; the records are then read again by the next owner
of the partition.  The same holds when the app stops mid-batch (its consumer crashed, or
SIGTERM): Faust cancels the agent, and closing the take buffer would acknowledge the
batch in flight, so a cancelled batch exits at once too (``EXIT_STOPPED_MID_BATCH``).

Dedupe state lives in a Faust table (changelog-backed) kept on disk by
:class:`streams.seen_store.SeenIndexStore` (RocksDB, memory bounded, indexed by key); a
restarted worker reuses its local state and restores only the changelog's tail.  Its
writes go to the changelog partition of the record they describe — not of whatever
record happens to be current — via :class:`PositionedTable`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from ingest.admin import MAX_RECORD_BYTES
from schemas.errors import ServiceUnavailable
from schemas.metering.definitions import MeterSet
from schemas.settings import Settings
from schemas.storage.cluster import shard_database
from schemas.storage.engine import Engine, ServerEngine, shard_engines
from schemas.timeutil import now_ms
from schemas.wire import is_batch
from streams import faust_fixes, metrics
from streams.batch import BatchMeter
from streams.dedupe import SeenRecord
from streams.liveness import WorkerState, supervise_from_child
from streams.local_state import claim_slot, state_root
from streams.progress import resume_positions
from streams.seen_codec import encode_chunk, entry_slices
from streams.seen_index import SeenIndex
from streams.seen_store import SeenIndexStore, index_of
from streams.sink import (
    WRITE_DEADLINE_SECONDS,
    BatchPlan,
    MeteringSink,
    Record,
    RecordsSkipped,
    SinkFailed,
)

__all__ = ["PositionedTable", "TableSeenStore", "Worker", "create_worker"]

log = logging.getLogger(__name__)
EXIT_SINK_FAILED = 70
EXIT_SKIPPED = 71
EXIT_STOPPED_MID_BATCH = 72
RESTARTABLE_EXITS = (EXIT_SINK_FAILED, EXIT_SKIPPED, EXIT_STOPPED_MID_BATCH)
ENTRY_EVENTS = 5000
"""Events per dedupe table entry (one changelog message) at most, cut between records (a
record larger than this is an entry of its own): the unit a restore applies and a purge
drops, whatever the size of the ClickHouse write the entries come from."""
PURGE_SLICE = 20
"""Table entries (of up to ``ENTRY_EVENTS`` events each) purged per slice."""
RESTORE_BATCH = 20
"""Changelog messages (entries) a restore applies at a time: ~1.5 s of the event loop at
5,000 keys an entry, so heartbeats keep flowing and report the restore's progress."""
PURGE_SLICES = 10_000


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
        by_partition: dict[int, list[tuple[str, SeenRecord]]] = {}
        for entry in entries:  # per event: no list or tuple built
            kept = by_partition.get(entry[1].partition)
            if kept is None:
                kept = by_partition[entry[1].partition] = []
            kept.append(entry)
        for partition, kept in by_partition.items():
            for part in entry_slices(kept, ENTRY_EVENTS):
                self._put(partition, part)

    def _put(self, partition: int, kept: list[tuple[str, SeenRecord]]) -> None:
        table_key, value, indexed = encode_chunk(kept, partition)
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


@dataclass(slots=True)
class Worker:
    app: faust.App
    sink: MeteringSink
    store: TableSeenStore
    state: WorkerState


def _headers(raw: Any) -> list[tuple[str, bytes | None]]:
    if not raw:
        return []
    items = raw.items() if isinstance(raw, Mapping) else raw
    return [(str(name), value) for name, value in items]


def _record(event: Any) -> Record:
    message = event.message
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=round(message.timestamp * 1000),
        key=message.key,
        value=event.value,
        batch=is_batch(_headers(message.headers)),
    )


def _faust_app(settings: Settings) -> faust.App:
    """The worker's Faust app: raw records, at-least-once, commits every batch."""
    # Workers sharing a data directory each get a slot of their own (RocksDB files are
    # one process's); a restarted worker gets its slot, and its state, back.
    slot = claim_slot(state_root(settings))
    return faust.App(
        settings.worker_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(slot),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.events_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_every=settings.worker_batch_max,
        broker_commit_interval=1.0,
        table_standby_replicas=0,
        # A SIGKILLed worker holds its partitions until its session expires; keep that short.
        broker_session_timeout=settings.worker_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.worker_session_timeout / 3),
        # A member finishing a write when a rebalance starts rejoins only once the write
        # is done (Faust waits for the batch in flight); the group must wait that long
        # rather than hand its partitions to a worker that would read their progress
        # before the write lands, and count it twice (docs/reliability.md).
        broker_rebalance_timeout=max(
            30.0, settings.worker_session_timeout * 3, WRITE_DEADLINE_SECONDS + 10
        ),
        web_enabled=False,
        # any record the events topic accepts can be dead-lettered verbatim (headers aside)
        producer_max_request_size=MAX_RECORD_BYTES + 1024 * 1024,
    )


def create_worker(
    settings: Settings,
    meters: MeterSet,
    *,
    engine_factory: Callable[[], Engine] | None = None,
) -> Worker:
    """Build the Faust app and its sink.  Nothing connects until the worker starts."""
    faust_fixes.apply()
    app = _faust_app(settings)
    factory = engine_factory or (lambda: ServerEngine.of(settings))
    shards = None if engine_factory else shard_engines(settings)
    sink = MeteringSink(
        namespace=settings.namespace,
        meters=meters,
        engine_factory=factory,
        database=(
            shard_database(settings.clickhouse_database) if shards else settings.clickhouse_database
        ),
        shards=shards,
        unknown_type_is_error=settings.unknown_event_type_is_error,
        horizon_ms=int(settings.dedupe_horizon_days * 86_400_000),
        late_grace_ms=int(settings.late_grace_seconds * 1000),
    )
    state = WorkerState()
    seen_table = app.tables.add(
        PositionedTable(
            app,
            name="dedupe",
            partitions=settings.events_partitions,
            key_type=bytes,
            value_type=bytes,
            options={"on_restored": state.count_restored},  # the watchdog's restore progress
            # applied every RESTORE_BATCH changelog messages (Faust's default, 1000 chunks
            # of up to 5,000 keys, would hold the event loop for a minute per batch and
            # report restore progress only that often)
            recovery_buffer_size=RESTORE_BATCH,
        )
    )
    store = TableSeenStore(seen_table)

    async def reindex_after_recovery() -> None:
        # Recompute the partitions this recovery made ours (the ones the purge walks).
        store.invalidate()

    seen_table.on_recover(reindex_after_recovery)
    events_topic = app.topic(
        settings.events_topic, partitions=settings.events_partitions, internal=False
    )
    dead_letters = app.topic(settings.dead_letter_topic, internal=False)

    async def send_dead_letters(plan: BatchPlan) -> None:
        for dead in plan.dead:
            await dead_letters.send(
                key=dead.record.key,
                value=dead.value,
                headers={
                    "meterline.reason": dead.reason.value.encode(),
                    "meterline.detail": dead.detail.encode()[:4096],
                    "meterline.source": (
                        f"{dead.record.topic}/{dead.record.partition}/{dead.record.offset}"
                    ).encode(),
                    "meterline.index": str(dead.index).encode(),
                },
            )

    async def resume(partitions: set[int]) -> Mapping[int, int]:
        return await asyncio.to_thread(
            resume_positions,
            settings.kafka_bootstrap,
            settings.worker_app_id,
            settings.events_topic,
            partitions,
        )

    meter_batch = BatchMeter(
        sink, store, settings.worker_chunk_events, resume, send_dead_letters, state
    )

    async def meter(stream: Any) -> None:
        async for events in stream.take_events(
            settings.worker_batch_max, within=settings.worker_batch_seconds
        ):
            try:
                await meter_batch([_record(event) for event in events])
            except asyncio.CancelledError:
                # The app is stopping (a crashed consumer, SIGTERM) and Faust cancels its
                # agents mid-batch.  Closing the take buffer acknowledges the batch and
                # the consumer's last commit would pass its records, written or not.
                _die(
                    "stopped in the middle of a batch; exiting without acknowledging it",
                    EXIT_STOPPED_MID_BATCH,
                )
            except SinkFailed as exc:
                _die(f"ClickHouse unavailable; exiting without acknowledging the batch: {exc}")
            except RecordsSkipped as exc:
                _die(
                    f"consumer skipped records ({exc}); exiting without acknowledging", EXIT_SKIPPED
                )
            except ServiceUnavailable as exc:
                _die(f"cannot read where the group resumes its partitions ({exc}); exiting")
            except Exception:
                log.exception("unexpected error in the metering batch")
                _die("unexpected error; exiting without acknowledging the batch")
            except BaseException:  # a native panic, SystemExit: no acknowledgement either
                log.exception("unexpected interruption of the metering batch")
                _die("interrupted; exiting without acknowledging the batch")

    app.agent(events_topic, name="meter")(meter)

    async def on_revoked(_app: Any, revoked: Any, **_: Any) -> None:
        sink.forget_partitions(
            [tp.partition for tp in revoked if tp.topic == settings.events_topic]
        )

    app.on_partitions_revoked.connect(on_revoked)

    async def on_assigned(_app: Any, assigned: Any, **_: Any) -> None:
        # Faust (0.15.3, aiokafka driver) was seen not to deliver the revocation signal,
        # so every assignment also drops the cached progress of the partitions it hands
        # out: a partition that was away may have been advanced by another worker.
        ours = sorted(tp.partition for tp in assigned if tp.topic == settings.events_topic)
        state.assigned = frozenset(ours)
        sink.forget_partitions(ours)
        store.invalidate()
        log.info("partitions %s assigned; their stored progress will be reloaded", ours)

    app.on_partitions_assigned.connect(on_assigned)

    async def purge_expired() -> None:
        """Drop dedupe records beyond the horizon, so the state stays bounded.  A slice of
        entries at a time, yielding in between: forgetting a chunk reads its keys' index
        entries, and a long purge must not hold up the batches and heartbeats."""
        threshold, expired = now_ms() - sink.horizon_ms, 0
        for _ in range(PURGE_SLICES):  # bounded: whatever is left waits for the next run
            dropped = store.purge(threshold, PURGE_SLICE)
            if not dropped:
                break
            expired += dropped
            await asyncio.sleep(0)
        if expired:
            metrics.DEDUPE_EXPIRED.inc(expired)
            log.info("purged %d dedupe records older than the horizon", expired)

    app.timer(interval=600.0, on_leader=False)(purge_expired)
    supervise_from_child(app, state, settings.events_topic, settings.worker_failpoint, sink)
    return Worker(app=app, sink=sink, store=store, state=state)


def _die(message: str, code: int = EXIT_SINK_FAILED) -> None:
    log.critical(message)
    logging.shutdown()
    os._exit(code)
