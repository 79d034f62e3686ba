"""The billing commands, for ``python -m invoicing`` and ``meterline bill|void``.

``python -m invoicing run --period YYYY-MM [--customer ID ...] [--dry-run] [--force]
[--grace MINUTES] [--cutoff TIME] [--format table|json] [--html-dir DIR] [--csv FILE]`` bills every
subscription period ending in the month (see ``invoicing.periods``); a rerun emits
nothing new.  ``python -m invoicing void INVOICE_ID --reason TEXT`` voids an issued
invoice.  ``python -m invoicing backtest --rate-card DRAFT --period YYYY-MM`` re-prices
billed months under a draft card, read-only (``invoicing.backtest.command``).  Progress
goes to stderr, results to stdout.
Exit codes: 0 done, 2 invalid input or a refused run, 3 a service unavailable.

Test hooks (the crash test): ``METERLINE_INVOICING_CRASH_AFTER_RECORDS=N`` kills the
run with SIGKILL after N records inside the Kafka transaction;
``METERLINE_INVOICING_CRASH_AFTER_COMMIT=1`` right after the commit.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from invoicing.backtest.command import add_backtest_parser
from invoicing.customers import load_customers
from invoicing.documents import lines_csv, render_html
from invoicing.ledger import void_invoice
from invoicing.periods import parse_month
from invoicing.publish import KafkaPublisher
from invoicing.rate_cards import add_rate_cards_parser
from invoicing.report import invoices_table
from invoicing.run import BillingRun, run_period
from invoicing.verify import add_verify_parser
from rating import load_rate_card
from schemas.cli import command_line
from schemas.errors import InvalidInput
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import require_configured
from schemas.storage.engine import ServerEngine
from schemas.timeutil import parse_instant
from streams.progress import consumer_lag


def _progress(text: str) -> None:
    print(f"[invoicing] {text}", file=sys.stderr, flush=True)


def _publisher(settings: Settings) -> KafkaPublisher:
    crash_after = os.environ.get("METERLINE_INVOICING_CRASH_AFTER_RECORDS")
    return KafkaPublisher(
        settings.kafka_bootstrap,
        settings.invoices_topic,
        settings.namespace,
        crash_after_records=int(crash_after) if crash_after else None,
        crash_after_commit=os.environ.get("METERLINE_INVOICING_CRASH_AFTER_COMMIT") == "1",
    )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    month = parse_month(args.period)
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
    engine = ServerEngine.of(settings)
    require_configured(engine, settings, meters=meters.meters)
    _progress(f"billing {month.label} for {len(customers)} subscriptions")
    result = run_period(
        BillingRun(
            namespace=settings.namespace,
            database=settings.clickhouse_database,
            period=month,
            customers=customers,
            card=card,
            meters=meters,
            dry_run=args.dry_run,
            force=args.force,
            grace=timedelta(minutes=args.grace),
            cutoff_s=_cutoff(args.cutoff),
        ),
        engine=engine,
        publish=None if args.dry_run else _publisher(settings),
        progress=lambda: consumer_lag(
            settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic
        ),
        report=_progress,
    )
    documents = [invoice.document() for invoice in result.invoices]
    if args.format == "json":
        dumped = [doc.model_dump(mode="json", by_alias=True) for doc in documents]
        print(orjson.dumps(dumped, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    else:
        print(invoices_table(documents))
    if args.html_dir:
        folder = Path(args.html_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for doc in documents:
            path = folder / f"{doc.invoice_id}.html"
            path.write_text(render_html(doc), encoding="utf-8")
            _progress(f"wrote {path}")
    if args.csv:
        Path(args.csv).write_text(lines_csv(documents), encoding="utf-8")
        _progress(f"wrote {args.csv}")
    for customer, period in result.still_open:
        _progress(f"not closed yet: {customer.id}/{customer.subscription} {period.label}")
    verb = "would emit" if args.dry_run else "emitted"
    _progress(
        f"{month.label}: {verb} {len(result.emitted)} invoices (usage cutoff "
        f"{result.cutoff_s}), {len(result.already_emitted)} emitted before, "
        f"{len(result.recovered)} finished from an interrupted run"
    )
    return 0


def _cutoff(text: str | None) -> int | None:
    if text is None:
        return None
    ms = parse_instant(text)
    if ms is None:
        raise InvalidInput.single(
            "billing run",
            "--cutoff",
            f"{text!r} is not a time with a UTC offset",
            "e.g. 2026-12-01T01:00Z",
        )
    return ms // 1000


def _void(args: argparse.Namespace, settings: Settings) -> int:
    engine = ServerEngine.of(settings)
    require_configured(engine, settings)
    record = void_invoice(
        namespace=settings.namespace,
        database=settings.clickhouse_database,
        invoice_id=args.invoice_id,
        reason=args.reason,
        engine=engine,
        publish=_publisher(settings),
    )
    print(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode())
    return 0


def add_parsers(sub: Any, run_name: str = "run") -> None:
    """Add the billing commands to ``sub`` (``run`` is ``bill`` in ``meterline``)."""
    run = sub.add_parser(run_name, help="bill every subscription period ending in a month")
    run.add_argument("--period", required=True, help="billing month, YYYY-MM")
    run.add_argument("--customer", action="append", default=[], help="only these customer ids")
    run.add_argument("--dry-run", action="store_true", help="print what would be emitted")
    run.add_argument("--force", action="store_true", help="close periods that are not due")
    run.add_argument("--grace", type=int, default=60, help="minutes after a period's end")
    run.add_argument(
        "--cutoff", help="ingestion cutoff (RFC 3339, whole minute); default: now, rounded up"
    )
    run.add_argument("--format", choices=["table", "json"], default="table")
    run.add_argument("--html-dir", help="write one HTML invoice per emitted invoice here")
    run.add_argument("--csv", help="write the lines of the emitted invoices to this CSV")
    run.set_defaults(handler=lambda args: _run(args, Settings()))
    void = sub.add_parser("void", help="void an issued invoice")
    void.add_argument("invoice_id")
    void.add_argument("--reason", required=True)
    void.set_defaults(handler=lambda args: _void(args, Settings()))
    add_backtest_parser(sub)
    add_rate_cards_parser(sub)
    add_verify_parser(sub)


def main(argv: Sequence[str] | None = None, prog: str = "python -m invoicing") -> int:
    return command_line(
        argv, prog=prog, description="Bill and void invoices.", add_parsers=add_parsers
    )
