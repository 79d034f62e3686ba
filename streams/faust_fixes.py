"""Targeted fixes to faust-streaming 0.15 / aiokafka 0.14, applied by the worker.

Each fix is small, pinned by a test in ``tests/streams/test_faust_fixes.py``, and
changes nothing else.  ``docs/reliability.md`` tells how the first two were found,
``docs/metering.md`` (*Faust behaviour the worker guards against*) the third.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

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
