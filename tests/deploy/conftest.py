"""Fixtures for the tests of the local stack (deploy/stack.py).

The integration tests need the broker that `make up` starts. When it is not running
they fail (never skip): a missing service must turn CI red.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- the cluster

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
sys.path.insert(0, str(DEPLOY))

import pidfiles  # noqa: E402  (deploy/ is a directory of scripts, not a package)
import stack_base  # noqa: E402
import stack_cluster  # noqa: E402


@dataclass(frozen=True)
class Cluster:
    """The cluster topology that `make up TOPOLOGY=cluster` started, as deploy/stack.py
    sees it with the current environment (METERLINE_HOME, METERLINE_CLUSTER_*)."""

    bootstrap: str
    name: str
    shards: int
    replicas: int
    kafka: dict[int, Any]  # node id -> its stack_kafka.Kafka service
    clickhouse: dict[tuple[int, int], Any]  # (shard, replica) -> stack_clickhouse.ClickHouse

    def record(self, service: Any) -> Any:
        """The pid record of a running server of the cluster."""
        record = pidfiles.PidRecord.load(service.pid_file)
        assert record is not None, f"{service.name} has no pid file"
        assert pidfiles.is_ours(record), f"{service.name} is not running"
        return record

    def kill(self, service: Any) -> None:
        """SIGKILL a server (and its process group) and wait until it is gone."""
        record = self.record(service)
        os.killpg(record.pid, signal.SIGKILL)
        assert pidfiles.wait_for(lambda: not pidfiles.is_ours(record), 30), service.name

    def up(self) -> str:
        """`stack.py up --topology cluster`: starts what is not running, waits for health."""
        done = subprocess.run(
            [sys.executable, str(DEPLOY / "stack.py"), "up", "--topology", "cluster"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running cluster topology. Not running: a failure in CI, a skip elsewhere (it
    is seven servers; `make test` starts it, a bare `pytest` run need not)."""
    settings = stack_base.Settings.from_env()
    shape = stack_cluster.ClusterSettings.from_env()
    topology = stack_cluster.cluster_topology(settings, shape)
    down = [svc.name for svc in topology.services if not pidfiles.port_open(svc.ports[0])]
    if down:
        message = (
            f"the cluster topology is not running ({', '.join(down)} not listening). "
            "Start it with `make up TOPOLOGY=cluster` (`make test` does this itself)."
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    services = {svc.name: svc for svc in topology.services}
    return Cluster(
        bootstrap=topology.exports["METERLINE_CLUSTER_KAFKA_BOOTSTRAP"],
        name=stack_cluster.CLUSTER_NAME,
        shards=shape.shards,
        replicas=shape.replicas,
        kafka={i: services[f"kafka-{i}"] for i in range(1, stack_cluster.KAFKA_NODES + 1)},
        clickhouse={
            (shard, replica): services[stack_cluster.clickhouse_name(shard, replica)]
            for _k, shard, replica in shape.clickhouse_servers()
        },
    )
