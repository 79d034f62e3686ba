from __future__ import annotations

import pytest

from api.auth import (
    Principal,
    authenticate,
    load_auth,
    parse_auth,
    require_api_key,
    require_customer,
    require_namespace,
)
from api.problems import HttpProblem
from api.settings import DEMO_AUTH_FILE
from invoicing.customers import load_customers
from tests.conftest import ROOT

CONFIG = parse_auth(
    {
        "api_keys": [{"name": "ops", "key": "k" * 20, "namespace": "default"}],
        "customer_tokens": [{"token": "c" * 20, "namespace": "default", "customer": "acme"}],
    }
)


def test_api_key_and_customer_token() -> None:
    assert authenticate(CONFIG, "Bearer " + "k" * 20) == Principal("ops", "default")
    assert authenticate(CONFIG, "bearer  " + "c" * 20) == Principal(
        "customer:acme", "default", "acme"
    )


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer " + "x" * 20])
def test_401_with_challenge(header: str | None) -> None:
    with pytest.raises(HttpProblem) as err:
        authenticate(CONFIG, header)
    assert err.value.status == 401
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_403_decisions() -> None:
    customer = Principal("customer:acme", "default", "acme")
    with pytest.raises(HttpProblem, match="403"):
        require_namespace(Principal("ops", "other"), "default")
    with pytest.raises(HttpProblem, match="403"):
        require_api_key(customer, "ingest events")
    with pytest.raises(HttpProblem, match="403"):
        require_customer(customer, "globex")
    require_customer(customer, "acme")
    require_customer(Principal("ops", "default"), "globex")
    require_api_key(Principal("ops", "default"), "ingest events")


def test_config_is_validated() -> None:
    from schemas.errors import InvalidInput

    customers = load_customers(ROOT / "deploy/demo/customers.yaml")
    with pytest.raises(InvalidInput, match="unknown customer"):
        parse_auth(
            {"customer_tokens": [{"token": "t" * 20, "namespace": "default", "customer": "x"}]},
            customers,
        )
    with pytest.raises(InvalidInput):
        parse_auth({"api_keys": [{"name": "a", "key": "short", "namespace": "default"}]})
    with pytest.raises(InvalidInput, match="twice"):
        parse_auth(
            {
                "api_keys": [
                    {"name": "a", "key": "k" * 20, "namespace": "default"},
                    {"name": "b", "key": "k" * 20, "namespace": "default"},
                ]
            }
        )


def test_demo_file_loads() -> None:
    config = load_auth(DEMO_AUTH_FILE, load_customers(ROOT / "deploy/demo/customers.yaml"))
    assert config.api_keys
    assert {t.customer for t in config.customer_tokens} == {"acme", "globex"}
