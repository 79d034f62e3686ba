"""Proof that Faust (faust-streaming 0.15 + aiokafka 0.14) works against the local broker.

``at_least_once`` (what Meterline's workers use):

1. one worker: the consumer group assigns it all partitions of a 4-partition topic;
   it counts 36 events of 8 keys in a Table and publishes every new count;
2. the Table's changelog topic was created by Faust (compacted, 4 partitions) and holds
   the updates; the group's committed offsets reach the end of the source topic;
3. the worker stops; two fresh workers start (memory store, so no local state survives),
   the group splits the partitions between them, both restore the Table from the
   changelog, and one more event per key yields previous count + 1 (or + 2 when a
   rebalance between the two replays it: at least once).

``exactly_once``: steps 1-2 with aiokafka's transactional producers (InitProducerId,
AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn), results read with
read_committed. Restarting an exactly_once worker is NOT tested here: faust-streaming
0.15 then double-counts some events in about 1 run of 4-5, and crashes when a rebalance
hits a worker that holds state -- on Kafka 3.9.2 and 4.x alike (docs/stack.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tests.deploy.brokerkit import (
    BOOTSTRAP,
    FaustWorker,
    TopicReader,
    committed_offsets,
    create_topics,
    end_offsets,
    group_assignment,
    unique_name,
    wait_for,
)

PARTITIONS = 4
KEYS = [f"k{i}" for i in range(8)]
# Key k<i> gets i+1 events, always on partition i % 4: all partitions carry data.
PHASE1_COUNTS = {key: i + 1 for i, key in enumerate(KEYS)}
STARTUP_S = 90.0
PROCESS_S = 60.0

pytestmark = pytest.mark.integration


def produce_events(topic: str, per_key: dict[str, int]) -> None:
    """Write per_key[key] events for each key to its fixed partition."""
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True})
    for key, count in per_key.items():
        for _ in range(count):
            producer.produce(topic, key=key.encode(), value=b"{}", partition=KEYS.index(key) % 4)
    assert producer.flush(30) == 0, "events not delivered within 30s"


def latest_counts(records: list[dict[str, object]]) -> dict[str, object]:
    """The last published count per key."""
    return {str(r["key"]): r["count"] for r in records}


def wait_for_counts(
    reader: TopicReader,
    expected: dict[str, int],
    workers: list[FaustWorker],
    *,
    at_least: bool = False,
) -> list[dict[str, object]]:
    """Poll the results topic until every key shows its expected count (or more, with
    ``at_least``)."""

    def check() -> tuple[bool, object]:
        for worker in workers:
            worker.assert_alive()
        reader.poll()
        counts = latest_counts(reader.records)
        if at_least:
            reached = set(counts) == set(expected) and all(
                int(str(counts[k])) >= n for k, n in expected.items()
            )
            return reached, counts
        return counts == expected, counts

    wait_for(check, PROCESS_S, f"counts {expected}", context=lambda: logs(workers))
    return list(reader.records)


def logs(workers: list[FaustWorker]) -> str:
    """The log tails of all workers, for failure messages."""
    return "\n".join(worker.log_tail(80) for worker in workers)


def wait_for_split_assignment(
    admin: AdminClient, app_id: str, topic: str, members: int, workers: list[FaustWorker]
) -> dict[str, set[int]]:
    """Wait until the group is stable with `members` members sharing all partitions."""

    def check() -> tuple[bool, object]:
        for worker in workers:
            worker.assert_alive()
        assignment = group_assignment(admin, app_id, topic)
        parts = [p for member in assignment.values() for p in member]
        done = (
            len(assignment) == members
            and all(assignment.values())
            and sorted(parts) == list(range(PARTITIONS))
        )
        return done, assignment

    what = f"{members} member(s) sharing {topic}"
    return dict(wait_for(check, STARTUP_S, what, step_s=0.5, context=lambda: logs(workers)))


class FaustScenario:
    """One Faust app (unique id and topics) plus the workers and reader of a test."""

    def __init__(self, admin: AdminClient, tmp_path: Path, guarantee: str) -> None:
        self.admin, self.tmp_path = admin, tmp_path
        self.app_id = unique_name(f"faust-{guarantee.replace('_', '')}")
        self.source, results = f"{self.app_id}-events", f"{self.app_id}-results"
        create_topics(admin, {self.source: PARTITIONS, results: 1})
        self.env = {
            "FAUST_TEST_APP_ID": self.app_id,
            "FAUST_TEST_SOURCE_TOPIC": self.source,
            "FAUST_TEST_RESULT_TOPIC": results,
            "FAUST_TEST_PARTITIONS": str(PARTITIONS),
            "FAUST_TEST_BOOTSTRAP": BOOTSTRAP,
            "FAUST_TEST_GUARANTEE": guarantee,
        }
        self.reader = TopicReader(results)
        self.workers: list[FaustWorker] = []
        self.assignment: dict[str, set[int]] = {}
        self.started = 0

    def start_workers(self, count: int) -> list[FaustWorker]:
        """Start `count` workers and wait until the group shares all partitions among them."""
        self.workers = []
        for _ in range(count):
            self.started += 1
            log = self.tmp_path / f"worker-{self.started}.log"
            self.workers.append(FaustWorker(self.env, log))
        self.assignment = wait_for_split_assignment(
            self.admin, self.app_id, self.source, count, self.workers
        )
        return self.workers

    def count_with_one_worker(self) -> list[dict[str, object]]:
        """Phase 1: one member owns every partition and counts every event exactly once;
        the changelog holds the updates and the group's offsets reach the end."""
        self.start_workers(1)
        assert list(self.assignment.values()) == [set(range(PARTITIONS))]
        produce_events(self.source, PHASE1_COUNTS)
        records = wait_for_counts(self.reader, PHASE1_COUNTS, self.workers)
        assert len(records) == sum(PHASE1_COUNTS.values()), "each event must count once"
        assert {r["partition"] for r in records} == set(range(PARTITIONS))
        assert_changelog(self.admin, f"{self.app_id}-counts-changelog", len(records))
        wait_for(
            lambda: (
                (c := committed_offsets(self.admin, self.app_id, self.source, PARTITIONS))
                == end_offsets(self.source, PARTITIONS),
                c,
            ),
            PROCESS_S,
            "committed offsets to reach the end of the source topic",
        )
        return records

    def stop_workers(self) -> None:
        """Graceful stop of every running worker; each must exit 0."""
        for worker in self.workers:
            worker.stop()

    def close(self) -> None:
        """Cleanup, also after a failure."""
        self.reader.close()
        for worker in self.workers:
            worker.kill()


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest,
    kafka_admin: AdminClient,
    topic_prefixes: list[str],
    tmp_path: Path,
) -> Iterator[FaustScenario]:
    """A FaustScenario for the guarantee given by indirect parametrization."""
    run = FaustScenario(kafka_admin, tmp_path, request.param)
    topic_prefixes.append(run.app_id)
    try:
        yield run
    finally:
        run.close()


