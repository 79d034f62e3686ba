"""The invoice ledger in ClickHouse: what has been billed, drafts, issued invoices and
voids (the I/O side of a billing run, ``invoicing.run``).

* :func:`record_card_version`: the rate-card version a run prices with, stored before
  the first draft that names it.
* :func:`read_ledger`: every invoice of the namespace as planning sees it (``Billed``),
  and the drafts a crashed run left pending.
* :func:`store_drafts` / :func:`store_issued`: a run's intent record, then the credit
  consumption and the invoice lines, followed by the ``invoices`` rows that mark them
  issued.
* :func:`finish_pending`: publish the pending drafts that are not on the topic yet, then
  store them as issued (idempotent).
* :func:`void_invoice`: publish a status record, then record it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson

from invoicing.credit_ledger import consumption_of, record_entries
from invoicing.document import CreditLine, InvoiceDocument
from invoicing.invoice import Invoice
from invoicing.lifecycle import RANK, Status, check_transition
from invoicing.plan import Billed
from rating import RateCard
from rating.versions import card_document, card_version
from schemas.errors import InvalidInput, InvariantViolated
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import (
    DraftRow,
    InvoiceLineRow,
    InvoiceRow,
    InvoicesTable,
    StatusRow,
)
from schemas.storage.rate_cards_table import RateCardRow, RateCardsTable
from schemas.timeutil import format_ms, now_ms, parse_wire_time

__all__ = [
    "STATUS_SCHEMA",
    "Ledger",
    "Publisher",
    "finish_pending",
    "read_ledger",
    "record_card_version",
    "rows_from_document",
    "store_drafts",
    "store_issued",
    "void_invoice",
]

RECOVERY_MARGIN_MS = 10 * 60_000
"""How far before a draft's creation the topic is searched for it (clock skew margin)."""


class Publisher(Protocol):
    def publish(self, records: Sequence[tuple[str, bytes]]) -> None: ...

    def committed(self, keys: Collection[str], since_ms: int) -> set[str]: ...


def record_card_version(
    engine: Engine, database: str, namespace: str, card: RateCard, recorded_ms: int
) -> str:
    """Store ``card``'s version unless it is already stored; return the version.

    Called before the drafts are stored, so every stored invoice's version can be read
    back.  A crash after it leaves a version no invoice names yet, which costs nothing
    (the next run finds it recorded); two runs recording it at once write identical
    content, which the table collapses."""
    table = RateCardsTable(database)
    version = card_version(card)
    if not engine.execute(table.known(namespace, [version]).to_sql()):
        document = card_document(card)
        row = RateCardRow(
            namespace,
            version,
            hashlib.sha256(document).hexdigest(),
            recorded_ms,
            document.decode(),
        )
        engine.insert(*table.insert([row]))
    return version


def store_drafts(
    engine: Engine, table: InvoicesTable, invoices: Sequence[Invoice], documents: dict[str, bytes]
) -> None:
    """The run's intent record: each invoice's document as a draft."""
    engine.insert(*table.insert_drafts([_draft_row(i, documents[i.id]) for i in invoices]))


def _draft_row(invoice: Invoice, document: bytes) -> DraftRow:
    return DraftRow(
        namespace=invoice.namespace,
        invoice_id=invoice.id,
        customer_id=invoice.customer.id,
        subscription_id=invoice.customer.subscription,
        period_start_s=invoice.period.start_s,
        period_end_s=invoice.period.end_s,
        revision=invoice.revision,
        cutoff_s=invoice.cutoff_s,
        covers=invoice.covers,
        total=invoice.total,
        created_ms=invoice.created_ms,
        document=document.decode(),
    )


@dataclass(frozen=True, slots=True)
class Ledger:
    by_subscription: dict[tuple[str, str], list[Billed]]
    pending: list[tuple[str, int]]

    def get(self, key: tuple[str, str], default: list[Billed]) -> list[Billed]:
        return self.by_subscription.get(key, default)


def read_ledger(engine: Engine, table: InvoicesTable, namespace: str) -> Ledger:
    by_subscription: dict[tuple[str, str], list[Billed]] = {}
    pending: list[tuple[str, int]] = []
    for row in engine.execute(table.ledger(namespace).to_sql()):
        (invoice, customer, subscription, start, end, revision, cutoff, covers, created) = row[:9]
        issued, voided = bool(row[9]), bool(row[10])
        status = Status.VOID if voided else Status.ISSUED if issued else Status.DRAFT
        by_subscription.setdefault((str(customer), str(subscription)), []).append(
            Billed(
                str(invoice),
                int(start),
                int(end),
                int(revision),
                int(cutoff),
                tuple(int(c) for c in covers),
                status,
            )
        )
        if status is Status.DRAFT:
            pending.append((str(invoice), int(created)))
    return Ledger(by_subscription, pending)


