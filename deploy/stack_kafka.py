"""Apache Kafka in KRaft mode, from its jars on Maven Central, for ``deploy/stack.py``:
prepare (tools, jars, config, storage), start and probe one node. The single-node stack
runs one node that is a quorum by itself; the cluster (``stack_cluster.py``) runs three
that vote together. A :class:`KafkaNode` says which is which."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socket
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    HOST,
    StackError,
    port_open,
    spawn_detached,
)
from stack_base import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    KAFKA_HEALTH_DEADLINE_S,
    KAFKA_JVM_OPTS,
    KAFKA_LOG4J2,
    KAFKA_POM,
    Service,
    Settings,
    run_logged,
)
from stack_jvm import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    ensure_java_tools,
    java_command,
    resolve_jars,
)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 — never starting with '-',
    which the storage tool's argument parser takes for an option (1 id in 64 did; Kafka's
    own generator redraws those too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class KafkaNode:
    """Where one broker+controller lives, whom it votes with, and how much it keeps.

    ``voters`` is every voter's (node id, controller port): a static quorum, so each
    node's storage is formatted with the same cluster id and no ``--standalone``.
    ``cluster_id_file`` holds that shared id for a quorum of several nodes (the single
    node draws its own when it formats). ``replication``/``min_insync`` apply to the
    internal topics and are the defaults for new ones.
    """

    name: str
    node_id: int
    port: int
    controller_port: int
    voters: tuple[tuple[int, int], ...]
    conf: Path
    data: Path
    log_dir: Path
    run_dir: Path
    replication: int = 1
    min_insync: int = 1
    jvm_opts: tuple[str, ...] = KAFKA_JVM_OPTS
    cluster_id_file: Path | None = None
    deadline_s: float = KAFKA_HEALTH_DEADLINE_S


def single_node(settings: Settings) -> KafkaNode:
    """The single-node stack's broker: node 1, a quorum of one, replication 1."""
    root = settings.home / "kafka"
    return KafkaNode(
        name="kafka",
        node_id=1,
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        voters=((1, settings.kafka_controller_port),),
        conf=root / "conf",
        # Data is per version: a newer broker's metadata can not be read by an older one.
        data=root / settings.kafka_version / "data",
        log_dir=settings.home / "logs" / "kafka",
        run_dir=settings.home / "run",
    )


class Kafka(Service):
    """One KRaft node (broker + controller) run from Maven Central jars."""

    name = "kafka"
    deadline_s = KAFKA_HEALTH_DEADLINE_S

    def __init__(self, settings: Settings, node: KafkaNode | None = None) -> None:
        self.node = node or single_node(settings)
        super().__init__(settings, self.node.name, self.node.run_dir)
        self.deadline_s = self.node.deadline_s
        # The jars are shared by every node (and both topologies) of one version.
        self.version_dir = settings.home / "kafka" / settings.kafka_version
        self.libs = self.version_dir / "libs"
        self.data = self.node.data
        self.conf = self.node.conf
        self.log_dir = self.node.log_dir
        self.java = "java"  # prepare() finds (or installs) the real one

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.node.port, self.node.controller_port)

    @property
    def logs(self) -> tuple[Path, ...]:
        return (self.log_dir / "server.log", self.log_dir / "kafka.out")

    @property
    def marker(self) -> str:
        return str(self.conf / "server.properties")

    @property
    def fingerprint(self) -> str:
        text = f"Kafka {self.s.kafka_version}, {super().fingerprint}"
        if len(self.node.voters) > 1:
            text += f", node {self.node.node_id} of voters {self._voters()}"
        return text

    def prepare(self) -> None:
        self.java = ensure_java_tools(self.s.home)
        resolve_jars(
            KAFKA_POM,
            {"kafka.version": self.s.kafka_version},
            self.libs,
            f"kafka_2.13-{self.s.kafka_version}.jar",
            self.s.home / "logs" / "kafka" / "mvn.log",
        )
        self._write_config()
        self._format_storage()

    def _voters(self) -> str:
        return ",".join(f"{node_id}@{HOST}:{port}" for node_id, port in self.node.voters)

    def _write_config(self) -> None:
        """Write server.properties and the log4j2 config (regenerated on every up)."""
        for path in (self.conf, self.log_dir, self.data.parent):
            path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(KAFKA_LOG4J2, self.conf / "log4j2.properties")
        node = self.node
        replication, min_isr = str(node.replication), str(node.min_insync)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": self._voters(),
            "listeners": (
                f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": "1",
            # Topics are created explicitly (the app) or through the admin API (Faust's
            # changelog/repartition/leader topics); a typo must fail, not create a topic.
            "auto.create.topics.enable": "false",
            "default.replication.factor": replication,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "10",
            "min.insync.replicas": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "log.segment.bytes": str(256 * 1024 * 1024),
        }
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        (self.conf / "server.properties").write_text(
            "# Generated by deploy/stack.py on every `up`; edit the script, not this file.\n" + text
        )

    def _java(self, main_class: str, *jvm_options: str) -> list[str]:
        """``java`` running ``main_class`` from the resolved jars, logging to our log dir."""
        return java_command(
            self.java,
            main_class,
            self.libs,
            jvm_options,
            {
                "log4j2.configurationFile": str(self.conf / "log4j2.properties"),
                "kafka.logs.dir": str(self.log_dir),
            },
        )

    def _cluster_id(self) -> str:
        """A new id for a node of its own; the shared one (drawn once) for a quorum."""
        path = self.node.cluster_id_file
        if path is None:
            return new_cluster_id()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def _format_storage(self) -> None:
        """Format the KRaft log dir once; meta.properties marks a formatted directory.

        A node of a quorum formatted under another cluster id than its peers would never
        join them; that is an error naming what to delete, not a silent re-format."""
        meta = self.data / "meta.properties"
        if meta.exists():
            if self.node.cluster_id_file is not None:
                found = _meta_cluster_id(meta)
                wanted = self._cluster_id()
                if found != wanted:
                    raise StackError(
                        f"{meta} has cluster.id {found} but the cluster's id is {wanted} "
                        f"({self.node.cluster_id_file}); stop the cluster and delete the data "
                        f"of every node (and that file) to start it afresh"
                    )
            return
        cmd = [
            *self._java("kafka.tools.StorageTool"),
            "format",
            "--cluster-id",
            self._cluster_id(),
            "--config",
            str(self.conf / "server.properties"),
        ]
        run_logged(cmd, self.log_dir / "format.log", "formatting the storage directory")

    def start(self) -> int:
        cmd = [
            *self._java("kafka.Kafka", *self.node.jvm_opts),
            str(self.conf / "server.properties"),
        ]
        return spawn_detached(cmd, self.log_dir / "kafka.out", cwd=self.data.parent)

    def probe(self) -> tuple[bool, str]:
        """A metadata request to this node that lists this node among the live brokers
        (a broker is listed once the controller has registered and unfenced it)."""
        port = self.node.port
        if not port_open(port):
            return False, f"port {port} closed"
        try:
            from confluent_kafka.admin import AdminClient  # optional: stdlib probe below
        except ImportError:
            return _kafka_api_versions_probe(port)
        admin = AdminClient({"bootstrap.servers": f"{HOST}:{port}"})
        try:
            meta = admin.list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001 - KafkaException or a librdkafka error
            return False, f"metadata request failed: {exc}"
        if self.node.node_id not in meta.brokers:
            return False, f"node {self.node.node_id} not yet among brokers {sorted(meta.brokers)}"
        ready, detail = _producer_id_assigned(port)
        if not ready:
            return False, detail
        return True, (
            f"metadata ok, {len(meta.brokers)} broker(s), {len(meta.topics)} topic(s); {detail}"
        )


