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
    "ExactDecimal",
    "NonNegative",
    "Positive",
    "choose_fix",
    "exact_number",
    "join_path",
    "problems_from",
]


def exact_number(value: Any) -> Any:
    """Refuse floats and booleans before pydantic turns them into Decimals."""
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
    return value


#: A Decimal read without passing through float.
ExactDecimal = Annotated[Decimal, BeforeValidator(exact_number)]
#: An exact Decimal that is 0 or more (prices, fees, quantities).
NonNegative = Annotated[Decimal, BeforeValidator(exact_number), Field(ge=0)]
#: An exact Decimal above 0 (package sizes, tier bounds).
Positive = Annotated[Decimal, BeforeValidator(exact_number), Field(gt=0)]


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
