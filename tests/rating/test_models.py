"""Worked examples for each pricing model at the boundaries: 0, at an edge, one above, fractions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating.lines import Pricing
from rating.models import FlatFee, Graduated, MinimumCommitment, Overage, Package, PerUnit, Volume
from rating.tiers import Tier
from rating.usage import Usage

D = Decimal


def price(pricing: Pricing) -> Decimal:
    return pricing.unrounded


def use(quantity: str | int) -> Usage:
    return Usage(quantity=D(quantity))


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("0", "0"), ("1", "0.0015"), ("0.5", "0.00075"), ("12345", "18.5175")],
)
def test_per_unit(quantity: str, expected: str) -> None:
    pricing = PerUnit(unit_price=D("0.0015")).price(use(quantity))
    assert price(pricing) == D(expected)
    (component,) = pricing.components
    assert (component.quantity, component.unit_price) == (D(quantity), D("0.0015"))


GRADUATED = Graduated(
    tiers=(
        Tier(up_to=D(1000), unit_price=D(0)),
        Tier(up_to=D(10000), unit_price=D("0.002"), flat_fee=D("5.00")),
        Tier(up_to=None, unit_price=D("0.001")),
    )
)


@pytest.mark.parametrize(
    ("quantity", "expected", "tiers_reached"),
    [
        ("0", "0", 0),
        ("1000", "0", 1),  # at the edge: tier 2 and its flat fee not reached
        ("1001", "5.002", 2),  # one above: flat fee + 1 unit
        ("1000.5", "5.001", 2),  # fractional
        ("10000", "23.000", 2),
        ("10001", "23.001", 3),
        ("10000.5", "23.0005", 3),
    ],
)
def test_graduated(quantity: str, expected: str, tiers_reached: int) -> None:
    pricing = GRADUATED.price(use(quantity))
    assert price(pricing) == D(expected)
    assert len(pricing.tiers) == tiers_reached


VOLUME = Volume(
    tiers=(
        Tier(up_to=D(10), unit_price=D("12.00")),
        Tier(up_to=D(50), unit_price=D("10.00"), flat_fee=D("20.00")),
        Tier(up_to=None, unit_price=D("8.00")),
    )
)


@pytest.mark.parametrize(
    ("quantity", "expected", "tier"),
    [
        ("0", "0", None),
        ("10", "120.00", 1),
        ("11", "130.00", 2),  # 11 × 10.00 + 20.00
        ("10.5", "125.000", 2),  # fractional, past the edge
        ("50", "520.00", 2),
        ("51", "408.00", 3),
    ],
)
def test_volume(quantity: str, expected: str, tier: int | None) -> None:
    pricing = VOLUME.price(use(quantity))
    assert price(pricing) == D(expected)
    assert [row.tier for row in pricing.tiers] == ([] if tier is None else [tier])


@pytest.mark.parametrize(
    ("quantity", "packages", "expected"),
    [
        ("0", 0, "0"),
        ("50", 0, "0"),  # exactly the free units
        ("51", 1, "2.50"),  # one above: a partial package is a whole one
        ("150", 1, "2.50"),  # exactly one package after the free units
        ("150.5", 2, "5.00"),  # fractional spill into a second package
        ("251", 3, "7.50"),
    ],
)
def test_package(quantity: str, packages: int, expected: str) -> None:
    pricing = Package(package_size=D(100), package_price=D("2.50"), free_units=D(50)).price(
        use(quantity)
    )
    assert price(pricing) == D(expected)
    free, billed = pricing.components
    assert free.quantity == min(D(quantity), D(50))
    assert billed.quantity == packages


def test_package_without_free_units_and_fractional_size() -> None:
    pricing = Package(package_size=D("0.5"), package_price=D(1)).price(use("1.2"))
    (billed,) = pricing.components
    assert billed.quantity == 3
    assert price(pricing) == D(3)


OVERAGE = Overage(base_fee=D("49.00"), included_units=D(100000), unit_price=D("0.0004"))


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", "49.00"),  # the base fee is due without usage
        ("100000", "49.00"),  # exactly the allowance
        ("100001", "49.0004"),
        ("100000.5", "49.0002"),
        ("123456.7", "58.38268"),
    ],
)
def test_overage_per_unit(quantity: str, expected: str) -> None:
    pricing = OVERAGE.price(use(quantity))
    assert price(pricing) == D(expected)
    base, included, above = pricing.components
    assert base.flat
    assert base.amount == D("49.00")
    assert included.quantity + above.quantity == D(quantity)


def test_overage_tiers_count_units_above_the_allowance() -> None:
    model = Overage(
        base_fee=D("49.00"),
        included_units=D(100000),
        tiers=(Tier(up_to=D(50000), unit_price=D("0.0005")), Tier(None, D("0.0003"))),
    )
    assert price(model.price(use(100000))) == D("49.00")
    assert model.price(use(100000)).tiers == ()
    pricing = model.price(use(180000))
    assert price(pricing) == D("83.0000")
    first, second = pricing.tiers
    assert (first.lower, first.up_to, first.quantity) == (D(100000), D(150000), D(50000))
    assert (second.lower, second.up_to, second.quantity) == (D(150000), None, D(30000))
    fraction = model.price(use("150000.5")).tiers
    assert [row.quantity for row in fraction] == [D(50000), D("0.5")]


def test_flat_fee_is_one_period() -> None:
    (component,) = FlatFee(amount=D("99.00")).price().components
    assert component.flat
    assert (component.quantity, component.amount) == (D(1), D("99.00"))


@pytest.mark.parametrize(
    ("charged", "true_up"),
    [("0", "50.00"), ("22.34", "27.66"), ("49.99", "0.01"), ("50.00", None), ("60", None)],
)
def test_minimum_commitment_tops_up_only_below_the_minimum(
    charged: str, true_up: str | None
) -> None:
    pricing = MinimumCommitment(amount=D("50.00")).true_up(D(charged))
    if true_up is None:
        assert pricing is None
    else:
        assert pricing is not None
        assert price(pricing) == D(true_up)
