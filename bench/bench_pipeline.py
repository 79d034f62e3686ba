"""Pipeline benchmarks on the local Kafka and ClickHouse started by ``make up``.

Everything runs in an isolated namespace of its own: topics, consumer groups, worker app
ids and ClickHouse databases are prefixed ``bench_<random>`` and deleted at the end.

Measured (each next to a baseline measured in the same run):

- producer SDK: events/s from ``UsageProducer.send_many`` + flush to the local broker.
  Baseline: a bare confluent-kafka consume plus ``orjson.loads`` of the same topic.
- stream stage: events/s through the worker (``python -m streams worker``: Faust,
  decode, dedupe, aggregation and the ClickHouse write), from its first committed offset
  to zero lag; exactness is checked after every run (stored totals per (subject, meter)
  equal the generated truth, raw row count equals the unique events).  Baseline: the
  bare consume + decode above.
- scale-out: the same with two worker processes on the same multi-partition topic.
- sink: ``MeteringSink.plan`` + ``write`` in-process against a bare clickhouse-driver
  insert of the same rows.
- queries: meter query latency (hourly windows, one month) p50 / p95 against a
  ``SELECT 1`` round trip on the same connection.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from baseline_native import native_dir  # (bench/ is on the path of every bench script)
from clickhouse_driver import Client
from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from ingest import UsageProducer
from ingest.admin import ensure_topics, meterline_topics
from ingest.telemetry import generate
from schemas.events import UsageEvent
from schemas.metering.definitions import load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.window_states import WindowStates
from schemas.storage.windows_table import MeterQuery, WindowsTable
from schemas.wire import (
    DEFAULT_COMPRESSION,
    Compression,
    encode_event,
    event_key,
    is_batch,
    split_record,
)
from streams.progress import consumer_lag
from streams.reconcile import stored_totals as totals_of
from streams.sink import MeteringSink, Record

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's tests/
from tests.processes import stop_process_group
from tests.streams.sink_kit import Store

__all__ = ["Bench"]

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = [f"customer-{n:03d}" for n in range(20)]
OCTOBER = datetime(2026, 10, 1, tzinfo=UTC)


PACKED, SINGLE = "packed", "single"
RECORD_EVENTS = {PACKED: 500, SINGLE: 1}
"""Events per Kafka record for each layout the producer benchmark writes."""


def session_processes(sessions: set[int]) -> Iterator[tuple[Path, list[str]]]:
    """``(/proc/<pid>, the stat fields after the command name)`` of each live process
    whose session id is in ``sessions`` (a worker started with ``start_new_session`` leads
    its own session, its supervised child included)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended between listing and reading
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) in sessions:  # field 6 of stat: the session id
            yield entry, fields


def session_cpu_seconds(sessions: set[int]) -> float:
    """User + system CPU seconds of the live processes of ``sessions``
    (:func:`session_processes`)."""
    total = sum(int(f[11]) + int(f[12]) for _, f in session_processes(sessions))  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def session_peak_rss_mb(sessions: set[int]) -> float:
    """The largest peak resident set (``VmHWM``) among the live processes of ``sessions``,
    in MB: the worker child's high-water mark."""
    peak = 0
    for entry, _ in session_processes(sessions):
        try:
            status = (entry / "status").read_text()
        except OSError:  # the process ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def pids_cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` (``/proc/<pid>/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def server_pids() -> dict[str, list[int]]:
    """Pids of the single-node stack's ClickHouse server and Kafka broker (``make up``):
    the stream stage reports their CPU per event beside the worker's, over the same span
    (``Bench.watch_pids``)."""
    sys.path.insert(0, str(ROOT / "deploy"))
    import pidfiles
    import stack_base

    run_dir = stack_base.Settings.from_env().home / "run"
    pids: dict[str, list[int]] = {}
    for name in ("clickhouse", "kafka"):
        record = pidfiles.PidRecord.load(run_dir / f"{name}.pid")
        if record is None or not pidfiles.is_ours(record):
            raise SystemExit(f"{name} is not running: `make up`")
        pids[name] = [record.pid]
    return pids


class BenchError(RuntimeError):
    """A benchmark could not produce a trustworthy figure (e.g. a total did not match)."""


