"""The supervisor's HTTP server listens where ``worker_metrics_host`` says, without a child
or Kafka: loopback only by default; on this machine's own address when told to listen on
every address, which is what the kubelet and Prometheus use in a pod."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import httpx
import pytest

from schemas.settings import Settings
from streams.supervisor import Supervisor, _Child
from tests.addresses import own_address

Serve = Callable[..., ThreadingHTTPServer]


def free_port(family: socket.AddressFamily = socket.AF_INET) -> int:
    with socket.socket(family) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def url(host: str, port: int, path: str) -> str:
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def get(host: str, port: int, path: str) -> httpx.Response:
    # trust_env=False: a proxy from the environment must not make the connection for us
    return httpx.get(url(host, port, path), timeout=5, trust_env=False)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Start supervisors' HTTP servers (no child, no Kafka); stop them afterwards."""
    monkeypatch.delenv("METERLINE_WORKER_METRICS_HOST", raising=False)
    started: list[tuple[Supervisor, ThreadingHTTPServer]] = []

    def start(host: str | None = None) -> ThreadingHTTPServer:
        """The server of a supervisor listening on ``host`` (None: the default)."""
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        settings = Settings(worker_metrics_port=free_port(family))
        if host is not None:
            settings = settings.model_copy(update={"worker_metrics_host": host})
        supervisor = Supervisor(settings, child_args=())
        server = supervisor.serve_http()
        assert server is not None
        started.append((supervisor, server))
        return server

    yield start
    for supervisor, server in started:
        server.shutdown()
        server.server_close()
        supervisor.offsets.close()


def test_by_default_it_listens_on_loopback_only(serve: Serve) -> None:
    server = serve()
    host, port = server.socket.getsockname()[:2]
    assert host == "127.0.0.1"
    assert get("127.0.0.1", port, "/healthz").status_code == 200
    outside = own_address(socket.AF_INET)
    if outside is not None:
        with pytest.raises(httpx.ConnectError):
            get(outside, port, "/healthz")


def test_listening_on_every_address_answers_on_this_machine_s_own_address(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Bound to 0.0.0.0, and reached through a non-loopback address of this machine
    where it has one (else through loopback, which 0.0.0.0 includes)."""
    with caplog.at_level(logging.INFO, logger="streams.supervisor"):
        server = serve("0.0.0.0")
    host, port = server.socket.getsockname()[:2]
    assert host == "0.0.0.0"
    assert f"on http://0.0.0.0:{port}" in caplog.text
    reach = own_address(socket.AF_INET) or "127.0.0.1"
    health = get(reach, port, "/healthz")
    assert health.status_code == 200
    assert health.json()["supervisor"] == "running"
    assert get(reach, port, "/readyz").status_code == 503  # no child, so not ready
    metrics = get(reach, port, "/metrics")
    assert metrics.status_code == 200
    assert "meterline_worker_restarts_total" in metrics.text


def test_an_ipv6_address_is_listened_on_in_its_own_family(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        free_port(socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"this machine's kernel refuses IPv6 sockets ({exc})")
    with caplog.at_level(logging.INFO, logger="streams.supervisor"):
        server = serve("::")
    assert server.socket.family == socket.AF_INET6
    host, port = server.socket.getsockname()[:2]
    assert host == "::"
    assert f"on http://[::]:{port}" in caplog.text
    reach = own_address(socket.AF_INET6) or "::1"
    assert get(reach, port, "/healthz").status_code == 200


def test_its_metrics_say_whether_the_child_s_series_are_in_the_scrape() -> None:
    """While no child answers (restarting, or slower than 2 s) the scrape carries the
    supervisor's series only and says so; with the child answering on its metrics port,
    the child's series follow the supervisor's and the gauge is 1."""

    class ChildMetrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"meterline_events_total 7.0\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # no request lines in the test output

    supervisor = Supervisor(Settings(worker_metrics_port=0), child_args=())
    child_server = ThreadingHTTPServer(("127.0.0.1", 0), ChildMetrics)
    threading.Thread(target=child_server.serve_forever, daemon=True).start()
    try:
        alone = supervisor.metrics_text().decode()
        assert "meterline_worker_child_metrics_up 0.0" in alone
        assert "meterline_events_total" not in alone

        child = _Child(process=cast(Any, None), pipe=-1, started=0.0)
        child.metrics_port = child_server.server_address[1]
        supervisor._child = child
        both = supervisor.metrics_text().decode()
        assert "meterline_worker_child_metrics_up 1.0" in both
        assert both.endswith("meterline_events_total 7.0\n")

        child_server.shutdown()
        child_server.server_close()  # the child went away: its series go, the gauge says so
        gone = supervisor.metrics_text().decode()
        assert "meterline_worker_child_metrics_up 0.0" in gone
        assert "meterline_events_total" not in gone
    finally:
        supervisor._child = None
        supervisor.offsets.close()
