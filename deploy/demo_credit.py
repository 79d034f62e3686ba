"""The demo's prepaid credit: globex is granted 25.00 USD before last month (M-1) closes,
and its M-1 invoice shows the credit as a line of its own.

The grant (``demo-credit-<M-1>``, priority 1, effective from the start of M-1, no
expiry) pays globex's M-1 invoice, whose period ends after it takes effect
(``docs/credits.md``).  :func:`credit_check` recomputes the line from the invoice's own
other lines: credit = min(25.00, what the invoice comes to before credit), and the total
is what remains.  The grant's id makes a rerun of the demo grant once.  On a database
where that invoice was issued before the grant existed (the demo run by a build without
credits), the invoice stays as issued and the grant unconsumed: the check says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from invoicing.credit_ledger import read_book, record_grant
from invoicing.document import InvoiceDocument
from invoicing.grants import parse_grant
from invoicing.periods import Period
from schemas.timeutil import format_ms, parse_instant, to_ms

__all__ = ["AMOUNT", "CUSTOMER", "credit_check", "grant_credit"]

CUSTOMER = "globex"
AMOUNT = Decimal("25.00")


def grant_id(last: Period) -> str:
    return f"demo-credit-{last.label}"


def grant_credit(demo: Any, step: Callable[[str], None]) -> None:
    """Grant globex its prepaid credit before M-1 is billed."""
    last: Period = demo.last
    step(f"Prepaid credit: {CUSTOMER} is granted {AMOUNT} USD before {last.label} closes")
    currencies = {c.currency for c in demo.customers if c.id == CUSTOMER}
    body = {
        "id": grant_id(last),
        "amount": str(AMOUNT),
        "currency": "USD",
        "priority": 1,
        "effective_at": last.start.isoformat().replace("+00:00", "Z"),
        "name": "Demo prepaid credit",
    }
    grant = parse_grant(
        body,
        customer_id=CUSTOMER,
        billed_currencies=currencies,
        grant_id=grant_id(last),
        now=datetime.now(UTC).replace(microsecond=0),
    )
    settings = demo.settings
    record_grant(demo.engine, settings.clickhouse_database, settings.namespace, grant)
    print(f"    grant {grant.grant_id}: {grant.amount} {grant.currency}, priority 1", flush=True)


def credit_check(demo: Any, documents: Sequence[InvoiceDocument], last: Period) -> bool:
    """globex's M-1 invoice carries the credit, as recomputed from its other lines — or,
    issued before the grant was made, none, with the grant unconsumed."""
    (doc,) = [d for d in documents if d.customer_id == CUSTOMER]
    credits = [line for line in doc.lines if line.kind == "credit"]
    settings = demo.settings
    book = read_book(demo.engine, settings.clickhouse_database, settings.namespace, [CUSTOMER])
    state = book.states().get(grant_id(last))
    issued = parse_instant(doc.created_at)
    if state is not None and not credits and issued is not None:
        made = to_ms(state.grant.granted_at)
        if issued < made:
            ok = state.consumed == 0 and state.voided is None
            print(
                f"    {doc.invoice_id} {CUSTOMER}: issued {doc.created_at}, before the grant"
                f" was made ({format_ms(made)}); an issued invoice never changes, the"
                f" {AMOUNT} USD stay for a later invoice (consumed {state.consumed}):"
                f" {'ok' if ok else 'MISMATCH'}",
                flush=True,
            )
            return ok
    before = sum((Decimal(line.amount) for line in doc.lines if line.kind != "credit"), Decimal(0))
    want = min(AMOUNT, max(before, Decimal(0)))
    got = -sum((Decimal(line.amount) for line in credits), Decimal(0))
    ok = (
        [line.grant_id for line in credits] == [grant_id(last)]
        and got == want
        and Decimal(doc.total) == before - want
    )
    print(
        f"    {doc.invoice_id} {CUSTOMER}: before credit {before} USD, credit line {-got} USD"
        f" (min({AMOUNT}, {before}) = {want}), total {doc.total} USD: {'ok' if ok else 'MISMATCH'}",
        flush=True,
    )
    return ok
