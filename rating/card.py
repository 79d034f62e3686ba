"""Rate cards: plan -> currency -> charges, loaded from YAML/JSON and validated in full.

File shape::

    plans:
      pro:                      # plan name
        proration: day          # optional: none (default) | day | second
        USD:                    # ISO 4217 currency code
          charges:
            - id: api_calls     # optional; defaults to the meter, else to the model
              meter: api_calls  # metered models only
              model: graduated  # a kind from rating.registry
              tiers: [...]      # the model's parameters (see docs/pricing.md)

Loading never stops at the first problem: every defect in the card is collected, each
with its path (``plans.pro.USD.charges[2].tiers[1].up_to``) and a fix, and raised as one
:class:`~schemas.errors.InvalidInput`.  A card that loads is fully valid: the engine
does not check it again.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rating.models import PRORATIONS, MinimumCommitment, PricingModel
from rating.money import is_currency
from rating.registry import REGISTRY, ModelKind, kinds
from rating.specs import MeteredSpec
from rating.validation import choose_fix, join_path, problems_from
from schemas.documents import load_document
from schemas.errors import InvalidInput, Problem

__all__ = ["MAX_CARD_BYTES", "Charge", "Plan", "RateCard", "load_rate_card", "load_rate_card_data"]

#: The largest rate card file read: about 4,000 three-tier plans, loaded in ~2 s.  Larger
#: files are refused before they are parsed (a 10 MB card once took 68 s and 1 GB).
MAX_CARD_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Charge:
    """One validated charge of a price list."""

    id: str
    name: str
    meter: str | None
    model: PricingModel

    @property
    def kind(self) -> str:
        return self.model.kind


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan's price lists: currency code -> charges, in the card's order."""

    name: str
    prices: Mapping[str, tuple[Charge, ...]]
    proration: str = "none"
    """How a flat fee is shared when a period is cut short: ``none`` (charged whole),
    ``day`` or ``second`` (see ``invoicing.fees``)."""

    def currencies(self) -> tuple[str, ...]:
        return tuple(self.prices)


@dataclass(frozen=True, slots=True)
class RateCard:
    """A validated rate card.  Immutable; safe to share between threads."""

    plans: Mapping[str, Plan]

    def plan(self, name: str) -> Plan:
        """The plan called ``name``; InvalidInput (path ``plan``) if there is none."""
        try:
            return self.plans[name]
        except KeyError:
            raise InvalidInput(
                "quote",
                [Problem("plan", f"no plan named {name!r}", fix=choose_fix(name, self.plans))],
            ) from None

    def currencies(self, plan: str) -> tuple[str, ...]:
        """The currencies ``plan`` is priced in, in the card's order."""
        return self.plan(plan).currencies()

    def charges(self, plan: str, currency: str) -> tuple[Charge, ...]:
        """The charges of ``plan`` in ``currency``; InvalidInput if it has no such price list."""
        prices = self.plan(plan).prices
        try:
            return prices[currency]
        except KeyError:
            raise InvalidInput(
                "quote",
                [
                    Problem(
                        "currency",
                        f"plan {plan!r} has no prices in {currency!r}",
                        fix=choose_fix(currency, prices),
                    )
                ],
            ) from None


class _CardShape(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plans: dict[str, Any] = Field(min_length=1)


class _PriceListShape(BaseModel):
    model_config = ConfigDict(extra="forbid")
    charges: list[Any]


_CURRENCIES: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def load_rate_card(path: str | Path, known_meters: Collection[str] | None = None) -> RateCard:
    """Read and validate a YAML or JSON rate card (``.json`` is JSON, anything else YAML).

    ``known_meters``: the meter slugs that exist; when given, a charge on any other meter
    is an error.  Raises :class:`InvalidInput` listing every problem.
    """
    document = load_document(path, "rate card", max_bytes=MAX_CARD_BYTES)
    return load_rate_card_data(document, known_meters, source=str(path))


def load_rate_card_data(
    data: object, known_meters: Collection[str] | None = None, *, source: str = "<data>"
) -> RateCard:
    """Validate an in-memory rate card (numbers as Decimal, int or str — never float)."""
    problems: list[Problem] = []
    if data is None:
        raise InvalidInput(
            f"rate card {source}",
            [
                Problem(
                    "<root>",
                    "the rate card is empty",
                    fix="start with plans: and one plan (docs/pricing.md shows a card)",
                )
            ],
        )
    try:
        shape = _CardShape.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"rate card {source}", problems_from(exc)) from None
    meters = None if known_meters is None else frozenset(known_meters)
    plans: dict[str, Plan] = {}
    for plan_name, raw_plan in shape.plans.items():
        plan = _plan(plan_name, raw_plan, meters, problems)
        if plan is not None:
            plans[plan_name] = plan
    if problems:
        raise InvalidInput(f"rate card {source}", problems)
    return RateCard(plans=MappingProxyType(plans))


