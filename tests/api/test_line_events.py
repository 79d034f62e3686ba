"""An invoice line's events through the API, and ``meterline verify`` on them, against
the real ClickHouse server and a real API process: an October invoice for acme billed by
the billing run from stored events; the line's events page by page with acme's token
(another customer's token is refused); ``verify`` recomputes the line and passes, then
fails on an event slipped into the ledger afterwards."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import orjson
import pytest

from api.server import BackgroundApi, start_background
from invoicing.customers import load_customers
from invoicing.document import CreditLine, UsageLine
from invoicing.periods import month_period
from invoicing.run import BillingRun, run_period
from rating import load_rate_card
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable, RawEventRow
from schemas.storage.feed import FeedRow
from schemas.storage.windows_table import WindowsTable
from tests.conftest import settings_env
from tests.invoicing.helpers import ROOT

pytestmark = pytest.mark.integration

OCT = month_period("2026-10")
CUTOFF = OCT.end_s + 3600
ACME = {"authorization": "Bearer ml_demo_cust_acme_01234"}
GLOBEX = {"authorization": "Bearer ml_demo_cust_globex_0123"}
TOKENS = ["1200", "0.5", "300.25", "7"]


@dataclass
class Billed:
    settings: Settings
    api: BackgroundApi
    invoice_id: str
    line_no: int


def store(engine: ServerEngine, settings: Settings, n: int, tokens: str, at_s: int) -> None:
    """One stored llm.completion event of acme and its contribution, as the worker writes."""
    event_id = f"ev-{n}"
    text = orjson.dumps(
        {"specversion": "1.0", "id": event_id, "source": "gw", "type": "llm.completion",
         "subject": "acme", "time": f"2026-10-01T00:{n:02d}:00.000Z",
         "data": {"tokens": tokens, "model": "m1"}}
    ).decode()  # fmt: skip
    row = RawEventRow(
        settings.namespace, "gw", event_id, "llm.completion", "acme", at_s * 1000, text,
        at_s * 1000 + 500, 0, n, 0, "h",
    )  # fmt: skip
    engine.insert(*EventsTable(settings.clickhouse_database).insert_args([row]))
    feed = FeedRow(
        settings.namespace, "llm_tokens", "acme", '{"model":"m1"}', at_s - at_s % 60,
        at_s - at_s % 60, Decimal(tokens), "", at_s * 1000, 0, n,
    )  # fmt: skip
    engine.insert(*WindowsTable(settings.clickhouse_database).insert_args([feed]))


@pytest.fixture
def billed(isolated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Billed]:
    engine = ServerEngine(isolated.clickhouse_host, isolated.clickhouse_tcp_port)
    ensure_schema(engine, isolated.clickhouse_database)
    for n, tokens in enumerate(TOKENS):
        store(engine, isolated, n, tokens, OCT.start_s + 60 * n)
    meters = load_meters(isolated.meters_file)
    acme = [c for c in load_customers(isolated.customers_file) if c.id == "acme"]
    card = load_rate_card(isolated.rate_card_file, meters.slugs())
    request = BillingRun(
        isolated.namespace, isolated.clickhouse_database, OCT, acme, card, meters, cutoff_s=CUTOFF
    )
    (invoice,) = run_period(request, engine=engine, publish=None, sleep=lambda _: None).invoices
    document = invoice.document()
    (line,) = [
        x for x in document.lines if not isinstance(x, CreditLine) and x.charge_id == "llm_tokens"
    ]
    assert isinstance(line, UsageLine)
    assert line.quantity == "1507.75"
    log = tmp_path_factory.mktemp("api") / "api.log"
    api = start_background(env=settings_env(isolated), log_path=log)
    yield Billed(isolated, api, invoice.id, line.line_no)
    api.stop()
    engine.close()


def verify(billed: Billed) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "meterline", "verify", billed.invoice_id,
            "--line", str(billed.line_no), "--api", billed.api.url,
            "--token", ACME["authorization"].split()[1],
            "--rate-card", str(ROOT / "deploy/demo/rate-card.yaml"),
        ],
        cwd=ROOT, env=settings_env(billed.settings), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_line_events_page_by_page_scoped_to_the_customer(billed: Billed) -> None:
    url = f"{billed.api.url}/api/v1/invoices/{billed.invoice_id}/lines/{billed.line_no}/events"
    seen: list[str] = []
    after: str | None = None
    while True:
        page = httpx.get(
            url, headers=ACME, params={"limit": 3, **({"after": after} if after else {})}
        )
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [event["id"] for event in body["events"]]
        assert all(orjson.loads(e["event"])["subject"] == "acme" for e in body["events"])
        after = body["next"]
        if after is None:
            break
    assert seen == sorted(f"ev-{n}" for n in range(len(TOKENS)))
    assert httpx.get(url, headers=GLOBEX).status_code == 403
    assert httpx.get(url, headers=ACME, params={"after": "!!"}).status_code == 400
    missing = url.replace(f"/lines/{billed.line_no}/", "/lines/99/")
    assert httpx.get(missing, headers=ACME).status_code == 404


def test_verify_passes_then_catches_an_event_slipped_in_after_billing(billed: Billed) -> None:
    done = verify(billed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == ["ok"] * 4
    assert "4 events" in done.stdout

    engine = ServerEngine(billed.settings.clickhouse_host, billed.settings.clickhouse_tcp_port)
    store(engine, billed.settings, 9, "1", OCT.start_s + 600)  # ingested before the cutoff
    engine.close()
    tampered = verify(billed)
    assert tampered.returncode == 1
    failed = [
        line.split(":")[0].removeprefix("FAIL ")
        for line in tampered.stdout.splitlines()
        if line.startswith("FAIL")
    ]
    assert failed == ["events digest", "quantity"]
