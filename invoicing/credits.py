"""Prepaid credits (pure): what a grant's ledger adds up to (balances), and what one
invoice consumes; the grant and ledger-row records are ``invoicing.credit_grants``.
Nothing here does I/O: ``invoicing.credit_ledger`` reads and writes
the ledger (``schemas.storage.credits_table``), billing and the API call in here.

The rules (``docs/credits.md`` works each through by hand):

* **Which grants may pay an invoice.** The invoice's *instant* is its period end.  A
  grant of the same customer and currency, not voided, pays it when
  ``effective_at < instant <= expires_at`` (no expiry: any instant after
  ``effective_at``).  So a grant expiring in the middle of a period pays nothing of that
  period's invoice: only invoices of periods ending on or before its expiry.
* **Rollover.** A grant with ``rollover {max_amount, until}`` keeps, after its expiry,
  at most ``max_amount`` of what its full-phase invoices left, usable by invoices whose
  instant is in ``(expires_at, until]``.  With ``A`` the amount, ``Cf`` what invoices up
  to the expiry consumed and ``Cr`` what later ones consumed: an invoice before the
  expiry may take ``A - Cf - Cr``; one after it ``min(A - Cf, max_amount) - Cr``.
  Neither depends on the order invoices were billed in, so a period re-billed after a
  void cannot overdraw the grant.
* **Order.** Priority (lower first), then expiry (earliest first, the rollover's
  ``until`` in the rollover phase; no expiry last), then effective time, then id.
* **Exactness.** Amounts are Decimal in the currency's minor unit (a grant with more
  decimals is refused), so every consumption is exact: no rounding happens here.
* **Idempotence.** A consumption entry names its invoice and has the id
  ``consume:<grant>:<invoice>``; an invoice's own entries are ignored when its credits
  are decided, and entries of voided invoices (``released``) count for nothing, so a
  rerun never consumes twice and a voided invoice gives its credit back.
* **Void.** A voided grant pays nothing more; the void entry records what remained.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from invoicing.credit_grants import EntryKind, Grant, LedgerEntry
from rating.money import format_decimal, round_money

__all__ = [
    "CreditApplied",
    "CreditBook",
    "CreditDue",
    "CreditHeld",
    "GrantState",
    "apply_credits",
    "consumption_entries",
    "credit_held",
    "void_entry",
]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class GrantState:
    """What the ledger says of one grant: consumption before and after its expiry
    (released invoices left out) and whether, and how much, it was voided."""

    grant: Grant
    consumed_full: Decimal = ZERO
    consumed_rollover: Decimal = ZERO
    voided: Decimal | None = None

    @property
    def consumed(self) -> Decimal:
        return self.consumed_full + self.consumed_rollover

    def available(self, instant: datetime) -> Decimal:
        """What an invoice at ``instant`` may take from this grant."""
        phase = self.grant.phase(instant)
        if self.voided is not None or phase is None:
            return ZERO
        left = self.grant.amount - self.consumed_full
        if phase == "rollover":
            assert self.grant.rollover is not None
            left = min(left, self.grant.rollover.max_amount)
        return max(ZERO, left - self.consumed_rollover)

    def remaining(self, at: datetime) -> Decimal:
        """The balance as of ``at`` for the API: unused, not expired, not voided."""
        if self.voided is not None:
            return ZERO
        if self.grant.phase(at) is None and at > self.grant.effective_at:
            return ZERO  # expired (and past any rollover)
        if self.grant.phase(at) == "rollover":
            return self.available(at)
        return max(ZERO, self.grant.amount - self.consumed)

    def status(self, at: datetime) -> str:
        if self.voided is not None:
            return "voided"
        if at <= self.grant.effective_at:
            return "scheduled"
        return {"full": "active", "rollover": "rollover"}.get(self.grant.phase(at) or "", "expired")


@dataclass(frozen=True, slots=True)
class CreditDue:
    """An invoice asking for credit: whose, in which currency, at which instant, and the
    amount it would be paid before credits."""

    customer_id: str
    currency: str
    invoice_id: str
    instant: datetime
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CreditApplied:
    """Credit of one grant applied to one invoice (``amount`` > 0, taken off the total)."""

    grant_id: str
    name: str
    currency: str
    amount: Decimal
    balance_before: Decimal

    @property
    def balance_after(self) -> Decimal:
        return self.balance_before - self.amount

    def to_line(self) -> dict[str, object]:
        """The invoice line (``kind: credit``), its amount negative."""
        return {
            "kind": "credit",
            "grant_id": self.grant_id,
            "name": self.name,
            "currency": self.currency,
            "amount": format_decimal(-self.amount),
            "balance_before": format_decimal(self.balance_before),
            "balance_after": format_decimal(self.balance_after),
            "description": (
                f"prepaid credit {self.grant_id}: {format_decimal(self.amount)} "
                f"{self.currency} applied, {format_decimal(self.balance_after)} left for this "
                "invoice's period"
            ),
        }


@dataclass(frozen=True, slots=True)
class CreditBook:
    """Every grant and ledger entry of the customers at hand, and the invoices whose
    consumption is released (voided invoices)."""

    grants: tuple[Grant, ...] = ()
    entries: tuple[LedgerEntry, ...] = ()
    released: frozenset[str] = field(default_factory=frozenset)

    def states(self, *, ignore_invoice: str = "") -> dict[str, GrantState]:
        states = {g.grant_id: GrantState(g) for g in self.grants}
        for entry in self.entries:
            state = states.get(entry.grant_id)
            if state is None:
                continue
            if entry.kind is EntryKind.VOID:
                states[entry.grant_id] = replace(state, voided=-entry.amount)
            elif entry.kind is EntryKind.CONSUME and entry.invoice_id not in (
                self.released | {ignore_invoice}
            ):
                if state.grant.phase(entry.at) == "rollover":
                    taken = state.consumed_rollover - entry.amount
                    states[entry.grant_id] = replace(state, consumed_rollover=taken)
                else:
                    states[entry.grant_id] = replace(
                        state, consumed_full=state.consumed_full - entry.amount
                    )
        return states

    def of_customer(self, customer_id: str) -> list[Grant]:
        return [g for g in self.grants if g.customer_id == customer_id]

    def by_customer(self) -> dict[str, CreditBook]:
        """One book per customer holding a grant, each with its own entries: the rules
        read one customer's grants at a time, so work on many customers splits the book
        once instead of walking all of it for each."""
        grants: dict[str, list[Grant]] = {}
        entries: dict[str, list[LedgerEntry]] = {}
        for grant in self.grants:
            grants.setdefault(grant.customer_id, []).append(grant)
        for entry in self.entries:
            entries.setdefault(entry.customer_id, []).append(entry)
        return {
            customer_id: CreditBook(tuple(own), tuple(entries.get(customer_id, ())), self.released)
            for customer_id, own in grants.items()
        }

    def with_entries(self, entries: Iterable[LedgerEntry]) -> CreditBook:
        """The book with ``entries`` added; an invoice's earlier consumption is replaced
        by new consumption of the same invoice."""
        new = tuple(entries)
        replaced = {e.invoice_id for e in new if e.kind is EntryKind.CONSUME}
        kept = tuple(
            e
            for e in self.entries
            if not (e.kind is EntryKind.CONSUME and e.invoice_id in replaced)
        )
        return replace(self, entries=kept + new)


def apply_credits(book: CreditBook, due: CreditDue) -> tuple[CreditApplied, ...]:
    """The credit each grant gives the invoice, in consumption order; the sum never
    exceeds ``due.amount`` (nothing when it is zero or negative).  Only grants of the
    invoice's currency take part: consumption never mixes currencies."""
    left = max(ZERO, due.amount)
    states = book.states(ignore_invoice=due.invoice_id)
    candidates = sorted(
        (
            g
            for g in book.of_customer(due.customer_id)
            if g.currency == due.currency and g.phase(due.instant) is not None
        ),
        key=lambda g: g.order_key(due.instant),
    )
    out = []
    for grant in candidates:
        if left <= 0:
            break
        available = states[grant.grant_id].available(due.instant)
        take = min(available, left)
        if take > 0:
            out.append(CreditApplied(grant.grant_id, grant.name, grant.currency, take, available))
            left -= take
    return tuple(out)


