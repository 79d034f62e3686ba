"""An upgrade as an operator runs it, on the real Kafka and ClickHouse: the worker of the
last build before migrations (checked out from this repository's history) creates its
layout and meters; that build's billing command issues October's invoices;
``python -m streams migrate`` runs while that worker keeps metering a stream of events;
then the current worker takes over.  Totals, raw events, minute windows and invoices are
the same before and after, and exact."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ingest import UsageProducer
from ingest.telemetry import Telemetry, generate
from invoicing.customers import load_customers
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import (
    CURRENT_VERSION,
    SchemaNotCurrent,
    applied_versions,
    require_current,
)
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.windows_table import MeterQuery, UsageQuery, WindowSize
from tests.conftest import ROOT, WorkerProcess, settings_env, wait_until
from tests.e2e.pipeline_kit import (
    SUBJECTS,
    bill_october,
    checkout,
    stored_totals,
    wait_caught_up,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PREVIOUS_BUILD = "16e5b7b"
"""The last commit before schema migrations (its layout is ``layouts/v1.sql``)."""
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)
NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def previous_build(tmp_path: Path) -> Iterator[Path]:
    """A checkout of the last build before migrations."""
    with checkout(PREVIOUS_BUILD, tmp_path / "previous") as path:
        yield path


def start_worker(workers: WorkerProcess, root: Path) -> subprocess.Popen[bytes]:
    with open(workers.log_dir / f"worker-{len(workers.procs)}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            cwd=root,
            env=settings_env(workers.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    workers.procs.append(proc)
    return proc


def merged(*parts: Telemetry) -> dict[tuple[str, str], Decimal]:
    truth: dict[tuple[str, str], Decimal] = {}
    for part in parts:
        for key, value in part.truth.items():
            truth[key] = truth.get(key, Decimal(0)) + value
    return truth


def minute_windows(engine: ServerEngine, settings: Settings) -> list[tuple[object, ...]]:
    """Every meter's minute windows of October, per subject (what the upgrade must keep)."""
    out: list[tuple[object, ...]] = []
    for meter in load_meters(settings.meters_file):
        start = int(OCTOBER.timestamp())
        query = MeterQuery(
            settings.namespace,
            meter.slug,
            meter.aggregation,
            start,
            start + 31 * 86400,
            WindowSize.MINUTE,
        )
        out += [
            (meter.slug, *row)
            for row in engine.execute(
                query.on(f"{settings.clickhouse_database}.meter_windows").to_sql()
            )
        ]
    return out


def bill(settings: Settings, engine: ServerEngine) -> list[str]:
    result = bill_october(settings, engine)
    return sorted([*result.emitted, *result.already_emitted])


