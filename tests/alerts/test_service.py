"""``python -m alerts run`` on real Kafka and ClickHouse, with a real webhook receiver:
of two instances one evaluates, a crossing is delivered once, and when the evaluating
instance is SIGKILLed the other takes over without raising anything twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from ingest.admin import ensure_topics, meterline_topics
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import drop_database
from schemas.storage.notifications_table import NotificationsTable
from schemas.storage.windows_table import FeedRow, WindowsTable
from tests.alerts.receiver_kit import SECRET, Receiver, receiver
from tests.conftest import ROOT, settings_env, wait_until
from tests.processes import stop_process_group

pytestmark = pytest.mark.integration


@pytest.fixture
def hooks() -> Iterator[Receiver]:
    with receiver() as state:
        yield state


@pytest.fixture
def configured(isolated: Settings, tmp_path: Path, hooks: Receiver) -> Iterator[Settings]:
    (tmp_path / "customers.yaml").write_text(
        "customers:\n  - {id: acme, plan: pro, currency: USD, start: '2026-01-01', anchor_day: 1}\n"
    )
    (tmp_path / "thresholds.yaml").write_text(
        "thresholds:\n"
        "  - {id: calls-1000, kind: usage, meter: api_calls, at: 1000}\n"
        "  - {id: calls-2000, kind: usage, meter: api_calls, at: 2000}\n"
    )
    (tmp_path / "webhooks.yaml").write_text(
        f"endpoints:\n  - {{id: test, url: '{hooks.url}', secret: '{SECRET}'}}\n"
    )
    settings = isolated.model_copy(
        update={
            "customers_file": str(tmp_path / "customers.yaml"),
            "thresholds_file": str(tmp_path / "thresholds.yaml"),
            "webhooks_file": str(tmp_path / "webhooks.yaml"),
            "alerts_interval_s": 0.5,
            "worker_session_timeout": 6.0,
            "webhook_first_delay_s": 0.1,
        }
    )
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    engine = ServerEngine.of(settings)
    ensure_schema(engine, settings.clickhouse_database)
    yield settings
    engine.execute(drop_database(settings.clickhouse_database).to_sql())
    engine.close()


def start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "alerts", "run"],
            cwd=ROOT,
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def use(settings: Settings, calls: int) -> None:
    """``calls`` API calls of acme in the current minute, stored as the worker stores them."""
    now = int(time.time())
    rows = [
        FeedRow(settings.namespace, "api_calls", "acme", "{}", now - now % 60, now - now % 60,
                Decimal(1), "", now * 1000, 0, offset)
        for offset in range(calls)
    ]  # fmt: skip
    engine = ServerEngine.of(settings)
    engine.insert(*WindowsTable(settings.clickhouse_database).insert_args(rows))
    engine.close()


def on_topic(settings: Settings) -> list[str]:
    """The keys of every record on the notifications topic."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "t",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(settings.notifications_topic, 0, 0)])
    keys: list[str] = []
    idle = time.monotonic() + 5
    while time.monotonic() < idle:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            keys.append((message.key() or b"").decode())
            idle = time.monotonic() + 2
    consumer.close()
    return keys


def leader_of(logs: list[Path]) -> int | None:
    for index, log in enumerate(logs):
        lines = [line for line in log.read_text().splitlines() if "alerts leadership" in line]
        if lines and lines[-1].endswith("leader"):
            return index
    return None


def recorded_sent(settings: Settings) -> int:
    """How many notifications are recorded as sent."""
    engine = ServerEngine.of(settings)
    table = NotificationsTable(settings.clickhouse_database)
    rows = engine.execute(table.listing(settings.namespace, None, 100).to_sql())
    engine.close()
    return sum(1 for row in rows if int(row[8]) > 0)


def thresholds_received(hooks: Receiver) -> list[str]:
    return sorted(orjson.loads(b)["data"]["threshold"] for b in hooks.accepted.values())


def test_one_of_two_evaluators_raises_and_a_successor_raises_nothing_twice(
    configured: Settings, hooks: Receiver, tmp_path: Path
) -> None:
    logs = [tmp_path / "alerts-0.log", tmp_path / "alerts-1.log"]
    procs = [start(configured, log) for log in logs]
    try:
        wait_until(lambda: leader_of(logs) is not None, 90, "one evaluator leading")
        first = leader_of(logs)
        assert first is not None
        use(configured, 1000)
        wait_until(lambda: len(hooks.accepted) == 1, 60, "the crossing delivered")
        # killed once it is recorded as sent: killed between the receiver's answer and
        # that record, the successor would send it again with the same webhook-id (the
        # documented at-least-once window, test_evaluator's pending case), not a new one
        wait_until(lambda: recorded_sent(configured) == 1, 60, "the send recorded")
        os.killpg(procs[first].pid, signal.SIGKILL)
        procs[first].wait(30)
        logs[first].write_text("")  # the dead one's "leader" line is history
        wait_until(lambda: leader_of(logs) == 1 - first, 90, "the other evaluator leading")
        use(configured, 1000)  # 2000 now: the second threshold, raised by the successor
        wait_until(lambda: len(hooks.accepted) == 2, 60, "the second crossing delivered")
        time.sleep(3 * configured.alerts_interval_s + 1)  # more ticks: nothing new
        assert thresholds_received(hooks) == ["calls-1000", "calls-2000"]
        assert len(hooks.requests) == 2  # each delivered once: nobody raised one again
        assert hooks.bad_signatures == 0
        keys = on_topic(configured)
        assert sorted(set(keys)) == sorted(hooks.accepted)
        assert len(keys) == 2
    finally:
        for proc in procs:
            stop_process_group(proc)
        for log in logs:
            print(log.read_text(errors="replace")[-3000:])
