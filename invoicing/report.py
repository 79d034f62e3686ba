"""Human-readable renderings of invoices (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from invoicing.invoice import Invoice

__all__ = ["invoices_table"]


def invoices_table(invoices: Sequence[Invoice]) -> str:
    """A fixed-width table: one block per invoice, one row per line, then the total."""
    out: list[str] = []
    for invoice in invoices:
        doc = invoice.document()
        out.append(
            f"{invoice.id}  customer={invoice.customer.id}  plan={invoice.customer.plan}"
            f"  period={invoice.period.label}  currency={invoice.rated.currency}"
        )
        out.append(f"  {'meter':<20} {'model':<12} {'quantity':>18} {'amount':>14}")
        for line in doc["lines"]:
            out.append(
                f"  {line.get('meter') or '-':<20} {line['model']:<12}"
                f" {line['quantity']:>18} {line['amount']:>14}"
            )
        out.append(f"  {'total':<51} {doc['total']:>14}")
        out.append("")
    return "\n".join(out)