def bill_with(root: Path, settings: Settings, engine: ServerEngine) -> list[str]:
    """Bill October with the billing command of the build checked out at ``root`` and its
    own demo configuration, as an operator did before upgrading; the invoices issued."""
    env = settings_env(settings)
    for name in ("meters_file", "customers_file", "rate_card_file"):
        env[f"METERLINE_{name.upper()}"] = str(
            root / "deploy/demo" / Path(getattr(settings, name)).name
        )
    done = subprocess.run(
        [sys.executable, "-m", "invoicing", "run", "--period", "2026-10", "--grace", "0"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = engine.execute(f"SELECT invoice_id FROM {settings.clickhouse_database}.invoices")
    return sorted(str(row[0]) for row in rows)


def invoices(engine: ServerEngine, settings: Settings) -> list[tuple[object, ...]]:
    return engine.execute(
        f"SELECT invoice_id, total, document FROM {settings.clickhouse_database}.invoices"
        " ORDER BY invoice_id"
    )


def usage_at(engine: ServerEngine, settings: Settings, cutoff_s: int) -> list[object]:
    """Every meter's usage of October per subject, as of an ingestion cutoff."""
    start = int(OCTOBER.timestamp())
    return [
        (meter.slug, *row)
        for meter in load_meters(settings.meters_file)
        for row in engine.execute(
            UsageQuery(
                settings.namespace,
                meter.slug,
                meter.aggregation,
                start,
                start + 31 * 86400,
                None,
                cutoff_s,
            )
            .on(f"{settings.clickhouse_database}.meter_windows")
            .to_sql()
        )
    ]


def test_migrate_while_the_previous_worker_meters_keeps_every_event(
    isolated: Settings, workers: WorkerProcess, previous_build: Path
) -> None:
    settings = isolated
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    # October is metered and billed before the upgrade; November flows during and after
    before = generate(SUBJECTS, OCTOBER, timedelta(days=31), 300, seed=41, id_prefix="a-")
    during = generate(SUBJECTS, NOVEMBER, timedelta(days=30), 600, seed=42, id_prefix="b-")
    after = generate(SUBJECTS, NOVEMBER, timedelta(days=30), 200, seed=43, id_prefix="c-")

    # the previous build creates its layout (no migrations table) and meters
    start_worker(workers, previous_build)
    database = settings.clickhouse_database
    wait_until(
        lambda: engine.execute(f"EXISTS TABLE {database}.meter_windows") == [(1,)],
        120,
        "the previous worker to create its tables",
    )
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(before.events)
    wait_caught_up(settings, workers)
    with pytest.raises(SchemaNotCurrent, match="python -m streams migrate"):
        require_current(engine, database)
    issued = bill_with(previous_build, settings, engine)
    assert len(issued) == len(load_customers(settings.customers_file))
    cutoff = max(
        int(r[0]) for r in engine.execute(f"SELECT cutoff_s FROM {database}.invoice_drafts")
    )
    kept = (minute_windows(engine, settings), invoices(engine, settings))
    kept_usage = usage_at(engine, settings, cutoff)

    # migrate while the previous worker meters a steady stream
    sending = threading.Thread(target=trickle, args=(settings, during), daemon=True)
    sending.start()
    migrate = subprocess.run(
        [sys.executable, "-m", "streams", "migrate"],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "worker writing" in migrate.stdout  # the live path, not the one for an idle db
    sending.join(300)
    assert applied_versions(engine, database) == list(range(1, CURRENT_VERSION + 1))

    current_worker_takes_over(settings, workers, engine, before, during, after)
    # October's minute windows, its invoices and its usage as billed are unchanged
    assert (minute_windows(engine, settings), invoices(engine, settings)) == kept
    assert usage_at(engine, settings, cutoff) == kept_usage
    assert bill(settings, engine) == issued  # nothing new to issue: the ledger is intact
    # the rollups agree with the minute table, October and November
    start = int(OCTOBER.timestamp())
    for meter in load_meters(settings.meters_file):
        daily = MeterQuery(
            settings.namespace,
            meter.slug,
            meter.aggregation,
            start,
            start + 61 * 86400,
            WindowSize.DAY,
        )
        assert engine.execute(
            daily.on(f"{database}.meter_windows_daily").to_sql()
        ) == engine.execute(daily.on(f"{database}.meter_windows").to_sql()), meter.slug
    engine.close()


def current_worker_takes_over(
    settings: Settings, workers: WorkerProcess, engine: ServerEngine, *parts: Telemetry
) -> None:
    """Stop every worker, start the current build's, send the last of ``parts``; the
    totals and the raw events are exactly those of every part."""
    workers.stop_all()
    workers.procs.clear()
    workers.start()
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(parts[-1].events)
    wait_caught_up(settings, workers, timeout=240)
    assert stored_totals(engine, settings) == merged(*parts)
    count = EventsTable(settings.clickhouse_database).count(settings.namespace)
    assert engine.execute(count.to_sql()) == [(sum(part.unique for part in parts),)]


def trickle(settings: Settings, telemetry: Telemetry, seconds: float = 60.0) -> None:
    """Send ``telemetry`` spread over ``seconds``, in small batches."""
    events = telemetry.events
    step = max(len(events) // int(seconds * 4), 1)
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        for start in range(0, len(events), step):
            producer.send_many(events[start : start + step])
            time.sleep(0.25)
