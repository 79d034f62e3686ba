"""The demo's verified line: one metered line of last month checked from its events
through the running API with the customer's own token — what ``meterline verify`` does
for a customer (``docs/invoicing.md``, *Verify*)."""

from __future__ import annotations

from collections.abc import Callable

from api.server import demo_tokens
from invoicing.document import InvoiceDocument, UsageLine
from invoicing.verify import check_line, fetch_line
from rating import load_rate_card
from schemas.settings import Settings

__all__ = ["verify_one_line"]


def verify_one_line(
    settings: Settings, invoices: list[InvoiceDocument], api: str, step: Callable[[str], None]
) -> bool:
    """Check one metered line from its events through the running API, with the
    customer's own token: what ``meterline verify`` does for a customer."""
    tokens = demo_tokens()
    chosen = [
        (doc, line)
        for doc in invoices
        if doc.customer_id in tokens
        for line in doc.lines
        if isinstance(line, UsageLine) and line.evidence is not None and line.evidence.events
    ]
    if not chosen:  # a rerun over invoices an earlier build issued, before evidence
        print(
            "    these invoices were issued by an earlier build, before lines carried"
            " evidence: nothing to verify (`make reset` then `make demo` starts afresh)"
        )
        return True
    doc, line = chosen[0]
    token = tokens[doc.customer_id]
    step(
        f"Verifying line {line.line_no} of {doc.invoice_id} ({doc.customer_id}, {line.meter})"
        " from its events, as the customer would"
    )
    fetched, events = fetch_line(api, token, doc.invoice_id, line.line_no)
    card = load_rate_card(settings.rate_card_file)
    checks = check_line(fetched, line.line_no, events, card)
    for check in checks:
        print(f"    {check}")
    print(
        f"    the same from a shell: meterline verify {doc.invoice_id} --line {line.line_no}"
        f" --token {token} --rate-card {settings.rate_card_file}"
    )
    return all(check.ok for check in checks)
