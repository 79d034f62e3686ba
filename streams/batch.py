"""One batch of event records metered the worker's way, without Faust (the worker's
agent in ``streams.app`` only turns Faust events into :class:`~streams.plan.Record` s
and maps failures to exits).

In order: partitions new to this worker are anchored at the group's committed offset and
every partition's offsets are checked for holes (``MeteringSink.check_contiguous``); then
the batch is planned, written and finished chunk by chunk.  Writes run on one thread, in
chunk order, each queued as soon as its chunk is planned: the event loop goes on planning
while up to :data:`WRITES_AHEAD` writes are queued or running, and finishes a chunk (its
keys recorded, its dead letters sent) once its write has ended, so neither the loop nor
the writer waits on the other's jitter.  A write whose predecessor failed is not made; a
chunk is finished only once it is written; a chunk is planned against the dedupe store
plus the keys of the chunks not finished yet, which is what the store would hold had
they finished.  Any exception leaves the batch unacknowledged: the caller exits without
acknowledging (``streams.app``), as after a crash, whatever write is still in flight
(``streams.sink`` says what a crash at each step costs: nothing lost, nothing counted
twice).  The loop's time per step (planning, waiting for a write, finishing) is counted
in ``meterline_stream_step_seconds_total``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from streams import metrics
from streams.liveness import WorkerState
from streams.plan import BatchPlan, PendingSeen, Record
from streams.sink import MeteringSink, SeenStore

__all__ = ["WRITES_AHEAD", "BatchMeter"]

WRITES_AHEAD = 2
"""Chunks whose writes may be queued or running while the next chunk is planned (one
more chunk's plan held in memory than with one: ``docs/benchmarks.md``)."""


@dataclass(frozen=True, slots=True)
class _Write:
    plan: BatchPlan
    done: Future[None]
    since: float
    """When it was queued (``time.monotonic``)."""


def _write_after(sink: MeteringSink, plan: BatchPlan, after: Future[None] | None) -> None:
    if after is not None:
        after.result()  # the previous chunk's write failed: this one is not made
    sink.write(plan)


@dataclass(slots=True)
class BatchMeter:
    sink: MeteringSink
    store: SeenStore
    max_events: int
    """Events per chunk (a record is never split)."""
    resume_positions: Callable[[set[int]], Awaitable[Mapping[int, int]]]
    """Where the group resumes the given partitions (``streams.progress``)."""
    send_dead_letters: Callable[[BatchPlan], Awaitable[None]]
    state: WorkerState
    writer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="meterline-write")
    )
    """The one thread chunks are written on, in chunk order (a test passes its own)."""

    async def __call__(self, records: Sequence[Record]) -> None:
        sink = self.sink
        unanchored = sink.unanchored(records)
        if unanchored:
            sink.anchor(await self.resume_positions(unanchored))
        sink.check_contiguous(records)
        pending = PendingSeen(self.store)
        writes: deque[_Write] = deque()  # written or being written, not finished; oldest first
        clock = time.perf_counter
        planned = waited = finished = 0.0  # the loop's seconds per step (the metrics)
        for chunk in sink.chunks(records, self.max_events):
            started = clock()
            plan = sink.plan(chunk, pending)
            pending.add_plan(plan)
            planned += clock() - started
            writes.append(self._write(plan, writes[-1].done if writes else None))
            # finish written chunks while a later write keeps the writer busy; wait for
            # the oldest write only with WRITES_AHEAD others behind it
            while len(writes) > WRITES_AHEAD or (len(writes) > 1 and writes[0].done.done()):
                wait, finish = await self._finish_oldest(writes, pending)
                waited, finished = waited + wait, finished + finish
        while writes:
            wait, finish = await self._finish_oldest(writes, pending)
            waited, finished = waited + wait, finished + finish
        metrics.STEP_PLAN.inc(planned)
        metrics.STEP_WRITE_WAIT.inc(waited)
        metrics.STEP_FINISH.inc(finished)
        self.state.writing_since = None
        self.state.records += len(records)

    def _write(self, plan: BatchPlan, after: Future[None] | None) -> _Write:
        """Queue ``plan``'s write behind ``after`` (the previous chunk's) on the one writer
        thread, which starts it *now* if it is free; a write whose predecessor failed
        fails with it, unwritten."""
        if self.state.writing_since is None:
            self.state.writing_since = time.monotonic()
        return _Write(
            plan, self.writer.submit(_write_after, self.sink, plan, after), time.monotonic()
        )

    async def _finish_oldest(
        self, writes: deque[_Write], pending: PendingSeen
    ) -> tuple[float, float]:
        """Wait for the oldest write, then finish its chunk: ``(seconds waited, seconds
        finishing)``."""
        clock = time.perf_counter
        started = clock()
        oldest = writes[0]
        await asyncio.wrap_future(oldest.done)
        written = clock()
        writes.popleft()
        self.state.writing_since = writes[0].since if writes else None
        await self._finish(oldest.plan)
        pending.settle(oldest.plan)  # its keys stay pending, its events' bytes go
        return written - started, clock() - written

    async def _finish(self, plan: BatchPlan) -> None:
        """Record a written chunk's keys and send its dead letters."""
        self.sink.finish(plan, self.store)
        await self.send_dead_letters(plan)
