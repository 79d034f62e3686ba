"""HTTP behaviour of the app with Kafka and ClickHouse replaced by doubles (see doubles)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from api.fastingest import EncodedEvent
from api.openapi import document
from invoicing.document import InvoiceDocument
from invoicing.documents import render_html
from invoicing.periods import month_period
from invoicing.plan import plan_subscription
from schemas.errors import DeliveryFailed, ServiceUnavailable
from tests.api.doubles import ACME, ADMIN, FakeDelivery, FakeEngine, SyncClient, fake_app
from tests.conftest import ROOT
from tests.invoicing.helpers import DEMO_CARD, METERS, UsageLog, customer

EVENT = {
    "id": "e1",
    "source": "t",
    "type": "api.request",
    "subject": "acme",
    "time": "2026-11-01T00:00:00Z",
    "data": {"endpoint": "/a"},
}


def client(**kwargs: object) -> SyncClient:
    return SyncClient(fake_app(**kwargs))  # type: ignore[arg-type]


def test_ingest_all_content_types_and_answer_204() -> None:
    delivery = FakeDelivery()
    http = client(delivery=delivery)
    for kind, body in [
        ("application/cloudevents+json", EVENT),
        ("application/cloudevents-batch+json", [EVENT, {**EVENT, "id": "e2"}]),
        ("application/json", EVENT),
        ("application/json", [EVENT]),
    ]:
        answer = http.post(
            "/api/v1/events", content=orjson.dumps(body), headers={**ADMIN, "content-type": kind}
        )
        assert answer.status_code == 204, answer.text
    assert [e.id for e in delivery.sent] == ["e1", "e1", "e2", "e1", "e1"]


def test_invalid_batch_is_400_with_every_problem_and_nothing_sent() -> None:
    delivery = FakeDelivery()
    body = [EVENT, {**EVENT, "time": "soon"}, {**EVENT, "subject": "", "extra": 1}]
    answer = client(delivery=delivery).post(
        "/api/v1/events",
        content=orjson.dumps(body),
        headers={**ADMIN, "content-type": "application/cloudevents-batch+json"},
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    paths = [p["path"] for p in answer.json()["problems"]]
    assert paths == ["[1].time", "[2].subject", "[2].extra"]
    assert delivery.sent == []


def test_a_time_no_window_can_hold_is_400_naming_the_field_and_the_range() -> None:
    """Accepted, it would stop its partition: every write of its chunk would fail."""
    delivery = FakeDelivery()
    body = [EVENT, {**EVENT, "id": "e2", "time": "1969-12-31T23:59:59.999Z"},
            {**EVENT, "id": "e3", "time": "2106-01-01T00:00:00.000Z"}]  # fmt: skip
    answer = client(delivery=delivery).post(
        "/api/v1/events",
        content=orjson.dumps(body),
        headers={**ADMIN, "content-type": "application/cloudevents-batch+json"},
    )
    assert answer.status_code == 400, answer.text
    problems = answer.json()["problems"]
    assert [p["path"] for p in problems] == ["[1].time", "[2].time"]
    for problem in problems:
        assert "between 1970-01-01T00:00:00Z and 2105-12-31T23:59:59.999Z" in problem["message"]
    assert delivery.sent == []


def test_a_short_number_with_a_huge_exponent_is_400_not_a_billion_characters() -> None:
    """``1e-999999999`` is 13 bytes; written in plain form it would be 1 GB."""
    delivery = FakeDelivery()
    body = orjson.dumps([{**EVENT, "data": {"v": ["HUGE"]}}]).replace(b'"HUGE"', b"1e-999999999")
    answer = client(delivery=delivery).post(
        "/api/v1/events",
        content=body,
        headers={**ADMIN, "content-type": "application/cloudevents-batch+json"},
    )
    assert answer.status_code == 400, answer.text
    [problem] = answer.json()["problems"]
    assert problem["path"] == "[0].data"
    assert "data.v[0]" in problem["message"]
    assert delivery.sent == []


def test_413_above_the_size_limit() -> None:
    http = client(max_body_bytes=2048)
    big = orjson.dumps([{**EVENT, "id": str(i)} for i in range(40)])
    answer = http.post(
        "/api/v1/events", content=big, headers={**ADMIN, "content-type": "application/json"}
    )
    assert answer.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield big  # no Content-Length: the limit is enforced while streaming

    answer = http.post(
        "/api/v1/events", content=chunks(), headers={**ADMIN, "content-type": "application/json"}
    )
    assert answer.status_code == 413


@pytest.mark.parametrize(
    "error", [ServiceUnavailable("Kafka down"), DeliveryFailed("1 of 1 not acknowledged")]
)
def test_503_with_retry_after_when_kafka_does_not_acknowledge(error: Exception) -> None:
    answer = client(delivery=FakeDelivery(error), retry_after_s=7).post(
        "/api/v1/events",
        content=orjson.dumps(EVENT),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "7"


class SlowDelivery(FakeDelivery):
    """Holds every batch until released: requests pile up as they do behind a slow Kafka."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def deliver(self, events: Sequence[EncodedEvent], timeout: float) -> None:
        await self.release.wait()
        await super().deliver(events, timeout)


