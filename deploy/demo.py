"""``make demo``: the whole pipeline on generated telemetry, checked against the truth,
left running.

1. create the topics and tables;
2. generate telemetry for the month before last (M-2) and last month (M-1) for several
   customers (with retries and disorder) and send it through the producer SDK;
3. start the always-on metering worker (supervised, ``deploy/pipeline.py``) and wait
   until it has committed every record, showing progress;
4. close M-2: rate it and emit its invoices (Kafka ``invoices`` topic, transactional,
   and ClickHouse);
5. send a few *late* events timestamped in M-2 — after its invoices were issued — and
   meter them;
6. grant globex 25.00 USD of prepaid credit, then close M-1: its invoices carry
   adjustment lines for M-2's late usage, globex's a credit line recomputed from its
   other lines (``deploy/demo_credit.py``); a customer that changed plan in the middle
   of M-1 gets two invoices with prorated fees, checked against a computation by hand
   (``deploy/demo_plan_change.py``);
7. write one HTML invoice and a CSV of the lines, and print their paths;
8. recompute every total independently from the generated events (duplicates excluded):
   usage per month, and the late usage's adjustment per customer; print PASS, or FAIL
   and exit 1;
9. start the API, the alerts evaluator (``deploy/demo/thresholds.yaml``), a webhook
   receiver (``deploy/demo_receiver.py``) and live telemetry for the current period;
   wait for the first alert of the period at the receiver and print it, then the
   dashboard URL: everything keeps running until ``make down``.

Each close bills usage ingested before its cutoff, the first whole minute after the
close starts, and waits for that minute to end: the minutes holding the events it must
bill are then closed, whatever second of the minute the demo reached (steps 4-6 are run
at both ends of a minute by ``tests/e2e/test_demo.py``).  Running it again is safe: the
telemetry is deterministic, so every event is a duplicate of one already metered and
every invoice already exists; the check then reads the stored invoices.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deploy"))

import pipeline  # noqa: E402
from demo_credit import CUSTOMER as credit_customer  # noqa: E402
from demo_credit import credit_check, grant_credit  # noqa: E402
from demo_plan_change import plan_change_step  # noqa: E402
from demo_receiver import show_alerts  # noqa: E402
from demo_verify import verify_one_line  # noqa: E402
from pidfiles import StackError  # noqa: E402

from ingest import UsageProducer  # noqa: E402
from ingest.admin import ensure_topics, meterline_topics  # noqa: E402
from ingest.telemetry import Telemetry, generate  # noqa: E402
from invoicing.check import expected_adjustments, expected_totals, per_unit_prices  # noqa: E402
from invoicing.customers import Customer, load_customers  # noqa: E402
from invoicing.document import InvoiceDocument  # noqa: E402
from invoicing.documents import lines_csv, render_html  # noqa: E402
from invoicing.periods import Period, month_period  # noqa: E402
from invoicing.publish import KafkaPublisher  # noqa: E402
from invoicing.report import invoices_table  # noqa: E402
from invoicing.run import BillingRun, run_period  # noqa: E402
from rating import RateCard, load_rate_card  # noqa: E402
from schemas.errors import MeterlineError  # noqa: E402
from schemas.metering.definitions import MeterSet, load_meters  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.invoices_table import InvoicesTable  # noqa: E402
from streams.cli import run_migrate  # noqa: E402
from streams.progress import consumer_lag  # noqa: E402

EVENTS_PER_SUBJECT = 3000
ALERT_WAIT_S = 180.0
LATE_EVENTS_PER_SUBJECT = 4
SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]
Document = InvoiceDocument


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def month_before(period: Period) -> Period:
    return month_period((period.start - timedelta(days=1)).strftime("%Y-%m"))


def wait_for_worker(settings: Settings, alive: Callable[[], bool], log: Path) -> None:
    """Until the worker has committed every record; progress in Kafka records."""
    deadline = time.monotonic() + 300
    last = ""
    while time.monotonic() < deadline:
        if not alive():
            raise SystemExit(f"FAIL: the worker is not running; see {log}")
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
    with UsageProducer(
        settings.kafka_bootstrap, settings.events_topic, compression=settings.kafka_compression
    ) as producer:
        producer.send_many(telemetry.events)
    print(
        f"    sent {producer.report.delivered} {what} events ({telemetry.unique} unique, "
        f"{telemetry.duplicates} duplicates) in {time.monotonic() - started:.1f}s, all acknowledged"
    )


def close_month(demo: Demo, period: Period) -> list[Document]:
    """Bill the month and return its invoices: the ones just issued, else the stored ones."""
    settings, engine = demo.settings, demo.engine
    result = run_period(
        BillingRun(
            namespace=settings.namespace,
            database=settings.clickhouse_database,
            period=period,
            customers=demo.customers,
            card=demo.card,
            meters=demo.meters,
        ),
        engine=engine,
        publish=KafkaPublisher(
            settings.kafka_bootstrap, settings.invoices_topic, settings.namespace
        ),
        progress=lambda: consumer_lag(
            settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic
        ),
        report=lambda text: print(f"    {text}", flush=True),
    )
    ids = sorted(set(result.emitted) | set(result.already_emitted))
    table = InvoicesTable(settings.clickhouse_database)
    rows = engine.execute(table.documents(settings.namespace, ids).to_sql())
    documents = [InvoiceDocument.from_json(str(row[2])) for row in rows]
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
        customer = doc.customer_id
        got = Decimal(doc.usage_total)
        mark = "ok" if got == usage[customer] else "MISMATCH"
        ok &= got == usage[customer]
        print(
            f"    {doc.period.label} {customer:<10} {doc.currency} usage "
            f"{got:>10}  independent {usage[customer]:>10}  {mark}"
        )
        if adjustments is None or adjusted is None:
            continue
        late = sum(
            (
                Decimal(line.amount)
                for line in doc.lines
                if line.kind == "adjustment" and line.adjusts.period.label == adjusted.label
            ),
            Decimal(0),
        )
        mark = "ok" if late == adjustments[customer] else "MISMATCH"
        ok &= late == adjustments[customer]
        ok &= Decimal(doc.total) == sum((Decimal(line.amount) for line in doc.lines), Decimal(0))
        print(
            f"    {doc.period.label} {customer:<10} {doc.currency} late usage of "
            f"{adjusted.label} {late:>6}  independent {adjustments[customer]:>6}  {mark}"
        )
    return ok


@dataclass(frozen=True)
class Demo:
    """What the billing steps need: the pipeline's settings and configuration, the two
    months and their generated telemetry."""

    settings: Settings
    engine: ServerEngine
    meters: MeterSet
    card: RateCard
    customers: list[Customer]
    prices: dict[tuple[str, str, str], Decimal]
    """``(plan, currency, meter) → unit price`` of the card's per-unit charges."""
    before_last: Period
    last: Period
    months: dict[str, Telemetry]
    worker_alive: Callable[[], bool]
    worker_log: Path


