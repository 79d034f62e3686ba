"""Invoice documents (pure): deterministic ids, the JSON document, the stored rows.

The id is a digest of (namespace, customer, plan, period start, revision), so rating the
same closed period again yields the same id, and a rerun can see it already exists.  The
document is versioned by its ``schema`` field (``meterline.invoice/1``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from invoicing.customers import Customer
from invoicing.periods import Period
from rating import RatedPlan
from schemas.storage.invoices_table import InvoiceLineRow, InvoiceRow
from schemas.timeutil import format_ms, to_ms

__all__ = ["SCHEMA", "Invoice", "build_invoice", "invoice_id"]

SCHEMA = "meterline.invoice/1"


def invoice_id(namespace: str, customer: str, plan: str, period: Period, revision: int = 0) -> str:
    material = f"{namespace}\x1f{customer}\x1f{plan}\x1f{period.start_s}\x1f{revision}"
    return "inv_" + hashlib.blake2b(material.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    namespace: str
    customer: Customer
    period: Period
    rated: RatedPlan
    created_ms: int

    @property
    def total(self) -> Decimal:
        return self.rated.total

    def document(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "invoice_id": self.id,
            "namespace": self.namespace,
            "customer_id": self.customer.id,
            "subjects": list(self.customer.subjects),
            "plan": self.customer.plan,
            "currency": self.rated.currency,
            "period": {
                "start": format_ms(to_ms(self.period.start)),
                "end": format_ms(to_ms(self.period.end)),
            },
            "lines": [line.to_dict() for line in self.rated.lines],
            "total": str(self.rated.total),
            "created_at": format_ms(self.created_ms),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.document(), option=orjson.OPT_SORT_KEYS)

    def row(self) -> InvoiceRow:
        return InvoiceRow(
            namespace=self.namespace,
            invoice_id=self.id,
            customer_id=self.customer.id,
            plan=self.customer.plan,
            currency=self.rated.currency,
            period_start_s=self.period.start_s,
            period_end_s=self.period.end_s,
            total=self.rated.total,
            line_count=len(self.rated.lines),
            created_ms=self.created_ms,
            document=self.to_json().decode(),
        )

    def line_rows(self) -> list[InvoiceLineRow]:
        return [
            InvoiceLineRow(
                namespace=self.namespace,
                invoice_id=self.id,
                line_no=number,
                meter=line.meter or "",
                model=str(line.model),
                quantity=line.quantity,
                amount=line.amount,
                unrounded_amount=str(line.unrounded_amount),
            )
            for number, line in enumerate(self.rated.lines, start=1)
        ]


def build_invoice(
    namespace: str, customer: Customer, period: Period, rated: RatedPlan, created_ms: int
) -> Invoice:
    return Invoice(
        id=invoice_id(namespace, customer.id, customer.plan, period),
        namespace=namespace,
        customer=customer,
        period=period,
        rated=rated,
        created_ms=created_ms,
    )
