"""The one exception tree of Meterline.

Every error the project raises on purpose derives from :class:`MeterlineError`::

    MeterlineError
    ├── InvalidInput            bad data from a user: events, meter definitions, rate cards,
    │                           CLI arguments.  Carries every problem at once, each with the
    │                           field path and what would fix it.
    ├── ServiceUnavailable      Kafka or ClickHouse cannot be reached; retry later.
    ├── DeliveryFailed          Kafka refused or timed out a write; the caller still owns it.
    └── InvariantViolated       a check that guards exactness failed (e.g. reconcile, totals).

Callers catch the narrowest class they can act on.  Nothing catches ``MeterlineError``
to hide it: the CLIs turn it into a message and an exit code, the HTTP layer into a
problem-details body.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DeliveryFailed",
    "InvalidInput",
    "InvariantViolated",
    "MeterlineError",
    "Problem",
    "ServiceUnavailable",
]


class MeterlineError(Exception):
    """Root of every error Meterline raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: where it is, what is wrong, and how to fix it."""

    path: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.path or '<root>'}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text


class InvalidInput(MeterlineError):
    """Input rejected; ``problems`` lists every defect found, not just the first."""

    def __init__(self, what: str, problems: Iterable[Problem]) -> None:
        self.what = what
        self.problems: tuple[Problem, ...] = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid {what}: {count} {noun}\n{lines}")

    def __reduce__(self) -> tuple[type[InvalidInput], tuple[str, tuple[Problem, ...]]]:
        """Pickled as its parts (a process pool hands it back to the caller whole)."""
        return type(self), (self.what, self.problems)

    @classmethod
    def single(cls, what: str, path: str, message: str, fix: str = "") -> InvalidInput:
        """One problem only (e.g. the input could not even be parsed)."""
        return cls(what, [Problem(path=path, message=message, fix=fix)])

    @classmethod
    def from_pydantic(cls, what: str, errors: Sequence[object], prefix: str = "") -> InvalidInput:
        """Build from ``pydantic.ValidationError.errors()`` output."""
        problems = []
        for err in errors:
            assert isinstance(err, dict)
            loc = ".".join(str(part) for part in err.get("loc", ()))
            path = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
            message = str(err.get("msg", "invalid"))
            problems.append(Problem(path=path, message=message, fix=_fix_for(err)))
        return cls(what, problems)


def _fix_for(err: dict[str, object]) -> str:
    """A short, generic remedy for the common pydantic error kinds."""
    kind = str(err.get("type", ""))
    ctx = err.get("ctx")
    if kind == "missing":
        return "add this field"
    if kind == "extra_forbidden":
        return "remove this field or check its spelling"
    if kind == "string_too_short" and isinstance(ctx, dict) and "min_length" in ctx:
        least = ctx["min_length"]
        return "send a non-empty string" if least == 1 else f"send at least {least} characters"
    if kind == "string_too_long" and isinstance(ctx, dict) and "max_length" in ctx:
        return f"send at most {ctx['max_length']} characters"
    if kind.startswith("string_"):
        return "send a string"
    if kind in {"decimal_parsing", "decimal_type", "float_parsing", "int_parsing"}:
        return 'send a number, e.g. 12.5 or "12.5"'
    if kind.startswith("datetime") or kind.startswith("timezone"):
        return "send an RFC 3339 timestamp with a UTC offset, e.g. 2026-11-01T12:00:00.000Z"
    if kind in {"literal_error", "enum"} and isinstance(ctx, dict) and "expected" in ctx:
        return f"use one of {ctx['expected']}"
    if kind == "greater_than_equal" and isinstance(ctx, dict) and "ge" in ctx:
        return f"use {ctx['ge']} or more"
    if kind == "greater_than" and isinstance(ctx, dict) and "gt" in ctx:
        return f"use a value above {ctx['gt']}"
    if kind == "value_error" and isinstance(ctx, dict) and "fix" in ctx:
        return str(ctx["fix"])
    return ""


class ServiceUnavailable(MeterlineError):
    """A backing service (Kafka, ClickHouse) could not be reached in time."""


class DeliveryFailed(MeterlineError):
    """A Kafka write was not acknowledged; the record is not accepted."""


class InvariantViolated(MeterlineError):
    """An exactness check failed: totals disagree, a reconcile found a difference."""
