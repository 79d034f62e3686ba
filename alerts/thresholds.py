"""Usage and spend thresholds, and which of them a subscription has crossed (pure).

A threshold watches one thing for every subscription it applies to, over that
subscription's current billing period:

* ``usage``: the period's quantity of one meter reaches ``at``;
* ``spend``: the period's charges so far (the live estimate, in the subscription's
  currency) reach ``at``;
* ``credit``: the customer's remaining prepaid credit falls to ``at`` percent of what
  was granted, or below.

``customer`` and ``plan`` narrow it to one customer or one plan; without either it
applies to every subscription.  A threshold fires at most once per subscription and
billing period: the notification id is derived from the threshold, the subscription and
the period's start (:func:`notification_id`), so every evaluator — after a restart, or a
second one by mistake — names the same crossing with the same id, and whoever records
and delivers notifications keeps one per id.

Thresholds are read from a YAML or JSON file (``thresholds:`` list) with
:func:`load_thresholds`; every problem of the file is reported at once, with its path
and fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from invoicing.customers import Customer
from invoicing.periods import Period
from rating.validation import NonNegative
from schemas.documents import load_document
from schemas.errors import InvalidInput, Problem
from schemas.timeutil import to_ms

__all__ = [
    "Crossing",
    "Kind",
    "Reading",
    "Threshold",
    "crossings",
    "load_thresholds",
    "notification_id",
    "parse_thresholds",
]

_WHAT = "thresholds"


class Kind(StrEnum):
    USAGE = "usage"
    SPEND = "spend"
    CREDIT = "credit"


class Threshold(BaseModel):
    """One threshold; see the module docstring for what each kind watches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    kind: Kind
    at: NonNegative
    meter: str | None = None
    customer: str | None = None
    plan: str | None = None

    def applies_to(self, customer: Customer) -> bool:
        return (self.customer is None or self.customer == customer.id) and (
            self.plan is None or self.plan == customer.plan
        )


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thresholds: list[Threshold] = []


def parse_thresholds(
    document: object, known_meters: Collection[str] | None = None
) -> tuple[Threshold, ...]:
    """Validate a parsed thresholds document; every problem at once, with its path."""
    if document is None:
        return ()
    try:
        parsed = _File.model_validate(document)
    except ValidationError as exc:
        raise InvalidInput.from_pydantic(_WHAT, exc.errors()) from None
    problems = list(_problems(parsed.thresholds, known_meters))
    if problems:
        raise InvalidInput(_WHAT, problems)
    return tuple(parsed.thresholds)


def load_thresholds(
    path: str | Path, known_meters: Collection[str] | None = None
) -> tuple[Threshold, ...]:
    return parse_thresholds(load_document(path, _WHAT), known_meters)


def _problems(
    thresholds: Sequence[Threshold], known_meters: Collection[str] | None
) -> Iterable[Problem]:
    first: dict[str, int] = {}
    for index, threshold in enumerate(thresholds):
        path = f"thresholds[{index}]"
        if threshold.id in first:
            yield Problem(
                f"{path}.id",
                f"threshold {threshold.id!r} is already defined at"
                f" thresholds[{first[threshold.id]}]",
                "give each threshold its own id",
            )
        first.setdefault(threshold.id, index)
        if threshold.kind is Kind.USAGE and threshold.meter is None:
            yield Problem(
                f"{path}.meter", "a usage threshold watches one meter", "add meter: <slug>"
            )
        if threshold.kind is not Kind.USAGE and threshold.meter is not None:
            yield Problem(
                f"{path}.meter",
                f"a {threshold.kind} threshold watches the whole subscription, not a meter",
                "remove meter, or use kind: usage",
            )
        if (
            threshold.meter is not None
            and known_meters is not None
            and threshold.meter not in known_meters
        ):
            known = ", ".join(sorted(known_meters)) or "none"
            yield Problem(
                f"{path}.meter", f"unknown meter {threshold.meter!r}", f"use one of: {known}"
            )
        if threshold.kind is Kind.CREDIT and threshold.at > 100:
            yield Problem(
                f"{path}.at",
                f"a credit threshold is a percentage of the credit granted;"
                f" {threshold.at} is over 100",
                "write a percentage from 0 to 100, e.g. at: 20 for 20 % remaining",
            )


def notification_id(threshold_id: str, customer: Customer, period: Period) -> str:
    """The one id of a threshold's crossing for a subscription in a period: the same in
    every evaluator, so it is the notification's idempotency key."""
    key = f"{threshold_id}\x1f{customer.id}\x1f{customer.subscription}\x1f{to_ms(period.start)}"
    return "ntf_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Reading:
    """What an evaluator read for one subscription's current period.

    ``usage``: quantity per meter so far; ``spend``: the period's estimate so far in the
    subscription's currency (``None``: it could not be priced); ``credit``: the credit
    granted to the customer and what remains of it, in that currency (``None``: no grant).
    """

    customer: Customer
    period: Period
    usage: Mapping[str, Decimal]
    spend: Decimal | None = None
    credit: tuple[Decimal, Decimal] | None = None


@dataclass(frozen=True, slots=True)
class Crossing:
    """A threshold crossed: what was watched, the value observed, and its notification id."""

    threshold: Threshold
    customer: Customer
    period: Period
    observed: Decimal
    notification_id: str


def crossings(
    thresholds: Iterable[Threshold], reading: Reading, fired: Collection[str] = ()
) -> list[Crossing]:
    """Every threshold that applies to the reading's subscription, is crossed, and whose
    notification id is not in ``fired`` (already notified in this period)."""
    out: list[Crossing] = []
    for threshold in thresholds:
        if not threshold.applies_to(reading.customer):
            continue
        observed = _crossed(threshold, reading)
        if observed is None:
            continue
        key = notification_id(threshold.id, reading.customer, reading.period)
        if key not in fired:
            out.append(Crossing(threshold, reading.customer, reading.period, observed, key))
    return out


def _crossed(threshold: Threshold, reading: Reading) -> Decimal | None:
    """The value observed if ``threshold`` is crossed, else ``None``: usage or spend at
    or over ``at``; remaining credit at or under ``at`` percent of the credit granted
    (compared exactly; the percentage is reported to 0.01)."""
    if threshold.kind is Kind.USAGE:
        used = reading.usage.get(threshold.meter or "", Decimal(0))
        return used if used >= threshold.at else None
    if threshold.kind is Kind.SPEND:
        spend = reading.spend
        return spend if spend is not None and spend >= threshold.at else None
    if reading.credit is None or reading.credit[0] <= 0:
        return None  # no credit granted: nothing to run out of
    granted, remaining = reading.credit
    left = max(remaining, Decimal(0))
    if left * 100 > threshold.at * granted:
        return None
    return (left * 100 / granted).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
