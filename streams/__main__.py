"""``python -m streams init|worker``.

* ``init``: create the Kafka topics and the ClickHouse tables (idempotent).
* ``migrate``: bring the ClickHouse schema to this version, while the worker keeps
  writing; the worker and the API refuse an older schema and name this command.
* ``worker``: run the Faust metering worker until stopped, supervised: the worker child
  is restarted after every exit but a requested stop, and replaced when the liveness
  watchdog finds it stalled (``streams.supervisor``, ``streams.watchdog``).
* ``reconcile --from T --to T [--meter SLUG]``: recompute meters from the raw events and
  compare with the windows; exit 1 on any difference.
* ``backfill --meter SLUG --from T --to T``: fill a new meter from the raw events.
* ``reset --yes``: delete the topics, the consumer group, the workers' local state on this
  machine and the ClickHouse database of
  these settings (all metered data and dedupe state; for local use).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from ingest.admin import ensure_topics, meterline_topics
from schemas.errors import MeterlineError, ServiceUnavailable
from schemas.meters import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema, require_current
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import drop_database
from streams.cli import add_range_arguments, run_backfill, run_migrate, run_reconcile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams")
    parser.add_argument(
        "command", choices=["init", "migrate", "worker", "reset", "reconcile", "backfill"]
    )
    parser.add_argument("--meter", action="append", help="reconcile/backfill: meter slug")
    parser.add_argument("--yes", action="store_true", help="confirm reset")
    add_range_arguments(parser)
    parser.add_argument("--meters", help="meters YAML (default: $METERLINE_METERS_FILE)")
    parser.add_argument("-l", "--loglevel", default="info")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "reset":
            if not args.yes:
                print("reset deletes all metered data and dedupe state; add --yes", file=sys.stderr)
                return 2
            from ingest.admin import delete_state
            from streams.local_state import delete_local_state

            local = delete_local_state(settings)  # first: refused while a worker runs
            deleted = delete_state(settings)
            engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
            engine.execute(drop_database(settings.clickhouse_database).to_sql())
            print(
                f"deleted topics {deleted}, group {settings.worker_app_id}, "
                f"database {settings.clickhouse_database}, "
                f"local worker state {local or '(none)'}"
            )
            return 0
        if args.command == "init":
            ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
            engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
            ensure_schema(engine, settings.clickhouse_database)
            print(f"topics and tables ready (database {settings.clickhouse_database})")
            return 0
        if args.command == "migrate":
            return run_migrate(settings)
        meters = load_meters(args.meters or settings.meters_file)
        if args.command == "worker" and not args.child:
            from streams.supervisor import Supervisor, limits_from

            return Supervisor(
                settings,
                [*(["--meters", args.meters] if args.meters else []), "-l", args.loglevel],
                limits=limits_from(settings),
            ).run()
        if args.command == "reconcile":
            return run_reconcile(settings, meters, args)
        if args.command == "backfill":
            return run_backfill(settings, meters, args)
        from streams.app import create_worker

        ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
        engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
        require_current(engine, settings.clickhouse_database)
        engine.close()
        worker = create_worker(settings, meters)
        sys.argv = ["streams", "worker", "--without-web", "-l", args.loglevel]
        tune_gc()
        worker.app.main()
        return 0
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except MeterlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


#: Collection thresholds of the worker child (generation 0 allocations, then generation 1
#: and 2 collections).  CPython's default (2,000) runs a collection every few events here.
WORKER_GC_THRESHOLDS = (50_000, 20, 100)


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


if __name__ == "__main__":
    sys.exit(main())
