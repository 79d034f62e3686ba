"""Flat fees on an invoice (pure): which shares of which periods' fees it bills.

A flat fee is an amount per billing period.  A period can be cut short — the
subscription starts or ends inside it (a plan change ends one subscription and starts
the next), or a trial covers its start — and the plan's ``proration`` says how much of
the fee the rest is worth:

* ``none``: the whole fee for any part;
* ``day``: ``days of the part / days of the full period``, a day counting where its local
  midnight falls (so each day of a change belongs to exactly one plan);
* ``second``: ``seconds of the part / seconds of the full period``.

The share is rounded once to :data:`SHARE_PLACES` decimal places (half up), and the line
then rounds ``share × fee`` once to the currency, as every line does.  The full period is
the cadence's grid period holding the part (``Schedule.natural``).

When a fee is billed (the charge's ``billed``):

* ``in_arrears`` (default): on the invoice that closes the period, for the part billed;
* ``in_advance``: on the invoice that closes the period *before*, for the period ahead as
  the subscription stands then; a subscription's first period is billed on its own
  invoice (there is none before it).  If the period turns out shorter than was billed
  ahead (an end or plan change added later), the invoice closing it carries the
  difference as a correction (negative: a credit); what was billed ahead is read from the
  earlier invoice (``advances``), so reruns and voids stay exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from invoicing.customers import Customer
from invoicing.document import InvoiceDocument, UsageLine
from invoicing.periods import Period, local_midnight
from rating import Charge
from rating.models import FeeTerm, FlatFee
from rating.money import format_decimal
from schemas.timeutil import format_ms, parse_instant

__all__ = [
    "SHARE_PLACES",
    "AdvanceReader",
    "Ahead",
    "Fees",
    "as_billed",
    "billable",
    "billed_ahead",
    "billed_fees",
    "fee_terms",
    "share",
]

SHARE_PLACES = 10
_QUANTUM = Decimal(1).scaleb(-SHARE_PLACES)

AdvanceReader = Callable[[int], Mapping[str, Decimal] | None]
"""``advanced(period_start_s)`` -> ``{charge id: share}`` billed in advance for the period
starting there by the latest live invoice of the period before it; ``None`` when that
period has no live invoice (nothing was billed ahead)."""


@dataclass(frozen=True, slots=True)
class Ahead:
    """A share of a fee billed in advance: recorded on the invoice (``billed_ahead``) so
    that the invoice closing that period can correct it."""

    charge_id: str
    period: Period
    share: Decimal

    def to_dict(self) -> dict[str, str]:
        return {
            "charge_id": self.charge_id,
            "period_start": format_ms(self.period.start_s * 1000),
            "period_end": format_ms(self.period.end_s * 1000),
            "share": format_decimal(self.share),
        }


def billed_ahead(document: InvoiceDocument) -> list[Ahead]:
    """What an issued invoice billed in advance, read back from its document."""
    return [
        Ahead(r.charge_id, _span(r.period_start, r.period_end), Decimal(r.share))
        for r in document.billed_ahead
    ]


def billed_fees(document: InvoiceDocument) -> dict[str, Decimal]:
    """The share of each flat fee an issued invoice billed (its flat lines' quantities)."""
    return {
        line.charge_id: Decimal(line.quantity)
        for line in document.lines
        if isinstance(line, UsageLine) and line.model == FlatFee.kind
    }


def as_billed(
    charges: Sequence[Charge], billed: Mapping[str, Decimal]
) -> dict[str, tuple[FeeTerm, ...]]:
    """Fee terms pricing each flat fee at the share an invoice billed (``billed_fees``);
    a fee it did not bill gives no line."""
    return {
        charge.id: (FeeTerm("as billed", billed[charge.id]),) if charge.id in billed else ()
        for charge in charges
        if isinstance(charge.model, FlatFee)
    }


def _span(start: str, end: str) -> Period:
    first, last = parse_instant(start), parse_instant(end)
    assert first is not None, start  # written by Ahead.to_dict: always valid
    assert last is not None, end
    return Period(
        datetime.fromtimestamp(first / 1000, UTC), datetime.fromtimestamp(last / 1000, UTC)
    )


@dataclass(frozen=True, slots=True)
class Fees:
    """What an invoice bills of its flat fees: ``terms`` per charge id (for rating),
    ``ahead`` the shares of later periods among them."""

    terms: dict[str, tuple[FeeTerm, ...]]
    ahead: tuple[Ahead, ...] = ()


def billable(customer: Customer, period: Period) -> Period | None:
    """The part of ``period`` billed: after the trial; ``None`` if the trial covers it."""
    start = customer.billable_from(period.start)
    return None if start >= period.end else Period(start, period.end, period.timezone)


def share(part: Period | None, whole: Period, mode: str) -> tuple[Decimal, str]:
    """The share of ``whole``'s fee that ``part`` is worth, and how it was counted."""
    if part is None:
        return Decimal(0), "nothing billable"
    if (part.start, part.end) == (whole.start, whole.end) or mode == "none":
        return Decimal(1), ""
    if mode == "day":
        used, full = _midnights(part), _midnights(whole)
        unit = "days"
    else:
        used = int((part.end - part.start).total_seconds())
        full = int((whole.end - whole.start).total_seconds())
        unit = "seconds"
    value = (Decimal(used) / Decimal(full)).quantize(_QUANTUM, rounding=ROUND_HALF_UP)
    return value, f"{used} of {full} {unit}"


def fee_terms(
    customer: Customer,
    proration: str,
    charges: Sequence[Charge],
    period: Period,
    advanced: AdvanceReader,
    invoiced: Callable[[int], bool] = lambda _: False,
) -> Fees:
    """The flat fees the invoice closing ``period`` bills.  ``invoiced(start_s)``: whether
    the period starting there already has a live invoice (then its fee is not billed in
    advance again, whatever order periods are billed in)."""
    schedule = customer.schedule
    terms: dict[str, tuple[FeeTerm, ...]] = {}
    ahead: list[Ahead] = []
    for charge in charges:
        if not isinstance(charge.model, FlatFee):
            continue
        own, own_how = share(billable(customer, period), schedule.natural(period), proration)
        if charge.model.billed != "in_advance":
            terms[charge.id] = tuple(
                t for t in (FeeTerm(_label("for", period, own_how), own),) if t.share
            )
            continue
        out: list[FeeTerm] = []
        before = None if period.start == schedule.start_at else advanced(period.start_s)
        if before is None:  # the first period, or none before it was invoiced
            note = "its first period" if period.start == schedule.start_at else "not billed ahead"
            out.append(FeeTerm(_label("for", period, own_how, note), own))
        elif (billed := before.get(charge.id, Decimal(0))) != own:
            label = (
                f"correction for {period.label}: {format_decimal(own)} due,"
                f" {format_decimal(billed)} billed in advance"
            )
            out.append(FeeTerm(label, own - billed))
        following = schedule.period_containing(
            period.end.astimezone(ZoneInfo(period.timezone)).date()
        )
        if (
            following is not None
            and following.start == period.end
            and not invoiced(following.start_s)
        ):
            nxt, nxt_how = share(
                billable(customer, following), schedule.natural(following), proration
            )
            out.append(FeeTerm(_label("in advance for", following, nxt_how), nxt))
            ahead.append(Ahead(charge.id, following, nxt))
        terms[charge.id] = tuple(t for t in out if t.share)
    return Fees(terms, tuple(ahead))


def _label(word: str, period: Period, how: str, note: str = "") -> str:
    extra = ", ".join(part for part in (note, how) if part)
    return f"flat fee {word} {period.label}" + (f" ({extra})" if extra else "")


def _midnights(span: Period) -> int:
    """Local midnights ``m`` with ``start <= m < end``: the days ``span`` holds, each day
    counted where it begins."""
    zone = ZoneInfo(span.timezone)
    day = span.start.astimezone(zone).date()
    count = 0
    while (midnight := local_midnight(day, span.timezone)) < span.end:
        count += midnight >= span.start
        day += timedelta(days=1)
    return count
