"""Prepaid credit in the real billing run, on both engines (the ClickHouse server and
chDB): credit lines on the invoice, the ledger's consumption, reruns and crashes that
never consume twice, and a voided invoice whose credit the next revision takes again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from invoicing.credit_grants import Grant
from invoicing.credit_ledger import read_book, record_grant
from invoicing.document import CreditLine, InvoiceDocument
from invoicing.documents import lines_csv, render_html
from invoicing.ledger import rows_from_document, void_invoice
from invoicing.report import invoices_table
from invoicing.run import RunResult
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import InvoicesTable
from tests.conftest import fresh_database
from tests.invoicing.test_run_chdb import CLOSE_NOV, CLOSE_OCT, NOV, OCT, Crash, FakeTopic, usage
from tests.invoicing.test_run_chdb import bill as run_bill


@pytest.fixture(params=["server", "chdb"])
def db(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "mlc_")


def grant(grant_id: str, amount: str, priority: int = 10, expires: datetime | None = None) -> Grant:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    return Grant(
        grant_id, "acme", "USD", Decimal(amount), priority, start, expires, None, grant_id, start
    )


def usage_worth(db: tuple[Engine, str], start_s: int, dollars: int) -> None:
    """LLM tokens of acme worth ``dollars`` USD (0.00002 each) in the period from ``start_s``."""
    engine, database = db
    usage(
        engine, database, [("acme", "llm_tokens", start_s + 5, start_s + 9, str(dollars * 50000))]
    )


def bill(db: tuple[Engine, str], label: str, cutoff: int, topic: FakeTopic | None) -> RunResult:
    return run_bill(db, label, cutoff, topic, customers=None)


def acme(documents: list[InvoiceDocument]) -> InvoiceDocument:
    return next(d for d in documents if d.customer_id == "acme")


def docs(topic: FakeTopic) -> list[InvoiceDocument]:
    return [InvoiceDocument.from_json(v) for _, v, ok in topic.records if ok]


def consumed(db: tuple[Engine, str]) -> dict[str, Decimal]:
    engine, database = db
    book = read_book(engine, database, "ns", ["acme"])
    return {g: s.consumed for g, s in book.states().items()}


def test_credit_lines_pay_the_invoice_in_order_and_a_rerun_consumes_nothing_more(
    db: tuple[Engine, str],
) -> None:
    engine, database = db
    record_grant(engine, database, "ns", grant("promo", "1.50", priority=1))
    record_grant(engine, database, "ns", grant("bought", "10.00"))
    usage_worth(db, OCT.start_s, 3)
    topic = FakeTopic()
    bill(db, "2026-10", CLOSE_OCT, topic)
    october = acme(docs(topic))
    assert october.schema_ == "meterline.invoice/4"
    credits = [line for line in october.lines if isinstance(line, CreditLine)]
    assert [(c.line_no, c.grant_id, c.amount, c.balance_after) for c in credits] == [
        (4, "promo", "-1.50", "0.00"),
        (5, "bought", "-1.50", "8.50"),
    ]
    assert [line.kind for line in october.lines] == ["usage"] * 3 + ["credit"] * 2
    assert (october.usage_total, october.credits_total, october.total) == ("3.00", "-3.00", "0.00")
    assert consumed(db) == {"promo": Decimal("1.50"), "bought": Decimal("1.50")}

    assert bill(db, "2026-10", CLOSE_OCT + 600, topic).emitted == []
    assert consumed(db) == {"promo": Decimal("1.50"), "bought": Decimal("1.50")}

    usage_worth(db, NOV.start_s, 10)  # 8.50 of credit left, 1.50 to pay
    bill(db, "2026-11", CLOSE_NOV, topic)
    november = next(
        d for d in docs(topic) if d.customer_id == "acme" and d.period.label == "2026-11"
    )
    assert (november.credits_total, november.total) == ("-8.50", "1.50")
    assert consumed(db) == {"promo": Decimal("1.50"), "bought": Decimal("10.00")}

    stored = engine.execute(
        f"SELECT line_no, model, amount FROM {InvoicesTable(database).lines} FINAL"
        f" WHERE invoice_id = '{october.invoice_id}' AND model = 'credit' ORDER BY line_no"
    )
    assert [(int(n), m, Decimal(str(a))) for n, m, a in stored] == [
        (4, "credit", Decimal("-1.5")),
        (5, "credit", Decimal("-1.5")),
    ]


def test_a_crash_after_the_commit_records_the_consumption_once(db: tuple[Engine, str]) -> None:
    engine, database = db
    record_grant(engine, database, "ns", grant("bought", "2.00"))
    usage_worth(db, OCT.start_s, 3)
    topic = FakeTopic(crash_after_commit=True)
    with pytest.raises(Crash):
        bill(db, "2026-10", CLOSE_OCT, topic)
    assert consumed(db) == {"bought": Decimal(0)}  # the drafts are pending
    rerun = bill(db, "2026-10", CLOSE_OCT + 3600, topic)
    assert len(rerun.recovered) == 2
    assert consumed(db) == {"bought": Decimal("2.00")}
    assert acme(docs(topic)).total == "1.00"


def test_a_voided_invoice_gives_its_credit_to_the_next_revision(db: tuple[Engine, str]) -> None:
    engine, database = db
    record_grant(engine, database, "ns", grant("bought", "5.00"))
    usage_worth(db, OCT.start_s, 3)
    topic = FakeTopic()
    first = acme(docs(topic) if bill(db, "2026-10", CLOSE_OCT, topic) else [])
    void_invoice(
        namespace="ns",
        database=database,
        invoice_id=first.invoice_id,
        reason="wrong plan",
        engine=engine,
        publish=None,
    )
    assert consumed(db) == {"bought": Decimal(0)}  # released
    bill(db, "2026-10", CLOSE_OCT + 600, topic)
    second = [d for d in docs(topic) if d.customer_id == "acme" and d.revision == 1]
    assert [(d.credits_total, d.total) for d in second] == [("-3.00", "0.00")]
    assert consumed(db) == {"bought": Decimal("3.00")}


def test_documents_render_credit_lines_and_store_them_apart_from_usage() -> None:
    from tests.invoicing.test_credits import at

    raw = {
        "schema": "meterline.invoice/4",
        "invoice_id": "inv_1",
        "namespace": "ns",
        "revision": 0,
        "customer_id": "acme",
        "subscription_id": "main",
        "subjects": ["acme"],
        "plan": "starter",
        "currency": "USD",
        "minor_units": 2,
        "cadence": "monthly",
        "period": {
            "label": "2026-10",
            "start": "2026-10-01T00:00:00.000Z",
            "end": "2026-11-01T00:00:00.000Z",
            "timezone": "UTC",
        },
        "usage_cutoff": "2026-11-01T01:00:00.000Z",
        "lines": [
            {
                "kind": "credit",
                "line_no": 1,
                "grant_id": "promo",
                "name": "Promo",
                "currency": "USD",
                "amount": "-0.00",
                "balance_before": "5.00",
                "balance_after": "5.00",
                "description": "d",
            }
        ],
        "usage_total": "0.00",
        "adjustments_total": "0.00",
        "credits_total": "-0.00",
        "total": "0.00",
        "created_at": "2026-11-01T01:00:00.000Z",
        "rate_card_version": "rc_1",
    }
    doc = InvoiceDocument.model_validate(raw)
    _, lines = rows_from_document("ns", doc, doc.to_json())
    assert [(line.model, line.meter, line.quantity) for line in lines] == [
        ("credit", "", Decimal(0))
    ]
    assert "Prepaid credit: Promo (promo)" in render_html(doc)
    assert "inv_1,1,credit,,promo,Promo,,credit,,-0.00,USD,d" in lines_csv([doc])
    assert "credit promo" in invoices_table([doc])
    with pytest.raises(ValueError, match="has no credit lines"):
        InvoiceDocument.model_validate({**raw, "schema": "meterline.invoice/3"})
    with pytest.raises(ValueError, match="has a credits_total"):
        InvoiceDocument.model_validate({**raw, "credits_total": None})
    older = {**raw, "schema": "meterline.invoice/3", "lines": []}
    del older["credits_total"]
    assert InvoiceDocument.from_json(orjson.dumps(older)).credits_total is None
    assert at("2026-11-01T00:00Z") == datetime(2026, 11, 1, tzinfo=UTC)
