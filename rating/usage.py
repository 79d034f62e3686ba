"""Usage of one meter in one billing period, and reading it from a file or CLI pairs.

``quantity`` is the meter's aggregated value.  For percentage charges the engine also
needs the amount of every event (``event_amounts``), in the order the events happened;
then ``quantity`` is the number of events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from rating.validation import (
    MAX_FRACTION_DIGITS,
    MAX_INTEGER_DIGITS,
    NonNegative,
    digit_problem,
    join_path,
    problems_from,
)
from schemas.documents import load_document
from schemas.errors import InvalidInput, Problem

__all__ = ["Usage", "load_usage_file", "parse_usage_pairs", "usage_from_data"]


@dataclass(frozen=True, slots=True)
class Usage:
    """A meter's usage: a non-negative, finite Decimal quantity, and optional event amounts.

    Construction refuses floats, negative and non-finite numbers, so a ``Usage`` that
    exists is always exact and sane.  Integers are accepted and stored as Decimal.
    """

    quantity: Decimal
    event_amounts: tuple[Decimal, ...] | None = None

    def __post_init__(self) -> None:
        quantity = self.quantity
        if (  # the common case, checked in a few C calls: a plain quantity in bounds
            self.event_amounts is None
            and type(quantity) is Decimal
            and quantity.is_finite()
            and quantity >= 0
            and quantity.adjusted() < MAX_INTEGER_DIGITS
            and quantity.as_tuple().exponent >= -MAX_FRACTION_DIGITS  # type: ignore[operator]
        ):
            return
        amounts = None if self.event_amounts is None else tuple(self.event_amounts)
        problems = list(_number_problems("quantity", self.quantity))
        for index, amount in enumerate(amounts or ()):
            problems.extend(_number_problems(f"event_amounts[{index}]", amount))
        if problems:
            raise InvalidInput("usage", problems)
        if type(self.quantity) is not Decimal:  # an int: store it as Decimal
            object.__setattr__(self, "quantity", Decimal(self.quantity))
        if amounts is not None:
            object.__setattr__(self, "event_amounts", tuple(Decimal(a) for a in amounts))


def _number_problems(path: str, value: object) -> Iterable[Problem]:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        yield Problem(
            path,
            f"{type(value).__name__} is not an exact number",
            fix='pass a Decimal, e.g. Decimal("12.5")',
        )
    elif isinstance(value, Decimal) and not value.is_finite():
        yield Problem(path, f"{value} is not a finite number", fix="pass a finite Decimal")
    elif value < 0:
        yield Problem(path, f"{value} is negative", fix="usage cannot be negative; pass 0 or more")
    elif (digits := digit_problem(Decimal(value))) is not None:
        yield Problem(path, digits[0], fix=digits[1])


class _Entry(BaseModel):
    """``{quantity: ..., events: [...]}`` for one meter in a usage file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: NonNegative | None = None
    events: list[NonNegative] | None = None


_QUANTITY: TypeAdapter[Decimal] = TypeAdapter(NonNegative)
_ENTRY_FIX = "write quantity: N, or events: [amount, ...]"


def usage_from_data(data: object, prefix: str = "usage") -> dict[str, Usage]:
    """Validate parsed usage data: ``{meter: quantity}`` or ``{meter: {quantity, events}}``.

    Every problem is reported at once, with its path.  A meter given only ``events`` gets
    ``quantity = len(events)``; one given both keeps both, and the engine checks that they
    agree when a percentage charge needs the events.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput(
            "usage",
            [
                Problem(
                    prefix, "expected a mapping of meter to usage", fix="write {meter: quantity}"
                )
            ],
        )
    usage: dict[str, Usage] = {}
    problems: list[Problem] = []
    for meter, value in data.items():
        path = join_path(prefix, str(meter))
        try:
            if isinstance(value, Mapping):
                entry = _Entry.model_validate(value)
            else:
                usage[str(meter)] = Usage(quantity=_QUANTITY.validate_python(value))
                continue
        except ValidationError as exc:
            problems.extend(problems_from(exc, path))
            continue
        if entry.quantity is None and entry.events is None:
            problems.append(Problem(path, "gives neither a quantity nor events", fix=_ENTRY_FIX))
            continue
        events = None if entry.events is None else tuple(entry.events)
        quantity = entry.quantity if entry.quantity is not None else Decimal(len(events or ()))
        usage[str(meter)] = Usage(quantity=quantity, event_amounts=events)
    if problems:
        raise InvalidInput("usage", problems)
    return usage


def load_usage_file(path: str | Path) -> dict[str, Usage]:
    """Read a JSON or YAML usage file (numbers kept exact)."""
    return usage_from_data(load_document(path, "usage file"), prefix="usage")


def parse_usage_pairs(pairs: Iterable[str]) -> dict[str, Usage]:
    """Parse CLI ``METER=QTY`` pairs; every bad pair is reported at once."""
    usage: dict[str, Usage] = {}
    problems: list[Problem] = []
    for pair in pairs:
        meter, sep, text = pair.partition("=")
        meter = meter.strip()
        path = f"--usage {pair}"
        if not sep or not meter:
            problems.append(
                Problem(path, "expected METER=QUANTITY", fix="e.g. --usage api_calls=1500")
            )
            continue
        try:
            number = Decimal(text.strip())
        except ArithmeticError:
            problems.append(Problem(path, f"{text!r} is not a number", fix="e.g. api_calls=1500.5"))
            continue
        try:
            quantity = _QUANTITY.validate_python(number)
        except ValidationError as exc:
            problems.extend(
                Problem(path, f"{text!r}: {p.message}", fix=p.fix or "e.g. api_calls=1500.5")
                for p in problems_from(exc)
            )
            continue
        if meter in usage:
            problems.append(
                Problem(path, f"meter {meter!r} given twice", fix="give each meter once")
            )
        else:
            usage[meter] = Usage(quantity=quantity)
    if problems:
        raise InvalidInput("usage", problems)
    return usage
