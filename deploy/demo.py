"""``make demo``: the whole pipeline on generated telemetry, checked against the truth.

1. create the topics and tables;
2. generate telemetry for the month before last (M-2) and last month (M-1) for several
   customers (with retries and disorder) and send it through the producer SDK;
3. run the Faust worker until it has committed every record, showing progress;
4. close M-2: rate it and emit its invoices (Kafka ``invoices`` topic, transactional,
   and ClickHouse);
5. send a few *late* events timestamped in M-2 — after its invoices were issued — and
   meter them;
6. close M-1: its invoices carry adjustment lines for M-2's late usage;
7. write one HTML invoice and a CSV of the lines, and print their paths;
8. recompute every total independently from the generated events (duplicates excluded):
   usage per month, and the late usage's adjustment per customer; print PASS, or FAIL
   and exit 1.

Each close waits for its ingestion cutoff (the next whole minute) to pass, so the demo
takes one to two minutes.  Running it again is safe: the telemetry is deterministic, so
every event is a duplicate of one already metered and every invoice already exists; the
check then reads the stored invoices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import UsageProducer  # noqa: E402
from ingest.admin import ensure_topics, meterline_topics  # noqa: E402
from ingest.telemetry import Telemetry, generate  # noqa: E402
from invoicing.check import expected_adjustments, expected_totals, per_unit_prices  # noqa: E402
from invoicing.customers import Customer, load_customers  # noqa: E402
from invoicing.documents import lines_csv, render_html  # noqa: E402
from invoicing.periods import Period, month_period  # noqa: E402
from invoicing.publish import KafkaPublisher  # noqa: E402
from invoicing.report import invoices_table  # noqa: E402
from invoicing.run import run_period  # noqa: E402
from rating import RateCard, load_rate_card  # noqa: E402
from schemas.errors import MeterlineError  # noqa: E402
from schemas.meters import MeterSet, load_meters  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.invoices_table import InvoicesTable  # noqa: E402
from streams.processes import stop_process_group  # noqa: E402
from streams.progress import consumer_lag  # noqa: E402

EVENTS_PER_SUBJECT = 3000
LATE_EVENTS_PER_SUBJECT = 4
SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]
Document = dict[str, Any]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def month_before(period: Period) -> Period:
    return month_period((period.start - timedelta(days=1)).strftime("%Y-%m"))


def start_worker(log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's whole process group (it runs a child process), then wait."""
    stop_process_group(worker, grace=30)


def wait_for_worker(settings: Settings, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    last = ""
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"FAIL: the worker exited with {worker.returncode}; see {log}")
        lag = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
        line = f"    metered {lag.processed:>7} / {lag.produced} records (lag {lag.total})"
        if line != last:
            print(line, flush=True)
            last = line
        if lag.produced and lag.total == 0:
            return
        time.sleep(0.5)
    raise SystemExit(f"FAIL: the worker did not catch up within 300s; see {log}")


def send(settings: Settings, telemetry: Telemetry, what: str) -> None:
    started = time.monotonic()
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(telemetry.events)
    print(
        f"    sent {producer.report.delivered} {what} events ({telemetry.unique} unique, "
        f"{telemetry.duplicates} duplicates) in {time.monotonic() - started:.1f}s, all acknowledged"
    )


def close_month(
    settings: Settings,
    engine: ServerEngine,
    period: Period,
    customers: Sequence[Customer],
    card: RateCard,
    meters: MeterSet,
) -> list[Document]:
    """Bill the month and return its invoices: the ones just issued, else the stored ones."""
    result = run_period(
        namespace=settings.namespace,
        database=settings.clickhouse_database,
        period=period,
        customers=customers,
        card=card,
        meters=meters,
        engine=engine,
        publish=KafkaPublisher(
            settings.kafka_bootstrap, settings.invoices_topic, settings.namespace
        ),
        progress=lambda: consumer_lag(
            settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic
        ),
        report=lambda text: print(f"    {text}", flush=True),
    )
    ids = set(result.emitted) | set(result.already_emitted)
    rows = engine.execute(
        InvoicesTable(settings.clickhouse_database)
        .for_period(settings.namespace, period.start_s)
        .to_sql()
    )
    documents = [orjson.loads(str(row[4])) for row in rows if str(row[0]) in ids]
    print(invoices_table(documents))
    print(
        f"    {len(result.emitted)} invoices issued now, {len(result.already_emitted)} "
        f"issued before (a rerun emits nothing new); usage cutoff "
        f"{datetime.fromtimestamp(result.cutoff_s, UTC):%Y-%m-%dT%H:%MZ}"
    )
    return documents


