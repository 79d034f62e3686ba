"""The pricing models: one small frozen class per model, each with one pricing method.

Metered models take the meter's :class:`~rating.usage.Usage` and return the unrounded
:class:`~rating.lines.Pricing`.  :class:`FlatFee` needs no usage, and
:class:`MinimumCommitment` prices against the other lines of the period, so their one
method has a different argument.  The classes hold already-validated parameters
(``rating.specs`` validates); they never round (the engine rounds once per line).
Call them through :func:`rating.engine.rate_plan`, which runs them in the exact context.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import ClassVar

from rating.lines import Component, Pricing
from rating.money import ZERO, format_decimal
from rating.percentage import Percentage
from rating.tiers import Tier, graduated, volume
from rating.usage import Usage

__all__ = [
    "FlatFee",
    "Graduated",
    "MinimumCommitment",
    "Overage",
    "Package",
    "PerUnit",
    "Percentage",
    "PricingModel",
    "Volume",
]


@dataclass(frozen=True, slots=True)
class PerUnit:
    """quantity × unit price."""

    kind: ClassVar[str] = "per_unit"
    unit_price: Decimal

    def price(self, usage: Usage) -> Pricing:
        return Pricing(components=(Component.of("units", usage.quantity, self.unit_price),))


@dataclass(frozen=True, slots=True)
class Graduated:
    """Each tier prices the units inside it; a reached tier adds its flat fee once."""

    kind: ClassVar[str] = "graduated"
    tiers: tuple[Tier, ...]

    def price(self, usage: Usage) -> Pricing:
        return Pricing(tiers=graduated(self.tiers, usage.quantity))


@dataclass(frozen=True, slots=True)
class Volume:
    """The tier the total quantity falls in prices every unit; zero quantity is free."""

    kind: ClassVar[str] = "volume"
    tiers: tuple[Tier, ...]

    def price(self, usage: Usage) -> Pricing:
        return Pricing(tiers=volume(self.tiers, usage.quantity))


@dataclass(frozen=True, slots=True)
class Package:
    """A price per package of ``package_size`` units; a partial package costs a whole one.

    ``free_units`` are deducted before packages are counted.
    """

    kind: ClassVar[str] = "package"
    package_size: Decimal
    package_price: Decimal
    free_units: Decimal = ZERO

    def price(self, usage: Usage) -> Pricing:
        free = min(usage.quantity, self.free_units)
        billable = usage.quantity - free
        whole, rest = divmod(billable, self.package_size)
        packages = whole + 1 if rest else whole
        size = format_decimal(self.package_size)
        components = []
        if self.free_units:
            components.append(Component.of("free units", free, ZERO))
        label = f"packages of {size} for {format_decimal(billable)} units, rounded up"
        components.append(Component.of(label, packages, self.package_price))
        return Pricing(components=tuple(components))


@dataclass(frozen=True, slots=True)
class Overage:
    """A base fee that includes ``included_units``; units above it are priced separately.

    Exactly one of ``unit_price`` and ``tiers`` is set.  Overage tiers are graduated and,
    in the rate card, count units *above the allowance*: a first tier ``up_to: 1000``
    prices the first 1000 units beyond ``included_units``.  The line's tier rows show
    those ranges in metered units (``(included, included + 1000]``), like every other
    quantity on the line.  The base fee is charged even with no usage.
    """

    kind: ClassVar[str] = "overage"
    base_fee: Decimal
    included_units: Decimal
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()

    def price(self, usage: Usage) -> Pricing:
        included = min(usage.quantity, self.included_units)
        above = usage.quantity - included
        allowance = format_decimal(self.included_units)
        components = [
            Component.fixed(f"base fee, includes {allowance} units", self.base_fee),
            Component.of("included units", included, ZERO),
        ]
        if self.unit_price is not None:
            components.append(Component.of("units above the allowance", above, self.unit_price))
            return Pricing(components=tuple(components))
        shifted = tuple(
            replace(
                row,
                lower=row.lower + self.included_units,
                up_to=None if row.up_to is None else row.up_to + self.included_units,
            )
            for row in graduated(self.tiers, above)
        )
        return Pricing(tiers=shifted, components=tuple(components))


@dataclass(frozen=True, slots=True)
class FeeTerm:
    """One share of a flat fee on an invoice: ``share × amount``, labelled with the part
    of which period it pays for (invoicing decides the shares: proration, trials, fees
    billed in advance, credits)."""

    label: str
    share: Decimal


@dataclass(frozen=True, slots=True)
class FlatFee:
    """A fixed amount per billing period, whatever the usage.  ``billed``: ``in_arrears``
    (on the invoice closing the period) or ``in_advance`` (on the invoice before it)."""

    kind: ClassVar[str] = "flat"
    amount: Decimal
    billed: str = "in_arrears"

    def price(self, terms: tuple[FeeTerm, ...] | None = None) -> Pricing:
        """The whole fee, or the given shares of it."""
        if terms is None:
            return Pricing(components=(Component.fixed("flat fee per period", self.amount),))
        return Pricing(
            components=tuple(Component.fixed(t.label, self.amount, t.share) for t in terms)
        )


@dataclass(frozen=True, slots=True)
class MinimumCommitment:
    """Tops the period's charges up to ``amount`` when they fall below it.

    ``applies_to`` names the charge ids counted; empty means every other charge of the
    price list except minimums.  The charges compared are the *rounded* line amounts,
    i.e. what the customer sees on the invoice.
    """

    kind: ClassVar[str] = "minimum"
    amount: Decimal
    applies_to: tuple[str, ...] = ()

    def true_up(self, charged: Decimal) -> Pricing | None:
        """The true-up needed on top of ``charged``, or ``None`` when the minimum is met."""
        if charged >= self.amount:
            return None
        label = (
            f"true-up to the minimum {format_decimal(self.amount)}"
            f" (charges {format_decimal(charged)})"
        )
        return Pricing(components=(Component.of(label, Decimal(1), self.amount - charged),))


#: The plan-level proration modes: how a flat fee is shared when a period is cut short.
PRORATIONS = ("none", "day", "second")

#: Every pricing model the engine knows; ``rating.registry`` maps kinds to them.
PricingModel = (
    PerUnit | Graduated | Volume | Package | Overage | Percentage | FlatFee | MinimumCommitment
)
