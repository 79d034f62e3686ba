"""An independent check of a billing run: per-unit invoices recomputed from scratch.

It does not use the rating engine.  It reads per-unit prices straight from the rate-card
file (numbers kept as text, so exact), multiplies them with the true usage of the
generated telemetry, rounds each line half-up to the currency's minor unit, and sums.
The demo and the end-to-end tests compare the pipeline's invoices with this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from invoicing.customers import Customer
from schemas.documents import load_document

__all__ = ["expected_adjustments", "expected_totals", "per_unit_prices"]

_MINOR_UNITS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3}


def per_unit_prices(rate_card: str | Path) -> dict[tuple[str, str, str], Decimal]:
    """``(plan, currency, meter) → unit price`` for the card's ``per_unit`` charges."""
    document: Any = load_document(rate_card, "rate card")
    prices = {}
    for plan, currencies in document["plans"].items():
        for currency, price_list in currencies.items():
            if not isinstance(price_list, dict):  # a plan setting (proration), not prices
                continue
            for charge in price_list["charges"]:
                if charge["model"] == "per_unit":
                    prices[(plan, currency, charge["meter"])] = Decimal(charge["unit_price"])
    return prices


def expected_totals(
    truth: Mapping[tuple[str, str], Decimal],
    customers: Sequence[Customer],
    prices: Mapping[tuple[str, str, str], Decimal],
) -> dict[str, Decimal]:
    """Customer id → invoice total, from the true (deduplicated) usage per subject."""
    totals = {}
    for customer in customers:
        exponent = Decimal(1).scaleb(-_MINOR_UNITS[customer.currency])
        total = Decimal(0)
        for (plan, currency, meter), price in prices.items():
            if (plan, currency) != (customer.plan, customer.currency):
                continue
            quantity = sum(
                (truth.get((subject, meter), Decimal(0)) for subject in customer.subjects),
                Decimal(0),
            )
            total += (quantity * price).quantize(exponent, rounding=ROUND_HALF_UP)
        totals[customer.id] = total
    return totals


def expected_adjustments(
    billed: Mapping[tuple[str, str], Decimal],
    late: Mapping[tuple[str, str], Decimal],
    customers: Sequence[Customer],
    prices: Mapping[tuple[str, str, str], Decimal],
) -> dict[str, Decimal]:
    """Customer id → adjustment total for late usage, per unit, from the true usage:
    each meter's line re-rated with the late usage minus the line as billed."""
    after = dict(billed)
    for key, value in late.items():
        after[key] = after.get(key, Decimal(0)) + value
    before_totals = expected_totals(billed, customers, prices)
    after_totals = expected_totals(after, customers, prices)
    return {c.id: after_totals[c.id] - before_totals[c.id] for c in customers}
