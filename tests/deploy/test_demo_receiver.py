"""The demo's webhook receiver (``deploy/demo_receiver.py``) as ``make demo`` runs it:
signed notifications kept once each, one JSON line per notification; unsigned ones
refused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from alerts.endpoints import load_endpoints
from alerts.webhooks import sign
from tests.conftest import ROOT, wait_until
from tests.processes import stop_process_group


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {**os.environ, "METERLINE_HOME": str(tmp_path), "METERLINE_DEMO_RECEIVER_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "deploy" / "demo_receiver.py")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(up, 60, "the demo receiver")
    yield url, tmp_path / "run" / "webhooks.jsonl"
    stop_process_group(proc)


def test_signed_notifications_are_kept_once_and_others_refused(
    receiver: tuple[str, Path],
) -> None:
    url, kept = receiver
    (endpoint,) = load_endpoints(ROOT / "deploy" / "demo" / "webhooks.yaml")
    body = orjson.dumps({"id": "ntf_1", "type": "alert.threshold_reached", "data": {"n": 1}})
    for _ in range(2):  # a retry of the same notification
        headers = sign(endpoint.secret, "ntf_1", int(time.time()), body)
        assert httpx.post(f"{url}/webhooks", content=body, headers=headers).status_code == 204
    forged = {**sign(endpoint.secret, "ntf_2", int(time.time()), body), "webhook-id": "ntf_3"}
    assert httpx.post(f"{url}/webhooks", content=body, headers=forged).status_code == 401
    lines = [orjson.loads(line) for line in kept.read_text().splitlines()]
    assert [(line["webhook_id"], line["notification"]["data"]) for line in lines] == [
        ("ntf_1", {"n": 1})
    ]
