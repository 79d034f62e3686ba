"""deploy/stack.py: health of the running stack, idempotent `up`, and safe `down`.

The integration tests look at the stack that `make up` started (default
METERLINE_HOME and ports). The others use a throw-away METERLINE_HOME and never touch
the running services.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

STACK = Path(__file__).resolve().parents[2] / "deploy" / "stack.py"


def stack(
    *args: str, env: dict[str, str] | None = None, python: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run deploy/stack.py with the current interpreter (or the given command)."""
    return subprocess.run(
        [*(python or [sys.executable]), str(STACK), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


def pids(status_output: str) -> dict[str, str]:
    """{service: pid} parsed from `status` output."""
    return dict(re.findall(r"^(\w+)\s+\S+.*?pid=(\S+)", status_output, flags=re.MULTILINE))


def start_ticks(pid: int) -> int:
    """Start time of a process as recorded by stack.py."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.fixture
def scratch_home(tmp_path: Path) -> dict[str, str]:
    """Environment for a private, empty METERLINE_HOME."""
    return {"METERLINE_HOME": str(tmp_path / "home")}


@pytest.fixture
def listening_ports() -> Iterator[list[int]]:
    """Four ports held by this test process, standing in for someone else's servers."""
    socks = []
    for _ in range(4):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        socks.append(sock)
    yield [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()


@pytest.mark.integration
def test_status_reports_both_services_healthy() -> None:
    result = stack("status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^kafka\s+healthy\s", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^clickhouse\s+healthy\s", result.stdout, re.MULTILINE), result.stdout
    # healthy means an idempotent producer (the SDK's, the gateway's) gets its id at once
    assert re.search(r"producer id \d+ assigned", result.stdout), result.stdout


@pytest.mark.integration
def test_status_needs_no_third_party_packages() -> None:
    # -S: no site-packages, so neither confluent_kafka nor clickhouse_driver exists.
    result = stack("status", python=[sys.executable, "-S"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ApiVersions ok (stdlib probe" in result.stdout
    assert "SELECT 1 ok over HTTP (stdlib probe)" in result.stdout


@pytest.mark.integration
def test_second_up_keeps_the_running_processes() -> None:
    before = pids(stack("status").stdout)
    result = stack("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka: already running" in result.stdout
    assert "clickhouse: already running" in result.stdout
    assert pids(stack("status").stdout) == before
    assert set(before) == {"kafka", "clickhouse"}
    assert "-" not in before.values()


def test_env_prints_the_effective_settings(scratch_home: dict[str, str]) -> None:
    result = stack("env", env={**scratch_home, "METERLINE_KAFKA_PORT": "19092"})
    assert result.returncode == 0, result.stderr
    assert "export METERLINE_KAFKA_PORT=19092\n" in result.stdout
    assert "export METERLINE_KAFKA_BOOTSTRAP=127.0.0.1:19092\n" in result.stdout
    assert f"export METERLINE_HOME={scratch_home['METERLINE_HOME']}\n" in result.stdout


def test_bad_port_setting_is_an_error(scratch_home: dict[str, str]) -> None:
    result = stack("env", env={**scratch_home, "METERLINE_CLICKHOUSE_TCP_PORT": "nine"})
    assert result.returncode == 1
    assert "METERLINE_CLICKHOUSE_TCP_PORT='nine' is not a TCP port" in result.stderr


def test_up_refuses_ports_held_by_another_process(
    scratch_home: dict[str, str], listening_ports: list[int]
) -> None:
    kafka, controller, tcp, http = listening_ports
    env = {
        **scratch_home,
        "METERLINE_KAFKA_PORT": str(kafka),
        "METERLINE_KAFKA_CONTROLLER_PORT": str(controller),
        "METERLINE_CLICKHOUSE_TCP_PORT": str(tcp),
        "METERLINE_CLICKHOUSE_HTTP_PORT": str(http),
    }
    result = stack("up", env=env)
    assert result.returncode == 1
    for port in listening_ports:
        assert f"port {port} is in use by pid {os.getpid()}" in result.stderr, result.stderr
    home = Path(scratch_home["METERLINE_HOME"])
    assert not (home / "kafka").exists(), "nothing may be downloaded or started"
    assert list((home / "run").glob("*.pid")) == []
    status = stack("status", env=env)
    assert status.returncode == 3
    assert "(not ours)" in status.stdout


def test_status_of_an_empty_home_is_stopped(scratch_home: dict[str, str]) -> None:
    env = {**scratch_home, "METERLINE_KAFKA_PORT": "1", "METERLINE_CLICKHOUSE_HTTP_PORT": "2"}
    env |= {"METERLINE_KAFKA_CONTROLLER_PORT": "3", "METERLINE_CLICKHOUSE_TCP_PORT": "4"}
    result = stack("status", env=env)
    assert result.returncode == 3
    assert re.search(r"^kafka\s+stopped\s", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^clickhouse\s+stopped\s", result.stdout, re.MULTILINE), result.stdout
    assert stack("down", env=env).returncode == 0


def write_pid_file(home: Path, service: str, pid: int, marker: str) -> Path:
    """A pid file as `up` writes it."""
    path = home / "run" / f"{service}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "start_ticks": start_ticks(pid), "marker": marker}))
    return path


def test_down_never_signals_a_pid_that_is_not_ours(scratch_home: dict[str, str]) -> None:
    home = Path(scratch_home["METERLINE_HOME"])
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        pid_file = write_pid_file(home, "kafka", stranger.pid, "/nonexistent/server.properties")
        result = stack("down", env=scratch_home)
        assert result.returncode == 0, result.stderr
        assert "not signalling it" in result.stdout
        assert stranger.poll() is None, "down killed a process it did not start"
        assert not pid_file.exists()
    finally:
        stranger.kill()
        stranger.wait()


def test_down_stops_a_recorded_process(scratch_home: dict[str, str]) -> None:
    home = Path(scratch_home["METERLINE_HOME"])
    marker = str(home / "clickhouse" / "conf" / "config.xml")
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", marker], start_new_session=True
    )
    try:
        pid_file = write_pid_file(home, "clickhouse", server.pid, marker)
        result = stack("down", env=scratch_home)
        assert result.returncode == 0, result.stderr
        assert f"clickhouse: stopped (pid {server.pid})" in result.stdout
        assert server.wait(timeout=10) == -15
        assert not pid_file.exists()
    finally:
        server.kill()
        server.wait()


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool reads ``--cluster-id -Pc6q…`` as a missing value: `up` failed at
    random (1 run in 64) until ids starting with '-' were drawn again."""
    sys.path.insert(0, str(STACK.parent))
    import uuid as uuid_module

    import stack_kafka as stack_module

    dashed = uuid_module.UUID(bytes=b"\xf8" + bytes(15))  # urlsafe base64 starts with '-'
    plain = uuid_module.UUID(bytes=b"\x01" * 16)
    drawn = iter([dashed, plain])
    monkeypatch.setattr(uuid_module, "uuid4", lambda: next(drawn))
    assert stack_module.new_cluster_id() == "AQEBAQEBAQEBAQEBAQEBAQ"
