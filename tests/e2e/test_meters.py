"""Issue-level acceptance for metering, on the real Kafka, Faust worker and ClickHouse:
every aggregation kind exact through duplicates, late events, malformed events and a
SIGKILL; reconcile passing; every malformed event on the dead-letter topic; a rebalance
between two workers, and a window state added while a worker writes, that neither lose
nor double-count."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer

from ingest import UsageProducer
from schemas.events import UsageEvent
from schemas.metering.definitions import Aggregation, load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import require_current
from schemas.storage.engine import ServerEngine
from schemas.storage.events_table import EventsTable
from schemas.storage.rollups import WindowStore
from schemas.storage.state_migration import pause_ddl, paused
from schemas.storage.window_states import ADDITIVE_STATES, FULL_STATES, states_in
from schemas.storage.windows_table import FeedRow, WindowsTable
from streams.progress import describe_group
from tests.conftest import ROOT, WorkerProcess, run_module, settings_env, wait_until
from tests.e2e.pipeline_kit import prepare, stored_totals, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

METERS_YAML = """
meters:
  - {slug: m_sum, event_type: job, aggregation: SUM, value_property: $.v}
  - {slug: m_count, event_type: job, aggregation: COUNT}
  - {slug: m_unique, event_type: job, aggregation: UNIQUE_COUNT, value_property: $.user}
  - {slug: m_max, event_type: job, aggregation: MAX, value_property: $.v}
  - {slug: m_min, event_type: job, aggregation: MIN, value_property: $.v}
  - {slug: m_avg, event_type: job, aggregation: AVG, value_property: $.v}
  - {slug: m_latest, event_type: job, aggregation: LATEST, value_property: $.v}