@pytest.mark.parametrize("scenario", ["at_least_once"], indirect=True)
def test_group_assignment_changelog_and_restore_after_restart(scenario: FaustScenario) -> None:
    phase1 = scenario.count_with_one_worker()
    scenario.stop_workers()

    # Two fresh workers (memory store): the counts can only come from the changelog.
    workers = scenario.start_workers(2)
    produce_events(scenario.source, dict.fromkeys(KEYS, 1))
    expected = {key: count + 1 for key, count in PHASE1_COUNTS.items()}
    # At least once: if the two fresh workers rebalance while counting, an event can be
    # counted again (seen here once: three keys one higher).  What this proves is
    # that every count continues from the restored changelog, never from zero, and that
    # a replay only ever adds.  Meterline's own worker dedupes by Kafka position instead.
    records = wait_for_counts(scenario.reader, expected, workers, at_least=True)
    phase2 = records[len(phase1) :]
    counts = latest_counts(records)
    assert all(expected[k] <= int(str(counts[k])) <= expected[k] + 1 for k in KEYS), counts
    assert len(phase2) >= len(KEYS), f"expected a result per key, got {phase2}"
    assert {r["worker"] for r in phase2} == {w.proc.pid for w in workers}
    scenario.stop_workers()


@pytest.mark.parametrize("scenario", ["exactly_once"], indirect=True)
def test_exactly_once_worker_commits_through_transactions(scenario: FaustScenario) -> None:
    # Results are read with isolation.level=read_committed, so every count seen was
    # committed by a Faust transaction; the offsets arrive through TxnOffsetCommit.
    scenario.count_with_one_worker()
    scenario.stop_workers()


def assert_changelog(admin: AdminClient, topic: str, min_records: int) -> None:
    """The Table's changelog was created by Faust, compacted, and holds the updates."""
    metadata = admin.list_topics(topic, timeout=10).topics[topic]
    assert metadata.error is None, f"changelog {topic} missing: {metadata.error}"
    assert len(metadata.partitions) == PARTITIONS
    resource = ConfigResource(ResourceType.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert "compact" in config["cleanup.policy"].value
    # exactly_once adds transaction markers to the offsets, so this is a lower bound.
    assert sum(end_offsets(topic, PARTITIONS).values()) >= min_records
