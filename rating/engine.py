"""Rating a plan: usage in, priced lines and an exact total out.

Steps, all pure:

1. check the usage against the price list (every problem at once);
2. price each charge with its model, in card order, in the exact Decimal context;
3. price minimum commitments last, against the rounded lines they cover; a true-up
   line (only when one is due) comes after every other line;
4. round each line once (``rating.money.round_money``) and sum the rounded lines.

Invariant: ``RatedPlan.total == sum(line.amount for line in lines)`` exactly; it is
checked on construction and a mismatch raises :class:`InvariantViolated`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext

from rating.card import Charge, RateCard
from rating.lines import Line, Pricing
from rating.models import FeeTerm, FlatFee, MinimumCommitment
from rating.money import EXACT, ZERO, format_decimal, minor_units, round_money
from rating.percentage import Percentage
from rating.usage import Usage
from rating.validation import MAX_INTEGER_DIGITS, choose_fix
from schemas.errors import InvalidInput, InvariantViolated, Problem

__all__ = ["RatedPlan", "rate_plan"]

_NO_USAGE = Usage(quantity=ZERO)


@dataclass(frozen=True, slots=True)
class RatedPlan:
    """A priced period for one plan and currency.  ``total`` is the sum of the rounded lines."""

    plan: str
    currency: str
    lines: tuple[Line, ...]
    total: Decimal

    def __post_init__(self) -> None:
        with localcontext(EXACT):
            added = sum((line.amount for line in self.lines), round_money(ZERO, self.currency))
        if added != self.total:
            raise InvariantViolated(f"total {self.total} is not the sum of the lines {added}")

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form: Decimals as strings, with the rounding rule stated."""
        return {
            "plan": self.plan,
            "currency": self.currency,
            "minor_units": minor_units(self.currency),
            "rounding": "ROUND_HALF_UP, once per line",
            "lines": [line.to_dict() for line in self.lines],
            "total": format_decimal(self.total),
        }


def rate_plan(
    card: RateCard,
    plan: str,
    currency: str,
    usage: Mapping[str, Usage],
    *,
    strict: bool = False,
    fees: Mapping[str, tuple[FeeTerm, ...]] | None = None,
    minimums: bool = True,
) -> RatedPlan:
    """Price ``usage`` with ``plan``'s charges in ``currency``.

    Meters missing from ``usage`` count as zero.  Usage for meters the price list does not
    price is ignored (a customer's meters often outnumber their plan's charges) unless
    ``strict`` is true; then it is an error, since a misspelt meter would otherwise be
    billed at zero — the quote CLI is strict.  Raises :class:`InvalidInput` for an
    unknown plan or currency and for bad usage, and :class:`InvariantViolated` if exact
    arithmetic would have had to round.

    ``fees``: per flat charge id, the shares of its fee this invoice bills (invoicing's
    proration, trials and in-advance billing); a flat charge missing from it, or with no
    terms, gives no line.  Without ``fees`` every flat fee is billed once, whole.
    ``minimums=False``: no minimum commitment is compared (a period with nothing to bill,
    such as one wholly inside a trial).
    """
    charges = card.charges(plan, currency)
    _check_usage(charges, usage, strict)
    try:
        with localcontext(EXACT):
            lines = _price(charges, currency, usage, fees, minimums)
            _check_amounts(plan, lines)
            total = round_money(ZERO, currency)
            for line in lines:
                total += line.amount
            return RatedPlan(plan=plan, currency=currency, lines=lines, total=total)
    except Inexact as exc:
        raise InvariantViolated(
            f"pricing plan {plan!r} needs more than {EXACT.prec} digits; nothing was rounded"
        ) from exc


