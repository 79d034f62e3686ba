"""The entitlement check over HTTP (pure): ``GET /api/v1/customers/{customerId}/
entitlements/{feature}?quantity=N``.

"May this customer use this feature now (N more of it)?", asked before serving a
request.  The decision is ``invoicing.entitlements.decide``; this module reads the
query, finds the feature (404 naming the known ones) and shapes the answer.  The
handler (``api.routes``) reads the period's usage and the credit ledger.

The answer's ``balance`` is the prepaid credit in effect in the subscription's currency
less the period's charges so far (``invoicing.credits.CreditHeld.after``, the rule the
credit thresholds use: credit is consumed when the period is invoiced), ``null`` when
the customer holds no credit in effect in that currency.  Quantities and money are exact
decimal strings, times UTC to the millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from api.estimates import period_json
from api.problems import HttpProblem, invalid
from api.query import decimal_text
from invoicing.credits import CreditBook, CreditHeld, credit_held
from invoicing.customers import Customer
from invoicing.entitlements import Decision, Feature, FeatureKind, FeatureSet, Reason, decide
from invoicing.periods import Period
from invoicing.usage import customer_usage
from rating import RateCard, Usage, rate_plan
from rating.money import round_money
from rating.validation import choose_fix, digit_problem
from schemas.errors import InvalidInput, Problem
from schemas.metering.definitions import MeterSet
from schemas.storage.usage import SubjectUsage
from schemas.timeutil import format_ms, to_ms

__all__ = [
    "Balance",
    "Entitlement",
    "entitlement",
    "feature_of",
    "merged_usage",
    "parse_quantity",
]

_WHAT = "entitlement check"
_PLAIN = re.compile(r"[0-9]*\.?[0-9]+")  # what the OpenAPI document's pattern allows

_DETAILS = {
    Reason.NO_CURRENT_PERIOD: "the customer has no subscription whose billing period holds now",
    Reason.NO_PLAN_ACCESS: "plan {plan!r} does not include feature {feature!r}",
    Reason.LIMIT_REACHED: "{usage} of the {limit} this period allows are used",
}


def feature_of(features: FeatureSet, key: str) -> Feature:
    """The feature called ``key``; 404 naming the closest and the known ones."""
    feature = features.by_key.get(key)
    if feature is None:
        fix = (
            choose_fix(key, features.by_key)
            if features.by_key
            else "this service has no features file: set METERLINE_FEATURES_FILE"
        )
        raise HttpProblem(404, "Not found", f"no feature {key!r}; {fix}")
    return feature


def parse_quantity(text: str | None, feature: Feature) -> Decimal | None:
    """``?quantity=`` as an exact decimal above 0, written plainly (``1500``, ``0.25``;
    ``None`` when absent); 400 naming the field and the fix: not such a number, 0,
    beyond the digit bounds, or asked of a boolean feature (it has nothing to count)."""
    if text is None:
        return None
    if feature.kind is FeatureKind.BOOLEAN:
        raise invalid(
            InvalidInput.single(
                _WHAT,
                "quantity",
                f"feature {feature.key!r} is on or off per plan: it has no quantity",
                "leave quantity out",
            )
        )
    plain = _PLAIN.fullmatch(text.strip())
    quantity = Decimal(plain.group()) if plain else Decimal(0)
    if quantity <= 0:
        raise invalid(
            InvalidInput.single(
                _WHAT,
                "quantity",
                f"{text!r} is not a quantity above 0",
                "ask for a decimal number above 0, e.g. quantity=1500, or leave it out",
            )
        )
    problem = digit_problem(quantity)
    if problem is not None:
        raise invalid(InvalidInput.single(_WHAT, "quantity", *problem))
    return quantity


@dataclass(frozen=True, slots=True)
class Balance:
    """The prepaid credit in effect in ``currency``, the period's charges so far, and
    what will remain of the credit once they are paid."""

    currency: str
    held: CreditHeld
    spend: Decimal

    def to_json(self) -> dict[str, str]:
        money = self.currency
        return {
            "currency": money,
            "credit_granted": str(round_money(self.held.granted, money)),
            "credit_remaining": str(round_money(self.held.remaining, money)),
            "spend_so_far": str(round_money(self.spend, money)),
            "remaining": str(round_money(self.held.after(self.spend), money)),
        }


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The answer for one customer and feature (``subscription`` ``None``: no period
    holds now; ``usage`` ``None`` for a boolean feature)."""

    feature: Feature
    customer_id: str
    subscription: Customer | None
    period: Period | None
    as_of: datetime
    decision: Decision
    usage: Decimal | None = None
    quantity: Decimal | None = None
    balance: Balance | None = None

    def detail(self) -> str | None:
        reason = self.decision.reason
        if reason is None:
            return None
        limit = self.decision.limit
        asked = "" if self.quantity is None else f" (asked for {decimal_text(self.quantity)} more)"
        return _DETAILS[reason].format(
            plan=self.subscription.plan if self.subscription else None,
            feature=self.feature.key,
            usage=decimal_text(self.usage or Decimal(0)),
            limit=decimal_text(limit) if limit is not None else "",
        ) + (asked if reason is Reason.LIMIT_REACHED else "")

    def to_json(self) -> dict[str, Any]:
        decision, entry = self.decision, self.subscription
        return {
            "feature": self.feature.key,
            "kind": self.feature.kind.value,
            "customer": self.customer_id,
            "subscription": entry.subscription if entry else None,
            "plan": entry.plan if entry else None,
            "has_access": decision.has_access,
            "reason": decision.reason.value if decision.reason else None,
            "detail": self.detail(),
            "period": period_json(self.period) if self.period else None,
            "as_of": format_ms(to_ms(self.as_of)),
            "meter": self.feature.meter,
            "usage": _text(self.usage),
            "quantity": _text(self.quantity),
            "limit": _text(decision.limit),
            "unlimited": decision.unlimited,
            "remaining": _text(decision.remaining),
            "balance": self.balance.to_json() if self.balance else None,
        }


