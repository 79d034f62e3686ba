"""The SDK's partition count (``ingest.partitions``) and packing by partition
(``ingest.packing``), without a broker: the metadata client is a stand-in that answers
what the test says."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException

from ingest.packing import Packer, Pending, pack
from ingest.partitions import REFRESH_S, Partitions
from schemas.events import UsageEvent
from schemas.wire import subject_partition


class Metadata:
    """Answers ``list_topics`` with ``answer``: a partition count, ``None`` (the topic is
    missing) or an exception to raise."""

    def __init__(self, answer: int | Exception | None) -> None:
        self.answer, self.calls = answer, 0

    def list_topics(self, topic: str, timeout: float) -> Cluster:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        topics = {} if self.answer is None else {topic: Topic(self.answer)}
        return Cluster(topics)


@dataclass
class Topic:
    """What the client's metadata says of a topic: its error, if any, and partitions."""

    count: int
    error: object = None
    partitions: dict[int, object] = field(init=False)

    def __post_init__(self) -> None:
        self.partitions = dict.fromkeys(range(self.count))


@dataclass
class Cluster:
    topics: dict[str, Topic]


def ev(subject: str, n: int) -> UsageEvent:
    return UsageEvent.create(type="t", subject=subject, id=f"{subject}-{n}", data={})


def test_the_count_is_read_again_only_when_due() -> None:
    client = Metadata(8)
    partitions = Partitions(client, "events", 4, now=100.0)
    assert partitions.reread(100.0 + REFRESH_S - 0.1) is None
    assert client.calls == 0
    assert partitions.reread(100.0 + REFRESH_S) == 8
    assert partitions.reread(100.0 + REFRESH_S + 1) is None  # next one a period later
    assert client.calls == 1


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (KafkaException(KafkaError(KafkaError._TIMED_OUT)), "not re-read"),
        (None, "not in the broker's metadata"),
    ],
)
def test_an_unanswered_read_keeps_the_count_and_says_so(
    answer: Exception | None, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    partitions = Partitions(Metadata(answer), "events", 4, now=0.0)
    assert partitions.reread(REFRESH_S) is None
    assert partitions.count == 4
    assert logged in caplog.text
    assert "4 partitions kept" in caplog.text


def test_a_topic_without_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="no partitions"):
        Partitions(Metadata(1), "events", 0, now=0.0)


def test_packing_by_partition_mixes_subjects_of_one_partition_only_and_keeps_their_order() -> None:
    partitions = Partitions(Metadata(4), "events", 4, now=0.0)
    subjects = [f"c{n}" for n in range(40)]
    events = [ev(s, n) for n in range(5) for s in subjects]
    groups = list(pack(events, max_events=30, max_bytes=1_000_000, lane=partitions.of))
    assert sum(len(g) for g in groups) == len(events)
    for group in groups:  # one partition per record, several subjects in most
        assert len({subject_partition(e.subject, 4) for e, _, _ in group}) == 1
    assert max(len({e.subject for e, _, _ in g}) for g in groups) > 1
    for subject in subjects:
        ids = [e.id for g in groups for e, _, _ in g if e.subject == subject]
        assert ids == [f"{subject}-{n}" for n in range(5)]


def test_the_window_holds_a_partitions_events_together() -> None:
    partitions = Partitions(Metadata(4), "events", 4, now=0.0)
    packer: Packer[Pending] = Packer(0.05, 500, 1_000_000, partitions.of)
    for n, subject in enumerate(f"c{i}" for i in range(100)):
        assert packer.add((ev(subject, n), b"{}", None), now=0.0) == []
    assert packer.due(0.049) == []
    groups = packer.due(0.05)
    assert len(groups) == len({subject_partition(f"c{i}", 4) for i in range(100)})
    assert sum(len(g) for g in groups) == 100
    assert len(packer) == 0
