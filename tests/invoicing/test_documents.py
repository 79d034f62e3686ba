"""Invoice documents: JSON schema fields, CSV lines, and HTML rendered in headless Chromium."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from invoicing.document import InvoiceDocument
from invoicing.documents import CSV_COLUMNS, lines_csv, render_html
from invoicing.invoice import SCHEMA, Invoice
from invoicing.ledger import rows_from_document
from invoicing.periods import month_period
from invoicing.plan import Billed, plan_subscription
from tests.browser import headless
from tests.invoicing.helpers import METERS, TIERED_CARD, UsageLog, customer

OCT = month_period("2026-10")
NOV = month_period("2026-11")


def sample() -> Invoice:
    """A November invoice on a tiered plan with a late-usage adjustment for October."""
    cust = customer(id="acme & co", plan="tiered", subscription="main")
    log = UsageLog()
    for n in range(8):
        log.add("acme & co", "api_calls", OCT.start_s + n, OCT.start_s + 60)
    history: list[Billed] = []
    for label, cutoff in (("2026-10", NOV.start_s + 3600),):
        plan_subscription(
            namespace="ns",
            customer=cust,
            index=0,
            periods=[month_period(label)],
            history=history,
            cutoff_s=cutoff,
            read=log,
            card=TIERED_CARD,
            meters=METERS,
            created_ms=1,
        )
    for n in range(7):  # late October calls
        log.add("acme & co", "api_calls", OCT.start_s + 100 + n, NOV.start_s + 7200)
    for n in range(150):
        log.add("acme & co", "api_calls", NOV.start_s + n, NOV.start_s + n + 60)
    log.add("acme & co", "llm_tokens", NOV.start_s + 5, NOV.start_s + 60, "12345")
    return plan_subscription(
        namespace="ns",
        customer=cust,
        index=0,
        periods=[NOV],
        history=history,
        cutoff_s=NOV.end_s + 3600,
        read=log,
        card=TIERED_CARD,
        meters=METERS,
        created_ms=1_764_000_000_000,
    ).invoices[0]


def test_document_has_the_versioned_schema_and_exact_total() -> None:
    doc = orjson.loads(sample().to_json())
    assert doc["schema"] == SCHEMA
    assert doc["period"] == {
        "start": "2026-11-01T00:00:00.000Z",
        "end": "2026-12-01T00:00:00.000Z",
        "label": "2026-11",
        "timezone": "UTC",
    }
    assert doc["usage_cutoff"] == "2026-12-01T01:00:00.000Z"
    kinds = [line["kind"] for line in doc["lines"]]
    assert kinds.count("adjustment") >= 1
    assert [line["line_no"] for line in doc["lines"]] == list(range(1, len(kinds) + 1))
    assert Decimal(doc["total"]) == sum(Decimal(line["amount"]) for line in doc["lines"])
    assert Decimal(doc["total"]) == Decimal(doc["usage_total"]) + Decimal(doc["adjustments_total"])
    adjustments = {line["charge_id"]: line for line in doc["lines"] if line["kind"] == "adjustment"}
    calls = adjustments["api_calls"]
    assert calls["adjusts"]["period"]["label"] == "2026-10"
    assert calls["quantity"] == "7"
    # 15 calls: 10 free + 5 × 0.5 + 2.00 flat = 4.50, minus 0 billed before; the
    # October minimum true-up shrinks by as much
    assert calls["amount"] == "4.50"
    assert adjustments["minimum"]["amount"] == "-4.50"


def test_the_document_round_trips_through_its_bytes_and_refuses_another_schema() -> None:
    raw = sample().to_json()
    doc = InvoiceDocument.from_json(raw)
    assert doc.to_json() == raw  # what is published is what is read back, byte for byte
    assert doc == sample().document()
    other = orjson.loads(raw) | {"schema": "meterline.invoice/1"}
    with pytest.raises(ValidationError, match="schema"):
        InvoiceDocument.model_validate(other)
    stray = orjson.loads(raw)
    stray["lines"][0]["price"] = "1"  # a field the schema does not have
    with pytest.raises(ValidationError, match="price"):
        InvoiceDocument.model_validate(stray)


def test_stored_rows_come_from_the_document() -> None:
    raw = sample().to_json()
    row, lines = rows_from_document("ns", InvoiceDocument.from_json(raw), raw)
    assert row.total == sum((line.amount for line in lines), Decimal(0))
    assert row.line_count == len(lines)
    assert any(line.model.startswith("adjustment:") for line in lines)


def test_csv_has_one_row_per_line() -> None:
    doc = sample().document()
    rows = list(csv.DictReader(io.StringIO(lines_csv([doc]))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(doc.lines)
    assert {r["kind"] for r in rows} == {"usage", "adjustment"}
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(doc.total)


def run_chromium(html: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return headless(html.as_uri(), profile, *args)


def test_html_invoice_renders_in_headless_chromium(tmp_path: Path) -> None:
    invoice = sample()
    doc = invoice.document()
    page = tmp_path / "invoice.html"
    page.write_text(render_html(doc), encoding="utf-8")
    dom = run_chromium(page, tmp_path / "profile-dom", "--dump-dom").stdout
    for text in (
        doc.invoice_id,
        "acme &amp; co",  # escaped, not interpreted
        "2026-11",
        "Adjustment for 2026-10",
        "tier 2 (10, 100]",
        f"Total {doc.currency}",
        doc.total,
        doc.usage_cutoff,
    ):
        assert text in dom, text
    shot = tmp_path / "invoice.png"
    run_chromium(page, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,1600")
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"invoice screenshot: {shot}")
    keep = os.environ.get("METERLINE_INVOICE_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
