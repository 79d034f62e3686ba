"""The cluster topology of deploy/stack.py (`make up TOPOLOGY=cluster`): three KRaft
Kafka nodes that keep acknowledged writes through the loss of one, and ClickHouse shards
× replicas that place rows by subject, replicate them, and survive the loss of a replica.

Each fault test SIGKILLs one server and restarts it through `stack.py up --topology
cluster` (also when the test fails), then waits until it has caught up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import Client
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.deploy.brokerkit import delete_topics_with_prefix, unique_name, wait_for
from tests.deploy.conftest import Cluster

# ------------------------------------------------------------------------------ Kafka


def partitions_of(admin: AdminClient, topic: str) -> dict[int, Any]:
    """Partition id -> its metadata (leader, replicas, isrs) as the cluster reports it."""
    return dict(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def produce(producer: Producer, topic: str, values: range) -> tuple[set[str], list[str]]:
    """Send one record per value with acks=all; (acknowledged values, errors)."""
    acked: set[str] = set()
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is None:
            acked.add(msg.value().decode())
        else:
            errors.append(f"{msg.value().decode()}: {err}")

    for value in values:
        producer.produce(topic, key=str(value), value=str(value), on_delivery=on_delivery)
        producer.poll(0)
    left = producer.flush(150)
    assert left == 0, f"{left} record(s) neither acknowledged nor failed after 150 s"
    return acked, errors


def read_all(bootstrap: str, topic: str, expected: int) -> Counter[str]:
    """Every value in the topic from the start, counted; stops at the end of every
    partition once at least ``expected`` values were read."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("cluster-reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    seen: Counter[str] = Counter()
    at_end: set[int] = set()
    partitions = 3

    def check() -> tuple[bool, Any]:
        msg = consumer.poll(0.5)
        if msg is None:
            return False, (sum(seen.values()), sorted(at_end))
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(f"consumer error: {msg.error()}")
            at_end.add(msg.partition())
        else:
            seen[msg.value().decode()] += 1
            at_end.discard(msg.partition())
        done = len(at_end) == partitions and sum(seen.values()) >= expected
        return done, (sum(seen.values()), sorted(at_end))

    try:
        wait_for(check, 90, f"{expected} records and the end of {topic}", step_s=0)
    finally:
        consumer.close()
    return seen


@pytest.mark.integration
@pytest.mark.cluster
def test_kafka_keeps_every_acknowledged_write_through_a_broker_kill(cluster: Cluster) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 3]
    topic = unique_name("cluster")
    new = NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})
    admin.create_topics([new])[topic].result(30)
    try:
        wait_for(
            lambda: _all_in_sync(admin, topic, 3), 60, f"3 in-sync replicas for all of {topic}"
        )
        producer = Producer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "delivery.timeout.ms": 120000,
            }
        )
        acked, errors = produce(producer, topic, range(0, 300))
        assert (len(acked), errors) == (300, [])

        victim = partitions_of(admin, topic)[0].leader
        try:
            cluster.kill(cluster.kafka[victim])
            more, errors = produce(producer, topic, range(300, 600))
            assert errors == [], errors[:5]
            assert len(more) == 300
            acked |= more
            wait_for(lambda: _all_in_sync(admin, topic, 2), 30, f"broker {victim} out of every ISR")

            seen = read_all(cluster.bootstrap, topic, len(acked))
            assert set(seen) == acked
            twice = {value: n for value, n in seen.items() if n != 1}
            assert twice == {}, f"read more than once: {sorted(twice)[:10]}"
        finally:
            cluster.up()
        brokers = wait_for(
            lambda: (len(b := admin.list_topics(timeout=10).brokers) == 3, sorted(b)),
            120,
            f"broker {victim} back among the brokers",
        )
        assert brokers == [1, 2, 3]
        wait_for(lambda: _all_in_sync(admin, topic, 3), 120, f"broker {victim} back in every ISR")
    finally:
        delete_topics_with_prefix(admin, [topic])


