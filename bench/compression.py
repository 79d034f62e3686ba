"""What compressing the events topic costs and saves, each codec against ``none`` in one run.

    python bench/compression.py [--events-per-subject 10000] [--repeats 3]
                                [--codecs none,lz4,zstd] [--live]

The generated telemetry (20 subjects, 10 % duplicates, packed records) is produced once
per codec and run into fresh topics; for each codec: the producer's events/s and process
CPU per event (its compression included), the bytes the broker stores per event (the
record batches in its log segments, ``deploy/stack_kafka.stored_batches``), the bare
confluent-kafka consume + orjson baseline, and one supervised worker per topic, the
codecs alternating run by run (the first round warms up): events/s to the last stored
event, worker CPU per event, exact totals.  Prints one JSON line per codec and a line of
ratios to the first codec.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "deploy"))

import bench_pipeline  # noqa: E402
import stack_base  # noqa: E402
import stack_kafka  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-per-subject", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--codecs", default="none,lz4,zstd")
    parser.add_argument("--live", action="store_true", help="stamp events over the last minute")
    args = parser.parse_args()
    codecs = args.codecs.split(",")
    node = stack_kafka.single_node(stack_base.Settings.from_env())
    out: dict[str, dict[str, Any]] = {}
    with bench_pipeline.stage_bench(args.events_per_subject, args.repeats, args.live) as bench:
        bench.watch_pids = bench_pipeline.server_pids()
        topics: dict[str, list[str]] = {}
        for codec in codecs:
            bench.topics[bench_pipeline.PACKED] = []
            producer = bench.producer(compression=codec)
            topics[codec] = list(bench.topics[bench_pipeline.PACKED])
            stored = [
                sum(size for _, size in stack_kafka.stored_batches(node, topic))
                for topic in topics[codec]
            ]
            out[codec] = {
                "events": bench.events,
                "producer_events_per_s": producer["median"],
                "producer_cpu_us_per_event": producer["cpu_us_per_event"]["median"],
                "stored_bytes_per_event": statistics.median(stored) / bench.events,
                "bare_consume": bench.consume_baseline(),
                "stream": {"rates": [], "cpu": [], "exact": [], "committed": [], "server": []},
            }
        for run in range(args.repeats + 1):
            for codec in codecs:
                bench.watched_cpu_us = {}
                rate, cpu, _peak, check = bench._stream_run(
                    1, topics[codec][run], bench_pipeline.ROOT
                )
                stream = out[codec]["stream"]
                stream["exact"].append(check["exact"])
                if run:  # the first round warms up
                    stream["rates"].append(rate)
                    stream["cpu"].append(cpu)
                    stream["committed"].append(check["committed_events_per_s"])
                    stream["server"].append(sum(v[-1] for v in bench.watched_cpu_us.values() if v))
                print(
                    json.dumps({"run": run, "codec": codec, "events_per_s": rate, "cpu_us": cpu}),
                    flush=True,
                )
    summary: dict[str, Any] = {}
    for codec in codecs:
        row = out[codec]
        stream = row.pop("stream")
        bare = row.pop("bare_consume")
        row.update(
            {
                "bare_consume_events_per_s": bare["median"],
                "bare_consume_cpu_us_per_event": bare["cpu_us_per_event"]["median"],
                "stream_events_per_s": statistics.median(stream["rates"]),
                "stream_events_per_s_runs": stream["rates"],
                "stream_committed_events_per_s": statistics.median(stream["committed"]),
                "worker_cpu_us_per_event": statistics.median(stream["cpu"]),
                "worker_cpu_us_runs": stream["cpu"],
                "servers_cpu_us_per_event": statistics.median(stream["server"]),
                "exact": all(stream["exact"]),
            }
        )
        summary[codec] = row
        print(json.dumps({codec: row}), flush=True)
    first = codecs[0]
    ratios = {
        codec: {
            name: summary[codec][name] / summary[first][name]
            for name in (
                "stored_bytes_per_event",
                "producer_cpu_us_per_event",
                "bare_consume_cpu_us_per_event",
                "worker_cpu_us_per_event",
                "stream_events_per_s",
                "servers_cpu_us_per_event",
            )
        }
        for codec in codecs[1:]
    }
    print(json.dumps({f"ratio_to_{first}": ratios}), flush=True)
    return 0 if all(row["exact"] for row in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
