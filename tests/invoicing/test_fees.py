"""Flat fees across plan changes, trials, cancellations and billing in advance (pure),
each figure computed by hand in the comment beside it (docs/invoicing.md shows the same
cases)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from invoicing.customers import Customer
from invoicing.fees import Ahead, billable, billed_ahead, billed_fees, share
from invoicing.periods import Period, month_period, parse_month
from invoicing.plan import Billed, plan_subscription
from rating import RateCard, load_rate_card_data
from tests.invoicing.helpers import METERS, ROOT, UsageLog, customer

OCT = month_period("2026-10")


def card(billed: str = "in_arrears", proration: str = "day") -> RateCard:
    """Plan "base": a 31.00 USD monthly fee and per-unit api calls at 0.01."""
    return load_rate_card_data(
        {
            "plans": {
                "base": {
                    "proration": proration,
                    "USD": {
                        "charges": [
                            {"id": "fee", "model": "flat", "amount": "31.00", "billed": billed},
                            {"meter": "api_calls", "model": "per_unit", "unit_price": "0.01"},
                        ]
                    },
                }
            }
        },
        METERS.slugs(),
    )


def committed_card(unit_price: str, fee: str, minimum: str) -> RateCard:
    """Plan "base" (prorated by day): api calls at ``unit_price``, a monthly ``fee`` and a
    ``minimum`` commitment over both."""
    return load_rate_card_data(
        {
            "plans": {
                "base": {
                    "proration": "day",
                    "USD": {
                        "charges": [
                            {"meter": "api_calls", "model": "per_unit", "unit_price": unit_price},
                            {"id": "fee", "model": "flat", "amount": fee},
                            {"id": "commit", "model": "minimum", "amount": minimum},
                        ]
                    },
                }
            }
        },
        METERS.slugs(),
    )


STORED: dict[str, Any] = {}
"""Every document billed by :func:`bill`, as the ledger would hold them."""


def ahead_of(invoice_id: str) -> list[Ahead]:
    """What a stored invoice billed ahead, read back from its document as the run does."""
    return billed_ahead(STORED[invoice_id])


def bill(buyer: Customer, rate_card: RateCard, labels: list[str], **kw: Any) -> list[Any]:
    """Bill the months in order, as successive runs would; the invoices' documents."""
    history: list[Billed] = kw.pop("history", [])
    log: UsageLog = kw.pop("log", UsageLog())
    out = []
    for label in labels:
        period = buyer.schedule.ending_in(parse_month(label))
        planned = plan_subscription(
            namespace="ns", customer=buyer, index=0, periods=period, history=history,
            cutoff_s=month_period(label).end_s + 3600, read=log, card=rate_card,
            meters=METERS, created_ms=0, ahead_of=ahead_of, **kw,
        )  # fmt: skip
        documents = [invoice.document() for invoice in planned.invoices]
        STORED.update((document.invoice_id, document) for document in documents)
        out += documents
    return out


def fee_line(document: Any) -> Any:
    return next((line for line in document.lines if line.charge_id == "fee"), None)


def test_share_by_day_and_by_second_across_a_dst_change() -> None:
    # Europe/Berlin, October 2026: 31 days, one of them 25 hours (summer time ends Oct 25)
    berlin = month_period("2026-10", "Europe/Berlin")
    part = Period(datetime(2026, 10, 14, 22, tzinfo=UTC), berlin.end, "Europe/Berlin")
    assert part.label == "2026-10-15..2026-11-01"
    assert share(part, berlin, "day") == (Decimal("0.5483870968"), "17 of 31 days")  # 17/31
    # 17 days = 409 hours of the month's 745: 1,472,400 / 2,682,000 s
    assert share(part, berlin, "second") == (
        Decimal("0.5489932886"),
        "1472400 of 2682000 seconds",
    )
    assert share(part, berlin, "none") == (Decimal(1), "")
    assert share(None, berlin, "day") == (Decimal(0), "nothing billable")


def test_an_upgrade_in_the_middle_of_a_day_splits_the_fee_by_day() -> None:
    change = datetime(2026, 10, 15, 13, 45, tzinfo=UTC)
    old = customer(plan="base", subscription="s1", start=date(2026, 10, 1), end=change)
    new = customer(plan="base", subscription="s2", start=change, anchor_day=1)
    (before,) = bill(old, card(), ["2026-10"])
    (after,) = bill(new, card(), ["2026-10"])
    assert (before.period.label, after.period.label) == (
        "2026-10-01..2026-10-15T13:45",
        "2026-10-15T13:45..2026-11-01",
    )
    # the day of the change belongs to the plan that held it at midnight: 15 + 16 = 31 days
    assert fee_line(before).amount == "15.00"  # 31.00 × 0.4838709677 = 14.9999999987
    assert fee_line(after).amount == "16.00"  # 31.00 × 0.5161290323 = 16.0000000013
    assert fee_line(before).components[0].label == (
        "flat fee for 2026-10-01..2026-10-15T13:45 (15 of 31 days)"
    )


def test_proration_by_second_for_the_same_change() -> None:
    change = datetime(2026, 10, 15, 13, 45, tzinfo=UTC)
    old = customer(plan="base", start=date(2026, 10, 1), end=change)
    (before,) = bill(old, card(proration="second"), ["2026-10"])
    # 14 d 13 h 45 min = 1,259,100 s of 2,678,400 s → 0.4700940860 × 31.00 = 14.5729…
    assert fee_line(before).quantity == "0.4700940860"
    assert fee_line(before).amount == "14.57"


