"""The API's read queries: small objects whose ``to_sql(table)`` returns SQL text.

They read the tables owned by ``schemas.storage`` (``meter_windows``, ``invoices``)
without changing them; each is tested as text and against a real server.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.storage.sql import lit

__all__ = ["InvoiceGet", "InvoiceList", "InvoiceStats", "MeterSubjects"]


@dataclass(frozen=True, slots=True)
class MeterSubjects:
    """Rows ``(subject,)``: every subject with usage on a meter, sorted."""

    namespace: str
    meter: str
    subjects: tuple[str, ...] | None = None
    """When set, only these subjects (a customer token's view)."""

    def to_sql(self, table: str) -> str:
        where = [f"namespace = {lit(self.namespace)}", f"meter = {lit(self.meter)}"]
        if self.subjects is not None:
            listed = ", ".join(lit(s) for s in self.subjects) or "''"
            where.append(f"subject IN ({listed})")
        return f"SELECT DISTINCT subject FROM {table} WHERE {' AND '.join(where)} ORDER BY subject"


@dataclass(frozen=True, slots=True)
class InvoiceList:
    """Rows ``(document,)`` of a namespace's invoices, newest period first.

    ``period_from_s``/``period_to_s`` select invoices whose period starts in
    ``[from, to)``."""

    namespace: str
    customer: str | None = None
    period_from_s: int | None = None
    period_to_s: int | None = None
    limit: int = 100

    def to_sql(self, table: str) -> str:
        where = [f"namespace = {lit(self.namespace)}"]
        if self.customer is not None:
            where.append(f"customer_id = {lit(self.customer)}")
        if self.period_from_s is not None:
            where.append(f"period_start_s >= {self.period_from_s}")
        if self.period_to_s is not None:
            where.append(f"period_start_s < {self.period_to_s}")
        return (
            f"SELECT document FROM {table} FINAL WHERE {' AND '.join(where)}"
            f" ORDER BY period_start_s DESC, customer_id, invoice_id LIMIT {int(self.limit)}"
        )


@dataclass(frozen=True, slots=True)
class InvoiceGet:
    """Rows ``(customer_id, document)`` of one invoice (zero or one row)."""

    namespace: str
    invoice_id: str

    def to_sql(self, table: str) -> str:
        return (
            f"SELECT customer_id, document FROM {table} FINAL"
            f" WHERE namespace = {lit(self.namespace)} AND invoice_id = {lit(self.invoice_id)}"
            " LIMIT 1"
        )


@dataclass(frozen=True, slots=True)
class InvoiceStats:
    """One row ``(invoices stored, distinct periods invoiced)`` for the metrics page."""

    namespace: str

    def to_sql(self, table: str) -> str:
        return (
            f"SELECT count(), uniqExact(period_start_s) FROM {table} FINAL"
            f" WHERE namespace = {lit(self.namespace)}"
        )
