"""The metering pipeline on the whole cluster topology (``make up TOPOLOGY=cluster``):
three Kafka brokers and ClickHouse as 2 shards × 2 replicas, the tables laid out by
``schemas.storage.cluster`` and written shard by shard by the real worker.

* a ClickHouse replica SIGKILLed while events are sent and metered: every accepted event
  is counted once, on every replica of its shard, and only on its shard;
* two and then three workers share the events topic's partitions mid-stream, exactly;
* a write stored on one replica of a shard only is not written again from the other
  replica's progress: the sink waits until every replica holds it.

The same exactness, SIGKILL and billing-run tests as on one server
(``tests/e2e/test_pipeline.py``) run against the cluster in ``make test``
(``make test-cluster``).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import stack_cluster
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY

from api.services import Reader
from ingest.telemetry import Telemetry, generate
from schemas.errors import InvalidInput, InvariantViolated
from schemas.events import UsageEvent
from schemas.metering.definitions import Aggregation, MeterDefinition, MeterSet, load_meters
from schemas.settings import Settings
from schemas.storage.bootstrap import require_current
from schemas.storage.cluster import ClusterLayout, local_sql, shard_database, shard_of
from schemas.storage.engine import ServerEngine, ShardReplicas, shard_engines
from schemas.storage.events_table import EventsTable, RawEventRow
from schemas.storage.usage import UsageRead
from schemas.storage.window_states import ADDITIVE_STATES, WindowStates, states_in
from schemas.wire import encode_event, event_key
from streams.cli import run_backfill, run_reconcile
from streams.progress import consumer_lag
from streams.reconcile import stored_totals as reconcile_totals
from streams.retention_cli import run_retention
from streams.shard import ReplicasDisagree, Shard
from streams.sink import MeteringSink, Record
from tests.conftest import WorkerProcess, wait_until
from tests.deploy.conftest import Cluster
from tests.e2e.pipeline_kit import (
    OCTOBER,
    SUBJECTS,
    prepare,
    send,
    stored_totals,
    wait_caught_up,
    wait_some_stored,
)
from tests.e2e.test_meters import members_with_partitions
from tests.streams.sink_kit import Store

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.cluster]


@pytest.fixture
def on_cluster(cluster: Cluster, isolated: Settings, tmp_path: Path) -> Iterator[Settings]:
    """``isolated`` on the cluster's brokers and ClickHouse servers; the database is
    dropped on every server afterwards."""
    tcp, http, _ = stack_cluster.ClusterSettings.from_env().clickhouse_ports(1)
    settings = isolated.model_copy(
        update={
            "kafka_brokers": cluster.bootstrap,
            "topic_replication_factor": 3,
            "topic_min_insync_replicas": 2,
            "clickhouse_tcp_port": tcp,
            "clickhouse_http_port": http,
            "clickhouse_cluster": cluster.name,
            "worker_batch_max": 250,
            "worker_chunk_events": 250,
            "worker_batch_seconds": 0.05,
        }
    )
    yield settings
    engine = ServerEngine.of(settings)
    for statement in ClusterLayout(cluster.name).drop(settings.clickhouse_database):
        engine.execute(statement.to_sql())
    engine.close()


def replica_counts(cluster: Cluster, settings: Settings) -> dict[tuple[int, int], dict[str, int]]:
    """Per (shard, replica): distinct stored events per subject in its local table."""
    shape = stack_cluster.ClusterSettings.from_env()
    local = EventsTable(shard_database(settings.clickhouse_database))
    counts = {}
    for k, shard, replica in shape.clickhouse_servers():
        engine = ServerEngine(settings.clickhouse_host, shape.clickhouse_ports(k)[0])
        rows = engine.execute(
            f"SELECT subject, count() FROM {local.name} FINAL"
            f" WHERE namespace = '{settings.namespace}' GROUP BY subject"
        )
        engine.close()
        counts[(shard, replica)] = {str(s): int(n) for s, n in rows}
    return counts


def assert_placed_and_replicated(
    cluster: Cluster, settings: Settings, telemetry_unique: dict[str, int]
) -> None:
    """Every subject's events on both replicas of its own shard and nowhere else."""

    def settled() -> bool:
        counts = replica_counts(cluster, settings)
        own = {
            shard: {
                s: n
                for s, n in telemetry_unique.items()
                if shard_of(s, cluster.shards) == shard - 1
            }
            for shard in range(1, cluster.shards + 1)
        }
        return all(counts[(shard, replica)] == own[shard] for shard, replica in counts)

    wait_until(settled, 60, "every replica to hold exactly its shard's events", every=0.5)


