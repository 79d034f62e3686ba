"""``meterline backtest`` / ``python -m invoicing backtest``: re-price billed months under
a draft rate card, read-only.

``backtest --rate-card DRAFT --period YYYY-MM [--period YYYY-MM..YYYY-MM ...]
[--customers FILE] [--customer ID ...] [--format table|csv|html] [--output FILE]``

The months select subscription periods exactly as ``bill`` does; usage, invoices and the
meters come from the configured ClickHouse database and meters file.  Progress goes to
stderr, the report to stdout or ``--output``.  Exit codes: 0 done, 2 bad input (the
field and the fix), 3 ClickHouse unreachable.  Nothing is written to ClickHouse or Kafka:
a database without Meterline's tables is an error here, not created.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from invoicing.backtest.html import backtest_html
from invoicing.backtest.model import Backtest
from invoicing.backtest.read import BacktestRequest, run_backtest
from invoicing.backtest.render import backtest_csv, backtest_table
from invoicing.customers import Customer, load_customers
from invoicing.periods import Month, parse_month
from rating import load_rate_card
from schemas.errors import InvalidInput, Problem
from schemas.memory import collection_paused
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import require_configured
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import tables_of

__all__ = ["FORMATS", "add_backtest_parser", "parse_months"]

MAX_MONTHS = 120
"""A backtest covers at most ten years of months (a typo such as 2026..9026 is refused)."""

FORMATS: dict[str, Callable[[Backtest], str]] = {
    "table": backtest_table,
    "csv": backtest_csv,
    "html": backtest_html,
}

_PERIOD_FIX = "write YYYY-MM or a range YYYY-MM..YYYY-MM, e.g. 2026-10 or 2026-07..2026-09"


def _progress(text: str) -> None:
    sys.stderr.write(f"[backtest] {text}\n")
    sys.stderr.flush()


def parse_months(values: Sequence[str]) -> tuple[Month, ...]:
    """``--period`` values (months or inclusive ranges) as distinct months, in order;
    every bad value is reported at once."""
    months: set[Month] = set()
    problems: list[Problem] = []
    for text in values:
        first, dots, last = text.partition("..")
        try:
            start = parse_month(first)
            end = parse_month(last) if dots else start
        except InvalidInput:
            problems.append(Problem("--period", f"{text!r} is not a month or months", _PERIOD_FIX))
            continue
        span = (end.year - start.year) * 12 + end.month - start.month + 1
        if span < 1:
            problems.append(Problem("--period", f"{text!r} ends before it starts", _PERIOD_FIX))
        elif span > MAX_MONTHS:
            problems.append(
                Problem(
                    "--period",
                    f"{text!r} spans {span} months",
                    f"backtest at most {MAX_MONTHS} months at a time",
                )
            )
        else:
            index = start.year * 12 + start.month - 1
            months.update(Month(n // 12, n % 12 + 1) for n in range(index, index + span))
    if problems:
        raise InvalidInput("backtest", problems)
    return tuple(sorted(months, key=lambda m: (m.year, m.month)))


def _output(path: str | None) -> Path | None:
    """The report's file, checked before any work is done."""
    if path is None:
        return None
    target = Path(path)
    if not target.parent.is_dir():
        raise InvalidInput.single(
            "backtest",
            "--output",
            f"the folder {str(target.parent)!r} does not exist",
            "create it, or write the report elsewhere",
        )
    return target


def _only(customers: tuple[Customer, ...], ids: Sequence[str], source: str) -> tuple[Customer, ...]:
    if not ids:
        return customers
    unknown = set(ids) - {c.id for c in customers}
    if unknown:
        raise InvalidInput.single(
            "backtest",
            "--customer",
            f"unknown customers {sorted(unknown)}",
            f"use ids from {source}",
        )
    return tuple(c for c in customers if c.id in set(ids))


def _engine(settings: Settings) -> ServerEngine:
    """The configured ClickHouse, refused (not created) when it has no Meterline tables."""
    engine = ServerEngine.of(settings)
    database = settings.clickhouse_database
    if not tables_of(engine, database):
        raise InvalidInput.single(
            "backtest",
            "METERLINE_CLICKHOUSE_DATABASE",
            f"ClickHouse database {database!r} holds no Meterline tables, so nothing was billed"
            " there",
            "point it at the database billing writes to",
        )
    # the tables exist: this only checks their version, and the meters' window states
    require_configured(engine, settings, database=database)
    return engine


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    months = parse_months(args.period)
    target = _output(args.output)
    meters = load_meters(settings.meters_file)
    card = load_rate_card(args.rate_card, known_meters=meters.slugs())
    source = args.customers or settings.customers_file
    customers = _only(load_customers(source), args.customer, source)
    engine = _engine(settings)
    _progress(f"re-pricing {len(customers)} subscriptions with {args.rate_card}")
    result = run_backtest(
        BacktestRequest(
            namespace=settings.namespace,
            database=settings.clickhouse_database,
            months=months,
            customers=customers,
            card=card,
            meters=meters,
            rate_card=args.rate_card,
        ),
        engine,
    )
    engine.close()
    with collection_paused():  # the report of 100k customers is a batch too
        text = FORMATS[args.format](result)
    if target is None:
        sys.stdout.write(text)
    else:
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InvalidInput.single(
                "backtest",
                "--output",
                f"cannot write {str(target)!r}: {exc.strerror}",
                "give a writable path",
            ) from None
        _progress(f"wrote {target}")
    _progress(f"{result.invoices} invoices, {len(result.rows)} rows compared; nothing emitted")
    return 0


def add_backtest_parser(sub: Any) -> None:
    """Add ``backtest`` to ``sub`` (``meterline`` and ``python -m invoicing`` alike)."""
    parser = sub.add_parser(
        "backtest",
        help="re-price billed months under a draft rate card, against what was invoiced",
    )
    parser.add_argument("--rate-card", required=True, help="the draft rate card (YAML or JSON)")
    parser.add_argument(
        "--period",
        required=True,
        action="append",
        help="billing month YYYY-MM or range YYYY-MM..YYYY-MM (repeatable), selected as bill does",
    )
    parser.add_argument(
        "--customers", help="customers file (default: METERLINE_CUSTOMERS_FILE, as bill uses)"
    )
    parser.add_argument("--customer", action="append", default=[], help="only these customer ids")
    parser.add_argument("--format", choices=sorted(FORMATS), default="table")
    parser.add_argument("--output", help="write the report to this file instead of stdout")
    parser.set_defaults(handler=lambda args: _backtest(args, Settings()))
