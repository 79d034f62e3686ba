"""``meterline backfill``: fill a meter defined after its events arrived from the stored
raw events, on one server or shard by shard on a cluster.

The worker group must be stopped (``streams.cli`` checks it).  The raw events below the
group's committed offsets are metered by the new meter (``streams.reconcile``) and
written per (partition, day) chunk, one block per windows table, so a chunk lands whole
or not at all; a chunk a table already holds is skipped, so a rerun after a crash
finishes what was cut short and writes nothing twice.  A meter that already has windows
from the live worker is refused: those offsets are metered already.

On a cluster (``clickhouse_cluster``) an event's windows live on the shard that holds
the event (both are placed by subject, ``schemas.storage.cluster``), so each shard is
backfilled from its own raw events into its own tables.  Every replica of a shard is
read (``streams.shard.ShardView``), as the worker reads its progress: the replicas must
hold the same raw events and the same chunks, else a write is still on its way to one of
them and the backfill stops, naming the shard, before it writes anything anywhere.
Writes wait for every replica of the shard (``insert_quorum``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.errors import InvariantViolated
from schemas.metering.definitions import MeterDefinition
from schemas.storage.events_table import EventsTable
from schemas.storage.feed import FeedRow
from schemas.storage.rollups import WindowStore
from schemas.storage.windows_table import WindowsTable
from streams.reconcile import DAY_MS, backfill_rows
from streams.shard import ShardView

__all__ = ["Backfilled", "backfill"]


@dataclass(frozen=True, slots=True)
class Backfilled:
    events: int
    """Events in the chunks written (an event with several windows counts once per row)."""
    written: int
    skipped: int
    """Chunks every windows table already held."""
    unmeterable: int


def backfill(
    views: Sequence[ShardView],
    database: str,
    namespace: str,
    meter: MeterDefinition,
    start_ms: int,
    end_ms: int,
    passed: dict[int, int],
) -> Backfilled:
    """Backfill ``meter`` over event times ``[start_ms, end_ms)`` from the events below
    ``passed`` (the stopped group's committed offset per partition), shard by shard."""
    windows = WindowsTable(database)
    for view in views:  # refuse before anything is written anywhere
        progress = windows.meter_progress(namespace, meter.slug).to_sql()
        for address, reader in view.readers:
            for partition, offset in reader.execute(progress):
                if int(offset) >= passed.get(int(partition), 0):
                    where = f" on {view.label} ({address})" if view.label else ""
                    raise InvariantViolated(
                        f"meter {meter.slug!r} already has windows from the live worker "
                        f"(partition {partition}, offset {offset}){where}; backfill only "
                        "before its first live run"
                    )
    scan = EventsTable(database).scan(
        namespace, [meter.event_type], start_ms, end_ms, below_offsets=passed
    )
    tables = WindowStore(database).tables()
    unmeterable = 0
    plans: list[tuple[ShardView, list[FeedRow], list[str]]] = []
    for view in views:  # every replica of every shard agrees before anything is written
        rows = view.agreed(scan.to_sql(), f"raw events of {meter.event_type!r}")
        chunks, refused = backfill_rows(rows, namespace, meter)
        unmeterable += refused
        for (partition, day_ms), chunk in sorted(chunks.items()):
            missing = []
            for table, feed in tables.values():  # each table on its own: a crash may split them
                exists = windows.chunk_exists(
                    namespace, meter.slug, partition, day_ms // 1000, (day_ms + DAY_MS) // 1000,
                    table,
                )  # fmt: skip
                found = view.agreed(exists.to_sql(), f"windows in {table}")
                if not (found and int(found[0][0]) > 0):
                    missing.append(feed)
            plans.append((view, chunk, missing))
    events = written = skipped = 0
    for view, chunk, missing in plans:
        if not missing:
            skipped += 1
            continue
        for feed in missing:  # one block per table: the chunk lands whole or not
            view.insert(windows.insert_args(chunk, feed=feed))
        written += 1
        events += len(chunk)
    return Backfilled(events, written, skipped, unmeterable)
