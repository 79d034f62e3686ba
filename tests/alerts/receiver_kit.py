"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1 (a free port) that
answers from a script of status codes, checks every signature with its own code (not
``alerts.webhooks``), and keeps each notification once by ``webhook-id``, as a careful
receiver would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "whsec_" + base64.b64encode(b"meterline test receiver key 32b!").decode()


def independent_check(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks recipe, written out again for the receiver."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) <= 300
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if "," in s]
    return fresh and any(hmac.compare_digest(expected, s) for s in offered)


@dataclass
class Receiver:
    url: str
    script: list[int]
    """Status codes to answer, in order; once spent, 200."""
    secret: str = SECRET
    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    """Every request: its headers (lower-case names), body and the status answered."""
    accepted: dict[str, bytes] = field(default_factory=dict)
    """The notifications kept, by webhook-id (a second copy of one is not kept again)."""
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            if not independent_check(self.secret, headers, body):
                self.bad_signatures += 1
                status = 401
            else:
                status = self.script.pop(0) if self.script else 200
                if 200 <= status < 300:
                    self.accepted.setdefault(headers["webhook-id"], body)
            self.requests.append((headers, body, status))
            return status


@contextmanager
def receiver(script: list[int] | None = None) -> Iterator[Receiver]:
    """A receiver answering ``script`` then 200, for the duration of the block."""
    state: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            assert state is not None
            status = state.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test asserts on what was received, not on the access log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks", list(script or []))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a receiver that is down)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/hooks"
