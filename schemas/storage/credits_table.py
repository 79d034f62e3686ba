"""``credit_ledger``: the append-only balance ledger of prepaid credits.

One row per entry (``invoicing.credits``): a ``grant`` (which also holds the grant's
terms: priority, effective and expiry instants, rollover, name), a ``consume`` (naming
the invoice that took the credit) or a ``void``.  Rows are never updated or deleted: a
void is an entry of its own.  Every entry has a deterministic ``entry_id``
(``consume:<grant>:<invoice>``, ``void:<grant>``, ``grant:<grant>``), so writing it
twice — a billing run repeated after a crash — stores a copy that every read collapses
(``LIMIT 1 BY entry_id``).  A plain MergeTree: nothing merges copies away, and nothing
needs to.

Reads say, for each consumption, whether its invoice is void (``released``): the credit
of a voided invoice is given back, since the period is billed again by a new revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from schemas.storage.sql import Statement, lit

__all__ = ["COLUMNS", "CreditRow", "CreditsTable"]

COLUMNS = (
    "namespace",
    "customer_id",
    "grant_id",
    "entry_id",
    "kind",
    "currency",
    "amount",
    "at_ms",
    "invoice_id",
    "reason",
    "priority",
    "effective_ms",
    "expires_ms",
    "rollover_max",
    "rollover_until_ms",
    "name",
    "recorded_ms",
)


@dataclass(frozen=True, slots=True)
class CreditRow:
    """One stored entry.  The grant's terms are filled on ``grant`` rows only (0 or ''
    elsewhere); ``expires_ms`` and ``rollover_until_ms`` are 0 when there is none."""

    namespace: str
    customer_id: str
    grant_id: str
    entry_id: str
    kind: str
    currency: str
    amount: Decimal
    at_ms: int
    invoice_id: str = ""
    reason: str = ""
    priority: int = 0
    effective_ms: int = 0
    expires_ms: int = 0
    rollover_max: Decimal = Decimal(0)
    rollover_until_ms: int = 0
    name: str = ""
    recorded_ms: int = 0

    def as_row(self) -> tuple[object, ...]:
        return (
            self.namespace,
            self.customer_id,
            self.grant_id,
            self.entry_id,
            self.kind,
            self.currency,
            self.amount,
            self.at_ms,
            self.invoice_id,
            self.reason,
            self.priority,
            self.effective_ms,
            self.expires_ms,
            self.rollover_max,
            self.rollover_until_ms,
            self.name,
            self.recorded_ms,
        )


class CreditsTable:
    def __init__(self, database: str) -> None:
        self.name = f"{database}.credit_ledger"
        self.invoice_status = f"{database}.invoice_status"

    def ddl(self) -> list[Statement]:
        return [
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.name} ("
                " namespace String, customer_id String, grant_id String, entry_id String,"
                " kind String, currency String, amount Decimal(38, 9), at_ms Int64,"
                " invoice_id String, reason String, priority UInt32, effective_ms Int64,"
                " expires_ms Int64, rollover_max Decimal(38, 9), rollover_until_ms Int64,"
                " name String, recorded_ms Int64"
                ") ENGINE = MergeTree() ORDER BY (namespace, customer_id, grant_id, entry_id)"
            )
        ]

    def insert(
        self, rows: Sequence[CreditRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.name, COLUMNS, [row.as_row() for row in rows]

    def entries(self, namespace: str, customers: Sequence[str] | None = None) -> Statement:
        """Rows of :data:`COLUMNS` then ``released`` (1 when the entry's invoice is void),
        one per entry id, of the given customers (all when ``None``), ordered by customer,
        grant, kind (``consume`` < ``grant`` < ``void``) and entry id."""
        ns = lit(namespace)
        where = f"namespace = {ns}"
        if customers is not None:
            names = ", ".join(lit(c) for c in customers) or "''"
            where += f" AND customer_id IN ({names})"
        return Statement(
            f"SELECT {', '.join(COLUMNS)},"
            f" invoice_id != '' AND invoice_id IN (SELECT invoice_id FROM {self.invoice_status}"
            f" WHERE namespace = {ns} AND status_rank = 2) AS released"
            f" FROM {self.name} WHERE {where}"
            " ORDER BY customer_id, grant_id, kind, entry_id, recorded_ms"
            " LIMIT 1 BY entry_id"
        )

    def holders(self, namespace: str) -> Statement:
        """Rows ``(customer_id,)``: every customer with a grant in the ledger, voided and
        expired ones included (the entitlement check's hint of who holds credit)."""
        return Statement(
            f"SELECT DISTINCT customer_id FROM {self.name}"
            f" WHERE namespace = {lit(namespace)} AND kind = 'grant' ORDER BY customer_id"
        )

    def grant(self, namespace: str, grant_id: str) -> Statement:
        """Rows ``(customer_id, kind)`` of one grant's grant and void entries."""
        return Statement(
            f"SELECT DISTINCT customer_id, kind FROM {self.name}"
            f" WHERE namespace = {lit(namespace)} AND grant_id = {lit(grant_id)}"
            " AND kind IN ('grant', 'void') ORDER BY kind"
        )
