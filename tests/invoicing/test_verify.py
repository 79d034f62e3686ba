"""Checking an invoice line from the outside (pure): every claim of a line — event hashes,
the digest, the count, the quantity, the amount — recomputed from the events it bills,
and each tampering caught by the check it breaks."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from invoicing.document import InvoiceDocument, UsageLine
from invoicing.evidence import (
    EMPTY_DIGEST,
    LineEvidence,
    event_hash,
    line_digest,
    recompute_quantity,
    subject_digest,
)
from invoicing.invoice import Invoice
from invoicing.periods import month_period
from invoicing.verify import check_line
from rating import Usage, card_version, load_rate_card_data, minor_units, rate_plan
from schemas.metering.definitions import Aggregation
from tests.invoicing.helpers import METERS, TIERED_CARD, customer

OCT = month_period("2026-10")
CUTOFF = OCT.end_s + 3600


def event(subject: str, n: int, tokens: str) -> dict[str, str]:
    text = orjson.dumps(
        {"id": f"e{n}", "source": "gw", "type": "llm.completion", "subject": subject,
         "time": f"2026-10-0{1 + n % 9}T00:00:00.000Z", "data": {"tokens": tokens, "model": "m"}}
    ).decode()  # fmt: skip
    return {"source": "gw", "id": f"e{n}", "subject": subject, "time": f"2026-10-0{1 + n % 9}",
            "event": text, "hash": event_hash("gw", f"e{n}", text)}  # fmt: skip


EVENTS = [event("acme", 1, "1200"), event("acme-eu", 2, "800.5"), event("acme", 3, "0.25")]


def invoice(events: list[dict[str, str]]) -> InvoiceDocument:
    """October billed on what ``events`` say, its llm_tokens line carrying their evidence."""
    buyer = customer(plan="tiered", subjects=["acme", "acme-eu"])
    quantity = recompute_quantity(Aggregation.SUM, "$.tokens", [e["event"] for e in events])
    rated = rate_plan(TIERED_CARD, "tiered", "USD", {"llm_tokens": Usage(quantity=quantity)})
    hashes: dict[str, list[str]] = {}
    for e in events:
        hashes.setdefault(e["subject"], []).append(e["hash"])
    found = {s: (len(h), subject_digest(h)) for s, h in hashes.items()}
    proof = LineEvidence.read(
        METERS.get("llm_tokens"), buyer.subjects, (OCT.start_s, OCT.end_s, CUTOFF),
        lambda *_: found, minor_units("USD"), card_version(TIERED_CARD),
    )  # fmt: skip
    return Invoice(
        namespace="ns", customer=buyer, period=OCT, revision=0, cutoff_s=CUTOFF, rated=rated,
        adjustments=(), covers=(), created_ms=0, rate_card_version=card_version(TIERED_CARD),
        evidence={"llm_tokens": proof},
    ).document()  # fmt: skip


def line_no(document: InvoiceDocument) -> int:
    return next(
        line.line_no
        for line in document.lines
        if isinstance(line, UsageLine) and line.charge_id == "llm_tokens"
    )


def test_a_true_line_verifies_with_and_without_the_rate_card() -> None:
    document = invoice(EVENTS)
    line = next(
        x for x in document.lines if isinstance(x, UsageLine) and x.charge_id == "llm_tokens"
    )
    assert line.quantity == "2000.75"
    evidence = line.evidence
    assert evidence is not None
    assert (evidence.events, evidence.subjects) == (3, ["acme", "acme-eu"])
    assert evidence.rate_card_version == card_version(TIERED_CARD)
    for card in (None, TIERED_CARD):
        checks = check_line(document, line_no(document), EVENTS, card)
        assert [c.name for c in checks] == ["event hashes", "events digest", "quantity", "amount"]
        assert all(c.ok for c in checks), [str(c) for c in checks]


def test_an_altered_event_breaks_its_hash_the_digest_and_the_quantity() -> None:
    document = invoice(EVENTS)
    altered = [dict(e) for e in EVENTS]
    altered[1]["event"] = altered[1]["event"].replace("800.5", "900.5")
    failed = [c.name for c in check_line(document, line_no(document), altered) if not c.ok]
    # the amount still follows from the line's own terms: the quantity check is what fails
    assert failed == ["event hashes", "events digest", "quantity"]


def test_a_withheld_event_breaks_the_digest_and_the_quantity() -> None:
    document = invoice(EVENTS)
    failed = [c.name for c in check_line(document, line_no(document), EVENTS[:2]) if not c.ok]
    assert failed[:2] == ["events digest", "quantity"]


def test_the_wrong_rate_card_version_is_named() -> None:
    document = invoice(EVENTS)
    cheaper = load_rate_card_data(
        orjson.loads(orjson.dumps({"plans": {"tiered": {"USD": {"charges": [
            {"meter": "llm_tokens", "model": "per_unit", "unit_price": "0.0001"}]}}}}))
    )  # fmt: skip
    (amount,) = [
        c for c in check_line(document, line_no(document), EVENTS, cheaper) if c.name == "amount"
    ]
    assert not amount.ok
    assert f"the line names {card_version(TIERED_CARD)}" in amount.detail


def test_a_subject_without_events_takes_the_empty_digest() -> None:
    assert line_digest(["a", "b"], {"a": "x"}) == line_digest(
        ["b", "a"], {"a": "x", "b": EMPTY_DIGEST}
    )


@pytest.mark.parametrize(
    ("aggregation", "values", "expected"),
    [
        (Aggregation.SUM, ["1.5", 2, "0.25"], "3.75"),
        (Aggregation.MAX, ["1.5", 2, "0.25"], "2"),
        (Aggregation.MIN, ["1.5", 2, "0.25"], "0.25"),
        (Aggregation.UNIQUE_COUNT, ["a", "a", 1, "1", "1.0"], "3"),  # text as is, 1 as "1"
        (Aggregation.LATEST, ["1.5", 2, "0.25"], "0.25"),
        (Aggregation.AVG, [1, 2], "1.5"),
        (Aggregation.COUNT, [1, 2, 3], "3"),
    ],
)
def test_recompute_quantity_aggregates_like_the_meter(
    aggregation: Aggregation, values: list[object], expected: str
) -> None:
    texts = [orjson.dumps({"data": {"v": v}}).decode() for v in values]
    assert recompute_quantity(aggregation, "$.v", texts) == Decimal(expected)
