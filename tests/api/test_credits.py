"""Prepaid credit through the API, in-process over a real ClickHouse server: grant, a
retried grant, void, list and balance; who may do what; bad input named with its fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from schemas.settings import Settings
from tests.api.doubles import ACME, ADMIN, TOKENS, SyncClient, served
from tests.invoicing.test_credits import at

pytestmark = [pytest.mark.integration]

GLOBEX = {"Authorization": f"Bearer {TOKENS['globex']}"}
JSON = {"content-type": "application/json"}
BASE = "/api/v1/customers"


@pytest.fixture
def client(stack: Settings) -> Iterator[SyncClient]:
    with served(stack, "mla_") as (client, _, _):
        yield client


def post(
    client: SyncClient, path: str, body: Any, headers: dict[str, str] = ADMIN
) -> httpx.Response:
    return client.post(f"{BASE}/{path}", content=json.dumps(body), headers={**JSON, **headers})


def test_grant_list_void_and_balance(client: SyncClient) -> None:
    body = {
        "id": "welcome",
        "name": "Welcome credit",
        "amount": "25.50",
        "currency": "USD",
        "priority": 1,
        "effective_at": "2026-10-01T00:00:00Z",
        "expires_at": "2030-01-01T00:00:00Z",
    }
    made = post(client, "acme/grants", body)
    assert made.status_code == 201, made.text
    granted = made.json()
    assert (granted["id"], granted["amount"], granted["status"], granted["remaining"]) == (
        "welcome",
        25.5,
        "active",
        25.5,
    )
    assert b'"amount":25.5,' in made.content  # exact decimal text, never a float
    again = post(client, "acme/grants", body)  # a retried request grants once
    assert (again.status_code, again.json()["id"]) == (200, "welcome")
    other = post(client, "acme/grants", {**body, "amount": "30.00"})
    assert other.status_code == 409
    assert "exists with other terms" in other.json()["detail"]
    assert post(client, "acme/grants", {"amount": 10, "currency": "USD"}).status_code == 201

    listed = client.get(f"{BASE}/acme/grants", headers=ACME)  # the customer reads its own
    assert listed.status_code == 200
    assert sorted(g["amount"] for g in listed.json()) == [10, 25.5]
    balance = client.get(f"{BASE}/acme/balance", headers=ACME).json()
    assert [(b["currency"], b["remaining"]) for b in balance["balances"]] == [("USD", 35.5)]
    before = client.get(f"{BASE}/acme/balance?at=2026-09-01T00:00:00Z", headers=ADMIN).json()
    assert before["balances"][0]["grants"][0]["status"] == "scheduled"

    voided = post(client, "acme/grants/welcome/void", {"reason": "refunded"})
    assert voided.status_code == 200, voided.text
    assert (voided.json()["status"], voided.json()["voided"]) == ("voided", 25.5)
    assert post(client, "acme/grants/welcome/void", {"reason": "again"}).status_code == 409
    assert post(client, "acme/grants/nope/void", {"reason": "x"}).status_code == 404
    balance = client.get(f"{BASE}/acme/balance", headers=ACME).json()
    assert balance["balances"][0]["remaining"] == 10
    assert Decimal(str(balance["balances"][0]["remaining"])) == Decimal(10)
    assert at(balance["at"].replace(".000Z", "Z")).tzinfo is not None


def test_customer_tokens_only_read_their_own_and_never_write(client: SyncClient) -> None:
    denied = post(client, "acme/grants", {"amount": 1, "currency": "USD"}, headers=ACME)
    assert denied.status_code == 403
    assert "customer token cannot grant credit" in denied.json()["detail"]
    assert client.get(f"{BASE}/acme/grants", headers=GLOBEX).status_code == 403
    assert client.get(f"{BASE}/acme/balance", headers=GLOBEX).status_code == 403
    assert post(client, "acme/grants/x/void", {"reason": "x"}, headers=ACME).status_code == 403
    assert client.get(f"{BASE}/nobody/grants", headers=ADMIN).status_code == 404
    assert client.get(f"{BASE}/acme/grants").status_code == 401


def test_bad_grants_are_refused_with_the_field_and_the_fix(client: SyncClient) -> None:
    refused = post(client, "acme/grants", {"amount": "-1", "currency": "EUR", "x": 1})
    assert refused.status_code == 400
    found = {p["path"]: p for p in refused.json()["problems"]}
    assert set(found) == {"x", "currency", "amount"}
    assert found["currency"]["fix"] == "grant in USD, or add a EUR subscription first"
    yen = post(client, "initech/grants", {"amount": "100.5", "currency": "JPY"})
    assert [(p["path"], p["fix"]) for p in yen.json()["problems"]] == [
        ("amount", "give a whole amount of JPY's minor unit, e.g. 100")
    ]
    raw = client.post(f"{BASE}/acme/grants", content=b"{", headers={**JSON, **ADMIN})
    assert raw.status_code == 400
    text = client.post(f"{BASE}/acme/grants", content=b"{}", headers=ADMIN)
    assert text.status_code == 415
    no_reason = post(client, "acme/grants/x/void", {})
    assert [p["path"] for p in no_reason.json()["problems"]] == ["reason"]
    bad_at = client.get(f"{BASE}/acme/balance?at=yesterday", headers=ADMIN)
    assert [p["path"] for p in bad_at.json()["problems"]] == ["at"]


def test_an_idempotency_key_makes_a_retried_grant_without_id_grant_once(
    client: SyncClient,
) -> None:
    body = {"amount": "12.50", "currency": "USD"}
    keyed = {**ADMIN, "Idempotency-Key": "order-8841"}
    made = post(client, "acme/grants", body, keyed)
    assert made.status_code == 201, made.text
    grant_id = made.json()["id"]
    assert grant_id.startswith("gr_")
    again = post(client, "acme/grants", body, keyed)  # the retry of a lost answer
    assert (again.status_code, again.json()["id"]) == (200, grant_id)
    other = post(client, "acme/grants", {**body, "amount": "13.00"}, keyed)
    assert other.status_code == 409
    elsewhere = post(client, "globex/grants", body, keyed)  # the key is per customer
    assert elsewhere.status_code == 201
    assert elsewhere.json()["id"] != grant_id
    fresh = post(client, "acme/grants", body)  # no key, no id: a new grant each time
    assert fresh.status_code == 201
    listed = client.get(f"{BASE}/acme/grants", headers=ADMIN).json()
    assert sorted(g["amount"] for g in listed) == [12.5, 12.5]
    balance = client.get(f"{BASE}/acme/balance", headers=ADMIN).json()
    assert balance["balances"][0]["remaining"] == 25

    for bad in (b"", b"has space", b"x" * 256, "caf\u00e9".encode()):
        refused = client.post(
            f"{BASE}/acme/grants",
            content=json.dumps(body),
            headers={**JSON, **ADMIN, "Idempotency-Key": bad},
        )
        assert refused.status_code == 400, bad
        [problem] = refused.json()["problems"]
        assert problem["path"] == "Idempotency-Key"
        assert "same one on a retry" in problem["fix"]
