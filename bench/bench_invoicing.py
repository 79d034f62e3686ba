"""Invoicing throughput: a billing run over many customers, against the bare I/O it needs.

Measured: :func:`invoicing.run.run_period` closing one month (October 2026, every
subscription monthly on the 1st, so one invoice per customer) for ``customers``
customers on the demo meters and rate card (``deploy/demo/``), with a
:class:`~invoicing.publish.KafkaPublisher` on the local broker and a ``ServerEngine`` on
the local ClickHouse.  The timed part is what ``python -m invoicing run`` does once its
inputs are loaded: build the publisher, read the (empty) ledger, read the usage as of
the ingestion cutoff, plan and rate every subscription, store the drafts, publish every
invoice in one Kafka transaction (``init_transactions`` included), then store the lines
and the ``invoices`` rows.  The worker-lag check is not part of it: no metering worker
runs here, usage is written straight into the windows feed.  Reported as invoices/s and
priced lines/s, with the time spent inside ClickHouse and Kafka calls split out.

Baseline, measured in the same run: the same I/O with no product logic, i.e. the least
a billing run must do over the wire, in the run's order.  One bare clickhouse-driver
``SELECT`` of every subject's usage on every meter as of the same cutoff (one query,
grouped by subject and meter); bare ``INSERT`` statements of the very rows the run
stored (drafts, lines, invoices, read back from its database beforehand, into a
database of their own); and a bare confluent-kafka transactional producer (the
publisher's settings, built at the start as the run builds its publisher,
``init_transactions`` included) committing the very invoice documents in one
transaction to a topic of its own.  Its rate is invoices/s as well, so ``ratio`` = run
rate / baseline rate is the share of the bare I/O speed the product keeps; the gap is
planning, rating, document building and checks, the ledger read and the product's
extra round trips (one usage query per meter).

Usage: fixed seed; per subject and meter, 1 to 8 events in random minutes of October,
ingested within 30 minutes of their window.  Some subjects also get usage that must not
be billed: events ingested after the cutoff, and events of the next month.  About one
customer in ten has two subjects.  Rows go in through ``WindowsTable.insert_args``
(the worker's own write path into ``meter_windows``).

Exactness, after every run (warm-up included): each invoice's total, as returned and as
stored, equals :func:`invoicing.check.expected_totals` (per-unit prices read from the
rate-card file, usage from the generated truth, no rating engine); every invoice is on
the topic in a committed transaction (``KafkaPublisher.committed``); the stored lines
match the documents; the baseline read the same usage and stored the same rows.  Any
difference raises :class:`BenchError`.

Each run bills from scratch: invoice ids are deterministic per (customer, subscription,
period, revision) and a rerun emits nothing, so every run gets fresh databases and
topics.  Everything is named ``bench_<random>…`` and deleted at the end.  (The broker
keeps the transactional ids' state until ``transactional.id.expiration.ms``; Kafka
cannot delete it.)  A warm-up, then ``repeats`` timed runs; the order of run and
baseline alternates between runs, and the ClickHouse connections are open before the
clock starts.

Run as ``python bench/bench_invoicing.py [CUSTOMERS]``; it prints the result as JSON.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench_pipeline import BenchError, drop_prefixed, summary
from clickhouse_driver import Client
from confluent_kafka import Consumer, Producer, TopicPartition

from ingest.admin import TopicSpec, ensure_topics, meterline_topics
from invoicing.check import expected_totals, per_unit_prices
from invoicing.customers import Customer, parse_customers
from invoicing.periods import Month, month_period
from invoicing.publish import KafkaPublisher
from invoicing.run import BillingRun, RunResult, run_period
from rating import RateCard, load_rate_card
from schemas.metering.definitions import Aggregation, MeterSet, load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import Engine, Row, ServerEngine
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.sql import lit
from schemas.storage.windows_table import FeedRow, WindowsTable

__all__ = ["invoicing"]

ROOT = Path(__file__).resolve().parent.parent
METERS_FILE = ROOT / "deploy/demo/meters.yaml"
RATE_CARD_FILE = ROOT / "deploy/demo/rate-card.yaml"
MONTH = Month(2026, 10)
PERIOD = month_period(MONTH.label)
GRACE = timedelta(minutes=60)
CUTOFF_S = PERIOD.end_s + 3600
"""The ingestion cutoff: the month's end plus the grace, a whole minute in the past."""
PLANS = (("starter", "USD"), ("pro", "USD"), ("pro", "JPY"))
TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Workload:
    customers: tuple[Customer, ...]
    feed: list[FeedRow]
    truth: dict[tuple[str, str], Decimal]
    """(subject, meter) → usage billed for the month (ingested before the cutoff)."""
    unbilled_rows: int


