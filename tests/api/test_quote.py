"""``POST /api/v1/customers/{customerId}/quote`` on a real API process and a real
ClickHouse holding the usage (``tests.api.quote_kit``): the worked example of
docs/api.md priced by hand, validation, scoping, periods, and the latency the docs
quote."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.server import BackgroundApi, demo_tokens, start_background
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import drop_database
from schemas.timeutil import format_ms, to_ms
from tests.api.doubles import ACME, ADMIN
from tests.api.quote_kit import Seeder, current, customer, doc_request, doc_response, seed
from tests.api.quote_kit import write_config as write_quote_config
from tests.conftest import isolated_settings, settings_env

pytestmark = [pytest.mark.integration]

GLOBEX = {"Authorization": f"Bearer {demo_tokens()['globex']}"}
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def quote_api(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundApi]:
    work = tmp_path_factory.mktemp("quote")
    settings = isolated_settings(stack, work, **write_quote_config(work))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    ensure_schema(engine, settings.clickhouse_database)
    seed(Seeder(engine, settings), datetime.now(UTC))
    api = start_background(env=settings_env(settings), log_path=work / "api.log")
    try:
        yield api
    finally:
        api.stop()
        engine.execute(drop_database(settings.clickhouse_database).to_sql())
        engine.close()
        assert "Traceback" not in Path(work / "api.log").read_text(errors="replace")


def quote(
    api: BackgroundApi, customer_id: str, body: Any, headers: dict[str, str] = ADMIN
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{api.url}/api/v1/customers/{customer_id}/quote",
        content=content,
        headers={**JSON, **headers},
        timeout=30,
    )


def problems(answer: httpx.Response, status: int = 400) -> list[tuple[str, str]]:
    """``(path, "message | fix")`` of each problem of a problem-details answer, in order."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return [(p["path"], f"{p['message']} | {p['fix']}") for p in answer.json()["problems"]]


# -- the worked example ----------------------------------------------------------------


