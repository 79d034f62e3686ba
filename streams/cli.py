"""The worker package's commands, for ``python -m streams`` and ``meterline``.

* ``init``: create the Kafka topics and the ClickHouse tables (idempotent).
* ``migrate``: bring the ClickHouse schema to this version while the worker keeps
  writing (``schemas.storage.bootstrap``); the worker and the API refuse an older schema
  and name this command.
* ``worker``: run the metering worker until stopped, supervised: the worker child is
  restarted after every exit but a requested stop, and replaced when the liveness
  watchdog finds it stalled (``streams.supervisor``, ``streams.watchdog``).
* ``reconcile --from T --to T [--meter SLUG]``: recompute meters from the raw events and
  compare with the windows; exit 1 on any difference (``streams.reconcile``).
* ``backfill --meter SLUG --from T --to T``: fill a new meter from the raw events.
* ``dead-letters [--since T|90m|24h|7d] [--reason R] [--resend | --dry-run]``: list the
  events the worker could not meter, as JSON lines; or send back to the events topic the
  ones the meters now accept (``streams.dead_letters_cli``).
* ``reset --yes``: delete the topics, the consumer group, the workers' local state on
  this machine and the ClickHouse database of these settings (all metered data and dedupe
  state; for local use).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaException

from ingest.admin import ensure_topics, meterline_topics
from schemas.cli import command_line
from schemas.errors import InvalidInput, InvariantViolated, MeterlineError, ServiceUnavailable
from schemas.metering import fastpath
from schemas.metering.definitions import MeterSet, load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import CURRENT_VERSION, ensure_schema, migrate, require_configured
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import drop_database
from schemas.timeutil import format_ms, parse_instant
from streams.backfill import backfill
from streams.dead_letters_cli import run_dead_letters
from streams.progress import consumer_lag, describe_group
from streams.reconcile import compare
from streams.retention_cli import run_retention
from streams.shard import shard_views

__all__ = [
    "WORKER_GC_THRESHOLDS",
    "add_parsers",
    "main",
    "run_backfill",
    "run_migrate",
    "run_reconcile",
    "tune_gc",
]


def _instant(text: str) -> int:
    ms = parse_instant(text)
    if ms is None:
        raise InvalidInput.single(
            "time range",
            text,
            "not a time with a UTC offset",
            "use ISO 8601 with an offset, e.g. 2026-10-01T00:00Z",
        )
    return ms


def add_parsers(sub: Any) -> None:
    """Add the worker package's commands to ``sub`` (an argparse sub-parser set)."""
    init = sub.add_parser("init", help="create the Kafka topics and ClickHouse tables")
    init.set_defaults(handler=_init)
    migrate_ = sub.add_parser(
        "migrate", help="bring the ClickHouse schema to this version (the worker may run)"
    )
    migrate_.set_defaults(handler=lambda _args: run_migrate(Settings()))
    worker = sub.add_parser("worker", help="run the supervised metering worker until stopped")
    _meters_argument(worker)
    worker.add_argument("-l", "--loglevel", default="info", help="log level (default info)")
    worker.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(handler=_worker)
    reconcile = sub.add_parser(
        "reconcile", help="recompute meters from the raw events and compare with the windows"
    )
    _range_arguments(reconcile)
    reconcile.add_argument("--meter", action="append", help="only this meter (repeatable)")
    _meters_argument(reconcile)
    reconcile.set_defaults(handler=lambda a: run_reconcile(Settings(), _meters(a), a))
    backfill = sub.add_parser("backfill", help="fill a new meter's windows from the raw events")
    backfill.add_argument("--meter", action="append", required=True, help="the new meter")
    _range_arguments(backfill)
    _meters_argument(backfill)
    backfill.set_defaults(handler=lambda a: run_backfill(Settings(), _meters(a), a))
    letters = sub.add_parser(
        "dead-letters",
        help="list the events the worker could not meter (the dead-letter topic), as JSON lines",
    )
    letters.add_argument(
        "--since", help="sent at or after: a time with a UTC offset, or 90m, 24h, 7d (default: all)"
    )
    letters.add_argument("--reason", action="append", help="only this reason (repeatable)")
    resending = letters.add_mutually_exclusive_group()
    resending.add_argument(
        "--resend",
        action="store_true",
        help="send the events the meters now accept back to the events topic (once fixed)",
    )
    resending.add_argument(
        "--dry-run", action="store_true", help="say what --resend would send, and send nothing"
    )
    _meters_argument(letters)
    letters.set_defaults(handler=lambda a: run_dead_letters(Settings(), a, _meters))
    retention = sub.add_parser(
        "retention",
        help="delete the raw events of months before the last N (windows and invoices stay)",
    )
    retention.add_argument(
        "--keep-months",
        type=int,
        required=True,
        help="months kept, the current one included (e.g. 13: this month and a year before)",
    )
    retention.add_argument("--yes", action="store_true", help="delete; without it, a dry run")
    retention.set_defaults(handler=lambda a: run_retention(Settings(), a))
    reset = sub.add_parser(
        "reset", help="delete topics, consumer group, worker state and database (local use)"
    )
    reset.add_argument("--yes", action="store_true", help="confirm: all metered data goes")
    reset.set_defaults(handler=_reset)