def diagnosis(
    cluster: Cluster,
    settings: Settings,
    totals: dict[tuple[str, str], Decimal],
    truth: dict[tuple[str, str], Decimal],
    workers: WorkerProcess,
) -> str:
    """Where wrong totals come from: each server's own minute table (its shard's
    subjects) against the truth, its window parts and how its minute parts arrived
    (``system.part_log``, on in the cluster's config), and the worker's warnings."""
    shape = stack_cluster.ClusterSettings.from_env()
    meters = load_meters(settings.meters_file)
    local = shard_database(settings.clickhouse_database)
    lines = [f"read through the cluster, off by: {_off(totals, truth)}"]
    for k, shard, replica in shape.clickhouse_servers():
        engine = ServerEngine(settings.clickhouse_host, shape.clickhouse_ports(k)[0])
        own = reconcile_totals(engine, local, settings.namespace, meters)
        parts = engine.execute(
            f"SELECT table, count(), sum(rows) FROM system.parts WHERE database = '{local}'"
            " AND active AND table LIKE 'meter_windows%' GROUP BY table ORDER BY table"
        )
        engine.execute("SYSTEM FLUSH LOGS")
        arrived = engine.execute(  # how each minute-table part reached this server
            "SELECT toString(event_time), toString(event_type), part_name, rows"
            f" FROM system.part_log WHERE database = '{local}' AND table = 'meter_windows'"
            " AND event_type IN ('NEW_PART', 'DOWNLOAD_PART') ORDER BY event_time LIMIT 60"
        )
        engine.close()
        mine = {
            key: value
            for key, value in truth.items()
            if shard_of(key[0], cluster.shards) == shard - 1
        }
        lines.append(f"s{shard}r{replica}: off by {_off(own, mine)}; parts {parts}")
        lines.append(f"  minute parts written (NEW_PART) or fetched (DOWNLOAD_PART): {arrived}")
    warnings = [line for line in workers.logs().splitlines() if "WARNING" in line]
    return "\n".join([*lines, "worker warnings:", *warnings[-20:]])


def _off(
    got: dict[tuple[str, str], Decimal], want: dict[tuple[str, str], Decimal]
) -> dict[tuple[str, str], Decimal]:
    keys = set(got) | set(want)
    return {
        k: got.get(k, Decimal(0)) - want.get(k, Decimal(0))
        for k in sorted(keys)
        if got.get(k) != want.get(k)
    }


def unique_per_subject(*telemetries: Telemetry) -> dict[str, int]:
    seen: dict[tuple[str, str], str] = {}
    for telemetry in telemetries:
        for event in telemetry.events:
            seen[(event.source, event.id)] = event.subject
    counts: dict[str, int] = {}
    for subject in seen.values():
        counts[subject] = counts.get(subject, 0) + 1
    return counts


def merged_truth(*telemetries: Telemetry) -> dict[tuple[str, str], Decimal]:
    truth: dict[tuple[str, str], Decimal] = {}
    for telemetry in telemetries:
        for key, value in telemetry.truth.items():
            truth[key] = truth.get(key, Decimal(0)) + value
    return truth


