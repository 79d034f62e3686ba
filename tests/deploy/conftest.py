"""Fixtures for the tests of the local stack (deploy/stack.py).

The integration tests need the broker that `make up` starts. When it is not running
they fail (never skip): a missing service must turn CI red.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.deploy.brokerkit import BOOTSTRAP, delete_topics_with_prefix


@pytest.fixture(scope="session")
def kafka_admin() -> AdminClient:
    """An admin client for a broker that has just answered a metadata request."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    try:
        admin.list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(
            f"Kafka is not reachable at {BOOTSTRAP} ({exc}). "
            "Start it with `make up` (or `python deploy/stack.py up`).",
            pytrace=False,
        )
    return admin


@pytest.fixture
def topic_prefixes(kafka_admin: AdminClient) -> Iterator[list[str]]:
    """Tests append name prefixes here; matching topics are deleted afterwards."""
    prefixes: list[str] = []
    yield prefixes
    delete_topics_with_prefix(kafka_admin, prefixes)
