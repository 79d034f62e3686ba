"""``meterline retention``: print the plan of ``streams.retention`` for the stored months
and, with ``--yes``, delete the months it drops."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from schemas.settings import Settings
from schemas.storage.cluster import shard_database
from schemas.storage.engine import Engine, ServerEngine, shard_engines
from schemas.storage.events_table import EventsTable
from streams.retention import Month, first_kept_month, merge_months, plan_retention

__all__ = ["run_retention"]


def run_retention(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    first_kept = first_kept_month(now.date(), args.keep_months)
    shards = shard_engines(settings)
    database = settings.clickhouse_database
    table = EventsTable(shard_database(database) if shards else database)
    opened: list[Engine] = []

    def connect(make: Callable[[], Engine]) -> Engine:
        opened.append(make())  # one at a time: `finally` closes what was opened
        return opened[-1]

    try:
        # per shard, a connection to each of its replicas (one server: itself)
        replicas = (
            [[connect(partial(s.connect_to, r)) for r in s.replicas] for s in shards]
            if shards
            else [[connect(lambda: ServerEngine.of(settings))]]
        )
        months = merge_months(  # one replica per shard: an acknowledged write is on all
            [Month(int(m), int(r), int(b)) for m, r, b in shard[0].execute(table.months().to_sql())]
            for shard in replicas
        )

        def newest(month: int) -> int:
            # every replica: a write not yet on all of them still keeps its month
            sql = table.newest_ingested(month).to_sql()
            return max(int(engine.execute(sql)[0][0] or 0) for engine in opened)

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
            for shard in replicas:  # shard by shard; a rerun finishes a cut-short month
                shard[0].execute(table.drop_month(m.month).to_sql())
            where = f" on {_count(len(replicas), 'shard')}" if shards else ""
            print(f"deleted the raw events of {_label(m.month)} ({_count(m.rows, 'row')}){where}")
        return 0
    finally:
        for engine in opened:
            engine.close()


def _label(month: int) -> str:
    return f"{month // 100}-{month % 100:02d}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
