"""Running the service: in the foreground (``python -m api serve``) or as a background
process for the demo (:func:`start_background`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from api.settings import DEMO_AUTH_FILE
from schemas.documents import load_document
from schemas.errors import InvalidInput

__all__ = [
    "BackgroundApi",
    "demo_banner",
    "demo_tokens",
    "free_port",
    "start_background",
    "start_demo",
]

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_tokens(auth_file: str = DEMO_AUTH_FILE) -> dict[str, str]:
    """``{"admin": <first API key>, <customer id>: <its token>, ...}`` from an auth file."""
    document = load_document(auth_file, "auth config") or {}
    if not isinstance(document, dict):
        raise InvalidInput.single("auth config", auth_file, "not a mapping", "see docs/api.md")
    out: dict[str, str] = {}
    keys = document.get("api_keys") or []
    if keys:
        out["admin"] = str(keys[0]["key"])
    for entry in document.get("customer_tokens") or []:
        out[str(entry["customer"])] = str(entry["token"])
    return out


@dataclass
class BackgroundApi:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path | None = None

    def dashboard_url(self, token: str) -> str:
        return f"{self.url}/dashboard#token={token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_background(
    port: int = 0,
    *,
    env: dict[str, str] | None = None,
    log_path: str | Path | None = None,
    timeout: float = 30.0,
    detach: bool = False,
) -> BackgroundApi:
    """Start ``python -m api serve`` as a child process and wait until it answers.

    ``port=0`` picks a free port.  ``env`` replaces the environment (default: this
    process's, so ``METERLINE_*`` settings carry over).  Output goes to ``log_path``
    (default: discarded).  ``detach`` starts it in its own session so it outlives the
    caller (``make demo``).  Raises ``RuntimeError`` if it does not answer in time."""
    port = port or free_port()
    command = [sys.executable, "-m", "api", "serve", "--port", str(port)]
    environment = env if env is not None else dict(os.environ)
    if log_path:
        with open(log_path, "ab") as out:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
    else:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )
    api = BackgroundApi(process, f"http://127.0.0.1:{port}", Path(log_path) if log_path else None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{api.url}/healthz", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return api
        except OSError:
            time.sleep(0.2)
    api.stop()
    raise RuntimeError(f"the API did not answer on {api.url} within {timeout:.0f}s")


def _home() -> Path:
    home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache" / "meterline")
    home.mkdir(parents=True, exist_ok=True)
    return home


def stop_demo() -> bool:
    """Stop the API a previous :func:`start_demo` left running (by its pid file).

    The pid is signalled only if its command line is still ``-m api serve``, so a reused
    pid of another process is left alone.  Returns whether a process was stopped.
    """
    pid_file = _home() / "api-demo.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"api" not in cmdline or b"serve" not in cmdline:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    return True


def start_demo(port: int = 8080, log_path: str | Path | None = None) -> BackgroundApi:
    """Start the API detached on ``port`` (it outlives the caller) and wait until it
    answers; the log goes to ``$METERLINE_HOME/api.log`` unless ``log_path`` is given.
    A demo API left by an earlier run is stopped first.  What ``python -m api demo``
    (and so ``make demo``) calls; see :func:`demo_banner`."""
    stop_demo()
    home = _home()
    log = Path(log_path) if log_path else home / "api.log"
    api = start_background(port, log_path=log, detach=True)
    (home / "api-demo.pid").write_text(str(api.process.pid))
    return api


def demo_banner(api: BackgroundApi) -> str:
    """Where the dashboard is, a demo token, and how to stop the process."""
    tokens = demo_tokens()
    lines = [
        f"API:        {api.url}  (OpenAPI: {api.url}/api/v1/openapi.json)",
        f"Dashboard:  {api.dashboard_url(tokens['admin'])}",
        f"Demo token: {tokens['admin']}  (API key, namespace default)",
        *(
            f"  as customer {customer}: {api.dashboard_url(token)}"
            for customer, token in tokens.items()
            if customer != "admin"
        ),
        f"Log: {api.log_path}   Stop: kill {api.process.pid}",
    ]
    return "\n".join(lines)
