"""Supervision on the real stack: the worker child is replaced after a SIGKILL, after its
event loop stops (SIGSTOP), and after a fetch stall; each replacement shows in
``/metrics``, and the totals stay exact.  A requested stop ends supervision."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client.parser import text_string_to_metric_families

from api.server import free_port
from ingest import UsageProducer
from ingest.admin import TopicSpec, ensure_topics
from ingest.telemetry import generate
from schemas.events import UsageEvent
from schemas.settings import Settings
from schemas.storage.events_table import EventsTable
from streams.dedupe import dedupe_key
from tests.conftest import WorkerProcess, wait_until
from tests.e2e.pipeline_kit import OCTOBER, SUBJECTS, prepare, send, stored_totals, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def status(settings: Settings) -> dict[str, Any]:
    answer = httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/healthz", timeout=5)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ready(settings: Settings) -> bool:
    try:
        answer = httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/readyz", timeout=5)
    except httpx.TransportError:
        return False
    return answer.status_code == 200


def samples(settings: Settings, name: str) -> dict[str, float]:
    """The supervisor's /metrics samples called ``name``, by their labels' values joined
    ("" for a series without labels)."""
    text = httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics", timeout=5).text
    return {
        ",".join(sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def restarts(settings: Settings) -> dict[str, float]:
    return samples(settings, "meterline_worker_restarts_total")


def replaced(settings: Settings, old_pid: int, within: float) -> float:
    """Seconds until a new child process runs in place of ``old_pid``."""
    started = time.monotonic()
    wait_until(
        lambda: status(settings)["child_pid"] not in (None, old_pid),
        within,
        f"a new worker child in place of pid {old_pid}",
        every=0.1,
    )
    return time.monotonic() - started


def supervised(isolated: Settings, workers: WorkerProcess, **extra: object) -> Settings:
    settings = isolated.model_copy(
        update={
            "worker_metrics_port": free_port(),
            "worker_batch_max": 250,
            "worker_chunk_events": 250,
            "worker_batch_seconds": 0.05,
            **extra,
        }
    )
    workers.settings = settings
    return settings


def test_killed_and_frozen_children_are_replaced_and_counted(
    isolated: Settings, workers: WorkerProcess
) -> None:
    settings = supervised(isolated, workers, worker_heartbeat_seconds=5.0)
    engine = prepare(settings)
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), 3000, seed=21)
    send(settings, telemetry)
    supervisor = workers.start()
    wait_until(lambda: ready(settings), 120, "the supervised worker to be ready")
    assert httpx.get(f"http://127.0.0.1:{settings.worker_metrics_port}/healthz").status_code == 200

    first = status(settings)["child_pid"]
    os.kill(first, signal.SIGKILL)  # the OOM killer's way: the child only
    took = replaced(settings, first, within=10)
    assert took < 10
    assert supervisor.poll() is None, "a killed child must not end supervision"

    wait_until(lambda: ready(settings), 120, "the replacement to be ready")
    second = status(settings)["child_pid"]
    os.kill(second, signal.SIGSTOP)  # a wedged event loop: no heartbeat, no exit
    replaced(settings, second, within=5 + 10 + 10)  # heartbeat deadline + SIGTERM grace + poll

    wait_caught_up(settings, workers, timeout=180)
    assert stored_totals(engine, settings) == telemetry.truth
    counted = restarts(settings)
    assert counted.get("signalled") == 1.0
    assert counted.get("no_heartbeat") == 1.0

    assert samples(settings, "meterline_worker_child_starts_total") == {"": 3.0}
    # the child's own registry, served through the supervisor (which answers with its own
    # alone while the child's endpoint does not answer within 2 s): a series the child
    # always has, not one of its outcomes (the last child may find every event already
    # metered by the two before it, and then counts no "new" event)
    wait_until(
        lambda: samples(settings, "meterline_stream_dedupe_expired_total"),
        30,
        "the child's metrics through the supervisor",
    )
    # the dedupe store's gauges, set every STORE_STATS_INTERVAL_S once the child's index is
    # open (its recovery opens it): the keys the children before it recorded
    wait_until(
        lambda: samples(settings, "meterline_stream_dedupe_keys").get("", 0) > 0,
        60,
        "the dedupe store's gauges",
    )

    os.killpg(supervisor.pid, 0)  # still there
    supervisor.send_signal(signal.SIGTERM)  # a requested stop: no restart, exit 0
    assert supervisor.wait(60) == 0
    engine.close()


def test_a_stalled_child_is_replaced_within_the_watchdog_deadline(
    isolated: Settings, workers: WorkerProcess
) -> None:
    stall_s = 10.0
    settings = supervised(
        isolated, workers, worker_stall_seconds=stall_s, worker_failpoint="stall_fetch_after=1"
    )
    engine = prepare(settings)
    early = generate(SUBJECTS, OCTOBER, timedelta(days=31), 200, seed=22)
    send(settings, early)
    workers.start()
    wait_until(lambda: ready(settings), 120, "the supervised worker to be ready")
    first = status(settings)["child_pid"]
    # the failpoint stops fetching once a record is metered; the child stays ready
    wait_until(lambda: status(settings)["child_records_metered"] > 0, 60, "a metered record")
    late = generate(SUBJECTS, OCTOBER, timedelta(days=31), 1000, seed=23, id_prefix="late-")
    send(settings, late)

    deadline = stall_s + 2 * 2.0 + 10 + 5  # the stall, two offset polls, SIGTERM grace, slack
    took = replaced(settings, first, within=deadline)
    assert took <= deadline
    wait_caught_up(settings, workers, timeout=180)
    truth = dict(early.truth)
    for key, value in late.truth.items():
        truth[key] = truth.get(key, Decimal(0)) + value
    assert stored_totals(engine, settings) == truth
    assert restarts(settings).get("stalled") == 1.0
    engine.close()


def test_a_child_stopped_mid_write_acknowledges_nothing_of_its_batch(
    isolated: Settings, workers: WorkerProcess
) -> None:
    """The Faust consumer crashes while a batch's write is in flight, and the write never
    lands (failpoint ``crash_in_write``).  Faust then stops the app and cancels the agent
    mid-batch; had the batch's take buffer been closed, it would have acknowledged the
    batch and the consumer's last commit passed records never stored (seen on the
    cluster: two partitions' every event committed and missing).  The child exits
    unacknowledged instead, and its replacement meters the batch: exact."""
    settings = supervised(isolated, workers, worker_failpoint="crash_in_write")
    engine = prepare(settings)
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), 1000, seed=24)
    send(settings, telemetry)
    workers.start()
    wait_caught_up(settings, workers, timeout=180)

    assert stored_totals(engine, settings) == telemetry.truth
    raw = engine.execute(
        EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    )
    assert raw == [(telemetry.unique,)]
    counted = restarts(settings)
    assert counted.get("exited") == 1.0, counted
    assert sum(counted.values()) == 1.0, counted
    logs = (workers.log_dir / "worker-0.log").read_text(errors="replace")
    assert "failpoint crash_in_write: crashing the consumer" in logs
    assert "stopped in the middle of a batch; exiting without acknowledging it" in logs
    assert "exited with code 72" in logs
    engine.close()


def seed_changelog(settings: Settings, chunks_per_partition: int, chunk: int = 5000) -> int:
    """Chunk entries on the worker's dedupe changelog, as a worker that recorded them would
    leave them (keys ``restore-test``/``p<partition>-<n>``); the number of keys."""
    topic = f"{settings.worker_app_id}-dedupe-changelog"
    ensure_topics(
        settings.kafka_bootstrap,
        [TopicSpec(topic, settings.events_partitions, {"cleanup.policy": "compact"})],
    )
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    failed: list[Any] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    ingested = int(time.time() * 1000)
    for n in range(chunks_per_partition):
        for partition in range(settings.events_partitions):
            first = n * chunk
            entries = [
                [dedupe_key(settings.namespace, "restore-test", f"p{partition}-{first + i}"),
                 first + i, 0, f"{first + i:024x}", ingested]
                for i in range(chunk)
            ]  # fmt: skip
            key = f"{partition}:{first}-{first + chunk - 1}".encode()
            while True:
                try:
                    producer.produce(
                        topic,
                        key=key,
                        value=orjson.dumps({"e": entries}),
                        partition=partition,
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
    assert producer.flush(120) == 0
    assert not failed, failed
    return chunks_per_partition * settings.events_partitions * chunk


def test_a_long_restore_reports_progress_and_is_not_replaced(
    isolated: Settings, workers: WorkerProcess
) -> None:
    """An empty state directory restores the whole dedupe changelog before the worker is
    ready.  The heartbeat flows from the child's first start, carrying the changelog
    messages applied, and each applied batch restarts the watchdog's startup clock: the
    child is never replaced mid-restore (it was, at the startup deadline, when heartbeats
    began only once Faust's recovery was done), and the restored keys answer."""
    settings = supervised(isolated, workers, worker_startup_seconds=60.0)
    engine = prepare(settings)
    keys = seed_changelog(settings, chunks_per_partition=20)  # 400,000 keys
    workers.start()
    progress: list[int] = []

    def restoring() -> bool:
        try:
            seen = status(settings)
        except httpx.TransportError:
            return False  # the supervisor is not serving yet
        if not seen["ready"] and seen["child_changelog_restored"] > 0:
            progress.append(seen["child_changelog_restored"])
        return bool(seen["ready"])

    wait_until(restoring, 300, "the supervised worker to restore and be ready", every=0.1)
    assert progress, "no heartbeat reported restore progress before the worker was ready"
    assert status(settings)["child_changelog_restored"] == keys // 5000  # every chunk once
    assert status(settings)["children_started"] == 1
    assert not any(restarts(settings).values()), restarts(settings)

    # a retry of a restored key is dropped; a new event is metered
    at = datetime.now(UTC)
    retry, fresh = (
        UsageEvent(id=event_id, source="restore-test", type="api.request", subject="c0", time=at)
        for event_id in ("p1-7", "fresh-1")
    )
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many([retry, fresh])
    count = EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    wait_until(lambda: engine.execute(count)[0][0] >= 1, 120, "the new event stored")
    wait_caught_up(settings, workers, timeout=120)
    assert engine.execute(count)[0][0] == 1
    engine.close()
