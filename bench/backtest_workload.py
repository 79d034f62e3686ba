"""The pricing backtest bench's workload (``bench/bench_backtest.py``): five meters, a
billed card and its draft, customers, and their October usage as feed rows.

Two plans in two currencies, priced with graduated, per-unit, package and overage
charges, a flat fee and (pro) a minimum commitment; the draft raises the unit prices of
three charges by 10 %.  One customer in ten has two subjects.  Per subject and meter, 1
to 3 events in random minutes of October 2026, ingested within 30 minutes, plus events
that must not count: ingested after the cutoff, and November's.
"""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from typing import Any

from invoicing.customers import Customer
from invoicing.periods import Month, month_period
from rating import RateCard, load_rate_card_data
from schemas.metering.definitions import Aggregation, MeterSet, parse_meters
from schemas.storage.windows_table import FeedRow

__all__ = ["BILLED", "CUTOFF_S", "DRAFT", "METERS", "MONTH", "PERIOD", "customers_of", "feed_of"]

MONTH = Month(2026, 10)
PERIOD = month_period(MONTH.label)
CUTOFF_S = PERIOD.end_s + 3600
METERS: MeterSet = parse_meters(
    {
        "meters": [
            {"slug": "api_calls", "event_type": "api.request", "aggregation": "COUNT"},
            {"slug": "emails", "event_type": "email.sent", "aggregation": "COUNT"},
            *(
                {"slug": slug, "event_type": slug, "aggregation": "SUM", "value_property": "$.v"}
                for slug in ("llm_tokens", "storage_gb_hours", "compute_seconds")
            ),
        ]
    }
)
PLANS = (("starter", "USD"), ("pro", "USD"), ("pro", "EUR"))


def _card(scale: Decimal) -> RateCard:
    """Both plans in both currencies; ``scale`` multiplies the draft's unit prices."""

    def price(text: str) -> str:
        return format(Decimal(text) * scale, "f")

    def charges(minimum: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [
            {
                "meter": "api_calls",
                "model": "graduated",
                "tiers": [
                    {"up_to": 2, "unit_price": "0"},
                    {"up_to": 5, "unit_price": price("0.25")},
                    {"up_to": None, "unit_price": price("0.10")},
                ],
            },
            {"meter": "llm_tokens", "model": "per_unit", "unit_price": price("0.00002")},
            {"meter": "storage_gb_hours", "model": "per_unit", "unit_price": "0.0125"},
            {"meter": "emails", "model": "package", "package_size": 2, "package_price": "0.50"},
            {
                "meter": "compute_seconds",
                "model": "overage",
                "base_fee": "3.00",
                "included_units": 500_000,
                "unit_price": price("0.000004"),
            },
            {"id": "platform", "model": "flat", "amount": "2.00"},
        ]
        if minimum is not None:
            out.append({"id": "commitment", "model": "minimum", "amount": minimum})
        return out

    plans = {
        "starter": {"USD": {"charges": charges(None)}},
        "pro": {"USD": {"charges": charges("60.00")}, "EUR": {"charges": charges("55.00")}},
    }
    return load_rate_card_data({"plans": plans}, METERS.slugs())


BILLED = _card(Decimal(1))
DRAFT = _card(Decimal("1.1"))


def customers_of(count: int, rng: random.Random) -> tuple[Customer, ...]:
    out = []
    for n in range(count):
        plan, currency = rng.choice(PLANS)
        entry: dict[str, Any] = {"id": f"cust-{n:06d}", "plan": plan, "currency": currency}
        entry.update(anchor_day=1, start=date(2025, 1, 1))
        if rng.random() < 0.1:
            entry["subjects"] = [f"cust-{n:06d}-eu", f"cust-{n:06d}-us"]
        out.append(Customer.model_validate(entry))
    return tuple(out)


def feed_of(
    customers: tuple[Customer, ...], rng: random.Random, namespace: str
) -> tuple[list[FeedRow], dict[tuple[str, str], Decimal]]:
    """Feed rows, and the usage billed per (subject, meter) (ingested before the cutoff)."""
    feed: list[FeedRow] = []
    truth: dict[tuple[str, str], Decimal] = {}
    minutes = (PERIOD.end_s - PERIOD.start_s) // 60

    def add(subject: str, meter: str, window: int, ingested: int, value: Decimal) -> None:
        offset = len(feed)
        feed.append(
            FeedRow(
                namespace,
                meter,
                subject,
                "{}",
                window,
                ingested,
                value,
                "",
                window * 1000 + 17,
                offset % 4,
                offset,
            )
        )

    for customer in customers:
        for subject in customer.subjects:
            for meter in METERS:
                counted = meter.aggregation is Aggregation.COUNT
                for _ in range(rng.randint(1, 3)):
                    window = PERIOD.start_s + 60 * rng.randrange(minutes)
                    value = Decimal(1) if counted else Decimal(rng.randint(1, 400_000))
                    add(subject, meter.slug, window, window + 60 * rng.randint(0, 30), value)
                    truth[(subject, meter.slug)] = (
                        truth.get((subject, meter.slug), Decimal(0)) + value
                    )
                if rng.random() < 0.03:  # ingested after the cutoff: not in the invoice
                    add(subject, meter.slug, PERIOD.end_s - 60, CUTOFF_S + 60, Decimal(1))
                if rng.random() < 0.03:  # November's usage
                    add(subject, meter.slug, PERIOD.end_s + 60, PERIOD.end_s + 120, Decimal(1))
    return feed, truth
