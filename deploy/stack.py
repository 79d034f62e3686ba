"""Start, stop and inspect Meterline's local Kafka and ClickHouse (no containers).

Usage: ``python deploy/stack.py up|down|status|env``

* ``up``     -- fetch what is missing (Kafka jars from Maven Central, the Debian
  ``clickhouse-server`` package), start both servers as detached processes on
  127.0.0.1 and wait until each answers a real request. Idempotent: healthy services
  that this METERLINE_HOME started are left alone.
* ``down``   -- stop only the processes whose pids ``up`` recorded, after checking that
  each pid still belongs to the process that was started.
* ``status`` -- one line per service; exit 0 when all are healthy, else 3.
* ``env``    -- ``export METERLINE_...=`` lines for shell scripts.

Everything (jars, data, logs, pid files) lives under ``$METERLINE_HOME``
(default ``~/.cache/meterline``), outside the clone. ``down``, ``status`` and ``env``
need only the standard library; ``up`` and ``status`` use confluent_kafka and
clickhouse_driver for the health checks when they are importable and fall back to
plain-socket probes otherwise. See docs/stack.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from xml.sax.saxutils import escape as xml_escape

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    HOST,
    LOG_TAIL_LINES,
    PidRecord,
    StackError,
    cmdline,
    describe_pid,
    is_ours,
    port_open,
    port_owner,
    record_started,
    spawn_detached,
    stop_process,
    tail,
)

KAFKA_POM = DEPLOY_DIR / "kafka" / "pom.xml"
KAFKA_LOG4J2 = DEPLOY_DIR / "kafka" / "log4j2.properties"
CLICKHOUSE_CONFIG_TEMPLATE = DEPLOY_DIR / "clickhouse" / "config.xml"
CLICKHOUSE_USERS_TEMPLATE = DEPLOY_DIR / "clickhouse" / "users.xml"

# The newest Kafka proven with the Faust worker tests in tests/deploy (docs/stack.md).
DEFAULT_KAFKA_VERSION = "4.3.1"
KAFKA_HEALTH_DEADLINE_S = 90.0
CLICKHOUSE_HEALTH_DEADLINE_S = 60.0
EXIT_UNHEALTHY = 3
KAFKA_JVM_OPTS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-Djava.awt.headless=true",
)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Ports, version and directories, read from METERLINE_* environment variables."""

    home: Path
    kafka_port: int
    kafka_controller_port: int
    clickhouse_tcp_port: int
    clickhouse_http_port: int
    kafka_version: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings; a malformed port or version is a StackError, not a default."""
        env = dict(os.environ) if env is None else env
        home = env.get("METERLINE_HOME") or str(Path.home() / ".cache" / "meterline")
        version = env.get("METERLINE_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION
        if not re.fullmatch(r"\d+\.\d+\.\d+", version):
            raise StackError(f"METERLINE_KAFKA_VERSION={version!r} is not like 4.1.1")
        return cls(
            home=Path(home).expanduser().resolve(),
            kafka_port=_port(env, "METERLINE_KAFKA_PORT", 9092),
            kafka_controller_port=_port(env, "METERLINE_KAFKA_CONTROLLER_PORT", 9093),
            clickhouse_tcp_port=_port(env, "METERLINE_CLICKHOUSE_TCP_PORT", 9000),
            clickhouse_http_port=_port(env, "METERLINE_CLICKHOUSE_HTTP_PORT", 8123),
            kafka_version=version,
        )

    def exports(self) -> dict[str, str]:
        """The settings as environment variables, plus derived connection strings."""
        return {
            "METERLINE_HOME": str(self.home),
            "METERLINE_KAFKA_VERSION": self.kafka_version,
            "METERLINE_KAFKA_PORT": str(self.kafka_port),
            "METERLINE_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "METERLINE_KAFKA_BOOTSTRAP": f"{HOST}:{self.kafka_port}",
            "METERLINE_CLICKHOUSE_HOST": HOST,
            "METERLINE_CLICKHOUSE_TCP_PORT": str(self.clickhouse_tcp_port),
            "METERLINE_CLICKHOUSE_HTTP_PORT": str(self.clickhouse_http_port),
        }


def _port(env: dict[str, str], name: str, default: int) -> int:
    """Parse one port variable; garbage fails loudly instead of silently using a default."""
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{name}={raw!r} is not a TCP port")
    return int(raw)


# --------------------------------------------------------------------------- installs


def run_logged(cmd: list[str], log_path: Path, what: str) -> None:
    """Run a setup command with its output in a log; on failure show the log tail."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n".encode())
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code != 0:
        raise StackError(
            f"{what} failed (exit {code}): {shlex.join(cmd)}\n"
            f"log: {log_path}\n--- last lines ---\n{tail(log_path)}"
        )


