"""rate_plan: lines, exact totals, minimums, usage checks, and properties over whole plans."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rating import RateCard, RatedPlan, Usage, load_rate_card_data, rate_plan, round_money
from schemas.errors import InvalidInput

D = Decimal
CardFactory = Callable[..., RateCard]

ALL_MODELS: list[dict[str, Any]] = [
    {"meter": "api_calls", "model": "per_unit", "unit_price": "0.0015"},
    {
        "meter": "requests",
        "model": "graduated",
        "tiers": [
            {"up_to": 1000, "unit_price": "0", "flat_fee": "1.00"},
            {"up_to": 10000, "unit_price": "0.002", "flat_fee": "5.00"},
            {"unit_price": "0.001"},
        ],
    },
    {
        "meter": "seats",
        "model": "volume",
        "tiers": [{"up_to": 10, "unit_price": "12", "flat_fee": "3"}, {"unit_price": "10"}],
    },
    {"meter": "sms", "model": "package", "package_size": 100, "package_price": "2.50"},
    {
        "meter": "compute",
        "model": "overage",
        "base_fee": "49.00",
        "included_units": 1000,
        "tiers": [{"up_to": 500, "unit_price": "0.01"}, {"unit_price": "0.005"}],
    },
    {
        "meter": "payments",
        "model": "percentage",
        "percent": "2.9",
        "fixed_fee": "0.30",
        "min_per_event": "0.50",
        "max_per_event": "10",
    },
    {"id": "platform", "model": "flat", "amount": "20.00"},
    {"id": "commitment", "model": "minimum", "amount": "150.00"},
]
METERS = ("api_calls", "requests", "seats", "sms", "compute", "payments")


@pytest.fixture(scope="module")
def full_card() -> RateCard:
    return load_rate_card_data({"plans": {"all": {"USD": {"charges": ALL_MODELS}}}})


def check_line_arithmetic(rated: RatedPlan) -> None:
    """The invariants every line promises (see rating.lines)."""
    for line in rated.lines:
        for tier in line.tiers:
            assert tier.amount == tier.quantity * tier.unit_price + tier.flat_fee
        for part in line.components:
            assert part.amount == part.quantity * part.unit_price
        parts = sum((t.amount for t in line.tiers), D(0)) + sum(
            (c.amount for c in line.components), D(0)
        )
        assert line.unrounded_amount == parts
        assert line.amount == round_money(line.unrounded_amount, rated.currency)
    assert rated.total == sum((line.amount for line in rated.lines), D(0))


def test_a_full_plan_prices_every_model(full_card: RateCard) -> None:
    usage = {
        "api_calls": Usage(quantity=D(12345)),
        "requests": Usage(quantity=D("10000.5")),
        "seats": Usage(quantity=D(11)),
        "sms": Usage(quantity=D(201)),
        "compute": Usage(quantity=D(1600)),
        "payments": Usage(quantity=D(2), event_amounts=(D("5.00"), D("100.00"))),
    }
    rated = rate_plan(full_card, "all", "USD", usage)
    amounts = {line.charge_id: line.amount for line in rated.lines}
    assert amounts == {
        "api_calls": D("18.52"),  # 18.5175
        "requests": D("24.00"),  # 1.00 + 9000 × 0.002 + 5.00 + 0.5 × 0.001 = 24.0005
        "seats": D("110.00"),  # 11 × 10
        "sms": D("7.50"),  # 3 packages
        "compute": D("54.50"),  # 49.00 + 500 × 0.01 + 100 × 0.005 above the 1000 included
        "payments": D("3.70"),  # 0.50 (minimum) + 100.00 × 0.029 + 0.30
        "platform": D("20.00"),
    }
    assert rated.total == D("238.22")
    assert [line.charge_id for line in rated.lines][-1] == "platform"  # minimum met: no line
    check_line_arithmetic(rated)


def test_minimum_true_up_comes_last_and_makes_the_total_exact(full_card: RateCard) -> None:
    rated = rate_plan(full_card, "all", "USD", {"api_calls": Usage(quantity=D(1000))})
    assert [line.model for line in rated.lines][-1] == "minimum"
    true_up = rated.lines[-1]
    charged = sum((line.amount for line in rated.lines[:-1]), D(0))
    assert true_up.quantity == charged
    assert true_up.amount == D("150.00") - charged
    assert rated.total == D("150.00")


def test_minimum_applies_only_to_its_charges(make_card: CardFactory) -> None:
    card = make_card(
        {"meter": "a", "model": "per_unit", "unit_price": "1"},
        {"meter": "b", "model": "per_unit", "unit_price": "1"},
        {"model": "minimum", "amount": "10", "applies_to": ["a"]},
    )
    rated = rate_plan(card, "p", "USD", {"a": Usage(quantity=D(4)), "b": Usage(quantity=D(20))})
    assert rated.lines[-1].amount == D("6.00")
    assert rated.total == D("30.00")


def test_meters_missing_from_usage_count_as_zero(full_card: RateCard) -> None:
    rated = rate_plan(full_card, "all", "USD", {})
    assert {line.charge_id: line.quantity for line in rated.lines if line.meter} == dict.fromkeys(
        METERS, D(0)
    )


@settings(max_examples=40, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={meter: st.just(Usage(quantity=D(0))) for meter in METERS if meter != "payments"}
        | {"payments": st.sampled_from([Usage(quantity=D(0)), Usage(D(0), ())])},
    ),
    st.decimals(min_value=0, max_value=1000, places=2),
    st.decimals(min_value=0, max_value=1000, places=2),
)
def test_zero_usage_yields_only_flat_fee_and_minimum_lines(
    usage: dict[str, Usage], flat: Decimal, minimum: Decimal
) -> None:
    charges = [dict(c) for c in ALL_MODELS]
    charges[-2]["amount"] = flat
    charges[-1]["amount"] = minimum
    card = load_rate_card_data({"plans": {"all": {"USD": {"charges": charges}}}})
    rated = rate_plan(card, "all", "USD", usage)
    for line in rated.lines:
        if line.model == "minimum":
            assert line.amount > 0
            continue
        assert line.unrounded_amount == line.flat_fee, line
        assert not line.tiers
        if line.amount:
            assert line.model in {"flat", "overage"}  # a flat fee or a base fee
    check_line_arithmetic(rated)


usage_strategy = st.fixed_dictionaries(
    {meter: st.decimals(min_value=0, max_value=10**6, places=3) for meter in METERS[:-1]}
).map(lambda qs: {meter: Usage(quantity=q) for meter, q in qs.items()})
payments_strategy = st.lists(st.decimals(min_value=0, max_value=10**5, places=2), max_size=20)


@settings(max_examples=60, deadline=None)
@given(usage_strategy, payments_strategy)
def test_every_line_explains_its_amount_and_the_total_is_their_sum(
    full_card: RateCard, usage: dict[str, Usage], payments: list[Decimal]
) -> None:
    usage = usage | {"payments": Usage(quantity=D(len(payments)), event_amounts=tuple(payments))}
    rated = rate_plan(full_card, "all", "USD", usage)
    check_line_arithmetic(rated)
    assert rated.total >= D("150.00")  # the minimum holds


def test_to_dict_is_json_safe_with_decimals_as_strings(full_card: RateCard) -> None:
    rated = rate_plan(full_card, "all", "USD", {"requests": Usage(quantity=D("1000.5"))})
    data = json.loads(json.dumps(rated.to_dict()))
    assert data["total"] == str(rated.total)
    line = data["lines"][1]
    assert line["charge_id"] == "requests"
    assert line["tiers"][1] == {
        "tier": 2,
        "from": "1000",
        "up_to": "10000",
        "quantity": "0.5",
        "unit_price": "0.002",
        "flat_fee": "5.00",
        "amount": "5.0010",
    }
    assert line["flat_fee"] == "6.00"
    assert line["unrounded_amount"] == "6.0010"
    assert line["amount"] == "6.00"
    assert line["description"] == (
        "graduated: 1000 × 0 + 1.00 + 0.5 × 0.002 + 5.00 = 6.0010, rounded to 6.00 USD"
    )


def test_currency_rounding_applies_per_line(make_card: CardFactory) -> None:
    charges = [
        {"id": "a", "meter": "m", "model": "per_unit", "unit_price": "0.005"},
        {"id": "b", "meter": "m", "model": "per_unit", "unit_price": "0.005"},
    ]
    rated = rate_plan(make_card(*charges), "p", "USD", {"m": Usage(quantity=D(1))})
    assert [line.amount for line in rated.lines] == [D("0.01"), D("0.01")]
    assert rated.total == D("0.02")  # the sum of rounded lines, not round(0.010) = 0.01
    jpy = rate_plan(make_card(*charges, currency="JPY"), "p", "JPY", {"m": Usage(D(100))})
    assert str(jpy.total) == "2"


def test_usage_problems_are_reported_together(full_card: RateCard) -> None:
    with pytest.raises(InvalidInput) as caught:
        rate_plan(
            full_card,
            "all",
            "USD",
            {"api_cals": Usage(quantity=D(1)), "payments": Usage(quantity=D(3))},
            strict=True,
        )
    problems = {p.path: p for p in caught.value.problems}
    assert set(problems) == {"usage.api_cals", "usage.payments.events"}
    assert "did you mean 'api_calls'" in problems["usage.api_cals"].fix


def test_usage_of_meters_the_plan_does_not_price_is_ignored_unless_strict(
    full_card: RateCard,
) -> None:
    rated = rate_plan(full_card, "all", "USD", {"other": Usage(D(5))})
    assert rated.total == D("150.00")
    assert all(line.meter != "other" for line in rated.lines)
    with pytest.raises(InvalidInput) as caught:
        rate_plan(full_card, "all", "USD", {"other": Usage(D(5))}, strict=True)
    assert caught.value.problems[0].path == "usage.other"


def test_event_count_must_match_the_quantity(full_card: RateCard) -> None:
    with pytest.raises(InvalidInput) as caught:
        rate_plan(full_card, "all", "USD", {"payments": Usage(D(2), (D(1),))})
    assert caught.value.problems[0].path == "usage.payments.quantity"


@pytest.mark.parametrize(
    ("quantity", "events", "path"),
    [
        (0.5, None, "quantity"),
        (D(-1), None, "quantity"),
        (D("NaN"), None, "quantity"),
        ("3", None, "quantity"),
        (D(1), (D(1), 2.5), "event_amounts[1]"),
        (D(1), (D(-1),), "event_amounts[0]"),
    ],
)
def test_usage_refuses_floats_negatives_and_non_numbers(
    quantity: Any, events: Any, path: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Usage(quantity=quantity, event_amounts=events)
    assert [p.path for p in caught.value.problems] == [path]


def test_usage_accepts_ints_as_exact_decimals() -> None:
    usage = Usage(quantity=3, event_amounts=[1, D("2.5"), 0])  # type: ignore[arg-type]
    assert usage.quantity == D(3)
    assert isinstance(usage.quantity, Decimal)
    assert usage.event_amounts == (D(1), D("2.5"), D(0))


def test_unknown_plan_and_currency(full_card: RateCard) -> None:
    with pytest.raises(InvalidInput) as caught:
        rate_plan(full_card, "nope", "USD", {})
    assert caught.value.problems[0].path == "plan"
    with pytest.raises(InvalidInput) as caught:
        rate_plan(full_card, "all", "EUR", {})
    assert caught.value.problems[0].path == "currency"


def test_numbers_the_exact_context_could_not_hold_are_refused_where_they_are_written(
    make_card: CardFactory,
) -> None:
    """60 fraction digits on both sides once needed more than the 100-digit context and
    ended in an internal error naming no field; now each is refused at its source."""
    with pytest.raises(InvalidInput) as card:
        make_card({"meter": "m", "model": "per_unit", "unit_price": "1." + "3" * 60})
    assert [p.path for p in card.value.problems] == ["plans.p.USD.charges[0].unit_price"]
    assert "60 digits after the decimal point" in card.value.problems[0].message
    with pytest.raises(InvalidInput) as usage:
        Usage(quantity=D("1." + "7" * 60))
    assert usage.value.problems[0].path == "quantity"
