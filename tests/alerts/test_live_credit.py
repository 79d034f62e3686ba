"""The evaluator's credit reading from the real ledger (both engines): grants in effect
in the subscription's currency, what remains of them, nothing for other currencies,
scheduled, voided or expired grants."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from alerts.service import LiveCredit
from invoicing.credit_ledger import read_book, record_entries, record_grant
from invoicing.credits import void_entry
from invoicing.customers import Customer
from invoicing.grants import parse_grant
from schemas.settings import Settings
from schemas.storage.engine import Engine
from tests.conftest import fresh_database

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
ACME = Customer.model_validate(
    {"id": "acme", "plan": "pro", "currency": "USD", "start": "2026-01-01", "anchor_day": 1}
)


@pytest.fixture(params=["server", "chdb"])
def storage(request: pytest.FixtureRequest) -> Iterator[tuple[Engine, str]]:
    yield from fresh_database(request, "mllc_")


def grant(engine: Engine, database: str, id_: str, **terms: object) -> None:
    body = {"id": id_, "currency": "USD", "amount": "50.00", **terms}
    made = parse_grant(body, customer_id="acme", billed_currencies={"USD", "EUR"},
                       grant_id=id_, now=NOW - timedelta(days=30))  # fmt: skip
    record_grant(engine, database, "ns", made)


def test_credit_in_effect_in_the_subscriptions_currency(storage: tuple[Engine, str]) -> None:
    engine, database = storage
    live = LiveCredit(engine, Settings(namespace="ns", clickhouse_database=database), ["acme"])
    assert live(ACME, NOW) is None  # no grant yet
    grant(engine, database, "a")
    grant(engine, database, "b", amount="30.00", expires_at="2026-12-31T00:00:00Z")
    grant(engine, database, "eur", currency="EUR", amount="99.00")
    grant(engine, database, "later", effective_at="2026-12-01T00:00:00Z")
    grant(engine, database, "gone", expires_at="2026-11-01T00:00:00Z")
    grant(engine, database, "void")
    later = NOW + timedelta(minutes=1)
    assert live(ACME, later) == (D("130.00"), D("130.00"))
    state = read_book(engine, database, "ns", ["acme"]).states()["void"]
    record_entries(engine, database, "ns", [void_entry(state, NOW, "test")])
    assert live(ACME, later + timedelta(minutes=1)) == (D("80.00"), D("80.00"))