def summary(values: list[float]) -> dict[str, Any]:
    """Median and spread (min, max, relative half-range) of the timed runs."""
    median = statistics.median(values)
    return {
        "runs": values,
        "median": median,
        "min": min(values),
        "max": max(values),
        "spread_pct": 100 * (max(values) - min(values)) / 2 / median if median else 0.0,
    }


def fastest_bare(stage: dict[str, Any], base: dict[str, Any]) -> float:
    """The fastest bare consume of a run, the least flattering baseline for ``stage``:
    the baseline stage's (``base``) or one paired with the stage's runs."""
    return max(float(base["max"]), float(stage["paired_baseline"]["max"]))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class Bench:
    def __init__(
        self,
        events_per_subject: int,
        seed: int,
        repeats: int,
        partitions: int,
        start: datetime = OCTOBER,
        span: timedelta = timedelta(days=31),
        subjects: Sequence[str] = SUBJECTS,
    ) -> None:
        """Telemetry of ``subjects`` stamped over ``[start, start + span)``: by default 31
        days of October, a backfill in which nearly every event is a window of its own; a
        recent, short span is the shape of live traffic, whose events share windows."""
        self.prefix = "bench_" + uuid.uuid4().hex[:8]
        self.repeats = repeats
        self.partitions = partitions
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.keep_work = False
        """Set when a run failed: :meth:`cleanup` then leaves the workers' logs and state
        in ``work`` for reading; otherwise it deletes them (~200 MB per stream stage)."""
        self.base = Settings().model_copy(
            update={
                "events_partitions": partitions,
                "meters_file": str(ROOT / "deploy/demo/meters.yaml"),
                "rate_card_file": str(ROOT / "deploy/demo/rate-card.yaml"),
                "customers_file": str(ROOT / "deploy/demo/customers.yaml"),
            }
        )
        self.telemetry = generate(subjects, start, span, events_per_subject, seed=seed)
        self.events = len(self.telemetry.events)
        # filled event topics per record layout, one per producer run (the first: warm-up)
        self.topics: dict[str, list[str]] = {PACKED: [], SINGLE: []}
        self._n = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.last_database = ""  # the last stream run's database, for the query benchmark
        self.watch_pids: dict[str, list[int]] = {}
        """Other processes by name (e.g. the ClickHouse servers) whose CPU the stream stage
        measures over the same span as the workers': µs per event, one figure per run, in
        ``watched_cpu_us`` while a stream stage runs (its results carry them)."""
        self.watched_cpu_us: dict[str, list[float]] = {}

    # -- isolation ------------------------------------------------------------------------
    def settings(
        self, events_topic: str | None = None, states: WindowStates | None = None
    ) -> Settings:
        """Isolated settings; ``states``: the window states of the database it names
        (default: the environment's, ``METERLINE_CLICKHOUSE_WINDOW_STATES``)."""
        self._n += 1
        tag = f"{self.prefix}_{self._n}"
        return self.base.model_copy(
            update={
                "clickhouse_window_states": states or self.base.clickhouse_window_states,
                "clickhouse_database": tag,
                "events_topic": events_topic or f"{tag}.events",
                "dead_letter_topic": f"{tag}.dead-letter",
                "invoices_topic": f"{tag}.invoices",
                "worker_app_id": f"{tag}-metering",
                "worker_data_dir": str(self.work / tag),
            }
        )

    def engine(self) -> ServerEngine:
        """The configured server (on a cluster, the layout is the cluster's)."""
        return ServerEngine.of(self.base)

    def cleanup(self) -> dict[str, int | str]:
        for proc in self.procs:
            stop_process_group(proc)
        admin = AdminClient({"bootstrap.servers": self.base.kafka_bootstrap})
        groups = [
            g.group_id
            for g in admin.list_consumer_groups(request_timeout=30).result(30).valid
            if g.group_id.startswith(self.prefix)
        ]
        if groups:
            for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
                with suppress(KafkaException):  # an empty group may already be gone
                    future.result(30)
        engine = self.engine()
        topics, dbs = drop_prefixed(self.base.kafka_bootstrap, engine, self.prefix)
        engine.close()
        if not self.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
        return {
            "topics": topics,
            "groups": len(groups),
            "databases": dbs,
            "work": str(self.work) if self.keep_work else "deleted",
        }

    def prepared(self) -> tuple[Settings, ServerEngine]:
        """Fresh isolated settings with their topics and tables created, and an engine."""
        settings = self.settings()
        ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
        engine = self.engine()
        _ensure_schema(engine, settings)
        return settings, engine

    # -- producer SDK + consume baseline -----------------------------------------------------
    def producer(
        self,
        layout: str = PACKED,
        runs: int | None = None,
        compression: Compression = DEFAULT_COMPRESSION,
    ) -> dict[str, Any]:
        """Warm-up + ``runs`` (default ``repeats``) runs; each fills a fresh topic reused by
        the later stages.  ``layout``: packed records (``send_many``'s default, up to
        500 events of a subject per record) or one event per record; ``compression``: the
        producer's codec (``schemas.wire``).  Also the producer's process CPU per event
        (librdkafka's threads, which compress, included)."""
        rates, cpu_us = [], []
        for run in range((self.repeats if runs is None else runs) + 1):
            settings = self.settings()
            ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
            with UsageProducer(
                settings.kafka_bootstrap,
                settings.events_topic,
                record_events=RECORD_EVENTS[layout],
                compression=compression,
            ) as producer:
                start, cpu_start = time.perf_counter(), time.process_time()
                producer.send_many(self.telemetry.events)
                report = producer.flush()
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu_start
            if report.delivered != self.events or report.failed:
                raise BenchError(f"producer delivered {report.delivered}/{self.events}")
            self.topics[layout].append(settings.events_topic)
            if run:
                rates.append(self.events / elapsed)
                cpu_us.append(cpu / self.events * 1e6)
        out = summary(rates)
        out["cpu_us_per_event"] = summary(cpu_us)
        return out

    def consume_baseline(self, layout: str = PACKED) -> dict[str, Any]:
        """Events/s of a bare confluent-kafka consumer that splits records and parses each
        event with orjson, and its process CPU µs per event (librdkafka's threads
        included)."""
        rates: list[float] = []
        cpu_us: list[float] = []
        for run, topic in enumerate(self.topics[layout]):
            rate, cpu = self.bare_consume(topic, f"{self.prefix}_raw_{run}")
            if run:
                rates.append(rate)
                cpu_us.append(cpu)
        out = summary(rates)
        out["cpu_us_per_event"] = summary(cpu_us)
        return out

    def bare_consume(self, topic: str, group: str) -> tuple[float, float]:
        """One bare consume of ``topic`` by a new consumer group: ``(events/s, process CPU
        µs per event)``, timed from the first record received (the group join left out)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.base.kafka_bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        seen = 0
        start: float | None = None
        cpu_start = time.process_time()
        deadline = time.monotonic() + 300
        while seen < self.events:
            if time.monotonic() > deadline:
                raise BenchError(f"bare consume read {seen}/{self.events}")
            for msg in consumer.consume(num_messages=10_000, timeout=1.0):
                if msg.error():
                    continue
                if start is None:
                    start = time.perf_counter()  # time from the first record: no join
                    cpu_start = time.process_time()
                for line in split_record(msg.value(), is_batch(msg.headers())):
                    orjson.loads(line)
                    seen += 1
        elapsed = time.perf_counter() - (start or time.perf_counter())
        cpu = time.process_time() - cpu_start
        consumer.close()
        if seen != self.events:
            raise BenchError(f"bare consume read {seen}, expected {self.events}")
        return self.events / elapsed, cpu / self.events * 1e6

    # -- the Faust floor ---------------------------------------------------------------------
    def faust_floor(self, layout: str) -> dict[str, Any]:
        """Records/s (and events/s) a no-op Faust agent receives from this layout's topics:
        the ceiling Faust itself puts on the stream stage (``bench/faust_floor.py``)."""
        rates, event_rates = [], []
        for run, topic in enumerate(self.topics[layout]):
            records = consumer_lag(self.base.kafka_bootstrap, f"{self.prefix}_none", topic).produced
            app_id = f"{self.prefix}_floor_{layout}_{run}"
            done = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench" / "faust_floor.py"),
                    self.base.kafka_bootstrap,
                    topic,
                    str(self.partitions),
                    str(records),
                    app_id,
                    str(self.work / app_id),
                ],
                cwd=ROOT,
                capture_output=True,
                timeout=300,
                check=False,
            )
            lines = [ln for ln in done.stdout.decode().splitlines() if ln.startswith("{")]
            if done.returncode != 0 or not lines:
                raise BenchError(f"Faust floor run failed: {done.stderr.decode()[-2000:]}")
            rate = float(orjson.loads(lines[-1])["records_per_second"])
            if run:
                rates.append(rate)
                event_rates.append(rate * self.events / records)
        return {"records_per_second": summary(rates), "events_per_second": summary(event_rates)}

    # -- stream stage (worker processes) ---------------------------------------------------
    def stream(
        self, workers: int, layout: str = PACKED, worker_root: Path = ROOT
    ) -> dict[str, Any]:
        return self.streams(workers, [worker_root], layout)[0]

    def streams(
        self,
        workers: int,
        roots: Sequence[Path],
        layout: str = PACKED,
        window_states: Sequence[WindowStates] = (),
    ) -> list[dict[str, Any]]:
        """The stream stage of the code in each of ``roots`` — or, given ``window_states``,
        of the first root on a database of each of those sets — run in turn on each filled
        topic (side 1, side 2, side 1, ...): a drift of the box's speed over minutes then
        falls on every side alike instead of on whichever ran last.  One result per side,
        each with its ``server_cpu_us_per_event``.

        Each run is paired with a bare consume of its topic right before it
        (:meth:`bare_consume`): ``paired_ratio`` is the median of the runs' ratios to their
        own pair, so a box that slows down or speeds up over the minutes of a stage moves
        both sides of each ratio instead of only the side measured at that time."""
        for root in roots:  # a baseline's own native module, built before anything is timed
            if root != ROOT:
                native_dir(root)
        sides: list[tuple[Path, WindowStates | None]] = (
            [(roots[0], states) for states in window_states]
            if window_states
            else [(root, None) for root in roots]
        )
        runs: list[dict[str, list[Any]]] = [
            {"rates": [], "cpu": [], "peaks": [], "checks": [], "pairs": []} for _ in sides
        ]
        watched: list[dict[str, list[float]]] = [{} for _ in sides]
        for run, topic in enumerate(self.topics[layout]):
            for side, (root, states) in enumerate(sides):
                pair, _ = self.bare_consume(topic, f"{self.prefix}_pair_{run}_{side}")
                self.watched_cpu_us = watched[side]  # where this run's server CPU goes
                rate, cpu, peak, check = self._stream_run(workers, topic, root, states)
                runs[side]["peaks"].append(peak)
                runs[side]["checks"].append(check)
                if run:  # the first topic warms up
                    runs[side]["rates"].append(rate)
                    runs[side]["cpu"].append(cpu)
                    runs[side]["pairs"].append(pair)
        self.watched_cpu_us = {}
        results = []
        for side, found in enumerate(runs):
            out = summary(found["rates"])
            out["cpu_us_per_event"] = summary(found["cpu"])
            out["committed_events_per_s"] = summary(  # the warm-up run left out
                [c["committed_events_per_s"] for c in found["checks"][1:]]
            )
            out["paired_baseline"] = summary(found["pairs"])
            out["paired_ratio"] = summary(
                [rate / pair for rate, pair in zip(found["rates"], found["pairs"], strict=True)]
            )
            out["peak_rss_mb"] = max(found["peaks"])
            out["exact"] = all(c["exact"] for c in found["checks"])
            out["checks"] = found["checks"]
            out["workers"] = workers
            out["layout"] = layout
            out["window_states"] = str(sides[side][1] or self.base.clickhouse_window_states)
            out["server_cpu_us_per_event"] = {  # medians, the warm-up run left out
                name: statistics.median(values[1:] or values)
                for name, values in watched[side].items()
            }
            out["server_cpu_runs"] = watched[side]
            results.append(out)
        return results

    def _stream_run(
        self, workers: int, topic: str, root: Path, states: WindowStates | None = None
    ) -> tuple[float, float, float, dict[str, Any]]:
        """One run of ``workers`` workers from ``root`` through ``topic`` into a fresh
        database (of window states ``states``, default the environment's): ``(events/s,
        CPU µs per event, peak RSS MB, exactness check)``."""
        settings = self.settings(events_topic=topic, states=states)
        ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
        engine = self.engine()
        _ensure_schema(engine, settings)
        procs = [self._start_worker(settings, i, root) for i in range(workers)]
        try:
            rate, cpu, committed = self._wait_through(settings, procs)
            peak = session_peak_rss_mb({p.pid for p in procs})
        finally:
            for proc in procs:
                stop_process_group(proc)
        check = self._check_exact(engine, settings)
        check["committed_events_per_s"] = committed
        self.last_database = settings.clickhouse_database
        engine.close()
        return rate, cpu, peak, check

    def _start_worker(
        self, settings: Settings, index: int, root: Path = ROOT
    ) -> subprocess.Popen[bytes]:
        """``python -m streams worker`` from the code in ``root`` (another checkout of
        the project runs the same stage with older code, and its own native module:
        ``baseline_native``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
        for name, value in settings.model_dump().items():
            env[f"METERLINE_{name.upper()}"] = str(value)
        env["METERLINE_WORKER_DATA_DIR"] = f"{settings.worker_data_dir}-{index}"
        own = native_dir(root) if root != ROOT else None  # a baseline's own native build
        if own is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(own), env.get("PYTHONPATH")]))
        log = self.work / f"{settings.worker_app_id}-{index}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker"],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def _wait_through(
        self, settings: Settings, procs: list[subprocess.Popen[bytes]]
    ) -> tuple[float, float, float]:
        """``(events/s to the last stored, worker CPU µs per event, events/s to the
        commit)``, from the first stored event (excludes worker start).

        *Stored*: every raw event is in ``usage_events`` and the windows hold exactly the
        generated totals — the metering output is complete.  *Committed*: also zero
        consumer lag.  The worker commits on a timer (``streams.app.COMMIT_INTERVAL_S``;
        1 s before 2026-12-04), so on a run of a few seconds the time to the commit carries
        part of a timer period that depends only on where the timer stood: the stored rate
        is the throughput, the committed rate is reported beside it.  CPU is user + system
        time of every process of the workers' sessions (supervisor and child), up to the
        commit.

        Progress is read from ClickHouse (rows written to ``usage_events``), because a
        Kafka record can carry many events."""
        table = EventsTable(settings.clickhouse_database)
        engine = self.engine()
        deadline = time.monotonic() + 900
        first: tuple[float, int] | None = None
        stored_at: float | None = None
        cpu_at_first = 0.0
        watched_at_first: dict[str, float] = {}
        sessions = {p.pid for p in procs}
        try:
            while time.monotonic() < deadline:
                if any(p.poll() is not None for p in procs):
                    self.keep_work = True
                    raise BenchError(f"a worker exited early; logs in {self.work}")
                rows = int(engine.execute(table.rows_written(settings.namespace).to_sql())[0][0])
                now = time.perf_counter()
                if first is None and rows > 0:
                    first = (now, rows)
                    cpu_at_first = session_cpu_seconds(sessions)
                    watched_at_first = {
                        name: pids_cpu_seconds(pids) for name, pids in self.watch_pids.items()
                    }
                if rows >= self.telemetry.unique:
                    if (
                        stored_at is None
                        and stored_totals(engine, settings) == self.telemetry.truth
                    ):
                        stored_at = now
                    lag = consumer_lag(
                        settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic
                    )
                    if lag.total:
                        time.sleep(0.02 if stored_at is None else 0.05)
                        continue
                    if stored_at is None:  # all committed, so all written, and not exact:
                        stored_at = now  # _check_exact flags the run rather than a timeout
                    if first is None or rows <= first[1]:
                        raise BenchError("the worker stored everything between two polls")
                    events = rows - first[1]
                    cpu = session_cpu_seconds(sessions) - cpu_at_first
                    for name, pids in self.watch_pids.items():
                        watched = pids_cpu_seconds(pids) - watched_at_first[name]
                        self.watched_cpu_us.setdefault(name, []).append(watched / events * 1e6)
                    return (
                        events / (stored_at - first[0]),
                        cpu / events * 1e6,
                        events / (now - first[0]),
                    )
                time.sleep(0.1)
        finally:
            engine.close()
        raise BenchError("the worker did not catch up within 900 s")

    def _check_exact(self, engine: ServerEngine, settings: Settings) -> dict[str, Any]:
        """Stored totals and raw row count against the generated truth."""
        stored = stored_totals(engine, settings)
        raw = engine.execute(
            EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
        )
        truth = self.telemetry.truth
        wrong = {
            f"{key[0]}/{key[1]}": {"stored": str(stored.get(key)), "truth": str(truth.get(key))}
            for key in sorted(set(stored) | set(truth))
            if stored.get(key) != truth.get(key)
        }
        raw_rows = int(raw[0][0]) if raw else 0
        exact = not wrong and raw_rows == self.telemetry.unique
        if not exact:
            self.keep_work = True
            print(
                f"NOT EXACT in {settings.clickhouse_database}: raw rows {raw_rows} of "
                f"{self.telemetry.unique}, {len(wrong)} wrong totals; logs in {self.work}",
                flush=True,
            )
        return {
            "database": settings.clickhouse_database,
            "exact": exact,
            "raw_rows": raw_rows,
            "wrong_totals": dict(list(wrong.items())[:10]),
            "wrong_total_count": len(wrong),
        }

    # -- sink against bare inserts ---------------------------------------------------------
    def sink(self, batch: int = 5000) -> dict[str, Any]:
        meters = load_meters(self.base.meters_file)
        records = records_of(self.telemetry.events)
        batches = [records[i : i + batch] for i in range(0, len(records), batch)]
        sink_rates, bare_rates = [], []
        checks: list[dict[str, Any]] = []
        for run in range(self.repeats + 1):
            settings = self.settings()
            with closing(self.engine()) as engine:  # closed also when a run raises
                _ensure_schema(engine, settings)
                sink = MeteringSink(
                    namespace=settings.namespace,
                    meters=meters,
                    engine_factory=self.engine,
                    database=settings.clickhouse_database,
                )
                store = Store()
                plans = []
                try:
                    start = time.perf_counter()
                    for chunk in batches:
                        plan = sink.plan(chunk, store)
                        sink.write(plan)
                        sink.finish(plan, store)
                        plans.append(plan)
                    sink_elapsed = time.perf_counter() - start
                finally:  # its connections and write thread, also when a run raises
                    sink.close()
                checks.append(self._check_exact(engine, settings))

                bare_db = self.settings()
                _ensure_schema(engine, bare_db)
                events_table = EventsTable(bare_db.clickhouse_database)
                windows = WindowsTable(bare_db.clickhouse_database)
                # The driver's own row insert takes a list of tuples: the native plan's raw
                # rows (columns in a buffer) are read out before the clock starts.
                inserts: list[tuple[str, Sequence[str], list[tuple[Any, ...]]]] = []
                for plan in plans:
                    raw_table, raw_columns, raw_rows = events_table.insert_args(plan.raw_rows)
                    inserts.append((raw_table, raw_columns, [tuple(row) for row in raw_rows]))
                    agg_table, agg_columns, agg_rows = windows.agg_insert_args(plan.aggregated())
                    inserts.append((agg_table, agg_columns, [tuple(row) for row in agg_rows]))
                client = Client(host=self.base.clickhouse_host, port=self.base.clickhouse_tcp_port)
                try:
                    start = time.perf_counter()
                    for table, columns, rows in inserts:
                        if rows:
                            client.execute(
                                f"INSERT INTO {table} ({', '.join(columns)}) VALUES",
                                rows,
                                types_check=False,
                            )
                    bare_elapsed = time.perf_counter() - start
                finally:
                    client.disconnect()
                checks.append(self._check_exact(engine, bare_db))
                if run:
                    sink_rates.append(self.events / sink_elapsed)
                    bare_rates.append(self.events / bare_elapsed)
        return {
            "sink": summary(sink_rates),
            "bare_insert": summary(bare_rates),
            "batch": batch,
            "exact": all(c["exact"] for c in checks),
            "checks": checks,
        }

    # -- queries ---------------------------------------------------------------------------
    def queries(self, database: str, samples: int = 50) -> dict[str, Any]:
        meters = load_meters(self.base.meters_file)
        windows = WindowsTable(database)
        start_s = int(OCTOBER.timestamp())
        end_s = int((OCTOBER + timedelta(days=31)).timestamp())
        statements = [
            (MeterQuery(self.base.namespace, m.slug, m.aggregation, start_s, end_s))
            .on(windows.name)
            .to_sql()
            for m in meters
        ]
        engine = self.engine()

        def timed(sql: str) -> float:
            start = time.perf_counter()
            engine.execute(sql)
            return (time.perf_counter() - start) * 1000

        for sql in [*statements, "SELECT 1"]:
            timed(sql)  # warm-up
        meter_ms = [timed(statements[i % len(statements)]) for i in range(samples)]
        ping_ms = [timed("SELECT 1") for _ in range(samples)]
        engine.close()
        return {
            "samples": samples,
            "meter_query_ms": {"p50": percentile(meter_ms, 50), "p95": percentile(meter_ms, 95)},
            "select_1_ms": {"p50": percentile(ping_ms, 50), "p95": percentile(ping_ms, 95)},
        }


