"""Estimated charges for the current period (pure): live usage priced by the rating engine.

An estimate is what the invoice would say if the period closed now, from the usage
stored so far.  It is not an invoice: nothing is stored and the numbers move while
events arrive.  A customer whose plan cannot be priced (e.g. no price list in its
currency) gets ``error`` instead of lines, so one bad entry does not hide the others.

Beside each estimate, the customer's prepaid credit (:func:`with_credit`): per currency
the balance ``GET /customers/{id}/balance`` answers (``GrantState.remaining``), and what
the credit in effect will be once the period's estimated charges are paid
(``CreditHeld.after``, the rule the alerts and the entitlement check use: credit is
consumed when the period is invoiced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from invoicing.credits import CreditBook, credit_held
from invoicing.customers import Customer
from invoicing.periods import Period, month_period
from invoicing.usage import customer_usage
from rating import RateCard, rate_plan
from rating.money import round_money
from schemas.errors import MeterlineError
from schemas.metering.definitions import MeterSet
from schemas.storage.usage import SubjectUsage
from schemas.timeutil import format_ms, to_ms

__all__ = [
    "CustomerEstimate",
    "credit_json",
    "current_period",
    "estimate",
    "period_json",
    "with_credit",
]


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


def with_credit(
    estimates: Sequence[CustomerEstimate], book: CreditBook, at: datetime
) -> list[dict[str, Any]]:
    """Each estimate's JSON with its customer's prepaid credit as of ``at``
    (:func:`credit_json`) under ``credit``.  ``book`` holds the ledger of every listed
    customer (one read); it is split per customer first, so each customer's balance is
    computed from its own entries only (linear in the ledger, not customers × ledger).
    A customer with several subscriptions shows the same credit on each of them."""
    books = book.by_customer()
    mine: dict[str, list[CustomerEstimate]] = {}
    for one in estimates:
        mine.setdefault(one.customer.id, []).append(one)
    credit = {
        customer_id: credit_json(customer_id, books.get(customer_id, CreditBook()), group, at)
        for customer_id, group in mine.items()
    }
    return [{**one.to_json(), "credit": credit[one.customer.id]} for one in estimates]


def credit_json(
    customer_id: str, book: CreditBook, estimates: Sequence[CustomerEstimate], at: datetime
) -> list[dict[str, str | None]]:
    """The customer's credit per currency of its grants (none: ``[]``), money as decimal
    strings in the currency's minor unit, as the estimates beside it:

    * ``remaining``: what ``GET /customers/{id}/balance`` answers as of ``at`` (every grant
      not voided or expired, scheduled ones included).
    * ``afterEstimate``: the credit in effect at ``at`` less this period's estimated
      charges in that currency, over all ``estimates`` of the customer
      (``CreditHeld.after``); negative when the charges exceed it (the rest will be paid).
      ``None`` when no grant is in effect, or when an estimate in that currency could not
      be priced (there is nothing honest to subtract)."""
    states = book.states()
    remaining: dict[str, Decimal] = {}
    for grant in book.of_customer(customer_id):
        left = states[grant.grant_id].remaining(at)
        remaining[grant.currency] = remaining.get(grant.currency, Decimal(0)) + left
    out: list[dict[str, str | None]] = []
    for currency, left in sorted(remaining.items()):
        held = credit_held(book, customer_id, currency, at)
        spend = _spend(estimates, currency)
        after = None if held is None or spend is None else _money(held.after(spend), currency)
        out.append(
            {"currency": currency, "remaining": _money(left, currency), "afterEstimate": after}
        )
    return out


def _spend(estimates: Sequence[CustomerEstimate], currency: str) -> Decimal | None:
    """The estimated charges so far of the subscriptions billed in ``currency``; ``None``
    when one of them could not be priced."""
    total = Decimal(0)
    for one in estimates:
        if one.customer.currency != currency:
            continue
        if one.total is None:
            return None
        total += one.total
    return total


def _money(amount: Decimal, currency: str) -> str:
    return format(round_money(amount, currency), "f")
