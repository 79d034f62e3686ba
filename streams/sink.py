"""The metering sink: one batch of Kafka records in, raw events and windows in ClickHouse.

A batch goes through three steps; the comments say what a crash after each one costs.

0. :meth:`MeteringSink.check_contiguous`: a batch whose partition offsets jump forward
   (records skipped by the consumer) is refused — the worker exits unacknowledged, so the
   skipped records are read again by the next owner instead of being committed past.
1. :meth:`MeteringSink.plan` (``streams.plan``; pure, plus dedupe-store lookups):
   decode, meter and deduplicate.  Nothing is written.  *Crash: nothing happened; the
   batch is re-read.*
2. :meth:`MeteringSink.write` (ClickHouse I/O, run off the event loop):
   a. load, once per assigned partition, the highest offset whose windows each windows
      table stores (the minute table and both rollups, ``schemas.storage.rollups``);
   b. insert the raw events (ReplacingMergeTree: a rewrite collapses);
      *crash: re-read; the rows are written again and collapse*;
   c. insert the window contributions above every table's progress into the main feed,
      pre-aggregated per window (``schemas.storage.agg_feed``), in one block, which lands
      as one part per table together with its progress; a
      table that lacks contributions the others hold (a failure between the views of
      one insert) first gets exactly those through its own repair feed
      (:func:`window_writes`);
      *crash or failure: progress is reloaded, and each table is written only what it
      lacks: nothing is skipped, nothing counted twice.*
   b and c run at the same time, each on its own connection (neither depends on the
   other, and step 3 waits for both), so ClickHouse works on the two inserts at once.
   On a ClickHouse cluster (``schemas.storage.cluster``) the plan is split by the shard
   of each row's subject and steps a–c run per shard, each shard with its own progress
   and connections (a write waits for all the shard's replicas).
   Failed writes are retried with back-off until ``retry_seconds``; then
   :class:`SinkFailed` is raised and the worker must exit *without acknowledging* the
   batch (see ``streams.app``), so the records are read again by the next owner.
3. :meth:`MeteringSink.finish`: record the kept keys in the dedupe store (only now,
   after the write) and hand dead letters to the producer.  The worker then acknowledges
   the records; Faust flushes the changelog and dead letters before committing offsets.
   *Crash before the commit: re-read; decisions are by position, so they repeat.*
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Protocol

from schemas.errors import MeterlineError
from schemas.metering.definitions import Aggregation, MeterSet
from schemas.storage.agg_feed import Contribution, pre_aggregate
from schemas.storage.engine import REPLY_TIMEOUT_S, Engine
from streams import metrics
from streams.dedupe import DEFAULT_HORIZON_MS, SeenRecord
from streams.plan import (
    BatchPlan,
    DeadLetter,
    PendingSeen,
    Record,
    SeenLookup,
    split_plan,
)
from streams.planner import Planner
from streams.retry import SinkFailed, with_retry
from streams.shard import Shard

__all__ = [
    "BatchPlan",
    "DeadLetter",
    "MeteringSink",
    "PendingSeen",
    "Planner",
    "Record",
    "RecordsSkipped",
    "SeenLookup",
    "SeenStore",
    "SinkFailed",
    "window_writes",
]

log = logging.getLogger(__name__)
WRITE_RETRY_SECONDS = 120.0
"""How long a failing write is retried before the worker gives up (:class:`SinkFailed`)."""
WRITE_DEADLINE_SECONDS = WRITE_RETRY_SECONDS + REPLY_TIMEOUT_S
"""The longest one chunk's write can take, its last attempt included: the consumer
group must wait at least this long for a member to finish its write before it hands the
member's partitions to another (``streams.app``, ``broker_rebalance_timeout``), or two
workers could write the same offsets from progress each read before the other's write."""
# a feed row (``Contribution``) holds its source partition at [9] and offset at [10]


class RecordsSkipped(MeterlineError):
    """The consumer delivered a partition with a hole; the batch must not be acknowledged."""


class SeenStore(SeenLookup, Protocol):
    def put_many(self, entries: Sequence[tuple[str, SeenRecord]]) -> None:
        """Record kept events; each :class:`SeenRecord` names its own partition."""


