"""``rate-cards`` as a user runs it, against the real ClickHouse server: the version of a
file, the versions that priced invoices, and one version's document read back exactly."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from invoicing.ledger import record_card_version
from rating import card_document, card_version, load_rate_card_data
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.window_states import FULL_STATES, needed_states, states_in
from tests.conftest import settings_env
from tests.invoicing.helpers import DEMO_CARD, ROOT, TIERED_CARD

pytestmark = pytest.mark.integration


def meterline(settings: Settings | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterline", "rate-cards", *args],
        cwd=ROOT,
        env=settings_env(settings) if settings else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_version_of_a_file_is_the_version_billing_records() -> None:
    done = meterline(None, "version", "deploy/demo/rate-card.yaml")
    assert (done.returncode, done.stdout) == (0, card_version(DEMO_CARD) + "\n")
    bad = meterline(None, "version", "deploy/demo/customers.yaml")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: invalid rate card")


def test_recorded_versions_list_and_show_exactly(isolated: Settings) -> None:
    engine = ServerEngine(isolated.clickhouse_host, isolated.clickhouse_tcp_port)
    ensure_schema(engine, isolated.clickhouse_database)
    database, namespace = isolated.clickhouse_database, isolated.namespace
    first = record_card_version(engine, database, namespace, DEMO_CARD, 1_000)
    assert record_card_version(engine, database, namespace, DEMO_CARD, 5_000) == first
    second = record_card_version(engine, database, namespace, TIERED_CARD, 2_000)
    engine.close()

    listed = meterline(isolated, "list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [first, second]
    assert "first used 1970-01-01T00:00:01.000Z" in listed.stdout

    shown = meterline(isolated, "show", second)
    assert shown.returncode == 0, shown.stderr
    document = orjson.loads(shown.stdout)
    assert orjson.dumps(document, option=orjson.OPT_SORT_KEYS) == card_document(TIERED_CARD)
    assert card_version(load_rate_card_data(document)) == second

    missing = meterline(isolated, "show", first[:-1] + "x")
    assert missing.returncode == 2
    assert f"did you mean '{first}'" in missing.stderr


def test_a_database_a_rate_card_command_creates_keeps_the_states_its_meters_need(
    isolated: Settings,
) -> None:
    """Cards are often published before any worker ran: the database that command creates
    is laid out as the worker would lay it out, not with every window state."""
    listed = meterline(isolated, "list")
    assert listed.returncode == 0, listed.stderr
    engine = ServerEngine(isolated.clickhouse_host, isolated.clickhouse_tcp_port)
    try:
        kept = states_in(engine, isolated.clickhouse_database)
    finally:
        engine.close()
    needed = needed_states(load_meters(isolated.meters_file).meters)
    assert needed != FULL_STATES  # the demo catalogue: SUM and COUNT meters only
    assert kept == needed
