"""SQL text building: literal rendering and the query-object protocol.

Statements are rendered to plain SQL text with literals inlined through :func:`lit`, so
the same text runs on a ClickHouse server and on chDB and can be asserted on as text.
Only values from our own code and validated input reach :func:`lit`; it escapes strings
per ClickHouse's quoting rules regardless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

__all__ = ["LISTED_AT_MOST", "OnTable", "Query", "Statement", "ident", "lit"]

DECIMAL_SCALE = 9
#: Values named in one ``IN`` list; readers asked for more read wider and filter as they
#: collect (100k ids pass ClickHouse's 256 KiB query limit).
LISTED_AT_MOST = 1000
"""Quantities are stored as Decimal(38, 9): 29 integer digits, 9 fractional."""


class Query(Protocol):
    """Every statement has one shape: an object whose ``to_sql()`` is the SQL text
    (:class:`Statement`).  A table's statements are methods of its table object
    (``EventsTable(db).count(ns)``); a query that can run on several tables (the minute
    table or a rollup, chosen by ``schemas.storage.planner``) is a value whose
    ``on(table)`` gives its :class:`Statement` (``UsageQuery(...).on(table)``)."""

    def to_sql(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL text, rendered with literals inlined (so the same text runs on both engines)."""

    sql: str

    def to_sql(self) -> str:
        return self.sql


class OnTable:
    """A query value that runs on a table named later (the minute table or a rollup, the
    invoices table): subclasses write ``_sql(table)``, :meth:`on` gives the statement."""

    __slots__ = ()

    def on(self, table: str) -> Statement:
        """This query on ``table``."""
        return Statement(self._sql(table))

    def _sql(self, table: str) -> str:
        raise NotImplementedError


def ident(name: str) -> str:
    """A safely quoted identifier (database, table or column name)."""
    if not name.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"not a safe identifier: {name!r}")
    return ".".join(f"`{part}`" for part in name.split("."))


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def lit(value: Any) -> str:
    """Render a Python value as a ClickHouse literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return f"toDecimal128({_quote(format(value, 'f'))}, {DECIMAL_SCALE})"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bytes):  # UTF-8 text (an event line), not a sequence of numbers
        return _quote(value.decode("utf-8"))
    if isinstance(value, Sequence):
        return "[" + ", ".join(lit(item) for item in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as a ClickHouse literal")


def values_literal(value: Any) -> str:
    """Render a value for an ``INSERT ... VALUES`` row (decimals as bare numbers)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return lit(value)
