"""Features and the entitlement decision (pure): cases by hand, and the features file
read with every problem at once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from invoicing.credit_grants import Grant
from invoicing.credits import CreditBook, CreditHeld, credit_held
from invoicing.entitlements import (
    Decision,
    FeatureKind,
    Reason,
    decide,
    load_features,
    parse_features,
)
from invoicing.grants import parse_grant
from rating import load_rate_card
from schemas.errors import InvalidInput
from schemas.metering.definitions import load_meters
from tests.conftest import ROOT

FEATURES = parse_features(
    {
        "features": [
            {"key": "calls", "kind": "metered", "meter": "api_calls",
             "plans": {"starter": 100, "pro": None, "free": 0}},
            {"key": "sso", "kind": "boolean", "plans": {"pro": True, "starter": False}},
        ]
    },
    {"api_calls"},
    {"starter", "pro", "free", "team"},
)  # fmt: skip
CALLS, SSO = FEATURES.by_key["calls"], FEATURES.by_key["sso"]


def test_a_limit_is_reached_exactly_at_the_limit() -> None:
    assert decide(CALLS, "starter", D("99.999")) == Decision(True, None, D(100), D("0.001"))
    assert decide(CALLS, "starter", D(100)) == Decision(False, Reason.LIMIT_REACHED, D(100), D(0))
    assert decide(CALLS, "starter", D(130)).remaining == D(0)  # never below 0
    assert decide(CALLS, "starter", None) == Decision(True, None, D(100), D(100))  # no windows
    assert decide(CALLS, "free", D(0)).reason is Reason.LIMIT_REACHED  # a limit of 0


def test_a_quantity_asked_must_fit_whole() -> None:
    assert decide(CALLS, "starter", D(60), D(40)).has_access  # 60 + 40 = 100: fits
    assert decide(CALLS, "starter", D(60), D("40.000000001")) == Decision(
        False, Reason.LIMIT_REACHED, D(100), D(40)
    )
    assert not decide(CALLS, "starter", D(100), D("0.1")).has_access


def test_unlimited_boolean_no_plan_access_and_no_period() -> None:
    unlimited = decide(CALLS, "pro", D(10) ** 20, D(10) ** 20)
    assert (unlimited.has_access, unlimited.unlimited, unlimited.limit) == (True, True, None)
    assert decide(SSO, "pro") == Decision(True, None)
    assert decide(SSO, "starter") == Decision(False, Reason.NO_PLAN_ACCESS)  # false: off
    assert decide(SSO, "team") == Decision(False, Reason.NO_PLAN_ACCESS)  # not listed
    assert decide(CALLS, "team", D(0)) == Decision(False, Reason.NO_PLAN_ACCESS)
    assert decide(CALLS, None) == Decision(False, Reason.NO_CURRENT_PERIOD)
    assert not decide(SSO, None).unlimited


def test_every_problem_of_the_file_at_once_with_path_and_fix() -> None:
    with pytest.raises(InvalidInput) as shape:
        parse_features(
            {
                "features": [
                    {"key": "Calls", "kind": "metered", "meter": "api_calls"},
                    {"key": "x", "kind": "metered", "plans": {"pro": True, "starter": -1}},
                    {"key": "y", "kind": "boolean", "plans": {"pro": "yes"}},
                    {"key": "z", "kind": "quota"},
                    {"key": "w", "kind": "boolean", "meter": "api_calls"},
                ]
            }
        )
    found = {p.path: p.fix for p in shape.value.problems}
    assert set(found) == {
        "features[0].key",
        "features[1].meter",
        "features[1].plans.pro",
        "features[1].plans.starter",
        "features[2].plans.pro",
        "features[3].kind",
        "features[4].meter",
    }
    assert found["features[1].plans.pro"] == (
        "write the usage limit per billing period (a number), or null for unlimited"
    )
    assert found["features[2].plans.pro"] == "write true (the plan has the feature) or false"
    assert found["features[3].kind"].startswith("use kind: metered")
    assert found["features[1].plans.starter"] == "use 0 or more"

    with pytest.raises(InvalidInput) as meaning:
        parse_features(
            {
                "features": [
                    {"key": "a", "kind": "metered", "meter": "api_call", "plans": {"por": 1}},
                    {"key": "a", "kind": "boolean"},
                ]
            },
            {"api_calls"},
            {"pro"},
        )
    assert [(p.path, p.fix) for p in meaning.value.problems] == [
        ("features[0].meter", "did you mean 'api_calls'? Known: api_calls"),
        ("features[0].plans.por", "did you mean 'pro'? Known: pro"),
        ("features[1].key", "give each feature its own key"),
    ]


def test_the_demo_file_loads_against_the_demo_meters_and_card() -> None:
    meters = load_meters(ROOT / "deploy/demo/meters.yaml")
    card = load_rate_card(ROOT / "deploy/demo/rate-card.yaml", known_meters=meters.slugs())
    features = load_features(ROOT / "deploy/demo/features.yaml", meters.slugs(), card.plans)
    assert features.by_key["api-access"].entitled == {"starter": D(100000), "pro": None}
    assert features.by_key["sso"].kind is FeatureKind.BOOLEAN
    assert set(features.by_key["sso"].entitled) == {"pro", "business"}
    assert features.meters() == {"api_calls", "llm_tokens"}
    assert parse_features(None).features == ()


def test_credit_held_and_the_look_ahead_are_one_rule() -> None:
    """The rule the credit thresholds, the estimates and the entitlement balance share:
    grants in effect in the currency, then less the period's spend."""
    now = datetime(2026, 11, 20, tzinfo=UTC)

    def grant(id_: str, **terms: object) -> Grant:
        body = {"id": id_, "currency": "USD", "amount": "50.00", **terms}
        return parse_grant(body, customer_id="acme", billed_currencies={"USD", "EUR"},
                           grant_id=id_, now=datetime(2026, 10, 1, tzinfo=UTC))  # fmt: skip

    book = CreditBook(
        (
            grant("a"),
            grant("eur", currency="EUR"),
            grant("gone", expires_at="2026-11-01T00:00:00Z"),
            grant("later", effective_at="2026-12-01T00:00:00Z"),
        )
    )
    held = credit_held(book, "acme", "USD", now)
    assert held == CreditHeld(D("50.00"), D("50.00"))
    assert held.after(D("12.34")) == D("37.66")
    assert held.after(D("60.00")) == D("-10.00")  # the rest will be paid
    assert held.after(None) == D("50.00")
    assert credit_held(book, "acme", "JPY", now) is None
    assert credit_held(book, "globex", "USD", now) is None
