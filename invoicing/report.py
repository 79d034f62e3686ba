"""Human-readable renderings of invoices for the terminal (pure), from their documents."""

from __future__ import annotations

from collections.abc import Sequence

from invoicing.document import InvoiceDocument

__all__ = ["invoices_table"]


def invoices_table(documents: Sequence[InvoiceDocument]) -> str:
    """A fixed-width table: one block per invoice, one row per line, then the total."""
    out: list[str] = []
    for doc in documents:
        out.append(
            f"{doc.invoice_id}  customer={doc.customer_id}/{doc.subscription_id}"
            f"  plan={doc.plan}  period={doc.period.label}  currency={doc.currency}"
        )
        out.append(f"  {'line':<34} {'model':<12} {'quantity':>18} {'amount':>14}")
        for line in doc.lines:
            if line.kind == "credit":
                name = f"credit {line.grant_id}"
                out.append(f"  {name:<34} {'credit':<12} {'':>18} {line.amount:>14}")
                continue
            name = line.meter or line.charge_id
            if line.kind == "adjustment":
                name = f"adj {line.adjusts.period.label} {name}"
            out.append(f"  {name:<34} {line.model:<12} {line.quantity:>18} {line.amount:>14}")
        out.append(f"  {'total':<65} {doc.total:>14}")
        out.append("")
    return "\n".join(out)
