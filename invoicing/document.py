"""The invoice document, typed: what billing publishes to the invoices topic, stores in
ClickHouse and renders (schema ``meterline.invoice/4``; documents of ``/3``, stored before
invoices had credit lines, and of ``/2``, stored before invoices named their rate-card
version, still read).

Every amount, quantity and price is an exact decimal *string* (``"59.50"``, never a JSON
float); times are RFC 3339 UTC to the millisecond.  :meth:`InvoiceDocument.to_json` is
the bytes of the Kafka record and the stored document (sorted keys, as published since
the first schema); :meth:`InvoiceDocument.from_json` reads them back, refusing anything
that is not this schema — a consumer never walks an untyped dict.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "SCHEMA",
    "AdjustmentLine",
    "Adjusts",
    "BilledAhead",
    "Component",
    "CreditLine",
    "Evidence",
    "InvoiceDocument",
    "PeriodDoc",
    "RatedLine",
    "Tier",
    "UsageLine",
]


SCHEMA = "meterline.invoice/4"
"""The document's schema name; a change that a consumer must know about gets a new one.
``/4`` added prepaid-credit lines (``kind: credit``) and ``credits_total``; ``/3`` added
``rate_card_version``, each metered line's ``evidence`` and ``billed_ahead``."""


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class PeriodDoc(_Doc):
    label: str
    start: str
    end: str
    timezone: str


class Tier(_Doc):
    """One tier of a graduated or volume charge: ``(from, up_to]``."""

    tier: int
    from_: str = Field(alias="from")
    up_to: str | None
    quantity: str
    unit_price: str
    flat_fee: str
    amount: str


class Component(_Doc):
    """One non-tier term of a charge: ``quantity × unit_price = amount``."""

    label: str
    quantity: str
    unit_price: str
    amount: str
    flat: bool


class _Charge(_Doc):
    """What every line says of its charge."""

    charge_id: str
    name: str
    meter: str | None
    model: str
    currency: str
    quantity: str
    amount: str
    description: str


class RatedLine(_Charge):
    """One charge of the plan, priced: its breakdown and its amount rounded once."""

    tiers: list[Tier]
    components: list[Component]
    flat_fee: str
    unrounded_amount: str


class Evidence(_Doc):
    """What a usage line on a meter bills and how to check it (``invoicing.evidence``)."""

    meter: str
    event_type: str
    aggregation: str
    value_property: str | None
    subjects: list[str]
    events_from: str
    events_to: str
    ingested_before: str
    events: int
    events_digest: str
    rounding: str
    rate_card_version: str


class UsageLine(RatedLine):
    kind: Literal["usage"]
    line_no: int
    evidence: Evidence | None = None
    """On ``/3`` lines priced on a meter; ``None`` on flat fees, minimums and ``/2``."""


class Adjusts(_Doc):
    """The earlier invoice and period whose late usage an adjustment bills."""

    period: PeriodDoc
    invoice_id: str
    ingested_from: str
    ingested_before: str


class AdjustmentLine(_Charge):
    """A charge of an earlier period re-rated with its late usage: ``after - before``."""

    kind: Literal["adjustment"]
    line_no: int
    adjusts: Adjusts
    before: RatedLine | None
    after: RatedLine | None


class CreditLine(_Doc):
    """Prepaid credit of one grant applied to the invoice (``invoicing.credits``): a
    negative ``amount``, after the usage and adjustment lines.  ``balance_before`` and
    ``balance_after`` are what the grant could give an invoice of this period."""

    kind: Literal["credit"]
    line_no: int
    grant_id: str
    name: str
    currency: str
    amount: str
    balance_before: str
    balance_after: str
    description: str


Line = Annotated[UsageLine | AdjustmentLine | CreditLine, Field(discriminator="kind")]


class BilledAhead(_Doc):
    """A share of a flat fee billed in advance for a later period."""

    charge_id: str
    period_start: str
    period_end: str
    share: str


class InvoiceDocument(_Doc):
    schema_: Literal["meterline.invoice/2", "meterline.invoice/3", "meterline.invoice/4"] = Field(
        alias="schema"
    )
    invoice_id: str
    namespace: str
    revision: int
    customer_id: str
    subscription_id: str
    subjects: list[str]
    plan: str
    currency: str
    minor_units: int
    cadence: str
    period: PeriodDoc
    usage_cutoff: str
    lines: list[Line]
    usage_total: str
    adjustments_total: str
    credits_total: str | None = None
    """The credit lines' sum (zero or negative); ``None`` only before ``/4``."""
    total: str
    created_at: str
    rate_card_version: str | None = None
    """The rate-card version that priced every line (``rating.versions``); ``None`` only
    on ``/2`` documents."""
    billed_ahead: list[BilledAhead] = []
    """Shares of later periods' flat fees this invoice billed in advance."""

    @model_validator(mode="after")
    def _version_named(self) -> InvoiceDocument:
        if self.schema_ != "meterline.invoice/2" and self.rate_card_version is None:
            raise ValueError(f"a {self.schema_} document names its rate_card_version")
        if self.schema_ == SCHEMA and self.credits_total is None:
            raise ValueError(f"a {self.schema_} document has a credits_total")
        if self.schema_ != SCHEMA and any(line.kind == "credit" for line in self.lines):
            raise ValueError(f"a {self.schema_} document has no credit lines")
        return self

    @property
    def total_amount(self) -> Decimal:
        return Decimal(self.total)

    def to_json(self) -> bytes:
        """The published and stored bytes."""
        return orjson.dumps(
            self.model_dump(mode="json", by_alias=True), option=orjson.OPT_SORT_KEYS
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> InvoiceDocument:
        return cls.model_validate_json(raw)
