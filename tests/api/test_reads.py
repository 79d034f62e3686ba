from __future__ import annotations

import pytest

from api.reads import InvoiceGet, InvoiceList, InvoiceStats, MeterSubjects

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
    assert query.to_sql(T) == sql