def test_the_worked_example_is_what_the_docs_show(quote_api: BackgroundApi) -> None:
    """docs/api.md's request, sent as written, answers its response (the period and the
    time of the read are today's)."""
    path, headers, body = doc_request()
    before = datetime.now(UTC)
    answer = httpx.post(quote_api.url + path, content=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    month = current(customer("acme"), before)
    assert got.pop("period") == {
        "start": format_ms(to_ms(month.start)),
        "end": format_ms(to_ms(month.end)),
    }
    assert format_ms(to_ms(before))[:16] <= got.pop("as_of")[:16]
    expected = doc_response()
    del expected["period"], expected["as_of"]
    assert got == expected


def test_marginal_cost_across_a_tier_boundary_by_hand(quote_api: BackgroundApi) -> None:
    """Usage so far: 4200 calls (2500 + 1700 over acme's two subjects; 7 calls of the
    previous period do not count) and 123000 tokens.  Plan growth: platform 20.00;
    calls graduated 0 up to 1000, 0.002 up to 5000, 0.001 above; tokens 0.00002.

    So far: 20.00 + 3200 × 0.002 = 6.40 + 123000 × 0.00002 = 2.46 → 28.86.
    With 1500 calls and 250 tokens more: 5700 calls = 4000 × 0.002 + 700 × 0.001 = 8.70;
    123250 tokens = 2.465 → 2.47 (half up); 20.00 + 8.70 + 2.47 = 31.17.  Marginal 2.31:
    800 calls fill tier 2 (1.60), 700 land in tier 3 (0.70), and the tokens' line moves
    one cent (0.005 unrounded).  Pricing 1500 calls alone would say 1.00."""
    got = quote(quote_api, "acme", {"usage": {"api_calls": 1500, "llm_tokens": "250"}}).json()
    assert got["usage"] == {"api_calls": "4200", "llm_tokens": "123000"}
    assert (got["total_so_far"], got["total_with_proposed"], got["marginal_cost"]) == (
        "28.86",
        "31.17",
        "2.31",
    )
    calls = next(line for line in got["lines"] if line["meter"] == "api_calls")
    assert [(t["quantity"], t["amount"]) for t in calls["tiers"]] == [
        ("1000", "0"),
        ("4000", "8.000"),
        ("700", "0.700"),
    ]
    assert [line["amount"] for line in got["lines"]] == ["20.00", "8.70", "2.47"]

    # 500 tokens at once: 123500 × 0.00002 = 2.47, from 2.46: one cent, not two
    assert quote(quote_api, "acme", {"usage": {"llm_tokens": 500}}).json()["marginal_cost"] == (
        "0.01"
    )
    # globex has already used 123250 tokens (2.465 → 2.47): 250 more make 2.47 exactly
    nearly = quote(quote_api, "globex", {"usage": {"llm_tokens": 250}}).json()
    assert (nearly["total_so_far"], nearly["marginal_cost"]) == ("22.47", "0.00")
    nothing = quote(quote_api, "acme", {"usage": {}}).json()
    assert nothing["total_so_far"] == nothing["total_with_proposed"] == "28.86"
    assert nothing["marginal_cost"] == "0.00"


def test_quantities_are_read_exactly_never_through_a_float(quote_api: BackgroundApi) -> None:
    body = b'{"usage": {"llm_tokens": 0.1, "api_calls": 0.123456789012345678}}'
    got = quote(quote_api, "acme", body).json()
    assert got["proposed"] == {"api_calls": "0.123456789012345678", "llm_tokens": "0.1"}
    tokens = next(line for line in got["lines"] if line["meter"] == "llm_tokens")
    assert tokens["quantity"] == "123000.1"  # a float would add 0.1000000000000000055…
    assert Decimal(tokens["unrounded_amount"]) == Decimal("123000.1") * Decimal("0.00002")


# -- validation ------------------------------------------------------------------------


def test_bad_quantities_are_400_naming_the_meter_and_the_fix(quote_api: BackgroundApi) -> None:
    """Every problem at once: quantities by rating's usage rules, meter names by the plan."""
    body = (
        b'{"usage": {"api_calls": -5, "llm_tokens": NaN, "storage_gb_hours": 1e400, "api_cals": 3}}'
    )
    assert problems(quote(quote_api, "acme", body)) == [
        (
            "usage.api_calls",
            "Input should be greater than or equal to 0 | use a value of 0 or more",
        ),
        ("usage.llm_tokens", "Input should be a finite number | write a finite number"),
        (
            "usage.storage_gb_hours",
            "a number with 401 digits before the decimal point is more than the 29 an invoice"
            " can hold | use at most 29 digits before the point; check the unit (e.g. bytes"
            " against gigabytes)",
        ),
        (
            "usage.storage_gb_hours",  # a real meter, but plan growth does not price it
            "this price list does not price meter 'storage_gb_hours' | use one of: api_calls,"
            " llm_tokens; or remove it",
        ),
        (
            "usage.api_cals",
            "this price list does not price meter 'api_cals' | did you mean 'api_calls'?"
            " Known: api_calls, llm_tokens; or remove it",
        ),
    ]


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (b'{"usage": {"api_calls": "1e400"}}', "usage.api_calls", "401 digits before"),
        (b'{"usage": {"api_calls": 1e-19}}', "usage.api_calls", "19 digits after"),
        (b'{"usage": {"api_calls": "Infinity"}}', "usage.api_calls", "finite"),
        (b'{"usage": {"api_calls": -Infinity}}', "usage.api_calls", "finite"),
        (b'{"usage": {"api_calls": true}}', "usage.api_calls", "a boolean is not a number"),
        (b'{"usage": {"api_calls": "lots"}}', "usage.api_calls", "valid decimal"),
        (b'{"usage": {"api_calls": 1, "api_calls": 9}}', "usage.api_calls", "more than once"),
        (b'{"usage": [1]}', "usage", "expected a mapping"),
        (b'{"usage": {}, "extra": 1}', "extra", "unknown field"),
        (b'{"subscription": "main"}', "usage", "required field is missing"),
        (b'{"usage": {}, "subscription": ""}', "subscription", "non-empty string"),
        (b'{"usage": {}, "subscription": "gold"}', "subscription", "no subscription 'gold'"),
        (b"[]", "", "expected a JSON object"),
        (b'{"usage": ', "", "not valid JSON"),
    ],
)
def test_invalid_bodies_are_400_with_the_field(
    quote_api: BackgroundApi, body: bytes, path: str, message: str
) -> None:
    found = problems(quote(quote_api, "acme", body))
    assert any(where == path and message in text for where, text in found), found


