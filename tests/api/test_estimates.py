from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from api.estimates import current_period, estimate, priced_meters
from invoicing.customers import load_customers
from rating import load_rate_card
from tests.conftest import ROOT

CARD = load_rate_card(ROOT / "deploy/demo/rate-card.yaml")
CUSTOMERS = load_customers(ROOT / "deploy/demo/customers.yaml")


def test_current_period_is_the_utc_month() -> None:
    period = current_period(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert period.start == datetime(2026, 12, 1, tzinfo=UTC)
    assert period.end == datetime(2027, 1, 1, tzinfo=UTC)


def test_estimates_sum_subjects_and_price_exactly() -> None:
    usage = {
        "acme": {"api_calls": Decimal(1000)},
        "umbrella-eu": {"llm_tokens": Decimal(100000)},
        "umbrella-us": {"llm_tokens": Decimal(50000)},
    }
    by_id = {e.customer.id: e for e in estimate(CUSTOMERS, CARD, usage)}
    assert by_id["acme"].total == Decimal("2.00")  # starter: 1000 × 0.002
    assert by_id["umbrella"].usage == {"llm_tokens": Decimal(150000)}
    assert by_id["umbrella"].total == Decimal("2.25")  # pro: 150000 × 0.000015
    assert by_id["globex"].total == Decimal("0.00")
    assert priced_meters(CARD) == {"api_calls", "llm_tokens", "storage_gb_hours"}


def test_unpriceable_customer_gets_an_error_not_a_crash() -> None:
    odd = CUSTOMERS[0].model_copy(update={"currency": "EUR"})
    (result,) = estimate([odd], CARD, {})
    assert result.total is None
    assert result.error
