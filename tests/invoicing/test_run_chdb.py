"""The billing run's SQL and crash recovery on current ClickHouse (chDB, in-process), with
an in-memory stand-in for the transactional topic.  The real broker is exercised by
``test_crash_kafka.py``."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from api.estimates import estimate
from invoicing.customers import Customer
from invoicing.ledger import void_invoice
from invoicing.periods import month_period
from invoicing.run import BillingRun, RunResult, run_period
from invoicing.usage import priced_meters
from rating import card_document, card_version, load_rate_card_data
from schemas.errors import InvalidInput
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import Engine
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.rate_cards_table import RateCardsTable
from schemas.storage.usage import UsageRead, read_usage
from schemas.storage.windows_table import FeedRow, WindowsTable
from tests.invoicing.helpers import DEMO_CARD, METERS, customer

pytestmark = pytest.mark.chdb

OCT = month_period("2026-10")
NOV = month_period("2026-11")
CLOSE_OCT = NOV.start_s + 3600
CLOSE_NOV = NOV.end_s + 3600


class Crash(Exception):
    """Stands for the process dying at that point."""


@dataclass
class FakeTopic:
    """Records with a committed flag, as a read_committed consumer would filter them."""

    records: list[tuple[str, bytes, bool]] = field(default_factory=list)
    crash_after_records: int | None = None
    crash_after_commit: bool = False

    def publish(self, records: Sequence[tuple[str, bytes]]) -> None:
        start = len(self.records)
        for number, (key, value) in enumerate(records, start=1):
            self.records.append((key, value, False))
            if number == self.crash_after_records:
                self.crash_after_records = None
                raise Crash
        for index in range(start, len(self.records)):
            key, value, _ = self.records[index]
            self.records[index] = (key, value, True)
        if self.crash_after_commit:
            self.crash_after_commit = False
            raise Crash

    def committed(self, keys: Collection[str], since_ms: int) -> set[str]:
        return {key for key, _, ok in self.records if ok and key in keys}

    def read_committed(self) -> list[str]:
        return [key for key, _, ok in self.records if ok]


@pytest.fixture
def db(chdb_engine: Engine) -> tuple[Engine, str]:
    database = f"inv_{uuid.uuid4().hex[:10]}"
    ensure_schema(chdb_engine, database)
    return chdb_engine, database


def usage(engine: Engine, database: str, rows: list[tuple[str, str, int, int, str]]) -> None:
    """(subject, meter, at_s, ingested_s, value) → window contributions."""
    feed = [
        FeedRow(
            "ns",
            meter,
            subject,
            "{}",
            at - at % 60,
            ing - ing % 60,
            Decimal(v),
            "",
            at * 1000,
            0,
            n,
        )
        for n, (subject, meter, at, ing, v) in enumerate(rows)
    ]
    engine.insert(*WindowsTable(database).insert_args(feed))


def bill(
    db: tuple[Engine, str],
    label: str,
    cutoff: int,
    topic: FakeTopic | None,
    customers: Sequence[Customer] | None = None,
    **kw: Any,
) -> RunResult:
    engine, database = db
    return run_period(
        BillingRun(
            namespace="ns",
            database=database,
            period=month_period(label),
            customers=customers or [customer(), customer(id="globex", plan="pro")],
            card=DEMO_CARD,
            meters=METERS,
            cutoff_s=cutoff,
            **{k: kw.pop(k) for k in ("dry_run", "force") if k in kw},
        ),
        engine=engine,
        publish=topic,
        now=datetime.fromtimestamp(cutoff + 30, UTC),
        sleep=lambda _: None,  # the clock is simulated: some cutoffs are in the future
        **kw,
    )


def stored(db: tuple[Engine, str]) -> dict[str, Decimal]:
    engine, database = db
    rows = engine.execute(
        f"SELECT invoice_id, total FROM {InvoicesTable(database).name} FINAL WHERE namespace = 'ns'"
    )
    return {str(r[0]): Decimal(str(r[1])) for r in rows}


def test_second_run_changes_nothing(db: tuple[Engine, str]) -> None:
    engine, database = db
    usage(engine, database, [("acme", "api_calls", OCT.start_s + 5, OCT.start_s + 9, "1")] * 3)
    topic = FakeTopic()
    first = bill(db, "2026-10", CLOSE_OCT, topic)
    assert len(first.emitted) == 2
    again = bill(db, "2026-10", CLOSE_OCT + 600, topic)
    assert again.emitted == []
    assert sorted(again.already_emitted) == sorted(first.emitted)
    assert sorted(topic.read_committed()) == sorted(first.emitted)
    assert stored(db)[first.invoices[0].id] == Decimal("0.01")  # 3 × 0.002 = 0.006


def test_dry_run_writes_nothing(db: tuple[Engine, str]) -> None:
    topic = FakeTopic()
    result = bill(db, "2026-10", CLOSE_OCT, topic, dry_run=True)
    assert len(result.invoices) == 2
    assert topic.records == []
    assert stored(db) == {}


@pytest.mark.parametrize(
    "crash",
    [{"crash_after_records": 1}, {"crash_after_commit": True}],
    ids=["between-records", "after-commit"],
)
def test_crash_then_rerun_publishes_each_invoice_once(
    db: tuple[Engine, str], crash: dict[str, Any]
) -> None:
    topic = FakeTopic(**crash)
    with pytest.raises(Crash):
        bill(db, "2026-10", CLOSE_OCT, topic)
    rerun = bill(db, "2026-10", CLOSE_OCT + 3600, topic)
    assert len(rerun.recovered) == 2
    assert rerun.emitted == []
    committed = topic.read_committed()
    assert sorted(committed) == sorted(set(committed))
    assert len(committed) == 2
    assert set(stored(db)) == set(committed)
    # the recovered invoices keep the cutoff they were drafted with
    docs = [orjson.loads(v) for _, v, ok in topic.records if ok]
    assert {d["usage_cutoff"] for d in docs} == {"2026-11-01T01:00:00.000Z"}


def test_late_usage_is_adjusted_on_the_next_invoice(db: tuple[Engine, str]) -> None:
    engine, database = db
    usage(engine, database, [("acme", "api_calls", OCT.start_s + 5, OCT.start_s + 9, "1")])
    topic = FakeTopic()
    october = bill(db, "2026-10", CLOSE_OCT, topic)
    late = [("acme", "api_calls", OCT.start_s + 50 + n, CLOSE_OCT + 120, "1") for n in range(9)]
    usage(engine, database, [*late, ("acme", "llm_tokens", OCT.start_s + 1, CLOSE_OCT + 60, "7")])
    november = bill(db, "2026-11", CLOSE_NOV, topic)
    acme = next(i for i in november.invoices if i.customer.id == "acme")
    lines = {a.meter: (a.quantity, a.amount) for a in acme.adjustments}
    assert lines == {
        "api_calls": (Decimal(9), Decimal("0.02")),
        "llm_tokens": (Decimal(7), Decimal("0.00")),
    }
    assert acme.adjustments[0].original_invoice_id == october.invoices[0].id
    assert acme.total == acme.usage_total + Decimal("0.02")
    # October re-rated with its own cutoff is unchanged: identical lines
    again = bill(db, "2026-10", CLOSE_OCT, None, dry_run=True)
    assert again.invoices == []
    assert len(again.already_emitted) == 2


def test_void_then_rerun_reissues_a_new_revision(db: tuple[Engine, str]) -> None:
    engine, database = db
    usage(engine, database, [("acme", "api_calls", OCT.start_s + 5, OCT.start_s + 9, "1")] * 7)
    topic = FakeTopic()
    first = bill(db, "2026-10", CLOSE_OCT, topic, customers=[customer()])
    (original,) = first.emitted
    with pytest.raises(InvalidInput, match="reason"):
        void_invoice(
            namespace="ns",
            database=database,
            invoice_id=original,
            reason="",
            engine=engine,
            publish=topic,
        )
    void_invoice(
        namespace="ns",
        database=database,
        invoice_id=original,
        reason="wrong plan",
        engine=engine,
        publish=topic,
    )
    with pytest.raises(InvalidInput, match="cannot go from void to void"):
        void_invoice(
            namespace="ns",
            database=database,
            invoice_id=original,
            reason="again",
            engine=engine,
            publish=topic,
        )
    # usage arriving after the original cutoff stays out of the reissue
    usage(engine, database, [("acme", "api_calls", OCT.start_s + 5, CLOSE_OCT + 60, "1")])
    reissue = bill(db, "2026-10", CLOSE_OCT + 7200, topic, customers=[customer()])
    (invoice,) = reissue.invoices
    assert invoice.revision == 1
    assert invoice.id != original
    assert invoice.cutoff_s == CLOSE_OCT
    assert invoice.rated == first.invoices[0].rated  # re-rated with the same cutoff: same lines
    statuses = [orjson.loads(v).get("status") for k, v, ok in topic.records if k == original]
    assert statuses == [None, "void"]  # the invoice, then its void record; never modified


def test_the_estimate_for_a_period_and_cutoff_is_the_invoice(db: tuple[Engine, str]) -> None:
    """The dashboard's estimate and billing read usage through one reader and add
    subjects up by one rule: for the same period and cutoff they price the same."""
    engine, database = db
    customers = [customer(), customer(id="umbrella", subjects=["eu", "us"], plan="pro")]
    on_time, late = OCT.start_s + 7200, CLOSE_OCT + 120
    usage(
        engine,
        database,
        [
            ("acme", "api_calls", OCT.start_s + 60, on_time, "1"),
            ("acme", "api_calls", OCT.start_s + 61, on_time, "1"),
            ("acme", "llm_tokens", OCT.start_s + 3600, on_time, "123456"),
            ("eu", "llm_tokens", OCT.start_s + 86400, on_time, "100000"),
            ("us", "llm_tokens", OCT.start_s + 2 * 86400, on_time, "50000.5"),
            ("us", "storage_gb_hours", OCT.end_s - 60, on_time, "12.345"),
            ("us", "llm_tokens", OCT.end_s - 60, late, "99999"),  # after the cutoff
        ],
    )

    def estimated(cutoff_s: int | None) -> dict[str, tuple[Decimal | None, list[object]]]:
        read = UsageRead(
            "ns", database, METERS, tuple(sorted(priced_meters(DEMO_CARD))), OCT.start_s, OCT.end_s
        )
        if cutoff_s is not None:
            read = dataclasses.replace(read, ingested_before_s=cutoff_s)
        found = estimate(customers, DEMO_CARD, METERS, read_usage(engine, read))
        return {e.customer.id: (e.total, [line["amount"] for line in e.lines]) for e in found}

    def invoiced(cutoff_s: int) -> dict[str, tuple[Decimal | None, list[object]]]:
        result = bill(db, "2026-10", cutoff_s, None, customers=customers, dry_run=True)
        return {
            i.customer.id: (i.total, [format(line.amount, "f") for line in i.rated.lines])
            for i in result.invoices
        }

    assert estimated(CLOSE_OCT) == invoiced(CLOSE_OCT)
    # pro: 150000.5 tokens × 0.000015 = 2.25, 12.345 GB-hours × 0.01 = 0.12
    assert estimated(CLOSE_OCT)["umbrella"] == (Decimal("2.37"), ["0.00", "2.25", "0.12"])
    # the live estimate (no cutoff, read from a rollup) counts the late usage, as a later
    # cutoff does
    assert estimated(None) == invoiced(late + 60) != invoiced(CLOSE_OCT)


def test_an_invoice_names_its_rate_card_version_and_that_version_never_changes(
    db: tuple[Engine, str],
) -> None:
    """Billed with the demo card, the invoice names its version and the ledger holds that
    version's document; after a price change the issued invoice and the stored version
    are as they were, and the next period is billed with (and names) the new version."""
    engine, database = db
    usage(engine, database, [("acme", "api_calls", OCT.start_s + 5, OCT.start_s + 9, "1")] * 3)
    usage(engine, database, [("acme", "api_calls", NOV.start_s + 5, NOV.start_s + 9, "1")] * 3)
    topic = FakeTopic()
    one = [customer()]
    october = bill(db, "2026-10", CLOSE_OCT, topic, one)
    first = card_version(DEMO_CARD)
    assert [i.document().rate_card_version for i in october.invoices] == [first]

    edited = load_rate_card_data(
        orjson.loads(card_document(DEMO_CARD).replace(b'"0.002"', b'"0.004"'))
    )
    second = card_version(edited)
    assert second != first

    def run(label: str, cutoff: int) -> Any:
        request = BillingRun("ns", database, month_period(label), one, edited, METERS)
        return run_period(
            dataclasses.replace(request, cutoff_s=cutoff),
            engine=engine,
            publish=topic,
            now=datetime.fromtimestamp(cutoff + 30, UTC),
            sleep=lambda _: None,
        )

    rerun = run("2026-10", CLOSE_OCT + 60)
    assert rerun.emitted == []  # issued invoices keep the prices they were issued with
    november = run("2026-11", CLOSE_NOV)
    assert [i.document().rate_card_version for i in november.invoices] == [second]
    assert stored(db)[november.invoices[0].id] == Decimal("0.01")  # 3 × 0.004 = 0.012

    table = RateCardsTable(database)
    assert [row[0] for row in engine.execute(table.listing("ns").to_sql())] == [first, second]
    ((digest, document),) = engine.execute(table.document("ns", first).to_sql())
    assert document.encode() == card_document(DEMO_CARD)
    assert digest == hashlib.sha256(document.encode()).hexdigest()
    assert card_version(load_rate_card_data(orjson.loads(document))) == first
    issued = [orjson.loads(doc) for _, doc, _ in topic.records]
    assert [(d["schema"], d["rate_card_version"]) for d in issued] == [
        ("meterline.invoice/4", first),
        ("meterline.invoice/4", second),
    ]
