"""Re-pricing one invoiced period and adding the rows up (pure: no storage, no clock).

:func:`reprice` prices a period's usage — the usage its invoice billed, read by the
caller as of the invoice's cutoff — with the draft card's plan of the invoice's name and
currency, and sets it against the invoice's usage lines, meter by meter.  Charges
without a meter (flat fees, minimum true-ups) are compared under ``(flat)`` and
``(minimum)``: the stored lines do not keep charge ids, so two flat fees of one plan are
one row.  :func:`summarise` adds the rows up per customer, per meter and overall, one
currency at a time (amounts in different currencies are never added).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

from invoicing.backtest.model import Backtest, Invoiced, Row, Status, Total
from rating import RateCard, Usage, rate_plan, round_money
from schemas.errors import InvalidInput, Problem

__all__ = ["meter_key", "reprice", "summarise"]


def meter_key(meter: str | None, model: str) -> str:
    """What a line is compared under: its meter, else its model in parentheses."""
    return meter or f"({model})"


def _order(key: str) -> tuple[bool, str]:
    """Meters first (alphabetical), then the charges without one."""
    return key.startswith("("), key


def reprice(
    card: RateCard,
    invoiced: Invoiced,
    period: str,
    usage: Mapping[str, Usage],
    problems: Sequence[Problem] = (),
) -> list[Row]:
    """The period's rows: each meter key of the invoice or of the draft's price list,
    invoiced against re-priced.  ``problems`` are the customer's usage problems (e.g. a
    MAX meter over several subjects); they, a missing plan or currency, and usage the
    draft refuses give rows with a status instead of an exception, so one bad plan does
    not stop a backtest of every customer."""
    plan = card.plans.get(invoiced.plan)
    if plan is None:
        return _unpriced(invoiced, period, Status.NO_PLAN, f"no plan {invoiced.plan!r}")
    if invoiced.currency not in plan.prices:
        note = f"plan {invoiced.plan!r} has no {invoiced.currency} prices"
        return _unpriced(invoiced, period, Status.NO_CURRENCY, note)
    if problems:
        return _unpriced(invoiced, period, Status.NOT_PRICED, "; ".join(map(str, problems)))
    try:
        rated = rate_plan(card, invoiced.plan, invoiced.currency, usage)
    except InvalidInput as exc:  # e.g. a percentage charge: stored usage has no amounts
        return _unpriced(invoiced, period, Status.NOT_PRICED, "; ".join(map(str, exc.problems)))
    repriced: dict[str, Decimal] = {}
    for line in rated.lines:
        key = meter_key(line.meter, line.model)
        repriced[key] = repriced.get(key, Decimal(0)) + line.amount
    return _rows(invoiced, period, _ordered(invoiced.amounts, repriced), repriced, Status.OK, "")


def _unpriced(invoiced: Invoiced, period: str, status: Status, note: str) -> list[Row]:
    return _rows(invoiced, period, _ordered(invoiced.amounts, {}), None, status, note)


_ORDERS: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
"""Sorted meter keys per (invoice's keys, draft's keys): there are a handful of such
combinations, and 100k periods."""


def _ordered(invoiced: Mapping[str, Decimal], repriced: Mapping[str, Decimal]) -> tuple[str, ...]:
    """Every key of either side, meters first then the charges without one, each
    alphabetical; sorted once per combination (``_ORDERS``), not once per period."""
    known = (tuple(invoiced), tuple(repriced))
    keys = _ORDERS.get(known)
    if keys is None:
        keys = _ORDERS[known] = tuple(sorted({*invoiced, *repriced}, key=_order))
    return keys


def _rows(
    invoiced: Invoiced,
    period: str,
    keys: Sequence[str],
    repriced: Mapping[str, Decimal] | None,
    status: Status,
    note: str,
) -> list[Row]:
    """One row per key, built positionally (the hot path: one row per customer and
    meter); ``repriced`` ``None``: not re-priced."""
    currency, amounts = invoiced.currency, invoiced.amounts
    zero = round_money(Decimal(0), currency)
    head = (
        invoiced.customer_id,
        invoiced.subscription_id,
        period,
        invoiced.invoice_id,
        invoiced.plan,
        currency,
    )
    return [
        Row(
            *head,
            key,
            amounts.get(key, zero),
            None if repriced is None else repriced.get(key, zero),
            status,
            note,
        )
        for key in keys
    ]


class _Sum:
    """A running total, updated in place once per row (no method call on that path)."""

    __slots__ = ("invoiced", "repriced", "rows", "skipped", "skipped_invoiced")

    def __init__(self) -> None:
        self.invoiced = self.repriced = self.skipped_invoiced = Decimal(0)
        self.rows = self.skipped = 0

    def merge(self, other: _Sum) -> None:
        self.invoiced += other.invoiced
        self.repriced += other.repriced
        self.skipped_invoiced += other.skipped_invoiced
        self.rows += other.rows
        self.skipped += other.skipped

    def total(self, customer_id: str, meter: str, currency: str) -> Total:
        return Total(
            customer_id=customer_id,
            meter=meter,
            currency=currency,
            invoiced=round_money(self.invoiced, currency),
            repriced=None if self.skipped == self.rows else round_money(self.repriced, currency),
            rows=self.rows,
            skipped=self.skipped,
            skipped_invoiced=round_money(self.skipped_invoiced, currency),
        )


def summarise(
    rate_card: str,
    months: Sequence[str],
    rows: Iterable[Row],
    invoices: int,
    not_invoiced: int,
) -> Backtest:
    """The backtest of ``rows``: totals per (customer, currency), per (meter, currency)
    and per currency, in first-seen customer order and sorted meter/currency order."""
    kept = list(rows)
    customers: dict[tuple[str, str], _Sum] = {}
    meters: dict[tuple[str, str], _Sum] = {}
    customer, holder = _Sum(), ("", "")
    for row in kept:
        # a period's rows come together: look its customer up once, not once per row
        if row.customer_id != holder[0] or row.currency != holder[1]:
            holder = (row.customer_id, row.currency)
            customer = customers.get(holder) or customers.setdefault(holder, _Sum())
        key = (row.currency, row.meter)
        meter = meters.get(key) or meters.setdefault(key, _Sum())
        invoiced, repriced = row.invoiced, row.repriced
        for running in (customer, meter):
            running.rows += 1
            if repriced is None:
                running.skipped += 1
                running.skipped_invoiced += invoiced
            else:
                running.invoiced += invoiced
                running.repriced += repriced
    overall: dict[tuple[str, str], _Sum] = {}
    for (currency, _), running in meters.items():  # a currency's total is its meters'
        overall.setdefault((currency, ""), _Sum()).merge(running)
    return Backtest(
        rate_card=rate_card,
        months=tuple(months),
        rows=tuple(kept),
        customers=tuple(s.total(c, "", cur) for (c, cur), s in customers.items()),
        meters=tuple(
            meters[key].total("", key[1], key[0])
            for key in sorted(meters, key=lambda k: (k[0], *_order(k[1])))
        ),
        overall=tuple(overall[key].total("", "", key[0]) for key in sorted(overall)),
        invoices=invoices,
        not_invoiced=not_invoiced,
    )
