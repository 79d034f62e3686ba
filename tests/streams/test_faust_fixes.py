"""Defects of faust-streaming and aiokafka that the worker fixes (streams.faust_fixes)."""

import asyncio
import contextvars
import inspect
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from streams import faust_fixes


def consumer_with_acks(acked: list[int]) -> Any:
    fake = SimpleNamespace(
        _acked=defaultdict(list),
        _gap=defaultdict(lambda: None),
        _acked_index=defaultdict(set),
        _committed_offset={},
    )
    fake._acked["tp"] = list(acked)
    fake._acked_index["tp"] = set(acked)
    fake._committed_offset["tp"] = min(acked)
    return fake


def test_duplicate_acks_let_commits_drain_in_one_step() -> None:
    faust_fixes.apply()
    # offsets 10..19 acknowledged, 10 and 11 twice (a record delivered again after a restart)
    fake = consumer_with_acks([10, 10, 11, 11, *range(12, 20)])
    assert Consumer._new_offset(fake, "tp") == 20


def test_without_duplicates_behaviour_is_unchanged() -> None:
    faust_fixes.apply()
    fake = consumer_with_acks([10, 11, 12, 15, 16])
    assert Consumer._new_offset(fake, "tp") == 13


class FakeThread:
    """Just enough of Faust's AIOKafkaConsumerThread for the two patched methods."""

    def __init__(self, aiokafka: Any, changelog: set[str] | None = None) -> None:
        self.aiokafka = aiokafka
        self.calls: list[tuple[Any, ...]] = []
        self.consumer = SimpleNamespace(_is_changelog_tp=lambda tp: tp in (changelog or set()))
        self.meanwhile: Any = lambda: None  # what the main thread does while a call is queued

    def _ensure_consumer(self) -> Any:
        return self.aiokafka

    async def call_thread(self, fun: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((fun, args, kwargs))
        self.meanwhile()
        return await fun(*args, **kwargs)

    async def _fetch_records(self, consumer: Any, partitions: Any, **_: Any) -> Any:
        return {"fetched_for": partitions}


def test_the_fetch_uses_a_snapshot_of_the_active_partitions() -> None:
    faust_fixes.apply()
    thread = FakeThread(SimpleNamespace(_max_poll_records=500))
    live = {"events/0", "events/1"}
    thread.meanwhile = live.clear  # recovery pauses partitions while the fetch is queued
    result = asyncio.run(AIOKafkaConsumerThread.getmany(thread, live, timeout=1.0))
    assert result == {"fetched_for": frozenset({"events/0", "events/1"})}


def test_an_empty_active_set_fetches_nothing_instead_of_everything() -> None:
    faust_fixes.apply()
    thread = FakeThread(SimpleNamespace(_max_poll_records=500))
    assert asyncio.run(AIOKafkaConsumerThread.getmany(thread, set(), timeout=1.0)) == {}
    assert thread.calls == []


class FakeAiokafka:
    def __init__(self, committed: dict[str, int | None]) -> None:
        self.committed = committed
        self.sought: list[tuple[str, int]] = []
        self.to_beginning: list[str] = []

    async def seek_to_committed(self) -> dict[str, int | None]:
        # aiokafka 0.14 seeks only offsets > 0
        self.sought += [(tp, o) for tp, o in self.committed.items() if o and o > 0]
        return dict(self.committed)

    def seek(self, tp: str, offset: int) -> None:
        self.sought.append((tp, offset))

    async def seek_to_beginning(self, *tps: str) -> bool:
        self.to_beginning += tps
        return True


def test_stream_partitions_without_a_committed_offset_are_read_from_the_beginning() -> None:
    faust_fixes.apply()
    kafka = FakeAiokafka({"events/0": None, "events/1": 0, "events/2": 17, "changelog/0": None})
    thread = FakeThread(kafka, changelog={"changelog/0"})
    committed = asyncio.run(AIOKafkaConsumerThread.seek_to_committed(thread))
    assert committed == kafka.committed  # what Faust records is unchanged
    assert sorted(kafka.sought) == [("events/1", 0), ("events/2", 17)]
    assert kafka.to_beginning == ["events/0"]  # the changelog is left to recovery


def test_the_worker_consumer_long_polls_idle_partitions_briefly() -> None:
    """Faust builds the consumer with a 1,500 ms long poll, which backlogged partitions
    wait out whenever aiokafka's one fetch in flight is for idle ones (fix 3)."""

    async def long_poll_ms() -> Any:
        faust_fixes.apply()
        app = faust.App("meterline-test-fetch-wait", broker="kafka://127.0.0.1:1")
        thread = app.consumer._thread  # never started: its own loop is closed here
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms  # what the consumer's fetcher is built with
        finally:
            await consumer.stop()
            thread.thread_loop.close()

    assert asyncio.run(long_poll_ms()) == faust_fixes.FETCH_MAX_WAIT_MS
    assert faust_fixes.FETCH_MAX_WAIT_MS <= 100


# -- fix 4: the per-record delivery runs its first step at once -----------------------


async def race(consumer: Any, delivery: Any) -> Any:
    """The fetch loop's per-record call, as Faust makes it."""
    return await consumer.wait_first(delivery, consumer.suspend_flow.wait())


def on_a_consumer(test: Any) -> Any:
    async def run() -> Any:
        faust_fixes.apply()
        app = faust.App("meterline-test-eager-delivery", broker="kafka://127.0.0.1:1")
        consumer = app.consumer
        try:
            return await test(consumer)
        finally:
            consumer._thread.thread_loop.close()  # never started

    return asyncio.run(run())


def test_the_fetch_loop_races_each_delivery_as_the_fix_expects() -> None:
    """The fix recognises Faust's call by its shape; if Faust changes it, this fails
    rather than the fix silently no longer applying."""
    source = " ".join(inspect.getsource(Consumer._drain_messages).split())
    assert "await self.wait_first( callback(message), self.suspend_flow.wait() )" in source


def test_a_delivery_that_never_blocks_finishes_in_the_call_without_a_task() -> None:
    async def test(consumer: Any) -> Any:
        caller = asyncio.current_task()
        ran_in: list[Any] = []

        async def deliver() -> str:
            ran_in.append(asyncio.current_task())
            return "delivered"

        suspension = consumer.suspend_flow.wait()
        result = await consumer.wait_first(deliver(), suspension)
        return result, ran_in, caller, suspension

    result, ran_in, caller, suspension = on_a_consumer(test)
    assert result.results == ["delivered"]
    assert not result.stopped
    assert ran_in == [caller]  # no task of its own
    assert suspension.cr_frame is None  # closed: no "never awaited" warning


def test_a_delivery_that_blocks_finishes_as_a_task() -> None:
    async def test(consumer: Any) -> Any:
        loop = asyncio.get_running_loop()
        room = loop.create_future()
        steps: list[str] = []

        async def deliver() -> str:
            steps.append("first")
            await room  # a full stream buffer
            steps.append("rest")
            return "delivered"

        loop.call_later(0.01, room.set_result, None)
        result = await race(consumer, deliver())
        return result, steps

    result, steps = on_a_consumer(test)
    assert steps == ["first", "rest"]
    assert result.results == ["delivered"]
    assert not result.stopped


@pytest.mark.parametrize("already_suspended", [False, True])
def test_a_blocked_delivery_is_cancelled_when_the_flow_is_suspended(
    already_suspended: bool,
) -> None:
    """What Faust's race is for: a rebalance interrupts a delivery waiting for room.  With
    the flow suspended before the call, the race is decided in the loop's first turn —
    the earliest the rest of the delivery can be cancelled; it has taken its step by then
    (tasks start in the order made), so the cancellation still reaches what it waits on."""

    async def test(consumer: Any) -> Any:
        loop = asyncio.get_running_loop()
        room = loop.create_future()
        seen: list[str] = []

        async def deliver() -> None:
            try:
                await room
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        if already_suspended:
            consumer.suspend_flow.set()
        else:
            loop.call_later(0.01, consumer.suspend_flow.set)
        result = await race(consumer, deliver())
        await asyncio.sleep(0)  # the cancellation reaches the delivery
        return result, seen, room

    result, seen, room = on_a_consumer(test)
    assert seen == ["cancelled"]
    assert room.cancelled()  # as a task's cancellation cancels what it awaits
    assert result.results == [True]  # the suspension won
    assert not result.stopped


def test_what_a_delivery_raises_comes_out_of_the_call_blocked_or_not() -> None:
    async def test(consumer: Any) -> Any:
        async def at_once() -> None:
            raise ValueError("bad record")

        async def after_blocking() -> None:
            await asyncio.sleep(0.001)
            raise KeyError("no such channel")

        raised = []
        for deliver in (at_once, after_blocking):
            try:
                await race(consumer, deliver())
            except (ValueError, KeyError) as exc:
                raised.append(type(exc))
        return raised

    assert on_a_consumer(test) == [ValueError, KeyError]


def test_a_delivery_sets_context_variables_in_a_context_of_its_own() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="caller")

    async def test(consumer: Any) -> Any:
        async def deliver() -> str:
            marker.set("delivery")
            await asyncio.sleep(0.001)
            return marker.get()

        result = await race(consumer, deliver())
        return result.results, marker.get()

    assert on_a_consumer(test) == (["delivery"], "caller")  # as in a task of its own


def test_other_waits_of_the_consumer_are_modes_own() -> None:
    async def test(consumer: Any) -> Any:
        event = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, event.set)
        result = await consumer.wait_first(event.wait(), timeout=5.0)
        return result.stopped, len(result.done)

    assert on_a_consumer(test) == (False, 1)
