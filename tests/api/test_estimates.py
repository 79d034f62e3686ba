from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from api.credits import balance_json
from api.estimates import CustomerEstimate, credit_json, current_period, estimate, with_credit
from invoicing.credit_grants import Grant
from invoicing.credits import (
    CreditBook,
    CreditDue,
    apply_credits,
    consumption_entries,
    credit_held,
    void_entry,
)
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


# -- prepaid credit beside the estimates (``with_credit``, ``credit_json``) -----------------

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
USD_ACME = CUSTOMERS[0]


def grant(grant_id: str, amount: str, customer: str = "acme", **terms: object) -> Grant:
    base: dict[str, object] = {
        "grant_id": grant_id,
        "customer_id": customer,
        "currency": "USD",
        "amount": Decimal(amount),
        "priority": 10,
        "effective_at": datetime(2026, 9, 1, tzinfo=UTC),
        "expires_at": None,
        "rollover": None,
        "name": grant_id,
        "granted_at": datetime(2026, 9, 1, tzinfo=UTC),
    }
    base.update(terms)
    return Grant(**base)  # type: ignore[arg-type]


def consumed(book: CreditBook, invoice: str, end: datetime, amount: str) -> CreditBook:
    """``book`` after an invoice of ``amount`` USD at ``end`` took its credit (the rule)."""
    due = CreditDue("acme", "USD", invoice, end, Decimal(amount))
    return book.with_entries(consumption_entries(due, apply_credits(book, due)))


def priced(customer: Customer, total: str | None) -> CustomerEstimate:
    if total is None:
        return CustomerEstimate(customer, {}, error="no price list")
    return CustomerEstimate(customer, {}, [], Decimal(total))


def acme_book() -> CreditBook:
    """promo 50.00 (priority 1) of which an October invoice took 12.34; gift 20.00
    voided; later 15.00 taking effect after NOW (scheduled)."""
    promo = grant("promo", "50.00", priority=1)
    gift = grant("gift", "20.00")
    later = grant("later", "15.00", effective_at=datetime(2026, 12, 20, tzinfo=UTC))
    book = consumed(
        CreditBook((promo, gift, later)), "inv-oct", datetime(2026, 11, 1, tzinfo=UTC), "12.34"
    )
    gift_state = book.states()["gift"]
    return book.with_entries([void_entry(gift_state, NOW, "refunded")])


def test_credit_shows_the_balance_and_what_the_estimate_leaves() -> None:
    book = acme_book()
    (usd,) = credit_json("acme", book, [priced(USD_ACME, "2.50")], NOW)
    # remaining: 50.00 − 12.34 of promo, + 15.00 scheduled, gift voided: what /balance says
    assert usd == {"currency": "USD", "remaining": "52.66", "afterEstimate": "35.16"}
    balance = balance_json("acme", book, NOW)["balances"]
    assert isinstance(balance, list)
    assert [(b["currency"], b["remaining"]) for b in balance] == [("USD", Decimal("52.66"))]
    # the credit in effect (promo 37.66; the scheduled grant not yet) less the estimate
    held = credit_held(book, "acme", "USD", NOW)
    assert held is not None
    assert Decimal(str(usd["afterEstimate"])) == held.after(Decimal("2.50"))


def test_charges_beyond_the_credit_leave_a_negative_balance_and_unpriced_leave_none() -> None:
    book = acme_book()
    (over,) = credit_json("acme", book, [priced(USD_ACME, "40.00")], NOW)
    assert over["afterEstimate"] == "-2.34"  # 37.66 in effect; 2.34 will be paid
    (unknown,) = credit_json("acme", book, [priced(USD_ACME, None)], NOW)
    assert (unknown["remaining"], unknown["afterEstimate"]) == ("52.66", None)


def test_no_grants_no_credit_and_nothing_in_effect_no_after() -> None:
    assert credit_json("acme", CreditBook(), [priced(USD_ACME, "1.00")], NOW) == []
    book = CreditBook((grant("gift", "20.00"),))
    voided = book.with_entries([void_entry(book.states()["gift"], NOW, "x")])
    assert credit_json("acme", voided, [priced(USD_ACME, "1.00")], NOW) == [
        {"currency": "USD", "remaining": "0.00", "afterEstimate": None}
    ]


def test_each_currency_takes_the_charges_of_its_subscriptions() -> None:
    usd_b = USD_ACME.model_copy(update={"subscription": "second"})
    eur = USD_ACME.model_copy(update={"subscription": "eu", "currency": "EUR"})
    book = CreditBook((grant("usd", "10.00"), grant("eur", "8.00", currency="EUR")))
    estimates = [priced(USD_ACME, "1.25"), priced(usd_b, "2.00"), priced(eur, "0.50")]
    assert credit_json("acme", book, estimates, NOW) == [
        {"currency": "EUR", "remaining": "8.00", "afterEstimate": "7.50"},
        {"currency": "USD", "remaining": "10.00", "afterEstimate": "6.75"},
    ]


def test_with_credit_keeps_each_estimate_and_splits_the_book_per_customer() -> None:
    book = CreditBook(
        (grant("a1", "5.00"), grant("g1", "7.00", customer="globex")),
    )
    book = consumed(book, "inv-a", datetime(2026, 11, 1, tzinfo=UTC), "1.00")
    by_id = {c.id: c for c in CUSTOMERS}
    estimates = [priced(by_id[name], "0.00") for name in ("acme", "globex", "initech")]
    listed = with_credit(estimates, book, NOW)
    assert [{k: v for k, v in e.items() if k != "credit"} for e in listed] == [
        e.to_json() for e in estimates
    ]
    assert [e["credit"] for e in listed] == [
        [{"currency": "USD", "remaining": "4.00", "afterEstimate": "4.00"}],
        [{"currency": "USD", "remaining": "7.00", "afterEstimate": "7.00"}],
        [],
    ]
    for e in listed:  # the same numbers as GET /customers/{id}/balance on the whole book
        whole = balance_json(e["id"], book, NOW)["balances"]
        assert isinstance(whole, list)
        assert [(b["currency"], format(b["remaining"], "f")) for b in whole] == [
            (c["currency"], c["remaining"]) for c in e["credit"]
        ]
