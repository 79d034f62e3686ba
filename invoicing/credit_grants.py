"""Prepaid credit grants and the rows of their append-only ledger (pure records):
what a grant is, when it may pay an invoice, and in what order.  What the ledger's rows
add up to, and what an invoice consumes, is ``invoicing.credits``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from schemas.timeutil import format_ms, to_ms

__all__ = ["EntryKind", "Grant", "LedgerEntry", "Rollover", "grant_entry"]


@dataclass(frozen=True, slots=True)
class Rollover:
    """After the grant's expiry, at most ``max_amount`` of its unused balance stays
    usable by invoices whose instant is at or before ``until``."""

    max_amount: Decimal
    until: datetime


@dataclass(frozen=True, slots=True)
class Grant:
    """Prepaid credit of one customer in one currency (validated by
    ``invoicing.grants.parse_grant``; instants aware UTC, whole milliseconds)."""

    grant_id: str
    customer_id: str
    currency: str
    amount: Decimal
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    rollover: Rollover | None
    name: str
    granted_at: datetime

    def phase(self, instant: datetime) -> str | None:
        """``"full"``, ``"rollover"`` or ``None`` (may not pay an invoice at ``instant``)."""
        if instant <= self.effective_at:
            return None
        if self.expires_at is None or instant <= self.expires_at:
            return "full"
        if self.rollover is not None and instant <= self.rollover.until:
            return "rollover"
        return None

    def order_key(self, instant: datetime) -> tuple[int, int, int, int, str]:
        """Consumption order at ``instant``: priority, expiry (none last), effective, id."""
        ends = self.rollover.until if self.phase(instant) == "rollover" and self.rollover else None
        ends = ends or self.expires_at
        return (
            self.priority,
            0 if ends is not None else 1,
            to_ms(ends) if ends is not None else 0,
            to_ms(self.effective_at),
            self.grant_id,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.grant_id,
            "customerId": self.customer_id,
            "name": self.name,
            "currency": self.currency,
            "amount": self.amount,
            "priority": self.priority,
            "effectiveAt": format_ms(to_ms(self.effective_at)),
            "expiresAt": None if self.expires_at is None else format_ms(to_ms(self.expires_at)),
            "rollover": None
            if self.rollover is None
            else {
                "maxAmount": self.rollover.max_amount,
                "until": format_ms(to_ms(self.rollover.until)),
            },
            "grantedAt": format_ms(to_ms(self.granted_at)),
        }


class EntryKind(StrEnum):
    GRANT = "grant"
    CONSUME = "consume"
    VOID = "void"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One row of the append-only balance ledger.  ``amount`` is signed: a grant adds,
    a consumption or a void takes away.  ``at`` is the invoice's instant for a
    consumption, the time of the act otherwise."""

    entry_id: str
    kind: EntryKind
    grant_id: str
    customer_id: str
    currency: str
    amount: Decimal
    at: datetime
    invoice_id: str = ""
    reason: str = ""


def grant_entry(grant: Grant) -> LedgerEntry:
    return LedgerEntry(
        f"grant:{grant.grant_id}",
        EntryKind.GRANT,
        grant.grant_id,
        grant.customer_id,
        grant.currency,
        grant.amount,
        grant.granted_at,
    )