@pytest.mark.parametrize("replica", [1, 2], ids=["written-through", "other"])
def test_a_clickhouse_replica_killed_mid_stream_loses_no_event_and_counts_none_twice(
    cluster: Cluster,
    on_cluster: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    replica: int,
) -> None:
    settings = on_cluster
    engine = prepare(settings)
    first = generate(SUBJECTS, OCTOBER, timedelta(days=31), 1500, seed=71, id_prefix="a-")
    second = generate(SUBJECTS, OCTOBER, timedelta(days=31), 1500, seed=72, id_prefix="b-")
    (tmp_path / "logs").mkdir()
    workers = WorkerProcess(settings, tmp_path / "logs")
    # replica 1 of shard 1: the one the worker writes the shard through first (and the
    # server the readers ask); replica 2: the one that only receives the shard's copies
    victim = cluster.clickhouse[(1, replica)]
    try:
        send(settings, first)
        workers.start()
        wait_some_stored(settings, engine)
        killed = time.monotonic()
        cluster.kill(victim)
        send(settings, second)
        time.sleep(15)  # the shard has one replica meanwhile
        lag = consumer_lag(settings.kafka_bootstrap, settings.worker_app_id, settings.events_topic)
        cluster.up()
        back = time.monotonic()
        wait_caught_up(settings, workers, timeout=300)
        caught_up = time.monotonic()
    finally:
        cluster.up()  # the killed replica back, whatever happened
        workers.stop_all()

    truth = merged_truth(first, second)
    totals = stored_totals(engine, settings)
    assert totals == truth, diagnosis(cluster, settings, totals, truth, workers)
    raw = engine.execute(
        EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    )
    assert raw == [(first.unique + second.unique,)]
    assert_placed_and_replicated(cluster, settings, unique_per_subject(first, second))
    # a shard's writes wait for all its replicas: records stayed uncommitted meanwhile
    assert lag.total > 0
    with capsys.disabled():
        print(
            f"\nreplica s1r{replica} kill: {first.unique + second.unique} events exact; down "
            f"{back - killed:.1f} s ({lag.total} records waiting), caught up "
            f"{caught_up - back:.1f} s after it was back"
        )
    engine.close()


def test_two_then_three_workers_share_the_partitions_exactly(
    cluster: Cluster, on_cluster: Settings, tmp_path: Path
) -> None:
    settings = on_cluster.model_copy(update={"events_partitions": 6})
    engine = prepare(settings)
    parts = [
        generate(SUBJECTS, OCTOBER, timedelta(days=31), 1000, seed=80 + i, id_prefix=f"{i}-")
        for i in range(3)
    ]
    (tmp_path / "logs").mkdir()
    workers = WorkerProcess(settings, tmp_path / "logs")
    try:
        send(settings, parts[0])
        workers.start()
        for members, part in ((2, parts[1]), (3, parts[2])):
            workers.start()  # joins mid-stream: partitions move between the workers
            send(settings, part)
            wait_until(
                lambda members=members: members_with_partitions(settings) == members,  # type: ignore[misc]
                180,
                f"{members} workers to hold partitions",
            )
        send(settings, Telemetry(events=parts[0].events[:300]))  # retries of metered events
        wait_caught_up(settings, workers, timeout=300)
    finally:
        workers.stop_all()
    assert stored_totals(engine, settings) == merged_truth(*parts)
    raw = engine.execute(
        EventsTable(settings.clickhouse_database).count(settings.namespace).to_sql()
    )
    assert raw == [(sum(p.unique for p in parts),)]
    assert_placed_and_replicated(cluster, settings, unique_per_subject(*parts))
    engine.close()


def sink_inputs(
    settings: Settings, per_subject: int, seed: int
) -> tuple[ServerEngine, MeterSet, Telemetry, list[Record], list[ShardReplicas]]:
    """For tests that drive the sink themselves: the schema prepared (its engine), the
    meters, generated telemetry as one partition's records from offset 0, and the
    cluster's shards."""
    engine = prepare(settings)
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), per_subject, seed=seed)
    now_ms = int(time.time() * 1000)
    records = [
        Record("events", 0, i, now_ms, event_key(e), encode_event(e))
        for i, e in enumerate(telemetry.events)
    ]
    shards = shard_engines(settings)
    assert shards is not None
    return engine, load_meters(settings.meters_file), telemetry, records, shards


