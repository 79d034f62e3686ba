"""Test data for invoicing: an in-memory usage log, cards, meters and customers."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from invoicing.customers import Customer
from invoicing.plan import SubjectUsage
from rating import RateCard, load_rate_card, load_rate_card_data
from schemas.metering.definitions import MeterSet, load_meters

ROOT = Path(__file__).resolve().parents[2]
METERS: MeterSet = load_meters(ROOT / "deploy/demo/meters.yaml")
DEMO_CARD: RateCard = load_rate_card(ROOT / "deploy/demo/rate-card.yaml", METERS.slugs())
TIERED_CARD: RateCard = load_rate_card_data(
    {
        "plans": {
            "tiered": {
                "USD": {
                    "charges": [
                        {
                            "meter": "api_calls",
                            "model": "graduated",
                            "tiers": [
                                {"up_to": 10, "unit_price": "0"},
                                {"up_to": 100, "unit_price": "0.5", "flat_fee": "2"},
                                {"up_to": None, "unit_price": "0.25"},
                            ],
                        },
                        {"meter": "llm_tokens", "model": "per_unit", "unit_price": "0.001"},
                        {"id": "platform", "model": "flat", "amount": "10"},
                        {"id": "minimum", "model": "minimum", "amount": "30"},
                    ]
                }
            }
        }
    },
    METERS.slugs(),
)


def customer(**fields: object) -> Customer:
    base: dict[str, object] = {"id": "acme", "plan": "starter", "currency": "USD"}
    base.update(fields)
    return Customer.model_validate(base)


@dataclass
class UsageLog:
    """Events as (subject, meter, window_start_s, ingested_s, value); reads like ClickHouse."""

    events: list[tuple[str, str, int, int, Decimal]] = field(default_factory=list)
    reads: int = 0

    def add(self, subject: str, meter: str, at_s: int, ingested_s: int, value: str = "1") -> None:
        self.events.append(
            (subject, meter, at_s - at_s % 60, ingested_s - ingested_s % 60, Decimal(value))
        )

    def __call__(
        self, start_s: int, end_s: int, ingested_from_s: int | None, ingested_before_s: int
    ) -> SubjectUsage:
        self.reads += 1
        out: SubjectUsage = {}
        for subject, meter, window, ingested, value in self.events:
            if not start_s <= window < end_s or ingested >= ingested_before_s:
                continue
            if ingested_from_s is not None and ingested < ingested_from_s:
                continue
            per_meter = out.setdefault(subject, {})
            per_meter[meter] = per_meter.get(meter, Decimal(0)) + value
        return out
