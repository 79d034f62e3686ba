"""What the backtest tests share: both ClickHouse engines, the documented example's usage,
storing usage as the worker does, and billing a month with the real billing run."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from invoicing.customers import Customer, load_customers
from invoicing.periods import month_period
from invoicing.run import BillingRun, RunResult, run_period
from rating import RateCard, load_rate_card
from schemas.metering.definitions import Aggregation, MeterSet, load_meters
from schemas.storage.engine import Engine
from schemas.storage.windows_table import FeedRow, WindowsTable
from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "ns"
METERS: MeterSet = load_meters(ROOT / "deploy/demo/meters.yaml")
BILLED_CARD: RateCard = load_rate_card(ROOT / "deploy/demo/rate-card.yaml", METERS.slugs())
DRAFT_FILE = "deploy/demo/rate-card-draft.yaml"
DRAFT_CARD: RateCard = load_rate_card(ROOT / DRAFT_FILE, METERS.slugs())
CUSTOMERS_FILE = "deploy/demo/customers.yaml"
CUSTOMERS: tuple[Customer, ...] = load_customers(ROOT / CUSTOMERS_FILE)
OCTOBER = month_period("2026-10")
CUTOFF_S = OCTOBER.end_s + 3600
"""The October run's ingestion cutoff: the month's end plus an hour."""

DOC_USAGE: dict[str, dict[str, int]] = {
    "acme": {"api_calls": 1500, "llm_tokens": 200_000, "storage_gb_hours": 80},
    "globex": {"api_calls": 4000, "llm_tokens": 1_000_000, "storage_gb_hours": 500},
    "initech": {"api_calls": 300, "llm_tokens": 50_000, "storage_gb_hours": 20},
    "umbrella-eu": {"api_calls": 1000, "llm_tokens": 300_000, "storage_gb_hours": 100},
    "umbrella-us": {"api_calls": 500, "llm_tokens": 100_000, "storage_gb_hours": 50},
}
"""October's usage per subject in the documented example (docs/invoicing.md, Backtest)."""


ENGINES = ["server", "chdb"]
"""Fixtures over both engines take these params and yield from :func:`engine_for`."""


def engine_for(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "bt_")


def store_usage(
    engine: Engine,
    database: str,
    usage: Mapping[str, Mapping[str, int | Decimal]],
    window_s: int,
    ingested_s: int,
) -> None:
    """Usage as the worker stores it: a COUNT meter's quantity as that many events, a SUM
    meter's as one event of that value, all in one window and ingestion minute."""
    feed: list[FeedRow] = []
    for subject, meters in usage.items():
        for meter, quantity in meters.items():
            count = METERS.get(meter).aggregation is Aggregation.COUNT
            values = [Decimal(1)] * int(quantity) if count else [Decimal(quantity)]
            feed += [
                FeedRow(
                    NAMESPACE,
                    meter,
                    subject,
                    "{}",
                    window_s - window_s % 60,
                    ingested_s - ingested_s % 60,
                    value,
                    "",
                    window_s * 1000,
                    0,
                    len(feed) + n,
                )
                for n, value in enumerate(values)
            ]
    engine.insert(*WindowsTable(database).insert_args(feed))


def bill(
    engine: Engine,
    database: str,
    label: str = "2026-10",
    cutoff_s: int = CUTOFF_S,
    customers: Sequence[Customer] = CUSTOMERS,
    card: RateCard = BILLED_CARD,
) -> RunResult:
    """Bill a month with the real billing run (no Kafka: the invoices are stored only)."""
    return run_period(
        BillingRun(
            namespace=NAMESPACE,
            database=database,
            period=month_period(label),
            customers=customers,
            card=card,
            meters=METERS,
            cutoff_s=cutoff_s,
        ),
        engine=engine,
        publish=None,
        now=datetime.fromtimestamp(cutoff_s + 30, UTC),
        sleep=lambda _: None,
    )
