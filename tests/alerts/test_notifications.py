"""The notification model, the endpoints file and the retry decisions (pure)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from alerts.delivery import RetrySchedule, Verdict, verdict
from alerts.endpoints import load_endpoints, parse_endpoints, subscribed
from alerts.notifications import Notification, NotificationType
from schemas.errors import InvalidInput
from tests.conftest import ROOT

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
AT_MS = 1_793_707_200_123  # 2026-11-03T12:00:00.123Z


def test_the_body_is_compact_json_with_a_millisecond_utc_time_and_decimal_strings() -> None:
    note = Notification(
        "ntf_abc",
        NotificationType.THRESHOLD_REACHED,
        AT_MS,
        {"customer": "acme", "spend": Decimal("12.50"), "at": Decimal("1E+1"), "n": 3},
    )
    assert note.body() == (
        b'{"id":"ntf_abc","type":"alert.threshold_reached",'
        b'"timestamp":"2026-11-03T12:00:00.123Z",'
        b'"data":{"customer":"acme","spend":"12.50","at":"10","n":3}}'
    )
    assert orjson.loads(note.body())["data"]["spend"] == "12.50"


def test_every_problem_of_a_notification_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        Notification(
            "ntf one",
            "alert.whatever",  # type: ignore[arg-type]
            -1,
            {"amount": 1.5, "lines": [{"x": float("nan")}, {"y": object()}]},
        )
    paths = [p.path for p in caught.value.problems]
    assert paths == ["id", "type", "at_ms", "data.amount", "data.lines[0].x", "data.lines[1].y"]
    assert all(p.fix for p in caught.value.problems)
    assert "Decimal" in caught.value.problems[3].fix


def test_endpoints_file_every_problem_with_path_and_fix() -> None:
    document = {
        "endpoints": [
            {"id": "ok", "url": "https://hooks.example.com/x", "secret": SECRET},
            {"id": "Bad Id", "url": "ftp://x", "secret": "whsec_abc", "types": ["nope"]},
            {"id": "ok", "url": "http://127.0.0.1:9/", "secret": "plain", "extra": 1},
        ]
    }
    with pytest.raises(InvalidInput) as caught:
        parse_endpoints(document)
    found = {p.path: p for p in caught.value.problems}
    assert set(found) >= {
        "endpoints.1.id",
        "endpoints.1.url",
        "endpoints.1.types",
        "endpoints.2.extra",
    }
    assert all(p.fix for p in caught.value.problems), caught.value


def test_endpoints_duplicate_ids_and_bad_secrets_are_named() -> None:
    document = {
        "endpoints": [
            {"id": "a", "url": "https://h.example/x", "secret": SECRET},
            {"id": "a", "url": "https://h.example/y", "secret": "whsec_c2hvcnQ="},
        ]
    }
    with pytest.raises(InvalidInput) as caught:
        parse_endpoints(document)
    assert [p.path for p in caught.value.problems] == ["endpoints.1.id", "endpoints.1.secret"]


def test_endpoint_types_filter_and_secret_not_printed() -> None:
    endpoints = parse_endpoints(
        {
            "endpoints": [
                {"id": "all", "url": "https://h.example/a", "secret": SECRET},
                {
                    "id": "bills",
                    "url": "https://h.example/b",
                    "secret": SECRET,
                    "types": ["invoice.issued"],
                },
            ]
        }
    )
    assert [e.id for e in subscribed(endpoints, NotificationType.INVOICE_ISSUED)] == [
        "all",
        "bills",
    ]
    assert [e.id for e in subscribed(endpoints, NotificationType.THRESHOLD_REACHED)] == ["all"]
    assert SECRET not in repr(endpoints)


def test_the_demo_endpoints_file_loads_and_an_empty_setting_means_none(tmp_path: Path) -> None:
    assert [e.id for e in load_endpoints(ROOT / "deploy/demo/webhooks.yaml")] == ["demo-receiver"]
    assert load_endpoints("") == ()
    with pytest.raises(InvalidInput, match="file not found"):
        load_endpoints(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, Verdict.RETRY),
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.REFUSED),
        (400, Verdict.REFUSED),
        (401, Verdict.REFUSED),
        (404, Verdict.REFUSED),
        (408, Verdict.RETRY),
        (410, Verdict.REFUSED),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_verdict(status: int | None, expected: Verdict) -> None:
    assert verdict(status) is expected


def test_the_default_schedule_doubles_with_jitter_and_caps() -> None:
    schedule = RetrySchedule()
    assert schedule.attempts == 5
    exact = [schedule.delay_s(n, 0.0) for n in range(1, 5)]
    assert exact == [2.0, 4.0, 8.0, 16.0]
    halved = [schedule.delay_s(n, 1.0) for n in range(1, 5)]
    assert halved == [1.0, 2.0, 4.0, 8.0]
    assert schedule.delay_s(10, 0.0) == 60.0  # capped
    assert schedule.delay_s(1, 0.0, retry_after_s=30) == 30.0  # Retry-After lengthens
    assert schedule.delay_s(1, 0.0, retry_after_s=3600) == 60.0  # ... up to the cap
    with pytest.raises(ValueError, match="not a retry schedule"):
        RetrySchedule(attempts=0)