def apt_install(packages: list[str], log_path: Path) -> None:
    """Install Debian packages non-interactively (sudo only when not root)."""
    if shutil.which("apt-get") is None:
        raise StackError(f"need {' '.join(packages)} but apt-get is not available; install them")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise StackError(f"need root or sudo to apt-get install {' '.join(packages)}")
        prefix = ["sudo", "-n"]
    # sudo resets the environment, so DEBIAN_FRONTEND goes through `env` on the command.
    prefix = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive"]
    print(f"  apt-get install {' '.join(packages)} (log: {log_path}) ...", flush=True)
    run_logged([*prefix, "apt-get", "update"], log_path, "apt-get update")
    run_logged([*prefix, "apt-get", "install", "-y", *packages], log_path, "apt-get install")


def find_executable(name: str) -> str | None:
    """Find a program on PATH or in the sbin directories that a user PATH often lacks."""
    extra = os.pathsep.join(("/usr/sbin", "/usr/bin", "/sbin"))
    return shutil.which(name) or shutil.which(name, path=extra)


def java_major(java: str) -> int:
    """Major version of a java binary (17 for '17.0.15'); 0 when it cannot be told."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


# --------------------------------------------------------------------------- services


class Service:
    """One local server: how to prepare, start, probe and describe it."""

    name = ""
    deadline_s = 60.0

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.pid_file = settings.home / "run" / f"{self.name}.pid"

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port the server binds; all must be free before it starts."""
        raise NotImplementedError

    @property
    def logs(self) -> tuple[Path, ...]:
        """Log files shown when the service fails; the first is the one `status` names."""
        raise NotImplementedError

    @property
    def marker(self) -> str:
        """A string in the server's command line that only our process has."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """The settings a running process must have been started with to be reused."""
        return f"ports {','.join(str(port) for port in self.ports)}"

    def prepare(self) -> None:
        """Install/resolve binaries and write configs; may take minutes on a cold machine."""
        raise NotImplementedError

    def start(self) -> int:
        """Start the server detached; return its pid."""
        raise NotImplementedError

    def probe(self) -> tuple[bool, str]:
        """One real request to the server: (healthy, human-readable detail)."""
        raise NotImplementedError

    def describe_failure(self, why: str) -> str:
        """A failure message naming the service, its logs and their last lines."""
        parts = [f"{self.name}: {why}"]
        for log in self.logs:
            if log.exists() and log.stat().st_size > 0:
                parts.append(f"log: {log}\n--- last {LOG_TAIL_LINES} lines ---\n{tail(log)}")
        if len(parts) == 1:
            parts.append(f"log: {self.logs[0]} (empty or missing)")
        return "\n".join(parts)


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

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _format_storage(self) -> None:
        """Format the KRaft log dir once; meta.properties marks a formatted directory."""
        if (self.data / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        cmd = [
            find_executable("java") or "java",
            f"-Dlog4j2.configurationFile={self.conf / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            self._classpath(),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self.conf / "server.properties"),
        ]
        run_logged(cmd, self.log_dir / "format.log", "formatting the storage directory")

    def start(self) -> int:
        cmd = [
            find_executable("java") or "java",
            *KAFKA_JVM_OPTS,
            f"-Dlog4j2.configurationFile={self.conf / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
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


class ClickHouse(Service):
    """clickhouse-server (Debian package) with a project-local config and data dir."""

    name = "clickhouse"
    deadline_s = CLICKHOUSE_HEALTH_DEADLINE_S

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.root = settings.home / "clickhouse"
        self.conf = self.root / "conf"
        self.log_dir = settings.home / "logs" / "clickhouse"

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.s.clickhouse_tcp_port, self.s.clickhouse_http_port)

    @property
    def logs(self) -> tuple[Path, ...]:
        return (
            self.log_dir / "clickhouse-server.log",
            self.log_dir / "clickhouse-server.err.log",
            self.log_dir / "stdout.log",
        )

    @property
    def marker(self) -> str:
        return str(self.conf / "config.xml")

    def prepare(self) -> None:
        if find_executable("clickhouse-server") is None:
            apt_install(
                ["clickhouse-server", "clickhouse-client"], self.s.home / "logs" / "apt.log"
            )
        if find_executable("clickhouse-server") is None:
            raise StackError("installed, but clickhouse-server is still not found")
        self._write_config()

    def _write_config(self) -> None:
        """Render config.xml/users.xml from deploy/clickhouse with our paths and ports."""
        dirs = {name: self.root / name for name in ("data", "tmp", "user_files", "format_schemas")}
        for path in (*dirs.values(), self.conf, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)
        values = {
            "log_dir": str(self.log_dir),
            "tcp_port": str(self.s.clickhouse_tcp_port),
            "http_port": str(self.s.clickhouse_http_port),
            "data_dir": str(dirs["data"]),
            "tmp_dir": str(dirs["tmp"]),
            "user_files_dir": str(dirs["user_files"]),
            "format_schemas_dir": str(dirs["format_schemas"]),
            "users_xml": str(self.conf / "users.xml"),
        }
        escaped = {key: xml_escape(value) for key, value in values.items()}
        try:
            config = Template(CLICKHOUSE_CONFIG_TEMPLATE.read_text()).substitute(escaped)
        except (KeyError, ValueError) as exc:
            raise StackError(f"{CLICKHOUSE_CONFIG_TEMPLATE}: bad placeholder: {exc}") from exc
        (self.conf / "config.xml").write_text(config)
        shutil.copyfile(CLICKHOUSE_USERS_TEMPLATE, self.conf / "users.xml")

    def start(self) -> int:
        binary = find_executable("clickhouse-server") or "clickhouse-server"
        cmd = [binary, f"--config-file={self.conf / 'config.xml'}"]
        return spawn_detached(cmd, self.log_dir / "stdout.log", cwd=self.root)

    def probe(self) -> tuple[bool, str]:
        ok, detail = _http_get(self.s.clickhouse_http_port, "/ping")
        if not ok or detail.strip() != "Ok.":
            return False, f"HTTP /ping: {detail.strip()[:200]}"
        try:
            from clickhouse_driver import Client  # optional: stdlib probe belowendency
        except ImportError:
            ok, detail = _http_get(self.s.clickhouse_http_port, "/?query=SELECT%201")
            fine = ok and detail.strip() == "1"
            return fine, "ping ok, SELECT 1 ok over HTTP (stdlib probe)" if fine else detail
        client = Client(
            host=HOST,
            port=self.s.clickhouse_tcp_port,
            connect_timeout=3,
            send_receive_timeout=5,
        )
        try:
            rows = client.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - driver raises many error types
            return False, f"SELECT 1 over native port failed: {exc}"
        finally:
            client.disconnect()
        if rows != [(1,)]:
            return False, f"SELECT 1 returned {rows!r}"
        return True, "ping ok, SELECT 1 ok over native protocol"


def _http_get(port: int, path: str) -> tuple[bool, str]:
    """GET a path on 127.0.0.1:port; (status was 200, body or error text)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
    except OSError as exc:
        return False, str(exc)
    finally:
        conn.close()
    return resp.status == 200, body


