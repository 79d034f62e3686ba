"""The local cluster topology of ``deploy/stack.py`` (``--topology cluster``): three
KRaft Kafka nodes voting together, one ZooKeeper, and ClickHouse servers of N shards × M
replicas (2 × 2 by default), all on 127.0.0.1 under ``$METERLINE_HOME/cluster``.

Ports come from one base (``METERLINE_CLUSTER_PORT_BASE``, default 24100), so clones
that run side by side choose one variable:

=========================  =====================  ======================
what                       port                   default (base 24100)
=========================  =====================  ======================
ZooKeeper client           base                   24100
Kafka node i (1..3)        base + 10 + i          24111..24113
its KRaft controller       base + 20 + i          24121..24123
ClickHouse server k (1..)  native base + 30 + k   24131..24134
                           HTTP base + 40 + k     24141..24144
                           interserver base+50+k  24151..24154
=========================  =====================  ======================

Server k is shard ``(k - 1) // replicas + 1``, replica ``(k - 1) % replicas + 1``. The
default range sits below the kernel's ephemeral ports (32768 on) and away from the
single node's ports and their 19xxx/29xxx/39xxx shifts that other stacks use here.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape as xml_escape

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    HOST,
    StackError,
)
from stack_base import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    KAFKA_JVM_OPTS,
    Settings,
    Topology,
)
from stack_clickhouse import ClickHouse, ClickHouseNode  # noqa: E402
from stack_kafka import Kafka, KafkaNode  # noqa: E402
from stack_zookeeper import ZooKeeper  # noqa: E402

CLUSTER_NAME = "meterline"
CLICKHOUSE_CLUSTER_TEMPLATE = DEPLOY_DIR / "clickhouse" / "cluster.xml"
DEFAULT_PORT_BASE = 24100
PORT_SPAN = 60
MAX_CLICKHOUSE_SERVERS = 9
KAFKA_NODES = 3
# Replication 3 with 2 in sync: one broker may be down and acks=all writes still succeed.
KAFKA_REPLICATION = 3
KAFKA_MIN_INSYNC = 2
# Three brokers, four ClickHouse servers and ZooKeeper on 2 cores: a modest heap each.
CLUSTER_KAFKA_JVM_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    *(opt for opt in KAFKA_JVM_OPTS if not opt.startswith(("-Xms", "-Xmx"))),
)
# Everything starts at once on 2 cores; the first quorum election waits for its peers.
CLUSTER_HEALTH_DEADLINE_S = 150.0
ZOOKEEPER_SESSION_TIMEOUT_MS = 10000


@dataclass(frozen=True)
class ClusterSettings:
    """The cluster's shape and port base, read from METERLINE_CLUSTER_* variables."""

    port_base: int
    shards: int
    replicas: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ClusterSettings:
        """Read the settings; a malformed value is a StackError, not a default."""
        env = dict(os.environ) if env is None else env
        base = _integer(env, "METERLINE_CLUSTER_PORT_BASE", DEFAULT_PORT_BASE)
        if not 1024 <= base <= 65535 - PORT_SPAN:
            raise StackError(
                f"METERLINE_CLUSTER_PORT_BASE={base} must lie in 1024..{65535 - PORT_SPAN} "
                f"(the cluster uses the {PORT_SPAN} ports from it)"
            )
        shards = _integer(env, "METERLINE_CLUSTER_CLICKHOUSE_SHARDS", 2)
        replicas = _integer(env, "METERLINE_CLUSTER_CLICKHOUSE_REPLICAS", 2)
        if not (shards >= 1 and replicas >= 1 and shards * replicas <= MAX_CLICKHOUSE_SERVERS):
            raise StackError(
                f"{shards} shard(s) × {replicas} replica(s) of ClickHouse: need at least 1 "
                f"of each and at most {MAX_CLICKHOUSE_SERVERS} servers in all"
            )
        return cls(port_base=base, shards=shards, replicas=replicas)

    @property
    def zookeeper_port(self) -> int:
        return self.port_base

    def kafka_port(self, node_id: int) -> int:
        return self.port_base + 10 + node_id

    def kafka_controller_port(self, node_id: int) -> int:
        return self.port_base + 20 + node_id

    def clickhouse_servers(self) -> list[tuple[int, int, int]]:
        """(k, shard, replica) of every server, k counting from 1 in shard order."""
        return [
            (index + 1, index // self.replicas + 1, index % self.replicas + 1)
            for index in range(self.shards * self.replicas)
        ]

    def clickhouse_ports(self, k: int) -> tuple[int, int, int]:
        """(native, HTTP, interserver) ports of server k."""
        return (self.port_base + 30 + k, self.port_base + 40 + k, self.port_base + 50 + k)


def _integer(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit():
        raise StackError(f"{name}={raw!r} is not a whole number")
    return int(raw)


def clickhouse_name(shard: int, replica: int) -> str:
    return f"clickhouse-s{shard}r{replica}"


def cluster_topology(settings: Settings, cluster: ClusterSettings) -> Topology:
    """ZooKeeper first (the ClickHouse replicas need it at start), then the Kafka
    quorum and the ClickHouse servers side by side."""
    root = settings.home / "cluster"
    run_dir = root / "run"
    # One ZooKeeper server is enough on one machine; "-1" is its place in an ensemble.
    zookeeper = ZooKeeper(
        settings, "zookeeper-1", cluster.zookeeper_port, root / "zookeeper-1", run_dir
    )
    return Topology(
        name="cluster",
        run_dir=run_dir,
        stages=(
            (zookeeper,),
            (*_kafka_nodes(settings, cluster, root), *_clickhouse_nodes(settings, cluster, root)),
        ),
        exports=cluster_exports(settings, cluster),
    )


def _kafka_nodes(settings: Settings, cluster: ClusterSettings, root: Path) -> list[Kafka]:
    ids = range(1, KAFKA_NODES + 1)
    voters = tuple((node_id, cluster.kafka_controller_port(node_id)) for node_id in ids)
    nodes = []
    for node_id in ids:
        node_root = root / f"kafka-{node_id}"
        node = KafkaNode(
            name=f"kafka-{node_id}",
            node_id=node_id,
            port=cluster.kafka_port(node_id),
            controller_port=cluster.kafka_controller_port(node_id),
            voters=voters,
            conf=node_root / "conf",
            data=node_root / settings.kafka_version / "data",
            log_dir=node_root / "logs",
            run_dir=root / "run",
            replication=KAFKA_REPLICATION,
            min_insync=KAFKA_MIN_INSYNC,
            jvm_opts=CLUSTER_KAFKA_JVM_OPTS,
            cluster_id_file=root / f"kafka-{settings.kafka_version}.cluster-id",
            deadline_s=CLUSTER_HEALTH_DEADLINE_S,
        )
        nodes.append(Kafka(settings, node))
    return nodes


def _clickhouse_nodes(settings: Settings, cluster: ClusterSettings, root: Path) -> list[ClickHouse]:
    shards_xml = _remote_servers_shards(cluster)
    nodes = []
    for k, shard, replica in cluster.clickhouse_servers():
        tcp, http, interserver = cluster.clickhouse_ports(k)
        name = clickhouse_name(shard, replica)
        values = {
            "cluster": CLUSTER_NAME,
            "shards": shards_xml,
            "shard": str(shard),
            "replica": f"s{shard}r{replica}",
            "interserver_port": str(interserver),
            "zookeeper_port": str(cluster.zookeeper_port),
            "session_timeout_ms": str(ZOOKEEPER_SESSION_TIMEOUT_MS),
        }
        try:
            text = Template(CLICKHOUSE_CLUSTER_TEMPLATE.read_text()).substitute(values)
        except (KeyError, ValueError) as exc:
            raise StackError(f"{CLICKHOUSE_CLUSTER_TEMPLATE}: bad placeholder: {exc}") from exc
        node = ClickHouseNode(
            name=name,
            root=root / name,
            log_dir=root / name / "logs",
            run_dir=root / "run",
            tcp_port=tcp,
            http_port=http,
            extra_ports=(interserver,),
            config_d={"cluster.xml": text},
        )
        server = ClickHouse(settings, node)
        server.deadline_s = CLUSTER_HEALTH_DEADLINE_S
        nodes.append(server)
    return nodes


def _remote_servers_shards(cluster: ClusterSettings) -> str:
    """The <shard> elements of remote_servers, every server by its native port."""
    by_shard: dict[int, list[str]] = {}
    for k, shard, _replica in cluster.clickhouse_servers():
        tcp = cluster.clickhouse_ports(k)[0]
        by_shard.setdefault(shard, []).append(
            f"                <replica><host>{xml_escape(HOST)}</host><port>{tcp}</port></replica>"
        )
    return "\n".join(
        "            <shard>\n"
        "                <internal_replication>true</internal_replication>\n"
        + "\n".join(replicas)
        + "\n            </shard>"
        for replicas in by_shard.values()
    )


def cluster_exports(settings: Settings, cluster: ClusterSettings) -> dict[str, str]:
    """The connection settings of the cluster as environment variables."""
    servers = cluster.clickhouse_servers()
    ids = range(1, KAFKA_NODES + 1)
    return {
        "METERLINE_HOME": str(settings.home),
        "METERLINE_KAFKA_VERSION": settings.kafka_version,
        "METERLINE_CLUSTER_PORT_BASE": str(cluster.port_base),
        "METERLINE_CLUSTER_NAME": CLUSTER_NAME,
        "METERLINE_CLUSTER_KAFKA_BOOTSTRAP": ",".join(
            f"{HOST}:{cluster.kafka_port(node_id)}" for node_id in ids
        ),
        # The pipeline's own settings for the cluster: its brokers, and the first
        # ClickHouse server, from which it learns the shards (clickhouse_cluster).
        "METERLINE_CLICKHOUSE_CLUSTER": CLUSTER_NAME,
        "METERLINE_CLICKHOUSE_TCP_PORT": str(cluster.clickhouse_ports(1)[0]),
        "METERLINE_CLICKHOUSE_HTTP_PORT": str(cluster.clickhouse_ports(1)[1]),
        "METERLINE_KAFKA_BROKERS": ",".join(
            f"{HOST}:{cluster.kafka_port(node_id)}" for node_id in ids
        ),
        "METERLINE_TOPIC_REPLICATION_FACTOR": str(KAFKA_NODES),
        "METERLINE_TOPIC_MIN_INSYNC_REPLICAS": str(KAFKA_NODES - 1),
        "METERLINE_CLUSTER_ZOOKEEPER": f"{HOST}:{cluster.zookeeper_port}",
        "METERLINE_CLUSTER_CLICKHOUSE_SHARDS": str(cluster.shards),
        "METERLINE_CLUSTER_CLICKHOUSE_REPLICAS": str(cluster.replicas),
        # Native-protocol (clickhouse-driver) and HTTP addresses, in shard order.
        "METERLINE_CLUSTER_CLICKHOUSE_HOSTS": ",".join(
            f"{HOST}:{cluster.clickhouse_ports(k)[0]}" for k, _, _ in servers
        ),
        "METERLINE_CLUSTER_CLICKHOUSE_HTTP": ",".join(
            f"{HOST}:{cluster.clickhouse_ports(k)[1]}" for k, _, _ in servers
        ),
    }
