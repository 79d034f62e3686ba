"""Shared validation pieces: exact number types and pydantic errors as :class:`Problem`.

Paths are written the way a person points into a rate card:
``plans.pro.USD.charges[2].tiers[1].up_to`` — dots between keys, brackets for positions.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError

from schemas.errors import Problem

__all__ = [
    "MAX_FRACTION_DIGITS",
    "MAX_INTEGER_DIGITS",
    "Count",
    "NonNegative",
    "Positive",
    "choose_fix",
    "digit_problem",
    "exact_number",
    "join_path",
    "problems_from",
]


def exact_number(value: Any) -> Any:
    """Refuse floats and booleans before pydantic turns them into Decimals, and numbers
    with more digits than the bounds below (before pydantic's own conversion, which would
    report ``1e400`` as "not finite")."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "exact_number", "a boolean is not a number", {"fix": 'write a number, e.g. "12.5"'}
        )
    if isinstance(value, float):
        raise PydanticCustomError(
            "exact_number",
            "floats are not exact: {value} cannot be used as money or a quantity",
            {"value": repr(value), "fix": 'pass a Decimal or a string, e.g. "0.1"'},
        )
    number = value
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except ArithmeticError:
            return value  # pydantic names what is wrong with it
    if isinstance(number, Decimal | int) and (
        not isinstance(number, Decimal) or number.is_finite()
    ):
        problem = digit_problem(Decimal(number))
        if problem is not None:
            raise PydanticCustomError("digits", problem[0], {"fix": problem[1]})
    return value


#: Digits before the decimal point of any price, fee, bound or quantity: what the
#: ledger's ``Decimal(38, 9)`` columns hold, so whatever a card prices can be stored.
MAX_INTEGER_DIGITS = 29
#: Digits after the decimal point.  With both bounds every product the engine forms
#: stays far inside its exact 100-digit context, so pricing never has to round.
MAX_FRACTION_DIGITS = 18


def digit_problem(value: Decimal) -> tuple[str, str] | None:
    """``(message, fix)`` if a finite ``value`` has more digits than a card or usage may."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    count = len(digits)
    while count > 1 and exponent < 0 and digits[count - 1] == 0:  # trailing zeros say nothing
        count -= 1
        exponent += 1
    before, after = max(0, count + exponent), max(0, -exponent)
    if before > MAX_INTEGER_DIGITS:
        return (
            f"a number with {before} digits before the decimal point is more than the"
            f" {MAX_INTEGER_DIGITS} an invoice can hold",
            f"use at most {MAX_INTEGER_DIGITS} digits before the point; check the unit"
            " (e.g. bytes against gigabytes)",
        )
    if after > MAX_FRACTION_DIGITS:
        return (
            f"a number with {after} digits after the decimal point is more than the"
            f" {MAX_FRACTION_DIGITS} read",
            f"round it to at most {MAX_FRACTION_DIGITS} decimal places",
        )
    return None


#: An exact Decimal that is 0 or more (prices, fees, quantities), within the digit bounds.
#: (``exact_number`` checks the digits before pydantic converts; pydantic refuses the rest.)
NonNegative = Annotated[Decimal, BeforeValidator(exact_number), Field(ge=0, allow_inf_nan=False)]
#: An exact Decimal above 0 (package sizes, tier bounds), within the digit bounds.
Positive = Annotated[Decimal, BeforeValidator(exact_number), Field(gt=0, allow_inf_nan=False)]
#: A whole number of events, 0 or more, within the digit bounds.
Count = Annotated[int, BeforeValidator(exact_number), Field(ge=0)]


def join_path(prefix: str, *parts: str | int) -> str:
    """``join_path("plans.pro", "charges", 2, "tiers")`` -> ``plans.pro.charges[2].tiers``."""
    path = prefix
    for part in parts:
        if isinstance(part, int):
            path = f"{path}[{part}]"
        elif path:
            path = f"{path}.{part}"
        else:
            path = part
    return path


def problems_from(exc: ValidationError, prefix: str = "") -> list[Problem]:
    """Every error in ``exc`` as a Problem whose path starts at ``prefix``."""
    return [_problem(err, prefix) for err in exc.errors(include_url=False)]


def _problem(err: Any, prefix: str) -> Problem:
    loc: Sequence[str | int] = err.get("loc", ())
    path = join_path(prefix, *loc)
    return Problem(path=path, message=_message(err), fix=_fix(err, loc))


def _message(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind in {"dict_type", "model_type", "model_attributes_type"}:
        return "expected a mapping of keys to values"
    if kind == "finite_number":
        return str(err.get("msg", "not a finite number"))
    return str(err.get("msg", "invalid"))


def _fix(err: Any, loc: Iterable[str | int]) -> str:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    field = next((part for part in reversed(list(loc)) if isinstance(part, str)), "")
    if "fix" in ctx:
        return str(ctx["fix"])
    if kind == "extra_forbidden":
        return "remove this field or check its spelling"
    if kind == "missing":
        return "add this field"
    if kind == "greater_than_equal":
        return f"use a {field or 'value'} of {ctx.get('ge', 0)} or more"
    if kind == "greater_than":
        return f"use a {field or 'value'} above {ctx.get('gt', 0)}"
    if kind == "less_than_equal":
        return f"use a {field or 'value'} of at most {ctx.get('le')}"
    if kind.startswith("decimal") or kind in {"int_parsing", "int_from_float", "int_type"}:
        return 'write a number, e.g. 12.5 or "12.5"'
    if kind in {"dict_type", "model_type"}:
        return "write a mapping of keys to values here"
    if kind == "list_type":
        return "write a list here"
    if kind.startswith("string"):
        return "write a string here"
    if kind == "finite_number":
        return "write a finite number"
    if kind == "too_short":
        return "add at least one entry"
    return ""


def choose_fix(name: str, options: Collection[str]) -> str:
    """A fix for a name not among ``options``: the closest option, and the list."""
    names = sorted(options)
    if not names:
        return "there is nothing to choose from"
    listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    close = difflib.get_close_matches(name, names, 1)
    return f"did you mean {close[0]!r}? Known: {listed}" if close else f"use one of: {listed}"
