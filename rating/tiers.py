"""Tiers and the two ways of walking them.

Boundary convention (the one Stripe uses): each tier has ``up_to``, an **inclusive**
upper bound; a tier starts right after the previous tier's ``up_to`` (the first starts
after 0); the last tier is unbounded (``up_to is None``).  So tier *i* covers
``(up_to[i-1], up_to[i]]``.  Validation (``rating.specs``) guarantees the bounds are
strictly increasing and only the last is unbounded, so every quantity ≥ 0 falls in
exactly one tier and quantities between tiers (gaps) cannot exist.

Fractional quantities need nothing special: with tiers ``(0, 100]`` and ``(100, 200]``
a quantity of 100.5 puts 100 units in the first and 0.5 in the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from rating.lines import TierBreakdown
from rating.money import ZERO

__all__ = ["Tier", "graduated", "volume"]


@dataclass(frozen=True, slots=True)
class Tier:
    """One price tier: ``unit_price`` per unit, plus ``flat_fee`` once it is reached."""

    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal = ZERO


def graduated(tiers: Sequence[Tier], quantity: Decimal) -> tuple[TierBreakdown, ...]:
    """Price each unit in the tier it falls in.

    A tier is *reached* when ``quantity`` is above its lower bound; a reached tier
    charges its flat fee once plus its units × unit price.  Only reached tiers are
    returned, so zero usage returns no rows.  The rows' quantities add up to
    ``quantity`` exactly.
    """
    rows: list[TierBreakdown] = []
    lower = ZERO
    for index, tier in enumerate(tiers, start=1):
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None or quantity < tier.up_to else tier.up_to
        units = upper - lower
        amount = units * tier.unit_price + tier.flat_fee
        rows.append(
            TierBreakdown(index, lower, tier.up_to, units, tier.unit_price, tier.flat_fee, amount)
        )
        if tier.up_to is None:
            break
        lower = tier.up_to
    return tuple(rows)


def volume(tiers: Sequence[Tier], quantity: Decimal) -> tuple[TierBreakdown, ...]:
    """Price every unit at the tier the total ``quantity`` falls in, plus its flat fee.

    Zero quantity costs nothing and returns no rows (no flat fee either).
    """
    if quantity <= 0:
        return ()
    lower = ZERO
    for index, tier in enumerate(tiers, start=1):
        if tier.up_to is None or quantity <= tier.up_to:
            amount = quantity * tier.unit_price + tier.flat_fee
            return (
                TierBreakdown(
                    index, lower, tier.up_to, quantity, tier.unit_price, tier.flat_fee, amount
                ),
            )
        lower = tier.up_to
    raise ValueError("tiers must end with an unbounded tier")  # prevented by validation