def _all_in_sync(admin: AdminClient, topic: str, replicas: int) -> tuple[bool, Any]:
    isr = {p: sorted(m.isrs) for p, m in partitions_of(admin, topic).items()}
    return len(isr) == 3 and all(len(nodes) == replicas for nodes in isr.values()), isr


# ------------------------------------------------------------------------- ClickHouse


@pytest.fixture
def servers(cluster: Cluster) -> Iterator[dict[tuple[int, int], Client]]:
    """A native-protocol client per ClickHouse server, by (shard, replica)."""
    clients = {
        place: Client(host="127.0.0.1", port=svc.node.tcp_port, connect_timeout=3)
        for place, svc in cluster.clickhouse.items()
    }
    yield clients
    for client in clients.values():
        client.disconnect()


@pytest.fixture
def database(cluster: Cluster, servers: dict[tuple[int, int], Client]) -> Iterator[str]:
    """A database on every server, created ON CLUSTER, dropped on each server afterwards
    (a replica's DROP also removes it from ZooKeeper)."""
    name = f"mlc_{uuid.uuid4().hex[:10]}"
    servers[1, 1].execute(f"CREATE DATABASE {name} ON CLUSTER {cluster.name}")
    yield name
    for client in servers.values():
        try:
            client.execute(f"DROP DATABASE IF EXISTS {name}")
        except Exception as exc:  # noqa: BLE001 - keep dropping on the others
            print(f"could not drop {name}: {exc}")


def create_tables(cluster: Cluster, client: Client, db: str) -> None:
    """usage_local (replicated per shard) and usage (Distributed by subject), ON CLUSTER."""
    columns = "(subject String, seq UInt32, value UInt64)"
    path = f"/clickhouse/tables/{{shard}}/{db}/usage_local"
    client.execute(
        f"CREATE TABLE {db}.usage_local ON CLUSTER {cluster.name} {columns} "
        f"ENGINE = ReplicatedMergeTree('{path}', '{{replica}}') ORDER BY (subject, seq)"
    )
    client.execute(
        f"CREATE TABLE {db}.usage ON CLUSTER {cluster.name} {columns} "
        f"ENGINE = Distributed({cluster.name}, {db}, usage_local, cityHash64(subject))"
    )


def rows_for(subjects: list[str], first_seq: int) -> list[tuple[str, int, int]]:
    return [(s, first_seq + i, 1000 * j + i) for j, s in enumerate(subjects) for i in range(5)]


def local_rows(client: Client, db: str) -> set[tuple[str, int, int]]:
    return set(client.execute(f"SELECT subject, seq, value FROM {db}.usage_local"))


def expect_placement(
    cluster: Cluster,
    servers: dict[tuple[int, int], Client],
    db: str,
    rows: list[tuple[str, int, int]],
    shard_of: dict[str, int],
    timeout_s: float,
) -> None:
    """Wait until every server's local table holds exactly the rows of its shard."""
    for (shard, replica), client in servers.items():
        wanted = {row for row in rows if shard_of[row[0]] == shard}

        def check(client: Client = client, wanted: set[Any] = wanted) -> tuple[bool, Any]:
            have = local_rows(client, db)
            return have == wanted, (len(have), len(wanted), len(have - wanted))

        wait_for(check, timeout_s, f"shard {shard} replica {replica} to hold its rows")


def through_distributed(client: Client, db: str, subject: str) -> list[tuple[int, int]]:
    return sorted(
        client.execute(
            f"SELECT seq, value FROM {db}.usage WHERE subject = %(subject)s",
            {"subject": subject},
        )
    )


