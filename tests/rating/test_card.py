"""Rate-card loading and validation: every problem reported at once, each with its path."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rating import RateCard, load_rate_card, load_rate_card_data
from rating.models import Graduated, Percentage, Volume
from schemas.errors import InvalidInput

CardFactory = Callable[..., RateCard]

BAD_CARD = """
plans:
  pro:
    USD:
      charges:
        - meter: api_calls            # [0] unsorted tiers and a negative price
          model: graduated
          tiers:
            - {up_to: 100, unit_price: 0.10}
            - {up_to: 50, unit_price: -0.05}
            - {up_to: null, unit_price: 0.01}
        - meter: storage_gb           # [1] gap written with from, and no unbounded last tier
          model: volume
          tiers:
            - {up_to: 100, unit_price: 1}
            - {from: 150, up_to: 200, unit_price: 1}
        - meter: sms                  # [2] package size 0
          model: package
          package_size: 0
          package_price: 1
        - meter: sms_out              # [3] negative package size, unknown meter
          id: sms_out
          model: package
          package_size: -100
          package_price: 1
        - meter: seats                # [4] unknown model
          model: tiered
        - meter: seats                # [5] overlap written with from; unbounded middle tier
          id: seats2
          model: graduated
          tiers:
            - {up_to: 10, unit_price: 1}
            - {from: 5, unit_price: 1}
            - {up_to: 20, unit_price: 1}
        - model: flat                 # [6] negative flat fee
          amount: -1
    usd:                              # unknown currency (lower case)
      charges: []
    XYZ:                              # unknown currency
      charges:
        - meter: api_calls
          model: per_unit
          unit_price: 1