class MeteringSink:
    def __init__(
        self,
        *,
        namespace: str,
        meters: MeterSet,
        engine_factory: Callable[[], Engine],
        database: str,
        shards: Sequence[Callable[[], Engine]] | None = None,
        retry_seconds: float = WRITE_RETRY_SECONDS,
        unknown_type_is_error: bool = False,
        horizon_ms: int = DEFAULT_HORIZON_MS,
        late_grace_ms: int = 300_000,
    ) -> None:
        self.namespace = namespace
        self.meters = meters
        self.planner = Planner(
            namespace=namespace,
            meters=meters,
            unknown_type_is_error=unknown_type_is_error,
            horizon_ms=horizon_ms,
            late_grace_ms=late_grace_ms,
        )
        factories = [engine_factory] if shards is None else list(shards)
        self._shards = [Shard(factory, database) for factory in factories]
        self._unique = frozenset(
            m.slug for m in meters if m.aggregation is Aggregation.UNIQUE_COUNT
        )
        self.retry_seconds = retry_seconds
        self.horizon_ms = horizon_ms
        self._next_offset: dict[int, int] = {}
        self._lock = threading.Lock()
        self._raw_writer = ThreadPoolExecutor(1, thread_name_prefix="meterline-raw-insert")
        """Inserts the raw events while the calling thread inserts the windows."""

    # -- step 1 ---------------------------------------------------------------------------
    def unanchored(self, records: Sequence[Record]) -> set[int]:
        """Partitions of ``records`` with no expected next offset: new to this worker, or
        (re)assigned since it last metered them.  Anchor them (:meth:`anchor`) before
        :meth:`check_contiguous`, so that their first record is checked too."""
        known = self._next_offset
        return {rec.partition for rec in records if rec.partition not in known}

    def anchor(self, positions: Mapping[int, int]) -> None:
        """Expect each partition to resume at ``positions[partition]``: the group's
        committed offset (``streams.progress.resume_positions``).  A partition already
        anchored keeps its expectation (records were metered meanwhile)."""
        for partition, offset in positions.items():
            self._next_offset.setdefault(partition, offset)

    def check_contiguous(self, records: Sequence[Record]) -> None:
        """Refuse a batch that skips records.

        The events topic is neither compacted nor transactional, so a partition's
        offsets arrive consecutively from where the group resumed it (a step back is a
        re-delivery, which is harmless).  A step *forward* means the consumer skipped
        records; acknowledging the batch could commit past them and lose them, so
        :class:`RecordsSkipped` is raised and the worker must exit without acknowledging.
        The first record after an assignment is checked against the committed offset
        (:meth:`anchor`): after a takeover Faust (0.15.3) was seen to deliver the record
        after the committed one first, and it commits past a missing record when that
        record is the one at the committed offset (``docs/architecture.md``).
        """
        for rec in records:
            expected = self._next_offset.get(rec.partition)
            if expected is not None and rec.offset > expected:
                raise RecordsSkipped(
                    f"partition {rec.partition}: expected offset {expected}, got {rec.offset}"
                )
            if expected is None or rec.offset >= expected:
                self._next_offset[rec.partition] = rec.offset + 1

    @staticmethod
    def chunks(records: Sequence[Record], max_events: int) -> Iterator[Sequence[Record]]:
        """Split a batch at record boundaries into chunks of at most ``max_events`` events
        (a larger record is a chunk of its own).  A record is never split: window progress
        is kept per offset, so all of a record's events must land in one write."""
        start, events = 0, 0
        for i, rec in enumerate(records):
            n = rec.value.count(b"\n") + 1 if rec.batch else 1
            if i > start and events + n > max_events:
                yield records[start:i]
                start, events = i, 0
            events += n
        if start < len(records):
            yield records[start:]

    def plan(self, records: Sequence[Record], store: SeenLookup) -> BatchPlan:
        """Decode, meter and deduplicate a chunk (``streams.plan``); nothing is written."""
        return self.planner.plan(records, store)

    # -- step 2 ---------------------------------------------------------------------------
    def write(self, plan: BatchPlan) -> None:
        """Write the plan to ClickHouse; raise :class:`SinkFailed` past the deadline.
        On a cluster each shard gets the rows of its own subjects (:func:`split_plan`)
        and keeps its own progress, exactly as one server does."""
        started = time.monotonic()
        totals = [0, 0, 0]
        with self._lock:
            parts = (
                [(self._shards[0], plan)]
                if len(self._shards) == 1
                else list(zip(self._shards, split_plan(plan, len(self._shards)), strict=True))
            )
            for shard, part in parts:
                counts = self._write_shard(shard, part, started)
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
        fresh, repaired, skipped = totals
        metrics.FLUSH_SECONDS.observe(time.monotonic() - started)
        metrics.BATCHES.inc()
        metrics.WINDOW_ROWS.labels("written").inc(fresh)
        if repaired:
            metrics.WINDOW_ROWS.labels("repaired").inc(repaired)
        if skipped:
            metrics.WINDOW_ROWS.labels("skipped_already_stored").inc(skipped)
            log.info("skipped %d window rows already stored before a restart", skipped)
        for partition in plan.spans:
            offset = max(shard.progress["minute"].get(partition, -1) for shard in self._shards)
            metrics.LAST_OFFSET.labels(str(partition)).set(offset)

    def _write_shard(self, shard: Shard, plan: BatchPlan, started: float) -> tuple[int, int, int]:
        """Steps b and c on one shard at the same time, each on its own connection: the
        raw events in the raw-insert thread, the windows in this one.  Neither depends on
        the other (a rewrite of raw events collapses, windows go by their progress), and
        the chunk is finished only once both are stored, so the order of their ends does
        not matter; ClickHouse works on both inserts at once."""
        raw: Future[None] | None = None
        if plan.raw_rows:
            insert = partial(shard.insert_raw, plan.raw_rows)
            raw = self._raw_writer.submit(
                with_retry, shard.raw_connection, insert, started, self.retry_seconds
            )
        try:
            write = partial(self._write_windows, shard, plan)
            counts = with_retry(shard.windows_connection, write, started, self.retry_seconds)
        except BaseException:
            if raw is not None:  # no insert left running behind a failed write
                wait([raw])
            raise
        if raw is not None:
            raw.result()  # its SinkFailed, if it gave up
        return counts

    def _write_windows(self, shard: Shard, plan: BatchPlan) -> tuple[int, int, int]:
        """One attempt on one shard: repairs, then the main feed; ``(contributions
        written to every table, contributions repaired, contributions skipped as stored)``.

        Usually every contribution is above every table's progress and the plan's folded
        groups go out as they are; otherwise the contributions are split by offset
        (:func:`window_writes`) and folded per destination.  A failure forgets the
        progress of these partitions, so the next attempt reloads it and writes each
        table only what it lacks."""
        spans = plan.spans
        if not spans:
            return 0, 0, 0
        progress = shard.load_progress(set(spans), self.namespace)
        engine = shard.windows_connection.engine()
        try:
            if all(
                low > max(table.get(partition, -1) for table in progress.values())
                for partition, (low, _) in spans.items()
            ):
                engine.insert(*shard.windows.agg_insert_args(plan.aggregated()))
                fresh = plan.contributions
                repaired = skipped = 0
            else:
                rows = plan.feed_rows
                main, repairs = window_writes(rows, progress)
                for label, repair in repairs.items():
                    log.warning(
                        "windows table %s lacks %d contributions the others hold; writing them",
                        label,
                        len(repair),
                    )
                    engine.insert(
                        *shard.windows.agg_insert_args(
                            pre_aggregate(repair, self._unique), shard.feeds[label]
                        )
                    )
                if main:
                    engine.insert(*shard.windows.agg_insert_args(pre_aggregate(main, self._unique)))
                fresh, repaired = len(main), sum(len(r) for r in repairs.values())
                skipped = len(rows) - fresh
        except Exception:
            shard.forget(spans)
            raise
        for partition, (_, high) in spans.items():
            for table in shard.progress.values():
                if high > table.get(partition, -1):
                    table[partition] = high
        return fresh, repaired, skipped

    def forget_partitions(self, partitions: Sequence[int]) -> None:
        """Partitions were (re)assigned or revoked: another worker may have advanced them
        meanwhile, so their stored progress is reloaded before the next write.  Taking the
        lock waits for a write in flight."""
        with self._lock:
            for shard in self._shards:
                shard.forget(partitions)
            for partition in partitions:
                self._next_offset.pop(partition, None)

    def close(self) -> None:
        """Close the connection to every shard (the next write opens them again)."""
        with self._lock:
            for shard in self._shards:
                shard.close()

    # -- step 3 ---------------------------------------------------------------------------
    def finish(self, plan: BatchPlan, store: SeenStore) -> None:
        """Record the plan's kept events in the dedupe store (a native plan's entries are a
        view of its raw rows, which the worker's store encodes from directly) and count
        its outcomes."""
        store.put_many(plan.seen)
        for outcome, n in plan.outcomes.items():
            if outcome == "late":
                metrics.LATE.inc(n)
            else:
                metrics.EVENTS.labels(outcome).inc(n)
        for dead in plan.dead:
            metrics.DEAD_LETTERS.labels(dead.reason.value).inc()
        for conflict in plan.conflicts:
            log.warning("dedupe conflict, first copy kept: %s", conflict)


def window_writes(
    rows: Sequence[Contribution], progress: dict[str, dict[int, int]]
) -> tuple[list[Contribution], dict[str, list[Contribution]]]:
    """Which contributions go where (pure): ``(rows for the main feed, rows per table
    label for that table's repair feed)``.

    ``progress`` maps each windows table to the highest stored offset per partition.  A
    row above every table's progress goes to the main feed (all tables); a row that some
    table holds and another does not goes only to the repair feeds of the tables that
    lack it; a row every table holds is skipped.
    """
    main: list[Contribution] = []
    repairs: dict[str, list[Contribution]] = {}
    for row in rows:
        partition, offset = row[9], row[10]
        stored = {label: table.get(partition, -1) for label, table in progress.items()}
        if offset > max(stored.values()):
            main.append(row)
            continue
        for label, upto in stored.items():
            if offset > upto:
                repairs.setdefault(label, []).append(row)
    return main, repairs