def test_media_type_and_size(quote_api: BackgroundApi) -> None:
    answer = quote(quote_api, "acme", {"usage": {}}, {**ADMIN, "content-type": "text/plain"})
    assert answer.status_code == 415
    huge = b'{"usage": {"api_calls": "' + b"1" * 2_000_000 + b'"}}'
    assert quote(quote_api, "acme", huge).status_code == 413


# -- scoping ---------------------------------------------------------------------------


def test_a_customer_token_quotes_only_its_own_customer(quote_api: BackgroundApi) -> None:
    body = {"usage": {"api_calls": 1}}
    assert quote(quote_api, "acme", body, ACME).status_code == 200
    assert quote(quote_api, "globex", body, GLOBEX).status_code == 200
    for other in ("globex", "initech", "no-such-customer"):  # 403 whether it exists or not
        answer = quote(quote_api, other, body, ACME)
        assert answer.status_code == 403, answer.text
        assert answer.json()["title"] == "Forbidden"
    assert quote(quote_api, "no-such-customer", body, ADMIN).status_code == 404
    assert quote(quote_api, "acme", body, {}).status_code == 401
    unknown = quote(quote_api, "acme", body, {"Authorization": "Bearer not-a-known-token-at-all"})
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"].startswith("Bearer")


# -- periods and what cannot be priced ---------------------------------------------------


def test_the_period_is_the_subscription_period_that_holds_now(quote_api: BackgroundApi) -> None:
    """initech moved to subscription main (billed from the 15th, Berlin time) in June:
    the quote prices main's current period, whose usage starts at its local midnight."""
    now = datetime.now(UTC)
    got = quote(quote_api, "initech", {"usage": {"api_calls": 1}}).json()
    period = current(customer("initech"), now)
    assert got["subscription"] == "main"
    assert got["period"] == {
        "start": format_ms(to_ms(period.start)),
        "end": format_ms(to_ms(period.end)),
    }
    assert period.start.astimezone(period.start.tzinfo).hour in (22, 23)  # Berlin midnight
    assert got["usage"]["api_calls"] == "12"  # the 5 calls half an hour earlier are not in it


def test_a_customer_with_no_current_period_is_409(quote_api: BackgroundApi) -> None:
    for customer_id, body in [
        ("oldco", {"usage": {"api_calls": 1}}),
        ("futureco", {"usage": {"api_calls": 1}}),
        ("initech", {"usage": {"api_calls": 1}, "subscription": "legacy"}),
    ]:
        answer = quote(quote_api, customer_id, body)
        assert answer.status_code == 409, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        doc = answer.json()
        assert doc["title"] == "No current period"
        assert "runs from" in doc["detail"]


def test_a_customer_the_card_cannot_price_is_422(quote_api: BackgroundApi) -> None:
    assert problems(quote(quote_api, "eurco", {"usage": {"api_calls": 1}}), 422) == [
        ("customers[6].currency", "plan 'growth' has no prices in 'EUR' | use one of: USD")
    ]
    assert problems(quote(quote_api, "hydra", {"usage": {"peak_seats": 1}}), 422) == [
        (
            "customers[7].subjects",
            "meter 'peak_seats' (MAX) cannot be summed across subjects"
            " | bill this customer on one subject",
        )
    ]


# -- latency ---------------------------------------------------------------------------


def test_latency_over_a_few_hundred_quotes(quote_api: BackgroundApi) -> None:
    """Wall-clock per request, one client with a kept-alive connection, 300 quotes after
    20 warm-up ones; the figures docs/api.md gives come from this test (run with ``-s``).
    The bound here only catches a pathology, not a regression of a few milliseconds."""
    body = json.dumps({"usage": {"api_calls": 1500, "llm_tokens": "250"}}).encode()
    url = f"{quote_api.url}/api/v1/customers/acme/quote"
    took: list[float] = []
    with httpx.Client(headers={**JSON, **ACME}, timeout=30) as http:
        for number in range(320):
            started = time.perf_counter()
            answer = http.post(url, content=body)
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200, answer.text
            if number >= 20:
                took.append(elapsed)
    cuts = statistics.quantiles(took, n=100)
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    print(f"\nquote latency over {len(took)} calls: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert p99 < 2000
