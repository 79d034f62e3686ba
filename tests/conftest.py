"""Shared fixtures.  Integration tests use the real local Kafka and ClickHouse started by
``make up``; when either is missing they FAIL with the command to run — never skip."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ingest.admin import delete_topics
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import drop_database
from tests.processes import stop_process_group

ROOT = Path(__file__).resolve().parent.parent


OPENED_ENGINES: list[ServerEngine] = []
"""ClickHouse connections a test opened through a kit (``tests.e2e.pipeline_kit.prepare``),
closed after each test — also when an assertion ended it early, so a failed test's
connection is not found unclosed (an unraisable warning) inside the next test."""


@pytest.fixture(autouse=True)
def _close_opened_engines() -> Iterator[None]:
    yield
    while OPENED_ENGINES:
        OPENED_ENGINES.pop().close()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The local services, checked once per session."""
    base = Settings()
    missing = [
        f"{name} on {base.kafka_host if name == 'Kafka' else base.clickhouse_host}:{port}"
        for name, port in (
            ("Kafka", base.kafka_port),
            ("ClickHouse", base.clickhouse_tcp_port),
        )
        if not _port_open("127.0.0.1", port)
    ]
    if missing:
        pytest.fail(
            f"integration services not running: {', '.join(missing)}. Start them with `make up` "
            "(`make test` does this itself)."
        )
    return base


def isolated_settings(base: Settings, work: Path, **extra: object) -> Settings:
    """``base`` with a fresh database, topics and consumer group, and the demo configs."""
    tag = "t" + uuid.uuid4().hex[:10]
    return base.model_copy(
        update={
            "clickhouse_database": f"mlt_{tag}",
            "events_topic": f"{tag}.events",
            "dead_letter_topic": f"{tag}.dead-letter",
            "invoices_topic": f"{tag}.invoices",
            "notifications_topic": f"{tag}.notifications",
            "worker_app_id": f"{tag}-metering",
            "worker_data_dir": str(work / "worker"),
            "events_partitions": 4,
            "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
            "rate_card_file": str(ROOT / "deploy/demo/rate-card.yaml"),
            "customers_file": str(ROOT / "deploy/demo/customers.yaml"),
            **extra,
        }
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report kept on the test item (``item.stash``), so a fixture's teardown
    can tell whether its test passed."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def passed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(PHASE_REPORTS, {})
    return all(reports.get(when) is not None and reports[when].passed for when in ("setup", "call"))


@pytest.fixture
def isolated(stack: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings with a fresh database, topics and consumer group for one test.

    After a test that passed, its database and its pipeline's topics are dropped (a local
    stack that runs the suite often would otherwise keep a database of every table and a
    handful of topics per test); after one that failed they are kept, to look at."""
    settings = isolated_settings(stack, tmp_path)
    yield settings
    if not passed(request):
        return
    engine = ServerEngine.of(stack)
    try:
        engine.execute(drop_database(settings.clickhouse_database).to_sql())
    finally:
        engine.close()
    delete_topics(settings)


def fresh_database(
    request: pytest.FixtureRequest, prefix: str, *, tables: bool = True
) -> Iterator[tuple[Any, str]]:
    """For a fixture over both engines (``params=["server", "chdb"]``): a new database
    with every table (``tables=False``: none) on ``request.param``'s engine — the
    ClickHouse 18.16 server (marked integration) or chDB (marked chdb) — dropped
    afterwards."""
    database = prefix + uuid.uuid4().hex[:10]
    if request.param == "server":
        request.applymarker(pytest.mark.integration)
        engine: Any = ServerEngine.of(request.getfixturevalue("stack"))
    else:
        request.applymarker(pytest.mark.chdb)
        engine = request.getfixturevalue("chdb_engine")
    if tables:
        ensure_schema(engine, database)
    else:
        engine.execute(f"CREATE DATABASE {database}")
    yield engine, database
    engine.execute(drop_database(database).to_sql())
    if request.param == "server":
        engine.close()


def settings_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    for name, value in settings.model_dump().items():
        env[f"METERLINE_{name.upper()}"] = str(value)
    return env


def run_module(
    settings: Settings, *args: str, cwd: Path = ROOT, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` (a project command) with ``settings`` as its environment, its
    output as text; the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class WorkerProcess:
    settings: Settings
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                cwd=ROOT,
                env=settings_env(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(30)

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process_group(proc)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("*.log"))
        )


@pytest.fixture
def workers(isolated: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    pool = WorkerProcess(isolated, log_dir)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def chdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One in-process current-ClickHouse for the session; tests isolate by database."""
    from schemas.storage.engine import ChdbEngine

    path = tmp_path_factory.mktemp("chdb")
    engine = ChdbEngine(str(path))
    yield engine
    engine.close()
    shutil.rmtree(path, ignore_errors=True)
