"""End to end on the real local Kafka and ClickHouse: SDK → Kafka → Faust → ClickHouse →
invoices.  The expected invoices are recomputed independently from the generated events
(duplicates excluded) and must match to the cent."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from ingest.telemetry import Telemetry, generate
from invoicing.check import expected_totals, per_unit_prices
from invoicing.customers import load_customers
from schemas.settings import Settings
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.windows_table import WindowsTable
from tests.conftest import WorkerProcess, wait_until
from tests.e2e.pipeline_kit import (
    OCTOBER,
    SUBJECTS,
    bill_october,
    prepare,
    records_of_several_subjects,
    send,
    stored_totals,
    verify_every_line,
    wait_caught_up,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def bill(settings: Settings, engine: ServerEngine) -> dict[str, Decimal]:
    result = bill_october(settings, engine)
    return {invoice.customer.id: invoice.total for invoice in result.invoices}


def test_duplicates_and_disorder_give_exact_invoices(
    isolated: Settings, workers: WorkerProcess
) -> None:
    engine = prepare(isolated)
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), 400, seed=11)
    assert telemetry.duplicates > 0
    send(isolated, telemetry)
    assert records_of_several_subjects(isolated) > 0  # the SDK packs subjects per partition
    workers.start()
    wait_caught_up(isolated, workers)

    assert stored_totals(engine, isolated) == telemetry.truth
    raw = engine.execute(
        EventsTable(isolated.clickhouse_database).count(isolated.namespace).to_sql()
    )
    assert raw == [(telemetry.unique,)]

    customers = load_customers(isolated.customers_file)
    expected = expected_totals(telemetry.truth, customers, per_unit_prices(isolated.rate_card_file))
    result = bill_october(isolated, engine)
    assert {invoice.customer.id: invoice.total for invoice in result.invoices} == expected
    assert all(total > 0 for total in expected.values())
    # every metered line recomputed from the raw events it bills: digest, count,
    # quantity and amount (the duplicates sent are not among them)
    assert verify_every_line(isolated, engine, result) >= len(customers)
    engine.close()


def test_sigkill_mid_consumption_and_redelivery_stay_exact(
    isolated: Settings, workers: WorkerProcess
) -> None:
    settings = isolated.model_copy(
        update={"worker_batch_max": 250, "worker_chunk_events": 250, "worker_batch_seconds": 0.05}
    )
    workers.settings = settings
    engine = prepare(settings)
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), 4000, seed=5)
    send(settings, telemetry)

    first = workers.start()
    windows = WindowsTable(settings.clickhouse_database)

    def some_but_not_all_stored() -> bool:
        stored: int = sum(
            o + 1 for _, o in engine.execute(windows.progress(settings.namespace).to_sql())
        )
        return 0 < stored < len(telemetry.events) * 0.8

    wait_until(some_but_not_all_stored, 90, "the worker to store part of the stream", every=0.05)
    workers.kill(first)  # SIGKILL mid-consumption: no flush, no commit, no goodbye

    workers.start()
    wait_caught_up(settings, workers, timeout=180)
    assert stored_totals(engine, settings) == telemetry.truth

    # Re-send a slice of already-metered events: the dedupe state restored from the
    # changelog after the crash must drop every one of them.
    again = Telemetry(events=telemetry.events[:500])
    send(settings, again)
    wait_caught_up(settings, workers)
    assert stored_totals(engine, settings) == telemetry.truth
    raw = engine.execute(
        EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    )
    assert raw == [(telemetry.unique,)]

    customers = load_customers(settings.customers_file)
    expected = expected_totals(telemetry.truth, customers, per_unit_prices(settings.rate_card_file))
    assert bill(settings, engine) == expected
    engine.close()
