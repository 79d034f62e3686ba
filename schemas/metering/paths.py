"""The small JSONPath subset meters use to point into an event's ``data``.

Supported: ``$`` followed by any mix of ``.name``, ``["name"]`` / ``['name']`` and
``[index]`` steps, e.g. ``$.usage.tokens``, ``$.items[0].qty``, ``$["cost usd"]``.
Filters, wildcards and slices are rejected at definition time: a meter extracts exactly
one value per event, so a path that could match several nodes has no meaning here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MISSING", "JsonPath"]

_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<quote>["'])(?P<key>(?:(?!(?P=quote)).)*)(?P=quote)\s*\]""",
    re.VERBOSE,
)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Returned by :meth:`JsonPath.find` when the path does not resolve."""


@dataclass(frozen=True, slots=True)
class JsonPath:
    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        """Compile ``text``; raise ``ValueError`` naming the offending position."""
        if not text.startswith("$"):
            raise ValueError(f"JSONPath {text!r} must start with '$', e.g. '$.tokens'")
        steps: list[str | int] = []
        pos = 1
        while pos < len(text):
            match = _STEP.match(text, pos)
            if match is None:
                raise ValueError(
                    f"JSONPath {text!r}: unsupported syntax at position {pos}; "
                    "use .name, ['name'] or [index] steps only"
                )
            if match["name"] is not None:
                steps.append(match["name"])
            elif match["index"] is not None:
                steps.append(int(match["index"]))
            else:
                steps.append(match["key"])
            pos = match.end()
        if not steps:
            raise ValueError(f"JSONPath {text!r} selects the whole data object; name a field")
        return cls(text=text, steps=tuple(steps))

    def find(self, document: Any) -> Any:
        """The value at this path in ``document``, or :data:`MISSING`."""
        node = document
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, Sequence) or isinstance(node, str | bytes):
                    return MISSING
                try:
                    node = node[step]
                except IndexError:
                    return MISSING
            else:
                if not isinstance(node, dict) or step not in node:
                    return MISSING
                node = node[step]
        return node

    def __str__(self) -> str:
        return self.text
