"""Rate-card charges as written in YAML/JSON: pydantic shapes plus semantic checks.

Validation is kept apart from calculation: a spec checks a charge's parameters and
``build()`` turns a valid spec into the frozen pricing class of ``rating.models``.
Pydantic checks types, required fields, unknown fields and signs; ``problems()`` checks
what pydantic cannot see on one field: tier order, gaps and overlaps, the unbounded last
tier, and parameters that exclude each other.  Paths in ``problems()`` are relative to
the charge (``tiers[1].up_to``); the card loader prefixes them.

Tier schema: ``up_to`` is the inclusive upper bound, omitted or ``null``/``"inf"`` for
the last tier.  ``from`` is optional and exists only so a card can spell ranges out;
when given it must equal the previous tier's ``up_to`` (0 for the first tier), the
exclusive lower bound.  A different value is reported as a gap or an overlap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from rating.models import (
    FlatFee,
    Graduated,
    MinimumCommitment,
    Overage,
    Package,
    Percentage,
    PerUnit,
    PricingModel,
    Volume,
)
from rating.money import ZERO, format_decimal
from rating.tiers import Tier
from rating.validation import Count, NonNegative, Positive, join_path
from schemas.errors import Problem

__all__ = [
    "ChargeSpec",
    "FlatSpec",
    "GraduatedSpec",
    "MeteredSpec",
    "MinimumSpec",
    "OverageSpec",
    "PackageSpec",
    "PerUnitSpec",
    "PercentageSpec",
    "TierBounds",
    "TierSpec",
    "VolumeSpec",
    "bounds_problems",
    "tier_problems",
]

_UNBOUNDED = {"inf", "+inf", "infinity", "∞"}


def _unbounded_as_none(value: Any) -> Any:
    """``"inf"``, ``.inf`` (YAML) and ``Infinity`` all mean: no upper bound."""
    if isinstance(value, str) and value.strip().lower() in _UNBOUNDED:
        return None
    if isinstance(value, Decimal) and value.is_infinite() and value > 0:
        return None
    return value


UpTo = Annotated[Positive | None, BeforeValidator(_unbounded_as_none)]
Percent = Annotated[NonNegative, Field(le=100)]


class TierBounds(BaseModel):
    """Just a tier's bounds; lets the order checks run when a price elsewhere is bad."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    from_: NonNegative | None = Field(default=None, alias="from")
    up_to: UpTo = None


class TierSpec(TierBounds):
    """One tier: ``up_to`` (inclusive), ``unit_price``, optional ``flat_fee`` and ``from``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_price: NonNegative
    flat_fee: NonNegative = ZERO

    def build(self) -> Tier:
        return Tier(up_to=self.up_to, unit_price=self.unit_price, flat_fee=self.flat_fee)


def tier_problems(tiers: Sequence[TierBounds], path: str = "tiers") -> list[Problem]:
    """Order, overlap, gap and unbounded-last-tier checks for one tier list."""
    problems: list[Problem] = []
    lower = ZERO  # where the next tier starts: the highest up_to so far
    last = len(tiers) - 1
    for index, tier in enumerate(tiers):
        here = join_path(path, index)
        if tier.from_ is not None and tier.from_ != lower:
            problems.append(_start_problem(here, tier.from_, lower, first=index == 0))
        if tier.up_to is None:
            if index != last:
                problems.append(
                    Problem(
                        f"{here}.up_to",
                        "only the last tier may be unbounded; the tiers after it are unreachable",
                        fix="give this tier an up_to, or remove the tiers after it",
                    )
                )
            return problems
        problems.extend(_end_problems(here, tier.up_to, tier.from_, lower))
        lower = max(lower, tier.up_to)
    if tiers:
        end = format_decimal(tiers[last].up_to or lower)
        problems.append(
            Problem(
                join_path(path, last, "up_to"),
                f"the last tier ends at {end}, so quantities above it have no price"
                " (a gap at the top)",
                fix='make the last tier unbounded: omit up_to, or write up_to: null or "inf"',
            )
        )
    return problems


def _end_problems(
    here: str, up_to: Decimal, start: Decimal | None, lower: Decimal
) -> list[Problem]:
    if up_to <= lower:
        message = (
            f"up_to {format_decimal(up_to)} is not above the previous tier's"
            f" up_to {format_decimal(lower)}: tiers overlap or are out of order"
        )
        fix = "sort the tiers by up_to, each strictly greater than the one before"
    elif start is not None and up_to <= start:
        message = (
            f"up_to {format_decimal(up_to)} is not above this tier's"
            f" from {format_decimal(start)}: the tier is empty"
        )
        fix = "make up_to greater than from"
    else:
        return []
    return [Problem(f"{here}.up_to", message, fix=fix)]


_BOUNDS: TypeAdapter[list[TierBounds]] = TypeAdapter(list[TierBounds])


def bounds_problems(raw_charge: Mapping[str, Any]) -> list[Problem]:
    """Tier order checks on a charge that failed validation for another reason.

    Runs only when every tier's bounds parse, so it never repeats a bound's own error.
    """
    tiers = raw_charge.get("tiers")
    if not isinstance(tiers, list) or not tiers:
        return []
    try:
        bounds = _BOUNDS.validate_python(tiers)
    except ValidationError:
        return []
    return tier_problems(bounds)


def _start_problem(here: str, start: Decimal, lower: Decimal, *, first: bool) -> Problem:
    expected = format_decimal(lower)
    previous = "tiers start after 0" if first else f"the previous tier ends at {expected}"
    if start > lower:
        message = (
            f"gap: {previous} but this tier starts after {format_decimal(start)}, so units"
            f" in ({expected}, {format_decimal(start)}] have no price"
        )
    else:
        message = f"overlap: {previous} but this tier starts after {format_decimal(start)}"
    fix = f"set from to {expected}, where the tier before ends, or leave from out"
    return Problem(f"{here}.from", message, fix=fix)


class ChargeSpec(BaseModel):
    """Fields every charge has.  ``id`` defaults to the meter slug, else to the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    id: str | None = Field(default=None, min_length=1)
    name: str | None = None

    def problems(self) -> list[Problem]:
        """Semantic problems pydantic cannot see; paths relative to the charge."""
        return []

    @classmethod
    def raw_problems(cls, fields: Mapping[str, Any]) -> list[Problem]:
        """The semantic problems that can still be seen in a charge pydantic refused, so
        that one pass reports everything wrong with it: tier order, and each model's
        checks on the fields that did parse."""
        return bounds_problems(fields)

    def build(self) -> PricingModel:
        raise NotImplementedError


