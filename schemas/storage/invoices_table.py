"""The invoice ledger: ``invoice_drafts``, ``invoices``, ``invoice_lines``, ``invoice_status``.

* ``invoice_drafts``: every invoice as built, *before* it is published — its document,
  ingestion cutoff, revision and the earlier periods it covers for late usage.  It is
  the billing run's intent record: a draft without an ``invoices`` row is pending, and
  the next run finishes it (see ``invoicing.run``).
* ``invoices`` and ``invoice_lines``: every invoice issued (committed to the
  ``invoices`` topic).  Adjustment lines are stored with ``model`` = ``adjustment:<model>``;
  the document holds their full detail.
* ``invoice_status``: lifecycle events after issue (``void`` with its reason), append-only.

Invoice ids are deterministic (customer, subscription, period, revision), so the first
three tables are ReplacingMergeTree on them: writing the same invoice again collapses.
The columns of ``invoices`` and ``invoice_lines`` are unchanged since the first version
(ClickHouse 18.16 has no ``ADD COLUMN IF NOT EXISTS``); what is new lives in new tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from schemas.storage.sql import OnTable, Statement, lit

__all__ = [
    "DraftRow",
    "InvoiceGet",
    "InvoiceLineRow",
    "InvoiceList",
    "InvoiceRow",
    "InvoiceStats",
    "InvoicesTable",
    "StatusRow",
]

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
DRAFT_COLUMNS = (
    "namespace",
    "invoice_id",
    "customer_id",
    "subscription_id",
    "period_start_s",
    "period_end_s",
    "revision",
    "cutoff_s",
    "covers",
    "total",
    "created_ms",
    "document",
)
STATUS_COLUMNS = ("namespace", "invoice_id", "status_rank", "status", "reason", "at_ms")


@dataclass(frozen=True, slots=True)
class DraftRow:
    namespace: str
    invoice_id: str
    customer_id: str
    subscription_id: str
    period_start_s: int
    period_end_s: int
    revision: int
    cutoff_s: int
    covers: tuple[int, ...]
    total: Decimal
    created_ms: int
    document: str

    def as_row(self) -> tuple[object, ...]:
        return tuple(
            list(getattr(self, name)) if name == "covers" else getattr(self, name)
            for name in DRAFT_COLUMNS
        )


@dataclass(frozen=True, slots=True)
class StatusRow:
    namespace: str
    invoice_id: str
    status_rank: int
    status: str
    reason: str
    at_ms: int

    def as_row(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in STATUS_COLUMNS)


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
        self.database = database
        self.name = f"{database}.invoices"
        self.lines = f"{database}.invoice_lines"
        self.drafts = f"{database}.invoice_drafts"
        self.status = f"{database}.invoice_status"

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
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.drafts} ("
                " namespace String, invoice_id String, customer_id String,"
                " subscription_id String, period_start_s UInt32, period_end_s UInt32,"
                " revision UInt32, cutoff_s UInt32, covers Array(UInt32),"
                " total Decimal(38, 9), created_ms Int64, document String"
                ") ENGINE = ReplacingMergeTree() ORDER BY (namespace, invoice_id)"
            ),
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.status} ("
                " namespace String, invoice_id String, status_rank UInt8, status String,"
                " reason String, at_ms Int64"
                ") ENGINE = MergeTree() ORDER BY (namespace, invoice_id, status_rank)"
            ),
        ]

    def insert_drafts(
        self, rows: Sequence[DraftRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.drafts, DRAFT_COLUMNS, [row.as_row() for row in rows]

    def insert_status(
        self, rows: Sequence[StatusRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.status, STATUS_COLUMNS, [row.as_row() for row in rows]

    def ledger(self, namespace: str) -> Statement:
        """Rows ``(invoice_id, customer_id, subscription_id, period_start_s, period_end_s,
        revision, cutoff_s, covers, created_ms, issued, voided)`` of every draft;
        ``issued`` is 1 when the invoice is in ``invoices``, ``voided`` 1 when a void
        event is recorded."""
        ns = lit(namespace)
        return Statement(
            "SELECT d.invoice_id, d.customer_id, d.subscription_id, d.period_start_s,"
            " d.period_end_s, d.revision, d.cutoff_s, d.covers, d.created_ms,"
            f" d.invoice_id IN (SELECT invoice_id FROM {self.name} WHERE namespace = {ns})"
            " AS issued,"
            f" d.invoice_id IN (SELECT invoice_id FROM {self.status}"
            f" WHERE namespace = {ns} AND status_rank = 2) AS voided"
            f" FROM {self.drafts} AS d FINAL WHERE d.namespace = {ns}"
            " ORDER BY d.customer_id, d.subscription_id, d.period_start_s, d.revision"
        )

    def documents(self, namespace: str, invoice_ids: Sequence[str]) -> Statement:
        """Rows ``(invoice_id, created_ms, document)`` of the given drafts."""
        ids = ", ".join(lit(i) for i in invoice_ids) or "''"
        return Statement(
            f"SELECT invoice_id, created_ms, document FROM {self.drafts} FINAL"
            f" WHERE namespace = {lit(namespace)} AND invoice_id IN ({ids})"
            " ORDER BY invoice_id"
        )

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

    def issued_ending(self, namespace: str, end_from_s: int, end_to_s: int) -> Statement:
        """Rows ``(invoice_id, customer_id, subscription_id, period_start_s, period_end_s,
        revision, cutoff_s, plan, currency)`` of every issued invoice that is not void and
        whose period ends in ``[end_from_s, end_to_s]``: what a pricing backtest compares
        with.  Drafts not issued yet (a crashed run's) are left out, like void ones."""
        ns, ends = lit(namespace), f"period_end_s >= {end_from_s} AND period_end_s <= {end_to_s}"
        return Statement(
            "SELECT invoice_id, customer_id, subscription_id, period_start_s, period_end_s,"
            " revision, cutoff_s, plan, currency FROM ("
            " SELECT invoice_id, customer_id, subscription_id, period_start_s, period_end_s,"
            f" revision, cutoff_s FROM {self.drafts} FINAL WHERE namespace = {ns} AND {ends}"
            f" AND invoice_id NOT IN (SELECT invoice_id FROM {self.status}"
            f" WHERE namespace = {ns} AND status_rank = 2)) AS d"
            " ANY INNER JOIN ("
            f" SELECT invoice_id, plan, currency FROM {self.name} FINAL"
            f" WHERE namespace = {ns} AND {ends}) AS i USING invoice_id"
            " ORDER BY customer_id, subscription_id, period_start_s, revision"
        )

    def usage_amounts_ending(self, namespace: str, end_from_s: int, end_to_s: int) -> Statement:
        """Rows ``(invoice_id, meter, model, amount)``: the usage lines' amounts added up per
        invoice, meter and model, for the invoices whose period ends in ``[end_from_s,
        end_to_s]``.  Adjustment lines (late usage of *earlier* periods) and prepaid-credit
        lines (model ``credit``) are left out;
        charges without a meter (flat fees, minimum true-ups) have ``meter`` ''."""
        ns = lit(namespace)
        return Statement(
            f"SELECT invoice_id, meter, model, sum(amount) FROM {self.lines} FINAL"
            f" WHERE namespace = {ns} AND model NOT LIKE 'adjustment:%' AND model != 'credit'"
            f" AND invoice_id IN (SELECT invoice_id FROM {self.name} WHERE namespace = {ns}"
            f" AND period_end_s >= {end_from_s} AND period_end_s <= {end_to_s})"
            " GROUP BY invoice_id, meter, model ORDER BY invoice_id, meter, model"
        )

    def for_period(self, namespace: str, period_start_s: int) -> Statement:
        """Rows ``(invoice_id, customer_id, currency, total, document)`` of a period."""
        return Statement(
            f"SELECT invoice_id, customer_id, currency, total, document FROM {self.name} FINAL"
            f" WHERE namespace = {lit(namespace)} AND period_start_s = {period_start_s}"
            " ORDER BY customer_id, invoice_id"
        )


@dataclass(frozen=True, slots=True)
class InvoiceList(OnTable):
    """Rows ``(document,)`` of a namespace's invoices, newest period first.

    ``period_from_s``/``period_to_s`` select invoices whose period starts in
    ``[from, to)``."""

    namespace: str
    customer: str | None = None
    period_from_s: int | None = None
    period_to_s: int | None = None
    limit: int = 100

    def _sql(self, table: str) -> str:
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
class InvoiceGet(OnTable):
    """Rows ``(customer_id, document)`` of one invoice (zero or one row)."""

    namespace: str
    invoice_id: str

    def _sql(self, table: str) -> str:
        return (
            f"SELECT customer_id, document FROM {table} FINAL"
            f" WHERE namespace = {lit(self.namespace)} AND invoice_id = {lit(self.invoice_id)}"
            " LIMIT 1"
        )


@dataclass(frozen=True, slots=True)
class InvoiceStats(OnTable):
    """One row ``(invoices stored, distinct periods invoiced)`` for the metrics page."""

    namespace: str

    def _sql(self, table: str) -> str:
        return (
            f"SELECT count(), uniqExact(period_start_s) FROM {table} FINAL"
            f" WHERE namespace = {lit(self.namespace)}"
        )
