"""The demo's credit check (``deploy/demo_credit.py``) on a real ledger: globex's invoice
issued *before* the demo's grant was made (a database the demo filled with a build
without credits) is reported as issued, the grant unconsumed, and passes; the same
invoice issued after the grant, without the credit line, is a mismatch; so is the early
invoice once the grant was consumed elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import orjson
import pytest

from invoicing.credit_grants import Grant
from invoicing.credit_ledger import record_entries, record_grant
from invoicing.credits import CreditApplied, CreditDue, consumption_entries
from invoicing.document import InvoiceDocument
from invoicing.periods import month_period
from invoicing.plan import plan_subscription
from schemas.settings import Settings
from schemas.storage.engine import Engine
from tests.conftest import ROOT, fresh_database
from tests.invoicing.helpers import METERS, TIERED_CARD, UsageLog, customer

sys.path.insert(0, str(ROOT / "deploy"))

from demo_credit import AMOUNT, CUSTOMER, credit_check, grant_id

pytestmark = [pytest.mark.integration, pytest.mark.chdb]

NOV = month_period("2026-11")
ISSUED_MS = 1_796_086_800_000  # 2026-12-01T01:00:00Z


@pytest.fixture(params=["server", "chdb"])
def ledger(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "mldc_")


def november_invoice() -> InvoiceDocument:
    log = UsageLog()
    for n in range(20):
        log.add(CUSTOMER, "api_calls", NOV.start_s + n, NOV.start_s + 60)
    invoice = plan_subscription(
        namespace="ns", customer=customer(id=CUSTOMER, plan="tiered"), index=0,
        periods=[NOV], history=[], cutoff_s=NOV.end_s + 3600, read=log, card=TIERED_CARD,
        meters=METERS, created_ms=ISSUED_MS,
    ).invoices[0]  # fmt: skip
    return InvoiceDocument.model_validate(orjson.loads(invoice.to_json()))


def demo_with_grant(engine: Engine, database: str, granted_at: datetime) -> SimpleNamespace:
    settings = Settings().model_copy(update={"clickhouse_database": database, "namespace": "ns"})
    grant = Grant(grant_id(NOV), CUSTOMER, "USD", AMOUNT, 1, NOV.start, None, None,
                  "Demo prepaid credit", granted_at)  # fmt: skip
    record_grant(engine, database, "ns", grant)
    return SimpleNamespace(settings=settings, engine=engine)


def test_an_invoice_issued_before_the_grant_keeps_it_unconsumed(
    ledger: tuple[Engine, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, database = ledger
    doc = november_invoice()
    assert not [line for line in doc.lines if line.kind == "credit"]
    demo = demo_with_grant(engine, database, datetime(2026, 12, 2, 4, 52, tzinfo=UTC))
    assert credit_check(demo, [doc], NOV)
    said = capsys.readouterr().out
    assert "before the grant was made (2026-12-02T04:52:00.000Z)" in said
    assert "consumed 0): ok" in said

    due = CreditDue(CUSTOMER, "USD", "inv_elsewhere", NOV.end, Decimal(10))
    used = [CreditApplied(grant_id(NOV), "Demo prepaid credit", "USD", Decimal(10), AMOUNT)]
    record_entries(engine, database, "ns", consumption_entries(due, used))
    assert not credit_check(demo, [doc], NOV)
    assert "MISMATCH" in capsys.readouterr().out


def test_an_invoice_issued_after_the_grant_without_its_line_is_a_mismatch(
    ledger: tuple[Engine, str], capsys: pytest.CaptureFixture[str]
) -> None:
    engine, database = ledger
    demo = demo_with_grant(engine, database, datetime(2026, 11, 30, tzinfo=UTC))
    assert not credit_check(demo, [november_invoice()], NOV)
    assert "credit line 0 USD" in capsys.readouterr().out
