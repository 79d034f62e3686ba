"""The backtest's pure core: re-pricing one invoiced period, totals, and the renderings
(table, CSV exactly, HTML with its chart) — no storage, no services."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from invoicing.backtest import (
    Invoiced,
    Row,
    Status,
    backtest_csv,
    backtest_html,
    backtest_table,
    change_pct,
    meter_key,
    reprice,
    summarise,
)
from invoicing.backtest.command import parse_months
from invoicing.backtest.html import BUCKETS, bucket_of
from invoicing.periods import Month
from rating import RateCard, Usage, load_rate_card_data, rate_plan, round_money
from schemas.errors import InvalidInput, Problem
from tests.invoicing.backtest_kit import BILLED_CARD, DRAFT_CARD

ACME_USAGE = {
    "api_calls": Usage(quantity=Decimal(1500)),
    "llm_tokens": Usage(quantity=Decimal(200_000)),
    "storage_gb_hours": Usage(quantity=Decimal(80)),
}


def invoiced_with(
    card: RateCard,
    usage: dict[str, Usage],
    plan: str = "starter",
    currency: str = "USD",
    customer: str = "acme",
) -> Invoiced:
    """What billing would have stored for ``usage`` priced with ``card``."""
    amounts: dict[str, Decimal] = {}
    for line in rate_plan(card, plan, currency, usage).lines:
        key = meter_key(line.meter, line.model)
        amounts[key] = amounts.get(key, Decimal(0)) + line.amount
    return Invoiced(
        invoice_id=f"inv_{customer}",
        customer_id=customer,
        subscription_id="main",
        revision=0,
        period_start_s=1_790_812_800,
        period_end_s=1_793_491_200,
        cutoff_s=1_793_494_800,
        plan=plan,
        currency=currency,
        amounts=amounts,
    )


def amounts(rows: list[Row]) -> dict[str, tuple[Decimal, Decimal | None, Status]]:
    return {r.meter: (r.invoiced, r.repriced, r.status) for r in rows}


def test_the_billed_card_re_prices_to_no_difference() -> None:
    rows = reprice(BILLED_CARD, invoiced_with(BILLED_CARD, ACME_USAGE), "2026-10", ACME_USAGE)
    assert [r.meter for r in rows] == ["api_calls", "llm_tokens", "storage_gb_hours"]
    assert all(r.difference == 0 and r.status is Status.OK for r in rows)
    assert all(r.change_pct == Decimal("0.00") for r in rows)


def test_the_draft_card_by_hand() -> None:
    # billed: 1500 × 0.002 = 3.00; 200000 × 0.00002 = 4.00; 80 × 0.0125 = 1.00
    # draft: 1000 × 0 + 500 × 0.003 = 1.50; 4.00; 1.00; a 5.00 platform fee
    rows = reprice(DRAFT_CARD, invoiced_with(BILLED_CARD, ACME_USAGE), "2026-10", ACME_USAGE)
    ok = Status.OK
    assert amounts(rows) == {
        "api_calls": (Decimal("3.00"), Decimal("1.50"), ok),
        "llm_tokens": (Decimal("4.00"), Decimal("4.00"), ok),
        "storage_gb_hours": (Decimal("1.00"), Decimal("1.00"), ok),
        "(flat)": (Decimal("0.00"), Decimal("5.00"), ok),
    }
    assert [str(r.invoiced) for r in rows] == ["3.00", "4.00", "1.00", "0.00"]
    assert [r.change_pct for r in rows] == [Decimal("-50.00"), 0, 0, None]


def test_a_plan_or_currency_the_draft_lacks_is_a_row_status() -> None:
    billed = invoiced_with(BILLED_CARD, ACME_USAGE, plan="pro", currency="JPY")
    rows = reprice(DRAFT_CARD, billed, "2026-10", ACME_USAGE)
    assert {r.status for r in rows} == {Status.NO_CURRENCY}
    assert rows[0].note == "plan 'pro' has no JPY prices"
    assert all(r.repriced is None and r.difference is None for r in rows)
    renamed = billed._replace(plan="enterprise")
    rows = reprice(DRAFT_CARD, renamed, "2026-10", ACME_USAGE)
    assert {(r.status, r.note) for r in rows} == {(Status.NO_PLAN, "no plan 'enterprise'")}


def test_usage_the_draft_refuses_is_not_priced_with_its_problems() -> None:
    card = load_rate_card_data(
        {
            "plans": {
                "starter": {
                    "USD": {
                        "charges": [
                            {"meter": "api_calls", "model": "percentage", "percent": "1"},
                        ]
                    }
                }
            }
        }
    )
    billed = invoiced_with(BILLED_CARD, ACME_USAGE)
    rows = reprice(card, billed, "2026-10", ACME_USAGE)
    assert {r.status for r in rows} == {Status.NOT_PRICED}
    assert "needs the amount of each event" in rows[0].note
    problem = Problem("customers[3].subjects", "meter 'x' (MAX) cannot be summed", "one subject")
    rows = reprice(DRAFT_CARD, billed, "2026-10", ACME_USAGE, [problem])
    assert {r.note for r in rows} == {str(problem)}


@pytest.mark.parametrize(
    ("invoiced", "repriced", "change"),
    [
        ("100", "110", "10.00"),
        ("3.00", "1.50", "-50.00"),
        ("9.75", "7.75", "-20.51"),  # -20.5128…
        ("3", "4", "33.33"),
        ("200", "200.01", "0.01"),  # 0.005 rounds half-up
        ("200", "199.99", "-0.01"),  # and half away from zero below
        ("0", "0", "0.00"),
        ("0", "5", None),
    ],
)
def test_change_pct(invoiced: str, repriced: str, change: str | None) -> None:
    expected = None if change is None else Decimal(change)
    assert change_pct(Decimal(invoiced), Decimal(repriced)) == expected


def row(
    customer: str, meter: str, invoiced: str, repriced: str | None, currency: str = "USD"
) -> Row:
    status = Status.OK if repriced is not None else Status.NO_CURRENCY
    return Row(
        customer_id=customer,
        subscription_id="main",
        period="2026-10",
        invoice_id=f"inv_{customer}",
        plan="pro",
        currency=currency,
        meter=meter,
        invoiced=Decimal(invoiced),
        repriced=None if repriced is None else Decimal(repriced),
        status=status,
        note="" if repriced is not None else f"plan 'pro' has no {currency} prices",
    )


ROWS = [
    row("acme", "api_calls", "3.00", "1.50"),
    row("acme", "(flat)", "0.00", "5.00"),
    row("init", "api_calls", "69", None, "JPY"),
    row("globex", "api_calls", "6.00", "6.00"),
    row("globex", "llm_tokens", "15.00", "10.00"),
]


def test_totals_per_customer_meter_and_currency() -> None:
    result = summarise("draft.yaml", ["2026-10"], ROWS, invoices=3, not_invoiced=1)
    customers = {(t.customer_id, t.currency): t for t in result.customers}
    assert [c for c, _ in customers] == ["acme", "init", "globex"]  # first seen
    acme = customers[("acme", "USD")]
    assert (acme.invoiced, acme.repriced, acme.difference) == (
        Decimal("3.00"),
        Decimal("6.50"),
        Decimal("3.50"),
    )
    assert acme.change_pct == Decimal("116.67")
    init = customers[("init", "JPY")]
    assert init.repriced is None
    assert init.difference is None
    assert (init.skipped, init.skipped_invoiced) == (1, Decimal(69))
    meters = [(t.currency, t.meter, t.invoiced, t.repriced) for t in result.meters]
    assert meters == [
        ("JPY", "api_calls", Decimal(0), None),
        ("USD", "api_calls", Decimal("9.00"), Decimal("7.50")),
        ("USD", "llm_tokens", Decimal("15.00"), Decimal("10.00")),
        ("USD", "(flat)", Decimal("0.00"), Decimal("5.00")),
    ]
    usd = result.overall[1]
    assert (usd.currency, usd.invoiced, usd.repriced, usd.change_pct) == (
        "USD",
        Decimal("24.00"),
        Decimal("22.50"),
        Decimal("-6.25"),
    )


EXPECTED_CSV = """\
kind,customer_id,subscription_id,period,invoice_id,plan,currency,meter,invoiced,repriced,difference,change_pct,status,note
meter,acme,main,2026-10,inv_acme,pro,USD,api_calls,3.00,1.50,-1.50,-50.00,ok,
meter,acme,main,2026-10,inv_acme,pro,USD,(flat),0.00,5.00,5.00,,ok,
meter,init,main,2026-10,inv_init,pro,JPY,api_calls,69,,,,no-currency,plan 'pro' has no JPY prices
meter,globex,main,2026-10,inv_globex,pro,USD,api_calls,6.00,6.00,0.00,0.00,ok,
meter,globex,main,2026-10,inv_globex,pro,USD,llm_tokens,15.00,10.00,-5.00,-33.33,ok,
customer,acme,,,,,USD,,3.00,6.50,3.50,116.67,,
customer,init,,,,,JPY,,,,,,,1 row not re-priced (invoiced 69)
customer,globex,,,,,USD,,21.00,16.00,-5.00,-23.81,,
meter-total,,,,,,JPY,api_calls,,,,,,1 row not re-priced (invoiced 69)
meter-total,,,,,,USD,api_calls,9.00,7.50,-1.50,-16.67,,
meter-total,,,,,,USD,llm_tokens,15.00,10.00,-5.00,-33.33,,
meter-total,,,,,,USD,(flat),0.00,5.00,5.00,,,
overall,,,,,,JPY,,,,,,,1 row not re-priced (invoiced 69)
overall,,,,,,USD,,24.00,22.50,-1.50,-6.25,,
"""


def test_csv_is_exact() -> None:
    result = summarise("draft.yaml", ["2026-10"], ROWS, invoices=3, not_invoiced=0)
    assert backtest_csv(result) == EXPECTED_CSV


def test_table_aligns_rows_and_says_what_was_not_re_priced() -> None:
    result = summarise("draft.yaml", ["2026-10"], ROWS, invoices=3, not_invoiced=2)
    lines = backtest_table(result).splitlines()
    assert lines[0] == (
        "pricing backtest of draft.yaml against the issued invoices of the periods ending in"
        " 2026-10: 3 invoices, 5 rows; 2 subscription periods have no issued invoice"
    )
    assert lines[2].split() == [
        "customer", "subscription", "period", "plan", "currency", "meter",
        "invoiced", "re-priced", "difference", "change", "status",
    ]  # fmt: skip
    assert lines[3] == (
        "acme      main          2026-10  pro   USD       api_calls       3.00       1.50"
        "       -1.50  -50.00 %"
    )
    assert lines[4].endswith("0.00       5.00       +5.00       new")
    assert lines[5].endswith(
        "69                                   no-currency: plan 'pro' has no JPY prices"
    )
    overall = lines[lines.index("overall") + 1 :]
    assert overall[2].split() == ["USD", "24.00", "22.50", "-1.50", "-6.25", "%"]


def test_html_is_one_self_contained_page_with_charts() -> None:
    rows = [*ROWS, row("<b>evil</b>", "api_calls", "1.00", "2.00")]
    page = backtest_html(summarise("draft.yaml", ["2026-10"], rows, 4, 0))
    assert page.startswith("<!DOCTYPE html>")
    assert page.endswith("</html>\n")
    charts = re.findall(r"<svg .*?</svg>", page, re.DOTALL)
    assert len(charts) == 2  # USD per meter (JPY had nothing re-priced), customers by change
    per_meter = charts[0]
    # 3 meters × (invoiced, re-priced) bars, each with its exact value as a tooltip
    assert len(re.findall(r"<rect x=\"\d+\" y=\"[\d.]+\" width=\"28\"", per_meter)) == 6
    assert "<title>api_calls, invoiced: 10.00 USD</title>" in per_meter
    assert "<title>api_calls, re-priced (draft): 9.50 USD</title>" in per_meter
    for fetches in ("<script", "src=", "href=", "@import", "url("):
        assert fetches not in page
    assert "http" not in page  # nothing fetched, not even an SVG namespace
    assert "&lt;b&gt;evil&lt;/b&gt;" in page
    assert "<b>evil" not in page
    assert "Not re-priced: 1 row</h2>" in page


def test_the_tallest_bar_is_the_plot_height_and_heights_are_exact() -> None:
    page = backtest_html(summarise("d", ["2026-10"], ROWS[:2], 1, 0))
    heights = re.findall(r'width="28" height="([\d.]+)"', page)
    # (flat) re-priced 5.00 is the largest: 180 px; api_calls 3.00 → 108.0, 1.50 → 54.0
    assert heights[:4] == ["108.0", "54.0", "0.0", "180.0"]


@pytest.mark.parametrize(
    ("invoiced", "repriced", "bucket"),
    [
        ("100", "70", "< −20 %"),
        ("100", "80", "−20 to −5 %"),
        ("100", "95", "−5 to 0 %"),
        ("100", "100", "0 %"),
        ("100", "105", "0 to 5 %"),
        ("100", "120", "5 to 20 %"),
        ("100", "120.01", "> 20 %"),
        ("0", "1", "new"),
    ],
)
def test_change_buckets(invoiced: str, repriced: str, bucket: str) -> None:
    total = summarise("d", ["m"], [row("a", "m", invoiced, repriced)], 1, 0).customers[0]
    assert BUCKETS[bucket_of(total)] == bucket


def test_periods_are_months_or_ranges_without_repeats() -> None:
    assert parse_months(["2026-10"]) == (Month(2026, 10),)
    assert parse_months(["2026-11..2027-01", "2026-12", "2026-10"]) == (
        Month(2026, 10),
        Month(2026, 11),
        Month(2026, 12),
        Month(2027, 1),
    )


def test_every_bad_period_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_months(["2026-13", "2026-09..2026-07", "2000-01..2026-01", "October"])
    problems = caught.value.problems
    assert [p.path for p in problems] == ["--period"] * 4
    assert [p.message for p in problems] == [
        "'2026-13' is not a month or months",
        "'2026-09..2026-07' ends before it starts",
        "'2000-01..2026-01' spans 313 months",
        "'October' is not a month or months",
    ]
    assert "YYYY-MM..YYYY-MM" in problems[0].fix


@pytest.mark.parametrize(
    ("currency", "invoiced", "repriced"),
    [
        ("JPY", "1000", "120000000000000000000"),
        ("USD", "0", "0.01"),
        ("KWD", "1000", "0.0005"),
        ("CLF", "0.00001", "12.5"),
    ],
)
def test_csv_amounts_are_plain_digits_in_minor_units(
    currency: str, invoiced: str, repriced: str
) -> None:
    rounded = [round_money(Decimal(v), currency) for v in (invoiced, repriced)]
    line = row("a", "m", str(rounded[0]), str(rounded[1]), currency)
    cells = backtest_csv(summarise("d", ["m"], [line], 1, 0)).splitlines()[1].split(",")
    amounts = cells[8:12]
    assert amounts[:2] == [format(v, "f") for v in rounded]
    assert not any("E" in cell for cell in amounts)
    assert all(cell.count(".") <= 1 for cell in amounts)
