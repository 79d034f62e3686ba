"""The worked example of verifiable lines in docs/invoicing.md, recomputed."""

from __future__ import annotations

import re
from decimal import Decimal

from invoicing.evidence import event_hash, line_digest, recompute_quantity, subject_digest
from rating import Usage, rate_plan
from schemas.metering.definitions import Aggregation
from tests.invoicing.helpers import DEMO_CARD, ROOT

DOC = (ROOT / "docs/invoicing.md").read_text()


def test_the_worked_example_of_a_verifiable_line() -> None:
    section = DOC[DOC.index("**Worked example.** Two events") :]
    start = section.index("```text\n") + 8
    block = section[start : section.index("\n```", start)]
    events = [line.split(" ", 2) for line in block.splitlines()]
    hashes = [event_hash(source, event_id, text) for source, event_id, text in events]
    values = re.findall(r"`([0-9a-f]{64})`", section[: section.index("tests/invoicing")])
    digest = subject_digest(hashes)
    assert values == [*hashes, digest, line_digest(["acme"], {"acme": digest})]
    quantity = recompute_quantity(Aggregation.SUM, "$.tokens", [text for *_, text in events])
    assert quantity == Decimal("1500.25")
    rated = rate_plan(DEMO_CARD, "starter", "USD", {"llm_tokens": Usage(quantity=quantity)})
    line = next(x for x in rated.lines if x.meter == "llm_tokens")
    assert (line.unrounded_amount, line.amount) == (Decimal("0.030005"), Decimal("0.03"))
