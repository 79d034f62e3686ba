"""The worker's per-chunk path in one process, without Faust or Kafka: CPU per event of
each step, and a same-run ablation against another checkout.

    python bench/hot_path.py [--events-per-subject 10000] [--rounds 3] [--baseline-code DIR]
                             [--live]

The stream stage (``bench/stream_stage.py``) measures the real worker, but on a shared
box its CPU figure moves by 10-20 % between runs, more than a single change to the hot
path saves.  This stage runs only that path — the generated telemetry of the stream
stage (20 subjects, 10 % re-sent, packed records of 500 events on 4 partitions) through
``MeteringSink.plan``, ``write`` (the real ClickHouse server, a fresh database) and
``finish`` (the on-disk dedupe store, ``streams.seen_store``, its changelog sends
dropped), chunk by chunk as ``streams.batch`` does — and times each step with
``time.process_time`` (this process's CPU, every thread).  Garbage collection is tuned as
the worker tunes it.

Each round runs the current code, then, with ``--baseline-code DIR`` (a checkout, e.g.
``git worktree add DIR <commit>``), the same in a child process whose imports come from
``DIR`` (and its native module built from ``DIR``'s sources: ``baseline_native``); rounds
alternate, and the median of each is reported with the ratio.  Each run
checks its stored events and totals against the generated truth; a run that is not exact
fails the stage.

The telemetry is a backfill (31 days of October: nearly every event a window row of its
own) or, with ``--live``, stamped over the minute before the run (live traffic: events
share windows, so the fold and the write do far less per event), as in the stream stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from baseline_native import native_dir  # noqa: E402

PARTITIONS = 4
RECORD_EVENTS = 500


def child(code: Path, events_per_subject: int, live: bool = False) -> dict[str, Any]:
    """One run with the project imported from ``code``."""
    sys.path.insert(0, str(code))
    from collections import defaultdict
    from datetime import UTC, datetime, timedelta

    import faust
    from faust.types import TP

    from ingest.telemetry import generate
    from schemas.metering.definitions import load_meters
    from schemas.settings import Settings
    from schemas.storage.bootstrap import ensure_schema
    from schemas.storage.engine import ServerEngine
    from schemas.storage.events_table import EventsTable
    from schemas.wire import encode_event
    from streams import cli

    try:
        from streams.seen_table import PositionedTable, TableSeenStore
    except ModuleNotFoundError:  # a baseline checkout from before the module
        from streams.app import PositionedTable, TableSeenStore  # type: ignore[attr-defined]
    from streams.plan import PendingSeen, Record
    from streams.reconcile import stored_totals
    from streams.sink import MeteringSink

    class UnsentTable(PositionedTable):
        def on_key_set(self, key: Any, value: Any) -> None:
            pass

        def on_key_del(self, key: Any) -> None:
            pass

    settings = Settings()
    meters = load_meters(ROOT / "deploy/demo/meters.yaml")
    subjects = [f"customer-{n:03d}" for n in range(20)]
    now = datetime.now(UTC).replace(microsecond=0)
    start, span = (
        (now - timedelta(minutes=1), timedelta(minutes=1))
        if live
        else (datetime(2026, 10, 1, tzinfo=UTC), timedelta(days=31))
    )
    telemetry = generate(subjects, start, span, events_per_subject, seed=7)
    by_subject: dict[str, list[bytes]] = defaultdict(list)
    for event in telemetry.events:
        by_subject[event.subject].append(encode_event(event))
    ingested = int(time.time() * 1000)
    offsets = [0] * PARTITIONS
    records: list[Record] = []
    queues = dict(by_subject)
    while any(queues.values()):  # subjects interleaved, as on a live topic
        for n, subject in enumerate(subjects):
            lines = queues[subject]
            if not lines:
                continue
            part, queues[subject] = lines[:RECORD_EVENTS], lines[RECORD_EVENTS:]
            partition = n % PARTITIONS
            records.append(
                Record(
                    "bench",
                    partition,
                    offsets[partition],
                    ingested,
                    subject.encode(),
                    b"\n".join(part),
                    batch=True,
                )
            )
            offsets[partition] += 1

    work = Path(tempfile.mkdtemp(prefix="meterline-hot-path-"))
    database = f"bench_hot_{uuid.uuid4().hex[:10]}"
    engine = ServerEngine.of(settings)
    ensure_schema(engine, database)
    app = faust.App("bench-hot-path", datadir=str(work), key_serializer="raw")
    table = app.tables.add(
        UnsentTable(app, name="dedupe", partitions=PARTITIONS, key_type=bytes, value_type=bytes)
    )
    for partition in range(PARTITIONS):
        table.data.persisted_offset(TP(table.changelog_topic.topics[0], partition))
    store = TableSeenStore(table)
    sink = MeteringSink(
        namespace=settings.namespace,
        meters=meters,
        engine_factory=lambda: ServerEngine.of(settings),
        database=database,
    )
    # the worker's write size; a checkout from before the setting cut chunks by the poll size
    chunk_events = getattr(settings, "worker_chunk_events", settings.worker_batch_max)
    cli.tune_gc()
    cpu = {"plan": 0.0, "write": 0.0, "finish": 0.0}
    clock = time.process_time
    wall = time.perf_counter()
    try:
        for first in range(0, len(records), 64):
            batch = records[first : first + 64]
            pending = PendingSeen(store)
            for chunk in sink.chunks(batch, chunk_events):
                t0 = clock()
                plan = sink.plan(chunk, pending)
                add_plan = getattr(pending, "add_plan", None)  # a baseline may predate it
                if add_plan is not None:
                    add_plan(plan)
                else:
                    pending.add(plan.seen)
                t1 = clock()
                sink.write(plan)
                t2 = clock()
                sink.finish(plan, store)
                t3 = clock()
                cpu["plan"] += t1 - t0
                cpu["write"] += t2 - t1
                cpu["finish"] += t3 - t2
        wall = time.perf_counter() - wall
        stored = stored_totals(engine, database, settings.namespace, meters)
        raw = engine.execute(EventsTable(database).count(settings.namespace).to_sql())
        exact = stored == telemetry.truth and int(raw[0][0]) == telemetry.unique
    finally:
        engine.execute(f"DROP DATABASE IF EXISTS {database}")
        engine.close()
        table.data.close()
        shutil.rmtree(work, ignore_errors=True)
    events = len(telemetry.events)
    out = {k: v / events * 1e6 for k, v in cpu.items()}
    out["total"] = sum(cpu.values()) / events * 1e6
    out["events"] = events
    out["events_per_s_wall"] = events / wall
    out["exact"] = exact
    return out


def run(code: Path, events_per_subject: int, live: bool) -> dict[str, Any]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    own = native_dir(code) if code != ROOT else None  # a baseline's own native build
    if own is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(own), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(code),
            "--events-per-subject",
            str(events_per_subject),
            *(["--live"] if live else []),
        ],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"run with code in {code} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def alternated(
    codes: dict[str, Path], events_per_subject: int, rounds: int, live: bool = False
) -> dict[str, Any]:
    """``rounds`` rounds, each running every checkout of ``codes`` in turn: per checkout
    the median CPU µs per event of each step, wall events/s, exactness; with a
    ``baseline`` checkout, ``ratio_total_cpu`` of ``current`` to it."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
    for n in range(rounds):
        for name, code in codes.items():
            result = run(code, events_per_subject, live)
            runs[name].append(result)
            print(f"round {n + 1} {name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    out: dict[str, Any] = {}
    for name, results in runs.items():
        out[name] = {
            step: statistics.median(r[step] for r in results)
            for step in ("plan", "write", "finish", "total", "events_per_s_wall")
        }
        out[name]["exact"] = all(r["exact"] for r in results)
        out[name]["events"] = results[0]["events"]
    if "baseline" in out:
        out["ratio_total_cpu"] = out["current"]["total"] / out["baseline"]["total"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-per-subject", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-code", type=Path, default=None)
    parser.add_argument(
        "--live",
        action="store_true",
        help="stamp the events over the minute before the run (live traffic, events share "
        "windows) instead of 31 days of October (a backfill)",
    )
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child.resolve(), args.events_per_subject, args.live)))
        return 0
    codes = {"current": ROOT}
    if args.baseline_code is not None:
        codes["baseline"] = args.baseline_code.resolve()
    out = alternated(codes, args.events_per_subject, args.rounds, args.live)
    print(json.dumps(out))
    return 0 if all(o["exact"] for o in out.values() if isinstance(o, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
