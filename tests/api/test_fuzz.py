"""Schema-driven fuzzing of the served OpenAPI document (schemathesis + hypothesis).

Every operation is called with cases that fit the schema (positive) and cases that
break it (negative: wrong types, missing fields, bad formats), bounded to
``MAX_EXAMPLES`` per operation and mode (``METERLINE_FUZZ_EXAMPLES``), once with an API
key and once with a customer token.  It runs against a real API process on the real
Kafka and ClickHouse (no doubles; accepted events go to a topic of their own) and fails
on any 5xx, on a traceback in the server log, or on an answer that does not match the
document (status code, content type, body schema)."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.server import BackgroundApi
from tests.api.doubles import ACME, ADMIN

pytestmark = [pytest.mark.integration]

MAX_EXAMPLES = int(os.environ.get("METERLINE_FUZZ_EXAMPLES", "50"))
FRAMING = {"content-length", "transfer-encoding"}
"""Headers that frame the HTTP message itself: a generated value there is malformed HTTP."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(schema: Any, base_url: str, headers: dict[str, str], tally: Counter[str]) -> None:
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                # a generated header that frames the message (a Content-Length of "g=`O")
                # is refused by the HTTP server before the application, as text/plain:
                # such a case tests h11, not the API's document
                assume(not FRAMING & {name.lower() for name in case.headers or {}})
                response = case.call(base_url=base_url, headers=headers)
                tally[f"{response.status_code // 100}xx"] += 1
                tally["cases"] += 1
                assert response.status_code < 500, (case.as_curl_command(), response.text)
                case.validate_response(response, checks=CHECKS)

            started = time.monotonic()
            check()
            took = time.monotonic() - started
            print(f"  {operation.label} {mode.value}: {took:.1f}s")
            tally["runs"] += 1


def test_no_5xx_and_answers_match_the_document(fuzz_server: BackgroundApi) -> None:
    server = fuzz_server
    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json")
    tally: Counter[str] = Counter()
    try:
        fuzz(schema, server.url, ADMIN, tally)
        fuzz(schema, server.url, ACME, tally)
    finally:
        print(f"fuzz: {dict(sorted(tally.items()))}")
    if server.log_path is not None:
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-4000:]
    assert tally["5xx"] == 0
    assert tally["cases"] > 200