def main(argv: Sequence[str] | None = None, prog: str = "python -m streams") -> int:
    return command_line(
        argv, prog=prog, description=__doc__.split("\n\n")[0], add_parsers=add_parsers
    )


def _range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", help="range start, ISO 8601 with offset")
    parser.add_argument("--to", dest="end", help="range end (exclusive), ISO 8601")


def _meters_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meters", help="meters YAML (default: $METERLINE_METERS_FILE)")


def _meters(args: argparse.Namespace) -> MeterSet:
    return load_meters(args.meters or Settings().meters_file)


def _init(_args: argparse.Namespace) -> int:
    settings = Settings()
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine.of(settings)
    try:
        ensure_schema(
            engine,
            settings.clickhouse_database,
            settings.clickhouse_window_states,
            load_meters(settings.meters_file).meters,
        )
    finally:
        engine.close()
    print(f"topics and tables ready (database {settings.clickhouse_database})")
    return 0


def _reset(args: argparse.Namespace) -> int:
    if not args.yes:
        print("reset deletes all metered data and dedupe state; add --yes", file=sys.stderr)
        return 2
    from ingest.admin import delete_state
    from streams.local_state import delete_local_state

    settings = Settings()
    local = delete_local_state(settings)  # first: refused while a worker runs
    deleted = delete_state(settings)
    engine = ServerEngine.of(settings)
    try:
        engine.execute(drop_database(settings.clickhouse_database).to_sql())
    finally:
        engine.close()
    print(
        f"deleted topics {deleted}, group {settings.worker_app_id}, "
        f"database {settings.clickhouse_database}, "
        f"local worker state {local or '(none)'}"
    )
    return 0


def require_codecs() -> None:
    """Refuse to start a worker that could not read a compressed record: Kafka's client
    decodes snappy, lz4 and zstd batches only with the ``cramjam`` package
    (``schemas.wire``: producers use zstd by default)."""
    from aiokafka import codec

    has = {"snappy": codec.has_snappy, "lz4": codec.has_lz4, "zstd": codec.has_zstd}
    missing = [name for name, check in has.items() if not check()]
    if missing:
        raise MeterlineError(
            f"this worker cannot read {', '.join(missing)}-compressed records: the Kafka "
            "client decodes them with the cramjam package, which is missing; install "
            "Meterline's dependencies (`make install`, or `pip install -e .`)"
        )


def _worker(args: argparse.Namespace) -> int:
    settings = Settings()
    logging.getLogger().setLevel(args.loglevel.upper())
    require_codecs()
    meters = _meters(args)
    if not args.child:
        from streams.supervisor import Supervisor, limits_from

        return Supervisor(
            settings,
            [*(["--meters", args.meters] if args.meters else []), "-l", args.loglevel],
            limits=limits_from(settings),
        ).run()
    from streams.app import create_worker

    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    _require_schema(settings, meters)
    worker = create_worker(settings, meters)
    if fastpath.native_decode is None:
        logging.getLogger(__name__).warning(
            "the native event decoder (meterline_native) is not installed: every line takes "
            "the lean Python decode (same results, ~5 µs more per event); `make install` "
            "builds it (needs cargo)"
        )
    sys.argv = ["streams", "worker", "--without-web", "-l", args.loglevel]
    tune_gc()
    worker.app.main()
    return 0


