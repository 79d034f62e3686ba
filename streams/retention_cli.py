"""``meterline retention``: print the plan of ``streams.retention`` for the stored months
and, with ``--yes``, delete the months it drops."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from schemas.errors import InvariantViolated
from schemas.settings import Settings
from schemas.storage.cluster import shard_database
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from streams.retention import Month, first_kept_month, plan_retention

__all__ = ["run_retention"]


def run_retention(settings: Settings, args: argparse.Namespace) -> int:
    if settings.clickhouse_cluster:
        raise InvariantViolated(
            f"retention deletes one server's raw events; on the cluster "
            f"{settings.clickhouse_cluster!r} it is not supported by this build: drop the "
            f"months with ALTER TABLE {shard_database(settings.clickhouse_database)}"
            ".usage_events ON CLUSTER <cluster> DROP PARTITION <YYYYMM>"
        )
    now = datetime.now(UTC)
    first_kept = first_kept_month(now.date(), args.keep_months)
    table = EventsTable(settings.clickhouse_database)
    engine = ServerEngine.of(settings)
    try:
        months = [
            Month(int(m), int(r), int(b)) for m, r, b in engine.execute(table.months().to_sql())
        ]

        def newest(month: int) -> int:
            return int(engine.execute(table.newest_ingested(month).to_sql())[0][0] or 0)

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
            engine.execute(table.drop_month(m.month).to_sql())
            print(f"deleted the raw events of {_label(m.month)} ({_count(m.rows, 'row')})")
        return 0
    finally:
        engine.close()


def _label(month: int) -> str:
    return f"{month // 100}-{month % 100:02d}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