@pytest.mark.integration
@pytest.mark.cluster
def test_clickhouse_places_rows_by_subject_and_survives_a_replica_kill(
    cluster: Cluster, servers: dict[tuple[int, int], Client], database: str
) -> None:
    shape = servers[1, 1].execute(
        "SELECT shard_num, replica_num, port FROM system.clusters "
        "WHERE cluster = %(name)s ORDER BY shard_num, replica_num",
        {"name": cluster.name},
    )
    assert [(s, r) for s, r, _ in shape] == [
        (s, r) for s in range(1, cluster.shards + 1) for r in range(1, cluster.replicas + 1)
    ]
    assert [port for _, _, port in shape] == [
        cluster.clickhouse[s, r].node.tcp_port for s, r, _ in shape
    ]
    create_tables(cluster, servers[1, 1], database)

    subjects = [f"customer-{i:03d}" for i in range(40)]
    shard_of: dict[str, int] = dict(
        servers[1, 1].execute(
            f"SELECT s, modulo(cityHash64(s), {cluster.shards}) + 1 FROM system.one "
            "ARRAY JOIN %(subjects)s AS s",
            {"subjects": subjects},
        )
    )
    assert set(shard_of.values()) == set(range(1, cluster.shards + 1))
    rows = rows_for(subjects, 0)
    servers[1, 1].execute(f"INSERT INTO {database}.usage VALUES", rows)
    expect_placement(cluster, servers, database, rows, shard_of, 60)
    probe = subjects[7]
    wanted = sorted((seq, value) for s, seq, value in rows if s == probe)
    for client in servers.values():
        assert through_distributed(client, database, probe) == wanted

    victim = cluster.clickhouse[1, cluster.replicas]
    others = {place: c for place, c in servers.items() if place != (1, cluster.replicas)}
    writer = others[max(others)]  # a server of the last shard: shard 1's rows go remote
    try:
        cluster.kill(victim)
        more = rows_for(subjects, 100)
        writer.execute(f"INSERT INTO {database}.usage VALUES", more)
        total = len(rows) + len(more)

        def counted(client: Client = writer) -> tuple[bool, Any]:
            n = client.execute(f"SELECT count() FROM {database}.usage")[0][0]
            return n == total, n

        wait_for(counted, 60, f"{total} rows through the Distributed table")
        wanted = sorted((seq, value) for s, seq, value in rows + more if s == probe)
        for client in others.values():
            assert through_distributed(client, database, probe) == wanted
    finally:
        cluster.up()
    servers[1, cluster.replicas].disconnect()  # its connection died with the server
    expect_placement(cluster, servers, database, rows + more, shard_of, 120)


# ---------------------------------------------------------------------- fixture policy