def test_a_one_customer_read_is_answered_by_its_shard_alone(
    cluster: Cluster, on_cluster: Settings
) -> None:
    """The API's reader sends a read about one customer's subjects to the shard that
    holds them, on its own tables; the answer equals the read through the ``Distributed``
    tables and the generated truth, and the other shard holds none of those rows."""
    settings = on_cluster
    engine, meters, telemetry, records, factories = sink_inputs(settings, 200, seed=91)
    assert len(factories) == cluster.shards
    sink = MeteringSink(
        namespace=settings.namespace,
        meters=meters,
        engine_factory=factories[0],
        database=shard_database(settings.clickhouse_database),
        shards=factories,
    )
    plan = sink.plan(records, Store())
    sink.write(plan)
    sink.close()

    spanning_reader = Reader(lambda: ServerEngine.of(settings))
    # routed reads never touch the reader's own server: here it does not even exist
    reader = Reader(
        lambda: ServerEngine(settings.clickhouse_host, 1),
        shards=lambda: shard_engines(settings),
        database=settings.clickhouse_database,
    )
    assert reader.shard_of(SUBJECTS) is None  # the five customers live on both shards
    start, end = OCTOBER, OCTOBER + timedelta(days=31)
    for subject in SUBJECTS:
        read = UsageRead(
            settings.namespace,
            settings.clickhouse_database,
            meters,
            tuple(sorted(meters.slugs())),
            int(start.timestamp()),
            int(end.timestamp()),
            subjects=(subject,),
        )
        own = shard_of(subject, cluster.shards)
        assert reader.shard_of([subject]) == own
        routed = read.collect([reader.run(sql, [subject]) for sql in read.statements()])
        spanning = read.collect([spanning_reader.run(sql) for sql in read.statements()])
        truth = {m: v for (s, m), v in telemetry.truth.items() if s == subject}
        assert routed == spanning == {subject: truth}
        other = factories[1 - own]()
        for sql in read.statements():
            assert other.execute(local_sql(sql, settings.clickhouse_database)) == []
        other.close()
    reader.close()
    spanning_reader.close()
    engine.close()


def test_a_cluster_database_of_the_additive_window_states_meters_exactly(
    cluster: Cluster, on_cluster: Settings
) -> None:
    """``METERLINE_CLICKHOUSE_WINDOW_STATES=additive`` on the cluster: every server's
    shard-local windows tables and the ``Distributed`` ones keep the sum and count states
    only, the sink's writes through them store the generated totals exactly, and a meter
    the set cannot answer is refused at start."""
    settings = on_cluster.model_copy(update={"clickhouse_window_states": WindowStates.ADDITIVE})
    engine, meters, telemetry, records, factories = sink_inputs(settings, 100, seed=95)
    database = settings.clickhouse_database
    shape = stack_cluster.ClusterSettings.from_env()
    for k, _shard, _replica in shape.clickhouse_servers():
        server = ServerEngine(settings.clickhouse_host, shape.clickhouse_ports(k)[0])
        assert states_in(server, shard_database(database)) == ADDITIVE_STATES
        assert states_in(server, database) == ADDITIVE_STATES
        server.close()
    sink = MeteringSink(
        namespace=settings.namespace,
        meters=meters,
        engine_factory=factories[0],
        database=shard_database(database),
        shards=factories,
    )
    plan = sink.plan(records, Store())
    sink.write(plan)
    sink.close()
    assert reconcile_totals(engine, database, settings.namespace, meters) == telemetry.truth
    require_current(engine, database, meters=meters.meters)  # SUM and COUNT: answered
    peak = MeterDefinition(
        slug="peak",
        event_type="llm.completion",
        aggregation=Aggregation.MAX,
        value_property="$.tokens",
    )
    with pytest.raises(InvalidInput) as refused:
        require_current(engine, database, meters=[*meters.meters, peak])
    assert [p.path for p in refused.value.problems] == ["peak.aggregation"]
    engine.close()


