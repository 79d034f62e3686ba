"""``python -m streams init|worker``.

* ``init``: create the Kafka topics and the ClickHouse tables (idempotent).
* ``worker``: run the Faust metering worker until stopped.
* ``reset --yes``: delete the topics, the consumer group and the ClickHouse database of
  these settings (all metered data and dedupe state; for local use).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ingest.admin import ensure_topics, meterline_topics
from schemas.errors import MeterlineError
from schemas.meters import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams")
    parser.add_argument("command", choices=["init", "worker", "reset"])
    parser.add_argument("--yes", action="store_true", help="confirm reset")
    parser.add_argument("--meters", help="meters YAML (default: $METERLINE_METERS_FILE)")
    parser.add_argument("-l", "--loglevel", default="info")
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

            deleted = delete_state(settings)
            engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
            engine.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
            print(f"deleted topics {deleted}, group {settings.worker_app_id}, "
                  f"database {settings.clickhouse_database}")
            return 0
        if args.command == "init":
            ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
            engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
            ensure_schema(engine, settings.clickhouse_database)
            print(f"topics and tables ready (database {settings.clickhouse_database})")
            return 0
        meters = load_meters(args.meters or settings.meters_file)
        from streams.app import create_worker

        ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
        ensure_schema(
            ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port),
            settings.clickhouse_database,
        )
        if settings.worker_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.worker_metrics_port, addr="127.0.0.1")
        worker = create_worker(settings, meters)
        sys.argv = ["streams", "worker", "--without-web", "-l", args.loglevel]
        worker.app.main()
        return 0
    except MeterlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