#: Collection thresholds of the worker child (generation 0 allocations, then generation 1
#: and 2 collections).  CPython's default (2,000) runs a collection every few events here.
#: A 20,000-event chunk keeps between 50,000 and 200,000 tracked objects alive until it is
#: written: at 50,000 the collector walked them 21 times per 220k events (1.1-1.5 µs an
#: event), at 200,000 once (0.15 µs).  Garbage cycles wait at most 200,000 allocations.
WORKER_GC_THRESHOLDS = (200_000, 20, 100)


def tune_gc() -> None:
    """Fewer, larger garbage collections for the worker's event path.

    A chunk allocates a handful of tuples per event and keeps them until it is written, so
    at the default thresholds the collector runs every few hundred events and walks the
    whole chunk each time, finding nothing to free: it cost about 40 % of the plan's CPU
    (``docs/benchmarks.md``).  What the process holds after start-up (modules, the app)
    is frozen out of collections.  Cycles are still collected, in larger steps.
    """
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


def _range(args: argparse.Namespace) -> tuple[int, int]:
    if not args.start or not args.end:
        raise InvalidInput.single("time range", "--from/--to", "both are required", "give both")
    return _instant(args.start), _instant(args.end)


def _require_schema(settings: Settings, meters: MeterSet) -> None:
    """The database at the current schema version, keeping the window states ``meters``
    need (added now with ``needed``), or refused naming the fix
    (``schemas.storage.bootstrap.require_configured``)."""
    engine = ServerEngine.of(settings)
    try:
        require_configured(engine, settings, meters=meters.meters)
    finally:
        engine.close()


def run_reconcile(settings: Settings, meters: MeterSet, args: argparse.Namespace) -> int:
    start, end = _range(args)
    only = set(args.meter) if args.meter else None
    _require_schema(settings, meters)
    engine = ServerEngine.of(settings)
    try:
        differences, checked, unmeterable = compare(
            engine, settings.clickhouse_database, settings.namespace, meters, start, end, only
        )
    finally:
        engine.close()
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
    description = describe_group(settings.kafka_bootstrap, settings.worker_app_id, timeout=15)
    return not description.members


def run_backfill(settings: Settings, meters: MeterSet, args: argparse.Namespace) -> int:
    """``python -m streams backfill``: ``streams.backfill`` once the worker group is
    stopped, below the offsets it committed."""
    if not args.meter or len(args.meter) != 1:
        raise InvalidInput.single("backfill", "--meter", "name exactly one meter", "--meter SLUG")
    meter = meters.get(args.meter[0])
    start, end = _range(args)
    if not _group_is_idle(settings):
        raise InvariantViolated(
            f"the metering worker group {settings.worker_app_id!r} is running; stop it first, "
            "backfill, then start it with the new meter (see streams/reconcile.py)"
        )
    # a meter defined later may need a window state the database does not keep yet
    _require_schema(settings, meters)
    lag = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
    passed = {p: max(o, 0) for p, o in lag.committed.items()}
    with shard_views(settings) as (database, views):
        done = backfill(views, database, settings.namespace, meter, start, end, passed)
    where = f" on {len(views)} shards" if settings.clickhouse_cluster else ""
    print(
        f"backfill {meter.slug}: {done.events} events in {done.written} (partition, day) "
        f"chunks written{where}, {done.skipped} already filled, {done.unmeterable} stored "
        "events not meterable by it"
    )
    return 0


def run_migrate(settings: Settings, *, timeout_s: float = 900.0) -> int:
    """``python -m streams migrate``: bring the database to the current schema version
    while the worker keeps writing (see ``schemas.storage.schema_versions``)."""
    engine = ServerEngine.of(settings)

    def writer_active() -> bool:
        try:
            return not _group_is_idle(settings)
        except KafkaException as exc:
            raise ServiceUnavailable(f"Kafka at {settings.kafka_bootstrap}: {exc}") from exc

    def settle(minute_s: int) -> None:
        wait_stored_before(settings, minute_s, timeout_s, report)

    def report(text: str) -> None:
        print(text, flush=True)

    try:
        done = migrate(
            engine,
            settings.clickhouse_database,
            writer_active=writer_active,
            settle=settle,
            report=report,
            states=settings.clickhouse_window_states,
            meters=load_meters(settings.meters_file).meters,
        )
    finally:
        engine.close()
    if not done:
        print(f"{settings.clickhouse_database} is already at schema version {CURRENT_VERSION}")
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
