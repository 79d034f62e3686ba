"""The metering pipeline on the three-broker cluster (``make up TOPOLOGY=cluster``):
topics created with replication 3 and ``min.insync.replicas`` 2 from the settings, the
real supervised worker consuming, and the broker leading the events topic's first
partition SIGKILLed while events are still sent and metered.  Every accepted event is
counted once: the totals and the raw events equal what was generated, duplicates out.
ClickHouse is the single-node server of ``make up``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from ingest.telemetry import generate
from schemas.settings import Settings
from schemas.storage.events_table import EventsTable
from tests.conftest import WorkerProcess
from tests.deploy.conftest import Cluster
from tests.e2e.pipeline_kit import (
    OCTOBER,
    SUBJECTS,
    prepare,
    send,
    stored_totals,
    wait_caught_up,
    wait_some_stored,
)

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.cluster]


def test_a_broker_killed_mid_stream_loses_no_event_and_counts_none_twice(
    cluster: Cluster, isolated: Settings, tmp_path: Path
) -> None:
    settings = isolated.model_copy(
        update={
            "kafka_brokers": cluster.bootstrap,
            "topic_replication_factor": 3,
            "topic_min_insync_replicas": 2,
            "worker_batch_max": 250,
            "worker_chunk_events": 250,
            "worker_batch_seconds": 0.05,
        }
    )
    engine = prepare(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    events = admin.list_topics(timeout=10).topics[settings.events_topic].partitions
    assert {len(p.replicas) for p in events.values()} == {3}

    first = generate(SUBJECTS, OCTOBER, timedelta(days=31), 1500, seed=61, id_prefix="a-")
    second = generate(SUBJECTS, OCTOBER, timedelta(days=31), 1500, seed=62, id_prefix="b-")
    (tmp_path / "logs").mkdir()
    workers = WorkerProcess(settings, tmp_path / "logs")
    try:
        send(settings, first)
        workers.start()
        wait_some_stored(settings, engine)
        victim = events[0].leader
        cluster.kill(cluster.kafka[victim])
        send(settings, second)  # acks=all: on the two brokers left, min.insync 2
        wait_caught_up(settings, workers, timeout=300)
    finally:
        cluster.up()  # the killed broker back, whatever happened
        workers.stop_all()

    truth = dict(first.truth)
    for key, value in second.truth.items():
        truth[key] = truth.get(key, 0) + value
    assert stored_totals(engine, settings) == truth
    raw = engine.execute(
        EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    )
    assert raw == [(first.unique + second.unique,)]
    engine.close()
