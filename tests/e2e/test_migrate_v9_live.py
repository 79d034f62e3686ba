"""Version 9 as an operator runs it, on the real Kafka and ClickHouse: the worker of the
last build before it (checked out from this repository's history) meters into a minute
table of 8,192-row granules; ``python -m streams migrate`` rewrites that table while the
worker keeps metering a stream, pausing every feed that writes it for the last pass; the
current worker takes over.  Totals, raw events and rollups are exact after."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest import UsageProducer
from ingest.telemetry import generate
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import CURRENT_VERSION, applied_versions
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import index_granularity
from schemas.storage.windows_table import MINUTE_GRANULE_ROWS, MeterQuery, WindowSize
from tests.conftest import ROOT, WorkerProcess, run_module
from tests.e2e.pipeline_kit import SUBJECTS, checkout, wait_caught_up
from tests.e2e.test_migrate_live import current_worker_takes_over, start_worker, trickle

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BEFORE_VERSION_9 = "a9915df"
"""The last commit whose layout is version 8 (the minute table in default granules)."""
NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def version_8_build(tmp_path: Path) -> Iterator[Path]:
    with checkout(BEFORE_VERSION_9, tmp_path / "v8") as path:
        yield path


def run_module_ok(root: Path, settings: Settings, *args: str) -> str:
    done = run_module(settings, *args, cwd=root, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_version_9_while_the_version_8_worker_meters_keeps_every_event(
    isolated: Settings, workers: WorkerProcess, version_8_build: Path
) -> None:
    settings = isolated
    database = settings.clickhouse_database
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    minute = f"{database}.meter_windows"
    before = generate(SUBJECTS, NOVEMBER, timedelta(days=30), 300, seed=91, id_prefix="a-")
    during = generate(SUBJECTS, NOVEMBER, timedelta(days=30), 600, seed=92, id_prefix="b-")
    after = generate(SUBJECTS, NOVEMBER, timedelta(days=30), 200, seed=93, id_prefix="c-")

    run_module_ok(version_8_build, settings, "streams", "init")
    assert applied_versions(engine, database) == list(range(1, 9))
    assert index_granularity(engine, minute) == 8192
    start_worker(workers, version_8_build)
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(before.events)
    wait_caught_up(settings, workers)

    sending = threading.Thread(target=trickle, args=(settings, during), daemon=True)
    sending.start()
    said = run_module_ok(ROOT, settings, "streams", "migrate")
    assert "worker writing" in said  # the live path
    assert "meter_window_agg_feed" in said  # the aggregated feed was paused too
    sending.join(300)
    assert applied_versions(engine, database) == list(range(1, CURRENT_VERSION + 1))
    assert index_granularity(engine, minute) == MINUTE_GRANULE_ROWS

    current_worker_takes_over(settings, workers, engine, before, during, after)
    start = int(NOVEMBER.timestamp())
    for meter in load_meters(settings.meters_file):
        daily = MeterQuery(settings.namespace, meter.slug, meter.aggregation, start,
                           start + 30 * 86400, WindowSize.DAY)  # fmt: skip
        assert engine.execute(
            daily.on(f"{database}.meter_windows_daily").to_sql()
        ) == engine.execute(daily.on(minute).to_sql()), meter.slug
    engine.close()