def check(
    documents: list[Document],
    usage: dict[str, Decimal],
    adjustments: dict[str, Decimal] | None,
    adjusted: Period | None,
) -> bool:
    ok = True
    for doc in documents:
        customer = doc["customer_id"]
        got = Decimal(doc["usage_total"])
        mark = "ok" if got == usage[customer] else "MISMATCH"
        ok &= got == usage[customer]
        print(
            f"    {doc['period']['label']} {customer:<10} {doc['currency']} usage "
            f"{got:>10}  independent {usage[customer]:>10}  {mark}"
        )
        if adjustments is None or adjusted is None:
            continue
        late = sum(
            (
                Decimal(line["amount"])
                for line in doc["lines"]
                if line["kind"] == "adjustment"
                and line["adjusts"]["period"]["label"] == adjusted.label
            ),
            Decimal(0),
        )
        mark = "ok" if late == adjustments[customer] else "MISMATCH"
        ok &= late == adjustments[customer]
        ok &= Decimal(doc["total"]) == sum(
            (Decimal(line["amount"]) for line in doc["lines"]), Decimal(0)
        )
        print(
            f"    {doc['period']['label']} {customer:<10} {doc['currency']} late usage of "
            f"{adjusted.label} {late:>6}  independent {adjustments[customer]:>6}  {mark}"
        )
    return ok


def main() -> int:
    settings = Settings()
    home = Path(os.environ.get("METERLINE_HOME", Path.home() / ".cache/meterline"))
    meters = load_meters(ROOT / settings.meters_file)
    card = load_rate_card(ROOT / settings.rate_card_file, known_meters=meters.slugs())
    customers = load_customers(ROOT / settings.customers_file)
    prices = per_unit_prices(ROOT / settings.rate_card_file)
    last = month_before(month_period(datetime.now(UTC).strftime("%Y-%m")))
    before_last = month_before(last)

    step(
        f"Topics on Kafka {settings.kafka_bootstrap}, tables in ClickHouse database "
        f"{settings.clickhouse_database}"
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    ensure_schema(engine, settings.clickhouse_database)

    step(
        f"Generating {before_last.label} and {last.label} telemetry for {len(SUBJECTS)} "
        "subjects (10% re-sent duplicates, shuffled out of order)"
    )
    months = {
        period.label: generate(
            SUBJECTS,
            period.start,
            period.end - period.start,
            EVENTS_PER_SUBJECT,
            seed=2026,  # the same ids and contents as earlier demo runs sent for a month
            id_prefix=f"{period.label}-",
        )
        for period in (before_last, last)
    }
    for label, telemetry in months.items():
        send(settings, telemetry, label)

    step("Running the metering worker until it has caught up")
    log = home / "logs" / "demo-worker.log"
    worker = start_worker(log)
    try:
        wait_for_worker(settings, worker, log)
        step(f"Closing {before_last.label}: rating it and emitting its invoices")
        first = close_month(settings, engine, before_last, customers, card, meters)

        step(f"Late usage: {before_last.label} events arriving after its invoices")
        late = generate(
            SUBJECTS,
            before_last.start,
            before_last.end - before_last.start,
            LATE_EVENTS_PER_SUBJECT,
            seed=77,
            duplicate_ratio=0.0,
            id_prefix=f"{before_last.label}-late-",
        )
        send(settings, late, f"late {before_last.label}")
        wait_for_worker(settings, worker, log)

        step(f"Closing {last.label}: its invoices adjust {before_last.label} for the late usage")
        second = close_month(settings, engine, last, customers, card, meters)
    finally:
        stop_worker(worker)
    print(f"    worker log: {log}")

    step("Adjustment lines produced by late events")
    for doc in second:
        for line in doc["lines"]:
            if line["kind"] == "adjustment":
                print(
                    f"    {doc['invoice_id']} {doc['customer_id']:<10} adjusts "
                    f"{line['adjusts']['period']['label']} (invoice "
                    f"{line['adjusts']['invoice_id']}): {line['meter']} +{line['quantity']} "
                    f"→ {line['amount']} {doc['currency']}"
                )

    out = home / "invoices"
    out.mkdir(parents=True, exist_ok=True)
    shown = next(
        (d for d in second if any(line["kind"] == "adjustment" for line in d["lines"])),
        second[0],
    )
    html = out / f"{shown['invoice_id']}.html"
    html.write_text(render_html(shown), encoding="utf-8")
    csv_path = out / f"lines-{last.label}.csv"
    csv_path.write_text(lines_csv(second), encoding="utf-8")
    print(f"    HTML invoice: {html}")
    print(f"    CSV of {last.label} lines: {csv_path}")

    step("Checking invoices against totals computed independently from the events")
    ok = check(
        first, expected_totals(months[before_last.label].truth, customers, prices), None, None
    )
    ok &= check(
        second,
        expected_totals(months[last.label].truth, customers, prices),
        expected_adjustments(months[before_last.label].truth, late.truth, customers, prices),
        before_last,
    )
    ok &= len(first) == len(second) == len(customers)
    ok &= any(line["kind"] == "adjustment" for d in second for line in d["lines"])
    print()
    print(
        "Live usage: ClickHouse HTTP at "
        f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/ (tables "
        f"{settings.clickhouse_database}.meter_windows and .usage_events; invoices in "
        f"{settings.clickhouse_database}.invoices and topic {settings.invoices_topic})"
    )
    print("Stop the services with `make down`.")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MeterlineError as exc:
        print(f"error: {exc}\nFAIL", file=sys.stderr)
        sys.exit(2)
