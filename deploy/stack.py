"""Start, stop and inspect Meterline's local Kafka and ClickHouse (no containers).

Usage: ``python deploy/stack.py up|down|status|env [--topology single|cluster|all]``

* ``up``     -- fetch what is missing (Kafka jars from Maven Central, the Debian
  ``clickhouse-server`` package), start the servers as detached processes on
  127.0.0.1 and wait until each answers a real request. Idempotent: healthy services
  that this METERLINE_HOME started are left alone.
* ``down``   -- stop only the processes whose pids ``up`` recorded, after checking that
  each pid still belongs to the process that was started.
* ``status`` -- one line per service; exit 0 when all are healthy, else 3.
* ``env``    -- ``export METERLINE_...=`` lines for shell scripts.

Topologies: ``single`` (one Kafka node, one ClickHouse server; the default of ``up`` and
``env``) and ``cluster`` (three Kafka nodes, ZooKeeper, ClickHouse shards × replicas;
``stack_cluster.py``). ``down`` stops both unless told one; ``status`` shows the single
node, and the cluster when this METERLINE_HOME started it.

Everything (jars, data, logs, pid files) lives under ``$METERLINE_HOME``
(default ``~/.cache/meterline``), outside the clone. ``down``, ``status`` and ``env``
need only the standard library; ``up`` and ``status`` use confluent_kafka and
clickhouse_driver for the health checks when they are importable and fall back to
plain-socket probes otherwise. See docs/stack.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(DEPLOY_DIR))

from pidfiles import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    PidRecord,
    StackError,
    cmdline,
    describe_pid,
    is_ours,
    port_open,
    port_owner,
    record_started,
    stop_process,
    terminate,
)
from stack_base import (  # noqa: E402  (deploy/ is a directory of scripts, not a package)
    EXIT_UNHEALTHY,
    Service,
    Settings,
    Topology,
)
from stack_clickhouse import ClickHouse  # noqa: E402
from stack_cluster import ClusterSettings, cluster_topology  # noqa: E402
from stack_kafka import Kafka  # noqa: E402

TOPOLOGIES = ("single", "cluster", "all")
# What a command acts on when --topology is not given: `down` is what CI runs last, so it
# stops everything; `status` adds the cluster when it was started (see cmd_status).
DEFAULT_TOPOLOGY = {"up": "single", "env": "single", "down": "all", "status": "all"}

# --------------------------------------------------------------------------- commands


def single_topology(settings: Settings) -> Topology:
    """One Kafka node and one ClickHouse server, started side by side."""
    return Topology(
        name="single",
        run_dir=settings.home / "run",
        stages=((Kafka(settings), ClickHouse(settings)),),
        exports=settings.exports(),
    )


def topologies(settings: Settings, choice: str) -> list[Topology]:
    """The topologies a --topology choice names, the single node first.

    For ``all``, a malformed METERLINE_CLUSTER_* setting leaves the cluster out when this
    METERLINE_HOME has no cluster process to stop or report, so it never breaks `down`
    or `status` of the single node."""
    chosen = []
    if choice in ("single", "all"):
        chosen.append(single_topology(settings))
    if choice in ("cluster", "all"):
        try:
            cluster = ClusterSettings.from_env()
        except StackError:
            if choice == "cluster" or any((settings.home / "cluster" / "run").glob("*.pid")):
                raise
            return chosen
        chosen.append(cluster_topology(settings, cluster))
    return chosen


def services(settings: Settings) -> list[Service]:
    """The single-node stack's services in start order."""
    return single_topology(settings).services


@contextlib.contextmanager
def stack_lock(run_dir: Path) -> Iterator[None]:
    """Serialise up/down of one topology of one METERLINE_HOME (two `make up` at once
    would race); the single node and the cluster have a lock each."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "stack.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def running_record(svc: Service) -> PidRecord | None:
    """Our live process for a service, dropping a stale pid file on the way.

    A process is declared gone only after it failed the check three times over a second:
    once, right after a start, a live server was taken for gone and left unsupervised."""
    record = PidRecord.load(svc.pid_file)
    if record is None:
        return None
    for attempt in range(3):
        if is_ours(record):
            return record
        if attempt < 2:
            time.sleep(0.5)
    print(
        f"{svc.name}: pid {record.pid} from {svc.pid_file} is gone ({describe_pid(record)}); "
        "removing stale pid file"
    )
    svc.pid_file.unlink(missing_ok=True)
    return None


def foreign_ports(svc: Service) -> list[str]:
    """Descriptions of the service's ports that some other process already holds."""
    return [f"port {port} is in use by {port_owner(port)}" for port in svc.ports if port_open(port)]