def test_a_write_on_one_replica_only_is_not_written_again_from_the_others_progress(
    cluster: Cluster, on_cluster: Settings
) -> None:
    """A chunk's windows stored on one replica of a shard and not yet on the other — in
    production a write whose outcome the worker never learnt (the server died mid-insert,
    the quorum wait timed out); here a write without quorum while the other replica's
    fetches are stopped.  The lagging replica's progress alone says nothing is stored; a
    sink that trusted it would write the chunk again — re-read after a restart it is a
    longer chunk, a different block ClickHouse does not deduplicate — and the shard would
    count it twice once the replicas caught up.  The shard's progress read refuses while
    the replicas disagree, so the sink waits, and after the fetches resume it writes only
    what is missing."""
    settings = on_cluster
    engine, meters, telemetry, records, shards = sink_inputs(settings, 100, seed=93)
    shard = shards[0]
    lagging, holding = shard.replicas
    local = shard_database(settings.clickhouse_database)
    last = len(records) - 1
    stopped = ServerEngine(lagging.host, lagging.port)

    def sink_over(factory: ShardReplicas) -> MeteringSink:
        return MeteringSink(
            namespace=settings.namespace,
            meters=meters,
            engine_factory=factory,
            database=local,
            shards=[factory],  # every row to shard 1: this test is about its replicas
            retry_seconds=90,
        )

    stopped.execute("SYSTEM STOP FETCHES")
    try:
        # the chunk stored on the holding replica only
        first = sink_over(ShardReplicas([holding], cluster.name, insert_quorum=0))
        first.write(first.plan(records[:60], Store()))
        first.close()

        alone = Shard(ShardReplicas([lagging], cluster.name), local)
        assert alone.load_progress({0}, settings.namespace) == {
            label: {0: -1} for label in alone.progress
        }  # what a read of the lagging replica alone would trust
        alone.close()
        with pytest.raises(ReplicasDisagree, match=r"partitions \[0\].*'minute': \{0: 59\}"):
            Shard(shard, local).load_progress({0}, settings.namespace)

        # the chunk again, longer, as a restarted worker reads it: it waits for the replicas
        retries = _retries()
        resume = threading.Timer(3.0, stopped.execute, ("SYSTEM START FETCHES",))
        resume.start()
        again = sink_over(shard)
        again.write(again.plan(records, Store()))
        again.close()
        resume.join()
        assert _retries() > retries  # it waited instead of writing
    finally:
        stopped.close()
        resumed = ServerEngine(lagging.host, lagging.port)
        resumed.execute("SYSTEM START FETCHES")  # whatever happened
        resumed.close()

    agreed = Shard(shard, local)
    wait_until(
        lambda: _agrees(agreed, settings.namespace), 60, "the replicas to hold the same windows"
    )
    assert agreed.load_progress({0}, settings.namespace) == {
        label: {0: last} for label in agreed.progress
    }
    agreed.close()
    assert stored_totals(engine, settings) == telemetry.truth
    engine.close()


def _agrees(shard: Shard, namespace: str) -> bool:
    try:
        shard.load_progress({0}, namespace)
    except ReplicasDisagree:
        shard.forget([0])
        return False
    return True


def _retries() -> float:
    return REGISTRY.get_sample_value("meterline_clickhouse_flush_retries_total") or 0.0