def _value(rng: random.Random, kind: Aggregation) -> Decimal:
    if kind is Aggregation.COUNT:
        return Decimal(1)
    return Decimal(rng.randint(1, 2_000_000)).scaleb(-rng.choice((0, 3)))


def workload(customers: int, seed: int, namespace: str, meters: MeterSet) -> Workload:
    """Customers in the demo's subscription format, and their usage as feed rows."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not security
    entries: list[dict[str, object]] = []
    for n in range(customers):
        plan, currency = rng.choice(PLANS)
        entry: dict[str, object] = {
            "id": f"cust-{n:05d}",
            "plan": plan,
            "currency": currency,
            "cadence": "monthly",
            "anchor_day": 1,
            "timezone": "UTC",
            "start": date(2025, 1, 1),
        }
        if rng.random() < 0.1:
            entry["subjects"] = [f"cust-{n:05d}-eu", f"cust-{n:05d}-us"]
            entry["subscription"] = "enterprise"
        entries.append(entry)
    parsed = parse_customers({"customers": entries})
    feed: list[FeedRow] = []
    truth: dict[tuple[str, str], Decimal] = {}
    unbilled = 0
    minutes = (PERIOD.end_s - PERIOD.start_s) // 60

    def add(subject: str, meter: str, window_s: int, ingest_s: int, value: Decimal) -> None:
        offset = len(feed)
        feed.append(
            FeedRow(
                namespace=namespace,
                meter=meter,
                subject=subject,
                group_key="{}",
                window_start_s=window_s,
                ingest_minute_s=ingest_s,
                value=value,
                uniq="",
                event_ms=window_s * 1000 + 17,
                source_partition=offset % 4,
                source_offset=offset,
            )
        )

    for customer in parsed:
        for subject in customer.subjects:
            for meter in meters:
                for _ in range(rng.randint(1, 8)):
                    window = PERIOD.start_s + 60 * rng.randrange(minutes)
                    ingest = window + 60 * rng.randint(0, 30)
                    value = _value(rng, meter.aggregation)
                    add(subject, meter.slug, window, ingest, value)
                    key = (subject, meter.slug)
                    truth[key] = truth.get(key, Decimal(0)) + value
                if rng.random() < 0.05:  # arrived after the cutoff: a later adjustment
                    window = PERIOD.end_s - 60 * rng.randint(1, 60)
                    add(subject, meter.slug, window, CUTOFF_S + 60 * rng.randint(0, 5), Decimal(1))
                    unbilled += 1
                if rng.random() < 0.05:  # the next month's usage
                    window = PERIOD.end_s + 60 * rng.randint(0, 30)
                    add(subject, meter.slug, window, window + 60, Decimal(1))
                    unbilled += 1
    return Workload(parsed, feed, truth, unbilled)


class _TimedEngine:
    """An :class:`Engine` that adds up the time spent inside ClickHouse calls."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.name, self.seconds = inner, inner.name, 0.0
        self.cluster = inner.cluster

    def execute(self, sql: str) -> list[Row]:
        start = time.perf_counter()
        try:
            return self.inner.execute(sql)
        finally:
            self.seconds += time.perf_counter() - start

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        start = time.perf_counter()
        try:
            self.inner.insert(table, columns, rows)
        finally:
            self.seconds += time.perf_counter() - start

    def close(self) -> None:
        self.inner.close()


class _TimedPublisher:
    """A publisher that adds up the time spent inside Kafka calls."""

    def __init__(self, inner: KafkaPublisher) -> None:
        self.inner, self.seconds = inner, 0.0

    def publish(self, records: Sequence[tuple[str, bytes]]) -> None:
        start = time.perf_counter()
        try:
            self.inner.publish(records)
        finally:
            self.seconds += time.perf_counter() - start

    def committed(self, keys: Collection[str], since_ms: int) -> set[str]:
        return self.inner.committed(keys, since_ms)