def load(settings: Settings, engine: ServerEngine, events_per_subject: int) -> Demo:
    """The demo's configuration and its deterministic telemetry for M-2 and M-1."""
    meters = load_meters(ROOT / settings.meters_file)
    last = month_before(month_period(datetime.now(UTC).strftime("%Y-%m")))
    before_last = month_before(last)
    months = {
        period.label: generate(
            SUBJECTS,
            period.start,
            period.end - period.start,
            events_per_subject,
            seed=2026,  # the same ids and contents as earlier demo runs sent for a month
            id_prefix=f"{period.label}-",
        )
        for period in (before_last, last)
    }
    return Demo(
        settings=settings,
        engine=engine,
        meters=meters,
        card=load_rate_card(ROOT / settings.rate_card_file, known_meters=meters.slugs()),
        customers=list(load_customers(ROOT / settings.customers_file)),
        prices=per_unit_prices(ROOT / settings.rate_card_file),
        before_last=before_last,
        last=last,
        months=months,
        worker_alive=lambda: True,
        worker_log=Path(),
    )


def billing_steps(demo: Demo) -> tuple[bool, list[Document]]:
    """Close M-2, meter late M-2 usage, close M-1, check everything: (ok, M-1 invoices)."""
    settings, before_last, last = demo.settings, demo.before_last, demo.last
    step(f"Closing {before_last.label}: rating it and emitting its invoices")
    first = close_month(demo, before_last)

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
    wait_for_worker(settings, demo.worker_alive, demo.worker_log)

    grant_credit(demo, step)
    step(f"Closing {last.label}: its invoices adjust {before_last.label} for the late usage")
    second = close_month(demo, last)

    step("Adjustment lines produced by late events")
    for doc in second:
        for line in doc.lines:
            if line.kind == "adjustment":
                print(
                    f"    {doc.invoice_id} {doc.customer_id:<10} adjusts "
                    f"{line.adjusts.period.label} (invoice "
                    f"{line.adjusts.invoice_id}): {line.meter} +{line.quantity} "
                    f"→ {line.amount} {doc.currency}"
                )

    step("Checking invoices against totals computed independently from the events")
    truth = {label: telemetry.truth for label, telemetry in demo.months.items()}
    ok = check(
        first,
        expected_totals(truth[before_last.label], demo.customers, demo.prices),
        None,
        None,
    )
    ok &= check(
        second,
        expected_totals(truth[last.label], demo.customers, demo.prices),
        expected_adjustments(truth[before_last.label], late.truth, demo.customers, demo.prices),
        before_last,
    )
    ok &= len(first) == len(second) == len(demo.customers)
    ok &= any(line.kind == "adjustment" for d in second for line in d.lines)
    step(f"Prepaid credit applied on {credit_customer}'s {last.label} invoice")
    ok &= credit_check(demo, second, last)
    return ok, second