class MeteredSpec(ChargeSpec):
    """A charge priced on one meter's usage."""

    meter: str = Field(min_length=1)


class PerUnitSpec(MeteredSpec):
    unit_price: NonNegative

    def build(self) -> PerUnit:
        return PerUnit(unit_price=self.unit_price)


class GraduatedSpec(MeteredSpec):
    tiers: list[TierSpec] = Field(min_length=1)

    def problems(self) -> list[Problem]:
        return tier_problems(self.tiers)

    def build(self) -> Graduated:
        return Graduated(tiers=tuple(tier.build() for tier in self.tiers))


class VolumeSpec(MeteredSpec):
    tiers: list[TierSpec] = Field(min_length=1)

    def problems(self) -> list[Problem]:
        return tier_problems(self.tiers)

    def build(self) -> Volume:
        return Volume(tiers=tuple(tier.build() for tier in self.tiers))


class PackageSpec(MeteredSpec):
    package_size: Positive
    package_price: NonNegative
    free_units: NonNegative = ZERO

    def build(self) -> Package:
        return Package(self.package_size, self.package_price, self.free_units)


class OverageSpec(MeteredSpec):
    base_fee: NonNegative
    included_units: NonNegative
    unit_price: NonNegative | None = None
    tiers: list[TierSpec] | None = Field(default=None, min_length=1)

    def problems(self) -> list[Problem]:
        either = _one_of(self.unit_price is not None, self.tiers is not None)
        return either or (tier_problems(self.tiers) if self.tiers is not None else [])

    @classmethod
    def raw_problems(cls, fields: Mapping[str, Any]) -> list[Problem]:
        either = _one_of(fields.get("unit_price") is not None, fields.get("tiers") is not None)
        return either or bounds_problems(fields)

    def build(self) -> Overage:
        tiers = tuple(tier.build() for tier in self.tiers or ())
        return Overage(self.base_fee, self.included_units, self.unit_price, tiers)


class PercentageSpec(MeteredSpec):
    percent: Percent
    fixed_fee: NonNegative = ZERO
    free_events: Count = 0
    free_amount: NonNegative | None = None
    min_per_event: NonNegative | None = None
    max_per_event: NonNegative | None = None

    def problems(self) -> list[Problem]:
        return _percentage_problems(
            bool(self.free_events),
            self.free_amount is not None,
            self.min_per_event,
            self.max_per_event,
        )

    @classmethod
    def raw_problems(cls, fields: Mapping[str, Any]) -> list[Problem]:
        bounds = [_parsed(fields.get(name)) for name in ("min_per_event", "max_per_event")]
        free_events = fields.get("free_events")
        return _percentage_problems(
            free_events not in (None, 0), fields.get("free_amount") is not None, *bounds
        )

    def build(self) -> Percentage:
        return Percentage(
            percent=self.percent,
            fixed_fee=self.fixed_fee,
            free_events=self.free_events,
            free_amount=self.free_amount,
            min_per_event=self.min_per_event,
            max_per_event=self.max_per_event,
        )


def _one_of(unit_price: bool, tiers: bool) -> list[Problem]:
    if unit_price != tiers:
        return []
    which = "both" if tiers else "neither"
    return [
        Problem(
            "unit_price",
            f"overage has {which} unit_price and tiers",
            fix="price the units above the allowance with unit_price or with tiers",
        )
    ]


def _percentage_problems(
    free_events: bool, free_amount: bool, low: Decimal | None, high: Decimal | None
) -> list[Problem]:
    problems = []
    if free_events and free_amount:
        problems.append(
            Problem(
                "free_amount",
                "free units are counted in events or in amount, not both",
                fix="keep either free_events or free_amount",
            )
        )
    if low is not None and high is not None and low > high:
        problems.append(
            Problem(
                "min_per_event",
                f"min_per_event {format_decimal(low)} is above"
                f" max_per_event {format_decimal(high)}",
                fix="make min_per_event at most max_per_event",
            )
        )
    return problems


_AMOUNT: TypeAdapter[Decimal] = TypeAdapter(NonNegative)


def _parsed(value: object) -> Decimal | None:
    """``value`` as a valid amount, or None (its own error is reported elsewhere)."""
    if value is None:
        return None
    try:
        return _AMOUNT.validate_python(value)
    except ValidationError:
        return None


class FlatSpec(ChargeSpec):
    amount: NonNegative
    billed: Literal["in_arrears", "in_advance"] = "in_arrears"

    def build(self) -> FlatFee:
        return FlatFee(amount=self.amount, billed=self.billed)


class MinimumSpec(ChargeSpec):
    amount: NonNegative
    applies_to: list[str] = Field(default_factory=list)

    def build(self) -> MinimumCommitment:
        return MinimumCommitment(amount=self.amount, applies_to=tuple(self.applies_to))