"""


def expected(events: list[UsageEvent]) -> dict[tuple[str, str], Decimal]:
    """Each kind computed directly from the unique events (independent of the pipeline)."""
    out: dict[tuple[str, str], Decimal] = {}
    for subject in sorted({e.subject for e in events}):
        mine = [e for e in events if e.subject == subject]
        values = [Decimal(str(e.data["v"])) for e in mine if e.data]
        latest = max(mine, key=lambda e: e.time_ms)  # times are distinct per subject
        out[(subject, "m_sum")] = sum(values, Decimal(0))
        out[(subject, "m_count")] = Decimal(len(mine))
        out[(subject, "m_unique")] = Decimal(len({e.data["user"] for e in mine if e.data}))
        out[(subject, "m_max")] = max(values)
        out[(subject, "m_min")] = min(values)
        out[(subject, "m_avg")] = sum(values, Decimal(0)) / len(values)
        out[(subject, "m_latest")] = Decimal(str(latest.data["v"])) if latest.data else Decimal(0)
    return out


def make_events(n: int, seed: int, late_share: float) -> list[UsageEvent]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for i in range(n):
        subject = f"cust-{i % 7}"
        late = rng.random() < late_share
        # on time: within the last minute; late: days ago, far beyond any grace
        at = now - timedelta(days=rng.randint(2, 20)) if late else now - timedelta(seconds=30)
        at -= timedelta(milliseconds=i)  # distinct times, so LATEST has one answer
        value = Decimal(rng.randrange(-5000, 10**6)) / Decimal(1000)
        events.append(
            UsageEvent.create(
                type="job",
                subject=subject,
                source="e2e",
                id=f"job-{seed}-{i}",
                time=at,
                data={"v": str(value), "user": f"u{rng.randrange(40)}"},
            )
        )
    return events


def _bad(event_id: str, **fields: object) -> bytes:
    base: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "e2e",
        "type": "job",
        "subject": "x",
        "time": "2026-11-01T00:00:00Z",
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


MALFORMED = {
    "schema_invalid": _bad("bad-1", subject=None),
    "value_missing": _bad("bad-2", data={"user": "u"}),
    "value_not_numeric": _bad("bad-3", data={"v": "lots", "user": "u"}),
    "value_out_of_range": _bad("bad-4", data={"v": "0.0000000001", "user": "u"}),
    "unknown_event_type": _bad("bad-5", type="nobody.meters.this", data={}),
}


def dead_letters(settings: Settings, want: int) -> list[tuple[str, bytes, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"dlq-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.dead_letter_topic])
    found: list[tuple[str, bytes, str]] = []
    deadline = time.monotonic() + 60
    while len(found) < want and time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        headers = dict(msg.headers() or [])
        found.append(
            (
                headers["meterline.reason"].decode(),
                msg.value(),
                headers["meterline.source"].decode(),
            )
        )
    consumer.close()
    return found


def members_with_partitions(settings: Settings) -> int:
    """Members of the worker group holding at least one partition."""
    description = describe_group(settings.kafka_bootstrap, settings.worker_app_id, timeout=15)
    return sum(1 for m in description.members if m.assignment.topic_partitions)


def streams_cli(
    settings: Settings, command: str, days_back: int, days_ahead: int, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``python -m streams COMMAND --from <today - back> --to <today + ahead> ...``."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            command,
            "--from",
            (day - timedelta(days=days_back)).isoformat(),
            "--to",
            (day + timedelta(days=days_ahead)).isoformat(),
            *extra,
        ],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


def with_meters(isolated: Settings, tmp_path: Path, **extra: object) -> Settings:
    meters_file = tmp_path / "meters.yaml"
    meters_file.write_text(METERS_YAML)
    return isolated.model_copy(update={"meters_file": str(meters_file), **extra})


def test_all_kinds_exact_through_duplicates_late_malformed_and_sigkill(
    isolated: Settings, workers: WorkerProcess, tmp_path: Path
) -> None:
    settings = with_meters(
        isolated,
        tmp_path,
        unknown_event_type_is_error=True,
        worker_batch_max=200,
        worker_chunk_events=200,
        worker_batch_seconds=0.05,
        late_grace_seconds=60,
    )
    workers.settings = settings
    engine = prepare(settings)
    events_table = EventsTable(settings.clickhouse_database)
    events = make_events(6000, seed=3, late_share=0.2)
    rng = random.Random(9)
    duplicates = [e for e in events if rng.random() < 0.1]
    stream = events + duplicates
    rng.shuffle(stream)

    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(stream)
    raw = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for body in MALFORMED.values():
        raw.produce(settings.events_topic, key=b"x", value=body)
    assert raw.flush(30) == 0

    first = workers.start()
    wait_until(
        lambda: engine.execute(events_table.rows_written(settings.namespace).to_sql())[0][0] > 500,
        90,
        "part of the stream to be stored",
        every=0.05,
    )
    workers.kill(first)
    workers.start()
    wait_caught_up(settings, workers, timeout=180)

    assert stored_totals(engine, settings) == expected(events)
    late_marked = engine.execute(events_table.late(settings.namespace).to_sql())[0][0]
    assert late_marked == sum(1 for e in events if (datetime.now(UTC) - e.time) > timedelta(days=1))

    letters = dead_letters(settings, len(MALFORMED))
    # at least once: a dead letter re-read after the SIGKILL may be sent again
    assert {(reason, body) for reason, body, _ in letters} == set(MALFORMED.items())
    assert all(src.startswith(f"{settings.events_topic}/") for _, _, src in letters)
    # what an operator reads back (`meterline dead-letters`): each event verbatim, with the
    # validation message that names its field
    listed = run_module(settings, "streams", "dead-letters", "--since", "1d")
    assert listed.returncode == 0, listed.stderr
    entries = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert {(e["reason"], e["event"].encode()) for e in entries} == set(MALFORMED.items())
    assert all(e["detail"] and e["source"].startswith(settings.events_topic) for e in entries)
    # the same meters refuse them all again: a resend would send nothing, and says why
    judged = run_module(
        settings, "streams", "dead-letters", "--dry-run", "--meters", settings.meters_file
    )
    assert judged.returncode == 1, judged.stderr
    verdicts = [orjson.loads(line) for line in judged.stdout.splitlines()]
    assert len(verdicts) == len(entries)
    assert {(v["refused_now"], v["resent"]) for v in verdicts} == {
        (reason, False) for reason in MALFORMED
    }

    result = streams_cli(settings, "reconcile", 30, 2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconcile OK: 49 (meter, subject) pairs checked, 0 differences" in result.stdout
    engine.close()


def test_a_dead_letter_resent_once_its_meter_exists_is_metered_once(
    isolated: Settings, workers: WorkerProcess, tmp_path: Path
) -> None:
    """Events of a type no meter reads are dead-lettered (unknown types are errors here);
    the operator adds the meter, restarts the worker with it and resends them twice: they
    are metered once, beside the traffic that was metered all along."""
    settings = with_meters(
        isolated, tmp_path, unknown_event_type_is_error=True, worker_batch_seconds=0.05
    )
    workers.settings = settings
    engine = prepare(settings)
    first = workers.start()
    at = datetime.now(UTC) - timedelta(seconds=30)
    gpu = [
        UsageEvent.create(
            type="gpu.job",
            subject=f"cust-{i % 2}",
            source="e2e",
            id=f"gpu-{i}",
            time=at - timedelta(milliseconds=i),
            data={"v": f"{i}.25"},
        )
        for i in range(5)
    ]
    jobs = make_events(60, seed=5, late_share=0)
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many([*gpu, *jobs])
    assert [reason for reason, _, _ in dead_letters(settings, len(gpu))] == [
        "unknown_event_type"
    ] * len(gpu)
    wait_caught_up(settings, workers)  # committed: the restart below replays nothing

    fixed = tmp_path / "meters-fixed.yaml"
    fixed.write_text(
        METERS_YAML
        + "  - {slug: gpu_seconds, event_type: gpu.job, aggregation: SUM, value_property: $.v}\n"
    )
    settings = settings.model_copy(update={"meters_file": str(fixed)})
    workers.kill(first, signal.SIGTERM)  # the operator's restart with the new meter
    workers.settings = settings
    workers.start()
    for _ in range(2):  # the second resend sends duplicates, which the worker drops
        done = run_module(settings, "streams", "dead-letters", "--resend")
        assert done.returncode == 0, done.stderr
        assert f"resent {len(gpu)} dead letter(s)" in done.stderr
    wait_caught_up(settings, workers, timeout=180)

    gpu_totals = {
        (subject, "gpu_seconds"): sum(
            (Decimal(str(e.data["v"])) for e in gpu if e.subject == subject and e.data),
            Decimal(0),
        )
        for subject in ("cust-0", "cust-1")
    }
    assert stored_totals(engine, settings) == expected(jobs) | gpu_totals
    raw = engine.execute(
        EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    )
    assert int(raw[0][0]) == len(jobs) + len(gpu)


def test_reconcile_fails_on_a_tampered_window(
    isolated: Settings, workers: WorkerProcess, tmp_path: Path
) -> None:
    settings = with_meters(isolated, tmp_path)
    workers.settings = settings
    engine = prepare(settings)
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(make_events(50, seed=4, late_share=0))
    workers.start()
    wait_caught_up(settings, workers)
    # a contribution that no raw event backs: reconcile must notice
    now_s = int(time.time()) // 60 * 60
    tampered = FeedRow(
        settings.namespace, "m_sum", "cust-1", "{}", now_s, now_s, Decimal(1), "", 0, 0, 10**8
    )
    engine.insert(*WindowsTable(settings.clickhouse_database).insert_args([tampered]))
    result = streams_cli(settings, "reconcile", 0, 2, "--meter", "m_sum")
    assert result.returncode == 1
    assert "DIFF meter=m_sum subject=cust-1" in result.stdout
    engine.close()


def test_two_workers_rebalance_without_loss_or_double_count(
    isolated: Settings, workers: WorkerProcess, tmp_path: Path
) -> None:
    settings = with_meters(
        isolated, tmp_path, worker_batch_max=200, worker_chunk_events=200, worker_batch_seconds=0.05
    )
    workers.settings = settings
    engine = prepare(settings)
    events_table = EventsTable(settings.clickhouse_database)
    events = make_events(4000, seed=8, late_share=0.5)
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(events[:2000])
    a = workers.start()
    wait_until(
        lambda: engine.execute(events_table.rows_written(settings.namespace).to_sql())[0][0] > 200,
        90,
        "worker A to store part of the stream",
        every=0.05,
    )
    workers.start()  # worker B joins: partitions move between them mid-stream
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(events[2000:])
        producer.send_many(events[:300])  # retries of events A may already have metered
    wait_until(
        lambda: members_with_partitions(settings) == 2,
        120,
        "worker B to take partitions over from A",
    )
    workers.kill(a)  # A dies: B takes every partition, restoring A's dedupe state
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(events[1000:1500])  # more retries, now all routed to B
    wait_caught_up(settings, workers, timeout=180)
    assert stored_totals(engine, settings) == expected(events)
    meters = load_meters(settings.meters_file)
    assert {m.aggregation for m in meters} == set(Aggregation)
    stored = engine.execute(events_table.count(settings.namespace).to_sql())
    assert stored == [(len(events),)]
    engine.close()


def sum_meter_only(
    isolated: Settings, workers: WorkerProcess, tmp_path: Path
) -> tuple[Settings, ServerEngine]:
    """Settings whose catalogue is one SUM meter (the workers' too), the pipeline ready."""
    early = tmp_path / "early.yaml"
    early.write_text(
        "meters:\n  - {slug: m_sum, event_type: job, aggregation: SUM, value_property: $.v}\n"
    )
    settings = isolated.model_copy(update={"meters_file": str(early)})
    workers.settings = settings
    return settings, prepare(settings)


def test_backfill_meters_history_for_a_meter_defined_later(
    isolated: Settings, workers: WorkerProcess, tmp_path: Path
) -> None:
    settings, engine = sum_meter_only(isolated, workers, tmp_path)
    events = make_events(400, seed=12, late_share=0.5)
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(events)
    worker = workers.start()
    wait_caught_up(settings, workers)

    # m_max is defined after its events arrived: backfill refuses while the worker runs…
    later = with_meters(isolated, tmp_path)

    def run() -> subprocess.CompletedProcess[str]:
        return streams_cli(later, "backfill", 30, 1, "--meter", "m_max")

    refused = run()
    assert refused.returncode == 2
    assert "is running; stop it first" in refused.stderr

    # …and fills exactly the history once the worker is stopped; a rerun writes nothing
    workers.kill(worker, signal.SIGTERM)
    done = wait_until(lambda: (r := run()).returncode == 0 and r, 60, "backfill to run")
    assert "0 already filled" in done.stdout
    again = run()
    assert again.returncode == 0
    assert " 0 events in 0 (partition, day) chunks written" in again.stdout
    want = {k: v for k, v in expected(events).items() if k[1] in {"m_sum", "m_max"}}
    got = {k: v for k, v in stored_totals(engine, later).items() if k[1] in {"m_sum", "m_max"}}
    assert got == want
    engine.close()


def test_a_window_state_added_while_a_worker_meters_loses_and_doubles_nothing(
    isolated: Settings, workers: WorkerProcess, tmp_path: Path
) -> None:
    settings, engine = sum_meter_only(isolated, workers, tmp_path)
    database = settings.clickhouse_database
    assert states_in(engine, database) == ADDITIVE_STATES  # what a SUM meter needs
    before, during = make_events(300, seed=31, late_share=0.3), make_events(300, 32, 0.3)
    workers.start()
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(before)
    wait_caught_up(settings, workers)

    # writes paused as a state change pauses them, held while events keep arriving: the
    # worker's window writes fail and are retried
    store = WindowStore(database)
    for statement in pause_ddl(database, store.feeds()):
        engine.execute(statement.to_sql())
    with UsageProducer(settings.kafka_bootstrap, settings.events_topic) as producer:
        producer.send_many(during)
    wait_until(
        lambda: "ClickHouse write failed" in workers.logs(), 60, "a write to fail on the pause"
    )
    # a start that sees every aggregation finishes the change (views rebuilt, states added)
    later = with_meters(isolated, tmp_path)
    require_current(engine, database, meters=load_meters(later.meters_file).meters)
    assert not paused(engine, database)
    assert states_in(engine, database) == FULL_STATES
    wait_caught_up(settings, workers)

    want = {k: v for k, v in expected(before + during).items() if k[1] == "m_sum"}
    assert stored_totals(engine, settings) == want
    raw = engine.execute(EventsTable(database).count(settings.namespace).to_sql())
    assert raw == [(len(before) + len(during),)]
    engine.close()
