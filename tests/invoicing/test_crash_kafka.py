"""Crash test on the real broker and ClickHouse server: ``python -m invoicing run`` is
SIGKILLed between records inside its Kafka transaction and right after the commit, then
run again; a ``read_committed`` consumer must see exactly one copy of each invoice."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from decimal import Decimal

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from ingest.admin import ensure_topics, meterline_topics
from invoicing.document import SCHEMA
from invoicing.periods import month_period
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.windows_table import FeedRow, WindowsTable
from tests.conftest import ROOT, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

OCT = month_period("2026-10")
INGESTED = OCT.end_s + 600  # usage ingested ten minutes after October ended
CUTOFF = "2026-11-01T02:00:00+00:00"


def read_topic(settings: Settings, isolation: str) -> list[tuple[str, dict[str, object]]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"crash-test-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out: list[tuple[str, dict[str, object]]] = []
    try:
        consumer.assign([TopicPartition(settings.invoices_topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    return out
                pytest.fail(f"consumer error: {message.error()}")
            out.append((message.key().decode(), orjson.loads(message.value())))
        pytest.fail(f"did not reach the end of {settings.invoices_topic} within 60s")
    finally:
        consumer.close()


def run_cli(settings: Settings, **hooks: str) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings)
    env.update(hooks)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "invoicing",
            "run",
            "--period",
            "2026-10",
            "--grace",
            "0",
            "--cutoff",
            CUTOFF,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_sigkill_mid_transaction_and_after_commit_then_rerun(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    engine = ServerEngine(isolated.clickhouse_host, isolated.clickhouse_tcp_port)
    ensure_schema(engine, isolated.clickhouse_database)
    subjects = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]
    engine.insert(
        *WindowsTable(isolated.clickhouse_database).insert_args(
            [
                FeedRow(
                    isolated.namespace,
                    "api_calls",
                    subject,
                    "{}",
                    OCT.start_s + 3600 * n,
                    INGESTED,
                    Decimal(1),
                    "",
                    0,
                    0,
                    n,
                )
                for n, subject in enumerate(subjects * 40)
            ]
        )
    )
    kill = str(-9)
    runs = [
        ({"METERLINE_INVOICING_CRASH_AFTER_RECORDS": "1"}, kill),
        ({"METERLINE_INVOICING_CRASH_AFTER_RECORDS": "3"}, kill),
        ({"METERLINE_INVOICING_CRASH_AFTER_COMMIT": "1"}, kill),
        ({}, "0"),
        ({}, "0"),
    ]
    outputs = []
    for hooks, expected in runs:
        done = run_cli(isolated, **hooks)
        outputs.append(done.stderr)
        assert str(done.returncode) == expected, done.stderr
    assert "4 pending drafts" in outputs[1]  # the second run found the first run's drafts
    assert "4 already committed to Kafka, publishing 0" in outputs[3]
    assert "emitted 0 invoices" in outputs[4]

    committed = read_topic(isolated, "read_committed")
    copies = Counter(key for key, doc in committed if doc.get("schema") == SCHEMA)
    print(f"crash test: {len(runs)} runs, 3 SIGKILLs, read_committed copies: {dict(copies)}")
    assert len(copies) == 4
    assert set(copies.values()) == {1}
    everything = read_topic(isolated, "read_uncommitted")
    assert len(everything) == 4 + 1 + 3  # the records of the two aborted transactions
    rows = engine.execute(
        f"SELECT invoice_id, total FROM {InvoicesTable(isolated.clickhouse_database).name}"
        f" FINAL WHERE namespace = '{isolated.namespace}'"
    )
    assert {r[0] for r in rows} == set(copies)
    by_id = {key: Decimal(str(doc["total"])) for key, doc in committed}
    assert {r[0]: Decimal(str(r[1])) for r in rows} == by_id
    engine.close()


def test_refuses_to_close_while_the_worker_lags(isolated: Settings) -> None:
    ensure_topics(isolated.kafka_bootstrap, meterline_topics(isolated))
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": isolated.kafka_bootstrap})
    producer.produce(isolated.events_topic, key=b"k", value=b"{}")
    assert producer.flush(30) == 0
    done = run_cli(isolated)
    assert done.returncode == 2, done.stderr
    assert "metering worker has not processed 1 records" in done.stderr
    assert "--force" in done.stderr