def wait_healthy(svc: Service, record: PidRecord) -> tuple[bool, str]:
    """Probe until healthy, the process dies, or the service's deadline passes."""
    deadline = time.monotonic() + svc.deadline_s
    detail = "not probed"
    while time.monotonic() < deadline:
        if not is_ours(record):
            return False, f"process {record.pid} exited during startup ({detail})"
        ok, detail = svc.probe()
        if ok:
            return True, detail
        time.sleep(0.5)
    return False, f"not healthy after {svc.deadline_s:.0f}s (last probe: {detail})"


def cmd_up(chosen: list[Topology]) -> int:
    """Bring every service to 'running and healthy'; non-zero if any could not be."""
    for topology in chosen:
        if (code := _up(topology)) != 0:
            return code
    flags = " ".join(_flag(topology) for topology in chosen if _flag(topology))
    print(f"stack up; `{Path(sys.argv[0]).name} env{flags}` prints the connection settings")
    return 0


def _up(topology: Topology) -> int:
    """Start one topology stage by stage; a stage that fails stops the ones after it."""
    with stack_lock(topology.run_dir):
        flag = _flag(topology)
        failures = [msg for svc in topology.services if (msg := precheck(svc, flag)) is not None]
        if failures:
            return _report_failures(failures)
        for stage in topology.stages:
            not_started = {
                svc.name
                for svc in stage
                if running_record(svc) is None and not _prepare_and_start(svc, failures)
            }
            for svc in stage:
                record = running_record(svc)
                if record is None:
                    if svc.name not in not_started:  # started, and already gone again
                        failures.append(svc.describe_failure("exited right after it started"))
                    continue
                ok, detail = wait_healthy(svc, record)
                if ok:
                    print(f"{svc.name}: healthy (pid {record.pid}; {detail})")
                else:
                    if is_ours(record):
                        detail += (
                            f"; pid {record.pid} is left running, "
                            f"`stack.py down{_flag(topology)}` stops it"
                        )
                    failures.append(svc.describe_failure(detail))
            if failures:
                return _report_failures(failures)
    return 0


def _flag(topology: Topology) -> str:
    return "" if topology.name == "single" else f" --topology {topology.name}"


def precheck(svc: Service, flag: str = "") -> str | None:
    """Why a service can not be brought up as configured, before anything is started.

    Our own process started with other settings is reported, not restarted; a port held
    by a process we did not start is reported, never touched.
    """
    record = running_record(svc)
    if record is not None:
        if record.settings != svc.fingerprint:
            return (
                f"{svc.name}: pid {record.pid} runs with {record.settings or 'unrecorded settings'}"
                f" but the settings now ask for {svc.fingerprint}; "
                f"run `stack.py down{flag}` and then `stack.py up{flag}` to switch"
            )
        print(f"{svc.name}: already running (pid {record.pid})")
        return None
    conflicts = foreign_ports(svc)
    if not conflicts:
        return None
    return (
        f"{svc.name}: not started by this METERLINE_HOME ({svc.s.home}) but "
        + "; ".join(conflicts)
        + ". Not touching it: stop it yourself or choose other ports "
        + "(METERLINE_*_PORT or METERLINE_CLUSTER_PORT_BASE, see `stack.py env`)."
    )


def _prepare_and_start(svc: Service, failures: list[str]) -> bool:
    """Prepare and launch one service, collecting (not raising) its failure; whether it
    was launched."""
    started = time.monotonic()
    print(f"{svc.name}: starting ...", flush=True)
    try:
        svc.prepare()
        pid = svc.start()
        record_started(pid, svc.marker, svc.fingerprint, svc.pid_file)
    except StackError as exc:
        failures.append(svc.describe_failure(str(exc)))
        return False
    print(f"{svc.name}: started pid {pid} ({time.monotonic() - started:.1f}s to launch)")
    return True


def _report_failures(failures: list[str]) -> int:
    """Print every failure to stderr; the exit code for `up`."""
    for failure in failures:
        print(f"\nERROR {failure}", file=sys.stderr)
    return 1


