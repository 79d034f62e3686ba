"""One batch of event records metered the worker's way, without Faust (the worker's
agent in ``streams.app`` only turns Faust events into :class:`~streams.plan.Record` s
and maps failures to exits).

In order: partitions new to this worker are anchored at the group's committed offset and
every partition's offsets are checked for holes (``MeteringSink.check_contiguous``); then
the batch is planned, written and finished chunk by chunk, the next chunk planned while
the previous one is written, and a written chunk finished (its keys recorded, its dead
letters sent) while the next one is written.  One write at a time, in chunk order, and
a chunk is finished only once it is written; a chunk is planned against the dedupe store
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from streams import metrics
from streams.liveness import WorkerState
from streams.plan import BatchPlan, PendingSeen, Record
from streams.sink import MeteringSink, SeenStore

__all__ = ["BatchMeter"]


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

    async def __call__(self, records: Sequence[Record]) -> None:
        sink = self.sink
        unanchored = sink.unanchored(records)
        if unanchored:
            sink.anchor(await self.resume_positions(unanchored))
        sink.check_contiguous(records)
        pending = PendingSeen(self.store)
        writing: asyncio.Future[None] | None = None  # the write of `previous`
        previous: BatchPlan | None = None
        clock = time.perf_counter
        planned = waited = finished = 0.0  # the loop's seconds per step (the metrics)
        for chunk in sink.chunks(records, self.max_events):
            started = clock()
            plan = sink.plan(chunk, pending)
            pending.add_plan(plan)
            ready = clock()
            if writing is not None:
                await writing  # one write at a time, in chunk order
            written = clock()
            writing = self._write(plan)
            if previous is not None:  # finished while the next chunk is being written
                await self._finish(previous)
                pending.settle(previous)  # its keys stay pending, its events' bytes go
            planned, waited = planned + ready - started, waited + written - ready
            finished += clock() - written
            previous = plan
        if writing is not None and previous is not None:
            ready = clock()
            await writing
            written = clock()
            await self._finish(previous)
            waited, finished = waited + written - ready, finished + clock() - written
        metrics.STEP_PLAN.inc(planned)
        metrics.STEP_WRITE_WAIT.inc(waited)
        metrics.STEP_FINISH.inc(finished)
        self.state.writing_since = None
        self.state.records += len(records)

    def _write(self, plan: BatchPlan) -> asyncio.Future[None]:
        """Start writing ``plan`` in a thread *now*: a task (``asyncio.to_thread``) would
        start only at the next ``await``, after the planning or finishing it is meant to
        overlap."""
        self.state.writing_since = time.monotonic()
        return asyncio.get_running_loop().run_in_executor(None, self.sink.write, plan)

    async def _finish(self, plan: BatchPlan) -> None:
        """Record a written chunk's keys and send its dead letters."""
        self.sink.finish(plan, self.store)
        await self.send_dead_letters(plan)
