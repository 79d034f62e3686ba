"""``invoices`` and ``invoice_lines``: every invoice emitted, as issued.

An invoice id is deterministic (customer, plan, period, revision), so the tables are
ReplacingMergeTree on it: writing the same invoice again is harmless, and a rerun checks
:meth:`InvoicesTable.existing` to emit nothing that already exists.  The full invoice
document is kept as JSON next to the columns used for queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from schemas.storage.sql import Statement, lit

__all__ = ["InvoiceLineRow", "InvoiceRow", "InvoicesTable"]

INVOICE_COLUMNS = (
    "namespace",
    "invoice_id",
    "customer_id",
    "plan",
    "currency",
    "period_start_s",
    "period_end_s",
    "total",
    "line_count",
    "created_ms",
    "document",
)
LINE_COLUMNS = (
    "namespace",
    "invoice_id",
    "line_no",
    "meter",
    "model",
    "quantity",
    "amount",
    "unrounded_amount",
)


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    namespace: str
    invoice_id: str
    customer_id: str
    plan: str
    currency: str
    period_start_s: int
    period_end_s: int
    total: Decimal
    line_count: int
    created_ms: int
    document: str

    def as_row(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in INVOICE_COLUMNS)


@dataclass(frozen=True, slots=True)
class InvoiceLineRow:
    namespace: str
    invoice_id: str
    line_no: int
    meter: str
    model: str
    quantity: Decimal
    amount: Decimal
    unrounded_amount: str

    def as_row(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in LINE_COLUMNS)


class InvoicesTable:
    def __init__(self, database: str) -> None:
        self.name = f"{database}.invoices"
        self.lines = f"{database}.invoice_lines"

    def ddl(self) -> list[Statement]:
        return [
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.name} ("
                " namespace String, invoice_id String, customer_id String, plan String,"
                " currency String, period_start_s UInt32, period_end_s UInt32,"
                " total Decimal(38, 9), line_count UInt32, created_ms Int64, document String"
                ") ENGINE = ReplacingMergeTree() ORDER BY (namespace, invoice_id)"
            ),
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.lines} ("
                " namespace String, invoice_id String, line_no UInt32, meter String,"
                " model String, quantity Decimal(38, 9), amount Decimal(38, 9),"
                " unrounded_amount String"
                ") ENGINE = ReplacingMergeTree() ORDER BY (namespace, invoice_id, line_no)"
            ),
        ]

    def insert_invoices(
        self, rows: Sequence[InvoiceRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.name, INVOICE_COLUMNS, [row.as_row() for row in rows]

    def insert_lines(
        self, rows: Sequence[InvoiceLineRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.lines, LINE_COLUMNS, [row.as_row() for row in rows]

    def existing(self, namespace: str, invoice_ids: Sequence[str]) -> Statement:
        """Rows ``(invoice_id,)`` of the given ids that are already stored."""
        ids = ", ".join(lit(i) for i in invoice_ids) or "''"
        return Statement(
            f"SELECT DISTINCT invoice_id FROM {self.name}"
            f" WHERE namespace = {lit(namespace)} AND invoice_id IN ({ids})"
        )

    def for_period(self, namespace: str, period_start_s: int) -> Statement:
        """Rows ``(invoice_id, customer_id, currency, total, document)`` of a period."""
        return Statement(
            f"SELECT invoice_id, customer_id, currency, total, document FROM {self.name} FINAL"
            f" WHERE namespace = {lit(namespace)} AND period_start_s = {period_start_s}"
            " ORDER BY customer_id, invoice_id"
        )