def cmd_down(chosen: list[Topology]) -> int:
    """Stop only processes recorded by `up` that are verifiably still ours."""
    code = 0
    for topology in chosen:
        if topology.name != "single" and not topology.started_anything():
            print(f"{topology.name}: nothing started by this METERLINE_HOME; nothing to stop")
            continue
        with stack_lock(topology.run_dir):
            for stage in reversed(topology.stages):
                code |= _stop_stage(stage)
    return code


def _stop_stage(stage: tuple[Service, ...]) -> int:
    """Stop the services of one stage together: SIGTERM to all, then wait for each, so
    stopping N servers takes about as long as the slowest, not the sum."""
    code = 0
    ours: list[tuple[Service, PidRecord]] = []
    for svc in stage:
        record = PidRecord.load(svc.pid_file)
        if record is None:
            print(f"{svc.name}: not started by this METERLINE_HOME; nothing to stop")
        elif not is_ours(record):
            print(
                f"{svc.name}: pid {record.pid} is gone or now belongs to another process "
                f"({cmdline(record.pid)[:80] or 'no such pid'}); not signalling it"
            )
            svc.pid_file.unlink(missing_ok=True)
        else:
            terminate(record)
            ours.append((svc, record))
    for svc, record in ours:
        try:
            outcome = stop_process(record)
        except (StackError, OSError) as exc:
            print(f"{svc.name}: could not stop pid {record.pid}: {exc}", file=sys.stderr)
            code = 1
            continue
        svc.pid_file.unlink(missing_ok=True)
        print(f"{svc.name}: {outcome} (pid {record.pid})")
    return code


def cmd_status(chosen: list[Topology], shown_when_started: bool = False) -> int:
    """One line per service; 0 when all are healthy, EXIT_UNHEALTHY otherwise.

    With ``shown_when_started`` (``status`` without --topology) the cluster appears only
    when this METERLINE_HOME started it."""
    all_healthy = True
    for topology in chosen:
        if topology.name != "single":
            if shown_when_started and not topology.started_anything():
                continue
            print(f"{topology.name}: {topology.run_dir.parent} (`stack.py env{_flag(topology)}`)")
        width = max(10, *(len(svc.name) for svc in topology.services))
        for svc in topology.services:
            all_healthy &= _status_line(svc, width)
    return 0 if all_healthy else EXIT_UNHEALTHY


def _status_line(svc: Service, width: int) -> bool:
    """Print one service's state and detail; whether it is healthy."""
    ports = ",".join(str(port) for port in svc.ports)
    record = PidRecord.load(svc.pid_file)
    if record is not None and is_ours(record):
        ok, detail = svc.probe()
        state = "healthy" if ok else "running (unhealthy)"
        pid = str(record.pid)
        if record.settings != svc.fingerprint:
            ok, state = False, "running (stale)"
            detail += f"; started with {record.settings or 'unrecorded settings'}, "
            detail += f"settings now ask for {svc.fingerprint} (down + up to switch)"
    else:
        ok, pid = False, "-"
        state = "stopped"
        busy = foreign_ports(svc)
        detail = "; ".join(busy) + " (not ours)" if busy else "not running"
    print(f"{svc.name:<{width}} {state:<19} pid={pid:<7} ports={ports:<11} log={svc.logs[0]}")
    print(f"{'':<{width}} {detail}")
    return ok


def cmd_env(chosen: list[Topology]) -> int:
    """Shell export lines for the effective settings."""
    exports: dict[str, str] = {}
    for topology in chosen:
        exports |= topology.exports
    for key, value in exports.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


COMMANDS: dict[str, Callable[[list[Topology]], int]] = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "env": cmd_env,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command, run it, and turn a StackError into exit code 1 with a message."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument(
        "--topology",
        choices=TOPOLOGIES,
        help="single (default of up and env), cluster, or all (default of down; status "
        "shows the cluster when it was started)",
    )
    args = parser.parse_args(argv)
    try:
        chosen = topologies(Settings.from_env(), args.topology or DEFAULT_TOPOLOGY[args.command])
        if args.command == "status":
            return cmd_status(chosen, shown_when_started=args.topology is None)
        return COMMANDS[args.command](chosen)
    except StackError as exc:
        print(f"ERROR {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