def records_of(events: Sequence[UsageEvent]) -> list[Record]:
    """The events as Kafka records of one partition, one event each, ingested now."""
    now_ms = int(time.time() * 1000)
    return [
        Record(
            topic="bench",
            partition=0,
            offset=i,
            timestamp_ms=now_ms,
            key=event_key(e),
            value=encode_event(e),
        )
        for i, e in enumerate(events)
    ]


def drop_prefixed(bootstrap: str, engine: ServerEngine, prefix: str) -> tuple[int, int]:
    """Delete every topic and ClickHouse database named ``prefix…``; how many of each."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(30)
    dbs = [
        str(r[0])
        for r in engine.execute("SELECT name FROM system.databases")
        if str(r[0]).startswith(prefix)
    ]
    on_cluster = f" ON CLUSTER {engine.cluster}" if engine.cluster else ""
    for db in dbs:
        engine.execute(f"DROP DATABASE IF EXISTS {db}{on_cluster}")
    return len(topics), len(dbs)


def stored_totals(engine: ServerEngine, settings: Settings) -> dict[tuple[str, str], Decimal]:
    meters = load_meters(settings.meters_file)
    return totals_of(engine, settings.clickhouse_database, settings.namespace, meters)


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """A temporary git worktree of ``ref``, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="meterline-ref-")) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
            check=True,
            capture_output=True,
        )


