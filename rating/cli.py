"""``python -m rating quote``: preview a bill from a rate card and usage, offline.

Exit codes: 0 priced; 2 invalid input (a message naming each field and its fix on
stderr, never a traceback); 1 an internal exactness check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rating.card import RateCard, load_rate_card
from rating.engine import RatedPlan, rate_plan
from rating.lines import Line
from rating.money import format_decimal, minor_units
from rating.usage import load_usage_file, parse_usage_pairs
from schemas.errors import InvalidInput, MeterlineError, Problem

__all__ = ["add_parsers", "main", "render_table"]


def _parser(prog: str = "python -m rating") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def add_parsers(sub: Any) -> None:
    """Add ``quote`` to ``sub`` (an argparse sub-parser set)."""
    quote = sub.add_parser(
        "quote",
        help="price usage with a plan and print the lines and the total",
        description="Price usage with one plan of a rate card; nothing needs to be running.",
    )
    quote.add_argument("--rate-card", required=True, metavar="FILE", help="YAML or JSON rate card")
    quote.add_argument("--plan", required=True, metavar="NAME", help="plan to price with")
    quote.add_argument(
        "--currency",
        metavar="CODE",
        help="ISO 4217 code; defaults to the plan's only currency",
    )
    source = quote.add_mutually_exclusive_group()
    source.add_argument(
        "--usage",
        nargs="+",
        action="extend",
        default=[],
        metavar="METER=QTY",
        help="usage per meter, e.g. api_calls=1500.5 (meters not given count as zero)",
    )
    source.add_argument(
        "--usage-file",
        metavar="FILE",
        help="JSON or YAML: {meter: quantity} or {meter: {quantity: N, events: [amounts]}}",
    )
    quote.add_argument(
        "--format", choices=("json", "table"), default="json", help="output format (default json)"
    )
    quote.set_defaults(handler=_quote_command)


def main(argv: Sequence[str] | None = None, prog: str = "python -m rating") -> int:
    """Run the CLI; returns the exit code."""
    args = _parser(prog).parse_args(argv)
    return int(args.handler(args))


def _quote_command(args: argparse.Namespace) -> int:
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8")
    try:
        rated = _quote(args)
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MeterlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.format == "table":
        print(render_table(rated))
    else:
        print(json.dumps(rated.to_dict(), indent=2, ensure_ascii=False))
    return 0


def _quote(args: argparse.Namespace) -> RatedPlan:
    """Load the card and the usage, reporting both inputs' problems together."""
    failures: list[InvalidInput] = []
    card = usage = None
    try:
        card = load_rate_card(args.rate_card)
    except InvalidInput as exc:
        failures.append(exc)
    try:
        usage = (
            load_usage_file(args.usage_file) if args.usage_file else parse_usage_pairs(args.usage)
        )
    except InvalidInput as exc:
        failures.append(exc)
    if len(failures) == 1:
        raise failures[0]
    if card is None or usage is None:
        raise InvalidInput("quote input", [p for failure in failures for p in failure.problems])
    currency = _currency(card, args.plan, args.currency)
    return rate_plan(card, args.plan, currency, usage, strict=True)


def _currency(card: RateCard, plan: str, currency: str | None) -> str:
    """The requested currency, or the plan's only one."""
    if currency is not None:
        return currency
    currencies = card.currencies(plan)
    if len(currencies) != 1:
        raise InvalidInput(
            "quote input",
            [
                Problem(
                    "--currency",
                    f"plan {plan!r} is priced in {', '.join(currencies)}",
                    fix=f"choose one, e.g. --currency {currencies[0]}",
                )
            ],
        )
    return currencies[0]


def render_table(rated: RatedPlan) -> str:
    """A readable quote: each line with the arithmetic that produced it, then the total."""
    digits = minor_units(rated.currency)
    out = [
        f"plan {rated.plan} · {rated.currency} · each line rounded once to {digits}"
        f" decimal{'s' if digits != 1 else ''}, ROUND_HALF_UP",
    ]
    for line in rated.lines:
        out.append("")
        out.extend(_render_line(line))
    out.append("")
    out.append(f"total {format_decimal(rated.total)} {rated.currency}")
    return "\n".join(out)


def _render_line(line: Line) -> list[str]:
    head = [line.charge_id, line.model]
    if line.meter is not None:
        head.append(f"meter {line.meter}")
    head.append(f"quantity {format_decimal(line.quantity)}")
    rows: list[list[str]] = [
        [
            part.label,
            format_decimal(part.quantity),
            format_decimal(part.unit_price),
            "",
            format_decimal(part.amount),
        ]
        for part in line.components
    ]
    for tier in line.tiers:
        rows.append(
            [
                f"tier {tier.tier} {tier.bounds}",
                format_decimal(tier.quantity),
                format_decimal(tier.unit_price),
                f"+ {format_decimal(tier.flat_fee)}" if tier.flat_fee else "",
                format_decimal(tier.amount),
            ]
        )
    widths = [max((len(row[col]) for row in rows), default=0) for col in range(5)]
    body = []
    for label, quantity, price, flat, amount in rows:
        flat_cell = f" {flat:<{widths[3]}}" if widths[3] else ""
        body.append(
            f"  {label:<{widths[0]}}  {quantity:>{widths[1]}} × {price:<{widths[2]}}"
            f"{flat_cell} = {amount:>{widths[4]}}"
        )
    foot = (
        f"  amount {format_decimal(line.amount)}"
        f" (unrounded {format_decimal(line.unrounded_amount)})"
    )
    return ["  ·  ".join(head), *body, foot]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
