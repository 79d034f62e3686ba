"""Targeted fixes to faust-streaming 0.15 / aiokafka 0.14, applied by the worker.

Each fix is small, pinned by a test in ``tests/streams/test_faust_fixes.py``, and
changes nothing else.  ``docs/reliability.md`` tells how the first two were found,
``docs/metering.md`` (*Faust behaviour the worker guards against*) the third,
``docs/benchmarks.md`` (the twenty-fifth round) what the fourth saves.

1. Duplicate acknowledgements stall commits
-------------------------------------------

Symptom seen here: after a restart, Faust delivers some records twice (records fetched
while tables recover, then again after it seeks to the committed offsets).  Each copy is
acknowledged, so the per-partition list of acknowledged offsets holds duplicates.  Faust
computes the offset to commit from the first run of *consecutive* numbers in that list,
and a duplicate breaks the run: commits then advance by one offset per commit interval
and the consumer lag never drains (the same defect is reported publicly against Faust:
"Offsets not committed due to duplicate in _acked").

For Meterline a second acknowledgement of a record is harmless — every record is
acknowledged only after its effects are stored, and the sink is idempotent — so the fix
is to drop duplicate offsets before Faust looks for the consecutive run.

2. Records fetched during recovery are dropped and never read again
-------------------------------------------------------------------

Symptom seen here (the post-restart stall): a worker restarted after a SIGKILL restores
its dedupe table, logs ``Worker ready`` with every partition assigned, and then meters
nothing, forever.  The restarted worker's aiokafka positions stood at the log end of
every events partition while Faust had delivered none of those records, and the group
had no committed offset (the killed worker died before its first commit).  Two defects
combine:

a. Faust hands the consumer thread its *live* set of active partitions.  While the
   thread waits in ``fetched_records(partitions)``, recovery pauses the changelog
   partitions and the set becomes empty — and aiokafka reads an empty set as "every
   partition".  The thread then drains the events partitions, advancing their
   positions; Faust discards the records because those partitions are not active yet.
b. Faust relies on the seek to committed offsets after recovery to re-read anything
   discarded, but aiokafka's ``seek_to_committed`` seeks only when the committed offset
   is ``> 0``: a partition with no committed offset (or offset 0) keeps its advanced
   position, so its discarded records are skipped for good.

The fixes: (a) the thread gets a snapshot of the active set taken when the fetch is
requested, and an empty snapshot fetches nothing; (b) after the seek to committed
offsets, every stream partition (not a changelog, whose recovery seeks by itself) with
no committed offset is reset to the beginning of the log — the worker's ``earliest``
reset policy — and one committed at 0 is sought to 0.  Re-reading costs nothing: the
sink is idempotent by position and dedupe drops the replays.

3. Idle partitions hold back the ones with a backlog
----------------------------------------------------

Symptom seen here (``make soak``): once the producer stopped, the worker metered half as
fast while a backlog remained, its event loop idle ~80 % of the time.  The soak's topic
had a backlog on two partitions and none on the other two.  aiokafka keeps one fetch in
flight per broker, and while the backlogged partitions still hold fetched records it
fetches only the others; Faust hard-codes that fetch's long poll at 1,500 ms
(``fetch_max_wait_ms``), so each time the backlogged partitions ran dry they waited up to
1.5 s for a fetch of idle partitions to time out.  While the producer ran, the idle
partitions received a record often enough to end each long poll early.

The fix: the worker's consumer long-polls for at most :data:`FETCH_MAX_WAIT_MS`.  A
caught-up worker then sends a few more empty fetches per second; nothing else changes.

4. A race of four tasks per record
----------------------------------

Symptom seen here (``make soak``, and a Faust agent that does nothing): Faust's fetch
loop hands each record to the conductor through ``wait_first(deliver(record),
suspend_flow.wait())`` — four tasks per record (the delivery, the suspension, the
service's stopped and crashed events), an ``asyncio.wait`` and three cancellations, so
that a rebalance can interrupt a delivery blocked on a full stream buffer.  Almost every
delivery finishes without ever blocking.  With records of one event each the race cost
a do-nothing agent ~40 % of its CPU, and the soak's worker (which gets its duplicates
one per record) about a third.

The fix: the delivery's first step runs at once, in a copy of the context as a task's
would.  A delivery that finishes there is done: no task, nothing to race.  One that
blocks goes on as a task from where it stopped, raced against the suspension exactly
as before.  Anything the delivery raises is raised from the same call.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator, Mapping
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from mode import Service
from mode.services import WaitResults

__all__ = ["FETCH_MAX_WAIT_MS", "apply"]

FETCH_MAX_WAIT_MS = 100
"""The longest a fetch waits on the broker for partitions with nothing new (fix 3; Faust
sets 1,500, aiokafka's and the Java client's default is 500)."""

_APPLIED = False


def apply() -> None:
    """Install the fix once per process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    original = Consumer._new_offset

    def _new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return original(self, tp)  # type: ignore[no-any-return]

    Consumer._new_offset = _new_offset
    AIOKafkaConsumerThread.getmany = _getmany_with_snapshot
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_or_beginning
    create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create_worker_consumer(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer
    Consumer.wait_first = _wait_first_delivering_eagerly
    _APPLIED = True


async def _getmany_with_snapshot(
    self: Any, active_partitions: set[Any] | None, timeout: float
) -> Mapping[Any, Any]:
    """Fix 2a: fetch for the partitions active *now*, never for a set that may empty."""
    snapshot = None if active_partitions is None else frozenset(active_partitions)
    if snapshot is not None and not snapshot:
        return {}
    consumer = self._ensure_consumer()
    return await self.call_thread(  # type: ignore[no-any-return]
        self._fetch_records,
        consumer,
        snapshot,
        timeout=timeout,
        max_records=consumer._max_poll_records,
    )


async def _seek_to_committed_or_beginning(self: Any) -> Mapping[Any, int | None]:
    """Fix 2b: aiokafka's seek, then reset stream partitions it leaves where they were."""
    return await self.call_thread(  # type: ignore[no-any-return]
        _seek_in_thread, self._ensure_consumer(), self.consumer._is_changelog_tp
    )


async def _seek_in_thread(consumer: Any, is_changelog: Any) -> Mapping[Any, int | None]:
    committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
    unset = []
    for tp, offset in committed.items():
        if is_changelog(tp):
            continue
        if offset == 0:
            consumer.seek(tp, 0)
        elif offset is None or offset < 0:
            unset.append(tp)
    if unset:
        await consumer.seek_to_beginning(*unset)
    return committed


_SUSPENSION = asyncio.Event.wait.__code__
"""The code of the second racer in the fetch loop's per-record call (fix 4)."""


async def _wait_first_delivering_eagerly(
    self: Any, *coros: Any, timeout: float | None = None
) -> WaitResults:
    """Fix 4: the fetch loop's ``wait_first(deliver(record), suspend_flow.wait())`` runs
    the delivery's first step at once; any other call is mode's ``wait_first``."""
    if not (
        timeout is None
        and len(coros) == 2
        and asyncio.iscoroutine(coros[0])
        and getattr(coros[1], "cr_code", None) is _SUSPENSION
        and not self._stopped.is_set()
        and not self._crashed.is_set()
    ):
        return await Service.wait_first(self, *coros, timeout=timeout)
    delivery, suspension = coros
    context = contextvars.copy_context()  # what a task of its own would run it in
    try:
        blocked_on = context.run(delivery.send, None)
    except StopIteration as finished:
        suspension.close()  # never started: closed, so never reported "never awaited"
        return WaitResults([delivery], [finished.value], False)
    except BaseException:
        suspension.close()
        raise
    rest = asyncio.Task(_carry_on(delivery, blocked_on), context=context)
    return await Service.wait_first(self, rest, suspension)


async def _carry_on(coro: Coroutine[Any, Any, Any], blocked_on: Any) -> Any:
    """The rest of ``coro``, whose first step yielded ``blocked_on``."""
    return await _Resumed(coro, blocked_on)


class _Resumed:
    """Awaiting it continues a coroutine after a step already taken: what it yielded
    goes up to the awaiting task, and what the task sends or throws (a wake-up, a
    cancellation) goes down into the coroutine, as ``await coro`` would have done."""

    __slots__ = ("blocked_on", "coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], blocked_on: Any) -> None:
        self.coro = coro
        self.blocked_on = blocked_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, blocked_on = self.coro, self.blocked_on
        while True:
            try:
                sent = yield blocked_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001  # thrown in by the task: passed down
                try:
                    blocked_on = coro.throw(exc)
                except StopIteration as finished:
                    return finished.value
                continue
            try:
                blocked_on = coro.send(sent)
            except StopIteration as finished:
                return finished.value
