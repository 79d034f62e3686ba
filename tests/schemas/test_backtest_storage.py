"""The backtest's two ledger statements (``InvoicesTable.issued_ending`` and
``usage_amounts_ending``) as text, and run on both engines: the ClickHouse 18.16 server
(integration) and current ClickHouse in chDB."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import pytest

from schemas.storage.engine import Engine
from schemas.storage.invoices_table import (
    DraftRow,
    InvoiceLineRow,
    InvoiceRow,
    InvoicesTable,
    StatusRow,
)
from tests.invoicing.backtest_kit import ENGINES, engine_for


@pytest.fixture(params=ENGINES)
def both_engines(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from engine_for(request)


T0 = 1_790_812_800  # 2026-10-01T00:00Z
T1 = 1_793_491_200  # 2026-11-01T00:00Z
T2 = 1_796_083_200  # 2026-12-01T00:00Z


def test_issued_ending_sql_joins_drafts_and_issued_invoices_without_voids() -> None:
    sql = InvoicesTable("db").issued_ending("ns", T1, T2).to_sql()
    assert "FROM db.invoice_drafts FINAL WHERE namespace = 'ns'" in sql
    assert "period_end_s >= 1793491200 AND period_end_s <= 1796083200" in sql
    assert "NOT IN (SELECT invoice_id FROM db.invoice_status" in sql
    assert "ANY INNER JOIN ( SELECT invoice_id, plan, currency FROM db.invoices FINAL" in sql


def test_usage_amounts_sql_leaves_adjustment_lines_out() -> None:
    sql = InvoicesTable("db").usage_amounts_ending("ns", T1, T2).to_sql()
    assert sql.startswith(
        "SELECT invoice_id, meter, model, sum(amount) FROM db.invoice_lines FINAL"
    )
    assert "model NOT LIKE 'adjustment:%'" in sql
    assert "GROUP BY invoice_id, meter, model" in sql


def draft(invoice_id: str, customer: str, start: int, end: int, revision: int = 0) -> DraftRow:
    cutoff = end + 3600 + revision * 60
    return DraftRow(
        "ns", invoice_id, customer, "main", start, end, revision, cutoff, (), Decimal(1), 1, "{}"
    )


def issued(invoice_id: str, customer: str, start: int, end: int, currency: str) -> InvoiceRow:
    return InvoiceRow(
        "ns", invoice_id, customer, "pro", currency, start, end, Decimal(1), 1, 1, "{}"
    )


def line(invoice_id: str, number: int, meter: str, model: str, amount: str) -> InvoiceLineRow:
    value = Decimal(amount)
    return InvoiceLineRow("ns", invoice_id, number, meter, model, Decimal(1), value, amount)


def test_both_statements_on_both_engines(both_engines: tuple[Engine, str]) -> None:
    engine, database = both_engines
    table = InvoicesTable(database)
    drafts = [
        draft("inv_acme_0", "acme", T1, T2),  # voided, then billed again as revision 1
        draft("inv_acme_1", "acme", T1, T2, revision=1),
        draft("inv_globex", "globex", T1, T2),
        draft("inv_initech", "initech", T1, T2),  # pending: a crashed run's draft
        draft("inv_umbrella", "umbrella", T1, T2),  # voided, not billed again
        draft("inv_acme_oct", "acme", T0, T1),  # ends before the range
        dataclasses.replace(draft("other_ns", "acme", T1, T2), namespace="other"),
    ]
    engine.insert(*table.insert_drafts(drafts))
    engine.insert(*table.insert_drafts(drafts[:2]))  # written again after a crash: collapses
    invoices = [
        issued("inv_acme_0", "acme", T1, T2, "USD"),
        issued("inv_acme_1", "acme", T1, T2, "USD"),
        issued("inv_globex", "globex", T1, T2, "EUR"),
        issued("inv_umbrella", "umbrella", T1, T2, "USD"),
        issued("inv_acme_oct", "acme", T0, T1, "USD"),
    ]
    engine.insert(*table.insert_invoices(invoices))
    engine.insert(
        *table.insert_invoices(
            [dataclasses.replace(invoices[2], namespace="other", invoice_id="other_ns")]
        )
    )
    engine.insert(*table.insert_invoices(invoices[1:2]))
    voids = [StatusRow("ns", i, 2, "void", "wrong plan", 5) for i in ("inv_acme_0", "inv_umbrella")]
    engine.insert(*table.insert_status(voids))
    lines = [
        line("inv_acme_1", 1, "api_calls", "per_unit", "3.00"),
        line("inv_acme_1", 2, "api_calls", "graduated", "1.25"),  # a second charge, same meter
        line("inv_acme_1", 3, "", "flat", "5.00"),
        line("inv_acme_1", 4, "api_calls", "adjustment:per_unit", "0.40"),  # late usage of Oct
        line("inv_globex", 1, "llm_tokens", "per_unit", "15.00"),
        line("inv_acme_oct", 1, "api_calls", "per_unit", "9.99"),
    ]
    engine.insert(*table.insert_lines(lines))
    engine.insert(*table.insert_lines(lines[:1]))  # written again: FINAL counts it once

    heads = engine.execute(table.issued_ending("ns", T2, T2).to_sql())
    assert [tuple(r) for r in heads] == [
        ("inv_acme_1", "acme", "main", T1, T2, 1, T2 + 3660, "pro", "USD"),
        ("inv_globex", "globex", "main", T1, T2, 0, T2 + 3600, "pro", "EUR"),
    ]
    amounts = engine.execute(table.usage_amounts_ending("ns", T2, T2).to_sql())
    got = {(str(r[0]), str(r[1]), str(r[2])): Decimal(r[3]) for r in amounts}
    assert got == {
        ("inv_acme_1", "", "flat"): Decimal("5.00"),
        ("inv_acme_1", "api_calls", "graduated"): Decimal("1.25"),
        ("inv_acme_1", "api_calls", "per_unit"): Decimal("3.00"),
        ("inv_globex", "llm_tokens", "per_unit"): Decimal("15.00"),
    }
    assert engine.execute(table.issued_ending("ns", T0, T1).to_sql())[0][0] == "inv_acme_oct"
