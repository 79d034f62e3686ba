"""What the worker's supervisor shows: its Prometheus metrics (counters that must
survive child restarts) and the HTTP endpoints ``/healthz``, ``/readyz`` and
``/metrics`` (``streams.supervisor`` describes what each answers)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from streams.watchdog import Reason

__all__ = ["SupervisorMetrics", "serve_endpoints"]

log = logging.getLogger("streams.supervisor")


class SupervisorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.restarts = Counter(
            "meterline_worker_restarts_total",
            "Worker child restarts by reason: exited, signalled, or a watchdog verdict "
            "(stalled, no_heartbeat, not_ready, write_hung).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("exited", "signalled", *(str(r) for r in Reason)):
            self.restarts.labels(reason)  # visible at 0 before the first restart
        self.starts = Counter(
            "meterline_worker_child_starts_total",
            "Worker child processes started.",
            registry=self.registry,
        )
        self.up = Gauge(
            "meterline_worker_ready",
            "1 while the worker child is running and ready, else 0.",
            registry=self.registry,
        )
        self.lag = Gauge(
            "meterline_worker_lag_records",
            "Records of the worker's assigned partitions not yet committed (as the "
            "supervisor last read them from Kafka; -1 when unknown).",
            registry=self.registry,
        )
        self.idle = Gauge(
            "meterline_worker_seconds_without_progress",
            "Seconds since the worker last committed an offset while behind.",
            registry=self.registry,
        )
        self.child_metrics = Gauge(
            "meterline_worker_child_metrics_up",
            "1 when this scrape carries the worker child's own series (events, batches, "
            "dedupe store), 0 when the child is restarting or did not answer within 2 s: "
            "its series are missing from this scrape, not zero.",
            registry=self.registry,
        )


def serve_endpoints(
    host: str,
    port: int,
    status: Callable[[], dict[str, Any]],
    metrics_text: Callable[[], bytes],
) -> ThreadingHTTPServer:
    """Serve ``/healthz``, ``/readyz`` (from ``status()``) and ``/metrics`` in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics_text(), "text/plain; version=0.0.4")
            elif path in ("/healthz", "/readyz"):
                state = status()
                loop_age = state["loop_age_s"]
                healthy = loop_age is None or loop_age < 30
                ok = healthy if path == "/healthz" else healthy and state["ready"]
                self._send(200 if ok else 503, orjson.dumps(state), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = _listener(host, port, Handler)
    threading.Thread(target=server.serve_forever, name="supervisor-http", daemon=True).start()
    log.info("supervisor: /healthz /readyz /metrics on %s", _url_of(server))
    return server


def _listener(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """An HTTP server bound to ``host`` (an IPv4 or IPv6 address, or a host name in the
    address family it resolves to first)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family = found[0][0]

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    return Server((host, port), handler)


def _url_of(server: ThreadingHTTPServer) -> str:
    """``http://HOST:PORT`` of the address ``server`` is bound to (IPv6 in brackets)."""
    host, port = server.socket.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
