"""``python -m streams reconcile``, ``backfill`` (see streams.reconcile) and ``migrate``
(see schemas.storage.bootstrap)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from schemas.errors import InvalidInput, InvariantViolated, ServiceUnavailable
from schemas.meters import MeterSet
from schemas.settings import Settings
from schemas.storage.bootstrap import CURRENT_VERSION, migrate
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.rollups import WindowStore
from schemas.storage.windows_table import WindowsTable
from schemas.timeutil import format_ms, to_ms
from streams.progress import consumer_lag
from streams.reconcile import DAY_MS, backfill_rows, compare

__all__ = ["add_range_arguments", "run_backfill", "run_migrate", "run_reconcile"]


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
    tables = WindowStore(db).tables()
    for (partition, day_ms), chunk in sorted(chunks.items()):
        missing = []
        for table, feed in tables.values():  # each table on its own: a crash may split them
            exists = engine.execute(
                windows.chunk_exists(
                    ns, meter.slug, partition, day_ms // 1000, (day_ms + DAY_MS) // 1000, table
                ).to_sql()
            )
            if not (exists and int(exists[0][0]) > 0):
                missing.append(feed)
        if not missing:
            skipped += 1
            continue
        for feed in missing:  # one block per table: the chunk lands whole or not
            engine.insert(*windows.insert_args(chunk, feed=feed))
        written += 1
        rows += len(chunk)
    print(
        f"backfill {meter.slug}: {rows} events in {written} (partition, day) chunks written, "
        f"{skipped} already filled, {unmeterable} stored events not meterable by it"
    )
    return 0


def run_migrate(settings: Settings, *, timeout_s: float = 900.0) -> int:
    """``python -m streams migrate``: bring the database to the current schema version
    while the worker keeps writing (see ``schemas.storage.schema_versions``)."""
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)

    def writer_active() -> bool:
        try:
            return not _group_is_idle(settings)
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka at {settings.kafka_bootstrap}: {exc}") from exc

    def settle(minute_s: int) -> None:
        wait_stored_before(settings, minute_s, timeout_s, report)

    def report(text: str) -> None:
        print(text, flush=True)

    done = migrate(
        engine,
        settings.clickhouse_database,
        writer_active=writer_active,
        settle=settle,
        report=report,
    )
    if not done:
        print(f"{settings.clickhouse_database} is already at schema version {CURRENT_VERSION}")
    engine.close()
    return 0


def wait_stored_before(
    settings: Settings, minute_s: int, timeout_s: float, report: Callable[[str], None]
) -> None:
    """Wait until ``minute_s`` has passed and the worker has committed every record
    appended before it: the log end read after the minute bounds those records, and a
    record is committed only once its effects are stored."""
    pause = minute_s + 1 - time.time()
    if pause > 0:
        report(f"waiting {pause:.0f}s for the cut {format_ms(minute_s * 1000)} to pass")
        time.sleep(pause)
    bound = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
    deadline = time.monotonic() + timeout_s
    while True:
        lag = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
        behind = {
            p: end - max(lag.committed.get(p, 0), 0)
            for p, end in bound.end.items()
            if max(lag.committed.get(p, 0), 0) < end
        }
        if not behind:
            return
        if time.monotonic() > deadline:
            raise InvariantViolated(
                f"the worker has not stored the records appended before the cut within "
                f"{timeout_s:.0f}s (behind per partition: {behind}); is it running? "
                f"Run `python -m streams migrate` again once it catches up"
            )
        time.sleep(1.0)