@dataclass(frozen=True, slots=True)
class CreditHeld:
    """A customer's prepaid credit in effect in one currency at an instant: what its
    grants in effect granted, and what remains of them."""

    granted: Decimal
    remaining: Decimal

    def after(self, spend: Decimal | None) -> Decimal:
        """What will remain once the current period's charges so far (``spend``;
        ``None``: not priced, taken as nothing) are paid.  Credit is consumed when a
        period is invoiced, so a live reading looks ahead by the period's spend: the
        one rule of the alerts' credit thresholds and the entitlement check's balance.
        Negative when the spend exceeds the credit (the rest will be paid)."""
        return self.remaining - (spend or ZERO)


def credit_held(
    book: CreditBook, customer_id: str, currency: str, at: datetime
) -> CreditHeld | None:
    """The credit of ``customer_id``'s grants in ``currency`` in effect at ``at`` (active
    or in their rollover), or ``None`` when it holds none."""
    states = book.states()
    held = [
        states[g.grant_id]
        for g in book.of_customer(customer_id)
        if g.currency == currency and states[g.grant_id].status(at) in ("active", "rollover")
    ]
    if not held:
        return None
    granted = sum((state.grant.amount for state in held), ZERO)
    return CreditHeld(granted, sum((state.remaining(at) for state in held), ZERO))


def consumption_entries(due: CreditDue, applied: Sequence[CreditApplied]) -> list[LedgerEntry]:
    """The ledger entries recording ``applied`` (one per grant, keyed by the invoice)."""
    return [
        LedgerEntry(
            f"consume:{a.grant_id}:{due.invoice_id}",
            EntryKind.CONSUME,
            a.grant_id,
            due.customer_id,
            a.currency,
            -a.amount,
            due.instant,
            due.invoice_id,
        )
        for a in applied
    ]


def void_entry(state: GrantState, at: datetime, reason: str) -> LedgerEntry:
    """The entry that removes what remains of a grant (its amount: minus what had not
    been consumed; expired credit is removed too, so the grant's entries add up to 0)."""
    grant = state.grant
    left = max(ZERO, grant.amount - state.consumed)
    return LedgerEntry(
        f"void:{grant.grant_id}",
        EntryKind.VOID,
        grant.grant_id,
        grant.customer_id,
        grant.currency,
        -round_money(left, grant.currency),
        at,
        reason=reason,
    )
