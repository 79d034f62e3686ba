"""``meterline retention``: print the plan of ``streams.retention`` for the stored months
and, with ``--yes``, delete the months it drops."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from schemas.settings import Settings
from schemas.storage.events_table import EventsTable
from streams.retention import Month, first_kept_month, merge_months, plan_retention
from streams.shard import shard_views

__all__ = ["run_retention"]


def run_retention(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    first_kept = first_kept_month(now.date(), args.keep_months)
    # per shard, a connection to each of its replicas (one server: itself)
    with shard_views(settings) as (database, views):
        table = EventsTable(database)
        first_replicas = [view.readers[0][1] for view in views]
        months = merge_months(  # one replica per shard: an acknowledged write is on all
            [Month(int(m), int(r), int(b)) for m, r, b in first.execute(table.months().to_sql())]
            for first in first_replicas
        )

        def newest(month: int) -> int:
            # every replica: a write not yet on all of them still keeps its month
            sql = table.newest_ingested(month).to_sql()
            return max(
                int(reader.execute(sql)[0][0] or 0) for view in views for _, reader in view.readers
            )

        verdicts = plan_retention(
            months,
            first_kept,
            newest,
            int(now.timestamp() * 1000),
            int(settings.dedupe_horizon_days * 86_400_000),
        )
        for verdict in verdicts:
            m = verdict.month
            action = "drop" if verdict.drop else "keep"
            print(f"{_label(m.month)}  {m.rows:>13,} rows  {m.bytes:>16,} bytes  {action}", end="")
            print(f"  {verdict.why}")
        dropping = [v.month for v in verdicts if v.drop]
        rows = sum(m.rows for m in dropping)
        if not dropping:
            print(f"nothing to delete: no month before {_label(first_kept)} is old enough")
            return 0
        if not args.yes:
            print(f"dry run: {_count(len(dropping), 'month')} of raw events, {_count(rows, 'row')}")
            print("would be deleted; add --yes to delete them")
            return 0
        for m in dropping:
            for first in first_replicas:  # shard by shard; a rerun finishes a cut-short month
                first.execute(table.drop_month(m.month).to_sql())
            where = f" on {_count(len(views), 'shard')}" if settings.clickhouse_cluster else ""
            print(f"deleted the raw events of {_label(m.month)} ({_count(m.rows, 'row')}){where}")
        return 0


def _label(month: int) -> str:
    return f"{month // 100}-{month % 100:02d}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
