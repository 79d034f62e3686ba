"""Response rendering: JSON with exact decimals, problem details, content negotiation.

Decimals are written as JSON numbers from their exact text (``orjson.Fragment``), so
``12.000000001`` reaches the client digit for digit; no value passes through a float.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from api.problems import PROBLEM_JSON, HttpProblem, problem_body
from api.query import decimal_text

__all__ = ["RawJson", "json_response", "preferred", "problem_response"]


class RawJson(str):
    """Text that is already JSON (e.g. a stored invoice document), embedded verbatim."""

    __slots__ = ()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError("non-finite decimal")
        return orjson.Fragment(decimal_text(value))
    if isinstance(value, RawJson):
        return orjson.Fragment(str(value))
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, default=_default, option=orjson.OPT_PASSTHROUGH_SUBCLASS)


def json_response(
    document: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(document), status, headers, media_type="application/json")


def problem_response(problem: HttpProblem) -> Response:
    return Response(
        dumps(problem_body(problem)), problem.status, dict(problem.headers), media_type=PROBLEM_JSON
    )


def preferred(accept: str | None, offered: tuple[str, ...]) -> str:
    """The offered media type the Accept header ranks highest.

    Ranking: quality ``q``, then an exact type over ``type/*`` over ``*/*``, then the
    order of the header, then the order of ``offered``.  A missing header, or one that
    accepts nothing offered, gets the first offered type (lenient, as most APIs are)."""
    choice, best = offered[0], (0.0, -1, 0)
    for position, part in enumerate((accept or "*/*").split(",")):
        fields = [f.strip() for f in part.split(";")]
        kind, q = fields[0].lower(), 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)  # a ranking weight, not a quantity
                except ValueError:
                    q = 0.0
        for candidate in offered:
            if kind == candidate:
                specificity = 2
            elif kind == candidate.split("/")[0] + "/*":
                specificity = 1
            elif kind == "*/*":
                specificity = 0
            else:
                continue
            key = (q, specificity, -position)
            if q > 0 and key > best:
                choice, best = candidate, key
    return choice
