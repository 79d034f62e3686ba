"""Invoices (pure): deterministic ids, usage, adjustment and credit lines, the JSON document.

The id is a digest of (namespace, customer, subscription, period start, revision), so
rating the same period again yields the same id and a rerun sees that it exists.

The document (``schema: meterline.invoice/4``, described field by field in
``docs/invoicing.md``) is built once, stored as a draft, and published byte for byte;
it never changes afterwards.  Money is Decimal throughout, rendered as strings; the
total is exactly the sum of the rounded line amounts (checked on construction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from invoicing.credits import CreditApplied
from invoicing.customers import Customer
from invoicing.document import SCHEMA, InvoiceDocument
from invoicing.evidence import LineEvidence
from invoicing.fees import Ahead
from invoicing.periods import Period
from rating import Line, RatedPlan, minor_units, round_money
from rating.money import format_decimal
from schemas.errors import InvariantViolated
from schemas.timeutil import format_ms

__all__ = ["SCHEMA", "Adjustment", "Invoice", "invoice_id"]


def invoice_id(
    namespace: str, customer: str, subscription: str, period_start_s: int, revision: int = 0
) -> str:
    material = f"{namespace}\x1f{customer}\x1f{subscription}\x1f{period_start_s}\x1f{revision}"
    return "inv_" + hashlib.blake2b(material.encode(), digest_size=12).hexdigest()


def _period_doc(period: Period) -> dict[str, str]:
    return {
        "start": format_ms(period.start_s * 1000),
        "end": format_ms(period.end_s * 1000),
        "label": period.label,
        "timezone": period.timezone,
    }


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Late usage of an earlier, already invoiced period, for one charge.

    ``before`` is the charge as already billed (usage ingested before ``from_cutoff_s``),
    ``after`` the same charge re-rated with the late usage included (before
    ``to_cutoff_s``).  The adjustment bills the difference: ``amount = after.amount -
    before.amount`` (both already rounded, so it is exact in minor units).
    """

    period: Period
    original_invoice_id: str
    from_cutoff_s: int
    to_cutoff_s: int
    before: Line | None
    after: Line | None

    @property
    def _either(self) -> Line:
        line = self.after or self.before
        assert line is not None
        return line

    @property
    def charge_id(self) -> str:
        return self._either.charge_id

    @property
    def meter(self) -> str | None:
        return self._either.meter

    @property
    def model(self) -> str:
        return self._either.model

    @property
    def quantity(self) -> Decimal:
        return (self.after.quantity if self.after else Decimal(0)) - (
            self.before.quantity if self.before else Decimal(0)
        )

    @property
    def amount(self) -> Decimal:
        currency = self._either.currency
        after = self.after.amount if self.after else round_money(Decimal(0), currency)
        before = self.before.amount if self.before else round_money(Decimal(0), currency)
        return after - before

    def to_dict(self) -> dict[str, object]:
        line = self._either
        return {
            "kind": "adjustment",
            "charge_id": line.charge_id,
            "name": line.name,
            "meter": line.meter,
            "model": line.model,
            "currency": line.currency,
            "quantity": format_decimal(self.quantity),
            "amount": format_decimal(self.amount),
            "adjusts": {
                "period": _period_doc(self.period),
                "invoice_id": self.original_invoice_id,
                "ingested_from": format_ms(self.from_cutoff_s * 1000),
                "ingested_before": format_ms(self.to_cutoff_s * 1000),
            },
            "before": None if self.before is None else self.before.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
            "description": (
                f"late usage of {self.period.label}: {line.name} re-rated from "
                f"{format_decimal(self.before.amount) if self.before else '0'} to "
                f"{format_decimal(self.after.amount) if self.after else '0'}"
            ),
        }


@dataclass(frozen=True, slots=True)
class Invoice:
    """One invoice of one subscription period; immutable once built."""

    namespace: str
    customer: Customer
    period: Period
    revision: int
    cutoff_s: int
    rated: RatedPlan
    adjustments: tuple[Adjustment, ...]
    covers: tuple[int, ...]
    """Starts of the earlier periods whose late usage this invoice accounts for, up to
    its cutoff (even when there was none): the adjustment frontier of those periods."""
    created_ms: int
    rate_card_version: str
    """The version of the rate card that priced it (``rating.versions.card_version``)."""
    evidence: Mapping[str, LineEvidence] = field(default_factory=dict)
    """Per charge id of a usage line on a meter: what it bills (``invoicing.evidence``)."""
    ahead: tuple[Ahead, ...] = ()
    """Shares of later periods' flat fees billed in advance (``invoicing.fees``)."""
    credits: tuple[CreditApplied, ...] = ()
    """Prepaid credit applied, in consumption order (``invoicing.credits``)."""

    @property
    def id(self) -> str:
        return invoice_id(
            self.namespace,
            self.customer.id,
            self.customer.subscription,
            self.period.start_s,
            self.revision,
        )

    @property
    def currency(self) -> str:
        return self.rated.currency

    @property
    def usage_total(self) -> Decimal:
        return self.rated.total

    @property
    def adjustments_total(self) -> Decimal:
        return sum((a.amount for a in self.adjustments), round_money(Decimal(0), self.currency))

    @property
    def due(self) -> Decimal:
        """What is owed before prepaid credit: usage and adjustments."""
        return self.usage_total + self.adjustments_total

    @property
    def credits_total(self) -> Decimal:
        """The credit applied, as the negative sum of the credit lines."""
        return sum((-c.amount for c in self.credits), round_money(Decimal(0), self.currency))

    @property
    def total(self) -> Decimal:
        """What remains to pay: never below zero because of credits (a negative ``due``,
        e.g. a correction, gets no credit and stays as it is)."""
        return self.due + self.credits_total

    def document(self) -> InvoiceDocument:
        lines: list[dict[str, object]] = [
            {"kind": "usage", **line.to_dict()} for line in self.rated.lines
        ]
        for line in lines:
            found = self.evidence.get(str(line["charge_id"]))
            if found is not None:
                line["evidence"] = found.to_dict()
        lines += [adjustment.to_dict() for adjustment in self.adjustments]
        lines += [credit.to_line() for credit in self.credits]
        for number, line in enumerate(lines, start=1):
            line["line_no"] = number
        added = sum((Decimal(str(line["amount"])) for line in lines), Decimal(0))
        if added != self.total:
            raise InvariantViolated(f"invoice {self.id}: total {self.total} != lines {added}")
        return InvoiceDocument.model_validate(
            {
                "schema": SCHEMA,
                "invoice_id": self.id,
                "namespace": self.namespace,
                "revision": self.revision,
                "customer_id": self.customer.id,
                "subscription_id": self.customer.subscription,
                "subjects": list(self.customer.subjects),
                "plan": self.customer.plan,
                "currency": self.currency,
                "minor_units": minor_units(self.currency),
                "cadence": str(self.customer.cadence),
                "period": _period_doc(self.period),
                "usage_cutoff": format_ms(self.cutoff_s * 1000),
                "lines": lines,
                "usage_total": format_decimal(self.usage_total),
                "adjustments_total": format_decimal(self.adjustments_total),
                "credits_total": format_decimal(self.credits_total),
                "total": format_decimal(self.total),
                "created_at": format_ms(self.created_ms),
                "rate_card_version": self.rate_card_version,
                "billed_ahead": [a.to_dict() for a in self.ahead],
            }
        )

    def to_json(self) -> bytes:
        return self.document().to_json()
