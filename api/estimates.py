"""Estimated charges for the current period (pure): live usage priced by the rating engine.

An estimate is what the invoice would say if the period closed now, from the usage
stored so far.  It is not an invoice: nothing is stored and the numbers move while
events arrive.  A customer whose plan cannot be priced (e.g. no price list in its
currency) gets ``error`` instead of lines, so one bad entry does not hide the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal, localcontext
from typing import Any

from invoicing.customers import Customer
from invoicing.periods import Period, month_period
from rating import RateCard, Usage, rate_plan
from schemas.errors import MeterlineError
from schemas.timeutil import format_ms, to_ms

__all__ = ["CustomerEstimate", "current_period", "estimate", "period_json", "priced_meters"]

SubjectUsage = Mapping[str, Mapping[str, Decimal]]


def current_period(now: datetime) -> Period:
    """The billing period containing ``now`` (a UTC calendar month)."""
    return month_period(f"{now.year:04d}-{now.month:02d}")


def period_json(period: Period) -> dict[str, str]:
    return {"start": format_ms(to_ms(period.start)), "end": format_ms(to_ms(period.end))}


def priced_meters(card: RateCard) -> set[str]:
    return {
        charge.meter
        for plan in card.plans.values()
        for charges in plan.prices.values()
        for charge in charges
        if charge.meter is not None
    }


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
    customers: Sequence[Customer], card: RateCard, usage: SubjectUsage
) -> list[CustomerEstimate]:
    """Each customer's usage (summed over its subjects) and its priced estimate."""
    out = []
    for customer in customers:
        totals: dict[str, Decimal] = {}
        with localcontext(Context(prec=80)):  # 38-digit values add without rounding
            for subject in customer.subjects:
                for meter, value in usage.get(subject, {}).items():
                    totals[meter] = totals.get(meter, Decimal(0)) + value
        try:
            rated = rate_plan(
                card,
                customer.plan,
                customer.currency,
                {meter: Usage(quantity=q) for meter, q in totals.items()},
            )
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
