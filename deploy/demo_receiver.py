"""The demo's webhook receiver: what a customer's system would run to take Meterline's
notifications.

Listens on 127.0.0.1:8090 (``deploy/demo/webhooks.yaml`` points its endpoint there;
``METERLINE_DEMO_RECEIVER_PORT`` changes it), checks every request's Standard Webhooks
signature with the endpoint's secret, keeps each notification once by its
``webhook-id``, and appends what it keeps, one JSON line each, to
``$METERLINE_HOME/run/webhooks.jsonl`` (``make demo`` prints the first alert from it).
Answers 204 to what it keeps or already kept, 401 to a request it cannot authenticate.
``GET /healthz`` answers 200.  Runs until SIGTERM (``make down``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR.parent))

from alerts.endpoints import load_endpoints  # noqa: E402
from alerts.webhooks import SignatureRejected, verify  # noqa: E402

PORT = 8090
ENDPOINTS = DEPLOY_DIR / "demo" / "webhooks.yaml"


def kept_file() -> Path:
    home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache" / "meterline")
    return home.expanduser() / "run" / "webhooks.jsonl"


def show_alerts(wait_s: float) -> bool:
    """Print the alerts of the current period the receiver kept (:func:`kept_file`),
    waiting up to ``wait_s`` for the first; ``False`` if none came (``make demo``)."""
    kept = kept_file()
    deadline = time.monotonic() + wait_s
    month = datetime.now(UTC).strftime("%Y-%m")
    while True:
        lines = kept.read_text().splitlines() if kept.exists() else []
        alerts = [orjson.loads(line) for line in lines if line.strip()]
        alerts = [a for a in alerts if a["notification"]["data"]["period"]["start"][:7] == month]
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(1)
    for alert in alerts:
        data = alert["notification"]["data"]
        print(
            f"    {alert['webhook_id']}: {data['customer']} crossed {data['threshold']}"
            f" ({data['kind']} {data['observed']} against {data['at']}), signed webhook"
            f" verified by the receiver; kept in {kept}",
            flush=True,
        )
    return bool(alerts)


def main() -> int:
    (endpoint,) = [e for e in load_endpoints(ENDPOINTS) if e.id == "demo-receiver"]
    out = kept_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    seen = {
        orjson.loads(line)["webhook_id"] for line in out.read_text().splitlines() if line.strip()
    } if out.exists() else set()  # fmt: skip
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                webhook_id = verify(endpoint.secret, dict(self.headers), body, now_s=time.time())
            except SignatureRejected as exc:
                print(f"refused a request: {exc}", flush=True)
                self.send_response(401)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            with lock:
                if webhook_id not in seen:
                    seen.add(webhook_id)
                    line = {"webhook_id": webhook_id, "received_ms": int(time.time() * 1000)}
                    line["notification"] = orjson.loads(body)
                    with out.open("ab") as file:
                        file.write(orjson.dumps(line) + b"\n")
                    print(f"kept {webhook_id}", flush=True)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    port = int(os.environ.get("METERLINE_DEMO_RECEIVER_PORT") or PORT)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"demo receiver on http://127.0.0.1:{port}/webhooks, keeping to {out}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
