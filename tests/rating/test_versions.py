"""A rate card's version is a digest of what it prices: the same prices however written,
a new version for any change a bill could show, and the canonical document loads back as
the same version."""

from __future__ import annotations

import orjson
import pytest

from rating import RateCard, card_document, card_version, load_rate_card, load_rate_card_data
from schemas.documents import parse_yaml
from tests.rating.conftest import REPO

CARD = """# a comment
plans:
  pro:
    USD:
      charges:
        - meter: api_calls
          model: graduated
          tiers:
            - {up_to: 1000, unit_price: 0}
            - {up_to: null, unit_price: 0.10, flat_fee: 5}
        - {id: base, model: flat, amount: 20}
"""


def card(text: str) -> RateCard:
    return load_rate_card_data(parse_yaml(text, "rate card", "t"))


def test_the_same_prices_written_differently_are_one_version() -> None:
    rewritten = (
        CARD.replace("# a comment\n", "")
        .replace("0.10", "'0.1'")
        .replace("up_to: null, ", "")
        .replace("up_to: 1000", "up_to: 1e3")
        .replace("amount: 20", "amount: 20.00")
    )
    assert card_version(card(rewritten)) == card_version(card(CARD))
    assert card_version(card(CARD)).startswith("rc_")
    assert len(card_version(card(CARD))) == 3 + 16


@pytest.mark.parametrize(
    "change",
    [
        ("0.10", "0.11"),  # a price
        ("flat_fee: 5", "flat_fee: 6"),  # a tier's fee
        ("up_to: 1000", "up_to: 999"),  # a bound
        ("id: base", "id: platform"),  # a charge id (lines name it)
        ("model: flat, amount: 20}", "model: flat, amount: 20, name: Platform}"),  # a name
        ("  pro:", "  team:"),  # a plan name
    ],
)
def test_any_change_a_bill_could_show_is_a_new_version(change: tuple[str, str]) -> None:
    assert card_version(card(CARD.replace(*change))) != card_version(card(CARD))


def test_the_order_of_charges_is_part_of_the_version() -> None:
    lines = CARD.splitlines()
    swapped = "\n".join([*lines[:5], lines[10], *lines[5:10]]) + "\n"
    assert card(swapped).charges("pro", "USD")[0].id == "base"
    assert card_version(card(swapped)) != card_version(card(CARD))


@pytest.mark.parametrize("path", ["rating/examples/pricing.yaml", "deploy/demo/rate-card.yaml"])
def test_the_canonical_document_loads_back_as_the_same_version(path: str) -> None:
    original = load_rate_card(REPO / path)
    again = load_rate_card_data(orjson.loads(card_document(original)))
    assert card_version(again) == card_version(original)
    assert card_document(again) == card_document(original)


def test_the_version_the_docs_show_is_the_demo_cards() -> None:
    demo = card_version(load_rate_card(REPO / "deploy/demo/rate-card.yaml"))
    assert (
        "rate-cards version deploy/demo/rate-card.yaml" in (REPO / "docs/invoicing.md").read_text()
    )
    assert f"\n{demo}\n" in (REPO / "docs/invoicing.md").read_text()
