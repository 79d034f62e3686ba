"""Estimated charges for the current period (pure): live usage priced by the rating engine.

An estimate is what the invoice would say if the period closed now, from the usage
stored so far.  It is not an invoice: nothing is stored and the numbers move while
events arrive.  A customer whose plan cannot be priced (e.g. no price list in its
currency) gets ``error`` instead of lines, so one bad entry does not hide the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from invoicing.customers import Customer
from invoicing.periods import Period, month_period
from invoicing.usage import customer_usage
from rating import RateCard, rate_plan
from schemas.errors import MeterlineError
from schemas.metering.definitions import MeterSet
from schemas.storage.usage import SubjectUsage
from schemas.timeutil import format_ms, to_ms

__all__ = ["CustomerEstimate", "current_period", "estimate", "period_json"]


def current_period(now: datetime) -> Period:
    """The billing period containing ``now`` (a UTC calendar month)."""
    return month_period(f"{now.year:04d}-{now.month:02d}")


def period_json(period: Period) -> dict[str, str]:
    return {"start": format_ms(to_ms(period.start)), "end": format_ms(to_ms(period.end))}


@dataclass(frozen=True, slots=True)
class CustomerEstimate:
    customer: Customer
    usage: dict[str, Decimal]
    lines: list[dict[str, Any]] = field(default_factory=list)
    total: Decimal | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Usage as exact JSON numbers; money as decimal strings in the currency's minor
        units (``"0.50"``), as on invoices."""
        estimate = (
            None if self.total is None else {"total": format(self.total, "f"), "lines": self.lines}
        )
        return {
            "id": self.customer.id,
            "subjects": list(self.customer.subjects),
            "plan": self.customer.plan,
            "currency": self.customer.currency,
            "usage": dict(sorted(self.usage.items())),
            "estimate": estimate,
            "error": self.error,
        }


def estimate(
    customers: Sequence[Customer],
    card: RateCard,
    meters: MeterSet,
    usage: SubjectUsage,
    only: str | None = None,
) -> list[CustomerEstimate]:
    """Each customer's usage (its subjects added up by billing's rule,
    :func:`invoicing.usage.customer_usage`) and its priced estimate; only the customer
    ``only`` when given (a problem names the customer's place in ``customers``, the
    customers file)."""
    out = []
    for index, customer in enumerate(customers):
        if only is not None and customer.id != only:
            continue
        quantities, problems = customer_usage(customer, index, meters, usage)
        totals = {meter: q.quantity for meter, q in quantities.items()}
        if problems:
            out.append(CustomerEstimate(customer, totals, error=str(problems[0])))
            continue
        try:
            rated = rate_plan(card, customer.plan, customer.currency, quantities)
        except MeterlineError as exc:
            out.append(CustomerEstimate(customer, totals, error=str(exc).splitlines()[0]))
            continue
        lines = [
            {
                "meter": line.meter,
                "name": line.name,
                "quantity": line.quantity,
                "amount": format(line.amount, "f"),
            }
            for line in rated.lines
        ]
        out.append(CustomerEstimate(customer, totals, lines, rated.total))
    return out
