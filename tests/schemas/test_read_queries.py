from __future__ import annotations

from dataclasses import astuple
from decimal import Decimal

import pytest

from schemas.storage.engine import Engine
from schemas.storage.invoices_table import (
    InvoiceGet,
    InvoiceList,
    InvoiceRow,
    InvoicesTable,
    InvoiceStats,
)
from schemas.storage.windows_table import FeedRow, MeterSubjects, WindowsTable

T = "db.t"


@pytest.mark.parametrize(
    ("query", "sql"),
    [
        (
            MeterSubjects("default", "api_calls"),
            "SELECT DISTINCT subject FROM db.t WHERE namespace = 'default' AND meter = "
            "'api_calls' ORDER BY subject",
        ),
        (
            MeterSubjects("default", "api_calls", ("a", "b'c")),
            "SELECT DISTINCT subject FROM db.t WHERE namespace = 'default' AND meter = "
            "'api_calls' AND subject IN ('a', 'b\\'c') ORDER BY subject",
        ),
        (
            MeterSubjects("default", "api_calls", ()),
            "SELECT DISTINCT subject FROM db.t WHERE namespace = 'default' AND meter = "
            "'api_calls' AND subject IN ('') ORDER BY subject",
        ),
        (
            InvoiceList("default"),
            "SELECT document FROM db.t FINAL WHERE namespace = 'default'"
            " ORDER BY period_start_s DESC, customer_id, invoice_id LIMIT 100",
        ),
        (
            InvoiceList("default", "acme", 10, 20, 5),
            "SELECT document FROM db.t FINAL WHERE namespace = 'default' AND customer_id ="
            " 'acme' AND period_start_s >= 10 AND period_start_s < 20"
            " ORDER BY period_start_s DESC, customer_id, invoice_id LIMIT 5",
        ),
        (
            InvoiceGet("default", "inv_1"),
            "SELECT customer_id, document FROM db.t FINAL WHERE namespace = 'default'"
            " AND invoice_id = 'inv_1' LIMIT 1",
        ),
        (
            InvoiceStats("default"),
            "SELECT count(), uniqExact(period_start_s) FROM db.t FINAL WHERE namespace = 'default'",
        ),
    ],
)
def test_sql_text(query: MeterSubjects | InvoiceList | InvoiceGet | InvoiceStats, sql: str) -> None:
    assert query.on(T).to_sql() == sql


@pytest.mark.integration
@pytest.mark.chdb
def test_read_queries_on_both_engines(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    windows, invoices = WindowsTable(database), InvoicesTable(database)
    row = FeedRow("ns", "m", "acme", "{}", 1_793_491_200, 1_793_491_200, Decimal(1), "", 0, 0, 1)
    eng.insert(
        *windows.insert_args([row, FeedRow(*(*astuple(row)[:2], "bolt", *astuple(row)[3:]))])
    )
    assert eng.execute(MeterSubjects("ns", "m").on(windows.name).to_sql()) == [("acme",), ("bolt",)]
    assert eng.execute(MeterSubjects("ns", "m", ("bolt",)).on(windows.name).to_sql()) == [("bolt",)]
    doc = '{"invoice_id": "inv_1"}'
    invoice = InvoiceRow("ns", "inv_1", "acme", "pro", "USD", 100, 200, Decimal("1.50"), 1, 1, doc)
    eng.insert(*invoices.insert_invoices([invoice, invoice]))
    assert eng.execute(InvoiceList("ns", "acme").on(invoices.name).to_sql()) == [(doc,)]
    assert eng.execute(InvoiceList("ns", "other").on(invoices.name).to_sql()) == []
    assert eng.execute(InvoiceGet("ns", "inv_1").on(invoices.name).to_sql()) == [("acme", doc)]
    assert eng.execute(InvoiceStats("ns").on(invoices.name).to_sql()) == [(1, 1)]
