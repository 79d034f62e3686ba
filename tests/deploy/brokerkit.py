"""Helpers for the broker tests in tests/deploy: names, polling, topics, groups, workers.

Everything polls against a deadline and reports what it saw last; nothing sleeps blind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from streams.progress import retrying

BOOTSTRAP = f"127.0.0.1:{os.environ.get('METERLINE_KAFKA_PORT', '9092')}"
HERE = Path(__file__).resolve().parent


def unique_name(kind: str) -> str:
    """A topic/app/transactional id that no other test run uses."""
    return f"meterline-test-{kind}-{int(time.time())}-{uuid.uuid4().hex[:8]}"


def wait_for(
    check: Callable[[], tuple[bool, Any]],
    timeout_s: float,
    what: str,
    step_s: float = 0.2,
    context: Callable[[], str] = str,
) -> Any:
    """Call check() until it reports done; return what it observed, or fail with it
    (plus whatever context() adds, e.g. worker logs)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, observed = check()
        if done:
            return observed
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f}s waiting for {what}; saw {observed!r}\n"
                + context()
            )
        time.sleep(step_s)


def create_topics(admin: AdminClient, partitions: dict[str, int]) -> None:
    """Create topics explicitly (the broker has auto.create.topics.enable=false)."""
    futures = admin.create_topics(
        [
            NewTopic(name, num_partitions=count, replication_factor=1)
            for name, count in partitions.items()
        ],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(timeout=30)


def delete_topics_with_prefix(admin: AdminClient, prefixes: list[str]) -> None:
    """Remove every topic a test created (including Faust's internal ones)."""
    names = [
        name
        for name in admin.list_topics(timeout=10).topics
        if any(name.startswith(prefix) for prefix in prefixes)
    ]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=30)


def end_offsets(topic: str, partitions: int) -> dict[int, int]:
    """High watermark of each partition."""
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": unique_name("watermarks")})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


def committed_offsets(
    admin: AdminClient, group: str, topic: str, partitions: int
) -> dict[int, int]:
    """Offsets a consumer group has committed for a topic (-1001 when none)."""
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    result = retrying(  # a coordinator still loading or moving is a wait
        lambda: admin.list_consumer_group_offsets([request])[group].result(timeout=10),
        BOOTSTRAP,
        timeout=30,
    )
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def group_assignment(admin: AdminClient, group: str, topic: str) -> dict[str, set[int]]:
    """Partitions of `topic` per member of a consumer group, only while it is STABLE."""
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return {}
    if description.state.name != "STABLE":
        return {}
    return {
        member.member_id: {
            tp.partition for tp in member.assignment.topic_partitions if tp.topic == topic
        }
        for member in description.members
    }


@dataclass
class TopicReader:
    """Reads one topic from the beginning and keeps every record seen so far."""

    topic: str
    partitions: int = 1
    isolation: str = "read_committed"
    records: list[dict[str, Any]] = field(default_factory=list)
    eof: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": unique_name("reader"),
                "enable.auto.commit": False,
                "isolation.level": self.isolation,
                "enable.partition.eof": True,
            }
        )
        self._consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)]
        )

    def poll(self) -> None:
        """Fetch whatever is available now (at most one second of waiting)."""
        for message in self._consumer.consume(num_messages=500, timeout=1.0):
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                self.eof.add(message.partition())
            elif error is not None:
                raise KafkaException(error)
            else:
                self.eof.discard(message.partition())
                self.records.append(json.loads(message.value()))

    def values_until_eof(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every record up to the current end of all partitions."""

        def check() -> tuple[bool, Any]:
            self.poll()
            return len(self.eof) == self.partitions, self.records

        return list(wait_for(check, timeout_s, f"end of {self.topic}"))

    def close(self) -> None:
        self._consumer.close()


class FaustWorker:
    """tests/deploy/faust_app.py running as `faust worker` in a subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "faust_app.py"),
                "worker",
                "--without-web",
                "--loglevel=info",
            ],
            env={**os.environ, **env},
            cwd=log_path.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log, for assertion messages."""
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.log_path} (last {lines} lines) ---\n" + "\n".join(text)

    def assert_alive(self) -> None:
        """Fail with the worker's log if it has died."""
        if self.proc.poll() is not None:
            raise AssertionError(
                f"Faust worker exited with {self.proc.returncode}\n{self.log_tail()}"
            )

    def stop(self, timeout_s: float = 60.0) -> None:
        """Graceful stop (SIGTERM, as a deployment would); it must exit 0 in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"worker ignored SIGTERM for {timeout_s:.0f}s\n{self.log_tail()}"
                ) from None
        self._log.close()
        if self.proc.returncode != 0:
            raise AssertionError(f"worker exited with {self.proc.returncode}\n{self.log_tail()}")

    def kill(self) -> None:
        """Last-resort cleanup for a test that already failed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()
