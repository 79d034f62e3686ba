"""Problem details (RFC 9457): the one shape of every HTTP error this service returns.

A body is ``{type, title, status, detail, problems?}`` with media type
``application/problem+json``.  ``problems`` lists every defect of an invalid request,
each as ``{path, message, fix}`` — for a batch the path starts with the event's index,
e.g. ``[3].time``.  Handlers raise :class:`HttpProblem`; the app turns it into a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import InvalidInput, Problem

__all__ = ["PROBLEM_JSON", "HttpProblem", "invalid", "problem_body"]

PROBLEM_JSON = "application/problem+json"

_TYPES = {
    400: "invalid-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "unprocessable-content",
    429: "too-many-requests",
    500: "internal-error",
    503: "service-unavailable",
}


@dataclass(frozen=True)
class HttpProblem(Exception):
    """An error answer: status, a short title, a sentence of detail, and the problems."""

    status: int
    title: str
    detail: str
    problems: tuple[Problem, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


def invalid(exc: InvalidInput, title: str = "Invalid request") -> HttpProblem:
    """400 from an :class:`InvalidInput`, keeping every problem it found."""
    count = len(exc.problems)
    detail = f"{count} problem{'s' if count != 1 else ''} in the {exc.what}"
    return HttpProblem(400, title, detail, exc.problems)


def problem_body(problem: HttpProblem) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://meterline.dev/problems/{_TYPES.get(problem.status, 'error')}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.problems:
        body["problems"] = [_problem(p) for p in problem.problems]
    return body


def _problem(p: Problem) -> dict[str, str]:
    return {"path": p.path, "message": p.message, "fix": p.fix}
