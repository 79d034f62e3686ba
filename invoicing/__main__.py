"""``python -m invoicing run --period YYYY-MM [--customer ID ...] [--dry-run] [--force]``.

Rates a closed period from ClickHouse and emits each new invoice to the Kafka
``invoices`` topic and to ClickHouse.  A rerun of the same period emits nothing new.
Exit codes: 0 done, 2 invalid input or a refused run, 3 a service unavailable.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from invoicing.customers import load_customers
from invoicing.periods import month_period
from invoicing.report import invoices_table
from invoicing.run import KafkaPublisher, run_period
from rating import load_rate_card
from schemas.errors import InvalidInput, MeterlineError, ServiceUnavailable
from schemas.meters import load_meters
from schemas.settings import Settings
from schemas.storage.engine import ServerEngine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m invoicing")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="rate a closed period and emit its invoices")
    run.add_argument("--period", required=True, help="billing month, YYYY-MM (UTC)")
    run.add_argument("--customer", action="append", default=[], help="only these customer ids")
    run.add_argument("--dry-run", action="store_true", help="print what would be emitted")
    run.add_argument("--force", action="store_true", help="close a period that is still open")
    run.add_argument("--format", choices=["table", "json"], default="table")
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        period = month_period(args.period)
        meters = load_meters(settings.meters_file)
        card = load_rate_card(settings.rate_card_file, known_meters=meters.slugs())
        customers = load_customers(settings.customers_file)
        if args.customer:
            unknown = set(args.customer) - {c.id for c in customers}
            if unknown:
                raise InvalidInput.single(
                    "billing run",
                    "--customer",
                    f"unknown customers {sorted(unknown)}",
                    f"use ids from {settings.customers_file}",
                )
            customers = tuple(c for c in customers if c.id in set(args.customer))
        engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
        result = run_period(
            namespace=settings.namespace,
            database=settings.clickhouse_database,
            period=period,
            customers=customers,
            card=card,
            meters=meters,
            engine=engine,
            publish=None
            if args.dry_run
            else KafkaPublisher(settings.kafka_bootstrap, settings.invoices_topic),
            dry_run=args.dry_run,
            force=args.force,
        )
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except MeterlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(
            orjson.dumps(
                [i.document() for i in result.invoices], option=orjson.OPT_INDENT_2
            ).decode()
        )
    else:
        print(invoices_table(result.invoices))
    verb = "would emit" if args.dry_run else "emitted"
    print(
        f"{period.label}: {len(result.invoices)} invoices; {verb} {len(result.emitted)}, "
        f"{len(result.already_emitted)} already emitted before",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
