"""The backtest's values (pure): what was invoiced, one compared row, totals, the result.

Amounts are ``Decimal`` in the invoice's currency, with its minor units (``12.30`` USD,
``1250`` JPY).  A row's ``repriced`` is ``None`` when the draft card could not price the
period (its ``status`` says why); such rows are counted apart in the totals, never
added as zero, so a missing plan cannot pass for a price cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from typing import NamedTuple

from invoicing.customers import Customer
from invoicing.periods import Period

__all__ = ["Backtest", "Invoiced", "Row", "Selected", "Status", "Total", "change_pct"]

_HUNDREDTH = Decimal("0.01")
_NO_CHANGE = Decimal("0.00")
_WIDE = Context(prec=60)
"""Wide enough that a change of two 38-digit amounts is exact before it is rounded."""


class Status(StrEnum):
    """Whether a row was re-priced, and if not, why."""

    OK = "ok"
    NO_PLAN = "no-plan"
    """The draft card has no plan of the invoice's name."""
    NO_CURRENCY = "no-currency"
    """The draft card's plan has no price list in the invoice's currency."""
    NOT_PRICED = "not-priced"
    """The draft card refused the period's usage (the note has its problems)."""


def change_pct(invoiced: Decimal, repriced: Decimal) -> Decimal | None:
    """``(repriced − invoiced) / invoiced`` in percent, rounded half-up to 0.01; ``None``
    when nothing was invoiced but something would be (no finite change)."""
    if repriced == invoiced:  # the common case in a draft that changes a few prices
        return _NO_CHANGE
    if invoiced == 0:
        return None
    ratio = _WIDE.divide(_WIDE.multiply(_WIDE.subtract(repriced, invoiced), 100), invoiced)
    return ratio.quantize(_HUNDREDTH, rounding=ROUND_HALF_UP, context=_WIDE)


class Invoiced(NamedTuple):
    """One issued, non-void invoice of a subscription period, as stored: its period,
    ingestion cutoff, plan and currency, and the amounts of its usage lines per meter key
    (``meter_key``: the meter, or ``(flat)``/``(minimum)`` for charges without one), in
    the currency's minor units."""

    invoice_id: str
    customer_id: str
    subscription_id: str
    revision: int
    period_start_s: int
    period_end_s: int
    cutoff_s: int
    plan: str
    currency: str
    amounts: Mapping[str, Decimal]


class Selected(NamedTuple):
    """A subscription period the months select; ``position``: the customer's index in
    the customers file (for the path of a usage problem)."""

    position: int
    customer: Customer
    period: Period


class Row(NamedTuple):
    """One meter of one invoiced subscription period: invoiced against re-priced.

    A named tuple, not a frozen dataclass: a backtest builds one per customer and meter
    (600k at 100k customers), and a tuple costs a fifth as much to build or less."""

    customer_id: str
    subscription_id: str
    period: str
    invoice_id: str
    plan: str
    currency: str
    meter: str
    invoiced: Decimal
    repriced: Decimal | None
    status: Status
    note: str = ""

    @property
    def difference(self) -> Decimal | None:
        return None if self.repriced is None else self.repriced - self.invoiced

    @property
    def change_pct(self) -> Decimal | None:
        return None if self.repriced is None else change_pct(self.invoiced, self.repriced)


@dataclass(frozen=True, slots=True)
class Total:
    """Rows added up in one currency: per customer (``meter`` ''), per meter
    (``customer_id`` ''), or overall (both '').  ``invoiced`` and ``repriced`` cover
    the re-priced rows only (``repriced`` is ``None`` when no row was); ``skipped`` rows
    (not re-priced) invoiced ``skipped_invoiced``."""

    customer_id: str
    meter: str
    currency: str
    invoiced: Decimal
    repriced: Decimal | None
    rows: int
    skipped: int
    skipped_invoiced: Decimal

    @property
    def difference(self) -> Decimal | None:
        return None if self.repriced is None else self.repriced - self.invoiced

    @property
    def change_pct(self) -> Decimal | None:
        return None if self.repriced is None else change_pct(self.invoiced, self.repriced)


@dataclass(frozen=True, slots=True)
class Backtest:
    """A backtest's result: every row, the totals, and what was selected but not found."""

    rate_card: str
    months: tuple[str, ...]
    rows: tuple[Row, ...]
    customers: tuple[Total, ...]
    meters: tuple[Total, ...]
    overall: tuple[Total, ...]
    invoices: int
    not_invoiced: int
    """Subscription periods the months select that have no issued, non-void invoice."""
