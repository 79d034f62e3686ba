"""The quote tests' world: the rate card of docs/api.md's worked example, customers in
every situation a quote meets, and their usage written to a real ClickHouse through the
windows' own insert (the statement the metering worker writes with).

Usage is placed relative to each subscription's current period, so the tests hold on
any date."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml

from invoicing.customers import Customer, parse_customers
from invoicing.periods import Period
from schemas.settings import Settings
from schemas.storage.engine import Engine
from schemas.storage.windows_table import FeedRow, WindowsTable
from tests.conftest import ROOT

DOC = ROOT / "docs/api.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SECTION = "## Quotes"

# Appended to the demo meters and to the example's card as text: a card read through
# PyYAML's floats would price 20.0 and 2.0e-05, not what the docs show.
PEAK_METER = """
  - slug: peak_seats
    description: Seats in use at the busiest moment
    event_type: seats.snapshot
    aggregation: MAX
    value_property: $.seats
"""
SEATS_PLAN = """
  seats:
    USD:
      charges:
        - meter: peak_seats
          model: per_unit
          unit_price: 3
"""

CUSTOMERS: list[dict[str, Any]] = [
    # the worked example's customer: two subjects, added up by billing's rule
    {"id": "acme", "subjects": ["acme-eu", "acme-us"], "plan": "growth", "currency": "USD"},
    {"id": "globex", "plan": "growth", "currency": "USD"},
    # a plan change in June: the old subscription has no current period, the new one is
    # billed from the 15th, Berlin time; the old one (UTC) ends when June 1 begins in
    # Berlin, so that no hour is billed twice
    {"id": "initech", "subscription": "legacy", "plan": "growth", "currency": "USD",
     "start": "2025-01-01", "end": "2026-05-31T22:00:00Z"},
    {"id": "initech", "subscription": "main", "plan": "growth", "currency": "USD",
     "start": "2026-06-01", "anchor_day": 15, "timezone": "Europe/Berlin"},
    {"id": "oldco", "plan": "growth", "currency": "USD", "end": "2026-01-01"},
    {"id": "futureco", "plan": "growth", "currency": "USD", "start": "2099-01-01"},
    {"id": "eurco", "plan": "growth", "currency": "EUR"},
    {"id": "hydra", "subjects": ["hydra-1", "hydra-2"], "plan": "seats", "currency": "USD"},
]  # fmt: skip


def doc_blocks() -> tuple[str, str, str]:
    """The worked example of docs/api.md's quote section: (rate card YAML, HTTP request,
    JSON response)."""
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    found: dict[str, str] = {}
    for lang, body in FENCE.findall(text[start : end if end != -1 else None]):
        found.setdefault(lang, body)
    return found["yaml"], found["http"], found["json"]


def doc_request() -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of the worked example's request."""
    _, http, _ = doc_blocks()
    head, _, body = http.partition("\n\n")
    first, *header_lines = head.splitlines()
    method, path = first.split()
    assert method == "POST", first
    headers = dict(line.split(": ", 1) for line in header_lines)
    return path, headers, body.strip().encode()


def doc_response() -> dict[str, Any]:
    _, _, answer = doc_blocks()
    parsed: dict[str, Any] = orjson.loads(answer)
    return parsed


def write_config(work: Path) -> dict[str, str]:
    """The meters, rate card and customers files; the settings that point at them."""
    meters = (ROOT / "deploy/demo/meters.yaml").read_text().rstrip("\n") + PEAK_METER
    files = {
        "meters_file": ("meters.yaml", meters),
        "rate_card_file": ("rate-card.yaml", doc_blocks()[0].rstrip("\n") + SEATS_PLAN),
        "customers_file": ("customers.yaml", yaml.safe_dump({"customers": CUSTOMERS})),
    }
    out = {}
    for setting, (name, text) in files.items():
        path = work / name
        path.write_text(text)
        out[setting] = str(path)
    return out


def customer(customer_id: str, subscription: str = "main") -> Customer:
    entries = parse_customers({"customers": CUSTOMERS})
    return next(c for c in entries if c.id == customer_id and c.subscription == subscription)


def current(entry: Customer, now: datetime) -> Period:
    period = entry.schedule.period_containing(now.astimezone(ZoneInfo(entry.timezone)).date())
    assert period is not None
    return period


@dataclass
class Seeder:
    """Writes usage as the worker would: one feed row per event."""

    engine: Engine
    settings: Settings
    offset: int = 0

    def add(self, subject: str, meter: str, at: datetime, values: list[str]) -> None:
        at_s = int(at.timestamp()) // 60 * 60
        rows = []
        for value in values:
            self.offset += 1
            rows.append(
                FeedRow(self.settings.namespace, meter, subject, "{}", at_s, at_s,
                        Decimal(value), "", at_s * 1000, 0, self.offset)
            )  # fmt: skip
        self.engine.insert(*WindowsTable(self.settings.clickhouse_database).insert_args(rows))


def seed(seeder: Seeder, now: datetime) -> None:
    """Usage so far of the worked example (acme: 4200 calls and 123000 tokens over two
    subjects), some usage before each period that must not count, and the rest."""
    month = current(customer("acme"), now)
    early = min(month.start + timedelta(minutes=1), now)
    seeder.add("acme-eu", "api_calls", early, ["1"] * 2500)
    seeder.add("acme-us", "api_calls", early, ["1"] * 1700)
    seeder.add("acme-eu", "llm_tokens", early, ["60000.25", "40000.25"])
    seeder.add("acme-us", "llm_tokens", early, ["22999.5"])
    seeder.add("acme-eu", "storage_gb_hours", early, ["99"])  # not priced by growth
    seeder.add("acme-eu", "api_calls", month.start - timedelta(hours=1), ["1"] * 7)
    seeder.add("globex", "api_calls", early, ["1"] * 10)
    seeder.add("globex", "llm_tokens", early, ["123250"])
    initech = current(customer("initech"), now)
    seeder.add("initech", "api_calls", initech.start, ["1"] * 12)
    seeder.add("initech", "api_calls", initech.start - timedelta(minutes=30), ["1"] * 5)
    seeder.add("hydra-1", "peak_seats", early, ["4"])
    seeder.add("hydra-2", "peak_seats", early, ["6"])
