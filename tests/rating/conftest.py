"""Shared fixtures for the rating tests: the example card and in-memory card builders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rating import RateCard, load_rate_card, load_rate_card_data

REPO = Path(__file__).resolve().parents[2]

CardFactory = Callable[..., RateCard]


@pytest.fixture(scope="session")
def example_card() -> RateCard:
    return load_rate_card(REPO / "rating" / "examples" / "pricing.yaml")


@pytest.fixture
def make_card() -> CardFactory:
    """``make_card(charge, ...)`` -> a card with plan ``p`` priced in ``currency`` (USD)."""

    def build(*charges: dict[str, Any], currency: str = "USD") -> RateCard:
        return load_rate_card_data({"plans": {"p": {currency: {"charges": list(charges)}}}})

    return build
