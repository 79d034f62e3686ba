"""A customer's usage, the one rule for billing and estimates (pure).

Usage per subject comes from the storage layer's one reader
(:mod:`schemas.storage.usage`); here a customer's subjects are added up.  Additive meters
(SUM, COUNT) add across subjects; a MAX or UNIQUE_COUNT meter over several subjects has
no sum that means anything (the maximum of maxima is not the customer's maximum, and
unique values may repeat across subjects), so it is refused with the field and the fix —
on an estimate as on an invoice, so that a customer never sees an estimate billing would
not produce.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Context, Decimal

from invoicing.customers import Customer
from rating import RateCard, Usage
from schemas.errors import Problem
from schemas.metering.definitions import Aggregation, MeterSet

__all__ = ["ADDITIVE", "customer_usage", "priced_meters"]

ADDITIVE = {Aggregation.SUM, Aggregation.COUNT}

_SUM = Context(prec=80)  # 38-digit values add without rounding
_ZERO = Decimal(0)


def priced_meters(card: RateCard) -> set[str]:
    """Every meter some charge of the card prices."""
    return {
        charge.meter
        for plan in card.plans.values()
        for charges in plan.prices.values()
        for charge in charges
        if charge.meter is not None
    }


def customer_usage(
    customer: Customer,
    index: int,
    meters: MeterSet,
    usage: Mapping[str, Mapping[str, Decimal]],
) -> tuple[dict[str, Usage], list[Problem]]:
    """The customer's usage per meter: its subjects' usage added up (additive meters
    only; ``index`` is the customer's position in the customers file, for the problem's
    field)."""
    subjects = customer.subjects
    if len(subjects) == 1:  # most customers: nothing is summed across subjects
        values = usage.get(subjects[0], {})
        for slug in values:
            if slug not in meters.by_slug:
                meters.get(slug)  # raises, naming the meter and the known ones
        return {slug: Usage(quantity=_SUM.add(_ZERO, v)) for slug, v in values.items()}, []
    totals: dict[str, Decimal] = {}
    problems: list[Problem] = []
    for subject in subjects:
        for slug, value in usage.get(subject, {}).items():
            kind = meters.get(slug).aggregation
            if kind not in ADDITIVE:
                problems.append(
                    Problem(
                        f"customers[{index}].subjects",
                        f"meter {slug!r} ({kind.value}) cannot be summed across subjects",
                        "bill this customer on one subject",
                    )
                )
            totals[slug] = _SUM.add(totals.get(slug, _ZERO), value)
    return {slug: Usage(quantity=q) for slug, q in totals.items()}, problems