def _plan(
    name: str, raw: object, meters: frozenset[str] | None, problems: list[Problem]
) -> Plan | None:
    path = join_path("plans", name)
    try:
        currencies = _CURRENCIES.validate_python(raw)
    except ValidationError as exc:
        problems.extend(problems_from(exc, path))
        return None
    before = len(problems)
    proration = currencies.pop("proration", "none")
    if proration not in PRORATIONS:
        problems.append(
            Problem(
                join_path(path, "proration"),
                f"unknown proration {proration!r}",
                fix=f"use one of: {', '.join(PRORATIONS)}",
            )
        )
    if not currencies:
        problems.append(
            Problem(path, "plan has no prices", fix="add a currency, e.g. USD: {charges: [...]}")
        )
    prices: dict[str, tuple[Charge, ...]] = {}
    for code, raw_list in currencies.items():
        here = join_path(path, code)
        if not is_currency(code):
            upper = code.upper()
            fix = (
                f"write it in upper case: {upper}"
                if is_currency(upper)
                else "use an ISO 4217 code such as USD, EUR, GBP, JPY or KWD"
            )
            problems.append(Problem(here, f"unknown currency code {code!r}", fix=fix))
        try:
            price_list = _PriceListShape.model_validate(raw_list)
        except ValidationError as exc:
            problems.extend(problems_from(exc, here))
            continue
        prices[code] = _charges(price_list.charges, join_path(here, "charges"), meters, problems)
    if len(problems) > before:
        return None
    return Plan(name=name, prices=MappingProxyType(prices), proration=str(proration))


def _charges(
    raws: list[Any], path: str, meters: frozenset[str] | None, problems: list[Problem]
) -> tuple[Charge, ...]:
    charges: dict[int, Charge] = {}
    seen: dict[str, int] = {}
    for index, raw in enumerate(raws):
        here = join_path(path, index)
        charge = _charge(raw, here, meters, problems)
        charge_id = charge.id if charge else _raw_id(raw)
        if charge_id is not None and charge_id in seen:
            problems.append(
                Problem(
                    join_path(here, "id"),
                    f"charge id {charge_id!r} is already used by {path}[{seen[charge_id]}]",
                    fix="give each charge a unique id; two charges on one meter need explicit ids",
                )
            )
        elif charge_id is not None:
            seen[charge_id] = index
        if charge is not None:
            charges[index] = charge
    priced = {c.id for c in charges.values() if not isinstance(c.model, MinimumCommitment)}
    for index, charge in charges.items():
        if isinstance(charge.model, MinimumCommitment):
            for ref_index, ref in enumerate(charge.model.applies_to):
                if ref not in priced:
                    problems.append(
                        Problem(
                            join_path(path, index, "applies_to", ref_index),
                            f"no charge with id {ref!r} in this price list",
                            fix=choose_fix(ref, sorted(priced)),
                        )
                    )
    return tuple(charges.values())


def _charge(
    raw: object, here: str, meters: frozenset[str] | None, problems: list[Problem]
) -> Charge | None:
    """Validate one charge through the registry; ``None`` when it has problems.

    The model and the meter are checked even when the rest of the charge is invalid,
    and tier order is checked even when a price in a tier is invalid.
    """
    if not isinstance(raw, Mapping):
        problems.append(
            Problem(here, "a charge must be a mapping", fix="write meter, model and its parameters")
        )
        return None
    start = len(problems)
    entry, fields = _model_entry(raw, here, problems)
    meter = fields.get("meter")
    if meters is not None and isinstance(meter, str) and meter not in meters:
        problems.append(
            Problem(
                join_path(here, "meter"), f"unknown meter {meter!r}", fix=choose_fix(meter, meters)
            )
        )
    if entry is None:
        return None
    try:
        spec = entry.spec.model_validate(fields)
    except ValidationError as exc:
        problems.extend(problems_from(exc, here))
        problems.extend(_under(here, entry.spec.raw_problems(fields)))
        return None
    problems.extend(_under(here, spec.problems()))
    if len(problems) > start:
        return None
    meter = spec.meter if isinstance(spec, MeteredSpec) else None
    charge_id = spec.id or meter or entry.name
    return Charge(id=charge_id, name=spec.name or charge_id, meter=meter, model=spec.build())


def _model_entry(
    raw: Mapping[str, Any], here: str, problems: list[Problem]
) -> tuple[ModelKind | None, dict[str, Any]]:
    """The registry entry for the charge's model, and its fields left to validate."""
    fields = dict(raw)
    kind = fields.get("model")
    entry = REGISTRY.get(kind) if isinstance(kind, str) else None
    if entry is None:
        message = "required field is missing" if kind is None else f"unknown model {kind!r}"
        fix = f"use one of: {', '.join(kinds())}"
        if isinstance(kind, str) and (close := difflib.get_close_matches(kind, kinds(), 1)):
            fix = f"did you mean {close[0]!r}? Or {fix}"
        problems.append(Problem(join_path(here, "model"), message, fix=fix))
    elif not entry.metered and "meter" in fields:
        del fields["meter"]
        problems.append(
            Problem(
                join_path(here, "meter"),
                f"a {kind} charge does not price a meter",
                fix="remove meter from this charge",
            )
        )
    return entry, fields


def _under(prefix: str, problems: Iterable[Problem]) -> list[Problem]:
    """Problems with charge-relative paths, re-rooted at ``prefix``."""
    return [Problem(join_path(prefix, p.path), p.message, p.fix) for p in problems]


def _raw_id(raw: object) -> str | None:
    """The id an invalid charge would get (so duplicates are still reported)."""
    if not isinstance(raw, Mapping):
        return None
    kind = raw.get("model")
    entry = REGISTRY.get(kind) if isinstance(kind, str) else None
    for key in ("id", "meter" if entry is None or entry.metered else "", "model"):
        value = raw.get(key)
        if isinstance(value, str) and value:
            return value
    return None
