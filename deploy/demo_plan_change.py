"""The demo's plan change: hooli moves from ``team`` to ``business`` at noon on the 15th
of last month (M-1), and both invoices show their prorated fees.

``team`` charges 49.00 USD a month in arrears, ``business`` 199.00 USD a month in
advance; both plans prorate by day (``deploy/demo/rate-card.yaml``).  The day of the
change belongs to ``team``, which held it at midnight, so with D days in M-1:

* team, 1st to the 15th at noon: 15/D of 49.00, on the invoice closing that part;
* business, the 15th at noon to the end of M-1: (D - 15)/D of 199.00 for its first
  period, plus 199.00 in advance for M, on the invoice closing its first period.

:func:`expected_fees` recomputes those amounts on its own (shares rounded to 10 places,
then each line to the cent), and :func:`plan_change_step` checks the run against them.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from invoicing.customers import Customer
from invoicing.document import InvoiceDocument, RatedLine
from invoicing.periods import Period

__all__ = ["CUSTOMER", "expected_fees", "plan_change_step", "subscriptions"]

CUSTOMER = "hooli"
FEES = {"team": Decimal("49.00"), "business": Decimal("199.00")}


def subscriptions(last: Period) -> list[Customer]:
    """hooli's two subscriptions around the change, on the 1st-of-month grid."""
    change = last.start + timedelta(days=14, hours=12)
    common = {"id": CUSTOMER, "currency": "USD", "anchor_day": 1, "subjects": [CUSTOMER]}
    return [
        Customer.model_validate(
            {**common, "subscription": "team", "plan": "team", "start": last.start.date()}
            | {"end": change}
        ),
        Customer.model_validate(
            {**common, "subscription": "business", "plan": "business", "start": change}
        ),
    ]


def expected_fees(last: Period) -> dict[str, Decimal]:
    """Subscription -> the flat-fee amount of its invoice closing in M-1, by hand."""
    days = calendar.monthrange(last.first_day.year, last.first_day.month)[1]

    def part(fee: Decimal, share: Decimal) -> Decimal:
        exact = share.quantize(Decimal("1e-10"), rounding=ROUND_HALF_UP)
        return (fee * exact).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    team = part(FEES["team"], Decimal(15) / Decimal(days))
    business = part(FEES["business"], Decimal(days - 15) / Decimal(days)) + FEES["business"]
    return {"team": team, "business": business}


def plan_change_step(
    demo: Any,
    close_month: Callable[[Any, Period], list[InvoiceDocument]],
    step: Callable[[str], None],
) -> bool:
    """Bill hooli's M-1 with the demo's close of a month, print its fee lines, check them."""
    subs = subscriptions(demo.last)
    step(
        f"Plan change: {CUSTOMER} moves from team to business at "
        f"{subs[0].end:%Y-%m-%d %H:%M} UTC; flat fees prorated by day"
    )
    documents = close_month(replace(demo, customers=subs), demo.last)
    last = demo.last
    want = expected_fees(last)
    ok = True
    for document in documents:
        for line in document.lines:
            if not isinstance(line, RatedLine):  # a credit or an adjustment: no fee components
                continue
            for component in line.components:
                print(f"    {document.subscription_id:<9} {component.label}: {component.amount}")
        fee = sum((Decimal(line.amount) for line in document.lines), Decimal(0))
        good = fee == want[document.subscription_id]
        ok &= good
        print(
            f"    {document.subscription_id:<9} fees {fee} USD, recomputed by hand"
            f" {want[document.subscription_id]}: {'ok' if good else 'MISMATCH'}"
        )
    return ok and sorted(d.subscription_id for d in documents) == ["business", "team"]
