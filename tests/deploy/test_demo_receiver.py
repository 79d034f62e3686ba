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
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from alerts.endpoints import load_endpoints
from alerts.webhooks import sign
from tests.conftest import ROOT, wait_until
from tests.processes import stop_process_group

sys.path.insert(0, str(ROOT / "deploy"))


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


def test_the_demo_shows_this_periods_alerts_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import demo_receiver

    monkeypatch.setenv("METERLINE_HOME", str(tmp_path))
    assert not demo_receiver.show_alerts(0)  # nothing kept: the demo says FAIL
    month = datetime.now(UTC).strftime("%Y-%m")
    lines = [
        {"webhook_id": f"ntf_{start}", "notification": {"data": {
            "customer": "acme", "threshold": "t", "kind": "usage", "observed": "25", "at": "25",
            "period": {"start": f"{start}-01T00:00:00.000Z"}}}}
        for start in ("2020-01", month)
    ]  # fmt: skip
    kept = demo_receiver.kept_file()
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert demo_receiver.show_alerts(0)
    out = capsys.readouterr().out
    assert f"ntf_{month}: acme crossed t (usage 25 against 25)" in out
    assert "ntf_2020-01" not in out
