"""``GET /api/v1/notifications/deliveries``: parsing (pure), and the route in-process on
a real ClickHouse (both engines) holding a logged delivery: API keys only, filters,
pages, every bad parameter named with its fix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from api.deliveries import parse_deliveries
from schemas.errors import InvalidInput
from schemas.storage.deliveries_table import DeliveriesTable, DeliveryRow
from tests.api.doubles import ACME, ADMIN, FakeDelivery, SyncClient, demo_settings
from tests.conftest import fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.chdb]
URL = "/api/v1/notifications/deliveries"
AT = 1_793_707_200_000  # 2026-11-03T12:00:00Z


def row(nid: str, attempt: int, status: int, outcome: str, at_ms: int) -> DeliveryRow:
    error = "" if status == 200 else ("ConnectError: refused" if not status else f"HTTP {status}")
    return DeliveryRow(
        "default",
        nid,
        "alert.threshold_reached",
        "ops",
        "https://h.example/x",
        attempt,
        status,
        error,
        outcome,
        at_ms,
        12,
    )


@pytest.fixture(params=["server", "chdb"])
def http(request: pytest.FixtureRequest) -> Iterator[SyncClient]:
    database = fresh_database(request, "mlapi_")
    engine, name = next(database)
    engine.insert(
        *DeliveriesTable(name).insert(
            [
                row("ntf_a", 1, 500, "retrying", AT),
                row("ntf_a", 2, 200, "delivered", AT + 1_000),
                row("ntf_b", 1, 0, "failed", AT + 2_000),
            ]
        )
    )
    app = create_app(
        demo_settings(clickhouse_database=name),
        delivery=FakeDelivery(),
        engine_factory=lambda: engine,
        lag=dict,
    )
    yield SyncClient(app)
    next(database, None)  # drops the database


def test_the_log_newest_first_with_filters_and_pages(http: SyncClient) -> None:
    answer = http.get(URL, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(d["notification_id"], d["attempt"]) for d in body["deliveries"]] == [
        ("ntf_b", 1),
        ("ntf_a", 2),
        ("ntf_a", 1),
    ]
    assert body["next"] is None
    assert body["deliveries"][0] == {
        "notification_id": "ntf_b",
        "type": "alert.threshold_reached",
        "endpoint_id": "ops",
        "url": "https://h.example/x",
        "attempt": 1,
        "status_code": None,
        "error": "ConnectError: refused",
        "outcome": "failed",
        "at": "2026-11-03T12:00:02.000Z",
        "duration_ms": 12,
    }
    failed = http.get(URL, params={"outcome": "failed"}, headers=ADMIN).json()
    assert [d["notification_id"] for d in failed["deliveries"]] == ["ntf_b"]
    only_a = http.get(URL, params={"notification": "ntf_a"}, headers=ADMIN).json()
    assert [d["status_code"] for d in only_a["deliveries"]] == [200, 500]

    seen: list[tuple[str, int]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = http.get(URL, params=params, headers=ADMIN).json()
        seen += [(d["notification_id"], d["attempt"]) for d in page["deliveries"]]
        if page["next"] is None:
            break
        params = {"limit": 2, "after": page["next"]}
    assert seen == [("ntf_b", 1), ("ntf_a", 2), ("ntf_a", 1)]


def test_customer_tokens_and_strangers_are_refused(http: SyncClient) -> None:
    assert http.get(URL, headers=ACME).status_code == 403
    assert http.get(URL).status_code == 401


def test_bad_parameters_are_named_with_their_fix(http: SyncClient) -> None:
    answer = http.get(
        URL, params={"outcome": "lost", "limit": "0", "after": "!!", "colour": "x"}, headers=ADMIN
    )
    assert answer.status_code == 400
    problems = {p["path"]: p for p in answer.json()["problems"]}
    assert set(problems) == {"outcome", "limit", "after", "colour"}
    assert all(p["fix"] for p in problems.values())


def test_parsing_alone() -> None:
    query = parse_deliveries([("notification", "ntf_a"), ("outcome", "retrying")])
    assert (query.notification_id, query.outcome, query.after, query.limit) == (
        "ntf_a",
        "retrying",
        None,
        100,
    )
    with pytest.raises(InvalidInput, match="given twice"):
        parse_deliveries([("limit", "5"), ("limit", "6")])
    for cursor in ("W10=", "WzEsMiwzLDRd", "eyJhIjoxfQ=="):  # [], [1,2,3,4], {"a":1}
        with pytest.raises(InvalidInput, match="after: not a cursor"):
            parse_deliveries([("after", cursor)])