def _producer_id_assigned(port: int, timeout_s: float = 5.0) -> tuple[bool, str]:
    """Whether an idempotent producer (every producer of Meterline's events topic is one)
    gets its producer id from this node, as librdkafka's statistics report it.  A broker
    allocates ids in blocks it asks the controller for, so the first producer after a
    start is told "coordinator load in progress" and retries; a node is healthy once that
    is over, and a newcomer's first producer does not see the retry."""
    from confluent_kafka import Producer

    state: dict[str, object] = {}
    said: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    log = logging.getLogger(f"meterline.stack.kafka-{port}")
    log.propagate = False  # kept for the answer below, not printed by the stack command
    log.handlers[:] = [_Keep()]
    producer = Producer(
        {
            "bootstrap.servers": f"{HOST}:{port}",
            "enable.idempotence": True,
            "statistics.interval.ms": 50,
            "stats_cb": lambda raw: state.update(json.loads(raw).get("eos", {})),
            "logger": log,
        }
    )
    deadline = time.monotonic() + timeout_s
    while state.get("idemp_state") != "Assigned" and time.monotonic() < deadline:
        producer.poll(0.05)
    if state.get("idemp_state") == "Assigned":
        return True, f"producer id {state.get('producer_id')} assigned"
    last = f": {said[-1]}" if said else ""
    return False, f"no producer id yet (state {state.get('idemp_state', 'unknown')}){last}"


def _meta_cluster_id(meta: Path) -> str:
    """The cluster.id a formatted KRaft log dir belongs to."""
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return ""


def _kafka_api_versions_probe(port: int) -> tuple[bool, str]:
    """Stdlib fallback: an ApiVersions v0 request over a raw socket; error_code 0 is healthy."""
    client_id = b"meterline-stack"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exact(sock, 10)
    except OSError as exc:
        return False, f"ApiVersions request failed: {exc}"
    _size, correlation, error = struct.unpack(">iih", header)
    if correlation != 7 or error != 0:
        return False, f"ApiVersions answered error_code={error}"
    return True, "ApiVersions ok (stdlib probe; confluent_kafka not importable)"


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    """Read exactly size bytes or raise ConnectionError."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        data += chunk
    return data


BATCH_CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
"""The low three bits of a record batch's ``attributes`` (Kafka's message format v2)."""


def stored_batches(node: KafkaNode, topic: str) -> list[tuple[str, int]]:
    """Every record batch the broker holds for ``topic`` on disk, as (codec, size in
    bytes), partition by partition: what a producer's ``compression.type`` became.

    A v2 batch starts with its base offset (8 bytes) and its length after that field
    (4), then the leader epoch (4), the magic byte (1), a CRC (4) and the attributes (2),
    so a segment file is walked batch by batch from those two fields alone; a batch
    still being appended at a segment's end is left out."""
    batches: list[tuple[str, int]] = []
    for partition in sorted(node.data.glob(f"{topic}-*")):
        if not partition.name[len(topic) + 1 :].isdigit():
            continue  # another topic whose name extends this one's
        for segment in sorted(partition.glob("*.log")):
            data = segment.read_bytes()
            at = 0
            while at + 23 <= len(data):
                (length,) = struct.unpack_from(">i", data, at + 8)
                if at + 12 + length > len(data):
                    break
                magic = data[at + 16]
                if magic != 2:
                    raise ValueError(f"{segment}: a batch of magic {magic} at byte {at}")
                (attributes,) = struct.unpack_from(">h", data, at + 21)
                batches.append((BATCH_CODECS.get(attributes & 7, str(attributes & 7)), length + 12))
                at += 12 + length
    return batches
