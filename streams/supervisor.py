"""``python -m streams worker``: run the metering worker as a child and keep it running.

The supervisor restarts the child after **every** exit except a stop it was asked for
(SIGTERM or SIGINT to the supervisor): a crash, a fail-closed exit (ClickHouse down past
the sink's deadline, records skipped by the consumer), a signal from the OOM killer or an
operator.  Restarts back off from ``first_s`` doubling to ``max_s``; a child that stayed
up for ``reset_after_s`` starts the back-off again from the beginning.

A :class:`~streams.watchdog.Watchdog` decides when a *running* child must be replaced:
it reads the child's heartbeats (``streams.liveness``) and the group's committed offsets
from Kafka.  A replaced child gets SIGTERM, then SIGKILL after ``kill_grace_s``.

Why a replaced or killed child costs nothing: every record is acknowledged only after its
effects are stored, and the sink is idempotent by position (``streams.sink``), so the
next child re-reads what was not committed and skips what was already stored.

The supervisor serves, on ``worker_metrics_host:worker_metrics_port`` (127.0.0.1 unless
told otherwise, e.g. 0.0.0.0 in a pod; port 0 disables):

* ``/healthz`` — 200 while the supervision loop runs (a child may be restarting);
* ``/readyz``  — 200 when the child is up and Faust says it is ready, else 503;
* ``/metrics`` — its own counters (restarts by reason, child starts, lag seen) followed
  by the current child's metrics, so counters that must survive restarts live here;
  ``meterline_worker_child_metrics_up`` says whether the child's are in this scrape.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import orjson
from confluent_kafka import KafkaException
from prometheus_client import generate_latest

from schemas.errors import ServiceUnavailable
from schemas.settings import Settings
from streams.liveness import HEARTBEAT_FD_ENV
from streams.progress import OffsetReader
from streams.supervisor_http import SupervisorMetrics, serve_endpoints
from streams.watchdog import Heartbeat, Limits, Offsets, Verdict, Watchdog

__all__ = ["Backoff", "Supervisor", "describe_exit", "limits_from"]

log = logging.getLogger("streams.supervisor")
FAILPOINT_ENV = "METERLINE_WORKER_FAILPOINT"


@dataclass(slots=True)
class Backoff:
    """Delay before the next start: doubling from ``first_s`` to ``max_s``; reset after a
    child that ran ``reset_after_s``."""

    first_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0
    current: float = 0.0

    def next(self, ran_s: float) -> float:
        if ran_s >= self.reset_after_s or self.current == 0.0:
            self.current = self.first_s
        else:
            self.current = min(self.current * 2, self.max_s)
        return self.current


def limits_from(settings: Settings) -> Limits:
    return Limits(
        stall_s=settings.worker_stall_seconds,
        heartbeat_s=settings.worker_heartbeat_seconds,
        startup_s=settings.worker_startup_seconds,
        write_s=settings.worker_write_seconds,
    )


def describe_exit(code: int) -> tuple[str, str]:
    """``(reason label, text)`` for a child's return code (negative: killed by a signal)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "signalled", f"killed by {name}"
    return "exited", f"exited with code {code}"


