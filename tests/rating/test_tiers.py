"""Tier walking: boundaries, fractions, flat fees, and properties of graduated pricing."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from rating.lines import TierBreakdown
from rating.tiers import Tier, graduated, volume

D = Decimal
TIERS = (
    Tier(up_to=D(100), unit_price=D("1.00")),
    Tier(up_to=D(200), unit_price=D("0.50"), flat_fee=D("10")),
    Tier(up_to=None, unit_price=D("0.10")),
)


def quantities(rows: tuple[TierBreakdown, ...]) -> list[tuple[int, Decimal]]:
    return [(row.tier, row.quantity) for row in rows]


def test_graduated_zero_reaches_no_tier() -> None:
    assert graduated(TIERS, D(0)) == ()


def test_graduated_exactly_at_an_edge_stays_in_the_lower_tier() -> None:
    rows = graduated(TIERS, D(100))
    assert quantities(rows) == [(1, D(100))]
    assert rows[0].amount == D("100.00")
    assert (rows[0].lower, rows[0].up_to) == (D(0), D(100))


def test_graduated_one_above_an_edge_reaches_the_next_tier_and_its_flat_fee() -> None:
    rows = graduated(TIERS, D(101))
    assert quantities(rows) == [(1, D(100)), (2, D(1))]
    assert rows[1].amount == D("0.50") + D(10)


def test_graduated_fractional_quantity_splits_at_the_edge() -> None:
    rows = graduated(TIERS, D("100.5"))
    assert quantities(rows) == [(1, D(100)), (2, D("0.5"))]
    assert sum(row.amount for row in rows) == D("100.00") + D("0.250") + D(10)


def test_graduated_into_the_unbounded_tier() -> None:
    rows = graduated(TIERS, D("250.25"))
    assert quantities(rows) == [(1, D(100)), (2, D(100)), (3, D("50.25"))]
    assert rows[2].up_to is None
    assert rows[2].bounds == "(200, ∞)"


def test_graduated_first_tier_flat_fee_needs_usage_above_zero() -> None:
    tiers = (Tier(up_to=None, unit_price=D(0), flat_fee=D(5)),)
    assert graduated(tiers, D(0)) == ()
    assert graduated(tiers, D("0.001"))[0].amount == D(5)


def test_volume_zero_is_free_even_with_a_flat_fee() -> None:
    tiers = (Tier(up_to=None, unit_price=D(1), flat_fee=D(5)),)
    assert volume(tiers, D(0)) == ()


def test_volume_at_edge_one_above_and_fractional() -> None:
    at_edge = volume(TIERS, D(100))
    assert quantities(at_edge) == [(1, D(100))]
    assert at_edge[0].amount == D("100.00")
    above = volume(TIERS, D(101))
    assert quantities(above) == [(2, D(101))]
    assert above[0].amount == D(101) * D("0.50") + D(10)
    fraction = volume(TIERS, D("200.5"))
    assert quantities(fraction) == [(3, D("200.5"))]
    assert fraction[0].lower == D(200)


@st.composite
def tier_lists(draw: st.DrawFn) -> tuple[Tier, ...]:
    bounds = sorted(
        set(draw(st.lists(st.decimals(min_value=1, max_value=10**6, places=2), max_size=5)))
    )
    prices = st.decimals(min_value=0, max_value=100, places=4)
    fees = st.decimals(min_value=0, max_value=50, places=2)
    uppers: list[Decimal | None] = [*bounds, None]
    return tuple(Tier(up_to=up, unit_price=draw(prices), flat_fee=draw(fees)) for up in uppers)


amounts = st.decimals(min_value=0, max_value=2 * 10**6, places=3)


@given(tier_lists(), amounts, amounts)
def test_graduated_price_never_decreases_as_quantity_grows(
    tiers: tuple[Tier, ...], a: Decimal, b: Decimal
) -> None:
    low, high = sorted((a, b))
    price_low = sum((row.amount for row in graduated(tiers, low)), D(0))
    price_high = sum((row.amount for row in graduated(tiers, high)), D(0))
    assert price_low <= price_high


@given(tier_lists(), amounts)
def test_graduated_tier_quantities_sum_to_the_total(tiers: tuple[Tier, ...], q: Decimal) -> None:
    rows = graduated(tiers, q)
    assert sum((row.quantity for row in rows), D(0)) == q
    for row in rows:
        assert row.quantity > 0
        assert row.amount == row.quantity * row.unit_price + row.flat_fee
        assert row.up_to is None or row.quantity <= row.up_to - row.lower


@given(tier_lists(), amounts)
def test_volume_prices_every_unit_in_exactly_one_tier(tiers: tuple[Tier, ...], q: Decimal) -> None:
    rows = volume(tiers, q)
    if q == 0:
        assert rows == ()
        return
    (row,) = rows
    assert row.quantity == q
    assert row.lower < q
    assert row.up_to is None or q <= row.up_to
