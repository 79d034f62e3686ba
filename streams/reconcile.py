"""Re-metering from the raw events: ``reconcile`` (check) and ``backfill`` (fill).

Both read ``usage_events`` — every accepted, deduplicated event as it arrived — and run it
through the same pure code the worker uses
(:func:`schemas.metering.contributions.contributions`), so they meter history exactly as
the stream would have.

*reconcile* recomputes each (meter, subject) over a time range and compares it with the
stored windows; any difference is printed and the command exits non-zero.

*backfill* fills a meter defined after its events arrived.  Procedure: add the meter to the
meters file, stop the worker, run backfill, start the worker.  Backfill takes exactly the
stored events the stopped worker's group has already passed (offset below its committed
offset, per partition); the restarted worker meters everything from there on with the new
meter — so every event is counted by one of them, once.  Rows are written one atomic
insert per (partition, day); a rerun skips days already filled, so a crash mid-backfill is
finished by running it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from schemas.errors import InvalidInput
from schemas.metering.contributions import Contribution, Unmeterable, contributions, window_start_ms
from schemas.metering.definitions import MeterDefinition, MeterSet
from schemas.metering.windows import WindowState
from schemas.storage.engine import Engine
from schemas.storage.events_table import EventsTable
from schemas.storage.usage import UsageRead, read_usage
from schemas.storage.windows_table import FeedRow
from schemas.timeutil import MINUTE_MS
from schemas.wire import decode_event

__all__ = [
    "Difference",
    "MeteredRows",
    "backfill_rows",
    "compare",
    "recompute",
    "stored_totals",
    "stored_usage",
]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Difference:
    meter: str
    subject: str
    from_raw: Decimal | None
    stored: Decimal | None


def _aligned(start_ms: int, end_ms: int) -> None:
    if start_ms % MINUTE_MS or end_ms % MINUTE_MS or end_ms <= start_ms:
        raise InvalidInput.single(
            "time range",
            "from/to",
            "bounds must be whole minutes with from < to",
            "e.g. --from 2026-10-01T00:00Z --to 2026-11-01T00:00Z",
        )


class MeteredRows:
    """Raw rows ``(partition, offset, index, ingested_ms, data)`` run through the pure
    metering code; iterating yields ``(partition, offset, index, ingested_ms,
    contributions)`` and counts in :attr:`unmeterable` the stored events the given meters
    cannot meter, or that the event rules refuse now (a row an older worker stored)."""

    def __init__(self, rows: Iterable[Sequence[object]], meters: MeterSet) -> None:
        self.rows = rows
        self.meters = meters
        self.unmeterable = 0

    def __iter__(self) -> Iterator[tuple[int, int, int, int, tuple[Contribution, ...]]]:
        for partition, offset, index, ingested_ms, data in self.rows:
            try:  # a row an older worker stored may hold what events may no longer carry
                contribs = contributions(decode_event(str(data).encode()), self.meters)
            except (InvalidInput, Unmeterable):
                self.unmeterable += 1
                continue
            yield (
                int(str(partition)),
                int(str(offset)),
                int(str(index)),
                int(str(ingested_ms)),
                contribs,
            )


def recompute(
    rows: Iterable[Sequence[object]], meters: MeterSet, only: set[str] | None = None
) -> tuple[dict[tuple[str, str], WindowState], int]:
    """Fold raw rows ``(partition, offset, index, ingested_ms, data)`` per (meter, subject).

    Returns the states and how many stored events the current definitions cannot meter.
    """
    states: dict[tuple[str, str], WindowState] = {}
    scan = MeteredRows(rows, meters)
    for _, offset, index, _, contribs in scan:
        for c in contribs:
            if only is not None and c.meter not in only:
                continue
            key = (c.meter, c.subject)
            state = states.get(key, WindowState())
            states[key] = state.add(c.value, c.uniq, c.event_ms, offset, index)
    return states, scan.unmeterable


def stored_usage(
    engine: Engine,
    database: str,
    namespace: str,
    meter: MeterDefinition,
    start_ms: int,
    end_ms: int,
) -> dict[str, Decimal]:
    """The minute table's usage per subject (the table reconcile checks)."""
    read = UsageRead(
        namespace,
        database,
        MeterSet([meter]),
        (meter.slug,),
        start_ms // 1000,
        end_ms // 1000,
        grain="minute",
    )
    return {subject: values[meter.slug] for subject, values in read_usage(engine, read).items()}


ALL_TIME_MS = (0, (2**32 - 1) * 1000)
"""Every window a DateTime column can hold."""


def stored_totals(
    engine: Engine, database: str, namespace: str, meters: MeterSet
) -> dict[tuple[str, str], Decimal]:
    """``{(subject, meter): value}`` over all time, from the stored windows."""
    return {
        (subject, meter.slug): value
        for meter in meters
        for subject, value in stored_usage(engine, database, namespace, meter, *ALL_TIME_MS).items()
    }


def compare(
    engine: Engine,
    database: str,
    namespace: str,
    meters: MeterSet,
    start_ms: int,
    end_ms: int,
    only: set[str] | None = None,
) -> tuple[list[Difference], int, int]:
    """(differences, (meter, subject) pairs checked, unmeterable raw events)."""
    _aligned(start_ms, end_ms)
    chosen = [m for m in meters if only is None or m.slug in only]
    types = sorted({m.event_type for m in chosen})
    scan = EventsTable(database).scan(namespace, types, start_ms, end_ms)
    states, unmeterable = recompute(engine.execute(scan.to_sql()), meters, {m.slug for m in chosen})
    differences: list[Difference] = []
    checked = 0
    for meter in chosen:
        stored = stored_usage(engine, database, namespace, meter, start_ms, end_ms)
        raw = {s: st.value(meter.aggregation) for (m, s), st in states.items() if m == meter.slug}
        for subject in sorted(set(stored) | set(raw)):
            checked += 1
            if stored.get(subject) != raw.get(subject):
                differences.append(
                    Difference(meter.slug, subject, raw.get(subject), stored.get(subject))
                )
    return differences, checked, unmeterable


def backfill_rows(
    rows: Iterable[Sequence[object]], namespace: str, meter: MeterDefinition
) -> tuple[dict[tuple[int, int], list[FeedRow]], int]:
    """Feed rows for one meter from raw rows, grouped by (partition, day start ms), and the
    number of stored events this meter cannot meter (reported, not written)."""
    chunks: dict[tuple[int, int], list[FeedRow]] = {}
    scan = MeteredRows(rows, MeterSet([meter]))
    for p, o, i, ingested, contribs in scan:
        for c in contribs:
            row = FeedRow(
                namespace=namespace,
                meter=c.meter,
                subject=c.subject,
                group_key=c.group_key,
                window_start_s=c.window_start_ms // 1000,
                ingest_minute_s=window_start_ms(ingested) // 1000,
                value=c.value,
                uniq=c.uniq,
                event_ms=c.event_ms,
                source_partition=p,
                source_offset=o,
                source_index=i,
            )
            chunks.setdefault((p, c.window_start_ms - c.window_start_ms % DAY_MS), []).append(row)
    return chunks, scan.unmeterable
