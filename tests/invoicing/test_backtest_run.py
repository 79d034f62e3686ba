"""Backtests of months billed by the real billing run, on the ClickHouse 18.16 server and
on chDB: the billed card gives no difference anywhere, the draft card the differences
computed by hand, and each period is compared with its live invoice at its own cutoff."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal

import pytest

from invoicing.backtest import Backtest, BacktestRequest, Status, run_backtest
from invoicing.backtest.command import parse_months
from invoicing.customers import Customer
from invoicing.ledger import void_invoice
from invoicing.periods import month_period
from rating import RateCard
from schemas.errors import InvalidInput
from schemas.storage.engine import Engine
from tests.invoicing.backtest_kit import (
    BILLED_CARD,
    CUSTOMERS,
    CUTOFF_S,
    DOC_USAGE,
    DRAFT_CARD,
    ENGINES,
    METERS,
    NAMESPACE,
    OCTOBER,
    bill,
    engine_for,
    store_usage,
)

NOVEMBER = month_period("2026-11")
ACME = CUSTOMERS[0]


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from engine_for(request)


def backtest(
    db: tuple[Engine, str],
    card: RateCard,
    *periods: str,
    customers: Sequence[Customer] = CUSTOMERS,
) -> Backtest:
    engine, database = db
    request = BacktestRequest(
        NAMESPACE, database, parse_months(periods), customers, card, METERS, "draft.yaml"
    )
    return run_backtest(request, engine)


def october(db: tuple[Engine, str]) -> None:
    """The documented example: October's usage, billed with the demo card."""
    engine, database = db
    day = OCTOBER.start_s + 86400
    store_usage(engine, database, DOC_USAGE, day, day + 120)
    assert len(bill(engine, database).invoices) == 4


def by_row(result: Backtest) -> dict[tuple[str, str], tuple[str, str, str]]:
    return {
        (r.customer_id, r.meter): (str(r.invoiced), str(r.repriced), str(r.status))
        for r in result.rows
    }


def test_the_billed_card_gives_no_difference_anywhere(db: tuple[Engine, str]) -> None:
    october(db)
    result = backtest(db, BILLED_CARD, "2026-10")
    assert (result.invoices, result.not_invoiced, len(result.rows)) == (4, 0, 12)
    assert all(r.status is Status.OK and r.difference == 0 for r in result.rows)
    overall = {t.currency: (t.invoiced, t.repriced) for t in result.overall}
    assert overall == {"JPY": (Decimal(214), Decimal(214)), "USD": (Decimal("43.75"),) * 2}


def test_the_draft_card_gives_the_differences_computed_by_hand(db: tuple[Engine, str]) -> None:
    october(db)
    result = backtest(db, DRAFT_CARD, "2026-10")
    no_jpy = ("None", "no-currency")
    assert by_row(result) == {
        ("acme", "api_calls"): ("3.00", "1.50", "ok"),  # 1000 free, 500 × 0.003
        ("acme", "llm_tokens"): ("4.00", "4.00", "ok"),
        ("acme", "storage_gb_hours"): ("1.00", "1.00", "ok"),
        ("acme", "(flat)"): ("0.00", "5.00", "ok"),  # the new platform fee
        ("globex", "api_calls"): ("6.00", "6.00", "ok"),
        ("globex", "llm_tokens"): ("15.00", "10.00", "ok"),  # 1,000,000 × 0.00001
        ("globex", "storage_gb_hours"): ("5.00", "5.00", "ok"),
        ("initech", "api_calls"): ("69", *no_jpy),
        ("initech", "llm_tokens"): ("115", *no_jpy),
        ("initech", "storage_gb_hours"): ("30", *no_jpy),
        ("umbrella", "api_calls"): ("2.25", "2.25", "ok"),  # both subjects: 1500 calls
        ("umbrella", "llm_tokens"): ("6.00", "4.00", "ok"),
        ("umbrella", "storage_gb_hours"): ("1.50", "1.50", "ok"),
    }
    totals = {t.customer_id: (t.difference, t.change_pct) for t in result.customers}
    assert totals == {
        "acme": (Decimal("3.50"), Decimal("43.75")),
        "globex": (Decimal("-5.00"), Decimal("-19.23")),
        "initech": (None, None),
        "umbrella": (Decimal("-2.00"), Decimal("-20.51")),
    }
    usd = result.overall[1]
    assert (usd.invoiced, usd.repriced, usd.change_pct) == (
        Decimal("43.75"),
        Decimal("40.25"),
        Decimal("-8.00"),
    )


def test_each_period_is_compared_with_its_live_invoice_at_its_cutoff(
    db: tuple[Engine, str],
) -> None:
    engine, database = db
    day = OCTOBER.start_s + 86400
    store_usage(engine, database, {"acme": DOC_USAGE["acme"]}, day, day + 120)
    (first,) = bill(engine, database, customers=[ACME]).emitted
    # 500 late October calls, ingested after October's cutoff
    store_usage(engine, database, {"acme": {"api_calls": 500}}, day, CUTOFF_S + 600)
    void_invoice(
        namespace=NAMESPACE,
        database=database,
        invoice_id=first,
        reason="wrong address",
        engine=engine,
        publish=None,
    )
    (second,) = bill(engine, database, cutoff_s=CUTOFF_S + 1200, customers=[ACME]).emitted
    result = backtest(db, BILLED_CARD, "2026-10", customers=[ACME])
    assert {r.invoice_id for r in result.rows} == {second}  # revision 1, the voided cutoff
    assert all(r.difference == 0 for r in result.rows)
    assert by_row(result)[("acme", "api_calls")] == ("3.00", "3.00", "ok")  # not 4.00

    # November: 100 calls, and the late October calls as an adjustment line (+1.00)
    store_usage(
        engine,
        database,
        {"acme": {"api_calls": 100}},
        NOVEMBER.start_s + 60,
        NOVEMBER.start_s + 120,
    )
    (nov,) = bill(engine, database, "2026-11", NOVEMBER.end_s + 3600, [ACME]).invoices
    assert nov.total == Decimal("1.20")
    result = backtest(db, BILLED_CARD, "2026-10..2026-11", customers=[ACME])
    assert result.invoices == 2
    assert all(r.difference == 0 for r in result.rows)
    november = {r.meter: r.invoiced for r in result.rows if r.period == "2026-11"}
    assert november["api_calls"] == Decimal("0.20")  # the adjustment line is not compared


def test_a_void_period_is_not_invoiced(db: tuple[Engine, str]) -> None:
    october(db)
    engine, database = db
    acme = backtest(db, BILLED_CARD, "2026-10").rows[0].invoice_id
    void_invoice(
        namespace=NAMESPACE,
        database=database,
        invoice_id=acme,
        reason="x",
        engine=engine,
        publish=None,
    )
    result = backtest(db, BILLED_CARD, "2026-10")
    assert (result.invoices, result.not_invoiced) == (3, 1)
    assert "acme" not in {r.customer_id for r in result.rows}
    with pytest.raises(InvalidInput) as caught:
        backtest(db, BILLED_CARD, "2026-10", customers=[ACME])
    (problem,) = caught.value.problems
    assert problem.path == "--period"
    assert problem.message == (
        "none of the 1 subscription periods ending in 2026-10 has an issued invoice"
    )


def test_months_no_subscription_period_ends_in_are_refused(db: tuple[Engine, str]) -> None:
    with pytest.raises(
        InvalidInput, match="no subscription period of the customers file ends in 2024-12"
    ):
        backtest(db, BILLED_CARD, "2024-12")
