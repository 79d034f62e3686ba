"""The credit ledger's I/O: stored rows to grants and entries and back, and the writes.

* :func:`read_book`: the grants, entries and released invoices of some customers.
* :func:`record_entries`: append entries (a grant, a void, consumption).
* :func:`consumption_of`: the consumption an invoice document records in its credit
  lines — what the billing run appends, derived from the document itself, so the ledger
  and the invoice can never disagree.

Writes are appends of entries with deterministic ids; writing one twice (a crash and a
rerun) stores a copy every read collapses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from invoicing.credit_grants import EntryKind, Grant, LedgerEntry, Rollover, grant_entry
from invoicing.credits import CreditBook
from invoicing.document import CreditLine, InvoiceDocument
from rating.money import minor_units
from schemas.errors import InvariantViolated
from schemas.storage.credits_table import CreditRow, CreditsTable
from schemas.storage.engine import Engine
from schemas.storage.sql import LISTED_AT_MOST
from schemas.timeutil import from_ms, now_ms, parse_instant, to_ms

__all__ = [
    "book_from_rows",
    "consumption_of",
    "entry_row",
    "grant_row",
    "read_book",
    "record_entries",
    "record_grant",
]


def grant_row(namespace: str, grant: Grant, recorded_ms: int) -> CreditRow:
    entry = grant_entry(grant)
    rollover = grant.rollover
    return CreditRow(
        namespace=namespace,
        customer_id=grant.customer_id,
        grant_id=grant.grant_id,
        entry_id=entry.entry_id,
        kind=str(EntryKind.GRANT),
        currency=grant.currency,
        amount=grant.amount,
        at_ms=to_ms(grant.granted_at),
        priority=grant.priority,
        effective_ms=to_ms(grant.effective_at),
        expires_ms=0 if grant.expires_at is None else to_ms(grant.expires_at),
        rollover_max=Decimal(0) if rollover is None else rollover.max_amount,
        rollover_until_ms=0 if rollover is None else to_ms(rollover.until),
        name=grant.name,
        recorded_ms=recorded_ms,
    )


def entry_row(namespace: str, entry: LedgerEntry, recorded_ms: int) -> CreditRow:
    return CreditRow(
        namespace=namespace,
        customer_id=entry.customer_id,
        grant_id=entry.grant_id,
        entry_id=entry.entry_id,
        kind=str(entry.kind),
        currency=entry.currency,
        amount=entry.amount,
        at_ms=to_ms(entry.at),
        invoice_id=entry.invoice_id,
        reason=entry.reason,
        recorded_ms=recorded_ms,
    )


def _money(value: object, currency_digits: int) -> Decimal:
    """A stored Decimal(38, 9) back at the currency's scale (exact: it was stored so)."""
    number = Decimal(str(value))
    return number.quantize(Decimal(1).scaleb(-currency_digits))


def read_book(
    engine: Engine, database: str, namespace: str, customers: Sequence[str] | None = None
) -> CreditBook:
    """The book of ``customers`` (every customer when ``None``); more than
    :data:`~schemas.storage.sql.LISTED_AT_MOST` are read as the namespace's ledger and
    kept here."""
    many = customers is not None and len(customers) > LISTED_AT_MOST
    statement = CreditsTable(database).entries(namespace, None if many else customers)
    book = book_from_rows(engine.execute(statement.to_sql()))
    if not many or customers is None:
        return book
    wanted = set(customers)
    return replace(
        book,
        grants=tuple(g for g in book.grants if g.customer_id in wanted),
        entries=tuple(e for e in book.entries if e.customer_id in wanted),
    )


def book_from_rows(rows: Iterable[Sequence[Any]]) -> CreditBook:
    """The book from the rows of ``CreditsTable.entries`` (pure; the API runs the same
    statement on its own thread pool)."""
    grants: list[Grant] = []
    entries: list[LedgerEntry] = []
    released: set[str] = set()
    for row in rows:
        (_, customer, grant_id, entry_id, kind, currency, amount, at_ms, invoice, reason) = row[:10]
        (priority, effective_ms, expires_ms, rollover_max, until_ms, name) = row[10:16]
        digits = minor_units(str(currency))
        if bool(row[17]):
            released.add(str(invoice))
        if kind == EntryKind.GRANT:
            rollover = None
            if int(until_ms):
                rollover = Rollover(_money(rollover_max, digits), from_ms(int(until_ms)))
            grants.append(
                Grant(
                    grant_id=str(grant_id),
                    customer_id=str(customer),
                    currency=str(currency),
                    amount=_money(amount, digits),
                    priority=int(priority),
                    effective_at=from_ms(int(effective_ms)),
                    expires_at=from_ms(int(expires_ms)) if int(expires_ms) else None,
                    rollover=rollover,
                    name=str(name),
                    granted_at=from_ms(int(at_ms)),
                )
            )
            continue
        entries.append(
            LedgerEntry(
                entry_id=str(entry_id),
                kind=EntryKind(str(kind)),
                grant_id=str(grant_id),
                customer_id=str(customer),
                currency=str(currency),
                amount=_money(amount, digits),
                at=from_ms(int(at_ms)),
                invoice_id=str(invoice),
                reason=str(reason),
            )
        )
    return CreditBook(tuple(grants), tuple(entries), frozenset(released))


def record_grant(engine: Engine, database: str, namespace: str, grant: Grant) -> None:
    engine.insert(*CreditsTable(database).insert([grant_row(namespace, grant, now_ms())]))


def record_entries(
    engine: Engine, database: str, namespace: str, entries: Iterable[LedgerEntry]
) -> None:
    recorded = now_ms()
    rows = [entry_row(namespace, entry, recorded) for entry in entries]
    if rows:
        engine.insert(*CreditsTable(database).insert(rows))


def consumption_of(document: InvoiceDocument) -> list[LedgerEntry]:
    """The consumption entries an invoice's credit lines record (pure)."""
    instant = parse_instant(document.period.end)
    if instant is None:
        raise InvariantViolated(f"invoice {document.invoice_id} has no period end instant")
    return [
        LedgerEntry(
            entry_id=f"consume:{line.grant_id}:{document.invoice_id}",
            kind=EntryKind.CONSUME,
            grant_id=line.grant_id,
            customer_id=document.customer_id,
            currency=line.currency,
            amount=Decimal(line.amount),
            at=from_ms(instant),
            invoice_id=document.invoice_id,
        )
        for line in document.lines
        if isinstance(line, CreditLine)
    ]
