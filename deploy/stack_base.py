"""What the local stack's scripts share (``deploy/stack.py``): its settings, the paths
and versions of the services, how things are installed, the :class:`Service` every
server implements (``stack_kafka.py``, ``stack_clickhouse.py``, ``stack_zookeeper.py``)
and the :class:`Topology` that groups them (the single node here, the cluster in
``stack_cluster.py``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    HOST,
    LOG_TAIL_LINES,
    StackError,
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

    def __init__(
        self, settings: Settings, name: str | None = None, run_dir: Path | None = None
    ) -> None:
        """``name`` and ``run_dir`` (where the pid file lives) default to the single-node
        stack's: the class's name under ``$METERLINE_HOME/run``."""
        self.s = settings
        self.name = name or self.name
        self.pid_file = (run_dir or settings.home / "run") / f"{self.name}.pid"

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


@dataclass(frozen=True)
class Topology:
    """The services one ``stack.py --topology`` starts, stops and reports together.

    ``stages`` are started in order, each healthy before the next starts (ClickHouse
    replicas need their ZooKeeper); the services of one stage start side by side. Its
    pid files and lock live in ``run_dir``, so two topologies of one METERLINE_HOME are
    brought up and down independently.
    """

    name: str
    run_dir: Path
    stages: tuple[tuple[Service, ...], ...]
    exports: Mapping[str, str]

    @property
    def services(self) -> list[Service]:
        """Every service, in start order."""
        return [svc for stage in self.stages for svc in stage]

    def started_anything(self) -> bool:
        """Whether some pid file of this topology exists (running or stale)."""
        return any(self.run_dir.glob("*.pid"))
