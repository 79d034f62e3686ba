"""docs/credits.md's worked examples: each table row is recomputed with ``apply_credits``
from the grants the page lists, and must appear in the page as written."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest

from invoicing.credit_grants import Grant, Rollover
from invoicing.credits import CreditBook, CreditDue, apply_credits, consumption_entries
from invoicing.grants import parse_grant
from rating.money import format_decimal
from schemas.errors import InvalidInput
from tests.conftest import ROOT
from tests.invoicing.test_credits import at

PAGE = (ROOT / "docs/credits.md").read_text()
START = at("2026-10-01T00:00Z")


def grant(customer: str, grant_id: str, amount: str, priority: int, **terms: object) -> Grant:
    return Grant(
        grant_id=grant_id,
        customer_id=customer,
        currency=str(terms.get("currency", "USD")),
        amount=Decimal(amount),
        priority=priority,
        effective_at=START,
        expires_at=terms.get("expires_at"),  # type: ignore[arg-type]
        rollover=terms.get("rollover"),  # type: ignore[arg-type]
        name=grant_id,
        granted_at=START,
    )


def rows(book: CreditBook, customer: str, bills: list[tuple[str, str, str]]) -> list[str]:
    """Each bill ``(label, instant, due)`` as the page's table row."""
    out = []
    for label, instant, owed in bills:
        due = CreditDue(customer, "USD", f"inv-{label}", at(f"{instant}T00:00Z"), Decimal(owed))
        applied = apply_credits(book, due)
        book = book.with_entries(consumption_entries(due, applied))
        credits = sum((a.amount for a in applied), Decimal("0.00"))
        lines = ", ".join(f"{a.grant_id} −{a.amount}" for a in applied) or "—"
        total = due.amount - credits
        out.append(
            f"| {label} (instant {instant}) | {owed} | {lines} | "
            f"{'−' if credits else ''}{credits} | {format_decimal(total)} |"
        )
    return out


def test_two_priorities_and_expiries_a_partial_consumption_and_a_mid_period_expiry() -> None:
    book = CreditBook(
        (
            grant("acme", "promo", "50.00", 1, expires_at=at("2027-01-01T00:00Z")),
            grant("acme", "bonus", "40.00", 5, expires_at=at("2026-11-30T00:00Z")),
            grant("acme", "prepaid", "150.00", 5),
        )
    )
    for row in [
        "| `promo` | 50.00 | 1 | 2027-01-01T00:00Z |",
        "| `bonus` | 40.00 | 5 | 2026-11-30T00:00Z |",
        "| `prepaid` | 150.00 | 5 | never |",
    ]:
        assert row in PAGE
    expected = rows(
        book, "acme", [("October", "2026-11-01", "70.37"), ("November", "2026-12-01", "180.25")]
    )
    assert expected == [
        "| October (instant 2026-11-01) | 70.37 | promo −50.00, bonus −20.37 | −70.37 | 0.00 |",
        "| November (instant 2026-12-01) | 180.25 | prepaid −150.00 | −150.00 | 30.25 |",
    ]
    for row in expected:
        assert row in PAGE


def test_rollover() -> None:
    annual = grant(
        "globex",
        "annual",
        "100.00",
        10,
        expires_at=at("2026-11-01T00:00Z"),
        rollover=Rollover(Decimal("30.00"), at("2027-01-01T00:00Z")),
    )
    assert "`rollover {max_amount: 30.00, until: 2027-01-01T00:00Z}`" in PAGE
    bills = [
        ("October", "2026-11-01", "60.00"),
        ("November", "2026-12-01", "45.00"),
        ("December", "2027-01-01", "20.00"),
    ]
    for row in rows(CreditBook((annual,)), "globex", bills):
        assert row in PAGE


def test_multi_currency_refusal() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_grant(
            {"amount": "100.00", "currency": "EUR"},
            customer_id="acme",
            billed_currencies={"USD"},
            grant_id="gr_1",
            now=datetime.fromisoformat("2026-10-01T00:00:00+00:00"),
        )
    (problem,) = refused.value.problems
    shown = {"path": problem.path, "message": problem.message, "fix": problem.fix}
    assert json.dumps(shown, ensure_ascii=False) in PAGE
    book = CreditBook(
        (grant("acme", "eur", "50.00", 1, currency="EUR"), grant("acme", "usd", "5.00", 10))
    )
    due = CreditDue("acme", "USD", "inv", at("2026-11-01T00:00Z"), Decimal("20.00"))
    assert [(a.grant_id, a.amount) for a in apply_credits(book, due)] == [("usd", Decimal("5.00"))]
    assert "takes 5.00 from the USD grant\nonly and 15.00 remains to pay" in PAGE
