"""The invoice ledger's DDL and queries as text, and run on both engines: the ClickHouse
18.16 server (integration) and current ClickHouse in chDB."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from schemas.storage.engine import Engine
from schemas.storage.invoices_table import DraftRow, InvoiceRow, InvoicesTable, StatusRow
from tests.conftest import fresh_database

T0 = 1_790_000_000 - 1_790_000_000 % 86400


def test_ledger_sql_reads_drafts_with_issue_and_void_flags() -> None:
    sql = InvoicesTable("db").ledger("ns").to_sql()
    assert "FROM db.invoice_drafts AS d FINAL WHERE d.namespace = 'ns'" in sql
    assert "SELECT invoice_id FROM db.invoices WHERE namespace = 'ns'" in sql
    assert "status_rank = 2" in sql


@pytest.fixture(params=["server", "chdb"])
def engine(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "invs_")


def draft(invoice_id: str, start: int, revision: int = 0, covers: tuple[int, ...] = ()) -> DraftRow:
    return DraftRow(
        "ns",
        invoice_id,
        "acme",
        "main",
        start,
        start + 86400,
        revision,
        start + 86400 + 3600,
        covers,
        Decimal("1.50"),
        1,
        f'{{"invoice_id": "{invoice_id}"}}',
    )


def test_ledger_on_both_engines(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    table = InvoicesTable(database)
    rows = [draft("inv_a", T0), draft("inv_b", T0 + 86400, covers=(T0,)), draft("inv_c", T0, 1)]
    eng.insert(*table.insert_drafts(rows))
    eng.insert(*table.insert_drafts(rows[:1]))  # written again after a crash: collapses
    eng.insert(
        *table.insert_invoices(
            [
                InvoiceRow(
                    "ns", i, "acme", "pro", "USD", T0, T0 + 86400, Decimal("1.5"), 0, 1, "{}"
                )
                for i in ("inv_a", "inv_b")
            ]
        )
    )
    eng.insert(*table.insert_status([StatusRow("ns", "inv_a", 2, "void", "wrong plan", 5)]))
    ledger = [
        (r[0], int(r[3]), int(r[5]), [int(c) for c in r[7]], int(r[9]), int(r[10]))
        for r in eng.execute(table.ledger("ns").to_sql())
    ]
    assert ledger == [
        ("inv_a", T0, 0, [], 1, 1),
        ("inv_c", T0, 1, [], 0, 0),
        ("inv_b", T0 + 86400, 0, [T0], 1, 0),
    ]
    docs = eng.execute(table.documents("ns", ["inv_c", "inv_x"]).to_sql())
    assert [(d[0], d[2]) for d in docs] == [("inv_c", '{"invoice_id": "inv_c"}')]
    assert eng.execute(table.documents("ns", []).to_sql()) == []