def _price(
    charges: tuple[Charge, ...],
    currency: str,
    usage: Mapping[str, Usage],
    fees: Mapping[str, tuple[FeeTerm, ...]] | None,
    minimums: bool = True,
) -> tuple[Line, ...]:
    """Usage and flat charges in card order, then minimum true-ups (also in card order)."""
    priced: dict[str, Line] = {}
    commitments: list[tuple[Charge, MinimumCommitment]] = []
    for charge in charges:
        model = charge.model
        if isinstance(model, MinimumCommitment):
            commitments.append((charge, model))
        elif isinstance(model, FlatFee):
            terms = None if fees is None else fees.get(charge.id, ())
            if terms == ():
                continue
            share = Decimal(1) if terms is None else sum((t.share for t in terms), ZERO)
            priced[charge.id] = _line(charge, currency, share, model.price(terms))
        else:
            meter_usage = usage.get(charge.meter or "", _NO_USAGE)
            priced[charge.id] = _line(
                charge, currency, meter_usage.quantity, model.price(meter_usage)
            )
    lines = list(priced.values())
    for charge, minimum in commitments if minimums else ():
        scope = set(minimum.applies_to)
        charged = sum(
            (line.amount for line in priced.values() if not scope or line.charge_id in scope),
            round_money(ZERO, currency),
        )
        true_up = minimum.true_up(charged)
        if true_up is not None:
            lines.append(_line(charge, currency, charged, true_up))
    return tuple(lines)


def _line(charge: Charge, currency: str, quantity: Decimal, pricing: Pricing) -> Line:
    unrounded = pricing.unrounded
    return Line(
        charge_id=charge.id,
        name=charge.name,
        meter=charge.meter,
        model=charge.kind,
        currency=currency,
        quantity=quantity,
        tiers=pricing.tiers,
        components=pricing.components,
        unrounded_amount=unrounded,
        amount=round_money(unrounded, currency),
    )


_LEDGER_LIMIT = Decimal(10) ** MAX_INTEGER_DIGITS


def _check_amounts(plan: str, lines: tuple[Line, ...]) -> None:
    """Every line and the total must fit the ledger (``MAX_INTEGER_DIGITS`` before the
    point): a bill the ledger cannot store is refused here, naming the charge."""
    limit = _LEDGER_LIMIT
    problems = [
        Problem(
            f"charge {line.charge_id}",
            f"priced at {format_decimal(line.amount)} {line.currency}, more than the"
            f" {MAX_INTEGER_DIGITS} digits before the point an invoice holds",
            fix=f"check the usage of meter {line.meter!r} and this charge's prices in plan {plan!r}"
            if line.meter
            else f"check this charge's amount in plan {plan!r}",
        )
        for line in lines
        if abs(line.amount) >= limit
    ]
    if not problems and abs(sum((line.amount for line in lines), ZERO)) >= limit:
        problems.append(
            Problem(
                "total",
                f"the lines add up to more than the {MAX_INTEGER_DIGITS} digits before the"
                " point an invoice holds",
                fix=f"check the usage and the prices of plan {plan!r}",
            )
        )
    if problems:
        raise InvalidInput("usage", problems)


def _check_usage(charges: tuple[Charge, ...], usage: Mapping[str, Usage], strict: bool) -> None:
    problems: list[Problem] = []
    priced = {charge.meter for charge in charges if charge.meter is not None}
    for meter, meter_usage in usage.items():
        if type(meter_usage) is Usage and (not strict or meter in priced):
            continue  # the common case: nothing to say about this meter
        path = f"usage.{meter}"
        if not isinstance(meter_usage, Usage):
            problems.append(
                Problem(
                    path,
                    f"expected Usage, got {type(meter_usage).__name__}",
                    fix="wrap it: Usage(quantity=...)",
                )
            )
        elif strict and meter not in priced:
            problems.append(
                Problem(
                    path,
                    f"this price list does not price meter {meter!r}",
                    fix=choose_fix(meter, priced) + "; or remove it",
                )
            )
    for charge in charges:
        given = usage.get(charge.meter or "")
        if isinstance(charge.model, Percentage) and isinstance(given, Usage):
            problems.extend(_event_problems(charge, given))
    if problems:
        raise InvalidInput("usage", problems)


def _event_problems(charge: Charge, usage: Usage) -> list[Problem]:
    path = f"usage.{charge.meter}"
    if usage.event_amounts is None:
        if usage.quantity == 0:
            return []
        return [
            Problem(
                f"{path}.events",
                f"percentage charge {charge.id!r} needs the amount of each event",
                fix=f"give a usage file with {charge.meter}: {{events: [10.00, 25.50]}},"
                " or Usage(event_amounts=...) in Python",
            )
        ]
    if Decimal(len(usage.event_amounts)) != usage.quantity:
        return [
            Problem(
                f"{path}.quantity",
                f"quantity {format_decimal(usage.quantity)} does not match the"
                f" {len(usage.event_amounts)} event amounts",
                fix="set quantity to the number of events, or leave it out",
            )
        ]
    return []
