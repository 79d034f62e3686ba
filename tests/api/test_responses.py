from __future__ import annotations

from decimal import Decimal

import pytest

from api.problems import HttpProblem, problem_body
from api.responses import RawJson, dumps, preferred
from schemas.errors import Problem


def test_decimals_are_json_numbers_with_exact_digits() -> None:
    doc = {"value": Decimal("12345678901234567890.123456789"), "zero": Decimal("0E-9")}
    assert dumps(doc) == b'{"value":12345678901234567890.123456789,"zero":0}'


def test_raw_json_is_embedded() -> None:
    assert dumps([RawJson('{"total":"1.50"}')]) == b'[{"total":"1.50"}]'


def test_non_finite_decimal_is_refused() -> None:
    with pytest.raises(TypeError):
        dumps({"v": Decimal("NaN")})


def test_problem_body() -> None:
    body = problem_body(
        HttpProblem(400, "Invalid", "2 problems", (Problem("[1].time", "bad", "fix it"),))
    )
    assert body == {
        "type": "https://meterline.dev/problems/invalid-request",
        "title": "Invalid",
        "status": 400,
        "detail": "2 problems",
        "problems": [{"path": "[1].time", "message": "bad", "fix": "fix it"}],
    }


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("application/json;q=0.1, text/csv;q=0.9", "text/csv"),
        ("image/png", "application/json"),
        ("text/csv;q=0", "application/json"),
        ("text/csv;q=abc", "application/json"),
    ],
)
def test_preferred(accept: str | None, expected: str) -> None:
    assert preferred(accept, ("application/json", "text/csv")) == expected
