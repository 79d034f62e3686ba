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
record happens to be current — via :class:`streams.seen_table.PositionedTable`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors.monitor import Monitor

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
from streams.liveness import WorkerState, supervise_from_child
from streams.local_state import claim_slot, state_root
from streams.progress import resume_positions
from streams.seen_options import MiB, StoreLimits
from streams.seen_table import PURGE_SLICE, PositionedTable, TableSeenStore
from streams.sink import (
    WRITE_DEADLINE_SECONDS,
    BatchPlan,
    MeteringSink,
    Record,
    RecordsSkipped,
    SinkFailed,
)

__all__ = ["QuietMonitor", "RawRecords", "Worker", "create_worker"]

log = logging.getLogger(__name__)
EXIT_SINK_FAILED = 70
EXIT_SKIPPED = 71
EXIT_STOPPED_MID_BATCH = 72
RESTARTABLE_EXITS = (EXIT_SINK_FAILED, EXIT_SKIPPED, EXIT_STOPPED_MID_BATCH)
RESTORE_BATCH = 20
"""Changelog messages (entries) a restore applies at a time: ~1.5 s of the event loop at
5,000 keys an entry, so heartbeats keep flowing and report the restore's progress."""
PURGE_SLICES = 10_000
STORE_STATS_INTERVAL_S = 15.0
"""How often the dedupe store's gauges are read from RocksDB (a few property reads)."""


class RawRecords(faust.Schema):  # type: ignore[misc]  # faust is untyped here
    """The events topic's keys and values as Kafka holds them (bytes, or ``None``): what
    Faust's ``raw`` serializer returns, without its codec registry's calls per record
    (~5 % of a do-nothing agent's CPU on records of one event each)."""

    def loads_key(self, app: Any, message: Any, **_: Any) -> bytes | None:
        key: bytes | None = message.key
        return key

    def loads_value(self, app: Any, message: Any, **_: Any) -> bytes | None:
        value: bytes | None = message.value
        return value


class QuietMonitor(Monitor):  # type: ignore[misc]  # faust is untyped here
    """Faust's monitor without the statistics it keeps for every record (nothing reads
    them: the worker's own metrics are ``streams.metrics``).  The four calls Faust makes
    per record do nothing (~5 % of a do-nothing agent's CPU on records of one event each);
    offsets, commits, rebalances and sends are tracked as before."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


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
    """The sink's record of a Faust event.  A record with no value (a tombstone, which
    no producer of events writes) becomes an empty one: an invalid event, dead-lettered
    with the rest, rather than an error that stops the worker on the same record at every
    restart."""
    message = event.message
    value = event.value
    return Record(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp_ms=round(message.timestamp * 1000),
        key=message.key,
        value=b"" if value is None else value,
        batch=is_batch(_headers(message.headers)),
    )


COMMIT_INTERVAL_S = 0.25
"""How often acknowledged offsets are committed (Faust's commit timer)."""


def _faust_app(settings: Settings) -> faust.App:
    """The worker's Faust app: raw records, at-least-once, commits every batch."""
    # Workers sharing a data directory each get a slot of their own (RocksDB files are
    # one process's); a restarted worker gets its slot, and its state, back.
    slot = claim_slot(state_root(settings))
    return faust.App(
        settings.worker_app_id,
        monitor=QuietMonitor(),
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
        # An acknowledged batch is committed within a quarter second, not Faust's usual
        # seconds: consumer lag (what dashboards and the watchdog read) then trails the
        # stored events by little, and a restart re-reads less.  Measured no costlier in
        # CPU than a 1 s timer (docs/benchmarks.md, ninth round).
        broker_commit_interval=COMMIT_INTERVAL_S,
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
        # the dedupe changelog (a chunk's keys per record) and the dead letters, compressed
        # like every batch Meterline writes (schemas.wire)
        producer_compression_type=(
            None if settings.kafka_compression == "none" else settings.kafka_compression
        ),
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
            options={
                "on_restored": state.count_restored,  # the watchdog's restore progress
                "limits": store_limits(settings),
            },
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
        settings.events_topic,
        partitions=settings.events_partitions,
        internal=False,
        schema=RawRecords(),
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

    async def store_stats() -> None:
        report_store(store)

    app.timer(interval=STORE_STATS_INTERVAL_S, on_leader=False)(store_stats)
    supervise_from_child(app, state, settings.events_topic, settings.worker_failpoint, sink)
    return Worker(app=app, sink=sink, store=store, state=state)


def store_limits(settings: Settings) -> StoreLimits:
    """The dedupe store's memory limits from the settings (the rest keep their defaults)."""
    return StoreLimits(
        block_cache_bytes=settings.worker_dedupe_cache_mb * MiB,
        index_and_filters_in_cache=settings.worker_dedupe_bounded_memory,
    )


def report_store(store: TableSeenStore) -> None:
    """Set the dedupe store's gauges (keys, table-file bytes, compaction debt, memory by
    part); left as they were while the store's index is not open.  Runs on the event
    loop, which owns the store."""
    stats = store.index.store_stats()
    if stats is None:
        return
    metrics.DEDUPE_KEYS.set(stats.keys)
    metrics.DEDUPE_SST_BYTES.set(stats.sst_bytes)
    metrics.DEDUPE_PENDING_COMPACTION_BYTES.set(stats.pending_compaction_bytes)
    for part, size in stats.memory.items():
        metrics.DEDUPE_MEMORY_BYTES.labels(part).set(size)


def _die(message: str, code: int = EXIT_SINK_FAILED) -> None:
    log.critical(message)
    logging.shutdown()
    os._exit(code)