def write_documents(home: Path, last: Period, second: list[Document]) -> None:
    out = home / "invoices"
    out.mkdir(parents=True, exist_ok=True)
    shown = next(
        (d for d in second if any(line.kind == "adjustment" for line in d.lines)),
        second[0],
    )
    html = out / f"{shown.invoice_id}.html"
    html.write_text(render_html(shown), encoding="utf-8")
    csv_path = out / f"lines-{last.label}.csv"
    csv_path.write_text(lines_csv(second), encoding="utf-8")
    print(f"    HTML invoice: {html}")
    print(f"    CSV of {last.label} lines: {csv_path}")


def main() -> int:
    os.environ.setdefault("METERLINE_WORKER_METRICS_PORT", str(pipeline.ports()[0]))
    os.environ.setdefault("METERLINE_ALERTS_PORT", str(pipeline.alerts_port()))
    os.environ.setdefault("METERLINE_THRESHOLDS_FILE", str(ROOT / "deploy/demo/thresholds.yaml"))
    os.environ.setdefault("METERLINE_FEATURES_FILE", str(ROOT / "deploy/demo/features.yaml"))
    os.environ.setdefault("METERLINE_WEBHOOKS_FILE", str(ROOT / "deploy/demo/webhooks.yaml"))
    settings = Settings()
    home = pipeline.home()
    step(
        f"Topics on Kafka {settings.kafka_bootstrap}, tables in ClickHouse database "
        f"{settings.clickhouse_database}"
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    run_migrate(settings)  # creates a new database; migrates one of an earlier build

    demo = load(settings, engine, EVENTS_PER_SUBJECT)
    step(
        f"Generating {demo.before_last.label} and {demo.last.label} telemetry for "
        f"{len(SUBJECTS)} subjects (10% re-sent duplicates, shuffled out of order)"
    )
    for label, telemetry in demo.months.items():
        send(settings, telemetry, label)

    step("Starting the always-on metering worker (supervised) and waiting until it caught up")
    worker = next(p for p in pipeline.processes() if p.name == "worker")
    print(f"    worker {pipeline.start(worker)}; log {pipeline.log_file(worker)}", flush=True)
    demo = replace(
        demo,
        worker_alive=lambda: pipeline.running(worker) is not None,
        worker_log=pipeline.log_file(worker),
    )
    wait_for_worker(settings, demo.worker_alive, demo.worker_log)

    ok, second = billing_steps(demo)
    ok &= plan_change_step(demo, close_month, step)
    write_documents(home, demo.last, second)
    print()
    print(
        "Live usage: ClickHouse HTTP at "
        f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/ (tables "
        f"{settings.clickhouse_database}.meter_windows and .usage_events; invoices in "
        f"{settings.clickhouse_database}.invoices and topic {settings.invoices_topic})"
    )
    print("PASS" if ok else "FAIL", flush=True)
    if not ok:
        return 1
    step(
        "Leaving the pipeline running: worker, API, alerts evaluator, webhook receiver, and"
        " live telemetry for the current period"
    )
    for proc in pipeline.processes():
        print(f"    {proc.name:<7} {pipeline.start(proc)}; log {pipeline.log_file(proc)}")
    api = f"http://127.0.0.1:{pipeline.ports()[1]}"
    if not verify_one_line(settings, second, api, step):
        print("FAIL: the line does not verify", flush=True)
        return 1
    step("Usage alerts: waiting for the first alert of this period at the demo's receiver")
    if not show_alerts(ALERT_WAIT_S):
        print(f"FAIL: no alert reached the receiver within {ALERT_WAIT_S:.0f}s", flush=True)
        return 1
    print(pipeline.banner(), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (MeterlineError, StackError) as exc:
        print(f"error: {exc}\nFAIL", file=sys.stderr)
        sys.exit(2)
