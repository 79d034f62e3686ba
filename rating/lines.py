"""Priced lines and their breakdown: what a customer needs to redo the arithmetic.

A pricing model returns a :class:`Pricing` — the *unrounded* arithmetic of one charge —
made of tier rows (:class:`TierBreakdown`) and other terms (:class:`Component`).  The
engine turns it into a :class:`Line` by rounding once, in the line's currency.

Invariants (checked by the tests, relied on by invoicing):

* ``tier.amount == tier.quantity * tier.unit_price + tier.flat_fee`` for every tier row;
* ``component.amount == component.quantity * component.unit_price`` for every component;
* ``line.unrounded_amount`` is the exact sum of the tier and component amounts;
* ``line.amount == round_money(line.unrounded_amount, line.currency)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from rating.money import EXACT, ZERO, format_decimal

__all__ = ["Component", "Line", "Pricing", "TierBreakdown"]


@dataclass(frozen=True, slots=True)
class TierBreakdown:
    """The units one tier priced: ``quantity × unit_price + flat_fee = amount``.

    The tier covers quantities in ``(lower, up_to]``; ``up_to`` is ``None`` for the
    unbounded last tier.  ``tier`` counts from 1, as the rate card's tiers are read.
    """

    tier: int
    lower: Decimal
    up_to: Decimal | None
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal

    @property
    def bounds(self) -> str:
        """The tier's range as written in the docs: ``(1000, 5000]`` or ``(5000, ∞)``."""
        upper = "∞)" if self.up_to is None else f"{format_decimal(self.up_to)}]"
        return f"({format_decimal(self.lower)}, {upper}"

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; Decimals as strings, an unbounded ``up_to`` as ``null``."""
        return {
            "tier": self.tier,
            "from": format_decimal(self.lower),
            "up_to": None if self.up_to is None else format_decimal(self.up_to),
            "quantity": format_decimal(self.quantity),
            "unit_price": format_decimal(self.unit_price),
            "flat_fee": format_decimal(self.flat_fee),
            "amount": format_decimal(self.amount),
        }


@dataclass(frozen=True, slots=True)
class Component:
    """One non-tier term of a line: ``quantity × unit_price = amount``.

    ``flat`` marks a fixed fee (a base fee, a flat fee per period); its quantity is 1, or
    the share of the period it covers when prorated (negative: a credit).
    """

    label: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal
    flat: bool = False

    @classmethod
    def of(cls, label: str, quantity: Decimal, unit_price: Decimal) -> Component:
        """A per-unit term; the amount is computed here so it cannot disagree."""
        return cls(label, quantity, unit_price, quantity * unit_price)

    @classmethod
    def fixed(cls, label: str, fee: Decimal, share: Decimal = Decimal(1)) -> Component:
        """A fixed fee charged once in the period, or ``share`` of it (a prorated fee,
        or a negative share: a credit)."""
        return cls(label, share, fee, share * fee, flat=True)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form; Decimals as strings."""
        return {
            "label": self.label,
            "quantity": format_decimal(self.quantity),
            "unit_price": format_decimal(self.unit_price),
            "amount": format_decimal(self.amount),
            "flat": self.flat,
        }


@dataclass(frozen=True, slots=True)
class Pricing:
    """What one pricing model computed for one charge, before rounding."""

    tiers: tuple[TierBreakdown, ...] = ()
    components: tuple[Component, ...] = ()

    @property
    def unrounded(self) -> Decimal:
        """The exact sum of every tier and component amount."""
        total = ZERO
        for tier in self.tiers:
            total += tier.amount
        for component in self.components:
            total += component.amount
        return total


@dataclass(frozen=True, slots=True)
class Line:
    """One priced charge on a quote or an invoice.

    ``quantity`` is the metered quantity (for percentage charges, the number of events;
    for flat fees, 1 period; for a minimum true-up, the charges it was compared with).
    ``amount`` is rounded to ``currency``; ``unrounded_amount`` is the exact value.
    """

    charge_id: str
    name: str
    meter: str | None
    model: str
    currency: str
    quantity: Decimal
    tiers: tuple[TierBreakdown, ...]
    components: tuple[Component, ...]
    unrounded_amount: Decimal
    amount: Decimal

    @property
    def flat_fee(self) -> Decimal:
        """Every fixed fee in this line: tier flat fees plus flat components."""
        total = ZERO
        with localcontext(EXACT):
            for tier in self.tiers:
                total += tier.flat_fee
            for component in self.components:
                if component.flat:
                    total += component.amount
        return total

    @property
    def description(self) -> str:
        """The line's arithmetic in one sentence, e.g.
        ``graduated: 1000 × 0 + 500.5 × 0.002 + 5.00 = 6.0010, rounded to 6.00 USD``.

        Components come first (an overage's base fee and allowance), then tiers.
        """
        terms: list[str] = []
        for component in self.components:
            if component.flat:
                terms.append(format_decimal(component.amount))
            else:
                terms.append(_product(component.quantity, component.unit_price))
        for tier in self.tiers:
            terms.append(_product(tier.quantity, tier.unit_price))
            if tier.flat_fee:
                terms.append(format_decimal(tier.flat_fee))
        arithmetic = " + ".join(terms) if terms else "0"
        return (
            f"{self.model}: {arithmetic} = {format_decimal(self.unrounded_amount)}, "
            f"rounded to {format_decimal(self.amount)} {self.currency}"
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form with every Decimal rendered as a plain string."""
        return {
            "charge_id": self.charge_id,
            "name": self.name,
            "meter": self.meter,
            "model": self.model,
            "currency": self.currency,
            "quantity": format_decimal(self.quantity),
            "tiers": [tier.to_dict() for tier in self.tiers],
            "components": [component.to_dict() for component in self.components],
            "flat_fee": format_decimal(self.flat_fee),
            "unrounded_amount": format_decimal(self.unrounded_amount),
            "amount": format_decimal(self.amount),
            "description": self.description,
        }


def _product(quantity: Decimal, unit_price: Decimal) -> str:
    return f"{format_decimal(quantity)} × {format_decimal(unit_price)}"
