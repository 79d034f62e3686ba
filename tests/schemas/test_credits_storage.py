"""``credit_ledger`` as text and on both engines: entries read back exactly, an entry
written twice reads once, a voided invoice's consumption reads as released, and a
grant's terms survive the round trip through ``invoicing.credit_ledger``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from invoicing.credit_grants import EntryKind, Grant, Rollover
from invoicing.credit_ledger import read_book, record_entries, record_grant
from invoicing.credits import CreditApplied as Applied
from invoicing.credits import CreditDue, consumption_entries
from schemas.storage.credits_table import CreditRow, CreditsTable
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import InvoicesTable, StatusRow
from schemas.storage.sql import LISTED_AT_MOST

pytestmark = [pytest.mark.integration, pytest.mark.chdb]

T = datetime(2026, 10, 1, tzinfo=UTC)


def test_ledger_statements_as_text() -> None:
    table = CreditsTable("db")
    ddl = table.ddl()[0].to_sql()
    assert "ENGINE = MergeTree() ORDER BY (namespace, customer_id, grant_id, entry_id)" in ddl
    entries = table.entries("ns", ["acme", "o'neil"]).to_sql()
    assert "WHERE namespace = 'ns' AND customer_id IN ('acme', 'o\\'neil')" in entries
    assert "FROM db.invoice_status WHERE namespace = 'ns' AND status_rank = 2" in entries
    assert entries.endswith("LIMIT 1 BY entry_id")
    assert "customer_id IN" not in table.entries("ns").to_sql()
    assert "grant_id = 'g1' AND kind IN ('grant', 'void')" in table.grant("ns", "g1").to_sql()
    holders = table.holders("ns").to_sql()
    assert holders == (
        "SELECT DISTINCT customer_id FROM db.credit_ledger"
        " WHERE namespace = 'ns' AND kind = 'grant' ORDER BY customer_id"
    )


def test_entries_read_back_once_with_released_invoices(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    table = CreditsTable(database)
    grant = CreditRow(
        "ns",
        "acme",
        "g1",
        "grant:g1",
        "grant",
        "KWD",
        Decimal("10.125"),
        1_000,
        priority=3,
        effective_ms=500,
        expires_ms=9_000,
        rollover_max=Decimal("1.5"),
        rollover_until_ms=19_000,
        name="Welcome",
        recorded_ms=1_000,
    )
    consume = CreditRow(
        "ns",
        "acme",
        "g1",
        "consume:g1:inv1",
        "consume",
        "KWD",
        Decimal("-2.001"),
        5_000,
        invoice_id="inv1",
        recorded_ms=2_000,
    )
    other = CreditRow(
        "ns",
        "acme",
        "g1",
        "consume:g1:inv2",
        "consume",
        "KWD",
        Decimal("-1"),
        6_000,
        invoice_id="inv2",
        recorded_ms=2_000,
    )
    elsewhere = CreditRow("other", "acme", "g9", "grant:g9", "grant", "USD", Decimal(1), 1)
    eng.insert(*table.insert([grant, consume, other, elsewhere]))
    eng.insert(*table.insert([consume]))  # a crash and a rerun write it again
    eng.insert(
        *InvoicesTable(database).insert_status([StatusRow("ns", "inv2", 2, "void", "x", 7_000)])
    )
    rows = [tuple(r) for r in eng.execute(table.entries("ns", ["acme"]).to_sql())]
    assert rows == [
        (*consume.as_row(), 0),
        (*other.as_row(), 1),
        (*grant.as_row(), 0),
    ]
    assert eng.execute(table.entries("ns", ["nobody"]).to_sql()) == []
    assert [tuple(r) for r in eng.execute(table.grant("ns", "g1").to_sql())] == [("acme", "grant")]
    assert [tuple(r) for r in eng.execute(table.holders("ns").to_sql())] == [("acme",)]
    assert eng.execute(table.holders("nobody").to_sql()) == []


def test_a_grant_and_its_entries_round_trip(engine: tuple[Engine, str]) -> None:
    eng, database = engine
    grant = Grant(
        grant_id="g1",
        customer_id="acme",
        currency="USD",
        amount=Decimal("100.00"),
        priority=2,
        effective_at=T,
        expires_at=datetime(2026, 12, 1, tzinfo=UTC),
        rollover=Rollover(Decimal("30.00"), datetime(2027, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)),
        name="Welcome",
        granted_at=datetime(2026, 9, 30, 12, 0, 0, 123000, tzinfo=UTC),
    )
    plain = Grant("g2", "acme", "USD", Decimal("5.00"), 10, T, None, None, "Plain", T)
    record_grant(eng, database, "ns", grant)
    record_grant(eng, database, "ns", plain)
    d = CreditDue("acme", "USD", "inv1", datetime(2026, 11, 1, tzinfo=UTC), Decimal("40"))
    entries = consumption_entries(
        d, [Applied("g1", "Welcome", "USD", Decimal("12.34"), Decimal(100))]
    )
    record_entries(eng, database, "ns", entries)
    book = read_book(eng, database, "ns", ["acme"])
    assert book.grants == (grant, plain)
    assert book.entries == tuple(entries)
    assert book.entries[0].kind is EntryKind.CONSUME
    assert str(book.entries[0].amount) == "-12.34"
    assert book.released == frozenset()
    assert read_book(eng, database, "ns").grants == (grant, plain)


def test_a_book_of_more_customers_than_one_query_lists_reads_them_all(
    engine: tuple[Engine, str],
) -> None:
    """Billing 100k customers asks for 100k customers' credit: the ids are not put in the
    query (ClickHouse refuses one over 256 KiB), the namespace's ledger is read and kept
    to the customers asked for."""
    eng, database = engine
    at = datetime(2026, 11, 1, tzinfo=UTC)
    for customer in ("c-0000042", "outsider"):
        grant = Grant(f"g-{customer}", customer, "USD", Decimal("5.00"), 10, at, None, None,
                      "Prepaid credit", at)  # fmt: skip
        record_grant(eng, database, "ns", grant)
    asked = [f"c-{n:07d}" for n in range(40_000)]  # ~480 kB of ids in an IN list
    assert len(asked) > LISTED_AT_MOST
    book = read_book(eng, database, "ns", asked)
    assert [g.customer_id for g in book.grants] == ["c-0000042"]
    assert {e.customer_id for e in book.entries} <= {"c-0000042"}
    few = read_book(eng, database, "ns", ["outsider"])
    assert [g.grant_id for g in few.grants] == ["g-outsider"]
