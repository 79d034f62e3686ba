"""Retention of raw events: whole months of ``usage_events`` deleted once they are old.

Raw events are what audits (``meterline verify``), re-metering (``meterline backfill``)
and reconciliation (``meterline reconcile``) read; the windows, the invoices and every
usage query read the windows, which keep what the events added.  At high volume the raw
events are most of the stored bytes, so ``meterline retention --keep-months N`` deletes
the months before the last N (the table is partitioned by the events' month, so a month
goes at once, without rewriting anything).  A month is deleted only when

- it ended before the kept ones began: with ``--keep-months 3`` on any day of December,
  October, November and December are kept and the months before October may go (by
  the events' time, UTC);
- its newest row was ingested longer ago than the dedupe horizon
  (``METERLINE_DEDUPE_HORIZON_DAYS``), so no worker is writing it, nothing in flight can
  be replayed into it, and a late event for it (which would have made it recent again)
  is not there to lose.

Without ``--yes`` the command only prints what it would delete.  After a month is gone,
``verify`` cannot audit invoice lines of that month, ``backfill`` finds no events there
and ``reconcile`` over it reports the windows as unexplained: run them on kept months.
A late event that arrives later for a deleted month is stored again (and counted in its
windows as any late event is).

On a ClickHouse cluster (``clickhouse_cluster``) the raw events live in each shard's
local table (``<database>_shard.usage_events``): a month's rows and bytes are the sums
over the shards (:func:`merge_months`, read from one replica of each shard: every
acknowledged write is on all of them), its newest ingestion the latest on any replica
(a write still reaching the others keeps its month), and a month that goes is dropped
shard by shard, each shard's other replicas following through ClickHouse's replication
log.  A run cut short between two shards is finished
by the next one: the month's remaining rows still pass the same checks.

The plan (:func:`plan_retention`) is pure; ``streams.retention_cli`` reads and deletes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from schemas.errors import InvalidInput
from schemas.timeutil import format_ms

__all__ = ["Month", "Verdict", "first_kept_month", "merge_months", "plan_retention"]


@dataclass(frozen=True, slots=True)
class Month:
    month: int
    """YYYYMM, by the events' time."""
    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Verdict:
    month: Month
    drop: bool
    why: str


def first_kept_month(today: date, keep_months: int) -> int:
    """The oldest month kept (YYYYMM): the current one and the ``keep_months - 1`` before
    it are kept, so ``keep_months`` 1 keeps only the current month."""
    if keep_months < 1:
        raise InvalidInput.single(
            "retention", "--keep-months", f"{keep_months} keeps no month", "--keep-months 13"
        )
    index = today.year * 12 + today.month - 1 - (keep_months - 1)
    return (index // 12) * 100 + index % 12 + 1


def plan_retention(
    months: Sequence[Month],
    first_kept: int,
    newest_ingested: Callable[[int], int],
    now_ms: int,
    horizon_ms: int,
) -> list[Verdict]:
    """A verdict per stored month: dropped when it is before ``first_kept`` and nothing
    of it was ingested within ``horizon_ms`` of ``now_ms`` (``newest_ingested`` is asked
    only for months old enough)."""
    verdicts = []
    for month in months:
        if month.month >= first_kept:
            verdicts.append(Verdict(month, False, "kept"))
            continue
        newest = newest_ingested(month.month)
        if newest > now_ms - horizon_ms:
            verdicts.append(
                Verdict(
                    month,
                    False,
                    f"kept: an event of it was ingested at {format_ms(newest)}, within the "
                    "dedupe horizon",
                )
            )
            continue
        verdicts.append(Verdict(month, True, "older than the kept months"))
    return verdicts


def merge_months(per_shard: Iterable[Sequence[Month]]) -> list[Month]:
    """The stored months of every shard as one list, oldest first: a month's rows and
    bytes summed over the shards that hold it."""
    rows: dict[int, int] = {}
    size: dict[int, int] = {}
    for months in per_shard:
        for m in months:
            rows[m.month] = rows.get(m.month, 0) + m.rows
            size[m.month] = size.get(m.month, 0) + m.bytes
    return [Month(month, rows[month], size[month]) for month in sorted(rows)]
