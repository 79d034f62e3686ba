"""Defects of faust-streaming and aiokafka that the worker fixes (streams.faust_fixes)."""

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import faust
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
