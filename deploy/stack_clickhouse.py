"""A local ClickHouse server (the Debian package) for ``deploy/stack.py``: prepare
(package, config), start and probe. The single-node stack runs one; the cluster
(``stack_cluster.py``) runs one per shard and replica, each a :class:`ClickHouseNode`
with its own directories, ports and a ``config.d`` file naming its place in the cluster."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from xml.etree import ElementTree
from xml.sax.saxutils import escape as xml_escape

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    HOST,
    StackError,
    spawn_detached,
)
from stack_base import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    CLICKHOUSE_CONFIG_TEMPLATE,
    CLICKHOUSE_HEALTH_DEADLINE_S,
    CLICKHOUSE_USERS_TEMPLATE,
    Service,
    Settings,
    apt_install,
    find_executable,
)


@dataclass(frozen=True)
class ClickHouseNode:
    """Where one server lives and what it listens on.

    ``config_d`` maps file names to XML written into ``conf/config.d/``, which the
    server merges over ``config.xml`` (the cluster's ``remote_servers``, ``macros``,
    ``zookeeper``); ``extra_ports`` are further ports it binds (the interserver port).
    """

    name: str
    root: Path
    log_dir: Path
    run_dir: Path
    tcp_port: int
    http_port: int
    extra_ports: tuple[int, ...] = ()
    config_d: Mapping[str, str] = field(default_factory=dict)


def single_node(settings: Settings) -> ClickHouseNode:
    """The single-node stack's server."""
    return ClickHouseNode(
        name="clickhouse",
        root=settings.home / "clickhouse",
        log_dir=settings.home / "logs" / "clickhouse",
        run_dir=settings.home / "run",
        tcp_port=settings.clickhouse_tcp_port,
        http_port=settings.clickhouse_http_port,
    )


class ClickHouse(Service):
    """clickhouse-server (Debian package) with a project-local config and data dir."""

    name = "clickhouse"
    deadline_s = CLICKHOUSE_HEALTH_DEADLINE_S

    def __init__(self, settings: Settings, node: ClickHouseNode | None = None) -> None:
        self.node = node or single_node(settings)
        super().__init__(settings, self.node.name, self.node.run_dir)
        self.root = self.node.root
        self.conf = self.root / "conf"
        self.log_dir = self.node.log_dir

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.node.tcp_port, self.node.http_port, *self.node.extra_ports)

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

    @property
    def fingerprint(self) -> str:
        """Ports, and for a cluster server its config.d (shards, macros, ZooKeeper): a
        server started with another cluster layout is not silently reused."""
        if not self.node.config_d:
            return super().fingerprint
        digest = hashlib.sha256(repr(sorted(self.node.config_d.items())).encode())
        return f"{super().fingerprint}, config.d {digest.hexdigest()[:12]}"

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
            "tcp_port": str(self.node.tcp_port),
            "http_port": str(self.node.http_port),
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
        config_d = self.conf / "config.d"
        shutil.rmtree(config_d, ignore_errors=True)  # only what the node asks for now
        if self.node.config_d:
            config_d.mkdir()
            for file_name, text in self.node.config_d.items():
                _well_formed(text, config_d / file_name)
                (config_d / file_name).write_text(text)

    def start(self) -> int:
        binary = find_executable("clickhouse-server") or "clickhouse-server"
        cmd = [binary, f"--config-file={self.conf / 'config.xml'}"]
        return spawn_detached(cmd, self.log_dir / "stdout.log", cwd=self.root)

    def probe(self) -> tuple[bool, str]:
        ok, detail = _http_get(self.node.http_port, "/ping")
        if not ok or detail.strip() != "Ok.":
            return False, f"HTTP /ping: {detail.strip()[:200]}"
        try:
            from clickhouse_driver import Client  # optional: stdlib probe below
        except ImportError:
            ok, detail = _http_get(self.node.http_port, "/?query=SELECT%201")
            fine = ok and detail.strip() == "1"
            return fine, "ping ok, SELECT 1 ok over HTTP (stdlib probe)" if fine else detail
        client = Client(
            host=HOST,
            port=self.node.tcp_port,
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


def _well_formed(text: str, path: Path) -> None:
    """Refuse XML the server would refuse at start (where it only says so in a log)."""
    try:
        ElementTree.fromstring(text)  # noqa: S314 - our own rendered template
    except ElementTree.ParseError as exc:
        raise StackError(f"{path} would not be valid XML: {exc}") from exc


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