# --------------------------------------------------------------------------- commands


def services(settings: Settings) -> list[Service]:
    """The services in start order."""
    return [Kafka(settings), ClickHouse(settings)]


@contextlib.contextmanager
def stack_lock(settings: Settings) -> Iterator[None]:
    """Serialise up/down of one METERLINE_HOME (two `make up` at once would race)."""
    run_dir = settings.home / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "stack.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 — never starting with '-',
    which the storage tool's argument parser takes for an option (1 id in 64 did; Kafka's
    own generator redraws those too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def running_record(svc: Service) -> PidRecord | None:
    """Our live process for a service, dropping a stale pid file on the way.

    A process is declared gone only after it failed the check three times over a second:
    once, right after a start, a live server was taken for gone and left unsupervised."""
    record = PidRecord.load(svc.pid_file)
    if record is None:
        return None
    for attempt in range(3):
        if is_ours(record):
            return record
        if attempt < 2:
            time.sleep(0.5)
    print(
        f"{svc.name}: pid {record.pid} from {svc.pid_file} is gone ({describe_pid(record)}); "
        "removing stale pid file"
    )
    svc.pid_file.unlink(missing_ok=True)
    return None


def foreign_ports(svc: Service) -> list[str]:
    """Descriptions of the service's ports that some other process already holds."""
    return [f"port {port} is in use by {port_owner(port)}" for port in svc.ports if port_open(port)]


def wait_healthy(svc: Service, record: PidRecord) -> tuple[bool, str]:
    """Probe until healthy, the process dies, or the service's deadline passes."""
    deadline = time.monotonic() + svc.deadline_s
    detail = "not probed"
    while time.monotonic() < deadline:
        if not is_ours(record):
            return False, f"process {record.pid} exited during startup ({detail})"
        ok, detail = svc.probe()
        if ok:
            return True, detail
        time.sleep(0.5)
    return False, f"not healthy after {svc.deadline_s:.0f}s (last probe: {detail})"


