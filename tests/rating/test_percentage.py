"""Percentage pricing: rate, fixed fee, free events or amount, per-event minimum and maximum."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.percentage import Percentage
from rating.usage import Usage

D = Decimal


def events(*amounts: str) -> Usage:
    return Usage(quantity=D(len(amounts)), event_amounts=tuple(D(a) for a in amounts))


def labels(model: Percentage, usage: Usage) -> dict[str, tuple[Decimal, Decimal]]:
    return {c.label: (c.quantity, c.amount) for c in model.price(usage).components}


def test_rate_is_percent_over_100_exactly() -> None:
    assert Percentage(percent=D("2.9")).rate == D("0.029")
    assert Percentage(percent=D(100)).rate == D(1)


def test_no_events_costs_nothing() -> None:
    model = Percentage(percent=D("2.9"), fixed_fee=D("0.30"), min_per_event=D("0.50"))
    assert model.price(Usage(quantity=D(0))).unrounded == 0
    assert model.price(events()).unrounded == 0


def test_worked_example_with_minimum_and_maximum() -> None:
    model = Percentage(
        percent=D("2.9"), fixed_fee=D("0.30"), min_per_event=D("0.50"), max_per_event=D("10.00")
    )
    usage = events("5.00", "20.00", "100.00", "1000.00", "12.34")
    assert model.price(usage).unrounded == D("15.23786")
    parts = labels(model, usage)
    assert parts["2.9% of the amount of 3 events"] == (D("132.34"), D("3.83786"))
    assert parts["fixed fee per event"] == (D(3), D("0.90"))
    assert parts["events charged the minimum"] == (D(1), D("0.50"))
    assert parts["events charged the maximum"] == (D(1), D("10.00"))


@pytest.mark.parametrize(
    ("amount", "bound"),
    [
        ("10.00", "normal"),  # 0.20 + 0.30 = 0.50: exactly the minimum is a normal fee
        ("9.99", "minimum"),  # 0.4998 < 0.50
        ("100.00", "normal"),  # 2.00 + 0.30 = 2.30: exactly the maximum
        ("100.01", "maximum"),
    ],
)
def test_min_and_max_boundaries(amount: str, bound: str) -> None:
    model = Percentage(
        percent=D(2), fixed_fee=D("0.30"), min_per_event=D("0.50"), max_per_event=D("2.30")
    )
    parts = labels(model, events(amount))
    expected = {"normal": (0, 0), "minimum": (1, 0), "maximum": (0, 1)}[bound]
    assert (parts["events charged the minimum"][0], parts["events charged the maximum"][0]) == (
        D(expected[0]),
        D(expected[1]),
    )


def test_free_events_are_the_first_ones() -> None:
    model = Percentage(percent=D(10), fixed_fee=D(1), free_events=2)
    usage = events("100", "100", "50", "0.5")
    parts = labels(model, usage)
    assert parts["free events (the first 2)"] == (D(2), D(0))
    assert model.price(usage).unrounded == D("50.5") * D("0.10") + 2
    assert model.price(events("100")).unrounded == 0  # fewer events than free ones


def test_free_amount_is_used_up_event_by_event() -> None:
    model = Percentage(percent=D("2.5"), fixed_fee=D("0.25"), free_amount=D("100.00"))
    usage = events("60.00", "60.00", "25.00")
    parts = labels(model, usage)
    assert parts["free amount (the first 100.00)"] == (D("100.00"), D(0))
    assert parts["2.5% of the amount of 2 events"] == (D("45.00"), D("1.12500"))
    assert model.price(usage).unrounded == D("1.62500")


def test_event_exactly_covered_is_free_and_zero_amount_events_pay_the_fixed_fee() -> None:
    model = Percentage(percent=D(1), fixed_fee=D("0.10"), free_amount=D(50))
    assert model.price(events("50")).unrounded == 0
    assert model.price(events("50", "0")).unrounded == D("0.10")
    assert model.price(events("50.01")).unrounded == D("0.01") * D("0.01") + D("0.10")
