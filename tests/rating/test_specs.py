"""Tier-list checks in isolation: what the boundary convention lets go wrong."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rating.specs import TierSpec, tier_problems


def tiers(*rows: dict[str, Any]) -> list[TierSpec]:
    return [TierSpec.model_validate({"unit_price": "1", **row}) for row in rows]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (({"up_to": 10}, {"up_to": 20}, {}), []),
        (({},), []),
        (({"from": 0, "up_to": 10}, {"from": 10}), []),
        (({"up_to": 10}, {"up_to": 10}, {}), ["tiers[1].up_to"]),  # zero-width: overlap
        (({"up_to": 20}, {"up_to": 10}, {}), ["tiers[1].up_to"]),  # unsorted
        (({"up_to": 20}, {"up_to": 10}, {"up_to": 15}, {}), ["tiers[1].up_to", "tiers[2].up_to"]),
        (({"up_to": 10}, {"up_to": 20}), ["tiers[1].up_to"]),  # gap above the last tier
        (({}, {"up_to": 20}, {}), ["tiers[0].up_to"]),  # unbounded before the last
        (({"from": 5, "up_to": 10}, {}), ["tiers[0].from"]),  # gap before the first tier
        (({"up_to": 10}, {"from": "10.5"}), ["tiers[1].from"]),  # a fractional gap
        (({"up_to": 10}, {"from": 9}), ["tiers[1].from"]),  # overlap
        (({"up_to": 10}, {"from": 12, "up_to": 11}, {}), ["tiers[1].from", "tiers[1].up_to"]),
    ],
)
def test_tier_problems(rows: tuple[dict[str, Any], ...], expected: list[str]) -> None:
    assert [p.path for p in tier_problems(tiers(*rows))] == expected


def test_gap_message_names_the_unpriced_range() -> None:
    (problem,) = tier_problems(tiers({"up_to": 10}, {"from": "10.5"}))
    assert "units in (10, 10.5] have no price" in problem.message
    assert problem.fix.startswith("set from to 10")


def test_inf_spellings_mean_unbounded() -> None:
    for spelling in ("inf", "INF", "+inf", "Infinity", "∞", Decimal("Infinity"), None):
        assert TierSpec.model_validate({"up_to": spelling, "unit_price": 1}).up_to is None