def test_a_flood_beyond_the_in_flight_limit_is_shed_with_429_and_retry_after() -> None:
    delivery = SlowDelivery()
    app = fake_app(delivery=delivery, max_ingest_in_flight=3, shed_retry_after_s=2)

    async def flood() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            def post(i: int) -> Any:
                return http.post(
                    "/api/v1/events",
                    content=orjson.dumps({**EVENT, "id": f"e{i}"}),
                    headers={**ADMIN, "content-type": "application/json"},
                )

            held = [asyncio.ensure_future(post(i)) for i in range(3)]
            await asyncio.sleep(0.2)  # three requests now wait for Kafka
            shed = await asyncio.gather(*(post(i) for i in range(3, 8)))
            delivery.release.set()
            return [*await asyncio.gather(*held), *shed]

    answers = asyncio.run(flood())
    assert [a.status_code for a in answers] == [204] * 3 + [429] * 5
    assert all(a.headers["retry-after"] == "2" for a in answers[3:])
    assert "nothing of this request was accepted" in answers[3].json()["detail"]
    assert sorted(e.id for e in delivery.sent) == ["e0", "e1", "e2"]
    after = client(delivery=delivery, max_ingest_in_flight=3).post(
        "/api/v1/events",
        content=orjson.dumps(EVENT),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert after.status_code == 204  # the limit counts requests in progress, not ever


def test_401_and_403() -> None:
    http = client()
    assert http.get("/api/v1/meters").status_code == 401
    assert http.get("/api/v1/meters", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.get("/api/v1/meters").headers["www-authenticate"].startswith("Bearer")
    post = http.post(
        "/api/v1/events",
        content=orjson.dumps(EVENT),
        headers={**ACME, "content-type": "application/json"},
    )
    assert post.status_code == 403
    assert (
        http.get("/api/v1/meters/api_calls/query?subject=globex", headers=ACME).status_code == 403
    )
    assert http.get("/api/v1/invoices?customer=globex", headers=ACME).status_code == 403


def test_customer_token_is_confined_to_its_subjects() -> None:
    engine = FakeEngine()
    http = client(engine=engine)
    assert http.get("/api/v1/meters/api_calls/query", headers=ACME).status_code == 200
    assert "subject IN ('acme')" in engine.seen[-1]
    assert http.get("/api/v1/meters/api_calls/subjects", headers=ACME).json() == []
    assert "subject IN ('acme')" in engine.seen[-1]
    assert http.get("/api/v1/invoices", headers=ACME).status_code == 200
    assert "customer_id = 'acme'" in engine.seen[-1]
    customers = http.get("/api/v1/customers", headers=ACME).json()["customers"]
    assert [c["id"] for c in customers] == ["acme"]


def globex_invoice() -> dict[str, Any]:
    """A real October invoice document of globex (no usage: only zero lines)."""
    october = month_period("2026-10")
    planned = plan_subscription(
        namespace="ns",
        customer=customer(id="globex", plan="pro"),
        index=0,
        periods=[october],
        history=[],
        cutoff_s=october.end_s + 3600,
        read=UsageLog(),
        card=DEMO_CARD,
        meters=METERS,
        created_ms=1_764_000_000_000,
    )
    document: dict[str, Any] = orjson.loads(planned.invoices[0].to_json())
    return document


def test_invoice_of_another_customer_is_403_and_unknown_is_404() -> None:
    doc = globex_invoice()
    inv = doc["invoice_id"]
    engine = FakeEngine(lambda sql: [("globex", json.dumps(doc))] if inv in sql else [])
    http = client(engine=engine)
    assert http.get(f"/api/v1/invoices/{inv}", headers=ACME).status_code == 403
    assert http.get("/api/v1/invoices/inv_2", headers=ADMIN).status_code == 404
    assert http.get(f"/api/v1/invoices/{inv}", headers=ADMIN).json() == doc
    page = http.get(f"/api/v1/invoices/{inv}", headers={**ADMIN, "accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    # billing's own rendering of the stored document, not a second one
    assert page.text == render_html(InvoiceDocument.model_validate(doc))
    assert inv in page.text


def test_meter_query_json_numbers_are_exact_and_csv_on_request() -> None:
    value = Decimal("123456789012345678901.000000001")
    engine = FakeEngine(lambda sql: [(1_793_491_200, "acme", value)] if "sumMerge" in sql else [])
    http = client(engine=engine)
    url = "/api/v1/meters/llm_tokens/query?windowSize=HOUR&from=2026-11-01T00:00:00Z"
    answer = http.get(url, headers=ADMIN)
    assert b'"value":123456789012345678901.000000001' in answer.content
    assert json.loads(answer.content, parse_float=Decimal)["data"][0]["value"] == value
    csv = http.get(url, headers={**ADMIN, "accept": "text/csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[1].endswith(",acme,123456789012345678901.000000001")


def test_bad_query_is_400_and_unknown_meter_404() -> None:
    http = client()
    bad = http.get("/api/v1/meters/api_calls/query?windowSize=WEEK&groupBy=x", headers=ADMIN)
    assert bad.status_code == 400
    assert [p["path"] for p in bad.json()["problems"]] == ["windowSize", "groupBy[0]"]
    assert http.get("/api/v1/meters/nope", headers=ADMIN).status_code == 404
    assert http.get("/api/v1/nothing-here").status_code == 404


def test_openapi_is_served_and_checked_in() -> None:
    served = client().get("/api/v1/openapi.json").json()
    assert served == document()
    checked_in = json.loads((ROOT / "docs/openapi.json").read_text())
    assert checked_in == document(), "run: python -m api openapi > docs/openapi.json"


def test_every_refusal_reason_is_exported_at_zero_before_the_first_refusal() -> None:
    """So that ``increase()`` in the alerting rules counts the first refusal of a kind (a
    series born at 1 shows no increase); and every reason the routes count is listed."""
    from prometheus_client import REGISTRY

    from api.metrics import REJECT_REASONS

    for reason in REJECT_REASONS:
        value = REGISTRY.get_sample_value(
            "meterline_ingest_events_rejected_total", {"reason": reason}
        )
        assert value is not None, reason
    routes = (ROOT / "api" / "routes.py").read_text()
    counted = set(re.findall(r'EVENTS_REJECTED\.labels\("(\w+)"\)', routes))
    mapped = {"unauthenticated", "forbidden", "too_large", "unsupported_media_type", "invalid"}
    assert counted  # the scan finds the literal reasons
    assert counted | mapped <= set(REJECT_REASONS)
    assert all(f'"{reason}"' in routes for reason in mapped)


def test_dashboard_page_is_self_contained() -> None:
    page = client(dashboard_refresh_s=3).get("/dashboard")
    assert page.status_code == 200
    assert "const REFRESH_MS = 3000;" in page.text
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page.text


def test_metrics_names() -> None:
    http = client(engine=FakeEngine(lambda sql: [(3, 1)] if "count()" in sql else []))
    http.post("/api/v1/events", content=b"{", headers={**ADMIN, "content-type": "application/json"})
    text = http.get("/metrics").text
    for name in [
        "meterline_api_requests_total",
        "meterline_api_request_duration_seconds_bucket",
        "meterline_ingest_events_received_total",
        "meterline_ingest_events_accepted_total",
        'meterline_ingest_events_rejected_total{reason="invalid"}',
        "meterline_ingest_delivery_seconds_bucket",
        "meterline_invoice_records 3.0",
        "meterline_invoice_periods 1.0",
        'meterline_stream_consumer_lag{partition="1"} 2.0',
    ]:
        assert name in text, name
    assert 'route="/api/v1/events"' in text
