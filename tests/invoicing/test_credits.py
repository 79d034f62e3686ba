"""Prepaid credits (pure): which grants pay an invoice, in which order, how much, and
what the ledger then says.  The worked examples of docs/credits.md are in
``test_credits_docs.py``; validation of grant requests is at the end."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.credit_grants import EntryKind, Grant, Rollover
from invoicing.credits import CreditBook, CreditDue, apply_credits, consumption_entries, void_entry
from invoicing.grants import DEFAULT_PRIORITY, parse_grant
from schemas.errors import InvalidInput

NOW = datetime(2026, 9, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def grant(grant_id: str, amount: str, **terms: object) -> Grant:
    base: dict[str, object] = {
        "grant_id": grant_id,
        "customer_id": "acme",
        "currency": "USD",
        "amount": Decimal(amount),
        "priority": DEFAULT_PRIORITY,
        "effective_at": NOW,
        "expires_at": None,
        "rollover": None,
        "name": grant_id,
        "granted_at": NOW,
    }
    base.update(terms)
    return Grant(**base)  # type: ignore[arg-type]


def due(invoice: str, end: str, amount: str, currency: str = "USD") -> CreditDue:
    return CreditDue("acme", currency, invoice, at(end), Decimal(amount))


def bill(book: CreditBook, d: CreditDue) -> tuple[CreditBook, dict[str, Decimal]]:
    applied = apply_credits(book, d)
    return book.with_entries(consumption_entries(d, applied)), {
        a.grant_id: a.amount for a in applied
    }


def test_priority_then_expiry_then_no_expiry_last() -> None:
    book = CreditBook(
        (
            grant("later", "10.00", priority=5, expires_at=at("2027-03-01T00:00Z")),
            grant("never", "10.00", priority=5),
            grant("sooner", "10.00", priority=5, expires_at=at("2027-01-01T00:00Z")),
            grant("first", "10.00", priority=1),
        )
    )
    applied = apply_credits(book, due("inv1", "2026-11-01T00:00Z", "35.00"))
    assert [(a.grant_id, a.amount) for a in applied] == [
        ("first", Decimal("10.00")),
        ("sooner", Decimal("10.00")),
        ("later", Decimal("10.00")),
        ("never", Decimal("5.00")),
    ]
    assert applied[-1].balance_after == Decimal("5.00")


def test_credit_never_exceeds_what_is_due_nor_applies_to_a_negative_total() -> None:
    book = CreditBook((grant("g", "100.00"),))
    assert [a.amount for a in apply_credits(book, due("i", "2026-11-01T00:00Z", "12.34"))] == [
        Decimal("12.34")
    ]
    assert apply_credits(book, due("i", "2026-11-01T00:00Z", "-16.00")) == ()
    assert apply_credits(book, due("i", "2026-11-01T00:00Z", "0.00")) == ()


def test_a_grant_pays_invoices_ending_after_it_starts_and_on_or_before_its_expiry() -> None:
    g = grant("g", "5.00", effective_at=at("2026-10-15T00:00Z"), expires_at=at("2026-12-01T00:00Z"))
    book = CreditBook((g,))
    assert apply_credits(book, due("sep", "2026-10-01T00:00Z", "9")) == ()  # before it starts
    assert apply_credits(book, due("oct", "2026-10-15T00:00Z", "9")) == ()  # starts at the end
    assert len(apply_credits(book, due("nov", "2026-12-01T00:00Z", "9"))) == 1  # ends at expiry
    assert apply_credits(book, due("dec", "2026-12-01T00:00:00.001Z", "9")) == ()  # after it


def test_consumption_never_mixes_currencies() -> None:
    book = CreditBook((grant("eur", "50.00", currency="EUR"), grant("usd", "5.00")))
    applied = apply_credits(book, due("i", "2026-11-01T00:00Z", "20.00"))
    assert [(a.grant_id, a.currency) for a in applied] == [("usd", "USD")]
    assert apply_credits(book, due("j", "2026-11-01T00:00Z", "20", currency="GBP")) == ()


def test_a_rerun_of_the_same_invoice_decides_the_same_and_never_consumes_twice() -> None:
    book = CreditBook((grant("g", "30.00"),))
    d = due("inv1", "2026-11-01T00:00Z", "20.00")
    book, first = bill(book, d)
    again = apply_credits(book, d)  # its own entries are ignored: the same decision
    assert {a.grant_id: a.amount for a in again} == first == {"g": Decimal("20.00")}
    book = book.with_entries(consumption_entries(d, again))
    assert book.states()["g"].consumed == Decimal("20.00")
    _, second = bill(book, due("inv2", "2026-12-01T00:00Z", "20.00"))
    assert second == {"g": Decimal("10.00")}


def test_a_voided_invoice_gives_its_credit_back() -> None:
    book, _ = bill(CreditBook((grant("g", "30.00"),)), due("inv1", "2026-11-01T00:00Z", "25.00"))
    released = CreditBook(book.grants, book.entries, frozenset({"inv1"}))
    _, rebilled = bill(released, due("inv1-r1", "2026-11-01T00:00Z", "28.00"))
    assert rebilled == {"g": Decimal("28.00")}


def test_a_voided_grant_pays_nothing_and_its_void_entry_removes_what_remained() -> None:
    book, _ = bill(CreditBook((grant("g", "30.00"),)), due("inv1", "2026-11-01T00:00Z", "12.50"))
    entry = void_entry(book.states()["g"], at("2026-11-05T00:00Z"), "refund")
    assert (entry.kind, entry.amount, entry.entry_id) == (
        EntryKind.VOID,
        Decimal("-17.50"),
        "void:g",
    )
    voided = book.with_entries([entry])
    assert apply_credits(voided, due("inv2", "2026-12-01T00:00Z", "5")) == ()
    state = voided.states()["g"]
    assert (state.remaining(at("2026-11-06T00:00Z")), state.status(NOW)) == (Decimal(0), "voided")


def test_rollover_keeps_at_most_its_maximum_until_its_end() -> None:
    g = grant(
        "g",
        "100.00",
        expires_at=at("2026-11-01T00:00Z"),
        rollover=Rollover(Decimal("30.00"), at("2027-01-01T00:00Z")),
    )
    book, october = bill(CreditBook((g,)), due("oct", "2026-11-01T00:00Z", "60.00"))
    assert october == {"g": Decimal("60.00")}
    assert book.states()["g"].status(at("2026-11-02T00:00Z")) == "rollover"
    book, november = bill(book, due("nov", "2026-12-01T00:00Z", "45.00"))
    assert november == {"g": Decimal("30.00")}  # min(100 - 60, 30) - 0
    assert apply_credits(book, due("dec", "2027-01-01T00:00Z", "5")) == ()  # min(40, 30) - 30
    assert apply_credits(book, due("jan", "2027-02-01T00:00Z", "5")) == ()  # after until


def test_rollover_is_the_same_whatever_order_the_periods_are_billed_in() -> None:
    g = grant(
        "g",
        "100.00",
        expires_at=at("2026-11-01T00:00Z"),
        rollover=Rollover(Decimal("30.00"), at("2027-01-01T00:00Z")),
    )
    # November (after the expiry) billed first, then October (a re-issued revision)
    book, november = bill(CreditBook((g,)), due("nov", "2026-12-01T00:00Z", "45.00"))
    assert november == {"g": Decimal("30.00")}
    book, october = bill(book, due("oct", "2026-11-01T00:00Z", "90.00"))
    assert october == {"g": Decimal("70.00")}  # 100 - 0 - 30: never overdrawn
    state = book.states()["g"]
    assert state.consumed == Decimal("100.00")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(-2000, 9000)), min_size=1, max_size=12),
    st.integers(1, 10000),
    st.integers(0, 10000),
)
def test_a_grant_is_never_overdrawn_whatever_the_billing_order(
    bills: list[tuple[int, int]], amount: int, most: int
) -> None:
    cents = Decimal("0.01")
    g = grant(
        "g",
        str(amount * cents),
        expires_at=at("2026-12-01T00:00Z"),
        rollover=Rollover(min(most, amount) * cents, at("2027-03-01T00:00Z")),
    )
    book = CreditBook((g, grant("h", "7.00", priority=20)))
    for n, (month, owed) in enumerate(bills):
        end = (
            datetime(2026, 10 + month, 1, tzinfo=UTC)
            if month < 3
            else datetime(2027, month - 2, 1, tzinfo=UTC)
        )
        d = due(f"inv{n}", end.isoformat(), str(owed * cents))
        applied = apply_credits(book, d)
        assert sum((a.amount for a in applied), Decimal(0)) <= max(Decimal(0), d.amount)
        assert all(a.amount > 0 and a.amount.as_tuple().exponent == -2 for a in applied)
        book = book.with_entries(consumption_entries(d, applied))
    states = book.states()
    assert states["g"].consumed <= g.amount
    assert g.rollover is not None
    assert states["g"].consumed_rollover <= g.rollover.max_amount
    assert states["h"].consumed <= Decimal("7.00")


# -- validating a grant request -------------------------------------------------------


def parse(body: object, billed: tuple[str, ...] = ("USD",)) -> Grant:
    return parse_grant(body, customer_id="acme", billed_currencies=billed, grant_id="gr_1", now=NOW)


def test_a_valid_grant_request() -> None:
    g = parse(
        {
            "amount": Decimal("100.5"),
            "currency": "USD",
            "priority": 1,
            "effective_at": "2026-10-01T02:00:00.123456+02:00",
            "expires_at": "2026-12-01T00:00:00Z",
            "rollover": {"max_amount": "20", "until": "2027-01-01T00:00:00Z"},
            "name": "Welcome",
        }
    )
    assert (g.grant_id, g.amount, str(g.amount), g.priority) == (
        "gr_1",
        Decimal("100.5"),
        "100.50",
        1,
    )
    assert g.effective_at == datetime(2026, 10, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert g.rollover == Rollover(Decimal("20.00"), at("2027-01-01T00:00Z"))
    assert parse({"amount": 5, "currency": "USD"}).effective_at == NOW


def test_a_grant_in_a_currency_the_customer_is_not_billed_in_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse({"amount": "10", "currency": "EUR"})
    (problem,) = refused.value.problems
    assert problem.path == "currency"
    assert "billed in USD, not EUR" in problem.message
    assert problem.fix == "grant in USD, or add a EUR subscription first"


def test_every_problem_of_a_grant_request_is_reported_with_its_field_and_fix() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(
            {
                "amount": "1000.5",
                "currency": "JPY",
                "priority": 0,
                "expires_at": "2026-08-01T00:00:00Z",
                "rollover": {"max_amount": 5000, "until": "yesterday"},
                "colour": "red",
                "id": "no spaces",
            },
            billed=("JPY",),
        )
    by_path = {p.path: p for p in refused.value.problems}
    assert set(by_path) == {
        "colour",
        "amount",
        "priority",
        "expires_at",
        "rollover.until",
        "id",
    }
    assert by_path["amount"].message == "1000.5 has more decimals than JPY's 0"
    assert by_path["amount"].fix == "give a whole amount of JPY's minor unit, e.g. 1000"
    assert by_path["expires_at"].message == "is not after effective_at"
    with pytest.raises(InvalidInput, match="not an exact number"):
        parse({"amount": 1.5, "currency": "USD"})
    with pytest.raises(InvalidInput, match=r"rollover\.max_amount: exceeds the grant.s amount"):
        parse(
            {
                "amount": "10",
                "currency": "USD",
                "expires_at": "2026-12-01T00:00Z",
                "rollover": {"max_amount": "11", "until": "2027-01-01T00:00Z"},
            }
        )
    with pytest.raises(InvalidInput, match="add expires_at"):
        parse(
            {
                "amount": "10",
                "currency": "USD",
                "rollover": {"max_amount": "1", "until": "2027-01-01T00:00Z"},
            }
        )


def test_a_customers_own_book_decides_what_the_whole_book_decides() -> None:
    """Billing splits the book per customer once (``CreditBook.by_customer``); each
    customer's credit is decided from its own grants and entries exactly as before."""
    book = CreditBook(
        (grant("a1", "30.00"), grant("a2", "5.00", priority=1),
         grant("b1", "50.00", customer_id="globex"))
    )  # fmt: skip
    book, _ = bill(book, due("inv1", "2026-11-01T00:00Z", "12.00"))
    other = CreditDue("globex", "USD", "inv9", at("2026-11-01T00:00Z"), Decimal("7.00"))
    book = book.with_entries(consumption_entries(other, apply_credits(book, other)))
    split = book.by_customer()
    assert sorted(split) == ["acme", "globex"]
    assert [g.grant_id for g in split["globex"].grants] == ["b1"]
    assert {e.customer_id for e in split["acme"].entries} == {"acme"}
    for d in (due("inv2", "2026-12-01T00:00Z", "40.00"), other):
        own = split[d.customer_id]
        assert apply_credits(own, d) == apply_credits(book, d)
    assert split["acme"].states() == {k: v for k, v in book.states().items() if k != "b1"}