def test_a_cluster_that_is_not_running_fails_in_ci_and_is_skipped_elsewhere(
    tmp_path: Path,
) -> None:
    """The `cluster` fixture against ports nothing listens on: CI=true must turn red."""
    base = _closed_port_base()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["METERLINE_CLUSTER_PORT_BASE"] = str(base)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cluster"]
    cmd += [__file__]
    results = {}
    for ci in ("true", None):
        run_env = env if ci is None else {**env, "CI": ci}
        run = subprocess.run(
            [*cmd, "--basetemp", str(tmp_path / f"ci-{ci}")],
            capture_output=True,
            text=True,
            env=run_env,
            timeout=120,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
        results[ci] = run
    in_ci, elsewhere = results["true"], results[None]
    assert in_ci.returncode == 1, in_ci.stdout[-2000:]
    assert "2 errors" in in_ci.stdout, in_ci.stdout[-2000:]
    assert "skipped" not in in_ci.stdout, in_ci.stdout[-2000:]
    assert elsewhere.returncode == 0, elsewhere.stdout[-2000:]
    assert "2 skipped" in elsewhere.stdout, elsewhere.stdout[-2000:]


def _closed_port_base() -> int:
    """A port base whose 60 ports nothing listens on."""
    import pidfiles

    for base in range(41000, 60000, 100):
        if not any(pidfiles.port_open(port) for port in range(base, base + 60)):
            return base
    raise AssertionError("no free port range for the test")


# ------------------------------------------------------- settings and refusals (no servers)

STACK = Path(__file__).resolve().parents[2] / "deploy" / "stack.py"


def stack(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """deploy/stack.py on a private METERLINE_HOME, with METERLINE_CLUSTER_* from ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_CLUSTER_")}
    return subprocess.run(
        [sys.executable, str(STACK), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "METERLINE_HOME": str(home), **env},
        check=False,
    )


def test_env_prints_the_cluster_from_one_port_base(tmp_path: Path) -> None:
    result = stack(tmp_path, "env", "--topology", "cluster", METERLINE_CLUSTER_PORT_BASE="30000")
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    assert {
        "export METERLINE_CLUSTER_NAME=meterline",
        "export METERLINE_CLUSTER_KAFKA_BOOTSTRAP=127.0.0.1:30011,127.0.0.1:30012,127.0.0.1:30013",
        "export METERLINE_CLUSTER_ZOOKEEPER=127.0.0.1:30000",
        "export METERLINE_KAFKA_BROKERS=127.0.0.1:30011,127.0.0.1:30012,127.0.0.1:30013",
        "export METERLINE_TOPIC_REPLICATION_FACTOR=3",
        "export METERLINE_TOPIC_MIN_INSYNC_REPLICAS=2",
        "export METERLINE_CLICKHOUSE_CLUSTER=meterline",
        "export METERLINE_CLICKHOUSE_TCP_PORT=30031",
        "export METERLINE_CLICKHOUSE_HTTP_PORT=30041",
        "export METERLINE_CLUSTER_CLICKHOUSE_HOSTS="
        "127.0.0.1:30031,127.0.0.1:30032,127.0.0.1:30033,127.0.0.1:30034",
        "export METERLINE_CLUSTER_CLICKHOUSE_HTTP="
        "127.0.0.1:30041,127.0.0.1:30042,127.0.0.1:30043,127.0.0.1:30044",
    } <= lines, result.stdout


def test_a_malformed_cluster_setting_is_an_error_only_where_the_cluster_is_used(
    tmp_path: Path,
) -> None:
    bad = {"METERLINE_CLUSTER_PORT_BASE": "65530"}
    result = stack(tmp_path, "env", "--topology", "cluster", **bad)
    assert result.returncode == 1
    assert "METERLINE_CLUSTER_PORT_BASE=65530 must lie in" in result.stderr
    # The single node's commands do not depend on it while no cluster was started here.
    assert stack(tmp_path, "env", **bad).returncode == 0
    down = stack(tmp_path, "down", **bad)
    assert down.returncode == 0, down.stderr


def test_cluster_up_refuses_a_port_held_by_another_process(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    # ZooKeeper's port is the base itself; an ephemeral port (< 61000) leaves room for 60.
    base = holder.getsockname()[1]
    try:
        result = stack(
            tmp_path, "up", "--topology", "cluster", METERLINE_CLUSTER_PORT_BASE=str(base)
        )
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"zookeeper-1: not started by this METERLINE_HOME ({tmp_path})" in result.stderr
    assert f"port {base} is in use by pid {os.getpid()}" in result.stderr
    assert list((tmp_path / "cluster" / "run").glob("*.pid")) == []
    assert not (tmp_path / "zookeeper").exists(), "nothing may be downloaded or started"


def test_down_without_a_topology_stops_the_cluster_too(tmp_path: Path) -> None:
    """What `make down` (CI's last step) runs: every process either topology recorded."""
    servers = {}
    for run_dir, name, marker in (
        (tmp_path / "run", "clickhouse", tmp_path / "clickhouse" / "conf" / "config.xml"),
        (
            tmp_path / "cluster" / "run",
            "kafka-2",
            tmp_path / "cluster/kafka-2/conf/server.properties",
        ),
    ):
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(300)", str(marker)],
            start_new_session=True,
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        ticks = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        record = {"pid": proc.pid, "start_ticks": ticks, "marker": str(marker)}
        (run_dir / f"{name}.pid").write_text(json.dumps(record))
        servers[name] = proc
    try:
        result = stack(tmp_path, "down")
        assert result.returncode == 0, result.stdout + result.stderr
        for name, proc in servers.items():
            assert f"{name}: stopped (pid {proc.pid})" in result.stdout, result.stdout
            assert proc.wait(timeout=10) == -15
    finally:
        for proc in servers.values():
            proc.kill()
            proc.wait()
