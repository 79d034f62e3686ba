"""The batch loop's queued writes (``streams.batch``): planning runs ahead of the writes
by at most ``WRITES_AHEAD`` chunks, and no write follows a failed one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from streams.batch import WRITES_AHEAD, BatchMeter
from streams.dedupe import SeenRecord
from streams.liveness import WorkerState
from streams.plan import BatchPlan
from streams.sink import MeteringSink, SinkFailed
from tests.conftest import wait_until
from tests.streams.sink_kit import RecordingEngine, Store, record, sink

CHUNK_EVENTS = 2


class LookupStore(Store):
    """Records every key the planner looks up."""

    def __init__(self) -> None:
        super().__init__()
        self.looked_up: list[str] = []

    def get(self, key: str) -> SeenRecord | None:
        self.looked_up.append(key)
        return super().get(key)


class CountingWriter(ThreadPoolExecutor):
    """The meter's writer thread, counting the writes queued on it."""

    def __init__(self) -> None:
        super().__init__(1, thread_name_prefix="test-write")
        self.queued = 0
        self.all_queued = threading.Event()
        self.expected = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.queued += 1
        if self.queued >= self.expected:
            self.all_queued.set()
        return super().submit(fn, *args, **kwargs)


def meter_for(s: MeteringSink, store: Store, writer: ThreadPoolExecutor | None = None) -> Any:
    async def resume(partitions: set[int]) -> dict[int, int]:
        return dict.fromkeys(partitions, 0)

    async def dead_letters(plan: BatchPlan) -> None:
        return None

    if writer is None:
        return BatchMeter(s, store, CHUNK_EVENTS, resume, dead_letters, WorkerState())
    return BatchMeter(s, store, CHUNK_EVENTS, resume, dead_letters, WorkerState(), writer=writer)


def key(n: int) -> str:
    return f"ns\x1fs\x1fe{n}"


def test_planning_runs_ahead_of_a_held_write_by_at_most_writes_ahead_chunks() -> None:
    engine, store = RecordingEngine(), LookupStore()
    release = threading.Event()
    held = threading.Event()
    s = sink(engine)
    write = s.write

    def first_write_held(plan: BatchPlan) -> None:
        if not held.is_set():
            held.set()
            assert release.wait(10)
        write(plan)

    s.write = first_write_held  # type: ignore[method-assign]
    meter = meter_for(s, store)
    chunks = WRITES_AHEAD + 2
    records = [record(n, f"e{n}", 1) for n in range(chunks * CHUNK_EVENTS)]
    last_ahead = WRITES_AHEAD * CHUNK_EVENTS  # the first event of the last chunk allowed

    async def run() -> None:
        task = asyncio.ensure_future(meter(records))
        await asyncio.to_thread(held.wait, 10)
        await asyncio.to_thread(
            wait_until, lambda: key(last_ahead) in store.looked_up, 10, "chunks planned ahead"
        )
        await asyncio.sleep(0.1)  # the loop would plan the next chunk now if it could
        planned = set(store.looked_up)
        release.set()
        await task
        # chunks 1 .. WRITES_AHEAD + 1 were planned while the first write was held, the
        # next one only after it ended; nothing was finished meanwhile
        assert key(last_ahead) in planned
        assert key(last_ahead + CHUNK_EVENTS) not in planned

    asyncio.run(run())
    assert sorted(store.data) == sorted(key(n) for n in range(len(records)))
    assert meter.state.writing_since is None


def test_no_write_is_made_after_a_failed_one() -> None:
    engine, store = RecordingEngine(), Store()
    writer = CountingWriter()
    chunks = WRITES_AHEAD + 1
    writer.expected = chunks
    s = sink(engine)
    written: list[BatchPlan] = []

    def failing_write(plan: BatchPlan) -> None:
        written.append(plan)
        # every chunk's write is queued behind this one before it fails
        assert writer.all_queued.wait(10)
        raise SinkFailed("ClickHouse unavailable")

    s.write = failing_write  # type: ignore[method-assign]
    meter = meter_for(s, store, writer)
    records = [record(n, f"e{n}", 1) for n in range(chunks * CHUNK_EVENTS)]
    started = time.monotonic()
    with pytest.raises(SinkFailed, match="ClickHouse unavailable"):
        asyncio.run(meter(records))
    writer.shutdown(wait=True)  # the queued writes have run (and refused)
    assert writer.queued == chunks
    assert len(written) == 1  # only the first chunk's write was made
    assert engine.inserts == []
    assert store.data == {}  # nothing finished
    assert time.monotonic() - started < 10
