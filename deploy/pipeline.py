"""The always-on local pipeline: the supervised metering worker, the HTTP API, and (for
the demo) live telemetry for the current period.

Usage: ``python deploy/pipeline.py start [--live] | stop | status``

* ``start``  -- create the topics and tables, then start what is not running yet: the
  worker (``python -m streams worker``: a supervisor that restarts its child after any
  exit and replaces it when the liveness watchdog finds it stalled), the API, and the
  alerts evaluator (``python -m alerts run``; it idles without a thresholds file).  Waits
  until the worker reports ready and the API answers.  ``--live`` also starts the
  telemetry generator (``deploy/live_telemetry.py``) and the demo's webhook receiver
  (``deploy/demo_receiver.py``).  Idempotent.
* ``stop``   -- stop them, by pid file, after checking each pid is still ours.
* ``status`` -- one line each; exit 0 when all that were started are healthy, else 3.

Pid files and logs live under ``$METERLINE_HOME/run`` and ``$METERLINE_HOME/logs``.  The
worker's health is served on ``METERLINE_WORKER_METRICS_PORT`` (default 9108 here),
the alerts evaluator's on ``METERLINE_ALERTS_PORT`` (9109), the API on
``METERLINE_API_PORT`` (8080).  ``stop`` and ``status`` need only the
standard library.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
ROOT = DEPLOY_DIR.parent
DEMO_FEATURES = DEPLOY_DIR / "demo/features.yaml"
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    HOST,
    PidRecord,
    StackError,
    is_ours,
    record_started,
    spawn_detached,
    stop_process,
    tail,
    wait_for,
)

WORKER_PORT = 9108
API_PORT = 8080
ALERTS_PORT = 9109
RECEIVER_PORT = 8090  # deploy/demo/webhooks.yaml's endpoint
READY_DEADLINE_S = 180.0


@dataclass(frozen=True)
class Process:
    """One long-running process of the pipeline."""

    name: str
    args: tuple[str, ...]
    marker: str
    health: str | None  # URL path answering 200 when healthy

    def command(self) -> list[str]:
        return [sys.executable, *self.args]


def home() -> Path:
    path = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache" / "meterline")
    return path.expanduser().resolve()


def ports() -> tuple[int, int]:
    worker = int(os.environ.get("METERLINE_WORKER_METRICS_PORT") or WORKER_PORT)
    api = int(os.environ.get("METERLINE_API_PORT") or API_PORT)
    return worker, api


def alerts_port() -> int:
    return int(os.environ.get("METERLINE_ALERTS_PORT") or ALERTS_PORT)


def receiver_port() -> int:
    return int(os.environ.get("METERLINE_DEMO_RECEIVER_PORT") or RECEIVER_PORT)


def processes() -> list[Process]:
    worker_port, api_port = ports()
    return [
        Process("worker", ("-m", "streams", "worker"), "streams worker", f":{worker_port}/readyz"),
        Process(
            "api",
            ("-m", "api", "serve", "--port", str(api_port)),
            "api serve",
            f":{api_port}/healthz",
        ),
        Process(
            "receiver",
            (str(DEPLOY_DIR / "demo_receiver.py"),),
            "demo_receiver.py",
            f":{receiver_port()}/healthz",
        ),
        Process("alerts", ("-m", "alerts", "run"), "alerts run", f":{alerts_port()}/healthz"),
        Process("live", (str(DEPLOY_DIR / "live_telemetry.py"),), "live_telemetry.py", None),
    ]


#: Processes only the demo (``start --live``) runs: its telemetry and its webhook receiver.
DEMO_ONLY = {"live", "receiver"}


def pid_file(proc: Process) -> Path:
    return home() / "run" / f"{proc.name}.pid"


def log_file(proc: Process) -> Path:
    return home() / "logs" / f"{proc.name}.log"


def running(proc: Process) -> PidRecord | None:
    record = PidRecord.load(pid_file(proc))
    return record if record is not None and is_ours(record) else None


def healthy(proc: Process) -> bool:
    if proc.health is None:
        return True
    try:
        with urllib.request.urlopen(f"http://{HOST}{proc.health}", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(proc: Process) -> str:
    record = running(proc)
    if record is None:
        pid_file(proc).parent.mkdir(parents=True, exist_ok=True)
        pid = spawn_detached(proc.command(), log_file(proc), cwd=ROOT)
        time.sleep(0.2)
        record = record_started(pid, proc.marker, "", pid_file(proc))
        state = f"started pid {pid}"
    else:
        state = f"already running (pid {record.pid})"
    if not wait_for(lambda: healthy(proc) or not is_ours(record), READY_DEADLINE_S, 0.5):
        raise StackError(
            f"{proc.name} did not become healthy within {READY_DEADLINE_S:.0f}s; "
            f"log {log_file(proc)}:\n{tail(log_file(proc))}"
        )
    if not is_ours(record):
        raise StackError(f"{proc.name} exited; log {log_file(proc)}:\n{tail(log_file(proc))}")
    return state


def cmd_start(live: bool) -> int:
    from ingest.admin import ensure_topics, meterline_topics
    from schemas.settings import Settings
    from streams.cli import run_migrate

    os.environ.setdefault("METERLINE_WORKER_METRICS_PORT", str(ports()[0]))
    os.environ.setdefault("METERLINE_ALERTS_PORT", str(alerts_port()))
    if "METERLINE_RATE_CARD_FILE" not in os.environ:  # the demo card: its features too
        os.environ.setdefault("METERLINE_FEATURES_FILE", str(DEMO_FEATURES))
    settings = Settings()
    ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
    run_migrate(settings)  # creates a new database; migrates one of an earlier build
    wanted = [p for p in processes() if live or p.name not in DEMO_ONLY]
    for proc in wanted:
        print(f"{proc.name:<7} {start(proc):<28} log={log_file(proc)}", flush=True)
    print(banner(), flush=True)
    return 0


def banner() -> str:
    from api.server import demo_tokens
    from api.settings import DEMO_AUTH_FILE, auth_file
    from schemas.settings import Settings

    worker_port, api_port = ports()
    api = f"http://{HOST}:{api_port}"
    lines = [
        f"Worker health:  http://{HOST}:{worker_port}/healthz  /readyz  /metrics",
        f"Alerts health:  http://{HOST}:{alerts_port()}/healthz  /metrics",
        f"API:            {api}  (OpenAPI: {api}/api/v1/openapi.json)",
    ]
    if auth_file(Settings()) == DEMO_AUTH_FILE:
        token = demo_tokens()["admin"]
        lines += [
            f"Dashboard:      {api}/dashboard#token={token}",
            f"Demo token:     {token}  (API key, namespace default)",
        ]
    lines.append("Stop everything with `make down`.")
    return "\n".join(lines)


def cmd_stop() -> int:
    failures = 0
    for proc in reversed(processes()):
        record = PidRecord.load(pid_file(proc))
        if record is None:
            continue
        if not is_ours(record):
            print(f"{proc.name:<7} not running (stale pid file {pid_file(proc)})")
        else:
            try:
                print(f"{proc.name:<7} {stop_process(record)} (pid {record.pid})")
            except (StackError, OSError) as exc:
                print(f"{proc.name:<7} could not be stopped: {exc}")
                failures += 1
                continue
        pid_file(proc).unlink(missing_ok=True)
    return 1 if failures else 0


def cmd_status() -> int:
    bad = 0
    for proc in processes():
        record = running(proc)
        if record is None:
            if pid_file(proc).exists():
                bad += 1
                print(f"{proc.name:<7} DOWN (pid file left; see {log_file(proc)})")
            continue
        ok = healthy(proc)
        bad += not ok
        where = f"http://{HOST}{proc.health}" if proc.health else ""
        print(f"{proc.name:<7} {'healthy' if ok else 'UNHEALTHY':<10} pid={record.pid:<8} {where}")
    return 3 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/pipeline.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    begin = sub.add_parser("start", help="start the worker and the API (idempotent)")
    begin.add_argument("--live", action="store_true", help="also send live telemetry")
    sub.add_parser("stop", help="stop what start started")
    sub.add_parser("status", help="health of each process")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            sys.path.insert(0, str(ROOT))
            return cmd_start(args.live)
        if args.command == "stop":
            return cmd_stop()
        return cmd_status()
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a MeterlineError from the project (Kafka or ClickHouse down)
        if type(exc).__module__.startswith("schemas."):
            print(f"error: {exc}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