@dataclass(slots=True)
class _Replay:
    """What the baseline sends: the stored rows and published records of a billing run."""

    inserts: list[tuple[str, tuple[str, ...], list[Row]]] = field(default_factory=list)
    records: list[tuple[bytes, bytes]] = field(default_factory=list)


class InvoicingBench:
    def __init__(self, customers: int, seed: int) -> None:
        self.prefix = "bench_" + uuid.uuid4().hex[:8]
        self.settings = Settings()
        self.meters = load_meters(METERS_FILE)
        self.card: RateCard = load_rate_card(RATE_CARD_FILE, known_meters=self.meters.slugs())
        self.work = workload(customers, seed, self.settings.namespace, self.meters)
        self.expected = expected_totals(
            self.work.truth, self.work.customers, per_unit_prices(RATE_CARD_FILE)
        )
        self.replay: _Replay | None = None

    def engine(self) -> ServerEngine:
        return ServerEngine(self.settings.clickhouse_host, self.settings.clickhouse_tcp_port)

    def prepare(self, tag: str) -> None:
        """Databases with the usage (run) and empty tables (baseline), and both topics."""
        engine = self.engine()
        for database in (tag, f"{tag}_bare"):
            ensure_schema(engine, database)
        engine.insert(*WindowsTable(tag).insert_args(self.work.feed))
        engine.close()
        topics = [self._invoices_topic(f"{name}.invoices") for name in (tag, f"{tag}_bare")]
        ensure_topics(self.settings.kafka_bootstrap, topics)

    def _invoices_topic(self, name: str) -> TopicSpec:
        """The topic as the product creates its invoices topic, under another name."""
        settings = self.settings.model_copy(update={"invoices_topic": name})
        return next(spec for spec in meterline_topics(settings) if spec.name == name)

    # -- the billing run -------------------------------------------------------------------
    def bill(self, tag: str) -> dict[str, Any]:
        engine = _TimedEngine(self.engine())
        engine.execute("SELECT 1")  # connect before the clock starts
        since_ms = int(time.time() * 1000) - 60_000
        start = time.perf_counter()
        publisher = _TimedPublisher(
            KafkaPublisher(
                self.settings.kafka_bootstrap, f"{tag}.invoices", self.settings.namespace
            )
        )
        result = run_period(
            BillingRun(
                namespace=self.settings.namespace,
                database=tag,
                period=MONTH,
                customers=self.work.customers,
                card=self.card,
                meters=self.meters,
                grace=GRACE,
                cutoff_s=CUTOFF_S,
            ),
            engine=engine,
            publish=publisher,
            now=datetime.fromtimestamp(CUTOFF_S + 30, UTC),
        )
        seconds = time.perf_counter() - start
        clickhouse_s = engine.seconds
        lines = sum(
            len(invoice.rated.lines) + len(invoice.adjustments) for invoice in result.invoices
        )
        self._check_run(engine.inner, tag, result, publisher, since_ms, lines)
        if self.replay is None:
            self.replay = self._replay(engine.inner, tag)
        engine.close()
        return {
            "seconds": seconds,
            "invoices": len(result.invoices),
            "lines": lines,
            "clickhouse_seconds": clickhouse_s,
            "kafka_seconds": publisher.seconds,
        }

    def _check_run(
        self,
        engine: Engine,
        tag: str,
        result: RunResult,
        publisher: _TimedPublisher,
        since_ms: int,
        lines: int,
    ) -> None:
        ns = self.settings.namespace
        got = {invoice.customer.id: invoice.total for invoice in result.invoices}
        table = InvoicesTable(tag)
        rows = engine.execute(table.for_period(ns, PERIOD.start_s).to_sql())
        stored = {str(r[1]): Decimal(str(r[3])) for r in rows}
        stored_lines = engine.execute(
            f"SELECT count() FROM {table.lines} FINAL WHERE namespace = {lit(ns)}"
        )[0][0]
        ids = [invoice.id for invoice in result.invoices]
        committed = publisher.committed(ids, since_ms)
        problems = []
        if result.still_open or result.recovered or result.already_emitted:
            problems.append("the run found open periods or earlier invoices")
        for name, totals in (("returned", got), ("stored", stored)):
            wrong = sorted(c for c in self.expected if totals.get(c) != self.expected[c])
            if wrong or len(totals) != len(self.expected):
                example = (
                    f" (e.g. {wrong[0]}: {totals.get(wrong[0])}, expected"
                    f" {self.expected[wrong[0]]})"
                    if wrong
                    else ""
                )
                problems.append(
                    f"{name} totals: {len(totals)} invoices for {len(self.expected)} customers,"
                    f" {len(wrong)} differ from the independent check{example}"
                )
        if int(stored_lines) != lines:
            problems.append(f"{stored_lines} lines stored, the invoices have {lines}")
        if committed != set(ids):
            problems.append(f"{len(committed)} of {len(ids)} invoices committed to {tag}.invoices")
        if problems:
            raise BenchError(f"billing run {tag} is not exact: " + "; ".join(problems))

    # -- the baseline ----------------------------------------------------------------------
    def _replay(self, engine: Engine, tag: str) -> _Replay:
        """The rows and records of a run, read back so the baseline can send them again."""
        ns = lit(self.settings.namespace)
        source, empty = InvoicesTable(tag), InvoicesTable("any")
        replay = _Replay()
        for kind, stored, (_, columns, _) in (
            ("drafts", source.drafts, empty.insert_drafts([])),
            ("lines", source.lines, empty.insert_lines([])),
            ("invoices", source.name, empty.insert_invoices([])),
        ):
            select = f"SELECT {', '.join(columns)} FROM {stored} FINAL WHERE namespace = {ns}"
            replay.inserts.append((kind, columns, engine.execute(select)))
        _, columns, drafts = replay.inserts[0]
        key, value = columns.index("invoice_id"), columns.index("document")
        replay.records = [(str(row[key]).encode(), str(row[value]).encode()) for row in drafts]
        return replay

    def _usage_sql(self, tag: str) -> str:
        """Every subject's usage per meter as of the cutoff, in one query."""
        slugs = ", ".join(lit(m.slug) for m in self.meters)
        return (
            "SELECT subject, meter, sumMerge(value_sum), countMerge(event_count)"
            f" FROM {WindowsTable(tag).name} WHERE namespace = {lit(self.settings.namespace)}"
            f" AND meter IN ({slugs}) AND window_start >= toDateTime({PERIOD.start_s})"
            f" AND window_start < toDateTime({PERIOD.end_s})"
            f" AND ingest_minute < toDateTime({CUTOFF_S}) GROUP BY subject, meter"
        )

    def _usage(self, rows: list[Row]) -> dict[tuple[str, str], Decimal]:
        """The baseline's rows as (subject, meter) → value; SUM and COUNT meters only."""
        out = {}
        for subject, meter, total, count in rows:
            kind = self.meters.get(str(meter)).aggregation
            if kind not in (Aggregation.SUM, Aggregation.COUNT):
                raise BenchError(f"the baseline reads SUM and COUNT meters only, not {kind}")
            value = Decimal(count) if kind is Aggregation.COUNT else Decimal(str(total))
            out[(str(subject), str(meter))] = value
        return out

    def baseline(self, tag: str) -> dict[str, Any]:
        """Read the usage, insert the rows, commit the records: bare clients, same order."""
        assert self.replay is not None
        bare = f"{tag}_bare"
        table = InvoicesTable(bare)
        names = {"drafts": table.drafts, "lines": table.lines, "invoices": table.name}
        inserts = [
            (f"INSERT INTO {names[kind]} ({', '.join(columns)}) VALUES", rows)
            for kind, columns, rows in self.replay.inserts
        ]
        topic = f"{bare}.invoices"
        client = Client(host=self.settings.clickhouse_host, port=self.settings.clickhouse_tcp_port)
        client.execute("SELECT 1")  # connect before the clock starts
        sql = self._usage_sql(tag)
        start = time.perf_counter()
        producer = Producer(  # built first, as the run builds its publisher first
            {
                "bootstrap.servers": self.settings.kafka_bootstrap,
                "transactional.id": f"{bare}-baseline",
                "enable.idempotence": True,
                "acks": "all",
                "transaction.timeout.ms": 60_000,
            }
        )
        usage = client.execute(sql)
        client.execute(*inserts[0])
        producer.init_transactions(TIMEOUT)
        producer.begin_transaction()
        for key, value in self.replay.records:
            producer.produce(topic, key=key, value=value)
        producer.commit_transaction(TIMEOUT)
        for insert in inserts[1:]:
            client.execute(*insert)
        seconds = time.perf_counter() - start
        counts = [int(client.execute(f"SELECT count() FROM {n}")[0][0]) for n in names.values()]
        client.disconnect()
        expected = [len(rows) for _, _, rows in self.replay.inserts]
        records = len(self.replay.records)
        on_topic = _end_offset(self.settings.kafka_bootstrap, topic, records)
        same_usage = self._usage(usage) == self.work.truth
        if not same_usage or counts != expected or on_topic < len(self.replay.records):
            raise BenchError(
                f"baseline {bare} is not the same I/O: usage equal to the truth {same_usage}, "
                f"rows {counts} of {expected}, {on_topic} topic offsets for "
                f"{len(self.replay.records)} records"
            )
        return {"seconds": seconds, "invoices": len(self.replay.records)}

    # -- isolation -------------------------------------------------------------------------
    def cleanup(self) -> dict[str, int]:
        engine = self.engine()
        topics, databases = drop_prefixed(self.settings.kafka_bootstrap, engine, self.prefix)
        engine.close()
        return {"topics": topics, "databases": databases}


