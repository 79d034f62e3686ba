"""The customer view's prepaid credit (``GET /api/v1/customers``), in-process over a real
ClickHouse server: the balance per currency beside the estimate, and what the period's
estimated charges leave of it; the same numbers ``/balance`` gives; customer scoping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from api.estimates import current_period
from invoicing.credit_ledger import read_book, record_entries
from invoicing.credits import CreditDue, apply_credits, consumption_entries
from schemas.settings import Settings
from schemas.storage.engine import ServerEngine
from tests.api.doubles import ACME, ADMIN, TOKENS, SyncClient, served
from tests.api.quote_kit import Seeder

pytestmark = [pytest.mark.integration]

GLOBEX = {"Authorization": f"Bearer {TOKENS['globex']}"}
JSON = {"content-type": "application/json"}
FIELDS = {"id", "subjects", "plan", "currency", "usage", "estimate", "error"}


@pytest.fixture
def world(stack: Settings) -> Iterator[tuple[SyncClient, ServerEngine, Settings]]:
    with served(stack, "mlk_") as served_app:
        yield served_app


def grant(client: SyncClient, body: dict[str, Any]) -> None:
    made = client.post(
        "/api/v1/customers/acme/grants", content=json.dumps(body), headers={**JSON, **ADMIN}
    )
    assert made.status_code == 201, made.text


def listed(client: SyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/customers", headers=headers)
    assert answer.status_code == 200, answer.text
    return {c["id"]: c for c in answer.json()["customers"]}


def test_balance_and_what_the_estimate_leaves_beside_each_customer(
    world: tuple[SyncClient, ServerEngine, Settings],
) -> None:
    client, engine, settings = world
    database, namespace = settings.clickhouse_database, settings.namespace
    since = {"effective_at": "2026-01-01T00:00:00Z"}
    grant(client, {"id": "promo", "amount": "50.00", "currency": "USD", "priority": 1, **since})
    grant(client, {"id": "gift", "amount": "20.00", "currency": "USD", **since})
    # an invoice of 12.34 took its credit (promo first, priority 1), recorded in the ledger
    due = CreditDue("acme", "USD", "inv-acme-2026-11", datetime(2026, 11, 1, tzinfo=UTC),
                    Decimal("12.34"))  # fmt: skip
    applied = apply_credits(read_book(engine, database, namespace, ["acme"]), due)
    assert [(a.grant_id, a.amount) for a in applied] == [("promo", Decimal("12.34"))]
    record_entries(engine, database, namespace, consumption_entries(due, applied))
    voided = client.post(
        "/api/v1/customers/acme/grants/gift/void",
        content=json.dumps({"reason": "refunded"}),
        headers={**JSON, **ADMIN},
    )
    assert voided.status_code == 200, voided.text
    # usage so far this period: 1000 calls × 0.002 (starter) = 2.00
    period = current_period(datetime.now(UTC))
    early = min(period.start + timedelta(minutes=1), datetime.now(UTC))
    Seeder(engine, settings).add("acme", "api_calls", early, ["1"] * 1000)

    by_id = listed(client, ADMIN)
    acme = by_id["acme"]
    assert set(acme) == {*FIELDS, "credit"}  # the existing fields, unchanged
    assert acme["estimate"]["total"] == "2.00"
    # 50.00 − 12.34 of promo; gift voided: nothing of it remains
    assert acme["credit"] == [{"currency": "USD", "remaining": "37.66", "afterEstimate": "35.66"}]
    balance = client.get("/api/v1/customers/acme/balance", headers=ADMIN).json()
    assert [(b["currency"], Decimal(str(b["remaining"]))) for b in balance["balances"]] == [
        ("USD", Decimal(acme["credit"][0]["remaining"]))
    ]
    assert by_id["globex"]["credit"] == []  # no grants: no balance
    assert by_id["globex"]["estimate"]["total"] == "0.00"

    own = listed(client, ACME)  # a customer token sees its own customer only
    assert list(own) == ["acme"]
    assert own["acme"]["credit"] == acme["credit"]
    other = listed(client, GLOBEX)
    assert list(other) == ["globex"]
    assert other["globex"]["credit"] == []


def test_money_is_decimal_text_in_the_currency_minor_unit(
    world: tuple[SyncClient, ServerEngine, Settings],
) -> None:
    client, _, _ = world
    made = client.post(
        "/api/v1/customers/initech/grants",
        content=json.dumps({"amount": "1500", "currency": "JPY"}),
        headers={**JSON, **ADMIN},
    )
    assert made.status_code == 201, made.text
    answer = client.get("/api/v1/customers", headers=ADMIN)
    assert b'"credit":[{"currency":"JPY","remaining":"1500","afterEstimate":"1500"}]' in (
        answer.content
    )
