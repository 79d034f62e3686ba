"""Processes a local service manager needs: start detached, remember by pid file,
recognise again, stop.  Standard library only, so `down` and `status` run on a bare
``python3``.  Used by ``stack.py`` (Kafka, ClickHouse) and ``pipeline.py`` (the worker,
the API and the live telemetry of the always-on pipeline)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
STOP_DEADLINE_S = 30.0
LOG_TAIL_LINES = 30


class StackError(Exception):
    """A service could not be prepared, started or stopped; the message says why."""


@dataclass(frozen=True)
class PidRecord:
    """What `up` wrote about a started process; enough to recognise it again later."""

    pid: int
    start_ticks: int
    marker: str
    # Version and ports it was started with; a change needs `down` + `up` to apply.
    settings: str = ""

    @classmethod
    def load(cls, path: Path) -> PidRecord | None:
        """Read a pid file; a missing or corrupt file counts as 'nothing started'."""
        try:
            data = json.loads(path.read_text())
            return cls(
                int(data["pid"]),
                int(data["start_ticks"]),
                str(data["marker"]),
                str(data.get("settings", "")),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            print(f"warning: ignoring unreadable pid file {path}: {exc}")
            return None

    def save(self, path: Path) -> None:
        """Write atomically, so a crash never leaves half a pid file behind."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__) + "\n")
        tmp.replace(path)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a live pid, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def cmdline(pid: int) -> str:
    """The command line of a pid with NULs as spaces; empty when unreadable."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def is_ours(record: PidRecord) -> bool:
    """True only while the recorded pid is alive AND is still the process we started.

    A reused pid (other start time or a command line without our config path) is never
    ours, so `down` can not kill an unrelated process. A zombie counts as dead.
    """
    stat = _proc_stat(record.pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return stat[1] == record.start_ticks and record.marker in cmdline(record.pid)


def describe_pid(record: PidRecord) -> str:
    """Why ``is_ours`` said no: what /proc shows of the pid now."""
    stat = _proc_stat(record.pid)
    if stat is None:
        return "no such process"
    shown = cmdline(record.pid)[:120].strip() or "(no command line)"
    return (
        f"state {stat[0]}, started at tick {stat[1]} (recorded {record.start_ticks}), "
        f"command {shown!r}, expected to contain {record.marker!r}"
    )


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def port_owner(port: int) -> str:
    """Best-effort 'pid N (command)' of the listener on a port, read from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:  # process gone, or not ours to inspect
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pid = int(fd_dir.parent.name)
                    return f"pid {pid} ({cmdline(pid)[:120].strip()})"
    return "an unknown process (not visible in /proc)"


def spawn_detached(cmd: list[str], log_path: Path, cwd: Path) -> int:
    """Start a long-running server in its own session with output appended to a log.

    The child survives this script and the terminal; only `down` stops it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def record_started(pid: int, marker: str, settings: str, pid_file: Path) -> PidRecord:
    """Remember a just-started pid with its start time, config marker and settings."""
    stat = _proc_stat(pid)
    if stat is None:
        raise StackError(f"process {pid} exited immediately")
    record = PidRecord(pid=pid, start_ticks=stat[1], marker=marker, settings=settings)
    record.save(pid_file)
    return record


def stop_process(record: PidRecord, deadline_s: float = STOP_DEADLINE_S) -> str:
    """SIGTERM the recorded process, SIGKILL it after the deadline; say what happened."""
    _signal(record.pid, signal.SIGTERM)
    if wait_for(lambda: not is_ours(record), deadline_s):
        return "stopped"
    _signal(record.pid, signal.SIGKILL)
    if wait_for(lambda: not is_ours(record), 10.0):
        return f"killed (did not stop within {deadline_s:.0f}s of SIGTERM)"
    raise StackError(f"pid {record.pid} survived SIGKILL")


def terminate(record: PidRecord) -> None:
    """SIGTERM a recorded process (and its group) without waiting: several servers can
    then shut down side by side, each awaited with ``stop_process`` afterwards."""
    _signal(record.pid, signal.SIGTERM)


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the whole process group when pid leads its own (started with a new session),
    so helper children die with the server; otherwise signal just the pid."""
    try:
        leads_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    if leads_group:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)


def wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.2) -> bool:
    """Poll a predicate until it holds or the deadline passes; True if it held."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file (read from its last 64 KiB), or a note that it is missing."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])