def test_retention_drops_an_old_month_on_every_shard_and_replica(
    cluster: Cluster, on_cluster: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """``meterline retention`` on the cluster: the months summed over the shards, a month
    kept while any shard holds a recent ingestion, and a dropped month gone from both
    replicas of every shard."""
    settings = on_cluster
    prepare(settings).close()
    local = EventsTable(shard_database(settings.clickhouse_database))
    day = 86_400_000
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    this_month = int(
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000
    )
    old, late_month = this_month - 400 * day, this_month - 440 * day  # two months over a year ago
    by_shard = {shard_of(s, cluster.shards): s for s in reversed(SUBJECTS)}
    assert sorted(by_shard) == list(range(cluster.shards))
    shards = shard_engines(settings)
    assert shards is not None

    def row(event_id: str, subject: str, time_ms: int, ingested_ms: int) -> RawEventRow:
        return RawEventRow(
            settings.namespace, "src", event_id, "api", subject, time_ms, "{}", ingested_ms,
            0, 0, 0, "h",
        )  # fmt: skip

    for n, replicas in enumerate(shards):
        subject = by_shard[n]
        rows = [row(f"old-{n}", subject, old, old), row(f"now-{n}", subject, now_ms, now_ms - day)]
        # a late event in an old month on the first shard only: that month stays everywhere
        rows += [row("late", subject, late_month, now_ms - day)] if n == 0 else []
        rows += [row(f"long-ago-{n}", subject, late_month, late_month)]
        engine = replicas()
        engine.insert(*local.insert_args(rows))
        engine.close()

    def months_per_server() -> dict[tuple[int, int], list[int]]:
        shape = stack_cluster.ClusterSettings.from_env()
        found = {}
        for k, shard, replica in shape.clickhouse_servers():
            engine = ServerEngine(settings.clickhouse_host, shape.clickhouse_ports(k)[0])
            found[(shard, replica)] = [
                int(m) for m, _, _ in engine.execute(local.months().to_sql())
            ]
            engine.close()
        return found

    every_month = sorted(
        {
            int(datetime.fromtimestamp(t / 1000, UTC).strftime("%Y%m"))
            for t in (old, late_month, now_ms)
        }
    )
    wait_until(
        lambda: all(m == every_month for m in months_per_server().values()),
        60,
        "every replica to hold the three months",
    )
    gone, kept_late = every_month[1], every_month[0]

    assert run_retention(settings, argparse.Namespace(keep_months=2, yes=False)) == 0
    dry = capsys.readouterr().out
    label = f"{gone // 100}-{gone % 100:02d}"
    assert f"dry run: 1 month of raw events, {cluster.shards} rows" in dry
    assert f"{kept_late // 100}-{kept_late % 100:02d}  {cluster.shards + 1:>13,} rows" in dry
    assert "within the dedupe horizon" in dry
    assert all(m == every_month for m in months_per_server().values())

    assert run_retention(settings, argparse.Namespace(keep_months=2, yes=True)) == 0
    done = capsys.readouterr().out
    assert (
        f"deleted the raw events of {label} ({cluster.shards} rows) on {cluster.shards} shards"
        in done
    )
    left = [kept_late, every_month[2]]
    wait_until(
        lambda: all(m == left for m in months_per_server().values()),
        60,
        f"the month {label} gone from every replica of every shard",
    )


def test_retention_keeps_a_month_a_recent_write_reached_on_one_replica_only(
    cluster: Cluster, on_cluster: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The horizon check reads every replica: a row still on one replica of a shard (its
    copy to the other held back) keeps its month; nothing of it is deleted."""
    settings = on_cluster
    prepare(settings).close()
    local = EventsTable(shard_database(settings.clickhouse_database))
    day = 86_400_000
    now = datetime.now(UTC)
    this_month = int(
        now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000
    )
    old = this_month - 400 * day
    subject = next(s for s in SUBJECTS if shard_of(s, cluster.shards) == 0)
    shards = shard_engines(settings)
    assert shards is not None
    first = shards[0]

    def row(event_id: str, ingested_ms: int) -> RawEventRow:
        return RawEventRow(
            settings.namespace, "src", event_id, "api", subject, old, "{}", ingested_ms,
            0, 0, 0, "h",
        )  # fmt: skip

    engine = first()
    engine.insert(*local.insert_args([row("old", old)]))  # on both replicas (quorum)
    engine.close()
    kept = first.connect_to(first.replicas[0])
    # no insert quorum: the row stays on the second replica while the first fetches nothing
    other = ServerEngine(first.replicas[1].host, first.replicas[1].port)
    try:
        kept.execute(f"SYSTEM STOP FETCHES {local.name}")
        other.insert(*local.insert_args([row("recent", int(now.timestamp() * 1000) - day)]))
        assert run_retention(settings, argparse.Namespace(keep_months=2, yes=True)) == 0
        out = capsys.readouterr().out
        assert "within the dedupe horizon" in out
        assert "nothing to delete" in out
    finally:
        kept.execute(f"SYSTEM START FETCHES {local.name}")
        kept.close()
        other.close()
    count = f"SELECT count() FROM {local.name}"
    for replica in first.replicas:
        reader = first.connect_to(replica)
        try:
            wait_until(
                lambda reader=reader: reader.execute(count) == [(2,)],  # type: ignore[misc]
                60,
                "both rows on every replica",
            )
        finally:
            reader.close()


def test_backfill_meters_each_shard_from_its_own_events_once_its_replicas_agree(
    cluster: Cluster, on_cluster: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """``meterline backfill`` on the cluster: each shard's windows are metered from its own
    raw events and written to every replica of it.  While a raw event is on one replica of
    a shard only, the backfill stops naming the shard and writes nothing anywhere; once the
    replicas agree it fills the meter exactly, and a rerun writes nothing."""
    settings = on_cluster
    prepare(settings).close()
    meters = load_meters(settings.meters_file)
    meter = meters.get("llm_tokens")
    local = shard_database(settings.clickhouse_database)
    events_table = EventsTable(local)
    telemetry = generate(SUBJECTS, OCTOBER, timedelta(days=31), 40, duplicate_ratio=0.0)
    shards = shard_engines(settings)
    assert shards is not None
    rows: dict[int, list[RawEventRow]] = {n: [] for n in range(len(shards))}

    def row(event: UsageEvent, offset: int) -> RawEventRow:  # partition 0, an event a record
        return RawEventRow(
            settings.namespace, event.source, event.id, event.type, event.subject,
            event.time_ms, encode_event(event), event.time_ms, 0, offset, 0, "h",
        )  # fmt: skip

    for offset, event in enumerate(telemetry.events):
        rows[shard_of(event.subject, cluster.shards)].append(row(event, offset))
    # one of the meter's events held back: it reaches one replica of the first shard only
    late = rows[0].pop(max(n for n, r in enumerate(rows[0]) if r.type == meter.event_type))
    for n, replicas in enumerate(shards):
        engine = replicas()  # every replica (quorum)
        engine.insert(*events_table.insert_args(rows[n]))
        engine.close()
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.worker_app_id}
    )
    try:  # the stopped worker group has passed every event
        topic = settings.events_topic
        consumer.commit(
            offsets=[TopicPartition(topic, 0, len(telemetry.events))], asynchronous=False
        )
    finally:
        consumer.close()
    args = argparse.Namespace(
        meter=[meter.slug], start="2026-10-01T00:00:00Z", end="2026-11-01T00:00:00Z"
    )
    reader = ServerEngine.of(settings)
    first = shards[0]
    behind = first.connect_to(first.replicas[0])
    ahead = ServerEngine(first.replicas[1].host, first.replicas[1].port)  # no quorum
    try:
        behind.execute(f"SYSTEM STOP FETCHES {events_table.name}")
        ahead.insert(*events_table.insert_args([late]))
        with pytest.raises(InvariantViolated, match="the replicas of shard 1 hold different raw"):
            run_backfill(settings, meters, args)
        assert reconcile_totals(reader, settings.clickhouse_database, settings.namespace,
                                MeterSet([meter])) == {}  # fmt: skip
    finally:
        behind.execute(f"SYSTEM START FETCHES {events_table.name}")
        behind.close()
        ahead.close()

    def agreed() -> bool:
        try:
            return run_backfill(settings, meters, args) == 0
        except InvariantViolated:
            return False

    wait_until(agreed, 60, "the replicas of the first shard to agree and the backfill to run")
    out = capsys.readouterr().out
    assert f"chunks written on {cluster.shards} shards, 0 already filled" in out
    truth = {k: v for k, v in telemetry.truth.items() if k[1] == meter.slug}
    assert truth
    assert all(v > 0 for v in truth.values())
    got = reconcile_totals(reader, settings.clickhouse_database, settings.namespace, meters)
    assert got == truth
    shape = stack_cluster.ClusterSettings.from_env()
    for k, shard, replica in shape.clickhouse_servers():  # each shard's own, on each replica
        server = ServerEngine(settings.clickhouse_host, shape.clickhouse_ports(k)[0])
        own = reconcile_totals(server, local, settings.namespace, MeterSet([meter]))
        server.close()
        mine = {s: v for s, v in truth.items() if shard_of(s[0], cluster.shards) == shard - 1}
        assert own == mine, f"s{shard}r{replica}"

    checked = argparse.Namespace(meter=[meter.slug], start=args.start, end=args.end)
    assert run_reconcile(settings, meters, checked) == 0  # raw events against the windows
    assert f"reconcile OK: {len(truth)} (meter, subject) pairs checked" in capsys.readouterr().out

    assert run_backfill(settings, meters, args) == 0
    again = capsys.readouterr().out
    assert " 0 events in 0 (partition, day) chunks written on 2 shards" in again
    assert (
        reconcile_totals(reader, settings.clickhouse_database, settings.namespace, meters) == truth
    )
    reader.close()
