from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from api.estimates import current_period, estimate
from invoicing.customers import Customer, load_customers
from invoicing.usage import customer_usage, priced_meters
from rating import load_rate_card, load_rate_card_data
from schemas.metering.definitions import load_meters, parse_meters
from tests.conftest import ROOT

CARD = load_rate_card(ROOT / "deploy/demo/rate-card.yaml")
METERS = load_meters(ROOT / "deploy/demo/meters.yaml")
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
    by_id = {e.customer.id: e for e in estimate(CUSTOMERS, CARD, METERS, usage)}
    assert by_id["acme"].total == Decimal("2.00")  # starter: 1000 × 0.002
    assert by_id["umbrella"].usage == {"llm_tokens": Decimal(150000)}
    assert by_id["umbrella"].total == Decimal("2.25")  # pro: 150000 × 0.000015
    assert by_id["globex"].total == Decimal("0.00")
    assert priced_meters(CARD) == {"api_calls", "llm_tokens", "storage_gb_hours"}


def test_unpriceable_customer_gets_an_error_not_a_crash() -> None:
    odd = CUSTOMERS[0].model_copy(update={"currency": "EUR"})
    (result,) = estimate([odd], CARD, METERS, {})
    assert result.total is None
    assert result.error


def test_a_max_meter_over_several_subjects_is_refused_as_billing_refuses_it() -> None:
    meters = parse_meters(
        {
            "meters": [
                {
                    "slug": "peak_gb",
                    "event_type": "storage",
                    "aggregation": "MAX",
                    "value_property": "$.gb",
                }
            ]
        }
    )
    card = load_rate_card_data(
        {
            "plans": {
                "pro": {
                    "USD": {
                        "charges": [{"meter": "peak_gb", "model": "per_unit", "unit_price": "1"}]
                    }
                }
            }
        },
        meters.slugs(),
    )
    one = Customer.model_validate({"id": "solo", "plan": "pro", "currency": "USD"})
    two = Customer.model_validate(
        {"id": "umbrella", "subjects": ["eu", "us"], "plan": "pro", "currency": "USD"}
    )
    usage = {
        "solo": {"peak_gb": Decimal(4)},
        "eu": {"peak_gb": Decimal(5)},
        "us": {"peak_gb": Decimal(7)},
    }
    solo, umbrella = estimate([one, two], card, meters, usage)
    assert solo.total == Decimal("4.00")
    assert umbrella.total is None
    assert umbrella.error == (
        "customers[1].subjects: meter 'peak_gb' (MAX) cannot be summed across subjects"
        " (fix: bill this customer on one subject)"
    )
    _, problems = customer_usage(two, 1, meters, usage)  # what billing refuses it with
    assert str(problems[0]) == umbrella.error
    assert [e.customer.id for e in estimate([one, two], card, meters, usage, only="umbrella")] == [
        "umbrella"
    ]
