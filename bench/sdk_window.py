"""Events sent one at a time with ``UsageProducer.send``: the SDK's packing window against
none, and what each layout costs the worker.

    python bench/sdk_window.py [--windows 0,50] [--events-per-subject 10000] [--repeats 2]

For each window (``pack_ms``; 0 turns packing across calls off) this fills ``repeats`` + 1
topics (the first warms up) by calling ``send`` once per event of the stream stage's
generated telemetry (20 subjects interleaved in time order, 10 % re-sent), reporting the
producer's events/s, its process CPU per event (librdkafka's threads included) and the
events per Kafka record; then runs the stream stage (``bench_pipeline.Bench.streams``: one
worker, exact totals checked) on those topics.  The window is the only difference between
the two sides: same events, same producer settings otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import Bench, BenchError, summary  # noqa: E402

from ingest import Delivery, UsageProducer  # noqa: E402
from ingest.admin import ensure_topics, meterline_topics  # noqa: E402


def fill(bench: Bench, pack_ms: int, runs: int) -> dict[str, Any]:
    """``runs`` topics filled by ``send`` per event with window ``pack_ms``, listed under
    the layout ``sent_<pack_ms>`` for the stream stage; the producer's figures."""
    layout = f"sent_{pack_ms}"
    bench.topics[layout] = []
    rates, cpu_us, per_record = [], [], []
    for run in range(runs + 1):
        settings = bench.settings()
        ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
        records: set[tuple[int | None, int | None]] = set()

        def landed(delivery: Delivery, records: set[Any] = records) -> None:
            records.add((delivery.partition, delivery.offset))

        with UsageProducer(settings.kafka_bootstrap, settings.events_topic, pack_ms=pack_ms) as p:
            start, cpu = time.perf_counter(), time.process_time()
            for event in bench.telemetry.events:
                p.send(event, landed)
            p.flush()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        if p.report.delivered != bench.events or p.report.failed:
            raise BenchError(f"pack_ms={pack_ms}: delivered {p.report.delivered}/{bench.events}")
        bench.topics[layout].append(settings.events_topic)
        if run:
            rates.append(bench.events / wall)
            cpu_us.append(cpu / bench.events * 1e6)
            per_record.append(bench.events / len(records))
    out = summary(rates)
    out["cpu_us_per_event"] = summary(cpu_us)
    out["events_per_record"] = summary(per_record)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="0,50", help="pack_ms values, comma-separated")
    parser.add_argument("--events-per-subject", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    bench = Bench(args.events_per_subject, seed=7, repeats=args.repeats, partitions=4)
    results: dict[str, Any] = {"events": bench.events}
    try:
        for pack_ms in (int(w) for w in args.windows.split(",")):
            producer = fill(bench, pack_ms, args.repeats)
            stream = bench.streams(1, [ROOT], f"sent_{pack_ms}")[0]
            stream.pop("checks")
            results[f"pack_ms={pack_ms}"] = {"producer": producer, "stream": stream}
            print(json.dumps({f"pack_ms={pack_ms}": results[f"pack_ms={pack_ms}"]}), flush=True)
            if not stream["exact"]:
                raise BenchError(f"pack_ms={pack_ms}: the stream stage was not exact")
    finally:
        print(json.dumps({"cleanup": bench.cleanup()}), flush=True)


if __name__ == "__main__":
    main()
