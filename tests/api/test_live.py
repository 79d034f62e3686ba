"""The API on the real local Kafka and ClickHouse after a real pipeline run (see
``tests.api.pipeline``): exact values back in JSON and CSV, customer scoping, invoices,
metrics, the dashboard in headless Chromium, and a schema-driven fuzz run."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.server import BackgroundApi
from tests.api.doubles import ACME, ADMIN
from tests.api.pipeline import FIXED, Run
from tests.browser import headless
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def get(server: BackgroundApi, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.get(server.url + path, headers=headers, timeout=30, **kw)


def llm_truth(run: Run, hour: datetime) -> dict[tuple[str, str], Decimal]:
    """(subject, model) → tokens in that hour, from the events as posted."""
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    with localcontext(Context(prec=60)):
        add_events(run, hour, out)
    return dict(out)


def add_events(run: Run, hour: datetime, out: dict[tuple[str, str], Decimal]) -> None:
    for e in run.events:
        at = datetime.fromisoformat(e["time"])
        if e["type"] == "llm.completion" and hour <= at < hour + timedelta(hours=1):
            out[(e["subject"], e["data"]["model"])] += Decimal(e["data"]["tokens"])


def test_three_content_types_query_back_exactly(run: Run, server: BackgroundApi) -> None:
    url = "/api/v1/meters/llm_tokens/query"
    params = {"from": "2026-10-14T00:00:00Z", "to": "2026-10-15T00:00:00Z",
              "windowSize": "HOUR", "groupBy": "model"}  # fmt: skip
    answer = get(server, url, ADMIN, params=params)
    assert answer.status_code == 200, answer.text
    doc = json.loads(answer.content, parse_float=Decimal)
    got = {(r["subject"], r["groupBy"]["model"]): Decimal(r["value"]) for r in doc["data"]}
    expected = llm_truth(run, FIXED)
    assert got == expected
    assert expected[("globex", "m2")] == Decimal("123456789012345678.123456789")
    assert expected[("acme", "m1")] == Decimal("0.3")  # 0.1 + 0.2, not 0.30000000000000004
    assert {r["windowStart"] for r in doc["data"]} == {"2026-10-14T09:00:00.000Z"}
    assert {r["windowEnd"] for r in doc["data"]} == {"2026-10-14T10:00:00.000Z"}
    assert (doc["from"], doc["to"], doc["windowSize"]) == (
        "2026-10-14T00:00:00.000Z",
        "2026-10-15T00:00:00.000Z",
        "HOUR",
    )

    # each content type alone: its events' exact sum for acme
    for kind, events in run.posted.items():
        llm = [
            e
            for e in events
            if e["type"] == "llm.completion"
            and e["subject"] == "acme"
            and datetime.fromisoformat(e["time"]) < datetime(2026, 11, 1, tzinfo=UTC)
        ]
        for e in llm:
            minute = datetime.fromisoformat(e["time"])
            one = get(
                server,
                url,
                ADMIN,
                params={
                    "from": minute.isoformat(),
                    "to": (minute + timedelta(minutes=1)).isoformat(),
                    "subject": "acme",
                },
            )
            (row,) = json.loads(one.content, parse_float=Decimal)["data"]
            assert Decimal(row["value"]) == Decimal(e["data"]["tokens"]), kind

    text = get(server, url, {**ADMIN, "Accept": "text/csv"}, params=params)
    assert text.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.text)))
    assert {(r["subject"], r["model"]): Decimal(r["value"]) for r in rows} == expected


def test_day_windows_in_a_timezone_and_totals(run: Run, server: BackgroundApi) -> None:
    params = {
        "from": "2026-10-01T00:00:00-04:00",
        "to": "2026-11-01T00:00:00-04:00",
        "windowSize": "DAY",
        "windowTimeZone": "America/New_York",
        "subject": "acme",
    }
    doc = get(server, "/api/v1/meters/llm_tokens/query", ADMIN, params=params).json()
    (row,) = doc["data"]
    assert (row["windowStart"], row["windowEnd"]) == (
        "2026-10-14T04:00:00.000Z",
        "2026-10-15T04:00:00.000Z",
    )
    del params["windowSize"]
    (total,) = get(server, "/api/v1/meters/llm_tokens/query", ADMIN, params=params).json()["data"]
    assert total["windowStart"] == "2026-10-01T04:00:00.000Z"
    assert Decimal(str(total["value"])) == Decimal("0.300000001")


def test_meters_and_subjects(run: Run, server: BackgroundApi) -> None:
    meters = get(server, "/api/v1/meters", ADMIN).json()
    assert [m["slug"] for m in meters] == ["api_calls", "llm_tokens", "storage_gb_hours"]
    assert get(server, "/api/v1/meters/api_calls", ADMIN).json()["aggregation"] == "COUNT"
    subjects = get(server, "/api/v1/meters/api_calls/subjects", ADMIN).json()
    assert subjects == ["acme", "globex", "initech", "umbrella-eu"]
    assert get(server, "/api/v1/meters/api_calls/subjects", ACME).json() == ["acme"]


def test_customer_token_sees_only_its_usage_and_invoices(run: Run, server: BackgroundApi) -> None:
    doc = get(server, "/api/v1/meters/api_calls/query", ACME, params={"windowSize": "DAY"}).json()
    assert {r["subject"] for r in doc["data"]} == {"acme"}
    assert sum(r["value"] for r in doc["data"]) == 2
    assert get(server, "/api/v1/meters/api_calls/query?subject=globex", ACME).status_code == 403
    customers = get(server, "/api/v1/customers", ACME).json()["customers"]
    assert [c["id"] for c in customers] == ["acme"]
    globex = {
        "Authorization": ADMIN["Authorization"].replace(
            ADMIN["Authorization"], "Bearer ml_demo_cust_globex_0123"
        )
    }
    assert get(server, "/api/v1/invoices", globex).json() == []
    assert get(server, f"/api/v1/invoices/{run.invoice_id}", globex).status_code == 403
    assert [i["invoice_id"] for i in get(server, "/api/v1/invoices", ACME).json()] == [
        run.invoice_id
    ]


def test_estimates_are_priced_on_live_usage(run: Run, server: BackgroundApi) -> None:
    by_id = {c["id"]: c for c in get(server, "/api/v1/customers", ADMIN).json()["customers"]}
    # acme (starter): 2 api calls × 0.002 + 1500 tokens × 0.00002 = 0.004 + 0.03
    assert by_id["acme"]["usage"] == {"api_calls": 2, "llm_tokens": 1500}
    assert Decimal(str(by_id["acme"]["estimate"]["total"])) == Decimal("0.03")
    assert by_id["umbrella"]["usage"] == {"api_calls": 1}


def test_invoices_json_html_and_filters(run: Run, server: BackgroundApi) -> None:
    listed = get(server, "/api/v1/invoices", ADMIN, params={"customer": "acme"}).json()
    assert [i["invoice_id"] for i in listed] == [run.invoice_id]
    october = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
    assert len(get(server, "/api/v1/invoices", ADMIN, params=october).json()) == 1
    november = {"from": "2026-11-01T00:00:00Z"}
    assert get(server, "/api/v1/invoices", ADMIN, params=november).json() == []
    one = get(server, f"/api/v1/invoices/{run.invoice_id}", ACME)
    assert one.json()["total"] == "0.00"
    page = get(server, f"/api/v1/invoices/{run.invoice_id}", {**ACME, "Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert run.invoice_id in page.text


def test_metrics(run: Run, server: BackgroundApi) -> None:
    get(server, "/api/v1/meters", {})  # one 401
    bad = httpx.post(
        server.url + "/api/v1/events",
        content=b'[{"id": "x"}, {"id": "y"}]',
        headers={**ADMIN, "content-type": "application/cloudevents-batch+json"},
    )
    assert bad.status_code == 400
    text = get(server, "/metrics", {}).text
    assert 'meterline_ingest_events_rejected_total{reason="invalid"} 2.0' in text
    assert "meterline_ingest_events_received_total 2.0" in text
    assert 'meterline_api_requests_total{method="GET",route="/api/v1/meters",status="401"}' in text
    assert 'meterline_stream_consumer_lag{partition="0"} 0.0' in text
    assert "meterline_invoice_records 1.0" in text


def test_worker_metrics(run: Run) -> None:
    port = run.settings.worker_metrics_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("meterline_") and " " in line
    }
    retried = len(run.posted["application/cloudevents-batch+json"])
    assert values['meterline_stream_events_total{outcome="duplicate"}'] == retried
    assert values['meterline_stream_events_total{outcome="new"}'] == len(run.events)
    assert values["meterline_stream_late_events_total"] > 0
    assert values["meterline_clickhouse_flush_seconds_count"] > 0


# -- the dashboard in a real browser -------------------------------------------------------


def browse(url: str, profile: Path, *extra: str) -> str:
    return headless(url, profile, "--virtual-time-budget=8000", *extra).stdout


def artifacts_dir(tmp: Path) -> Path:
    path = Path(os.environ.get("METERLINE_ARTIFACTS_DIR") or ROOT / "build" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_dashboard_in_headless_chromium(run: Run, server: BackgroundApi, tmp_path: Path) -> None:
    from tests.api.dom import chart_points, table_rows

    token = ADMIN["Authorization"].removeprefix("Bearer ")
    credit = {"id": "dashboard", "amount": "25.00", "currency": "USD",
              "effective_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    granted = httpx.post(
        server.url + "/api/v1/customers/acme/grants",
        json=credit,
        headers=ADMIN,
        timeout=30,
    )
    assert granted.status_code in (200, 201), granted.text  # 200: a retried run's grant
    dom = browse(server.dashboard_url(token), tmp_path / "profile", "--dump-dom")
    points = chart_points(dom)
    # default view: first meter (api_calls), hourly, all time, no group-by
    expected: dict[str, int] = defaultdict(int)
    for e in run.events:
        if e["type"] == "api.request":
            hour = datetime.fromisoformat(e["time"]).replace(minute=0, second=0, microsecond=0)
            expected[hour.strftime("%Y-%m-%dT%H:00:00.000Z")] += 1
    assert points == {("all subjects", start): str(n) for start, n in expected.items()}, dom[-3000:]
    customers = table_rows(dom, "customers")
    assert customers["acme"]["estimate"] == "0.03"
    assert customers["acme"]["api_calls"] == "2"
    # the prepaid credit beside the estimate: 25.00 now, 25.00 − 0.03 once it is paid
    assert customers["acme"]["credit"] == "USD 25.00 24.97"
    assert customers["acme"]["credit_shown"] == "25.00 USD (24.97 USD)"
    assert customers["globex"]["credit"] == ""
    assert table_rows(dom, "invoices")[run.invoice_id]["customer"] == "acme"

    by_region = browse(
        server.dashboard_url(token) + "&meter=api_calls&groupBy=region&window=DAY",
        tmp_path / "p1",
        "--dump-dom",
    )
    regions: dict[str, int] = defaultdict(int)
    for e in run.events:
        if e["type"] == "api.request":
            regions[e["data"]["region"]] += 1
    got: dict[str, int] = defaultdict(int)
    for (series, _), value in chart_points(by_region).items():
        got[series] += int(value)
    assert got == regions

    acme_dom = browse(
        server.dashboard_url(ACME["Authorization"][7:]), tmp_path / "p2", "--dump-dom"
    )
    assert set(table_rows(acme_dom, "customers")) == {"acme"}
    assert table_rows(acme_dom, "customers")["acme"]["credit"] == "USD 25.00 24.97"
    assert {v for (_, _), v in chart_points(acme_dom).items()} == {"2"}

    shot = artifacts_dir(tmp_path) / "dashboard.png"
    shot.unlink(missing_ok=True)
    browse(
        server.dashboard_url(token),
        tmp_path / "p3",
        f"--screenshot={shot}",
        "--window-size=1280,900",
        "--hide-scrollbars",
    )
    assert shot.stat().st_size > 10_000


def test_missing_tables_answer_503_not_500(run: Run) -> None:
    from api.app import create_app
    from tests.api.doubles import SyncClient

    settings = run.settings.model_copy(update={"clickhouse_database": "mlt_does_not_exist"})
    app = create_app(settings, lag=lambda: {})
    answer = SyncClient(app).get("/api/v1/meters/api_calls/subjects", headers=ADMIN)
    app.state.services.delivery.close()
    assert answer.status_code == 503
    assert "streams init" in answer.json()["detail"]


def test_filter_group_by(run: Run, server: BackgroundApi) -> None:
    params = {"filterGroupBy[region]": "eu", "groupBy": "endpoint"}
    doc = get(server, "/api/v1/meters/api_calls/query", ADMIN, params=params).json()
    got = {(r["subject"], r["groupBy"]["endpoint"]): r["value"] for r in doc["data"]}
    assert got == {("acme", "/v1/a"): 1, ("globex", "/v1/b"): 1, ("umbrella-eu", "/v1/a"): 1}