@dataclass(slots=True)
class _Child:
    process: subprocess.Popen[bytes]
    pipe: int
    started: float
    buffer: bytes = b""
    metrics_port: int = 0
    ready: bool = False
    records: int = 0
    restored: int = 0

    def read_beats(self) -> list[dict[str, Any]]:
        """Complete heartbeat lines available now (non-blocking)."""
        beats = []
        while True:
            try:
                chunk = os.read(self.pipe, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            try:
                beats.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                log.warning("unreadable heartbeat line from the worker: %r", line[:200])
        return beats


@dataclass
class Supervisor:
    """Start the worker child, watch it, replace it; see the module docstring."""

    settings: Settings
    child_args: Sequence[str]
    limits: Limits = field(default_factory=Limits)
    backoff: Backoff = field(default_factory=Backoff)
    poll_s: float = 2.0
    kill_grace_s: float = 10.0
    stop_grace_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _stop: threading.Event = field(default_factory=threading.Event)
    _child: _Child | None = None
    _beat_loop: float = 0.0
    _started: int = 0

    def __post_init__(self) -> None:
        self.metrics = SupervisorMetrics()
        self.metrics.lag.set(-1)
        self.watchdog = Watchdog(self.limits)
        self.offsets = OffsetReader(
            self.settings.kafka_bootstrap,
            self.settings.worker_app_id,
            self.settings.events_topic,
            timeout=5.0,
        )

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Supervise until asked to stop; returns 0 after a requested stop."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        server = self.serve_http()
        try:
            while not self._stop.is_set():
                child = self._start_child()
                reason, text = self._watch(child)
                if self._stop.is_set():
                    break
                self.metrics.restarts.labels(reason).inc()
                delay = self.backoff.next(self.clock() - child.started)
                log.warning("worker %s; restarting in %.0fs (reason: %s)", text, delay, reason)
                resume = self.clock() + delay
                while not self._stop.is_set() and self.clock() < resume:
                    time.sleep(0.1)
        finally:
            if self._child is not None:
                self._end_child(self._child, self.stop_grace_s)
            self.offsets.close()
            if server is not None:
                server.shutdown()
        log.info("supervisor stopped on request")
        return 0

    def _request_stop(self, signum: int, _frame: object) -> None:
        log.info("received %s; stopping the worker", signal.Signals(signum).name)
        self._stop.set()

    def _start_child(self) -> _Child:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        env = dict(os.environ)
        env[HEARTBEAT_FD_ENV] = str(write_end)
        if self._started:  # a failpoint (docs/reliability.md) is for the first child only
            env.pop(FAILPOINT_ENV, None)
        self._started += 1
        process = subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--child", *self.child_args],
            env=env,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        now = self.clock()
        self._child = child = _Child(process, read_end, now)
        self.watchdog.started(now)
        self.metrics.starts.inc()
        log.info("started worker child pid %d", process.pid)
        return child

    def _watch(self, child: _Child) -> tuple[str, str]:
        """Run until the child exits or must be replaced; ``(reason, text)``."""
        next_poll = self.clock()
        try:
            while True:
                select.select([child.pipe], [], [], 0.5)
                now = self.clock()
                self._beat_loop = now
                for beat in child.read_beats():
                    self._on_beat(child, now, beat)
                code = child.process.poll()
                if code is not None:
                    return describe_exit(code)
                if self._stop.is_set():
                    self._end_child(child, self.stop_grace_s)
                    return "stopped", "stopped on request"
                if now >= next_poll:
                    self.watchdog.offsets(now, self._read_offsets())
                    next_poll = now + self.poll_s
                    self._export(now)
                verdict = self.watchdog.verdict(now)
                if verdict is not None:
                    self._replace(child, verdict)
                    return str(verdict.reason), f"replaced by the watchdog: {verdict.detail}"
        finally:
            child.ready = False
            self.metrics.up.set(0)
            os.close(child.pipe)
            self._child = None

    def _on_beat(self, child: _Child, now: float, beat: dict[str, Any]) -> None:
        writing = beat.get("writing_s")
        heartbeat = Heartbeat(
            ready=bool(beat.get("ready")),
            assigned=frozenset(int(p) for p in beat.get("assigned") or ()),
            writing_s=None if writing is None else float(writing),
            restored=int(beat.get("restored") or 0),
        )
        if heartbeat.ready != child.ready:
            log.info(
                "worker child pid %d %s (partitions %s)",
                child.process.pid,
                "ready" if heartbeat.ready else "not ready",
                sorted(heartbeat.assigned),
            )
        child.ready = heartbeat.ready
        child.metrics_port = int(beat.get("metrics_port") or 0)
        child.records = int(beat.get("records") or 0)
        child.restored = heartbeat.restored
        self.metrics.up.set(1 if heartbeat.ready else 0)
        self.watchdog.heartbeat(now, heartbeat)

    def _read_offsets(self) -> Offsets | None:
        try:
            lag = self.offsets.read()
        except (KafkaException, ServiceUnavailable) as exc:
            log.info("could not read offsets from Kafka (%s); the stall clock restarts", exc)
            return None
        return Offsets(lag.committed, lag.end)

    def _export(self, now: float) -> None:
        lag = self.watchdog.lag
        self.metrics.lag.set(-1 if lag is None else lag)
        self.metrics.idle.set(max(now - self.watchdog.progress_at, 0.0) if lag else 0.0)

    def _replace(self, child: _Child, verdict: Verdict) -> None:
        log.error(
            "watchdog: replacing worker child pid %d (%s): %s",
            child.process.pid,
            verdict.reason,
            verdict.detail,
        )
        self._end_child(child, self.kill_grace_s)

    @staticmethod
    def _end_child(child: _Child, grace: float) -> None:
        process = child.process
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning(
                "worker child pid %d ignored SIGTERM for %.0fs; SIGKILL", process.pid, grace
            )
            process.kill()
            process.wait(10)

    # ------------------------------------------------------------------ HTTP

    def status(self) -> dict[str, Any]:
        child = self._child
        now = self.clock()
        return {
            "supervisor": "running" if not self._stop.is_set() else "stopping",
            "children_started": self._started,
            "child_pid": child.process.pid if child is not None else None,
            "ready": bool(child is not None and child.ready),
            "assigned": sorted(self.watchdog.last.assigned) if self.watchdog.last else [],
            "child_records_metered": child.records if child is not None else 0,
            "child_changelog_restored": child.restored if child is not None else 0,
            "lag": self.watchdog.lag,
            "seconds_without_progress": round(now - self.watchdog.progress_at, 1),
            "loop_age_s": round(now - self._beat_loop, 1) if self._beat_loop else None,
        }

    def metrics_text(self) -> bytes:
        """The supervisor's own series and the child's, fetched now; without the child's
        (restarting, or no answer within 2 s) ``meterline_worker_child_metrics_up`` is 0,
        so a dashboard can tell missing series from zero ones."""
        child_text = self._child_metrics()
        self.metrics.child_metrics.set(0 if child_text is None else 1)
        return generate_latest(self.metrics.registry) + (child_text or b"")

    def _child_metrics(self) -> bytes | None:
        child = self._child
        if child is None or not child.metrics_port:
            return None
        url = f"http://127.0.0.1:{child.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bytes(answer.read())
        except OSError as exc:
            log.info("worker child metrics unavailable (%s)", exc)
            return None

    def serve_http(self) -> ThreadingHTTPServer | None:
        """Start serving ``/healthz``, ``/readyz`` and ``/metrics`` in a thread, on
        ``worker_metrics_host:worker_metrics_port``; ``None`` when the port is 0."""
        host, port = self.settings.worker_metrics_host, self.settings.worker_metrics_port
        if not port:
            return None
        return serve_endpoints(host, port, self.status, self.metrics_text)