"""

EXPECTED_PATHS = {
    "plans.pro.USD.charges[0].tiers[1].unit_price",
    "plans.pro.USD.charges[0].tiers[1].up_to",
    "plans.pro.USD.charges[1].tiers[1].from",
    "plans.pro.USD.charges[1].tiers[1].up_to",
    "plans.pro.USD.charges[2].package_size",
    "plans.pro.USD.charges[3].package_size",
    "plans.pro.USD.charges[3].meter",
    "plans.pro.USD.charges[4].model",
    "plans.pro.USD.charges[5].tiers[1].from",
    "plans.pro.USD.charges[5].tiers[1].up_to",
    "plans.pro.USD.charges[6].amount",
    "plans.pro.usd",
    "plans.pro.XYZ",
}

METERS = {"api_calls", "storage_gb", "sms", "seats"}


def problems_of(data: Any, known_meters: set[str] | None = None) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        load_rate_card_data(data, known_meters)
    return {p.path: f"{p.message} | {p.fix}" for p in caught.value.problems}


def test_every_error_kind_is_reported_at_once_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    path.write_text(BAD_CARD)
    with pytest.raises(InvalidInput) as caught:
        load_rate_card(path, known_meters=METERS)
    problems = {p.path: p for p in caught.value.problems}
    assert set(problems) == EXPECTED_PATHS
    assert len(caught.value.problems) == len(EXPECTED_PATHS)
    assert all(p.fix for p in caught.value.problems), "every problem says how to fix it"
    assert "out of order" in problems["plans.pro.USD.charges[0].tiers[1].up_to"].message
    assert (
        "greater than or equal to 0"
        in problems["plans.pro.USD.charges[0].tiers[1].unit_price"].message
    )
    assert "gap" in problems["plans.pro.USD.charges[1].tiers[1].from"].message
    assert "(100, 150]" in problems["plans.pro.USD.charges[1].tiers[1].from"].message
    assert "no price" in problems["plans.pro.USD.charges[1].tiers[1].up_to"].message
    assert "greater than 0" in problems["plans.pro.USD.charges[2].package_size"].message
    assert "unknown meter 'sms_out'" in problems["plans.pro.USD.charges[3].meter"].message
    assert "'sms'" in problems["plans.pro.USD.charges[3].meter"].fix
    assert "unknown model 'tiered'" in problems["plans.pro.USD.charges[4].model"].message
    assert "graduated" in problems["plans.pro.USD.charges[4].model"].fix
    assert "overlap" in problems["plans.pro.USD.charges[5].tiers[1].from"].message
    assert "only the last tier" in problems["plans.pro.USD.charges[5].tiers[1].up_to"].message
    assert problems["plans.pro.usd"].fix == "write it in upper case: USD"
    assert "unknown currency code 'XYZ'" in problems["plans.pro.XYZ"].message
    assert str(caught.value).startswith(f"invalid rate card {path}: 13 problems")


def test_without_known_meters_any_meter_is_accepted(make_card: CardFactory) -> None:
    card = make_card({"meter": "anything", "model": "per_unit", "unit_price": "1"})
    assert card.charges("p", "USD")[0].meter == "anything"


def test_the_example_card_loads_with_its_meters(example_card: RateCard) -> None:
    assert "graduated" in example_card.plans
    assert example_card.currencies("per-unit") == ("USD", "JPY", "KWD")
    charge = example_card.charges("graduated", "USD")[0]
    assert isinstance(charge.model, Graduated)
    assert charge.model.tiers[0].up_to == Decimal(1000)
    assert charge.model.tiers[-1].up_to is None


def test_json_cards_are_read_with_exact_decimals(tmp_path: Path) -> None:
    card = {
        "plans": {
            "p": {
                "USD": {
                    "charges": [
                        {"meter": "m", "model": "percentage", "percent": 2.9, "fixed_fee": 0.1}
                    ]
                }
            }
        }
    }
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card))
    model = load_rate_card(path).charges("p", "USD")[0].model
    assert isinstance(model, Percentage)
    assert model.percent == Decimal("2.9")  # not 2.899999999999999911182158029987...
    assert model.fixed_fee == Decimal("0.1")


def test_floats_are_refused_in_memory() -> None:
    problems = problems_of(
        {
            "plans": {
                "p": {"USD": {"charges": [{"meter": "m", "model": "per_unit", "unit_price": 0.1}]}}
            }
        }
    )
    assert set(problems) == {"plans.p.USD.charges[0].unit_price"}
    assert "floats are not exact" in problems["plans.p.USD.charges[0].unit_price"]


@pytest.mark.parametrize("unbounded", [None, "inf", "Infinity", "∞"])
def test_the_last_tier_can_be_written_unbounded_in_several_ways(
    make_card: CardFactory, unbounded: object
) -> None:
    tier: dict[str, object] = {"unit_price": "1"}
    if unbounded is not None:
        tier["up_to"] = unbounded
    card = make_card({"meter": "m", "model": "volume", "tiers": [tier]})
    model = card.charges("p", "USD")[0].model
    assert isinstance(model, Volume)
    assert model.tiers[0].up_to is None


def test_from_matching_the_previous_up_to_is_accepted(make_card: CardFactory) -> None:
    make_card(
        {
            "meter": "m",
            "model": "graduated",
            "tiers": [
                {"from": 0, "up_to": 100, "unit_price": "1"},
                {"from": 100, "unit_price": "0.5"},
            ],
        }
    )


def charge_problems(charge: dict[str, Any]) -> dict[str, str]:
    problems = problems_of({"plans": {"p": {"USD": {"charges": [charge]}}}})
    return {path.removeprefix("plans.p.USD.charges[0]."): text for path, text in problems.items()}


@pytest.mark.parametrize(
    ("charge", "path", "text"),
    [
        ({"meter": "m", "model": "graduated", "tiers": []}, "tiers", "at least 1"),
        ({"meter": "m", "model": "per_unit"}, "unit_price", "required field is missing"),
        ({"meter": "m", "model": "per_unit", "unit_price": "x"}, "unit_price", "decimal"),
        ({"model": "per_unit", "unit_price": 1}, "meter", "required field is missing"),
        ({"meter": "m", "unit_price": 1}, "model", "required field is missing"),
        (
            {"meter": "m", "model": "per_unit", "unit_price": 1, "price": 2},
            "price",
            "unknown field",
        ),
        ({"model": "flat", "amount": 1, "meter": "m"}, "meter", "does not price a meter"),
        (
            {"meter": "m", "model": "overage", "base_fee": 1, "included_units": 10},
            "unit_price",
            "neither unit_price and tiers",
        ),
        (
            {
                "meter": "m",
                "model": "overage",
                "base_fee": 1,
                "included_units": 10,
                "unit_price": 1,
                "tiers": [{"unit_price": 1}],
            },
            "unit_price",
            "both unit_price and tiers",
        ),
        (
            {
                "meter": "m",
                "model": "overage",
                "base_fee": 1,
                "included_units": 10,
                "tiers": [{"up_to": 5, "unit_price": 1}],
            },
            "tiers[0].up_to",
            "no price",
        ),
        ({"meter": "m", "model": "percentage", "percent": 290}, "percent", "less than or equal"),
        (
            {"meter": "m", "model": "percentage", "percent": 1, "free_events": 1, "free_amount": 5},
            "free_amount",
            "not both",
        ),
        (
            {
                "meter": "m",
                "model": "percentage",
                "percent": 1,
                "min_per_event": 2,
                "max_per_event": 1,
            },
            "min_per_event",
            "above max_per_event",
        ),
        (
            {"meter": "m", "model": "percentage", "percent": 1, "free_events": -1},
            "free_events",
            "greater than or equal",
        ),
        (
            {
                "meter": "m",
                "model": "package",
                "package_size": 1,
                "package_price": 1,
                "free_units": -1,
            },
            "free_units",
            "greater than or equal",
        ),
        (
            {
                "meter": "m",
                "model": "volume",
                "tiers": [{"up_to": 0, "unit_price": 1}, {"unit_price": 1}],
            },
            "tiers[0].up_to",
            "greater than 0",
        ),
        (
            {"meter": "m", "model": "volume", "tiers": [{"unit_price": 1, "flat_fee": -5}]},
            "tiers[0].flat_fee",
            "greater than or equal",
        ),
        (
            {"model": "minimum", "amount": 10, "applies_to": ["nope"]},
            "applies_to[0]",
            "no charge with id 'nope'",
        ),
        ({"meter": "m", "model": "per_unit", "unit_price": True}, "unit_price", "boolean"),
    ],
)
def test_each_charge_problem_has_a_precise_path(
    charge: dict[str, Any], path: str, text: str
) -> None:
    problems = charge_problems(charge)
    assert path in problems, problems
    assert text in problems[path]


def test_duplicate_charge_ids_are_reported() -> None:
    charges = [
        {"meter": "m", "model": "per_unit", "unit_price": 1},
        {"meter": "m", "model": "per_unit", "unit_price": 2},
    ]
    problems = problems_of({"plans": {"p": {"USD": {"charges": charges}}}})
    assert list(problems) == ["plans.p.USD.charges[1].id"]
    assert "already used by plans.p.USD.charges[0]" in problems["plans.p.USD.charges[1].id"]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({}, "plans"),
        ({"plans": {}}, "plans"),
        ({"plans": {"p": []}}, "plans.p"),
        ({"plans": {"p": {}}}, "plans.p"),
        ({"plans": {"p": {"USD": {}}}}, "plans.p.USD.charges"),
        ({"plans": {"p": {"USD": {"charges": ["x"]}}}}, "plans.p.USD.charges[0]"),
        ({"plans": {"p": {"USD": {"charges": []}}}, "version": 2}, "version"),
        ([], ""),
    ],
)
def test_structural_problems(data: Any, path: str) -> None:
    assert path in problems_of(data)


def test_lookups_on_a_card_name_the_field_and_the_fix(example_card: RateCard) -> None:
    with pytest.raises(InvalidInput) as caught:
        example_card.charges("graduatd", "USD")
    assert caught.value.problems[0].path == "plan"
    assert "did you mean 'graduated'" in caught.value.problems[0].fix
    with pytest.raises(InvalidInput) as caught:
        example_card.charges("graduated", "EUR")
    assert caught.value.problems[0].path == "currency"
