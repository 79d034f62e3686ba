"""``python -m streams reconcile`` and ``python -m streams backfill`` (see streams.reconcile)."""

from __future__ import annotations

import argparse
from datetime import datetime

from confluent_kafka.admin import AdminClient

from schemas.errors import InvalidInput, InvariantViolated
from schemas.meters import MeterSet
from schemas.settings import Settings
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.windows_table import WindowsTable
from schemas.timeutil import to_ms
from streams.progress import consumer_lag
from streams.reconcile import DAY_MS, backfill_rows, compare

__all__ = ["add_range_arguments", "run_backfill", "run_reconcile"]


def _instant(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return to_ms(moment)
    except ValueError as exc:
        raise InvalidInput.single(
            "time range", text, str(exc), "use ISO 8601 with an offset, e.g. 2026-10-01T00:00Z"
        ) from None


def add_range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", help="range start, ISO 8601 with offset")
    parser.add_argument("--to", dest="end", help="range end (exclusive), ISO 8601")


def _range(args: argparse.Namespace) -> tuple[int, int]:
    if not args.start or not args.end:
        raise InvalidInput.single("time range", "--from/--to", "both are required", "give both")
    return _instant(args.start), _instant(args.end)


def run_reconcile(settings: Settings, meters: MeterSet, args: argparse.Namespace) -> int:
    start, end = _range(args)
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    only = set(args.meter) if args.meter else None
    differences, checked, unmeterable = compare(
        engine, settings.clickhouse_database, settings.namespace, meters, start, end, only
    )
    for d in differences:
        print(f"DIFF meter={d.meter} subject={d.subject} raw={d.from_raw} windows={d.stored}")
    if unmeterable:
        print(f"note: {unmeterable} stored events cannot be metered by the current definitions")
    verdict = "MISMATCH" if differences else "OK"
    print(
        f"reconcile {verdict}: {checked} (meter, subject) pairs checked, "
        f"{len(differences)} differences"
    )
    return 1 if differences else 0


def _group_is_idle(settings: Settings) -> bool:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    futures = admin.describe_consumer_groups([settings.worker_app_id], request_timeout=15)
    description = futures[settings.worker_app_id].result(15)
    return not description.members


def run_backfill(settings: Settings, meters: MeterSet, args: argparse.Namespace) -> int:
    if not args.meter or len(args.meter) != 1:
        raise InvalidInput.single("backfill", "--meter", "name exactly one meter", "--meter SLUG")
    meter = meters.get(args.meter[0])
    start, end = _range(args)
    if not _group_is_idle(settings):
        raise InvariantViolated(
            f"the metering worker group {settings.worker_app_id!r} is running; stop it first, "
            "backfill, then start it with the new meter (see streams/reconcile.py)"
        )
    lag = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
    passed = {p: max(o, 0) for p, o in lag.committed.items()}
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    windows = WindowsTable(settings.clickhouse_database)
    ns, db = settings.namespace, settings.clickhouse_database
    for partition, offset in engine.execute(windows.meter_progress(ns, meter.slug).to_sql()):
        if int(offset) >= passed.get(int(partition), 0):
            raise InvariantViolated(
                f"meter {meter.slug!r} already has windows from the live worker (partition "
                f"{partition}, offset {offset}); backfill only before its first live run"
            )
    scan = EventsTable(db).scan(ns, [meter.event_type], start, end, below_offsets=passed)
    chunks, unmeterable = backfill_rows(engine.execute(scan.to_sql()), ns, meter)
    written = skipped = rows = 0
    for (partition, day_ms), chunk in sorted(chunks.items()):
        exists = engine.execute(
            windows.chunk_exists(
                ns, meter.slug, partition, day_ms // 1000, (day_ms + DAY_MS) // 1000
            ).to_sql()
        )
        if exists and int(exists[0][0]) > 0:
            skipped += 1
            continue
        engine.insert(*windows.insert_args(chunk))  # one block: the chunk lands whole or not
        written += 1
        rows += len(chunk)
    print(
        f"backfill {meter.slug}: {rows} events in {written} (partition, day) chunks written, "
        f"{skipped} already filled, {unmeterable} stored events not meterable by it"
    )
    return 0
