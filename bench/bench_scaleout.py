"""Scale-out on the cluster topology (``make up TOPOLOGY=cluster``): events/s through
1, 2 and 3 worker processes sharing one events topic, written to the ClickHouse cluster
(2 shards × 2 replicas, every write on both replicas of its shard), with exactness
checked after every run.

Next to each rate, in the same run: the bare-consumer baseline (confluent-kafka +
``orjson``, no Faust, no ClickHouse), and the CPU per event of the workers, of the
ClickHouse servers, of the Kafka brokers and of ZooKeeper over the same span — the per-worker and
per-shard figures ``docs/scaling.md`` builds its capacity plan from.  On a 2-core box
three workers, four ClickHouse servers and three brokers contend for the same cores: the
rates measure contention, the CPU per event is what carries over to real machines.

Run it with ``make bench-scaleout`` (it starts the cluster and sets the environment);
results go to ``bench/scaleout-results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))
sys.path.insert(0, str(ROOT / "bench"))

import bench_pipeline  # noqa: E402
import pidfiles  # noqa: E402
import stack_base  # noqa: E402
import stack_cluster  # noqa: E402

RESULTS = ROOT / "bench" / "scaleout-results.json"


def shard_writes(bench: Any, quorum: bool, batch: int) -> dict[str, Any]:
    """One shard's write capacity: every event planned once, then written by one
    in-process sink to shard 1 alone, ``batch`` events per write (by default the worker's
    chunk), with the quorum of its two replicas or without; events/s of write time only.
    The totals are checked after every run (read through the ``Distributed`` tables)."""
    from schemas.metering.definitions import load_meters
    from schemas.storage.cluster import replicas_query, shard_database, shards_of
    from schemas.storage.engine import QUORUM_TIMEOUT_MS, ServerEngine
    from streams.sink import MeteringSink
    from tests.streams.sink_kit import Store

    meters = load_meters(bench.base.meters_file)
    records = bench_pipeline.records_of(bench.telemetry.events)
    chunks = [records[i : i + batch] for i in range(0, len(records), batch)]
    rates, checks = [], []
    for run in range(bench.repeats + 1):
        settings, engine = bench.prepared()
        cluster = settings.clickhouse_cluster
        first = shards_of(engine.execute(replicas_query(cluster).to_sql()), cluster)[0]
        quorum_settings = (
            {"insert_quorum": len(first), "insert_quorum_timeout": QUORUM_TIMEOUT_MS}
            if quorum
            else {}
        )

        connect = partial(
            ServerEngine, first[0].host, first[0].port, cluster=cluster, **quorum_settings
        )
        sink = MeteringSink(
            namespace=settings.namespace,
            meters=meters,
            engine_factory=connect,
            database=shard_database(settings.clickhouse_database),
            shards=[connect],
        )
        store = Store()
        plans = []
        for chunk in chunks:
            plan = sink.plan(chunk, store)
            store.put_many(plan.seen)
            plans.append(plan)
        start = time.perf_counter()
        for plan in plans:
            sink.write(plan)
        elapsed = time.perf_counter() - start
        checks.append(bench._check_exact(engine, settings))
        engine.close()
        if run:
            rates.append(bench.events / elapsed)
    return {
        "events_per_second": bench_pipeline.summary(rates),
        "batch": batch,
        "quorum": quorum,
        "exact": all(c["exact"] for c in checks),
        "checks": checks,
    }


def cluster_pids() -> dict[str, list[int]]:
    """Pids of the running cluster's ClickHouse servers, Kafka brokers and ZooKeeper."""
    topology = stack_cluster.cluster_topology(
        stack_base.Settings.from_env(), stack_cluster.ClusterSettings.from_env()
    )
    pids: dict[str, list[int]] = {"clickhouse": [], "kafka": [], "zookeeper": []}
    for service in topology.services:
        kind = service.name.split("-")[0]
        if kind not in pids:
            continue
        record = pidfiles.PidRecord.load(service.pid_file)
        if record is None or not pidfiles.is_ours(record):
            raise SystemExit(f"{service.name} is not running: `make up TOPOLOGY=cluster`")
        pids[kind].append(record.pid)
    return pids


def main() -> int:
    from schemas.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-subject", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--shard-batch",
        type=int,
        default=Settings().worker_chunk_events,
        help="events per shard write (default: the worker's chunk, METERLINE_WORKER_CHUNK_EVENTS)",
    )
    args = parser.parse_args()
    if not os.environ.get("METERLINE_CLICKHOUSE_CLUSTER"):
        raise SystemExit(
            "run with the cluster's settings: "
            'eval "$(python deploy/stack.py env --topology cluster)" (make bench-scaleout)'
        )
    counts = [int(n) for n in args.workers.split(",") if n]  # "": the shard stage only
    stage = bench_pipeline.timed_stage
    out: dict[str, Any] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "partitions": args.partitions,
        "cores": os.cpu_count(),
    }
    with bench_pipeline.isolated_bench(
        events_per_subject=args.events_per_subject,
        seed=3,
        repeats=args.repeats,
        partitions=args.partitions,
    ) as bench:
        out["events"] = bench.events
        out["unique_events"] = bench.telemetry.unique
        stage("producer", lambda: bench.producer(bench_pipeline.PACKED))
        out["baseline"] = stage("bare consume", lambda: bench.consume_baseline())
        for quorum in (True, False):
            name = "shard_write_quorum" if quorum else "shard_write_no_quorum"
            out[name] = stage(name, partial(shard_writes, bench, quorum, args.shard_batch))
        bench.watch_pids = cluster_pids()
        for n in counts:
            result = stage(f"{n} worker(s)", partial(bench.stream, n))
            # the first run of each stage warms up; its figures are not kept
            result["servers_cpu_us_per_event"] = {
                name: bench_pipeline.summary(values[1:] or values)
                for name, values in result.pop("server_cpu_runs").items()
            }
            out[f"workers_{n}"] = result
    RESULTS.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(table(out, counts))
    exact = all(out[f"workers_{n}"]["exact"] for n in counts) and all(
        out[name]["exact"] for name in ("shard_write_quorum", "shard_write_no_quorum")
    )
    print("exact after every run" if exact else "NOT EXACT: see the checks in the results")
    return 0 if exact else 1


def table(out: dict[str, Any], counts: list[int]) -> str:
    base = out["baseline"]
    lines = [
        f"{out['unique_events']} unique events, {out['partitions']} partitions, "
        f"{out['cores']} cores",
        f"bare consume: {base['median']:,.0f} ev/s, {base['cpu_us_per_event']['median']:.1f} "
        "µs CPU/event",
        "workers | events/s | × 1 worker | ratio to bare | worker µs/ev | ClickHouse µs/ev"
        " | Kafka µs/ev | ZooKeeper µs/ev",
    ]
    for name in ("shard_write_quorum", "shard_write_no_quorum"):
        r = out[name]
        lines.append(
            f"{name}: {r['events_per_second']['median']:,.0f} ev/s written to one shard by one "
            f"writer, {r['batch']}-event writes"
        )
    if not counts:
        return "\n".join(lines)
    one = out[f"workers_{counts[0]}"]["median"]
    for n in counts:
        r = out[f"workers_{n}"]
        servers = r["servers_cpu_us_per_event"]
        lines.append(
            f"{n} | {r['median']:,.0f} | {r['median'] / one:.2f} | "
            f"{r['median'] / base['median']:.3f} | {r['cpu_us_per_event']['median']:.1f} | "
            f"{servers['clickhouse']['median']:.1f} | {servers['kafka']['median']:.1f} | "
            f"{servers['zookeeper']['median']:.1f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