def finish_pending(
    engine: Engine,
    table: InvoicesTable,
    namespace: str,
    ledger: Ledger,
    publish: Publisher,
    report: Callable[[str], None],
) -> list[str]:
    if not ledger.pending:
        return []
    ids = [invoice for invoice, _ in ledger.pending]
    since = min(created for _, created in ledger.pending) - RECOVERY_MARGIN_MS
    committed = publish.committed(ids, since)
    rows = engine.execute(table.documents(namespace, ids).to_sql())
    documents = {str(r[0]): str(r[2]).encode() for r in rows}
    missing = [(i, documents[i]) for i in ids if i not in committed]
    report(
        f"found {len(ids)} pending drafts of an earlier run: {len(committed)} already "
        f"committed to Kafka, publishing {len(missing)}"
    )
    publish.publish(missing)
    store_issued(engine, table, namespace, [documents[i] for i in ids])
    return ids


def store_issued(
    engine: Engine, table: InvoicesTable, namespace: str, documents: Sequence[bytes]
) -> None:
    """The credit consumption the documents record (``credit_ledger``), the lines, then
    the ``invoices`` rows that mark the invoices issued.  A crash in between repeats
    all three (entries and rows collapse on read), and the next run's planning, which
    comes after this step, sees the consumption."""
    invoices, lines, consumed = [], [], []
    for document in documents:
        doc = InvoiceDocument.from_json(document)
        invoice, invoice_lines = rows_from_document(namespace, doc, document)
        invoices.append(invoice)
        lines += invoice_lines
        consumed += consumption_of(doc)
    record_entries(engine, table.database, namespace, consumed)
    engine.insert(*table.insert_lines(lines))
    engine.insert(*table.insert_invoices(invoices))


def rows_from_document(
    namespace: str, doc: InvoiceDocument, raw: bytes
) -> tuple[InvoiceRow, list[InvoiceLineRow]]:
    """The stored rows of an invoice, derived from its document (pure)."""
    row = InvoiceRow(
        namespace=namespace,
        invoice_id=doc.invoice_id,
        customer_id=doc.customer_id,
        plan=doc.plan,
        currency=doc.currency,
        period_start_s=_ms(doc.period.start) // 1000,
        period_end_s=_ms(doc.period.end) // 1000,
        total=Decimal(doc.total),
        line_count=len(doc.lines),
        created_ms=_ms(doc.created_at),
        document=raw.decode(),
    )
    lines = [
        InvoiceLineRow(
            namespace=namespace,
            invoice_id=doc.invoice_id,
            line_no=line.line_no,
            meter=line.meter or "",
            model=line.model if line.kind == "usage" else f"adjustment:{line.model}",
            quantity=Decimal(line.quantity),
            amount=Decimal(line.amount),
            unrounded_amount=line.unrounded_amount if line.kind == "usage" else line.amount,
        )
        if not isinstance(line, CreditLine)
        else InvoiceLineRow(
            namespace=namespace,
            invoice_id=doc.invoice_id,
            line_no=line.line_no,
            meter="",
            model="credit",
            quantity=Decimal(0),
            amount=Decimal(line.amount),
            unrounded_amount=line.amount,
        )
        for line in doc.lines
    ]
    return row, lines


def _ms(text: str) -> int:
    parsed = parse_wire_time(text)
    if parsed is None:
        raise InvariantViolated(f"an invoice document holds {text!r}, not an RFC 3339 time")
    return parsed[0]


STATUS_SCHEMA = "meterline.invoice-status/1"


def void_invoice(
    *,
    namespace: str,
    database: str,
    invoice_id: str,
    reason: str,
    engine: Engine,
    publish: Publisher | None,
) -> dict[str, Any]:
    """Void an issued invoice: publish a status record, then record it in ClickHouse.

    The invoice itself is not touched.  A crash between the two steps leaves the void
    on the topic but not in ClickHouse; running the command again publishes it once more
    (consumers key status records on ``(invoice_id, status)``) and records it.
    """
    table = InvoicesTable(database)
    ledger = read_ledger(engine, table, namespace)
    found = [b for bs in ledger.by_subscription.values() for b in bs if b.invoice_id == invoice_id]
    if not found:
        raise InvalidInput.single(
            "invoice lifecycle", invoice_id, "no such invoice", "give an id from the run output"
        )
    check_transition(invoice_id, found[0].status, Status.VOID, reason)
    at = now_ms()
    record = {
        "schema": STATUS_SCHEMA,
        "invoice_id": invoice_id,
        "status": str(Status.VOID),
        "reason": reason,
        "at": format_ms(at),
    }
    if publish is not None:
        publish.publish([(invoice_id, orjson.dumps(record, option=orjson.OPT_SORT_KEYS))])
    engine.insert(
        *table.insert_status(
            [StatusRow(namespace, invoice_id, RANK[Status.VOID], str(Status.VOID), reason, at)]
        )
    )
    return record