def _text(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def entitlement(
    feature: Feature,
    subscription: tuple[int, Customer, Period],
    stored: SubjectUsage,
    book: CreditBook,
    pricing: tuple[RateCard, MeterSet],
    now: datetime,
    quantity: Decimal | None = None,
) -> Entitlement:
    """The answer for a subscription whose period holds ``now``, from what was read for
    it: ``stored``, its subjects' usage of the feature's meter and of every meter its
    plan prices over the period; ``book``, its customer's credit ledger.

    Usage is the customer's subjects added up by billing's rule; the spend so far is the
    plan priced on all of it (``rating.rate_plan``, as the credit thresholds price it),
    needed only when the customer holds credit.  422 when either cannot be computed as
    billing would (a MAX meter over several subjects, a plan the card cannot price)."""
    index, customer, period = subscription
    card, meters = pricing
    usage = None
    if feature.meter is not None:
        meter = feature.meter
        own = {s: {meter: v[meter]} for s, v in stored.items() if meter in v}
        found = _usage(customer, index, meters, own).get(meter)
        usage = found.quantity if found is not None else Decimal(0)
    decision = decide(feature, customer.plan, usage, quantity)
    held = credit_held(book, customer.id, customer.currency, now)
    balance = None
    if held is not None:
        quantities = _usage(customer, index, meters, stored)
        try:
            rated = rate_plan(card, customer.plan, customer.currency, quantities)
        except InvalidInput as exc:
            raise _unanswerable(customer, exc.problems) from None
        balance = Balance(customer.currency, held, rated.total)
    return Entitlement(
        feature, customer.id, customer, period, now, decision, usage, quantity, balance
    )


def _usage(
    customer: Customer, index: int, meters: MeterSet, stored: SubjectUsage
) -> dict[str, Usage]:
    quantities, problems = customer_usage(customer, index, meters, stored)
    if problems:
        raise _unanswerable(customer, problems)
    return quantities


def _unanswerable(customer: Customer, problems: Iterable[Problem]) -> HttpProblem:
    found = tuple(dict.fromkeys(problems))
    return HttpProblem(
        422,
        "Cannot check this entitlement",
        f"customer {customer.id!r} (plan {customer.plan!r}, {customer.currency}): its usage"
        " or spend so far cannot be computed as billing would",
        found,
    )


def merged_usage(first: SubjectUsage, more: SubjectUsage) -> dict[str, dict[str, Decimal]]:
    """Two reads of the same subjects and period (other meters) as one."""
    out = {subject: dict(values) for subject, values in first.items()}
    for subject, values in more.items():
        out.setdefault(subject, {}).update(values)
    return out