@contextmanager
def isolated_bench(**kwargs: Any) -> Iterator[Bench]:
    bench = Bench(**kwargs)
    try:
        yield bench
    finally:
        print(f"cleanup: {bench.cleanup()}", flush=True)


def stage_bench(events_per_subject: int, repeats: int, live: bool) -> Any:
    """The stream-stage benches' setup (``stream_stage.py``, ``compression.py``): the
    generated telemetry over 31 days of October (a backfill), or with ``live`` over the
    minute before now (live traffic, events sharing windows); seed 7, 4 partitions."""
    shape: dict[str, Any] = {}
    if live:
        now = datetime.now(UTC).replace(microsecond=0)
        shape = {"start": now - timedelta(minutes=1), "span": timedelta(minutes=1)}
    return isolated_bench(
        events_per_subject=events_per_subject, seed=7, repeats=repeats, partitions=4, **shape
    )


def timed_stage(name: str, action: Callable[[], Any]) -> Any:
    print(f"{name} …", flush=True)
    start = time.perf_counter()
    result = action()
    print(f"{name}: done in {time.perf_counter() - start:.0f}s", flush=True)
    return result


def _ensure_schema(engine: ServerEngine, settings: Settings) -> None:
    """A fresh database as the worker would create it: window states chosen for the
    bench's meters (``clickhouse_window_states``)."""
    ensure_schema(
        engine,
        settings.clickhouse_database,
        settings.clickhouse_window_states,
        load_meters(settings.meters_file).meters,
    )
