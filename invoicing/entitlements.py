"""Features and entitlements (pure): what a plan lets a customer use, and the answer to
"may this customer do this now?" that a caller asks before serving a request.

A **feature** (from the features file, :func:`load_features`) is one of

* ``metered``: a meter, and per plan a usage limit per billing period (``null``:
  unlimited).  Usage is the meter's quantity in the subscription's current period, the
  customer's subjects added up by billing's one rule (``invoicing.usage``);
* ``boolean``: per plan on or off.

A plan the feature does not list has no access to it (and a boolean feature's plan set
to ``false`` neither), as OpenMeter's entitlements have it: access is granted, never
assumed.

The **decision** (:func:`decide`) is made from the plan of the subscription whose period
holds now (``None``: no current period), the usage so far and, optionally, a quantity
asked for:

* no current period: no access (``no_current_period``);
* the plan not entitled: no access (``no_plan_access``);
* boolean, or metered without a limit: access;
* metered with a limit: access while usage is below the limit — **at the limit there is
  none left** (``limit_reached``); with a quantity ``N``, access only if
  ``usage + N <= limit`` (the whole of ``N`` fits).

Every comparison is exact (Decimal); ``remaining`` is ``limit - usage``, never below 0.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from rating.money import EXACT
from rating.validation import NonNegative, choose_fix, join_path
from schemas.documents import load_document
from schemas.errors import InvalidInput, Problem

__all__ = [
    "Decision",
    "Feature",
    "FeatureKind",
    "FeatureSet",
    "Reason",
    "decide",
    "load_features",
    "parse_features",
]

_WHAT = "features"
_KEY = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_ZERO = Decimal(0)


class FeatureKind(StrEnum):
    METERED = "metered"
    BOOLEAN = "boolean"


class Reason(StrEnum):
    """Why a check is answered without access."""

    NO_CURRENT_PERIOD = "no_current_period"
    NO_PLAN_ACCESS = "no_plan_access"
    LIMIT_REACHED = "limit_reached"


@dataclass(frozen=True, slots=True)
class Feature:
    """A validated feature.  ``entitled`` maps every plan with access to its usage limit
    per billing period (``None``: unlimited; always ``None`` for a boolean feature)."""

    key: str
    kind: FeatureKind
    name: str
    meter: str | None
    entitled: Mapping[str, Decimal | None]


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """The features of a file, by key."""

    features: tuple[Feature, ...] = ()
    by_key: Mapping[str, Feature] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_key", {f.key: f for f in self.features})

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features)

    def meters(self) -> set[str]:
        """The meters the metered features read."""
        return {f.meter for f in self.features if f.meter is not None}


# -- the file -----------------------------------------------------------------------------


class _Metered(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=_KEY)
    kind: Literal["metered"]
    name: str = Field(default="", max_length=200)
    meter: str = Field(min_length=1)
    plans: dict[str, NonNegative | None] = {}


class _Boolean(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=_KEY)
    kind: Literal["boolean"]
    name: str = Field(default="", max_length=200)
    plans: dict[str, StrictBool] = {}


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[Annotated[_Metered | _Boolean, Field(discriminator="kind")]] = []


def parse_features(
    document: object,
    known_meters: Collection[str] | None = None,
    known_plans: Collection[str] | None = None,
) -> FeatureSet:
    """Validate a parsed features document: every problem at once, each with its path
    and fix (the shape, then repeated keys, unknown meters and unknown plans)."""
    if document is None:
        return FeatureSet()
    try:
        parsed = _File.model_validate(document)
    except ValidationError as exc:
        raise InvalidInput(_WHAT, _shape_problems(exc.errors())) from None
    problems = list(_problems(parsed.features, known_meters, known_plans))
    if problems:
        raise InvalidInput(_WHAT, problems)
    return FeatureSet(tuple(_feature(f) for f in parsed.features))


def load_features(
    path: str | Path,
    known_meters: Collection[str] | None = None,
    known_plans: Collection[str] | None = None,
) -> FeatureSet:
    return parse_features(load_document(path, _WHAT), known_meters, known_plans)


def _feature(parsed: _Metered | _Boolean) -> Feature:
    if isinstance(parsed, _Metered):
        return Feature(parsed.key, FeatureKind.METERED, parsed.name, parsed.meter, parsed.plans)
    entitled: dict[str, Decimal | None] = {plan: None for plan, on in parsed.plans.items() if on}
    return Feature(parsed.key, FeatureKind.BOOLEAN, parsed.name, None, entitled)


def _shape_problems(errors: Sequence[Any]) -> list[Problem]:
    """pydantic's errors, with paths written as the other checks write them and the
    union's tag left out (``features[0].plans.pro``, not ``features.0.metered.plans.
    pro``), and a fix for each."""
    out = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if len(loc) > 2 and loc[0] == "features" and loc[2] in ("metered", "boolean"):
            del loc[2]
        kind = str(error.get("type", ""))
        path = join_path("", *loc)
        single = InvalidInput.from_pydantic(_WHAT, [error]).problems[0]
        ctx = error.get("ctx")
        fix = str(ctx["fix"]) if isinstance(ctx, dict) and "fix" in ctx else single.fix
        if kind.startswith("union_tag"):
            path = f"{path}.kind"
            fix = "use kind: metered (a meter and a limit per plan) or kind: boolean"
        elif kind == "exact_number" and ".plans." in path:
            fix = "write the usage limit per billing period (a number), or null for unlimited"
        elif kind == "bool_type":
            fix = "write true (the plan has the feature) or false"
        elif kind == "string_pattern_mismatch":
            fix = "use lower-case letters, digits and . _ - (at most 64), e.g. api-access"
        elif kind == "missing" and path.endswith(".meter"):
            fix = "add meter: <slug>; a metered feature counts one meter's usage"
        out.append(Problem(path, single.message, fix))
    return out


def _problems(
    features: Sequence[_Metered | _Boolean],
    known_meters: Collection[str] | None,
    known_plans: Collection[str] | None,
) -> Iterable[Problem]:
    first: dict[str, int] = {}
    for index, feature in enumerate(features):
        path = f"features[{index}]"
        if feature.key in first:
            yield Problem(
                f"{path}.key",
                f"feature {feature.key!r} is already defined at features[{first[feature.key]}]",
                "give each feature its own key",
            )
        first.setdefault(feature.key, index)
        if (
            isinstance(feature, _Metered)
            and known_meters is not None
            and feature.meter not in known_meters
        ):
            yield Problem(
                f"{path}.meter",
                f"unknown meter {feature.meter!r}",
                choose_fix(feature.meter, known_meters),
            )
        if known_plans is not None:
            for plan in feature.plans:
                if plan not in known_plans:
                    yield Problem(
                        f"{path}.plans.{plan}",
                        f"no plan {plan!r} in the rate card",
                        choose_fix(plan, known_plans),
                    )


# -- the decision -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one feature: access or the reason there is none; for a metered
    feature the limit (``None``: unlimited) and what remains under it."""

    has_access: bool
    reason: Reason | None
    limit: Decimal | None = None
    remaining: Decimal | None = None

    @property
    def unlimited(self) -> bool:
        return self.has_access and self.limit is None


def decide(
    feature: Feature,
    plan: str | None,
    usage: Decimal | None = None,
    quantity: Decimal | None = None,
) -> Decision:
    """Whether a subscription on ``plan`` (``None``: no period holds now) may use
    ``feature``, having used ``usage`` of its meter this period, and — when given —
    ``quantity`` more (module docstring).  ``usage`` is needed for a limited metered
    feature (a missing reading counts as none used: the meter has no windows yet)."""
    if plan is None:
        return Decision(False, Reason.NO_CURRENT_PERIOD)
    if plan not in feature.entitled:
        return Decision(False, Reason.NO_PLAN_ACCESS)
    limit = feature.entitled[plan]
    if feature.kind is FeatureKind.BOOLEAN or limit is None:
        return Decision(True, None)
    with localcontext(EXACT):
        used = usage if usage is not None else _ZERO
        remaining = max(_ZERO, limit - used)
        fits = used + quantity <= limit if quantity is not None else used < limit
    return Decision(fits, None if fits else Reason.LIMIT_REACHED, limit, remaining)
