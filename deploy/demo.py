"""``make demo``: the whole pipeline on generated telemetry, checked against the truth.

1. create the topics and tables;
2. generate last month's telemetry for several customers (with retries and disorder)
   and send it through the producer SDK;
3. run the Faust worker until it has committed every record, showing progress;
4. close last month, rate it and emit the invoices (Kafka topic + ClickHouse);
5. recompute every invoice total independently from the generated events (duplicates
   excluded) and print PASS, or FAIL and exit 1.

Running it again is safe: the telemetry is deterministic, so every event is a duplicate
of one already metered, and every invoice already exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import UsageProducer  # noqa: E402
from ingest.admin import ensure_topics, meterline_topics  # noqa: E402
from ingest.telemetry import generate  # noqa: E402
from invoicing.check import expected_totals, per_unit_prices  # noqa: E402
from invoicing.customers import load_customers  # noqa: E402
from invoicing.periods import month_period  # noqa: E402
from invoicing.report import invoices_table  # noqa: E402
from invoicing.run import KafkaPublisher, run_period  # noqa: E402
from rating import load_rate_card  # noqa: E402
from schemas.errors import MeterlineError  # noqa: E402
from schemas.meters import load_meters  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from streams.progress import consumer_lag  # noqa: E402

EVENTS_PER_SUBJECT = 3000
SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def last_month(now: datetime) -> str:
    first = now.replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


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


def main() -> int:
    settings = Settings()
    home = Path(os.environ.get("METERLINE_HOME", Path.home() / ".cache/meterline"))
    meters = load_meters(ROOT / settings.meters_file)
    card = load_rate_card(ROOT / settings.rate_card_file, known_meters=meters.slugs())
    customers = load_customers(ROOT / settings.customers_file)
    period = month_period(last_month(datetime.now(UTC)))

    step(
        f"Topics on Kafka {settings.kafka_bootstrap}, tables in ClickHouse database "
        f"{settings.clickhouse_database}"
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    ensure_schema(engine, settings.clickhouse_database)

    step(
        f"Generating {period.label} telemetry for {len(SUBJECTS)} subjects "
        "(10% re-sent duplicates, shuffled out of order)"
    )
    telemetry = generate(
        SUBJECTS,
        period.start,
        period.end - period.start,
        EVENTS_PER_SUBJECT,
        seed=2026,
        id_prefix=f"{period.label}-",
    )
    started = time.monotonic()
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(telemetry.events)
    elapsed = time.monotonic() - started
    print(
        f"    sent {producer.report.delivered} events ({telemetry.unique} unique, "
        f"{telemetry.duplicates} duplicates) in {elapsed:.1f}s, all acknowledged"
    )

    step("Running the metering worker until it has caught up")
    log = home / "logs" / "demo-worker.log"
    worker = start_worker(settings, log)
    try:
        wait_for_worker(settings, worker, log)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    print(f"    worker log: {log}")

    step(f"Closing {period.label}, rating it and emitting invoices")
    result = run_period(
        namespace=settings.namespace,
        database=settings.clickhouse_database,
        period=period,
        customers=customers,
        card=card,
        meters=meters,
        engine=engine,
        publish=KafkaPublisher(settings.kafka_bootstrap, settings.invoices_topic),
    )
    print(invoices_table(result.invoices))
    print(
        f"    emitted {len(result.emitted)} new invoices to topic {settings.invoices_topic} and "
        f"table {settings.clickhouse_database}.invoices; {len(result.already_emitted)} "
        "existed already (a rerun emits nothing new)"
    )

    step("Checking invoice totals against totals computed independently from the events")
    expected = expected_totals(
        telemetry.truth, customers, per_unit_prices(ROOT / settings.rate_card_file)
    )
    ok = True
    for invoice in result.invoices:
        want = expected[invoice.customer.id]
        mark = "ok" if invoice.total == want else "MISMATCH"
        ok &= invoice.total == want
        print(
            f"    {invoice.customer.id:<10} {invoice.rated.currency} pipeline {invoice.total:>12}"
            f"  independent {want:>12}  {mark}"
        )
    print()
    print(
        "Live usage: ClickHouse HTTP at "
        f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}/ (tables "
        f"{settings.clickhouse_database}.meter_windows and .usage_events; sample dashboard "
        "queries in docs/dashboard.md)"
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
