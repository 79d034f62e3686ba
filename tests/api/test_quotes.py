"""The quote's pure core at fixed instants (no services): which subscription and period a
quote prices, and the worked example's arithmetic.  ``test_quote.py`` runs the same on
the real stack, at whatever date the suite runs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from api.problems import HttpProblem
from api.quotes import current_subscription, price_quote, proposed_usage
from invoicing.customers import Customer, parse_customers
from rating import load_rate_card_data
from schemas.documents import parse_yaml
from tests.api.quote_kit import CUSTOMERS, doc_blocks
from tests.invoicing.helpers import METERS

ENTRIES = list(enumerate(parse_customers({"customers": CUSTOMERS})))
CARD = load_rate_card_data(parse_yaml(doc_blocks()[0], "rate card", "docs/api.md"), METERS.slugs())


def entries(customer_id: str) -> list[tuple[int, Customer]]:
    return [(i, c) for i, c in ENTRIES if c.id == customer_id]


def test_the_subscription_whose_period_holds_now_in_its_own_time_zone() -> None:
    # initech's main subscription is billed from the 15th, Berlin time (UTC+1 in winter)
    index, entry, period = current_subscription(
        entries("initech"), None, datetime(2026, 12, 1, 12, tzinfo=UTC)
    )
    assert (index, entry.subscription) == (3, "main")
    assert (period.start, period.end) == (
        datetime(2026, 11, 14, 23, tzinfo=UTC),
        datetime(2026, 12, 14, 23, tzinfo=UTC),
    )
    # 23:30 UTC on the 14th is already the 15th in Berlin: the next period
    _, _, next_period = current_subscription(
        entries("initech"), None, datetime(2026, 12, 14, 23, 30, tzinfo=UTC)
    )
    assert next_period.start == datetime(2026, 12, 14, 23, tzinfo=UTC)
    # in March the legacy subscription (calendar months, UTC) was the current one
    _, old, march = current_subscription(
        entries("initech"), None, datetime(2026, 3, 10, tzinfo=UTC)
    )
    assert (old.subscription, march.start) == ("legacy", datetime(2026, 3, 1, tzinfo=UTC))


def test_no_period_holding_now_is_409_and_an_unknown_subscription_400() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with pytest.raises(HttpProblem) as ended:
        current_subscription(entries("initech"), "legacy", now)
    assert ended.value.status == 409
    assert "'legacy' runs from 2025-01-01 to 2026-05-31 22:00:00+00:00" in ended.value.detail
    with pytest.raises(HttpProblem) as unknown:
        current_subscription(entries("initech"), "mian", now)
    assert unknown.value.status == 400
    assert unknown.value.problems[0].fix == "did you mean 'main'? Known: legacy, main"


def test_the_worked_example_by_hand() -> None:
    """docs/api.md: 4200 calls and 123000 tokens so far (over two subjects), 1500 calls
    and 250 tokens proposed: 28.86 → 31.17, marginal 2.31."""
    subscription = current_subscription(entries("acme"), None, datetime(2026, 12, 1, tzinfo=UTC))
    stored = {
        "acme-eu": {"api_calls": Decimal(2500), "llm_tokens": Decimal("100000.500000000")},
        "acme-us": {"api_calls": Decimal(1700), "llm_tokens": Decimal("22999.500000000")},
        "globex": {"api_calls": Decimal(10)},  # another customer's: not added
    }
    customer = subscription[1]
    proposed = proposed_usage(CARD, customer, {"api_calls": 1500, "llm_tokens": "250"})
    quote = price_quote(CARD, METERS, subscription, stored, proposed, datetime.now(UTC))
    assert quote.so_far == {"api_calls": Decimal(4200), "llm_tokens": Decimal(123000)}
    assert (quote.before.total, quote.after.total, quote.marginal_cost) == (
        Decimal("28.86"),
        Decimal("31.17"),
        Decimal("2.31"),
    )
    assert quote.to_json()["usage"] == {"api_calls": "4200", "llm_tokens": "123000"}
