from datetime import date

import pytest

from invoicing.customers import Cadence, load_customers, parse_customers
from invoicing.periods import parse_month
from schemas.errors import InvalidInput
from tests.invoicing.helpers import ROOT


def test_demo_customers_load_with_their_subscriptions() -> None:
    customers = load_customers(ROOT / "deploy/demo/customers.yaml")
    umbrella = next(c for c in customers if c.id == "umbrella")
    assert umbrella.subjects == ("umbrella-eu", "umbrella-us")
    assert umbrella.subscription == "enterprise"
    assert umbrella.cadence is Cadence.MONTHLY
    assert next(c for c in customers if c.id == "acme").subjects == ("acme",)


def test_defaults_and_anchor_from_start_date() -> None:
    (sub,) = parse_customers(
        {"customers": [{"id": "a", "plan": "pro", "currency": "USD", "start": "2026-01-31"}]}
    )
    assert (sub.subscription, sub.timezone, sub.cadence) == ("main", "UTC", Cadence.MONTHLY)
    assert sub.schedule.anchor_day == 31
    labels = [p.label for p in sub.schedule.ending_in(parse_month("2026-03"))]
    assert labels == ["2026-02-28..2026-03-31"]


def test_sequential_subscriptions_of_one_customer_are_allowed() -> None:
    subs = parse_customers(
        {
            "customers": [
                {
                    "id": "a",
                    "subscription": "old",
                    "plan": "pro",
                    "currency": "USD",
                    "start": "2026-01-01",
                    "end": "2026-06-01",
                },
                {
                    "id": "a",
                    "subscription": "new",
                    "plan": "starter",
                    "currency": "USD",
                    "start": "2026-06-01",
                },
            ]
        }
    )
    assert [s.end for s in subs] == [date(2026, 6, 1), None]


def test_every_problem_is_reported_with_its_path_and_fix() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_customers(
            {
                "customers": [
                    {
                        "id": "a",
                        "plan": "pro",
                        "currency": "USD",
                        "start": "2026-05-01",
                        "end": "2026-04-01",
                    },
                    {"id": "a", "plan": "pro", "currency": "USD", "start": "2026-01-01"},
                    {
                        "id": "b",
                        "subjects": ["a"],
                        "plan": "pro",
                        "currency": "USD",
                        "cadence": "daily",
                        "anchor_day": 3,
                    },
                ]
            }
        )
    paths = {p.path for p in caught.value.problems}
    assert paths == {
        "customers[0].end",
        "customers[1].subscription",
        "customers[1].start",
        "customers[2].subjects",
        "customers[2].anchor_day",
    }
    assert all(p.fix for p in caught.value.problems)


def test_unknown_timezone_and_bad_fields_are_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_customers(
            {
                "customers": [
                    {
                        "id": "a",
                        "plan": "p",
                        "currency": "usd",
                        "timezone": "Mars/Base",
                        "cadence": "fortnightly",
                    }
                ]
            }
        )
    assert {p.path for p in caught.value.problems} == {
        "customers.0.currency",
        "customers.0.timezone",
        "customers.0.cadence",
    }


def test_overlapping_subscriptions_of_a_customer_are_found_however_far_apart() -> None:
    """The overlap check compares a customer's own subscriptions only (linear in the file),
    wherever they stand in it; meeting at an instant is not an overlap."""
    entries = [
        {"id": "a", "subscription": "s1", "plan": "p", "currency": "USD", "start": "2026-01-01",
         "end": "2026-06-01"},
        *({"id": f"x{n}", "plan": "p", "currency": "USD"} for n in range(50)),
        {"id": "a", "subscription": "s2", "plan": "p", "currency": "USD", "start": "2026-05-01"},
        {"id": "b", "subscription": "s1", "plan": "p", "currency": "USD",
         "end": "2026-06-01T12:30:00Z"},
        {"id": "b", "subscription": "s2", "plan": "p", "currency": "USD",
         "start": "2026-06-01T12:30:00Z"},
    ]  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        parse_customers({"customers": entries})
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("customers[51].start", "overlaps subscription 's1' (customers[0]) of the same customer")
    ]