def cmd_up(settings: Settings) -> int:
    """Bring every service to 'running and healthy'; non-zero if any could not be."""
    with stack_lock(settings):
        failures = [msg for svc in services(settings) if (msg := precheck(svc)) is not None]
        if failures:
            return _report_failures(failures)
        for svc in services(settings):
            if running_record(svc) is None:
                _prepare_and_start(svc, failures)
        for svc in services(settings):
            record = running_record(svc)
            if record is None:
                continue
            ok, detail = wait_healthy(svc, record)
            if ok:
                print(f"{svc.name}: healthy (pid {record.pid}; {detail})")
            else:
                if is_ours(record):
                    detail += f"; pid {record.pid} is left running, `stack.py down` stops it"
                failures.append(svc.describe_failure(detail))
    if failures:
        return _report_failures(failures)
    print(f"stack up; `{Path(sys.argv[0]).name} env` prints the connection settings")
    return 0


def precheck(svc: Service) -> str | None:
    """Why a service can not be brought up as configured, before anything is started.

    Our own process started with other settings is reported, not restarted; a port held
    by a process we did not start is reported, never touched.
    """
    record = running_record(svc)
    if record is not None:
        if record.settings != svc.fingerprint:
            return (
                f"{svc.name}: pid {record.pid} runs with {record.settings or 'unrecorded settings'}"
                f" but the settings now ask for {svc.fingerprint}; "
                "run `stack.py down` and then `stack.py up` to switch"
            )
        print(f"{svc.name}: already running (pid {record.pid})")
        return None
    conflicts = foreign_ports(svc)
    if not conflicts:
        return None
    return (
        f"{svc.name}: not started by this METERLINE_HOME ({svc.s.home}) but "
        + "; ".join(conflicts)
        + ". Not touching it: stop it yourself or choose other ports "
        + "(METERLINE_*_PORT, see `stack.py env`)."
    )


def _prepare_and_start(svc: Service, failures: list[str]) -> None:
    """Prepare and launch one service, collecting (not raising) its failure."""
    started = time.monotonic()
    print(f"{svc.name}: starting ...", flush=True)
    try:
        svc.prepare()
        pid = svc.start()
        record_started(pid, svc.marker, svc.fingerprint, svc.pid_file)
    except StackError as exc:
        failures.append(svc.describe_failure(str(exc)))
        return
    print(f"{svc.name}: started pid {pid} ({time.monotonic() - started:.1f}s to launch)")


def _report_failures(failures: list[str]) -> int:
    """Print every failure to stderr; the exit code for `up`."""
    for failure in failures:
        print(f"\nERROR {failure}", file=sys.stderr)
    return 1


def cmd_down(settings: Settings) -> int:
    """Stop only processes recorded by `up` that are verifiably still ours."""
    code = 0
    with stack_lock(settings):
        for svc in reversed(services(settings)):
            record = PidRecord.load(svc.pid_file)
            if record is None:
                print(f"{svc.name}: not started by this METERLINE_HOME; nothing to stop")
                continue
            if not is_ours(record):
                print(
                    f"{svc.name}: pid {record.pid} is gone or now belongs to another process "
                    f"({cmdline(record.pid)[:80] or 'no such pid'}); not signalling it"
                )
                svc.pid_file.unlink(missing_ok=True)
                continue
            try:
                outcome = stop_process(record)
            except (StackError, OSError) as exc:
                print(f"{svc.name}: could not stop pid {record.pid}: {exc}", file=sys.stderr)
                code = 1
                continue
            svc.pid_file.unlink(missing_ok=True)
            print(f"{svc.name}: {outcome} (pid {record.pid})")
    return code


def cmd_status(settings: Settings) -> int:
    """One line per service; 0 when all are healthy, EXIT_UNHEALTHY otherwise."""
    all_healthy = True
    for svc in services(settings):
        ports = ",".join(str(port) for port in svc.ports)
        record = PidRecord.load(svc.pid_file)
        if record is not None and is_ours(record):
            ok, detail = svc.probe()
            state = "healthy" if ok else "running (unhealthy)"
            pid = str(record.pid)
            if record.settings != svc.fingerprint:
                ok, state = False, "running (stale)"
                detail += f"; started with {record.settings or 'unrecorded settings'}, "
                detail += f"settings now ask for {svc.fingerprint} (down + up to switch)"
        else:
            ok, pid = False, "-"
            state = "stopped"
            busy = foreign_ports(svc)
            detail = "; ".join(busy) + " (not ours)" if busy else "not running"
        all_healthy &= ok
        print(f"{svc.name:<10} {state:<19} pid={pid:<7} ports={ports:<11} log={svc.logs[0]}")
        print(f"{'':<10} {detail}")
    return 0 if all_healthy else EXIT_UNHEALTHY


def cmd_env(settings: Settings) -> int:
    """Shell export lines for the effective settings."""
    for key, value in settings.exports().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


COMMANDS: dict[str, Callable[[Settings], int]] = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "env": cmd_env,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command, run it, and turn a StackError into exit code 1 with a message."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](Settings.from_env())
    except StackError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
