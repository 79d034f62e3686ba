"""Planning without I/O: revisions, reproducibility, late-usage adjustments, totals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from invoicing.invoice import Invoice
from invoicing.lifecycle import Status
from invoicing.periods import Month, month_period, parse_month
from invoicing.plan import (
    Billed,
    SubscriptionPlan,
    choose_cutoff,
    due_periods,
    frontier,
    plan_subscription,
)
from tests.invoicing.helpers import DEMO_CARD, METERS, TIERED_CARD, UsageLog, customer

OCT = month_period("2026-10")
NOV = month_period("2026-11")
DEC = month_period("2026-12")
CLOSE_OCT = NOV.start_s + 3600  # an hour after October ended
CLOSE_NOV = DEC.start_s + 3600
CLOSE_DEC = DEC.end_s + 3600


def plan(
    log: UsageLog, period_label: str, cutoff: int, history: list[Billed], **kw: object
) -> SubscriptionPlan:
    cust = kw.pop("cust", None) or customer()
    return plan_subscription(
        namespace="ns",
        customer=cust,  # type: ignore[arg-type]
        index=0,
        periods=[month_period(period_label)],
        history=history,
        cutoff_s=cutoff,
        read=log,
        card=kw.pop("card", DEMO_CARD),  # type: ignore[arg-type]
        meters=METERS,
        created_ms=1,
    )


def issued(history: list[Billed]) -> list[Billed]:
    return [replace(b, status=Status.ISSUED) for b in history]


def test_cutoff_is_the_first_whole_minute_after_now() -> None:
    midnight = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    # an event ingested at 00:00:00.000 is in minute 00:00, so even then the cutoff is 00:01
    assert choose_cutoff(midnight) == NOV.start_s + 60
    # within the first second of a minute: whole-second truncation gave 00:00 here
    assert choose_cutoff(midnight + timedelta(milliseconds=300)) == NOV.start_s + 60
    assert choose_cutoff(midnight + timedelta(seconds=1)) == NOV.start_s + 60
    assert choose_cutoff(midnight + timedelta(seconds=59, milliseconds=999)) == NOV.start_s + 60
    assert choose_cutoff(midnight + timedelta(seconds=60)) == NOV.start_s + 120


def test_due_periods_are_those_closed_after_grace() -> None:
    daily = customer(id="d", cadence="daily", start="2026-01-01")
    now = datetime(2026, 11, 22, 0, 30, tzinfo=UTC)
    due = due_periods([daily], Month(2026, 11), now, timedelta(hours=1))
    closed = [d.period.label for d in due if d.closed]
    assert len(due) == 30
    assert closed[-1] == "2026-11-20"  # the 21st ended at 00:00, grace runs to 01:00


def test_same_cutoff_gives_identical_invoice_and_late_events_do_not_change_it() -> None:
    log = UsageLog()
    log.add("acme", "api_calls", OCT.start_s + 100, OCT.start_s + 200)
    log.add("acme", "llm_tokens", OCT.start_s + 100, OCT.start_s + 200, "1234")
    first = plan(log, "2026-10", CLOSE_OCT, []).invoices[0]
    log.add("acme", "api_calls", OCT.start_s + 300, CLOSE_OCT + 60)  # arrives after the cutoff
    again = plan(log, "2026-10", CLOSE_OCT, []).invoices[0]
    assert again.to_json() == first.to_json()
    assert first.document().usage_cutoff == "2026-11-01T01:00:00.000Z"


def test_a_period_already_invoiced_is_not_planned_again() -> None:
    log = UsageLog()
    history: list[Billed] = []
    first = plan(log, "2026-10", CLOSE_OCT, history)
    second = plan(log, "2026-10", CLOSE_OCT + 600, issued(history))
    assert second.invoices == []
    assert second.existing == [first.invoices[0].id]


def test_late_usage_becomes_an_adjustment_on_the_next_invoice_once() -> None:
    log = UsageLog()
    log.add("acme", "api_calls", OCT.start_s + 10, OCT.start_s + 20)
    history: list[Billed] = []
    october = plan(log, "2026-10", CLOSE_OCT, history).invoices[0]
    for n in range(3):  # three late calls for October, after its invoice
        log.add("acme", "api_calls", OCT.start_s + 100 + n, CLOSE_OCT + 600)
    log.add("acme", "llm_tokens", OCT.start_s + 5, CLOSE_OCT + 600, "500")
    log.add("acme", "api_calls", NOV.start_s + 10, NOV.start_s + 20)
    history = issued(history)
    november = plan(log, "2026-11", CLOSE_NOV, history).invoices[0]
    adjustments = {a.meter: a for a in november.adjustments}
    assert set(adjustments) == {"api_calls", "llm_tokens"}
    assert adjustments["api_calls"].quantity == 3
    assert adjustments["api_calls"].amount == Decimal("0.01")  # 4 × 0.002 → 0.01 vs 0.00
    assert adjustments["llm_tokens"].amount == Decimal("0.01")  # 500 × 0.00002 = 0.01
    assert adjustments["api_calls"].period == OCT
    assert adjustments["api_calls"].original_invoice_id == october.id
    doc = november.document()
    adjust_lines = [line for line in doc.lines if line.kind == "adjustment"]
    assert {line.adjusts.period.label for line in adjust_lines} == {"2026-10"}
    assert november.covers == (OCT.start_s,)
    # December: nothing new arrived for October, so nothing is billed twice
    history = issued(history)
    december = plan(log, "2026-12", CLOSE_DEC, history).invoices[0]
    assert december.adjustments == ()
    assert set(december.covers) == {OCT.start_s, NOV.start_s}


def test_tiered_adjustment_rerates_the_whole_period() -> None:
    """10 calls are free; the late 5 cross into tier 2 (0.5 each plus a 2.00 flat fee),
    and the minimum true-up shrinks: the adjustment is the difference of the two ratings."""
    cust = customer(plan="tiered")
    log = UsageLog()
    for n in range(10):
        log.add("acme", "api_calls", OCT.start_s + n, OCT.start_s + 60)
    history: list[Billed] = []
    october = plan(log, "2026-10", CLOSE_OCT, history, cust=cust, card=TIERED_CARD).invoices[0]
    assert october.total == Decimal("30.00")  # 0 + 10 flat, true-up to the 30 minimum
    for n in range(5):
        log.add("acme", "api_calls", OCT.start_s + 100 + n, CLOSE_OCT + 60)
    nov = plan(log, "2026-11", CLOSE_NOV, issued(history), cust=cust, card=TIERED_CARD)
    adjustments = {a.charge_id: a.amount for a in nov.invoices[0].adjustments}
    # after: calls 5 × 0.5 + 2 = 4.50, platform 10, minimum true-up 30 - 14.50 = 15.50
    assert adjustments == {"api_calls": Decimal("4.50"), "minimum": Decimal("-4.50")}
    assert sum(adjustments.values()) == Decimal("0.00")  # still at the minimum


def test_a_void_invoice_is_reissued_as_next_revision_with_its_own_cutoff() -> None:
    log = UsageLog()
    log.add("acme", "api_calls", OCT.start_s + 10, OCT.start_s + 20)
    history: list[Billed] = []
    original = plan(log, "2026-10", CLOSE_OCT, history).invoices[0]
    log.add("acme", "api_calls", OCT.start_s + 30, CLOSE_OCT + 120)  # late, after the cutoff
    history = [replace(b, status=Status.VOID) for b in history]
    reissue = plan(log, "2026-10", CLOSE_OCT + 3600, history).invoices[0]
    assert reissue.revision == 1
    assert reissue.id != original.id
    assert reissue.cutoff_s == original.cutoff_s
    assert reissue.rated == original.rated


def test_frontier_follows_the_latest_covering_invoice_not_after_the_cutoff() -> None:
    history = [
        Billed("a", OCT.start_s, OCT.end_s, 0, 100, (), Status.ISSUED),
        Billed("b", NOV.start_s, NOV.end_s, 0, 200, (OCT.start_s,), Status.ISSUED),
        Billed("c", DEC.start_s, DEC.end_s, 0, 300, (OCT.start_s, NOV.start_s), Status.ISSUED),
    ]
    assert frontier(history, OCT.start_s, 250) == 200
    assert frontier(history, OCT.start_s, 400) == 300
    assert frontier(history, NOV.start_s, 250) == 200
    assert frontier(history, DEC.start_s + 1, 400) is None


def test_daily_periods_in_one_run_do_not_adjust_each_other() -> None:
    daily = customer(cadence="daily", start="2026-11-01")
    log = UsageLog()
    for day in range(3):
        log.add("acme", "api_calls", NOV.start_s + day * 86400 + 5, NOV.start_s + day * 86400 + 9)
    periods = [
        p
        for d in due_periods(
            [daily], parse_month("2026-11"), datetime(2027, 1, 1, tzinfo=UTC), timedelta(0)
        )
        for p in [d.period]
    ]
    result = plan_subscription(
        namespace="ns",
        customer=daily,
        index=0,
        periods=periods[:3],
        history=[],
        cutoff_s=CLOSE_NOV,
        read=log,
        card=DEMO_CARD,
        meters=METERS,
        created_ms=1,
    )
    assert [i.rated.lines[0].quantity for i in result.invoices] == [1, 1, 1]
    assert all(i.adjustments == () for i in result.invoices)


def _sum_lines(invoice: Invoice) -> Decimal:
    return sum((Decimal(line.amount) for line in invoice.document().lines), Decimal(0))


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["api_calls", "llm_tokens", "storage_gb_hours"]),
            st.integers(0, 30 * 86400 - 1),
            st.sampled_from([0, 1, 2]),  # arrives in time, after October's run, after Nov's
            st.decimals(0, 5000, places=3),
        ),
        max_size=25,
    ),
    plan_name=st.sampled_from(["starter", "pro", "tiered"]),
)
def test_totals_equal_lines_and_late_usage_is_billed_exactly_once(
    events: list[tuple[str, int, int, Decimal]], plan_name: str
) -> None:
    card = TIERED_CARD if plan_name == "tiered" else DEMO_CARD
    cust = customer(plan=plan_name)
    arrivals = [OCT.start_s + 60, CLOSE_OCT + 60, CLOSE_NOV + 60]
    log = UsageLog()
    for meter, offset, arrival, value in events:
        amount = "1" if meter == "api_calls" else str(value)
        log.add("acme", meter, OCT.start_s + offset, arrivals[arrival], amount)
    history: list[Billed] = []
    invoices = [
        plan(log, label, cutoff, history, cust=cust, card=card).invoices[0]
        for label, cutoff in (
            ("2026-10", CLOSE_OCT),
            ("2026-11", CLOSE_NOV),
            ("2026-12", CLOSE_DEC),
        )
    ]
    for invoice in invoices:
        assert invoice.total == _sum_lines(invoice)
        assert Decimal(invoice.document().total) == invoice.total
    billed_for_october = invoices[0].usage_total + sum(
        (a.amount for inv in invoices[1:] for a in inv.adjustments if a.period == OCT),
        Decimal(0),
    )
    everything = plan(log, "2026-10", CLOSE_DEC, [], cust=cust, card=card).invoices[0]
    assert billed_for_october == everything.usage_total
