"""The local Apache Kafka (KRaft, one node, from its jars on Maven Central) for
``deploy/stack.py``: prepare (tools, jars, config, storage), start and probe."""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import struct
import sys
import uuid
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
    apt_install,
    find_executable,
    java_major,
    run_logged,
)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 — never starting with '-',
    which the storage tool's argument parser takes for an option (1 id in 64 did; Kafka's
    own generator redraws those too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Service):
    """Single-node KRaft Kafka (broker + controller) run from Maven Central jars."""

    name = "kafka"
    deadline_s = KAFKA_HEALTH_DEADLINE_S

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        root = settings.home / "kafka"
        self.version_dir = root / settings.kafka_version
        self.libs = self.version_dir / "libs"
        self.libs_marker = self.version_dir / "libs.ok"
        # Data is per version: a newer broker's metadata can not be read by an older one.
        self.data = self.version_dir / "data"
        self.conf = root / "conf"
        self.log_dir = settings.home / "logs" / "kafka"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.s.kafka_port, self.s.kafka_controller_port)

    @property
    def logs(self) -> tuple[Path, ...]:
        return (self.log_dir / "server.log", self.log_dir / "kafka.out")

    @property
    def marker(self) -> str:
        return str(self.conf / "server.properties")

    @property
    def fingerprint(self) -> str:
        return f"Kafka {self.s.kafka_version}, {super().fingerprint}"

    def prepare(self) -> None:
        self._ensure_tools()
        self._ensure_jars()
        self._write_config()
        self._format_storage()

    def _ensure_tools(self) -> None:
        """Java 17+ and Maven are needed; install Maven (pulls a JRE) when it is missing."""
        if find_executable("mvn") is None or find_executable("java") is None:
            apt_install(["maven"], self.s.home / "logs" / "apt.log")
        java = find_executable("java") or "java"
        if java_major(java) < 17:
            raise StackError(f"Kafka 4 needs Java 17 or newer; {java} is older")

    def _ensure_jars(self) -> None:
        """Resolve the broker classpath once per version (and pom content) into the cache.

        The marker is written only after Maven succeeded, so an interrupted download is
        redone from scratch instead of starting a broker with missing jars.
        """
        pom_digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()
        if self.libs_marker.exists() and self.libs_marker.read_text().strip() == pom_digest:
            return
        print(f"  resolving Kafka {self.s.kafka_version} jars from Maven Central ...", flush=True)
        shutil.rmtree(self.libs, ignore_errors=True)
        self.libs_marker.unlink(missing_ok=True)
        cmd = [
            find_executable("mvn") or "mvn",
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(KAFKA_POM),
            f"-Dkafka.version={self.s.kafka_version}",
            f"-DoutputDirectory={self.libs}",
            "dependency:copy-dependencies",
        ]
        run_logged(cmd, self.log_dir / "mvn.log", "resolving jars with Maven")
        core = self.libs / f"kafka_2.13-{self.s.kafka_version}.jar"
        if not core.exists():
            raise StackError(f"Maven finished but {core} is missing")
        self.libs_marker.write_text(pom_digest + "\n")

    def _write_config(self) -> None:
        """Write server.properties and the log4j2 config (regenerated on every up)."""
        self.conf.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(KAFKA_LOG4J2, self.conf / "log4j2.properties")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.s.kafka_controller_port}",
            "listeners": (
                f"PLAINTEXT://{HOST}:{self.s.kafka_port},"
                f"CONTROLLER://{HOST}:{self.s.kafka_controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": "1",
            # Topics are created explicitly (the app) or through the admin API (Faust's
            # changelog/repartition/leader topics); a typo must fail, not create a topic.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "min.insync.replicas": "1",
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
        return [
            find_executable("java") or "java",
            *jvm_options,
            f"-Dlog4j2.configurationFile={self.conf / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            self._classpath(),
            main_class,
        ]

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _format_storage(self) -> None:
        """Format the KRaft log dir once; meta.properties marks a formatted directory."""
        if (self.data / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        cmd = [
            *self._java("kafka.tools.StorageTool"),
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self.conf / "server.properties"),
        ]
        run_logged(cmd, self.log_dir / "format.log", "formatting the storage directory")

    def start(self) -> int:
        cmd = [
            *self._java("kafka.Kafka", *KAFKA_JVM_OPTS),
            str(self.conf / "server.properties"),
        ]
        return spawn_detached(cmd, self.log_dir / "kafka.out", cwd=self.version_dir)

    def probe(self) -> tuple[bool, str]:
        if not port_open(self.s.kafka_port):
            return False, f"port {self.s.kafka_port} closed"
        try:
            from confluent_kafka.admin import AdminClient  # optional: stdlib probe below
        except ImportError:
            return _kafka_api_versions_probe(self.s.kafka_port)
        admin = AdminClient({"bootstrap.servers": f"{HOST}:{self.s.kafka_port}"})
        try:
            meta = admin.list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001 - KafkaException or a librdkafka error
            return False, f"metadata request failed: {exc}"
        return True, f"metadata ok, {len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)"


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