def test_a_trial_bills_nothing_before_its_end() -> None:
    buyer = customer(plan="base", start=date(2026, 10, 1), trial_end=date(2026, 10, 11))
    log = UsageLog()
    log.add("acme", "api_calls", OCT.start_s + 3600, OCT.start_s + 3660)  # in the trial
    log.add("acme", "api_calls", OCT.start_s + 86400 * 20, OCT.start_s + 86400 * 20 + 60)
    (october,) = bill(buyer, card(), ["2026-10"], log=log)
    assert billable(buyer, buyer.schedule.natural(OCT)) is not None
    # 21 of 31 days: 31.00 × 0.6774193548 = 20.9999999988 → 21.00; one api call after it
    assert fee_line(october).amount == "21.00"
    calls = next(line for line in october.lines if line.charge_id == "api_calls")
    assert calls.quantity == "1"
    assert calls.evidence is None  # no evidence reader in a pure plan


def test_a_period_wholly_inside_a_trial_bills_no_minimum() -> None:
    committed = committed_card("0.01", "31.00", "50.00")
    buyer = customer(plan="base", start=date(2026, 10, 1), trial_end=date(2026, 11, 15))
    log = UsageLog()
    log.add("acme", "api_calls", OCT.start_s + 3600, OCT.start_s + 3660)  # in the trial
    (october,) = bill(buyer, committed, ["2026-10"], log=log)
    assert october.total == "0.00"
    assert [line.charge_id for line in october.lines] == ["api_calls"]
    assert log.reads == 0  # nothing of October is billable: no usage read
    (november,) = bill(buyer, committed, ["2026-11"], log=log)
    # November: 16 of 30 days billable, 31.00 × 0.5333333333 = 16.53; the minimum is
    # compared with what the billable part was charged
    assert fee_line(november).amount == "16.53"
    commit = next(line for line in november.lines if line.charge_id == "commit")
    assert commit.amount == "33.47"
    assert november.total == "50.00"


def test_late_usage_rerates_a_minimum_against_the_prorated_fee_it_was_billed_with() -> None:
    committed = committed_card("1.00", "100.00", "100.00")
    buyer = customer(plan="base", start=date(2026, 10, 16), anchor_day=1)
    log = UsageLog()
    on_time, late = OCT.end_s + 60, OCT.end_s + 7200  # October's run reads until +3600
    for n in range(30):
        log.add(
            "acme", "api_calls", OCT.start_s + 86400 * 20 + n * 60, late if n >= 10 else on_time
        )

    def fees_of(invoice_id: str) -> dict[str, Decimal] | None:
        return billed_fees(STORED[invoice_id]) if invoice_id in STORED else None

    history: list[Billed] = []
    october, november = bill(
        buyer, committed, ["2026-10", "2026-11"], log=log, history=history, fees_of=fees_of
    )
    # October: 10 calls + 16/31 of the fee (51.61) + a true-up of 38.39 to the minimum
    assert [(line.charge_id, line.amount) for line in october.lines] == [
        ("api_calls", "10.00"),
        ("fee", "51.61"),
        ("commit", "38.39"),
    ]
    adjusted = {line.charge_id: line.amount for line in november.lines if line.kind == "adjustment"}
    # October with all 30 calls: 30.00 + 51.61 + 18.39 = 100.00, as billed plus adjusted
    assert adjusted == {"api_calls": "20.00", "commit": "-20.00"}


def test_fees_in_advance_then_a_cancellation_credited() -> None:
    rate_card = card("in_advance")
    buyer = customer(plan="base", start=date(2026, 10, 1))
    history: list[Billed] = []
    october, november = bill(buyer, rate_card, ["2026-10", "2026-11"], history=history)
    assert [c.label for c in fee_line(october).components] == [
        "flat fee for 2026-10 (its first period)",
        "flat fee in advance for 2026-11",
    ]
    assert fee_line(october).amount == "62.00"
    assert [c.label for c in fee_line(november).components] == ["flat fee in advance for 2026-12"]
    assert [a.period_start for a in november.billed_ahead] == ["2026-12-01T00:00:00.000Z"]

    # the customer cancels on Dec 16, after December was billed ahead in full
    cancelled = buyer.model_copy(update={"end": date(2026, 12, 16)})
    (december,) = bill(cancelled, rate_card, ["2026-12"], history=history)
    (term,) = fee_line(december).components
    # due 15 of 31 days = 0.4838709677, billed 1: credit 0.5161290323 × 31.00 = 16.00
    assert (
        term.label == "correction for 2026-12-01..2026-12-16: 0.4838709677 due, 1 billed in advance"
    )
    assert (term.quantity, fee_line(december).amount) == ("-0.5161290323", "-16.00")
    assert december.billed_ahead == []  # nothing after the end


@pytest.mark.parametrize("proration", ["none", "day", "second"])
def test_a_whole_period_is_one_whole_fee_whatever_the_proration(proration: str) -> None:
    (october,) = bill(
        customer(plan="base", start=date(2026, 1, 1)), card(proration=proration), ["2026-10"]
    )
    assert (fee_line(october).quantity, fee_line(october).amount) == ("1", "31.00")


def test_the_docs_show_the_figures_these_tests_compute() -> None:
    """docs/invoicing.md's worked examples are the cases above, figure for figure."""
    doc = (ROOT / "docs/invoicing.md").read_text()
    section = doc[doc.index("## Plan changes, cancellations") : doc.index("## Late usage")]
    for figure in [
        "15 of 31 days = 0.4838709677", "**15.00**", "16 of 31 days = 0.5161290323",
        "**16.00**", "1,259,100 of 2,678,400 s = 0.4700940860", "**14.57**",
        "21 of 31 days = 0.6774193548", "**21.00**", "**62.00**", "**31.00**",
        "−0.5161290323", "**−16.00**",
    ]:  # fmt: skip
        assert figure in section, figure
