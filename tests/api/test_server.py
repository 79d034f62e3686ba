from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.server import BackgroundApi, demo_banner, demo_tokens


def test_demo_banner_names_the_dashboard_and_a_token() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    api = BackgroundApi(process, "http://127.0.0.1:8080", Path("/tmp/api.log"))
    banner = demo_banner(api)
    token = demo_tokens()["admin"]
    assert f"Dashboard:  http://127.0.0.1:8080/dashboard#token={token}" in banner
    assert f"Stop: kill {process.pid}" in banner


def test_serve_refuses_fewer_than_one_worker_before_starting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.cli import main

    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
