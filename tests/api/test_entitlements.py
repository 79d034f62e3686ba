"""The entitlement check through the API, in-process over a real ClickHouse server:
usage from the windows (one customer's subjects added up, the period only), the limit
and what remains, the balance from the credit ledger less the period's spend, who may
ask, and bad input named with its field and fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schemas.settings import Settings
from tests.api.doubles import ACME, ADMIN, TOKENS, SyncClient, served
from tests.api.quote_kit import Seeder
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration]

GLOBEX = {"Authorization": f"Bearer {TOKENS['globex']}"}
BASE = "/api/v1/customers"
FEATURES = {
    "features": [
        {"key": "api-access", "kind": "metered", "meter": "api_calls",
         "plans": {"starter": 100, "pro": None}},
        {"key": "llm", "kind": "metered", "meter": "llm_tokens", "plans": {"pro": "1000.5"}},
        {"key": "sso", "kind": "boolean", "plans": {"pro": True, "starter": False}},
    ]
}  # fmt: skip
OLDCO = {"id": "oldco", "plan": "pro", "currency": "USD", "start": "2025-01-01",
         "end": "2025-06-01"}  # fmt: skip


@dataclass
class World:
    client: SyncClient
    seeder: Seeder
    month_start: datetime

    def check(self, path: str, headers: dict[str, str] = ADMIN) -> httpx.Response:
        return self.client.get(f"{BASE}/{path}", headers=headers)

    def answer(self, path: str, headers: dict[str, str] = ADMIN) -> dict[str, Any]:
        got = self.check(path, headers)
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        return body


@pytest.fixture
def world(stack: Settings, tmp_path: Path) -> Iterator[World]:
    customers = yaml.safe_load((ROOT / "deploy/demo/customers.yaml").read_text())
    customers["customers"].append(OLDCO)
    (tmp_path / "customers.yaml").write_text(yaml.safe_dump(customers))
    (tmp_path / "features.yaml").write_text(yaml.safe_dump(FEATURES))
    files = {
        "customers_file": str(tmp_path / "customers.yaml"),
        "features_file": str(tmp_path / "features.yaml"),
    }
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with served(stack, "mle_", **files) as (client, engine, settings):
        yield World(client, Seeder(engine, settings), month_start)


def early(world: World) -> datetime:
    """A minute inside the current month that is already past."""
    return min(world.month_start + timedelta(minutes=1), datetime.now(UTC))


def grant(world: World, customer: str, amount: str) -> None:
    body = {"amount": amount, "currency": "USD", "effective_at": "2025-01-01T00:00:00Z"}
    made = world.client.post(
        f"{BASE}/{customer}/grants",
        content=json.dumps(body),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert made.status_code == 201, made.text


def test_usage_limit_remaining_and_balance_by_hand(world: World) -> None:
    """acme (starter, USD): 60 calls this month (7 last month do not count), a limit of
    100, 100.00 of credit; the month's spend so far is 60 x 0.002 = 0.12 and
    1000 tokens x 0.00002 = 0.02, so the balance is 100.00 - 0.14 = 99.86."""
    world.seeder.add("acme", "api_calls", early(world), ["1"] * 60)
    world.seeder.add("acme", "api_calls", world.month_start - timedelta(hours=1), ["1"] * 7)
    world.seeder.add("acme", "llm_tokens", early(world), ["999.5", "0.5"])
    grant(world, "acme", "100.00")

    body = world.answer("acme/entitlements/api-access", headers=ACME)
    assert {k: body[k] for k in ("feature", "kind", "customer", "subscription", "plan")} == {
        "feature": "api-access",
        "kind": "metered",
        "customer": "acme",
        "subscription": "main",
        "plan": "starter",
    }
    assert (body["has_access"], body["reason"], body["detail"]) == (True, None, None)
    assert (body["meter"], body["usage"], body["limit"], body["remaining"]) == (
        "api_calls",
        "60",
        "100",
        "40",
    )
    assert body["unlimited"] is False
    assert body["period"]["start"] == world.month_start.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert body["as_of"].endswith("Z")
    assert len(body["as_of"]) == 24
    assert body["balance"] == {
        "currency": "USD",
        "credit_granted": "100.00",
        "credit_remaining": "100.00",
        "spend_so_far": "0.14",
        "remaining": "99.86",
    }

    fits = world.answer("acme/entitlements/api-access?quantity=40")
    assert (fits["has_access"], fits["quantity"]) == (True, "40")
    over = world.answer("acme/entitlements/api-access?quantity=40.5")
    assert (over["has_access"], over["reason"], over["remaining"]) == (
        False,
        "limit_reached",
        "40",
    )
    assert over["detail"] == "60 of the 100 this period allows are used (asked for 40.5 more)"

    world.seeder.add("acme", "api_calls", early(world), ["1"] * 40)  # exactly at the limit
    at_limit = world.answer("acme/entitlements/api-access")
    assert (at_limit["has_access"], at_limit["reason"], at_limit["usage"]) == (
        False,
        "limit_reached",
        "100",
    )
    assert at_limit["remaining"] == "0"
    assert at_limit["balance"]["remaining"] == "99.78"  # 100 calls: 0.20 + 0.02


def test_several_subjects_add_up_exactly_to_the_limit(world: World) -> None:
    """umbrella (pro) bills two subjects: 600.25 + 400.25 tokens reach the limit of
    1000.5 exactly; no credit, so no balance."""
    world.seeder.add("umbrella-eu", "llm_tokens", early(world), ["600.25"])
    world.seeder.add("umbrella-us", "llm_tokens", early(world), ["400.25"])
    world.seeder.add("globex", "llm_tokens", early(world), ["5"])  # someone else's
    body = world.answer("umbrella/entitlements/llm")
    assert (body["usage"], body["limit"], body["remaining"], body["has_access"]) == (
        "1000.5",
        "1000.5",
        "0",
        False,
    )
    assert (body["subscription"], body["balance"]) == ("enterprise", None)


def test_unlimited_boolean_no_plan_access_and_no_period(world: World) -> None:
    world.seeder.add("globex", "api_calls", early(world), ["1"] * 3)
    unlimited = world.answer("globex/entitlements/api-access?quantity=1000000", headers=GLOBEX)
    assert (unlimited["has_access"], unlimited["unlimited"], unlimited["usage"]) == (
        True,
        True,
        "3",
    )
    assert (unlimited["limit"], unlimited["remaining"]) == (None, None)

    sso = world.answer("globex/entitlements/sso")
    assert (sso["has_access"], sso["kind"], sso["usage"], sso["meter"]) == (
        True,
        "boolean",
        None,
        None,
    )
    off = world.answer("acme/entitlements/sso")
    assert (off["has_access"], off["reason"]) == (False, "no_plan_access")
    assert off["detail"] == "plan 'starter' does not include feature 'sso'"
    absent = world.answer("acme/entitlements/llm")  # starter is not listed: no access
    assert (absent["has_access"], absent["reason"]) == (False, "no_plan_access")

    ended = world.answer("oldco/entitlements/api-access")
    assert (ended["has_access"], ended["reason"], ended["subscription"], ended["period"]) == (
        False,
        "no_current_period",
        None,
        None,
    )


def test_customer_tokens_see_only_their_own(world: World) -> None:
    assert world.check("acme/entitlements/sso", headers=GLOBEX).status_code == 403
    unknown = world.check("nobody/entitlements/sso", headers=ACME)
    assert unknown.status_code == 403  # before the lookup: a token cannot probe customers
    assert world.check("nobody/entitlements/sso").status_code == 404
    assert world.client.get(f"{BASE}/acme/entitlements/sso").status_code == 401


def test_unknown_feature_and_bad_quantity_name_the_field_and_fix(world: World) -> None:
    missing = world.check("acme/entitlements/api-acess")
    assert missing.status_code == 404
    assert "did you mean 'api-access'?" in missing.json()["detail"]
    assert "Known: api-access, llm, sso" in missing.json()["detail"]
    for bad in ("abc", "0", "-1", "NaN", "Infinity", ""):
        got = world.check(f"acme/entitlements/api-access?quantity={bad}")
        assert got.status_code == 400, bad
        [problem] = got.json()["problems"]
        assert problem["path"] == "quantity"
        assert "above 0" in problem["fix"]
    huge = world.check("acme/entitlements/api-access?quantity=1" + "0" * 30)
    assert [p["path"] for p in huge.json()["problems"]] == ["quantity"]
    boolean = world.check("globex/entitlements/sso?quantity=1")
    assert boolean.status_code == 400
    assert boolean.json()["problems"] == [
        {
            "path": "quantity",
            "message": "feature 'sso' is on or off per plan: it has no quantity",
            "fix": "leave quantity out",
        }
    ]


def test_the_answer_is_exact_text(world: World) -> None:
    world.seeder.add("acme", "api_calls", early(world), ["1"] * 3)
    raw = world.check("acme/entitlements/api-access?quantity=0.000000001").content
    assert b'"usage":"3"' in raw
    assert b'"quantity":"0.000000001"' in raw
    assert Decimal(json.loads(raw)["remaining"]) == Decimal(97)


def test_the_credit_holder_hint_changes_no_answer(world: World) -> None:
    """The hint (``api.credit_holders``) only decides whether a check reads the plan's
    other meters at once or after the ledger: a hint that misses acme's credit (granted
    straight into the ledger, as another replica would) and one that wrongly names
    globex give the answers a fresh hint gives, and each check corrects it."""
    from invoicing.credit_grants import Grant
    from invoicing.credit_ledger import record_grant

    world.seeder.add("acme", "api_calls", early(world), ["1"] * 60)
    world.seeder.add("acme", "llm_tokens", early(world), ["1000"])
    world.seeder.add("globex", "api_calls", early(world), ["1"] * 3)
    at = datetime(2025, 1, 1, tzinfo=UTC)
    credit = Grant("g-acme", "acme", "USD", Decimal("100.00"), 10, at, None, None, "Prepaid", at)
    engine, settings = world.seeder.engine, world.seeder.settings
    record_grant(engine, settings.clickhouse_database, settings.namespace, credit)
    holders = world.client.app.state.credit_holders
    holders.refresh_s = 3600.0

    def pinned(names: list[str], path: str) -> dict[str, Any]:
        holders.refreshed(names, 0.0)
        body = world.answer(path)
        return {k: v for k, v in body.items() if k != "as_of"}

    missed = pinned([], "acme/entitlements/api-access")
    assert missed["balance"]["spend_so_far"] == "0.14"  # 60 x 0.002 + 1000 x 0.00002
    assert holders.likely("acme")
    assert pinned(["acme"], "acme/entitlements/api-access") == missed
    wrong = pinned(["globex"], "globex/entitlements/api-access")
    assert (wrong["usage"], wrong["balance"]) == ("3", None)
    assert not holders.likely("globex")
    assert pinned([], "globex/entitlements/api-access") == wrong
