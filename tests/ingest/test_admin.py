"""The topics Meterline creates carry the replication the settings ask for; an existing
topic that does not is refused with the fix."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from ingest.admin import ensure_topics, meterline_topics
from schemas.errors import InvalidInput
from schemas.settings import Settings


def test_every_topic_has_the_replication_of_the_settings() -> None:
    cluster = Settings(topic_replication_factor=3, topic_min_insync_replicas=2)
    specs = meterline_topics(cluster)
    assert {s.name for s in specs} == {
        cluster.events_topic,
        cluster.dead_letter_topic,
        cluster.invoices_topic,
        cluster.notifications_topic,
    }
    assert all(s.replication_factor == 3 for s in specs)
    assert all(s.config["min.insync.replicas"] == "2" for s in specs)
    assert all(s.replication_factor == 1 for s in meterline_topics(Settings()))


@pytest.mark.integration
def test_topics_are_created_replicated_and_a_mismatch_is_refused(isolated: Settings) -> None:
    specs = meterline_topics(isolated)
    ensure_topics(isolated.kafka_bootstrap, specs)
    admin = AdminClient({"bootstrap.servers": isolated.kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    events = topics[isolated.events_topic]
    assert [len(p.replicas) for p in events.partitions.values()] == [1] * 4
    resource = ConfigResource(ConfigResource.Type.TOPIC, isolated.events_topic)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["min.insync.replicas"].value == "1"

    asked = meterline_topics(isolated.model_copy(update={"topic_replication_factor": 3}))
    with pytest.raises(InvalidInput) as refused:
        ensure_topics(isolated.kafka_bootstrap, asked)
    [problem] = refused.value.problems
    assert problem.path == isolated.events_topic
    assert "has 1 replica(s) per partition, settings say 3" in problem.message
    assert "METERLINE_TOPIC_REPLICATION_FACTOR" in problem.fix
