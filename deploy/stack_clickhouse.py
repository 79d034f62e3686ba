"""The local ClickHouse server (the Debian package) for ``deploy/stack.py``: prepare
(package, config), start and probe."""

from __future__ import annotations

import http.client
import shutil
import sys
from pathlib import Path
from string import Template
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