def _end_offset(bootstrap: str, topic: str, at_least: int) -> int:
    """The topic's end offset, polled until it reaches ``at_least`` or a deadline passes."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check"})
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT)
            if end >= at_least or time.monotonic() > deadline:
                return int(end)
            time.sleep(0.1)
    finally:
        consumer.close()


def invoicing(customers: int = 2000, seed: int = 7, repeats: int = 5) -> dict[str, Any]:
    """Bill ``customers`` subscriptions for a closed month: a warm-up, then ``repeats``
    timed runs, each next to the bare-I/O baseline; medians, spreads and their ratio."""
    if time.time() < CUTOFF_S:
        raise BenchError(f"the cutoff {CUTOFF_S} is in the future: check the clock")
    wall = time.perf_counter()
    bench = InvoicingBench(customers, seed)
    runs: list[dict[str, Any]] = []
    bases: list[dict[str, Any]] = []
    try:
        for number in range(repeats + 1):
            tag = f"{bench.prefix}_{number}"
            bench.prepare(tag)
            if number % 2 == 0:  # the warm-up bills first: the baseline replays its rows
                run, base = bench.bill(tag), bench.baseline(tag)
            else:
                base, run = bench.baseline(tag), bench.bill(tag)
            if number:
                runs.append(run)
                bases.append(base)
            print(
                f"{'run' if number else 'warm-up'} {number}: {run['invoices']} invoices in "
                f"{run['seconds']:.2f}s, baseline {base['seconds']:.2f}s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        cleaned = bench.cleanup()
    invoice_rates = summary([r["invoices"] / r["seconds"] for r in runs])
    baseline_rates = summary([b["invoices"] / b["seconds"] for b in bases])
    return {
        "benchmark": "invoicing.run.run_period",
        "month": MONTH.label,
        "customers": customers,
        "subjects": sum(len(c.subjects) for c in bench.work.customers),
        "feed_rows": len(bench.work.feed),
        "unbilled_feed_rows": bench.work.unbilled_rows,
        "seed": seed,
        "repeats": repeats,
        "invoices": runs[-1]["invoices"],
        "lines": runs[-1]["lines"],
        "runs": invoice_rates,
        "lines_per_second": summary([r["lines"] / r["seconds"] for r in runs]),
        "seconds": summary([r["seconds"] for r in runs]),
        "clickhouse_seconds": summary([r["clickhouse_seconds"] for r in runs]),
        "kafka_seconds": summary([r["kafka_seconds"] for r in runs]),
        "baseline": baseline_rates,
        "baseline_seconds": summary([b["seconds"] for b in bases]),
        "ratio": invoice_rates["median"] / baseline_rates["median"],
        "exact": True,
        "cleanup": cleaned,
        "wall_seconds": time.perf_counter() - wall,
    }


if __name__ == "__main__":
    result = invoicing(int(sys.argv[1])) if len(sys.argv) > 1 else invoicing()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
