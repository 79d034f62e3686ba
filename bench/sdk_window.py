"""Events sent one at a time with ``UsageProducer.send``: the SDK's packing window against
none, records of one subject against records of one partition, and what each layout
costs the worker.

    python bench/sdk_window.py [--windows 0,50] [--pack-subjects on,off]
        [--subjects 20] [--events-per-subject 10000] [--rate 0] [--repeats 2]

For each window (``pack_ms``; 0 turns packing across calls off) and each packing lane
(``pack_subjects``: on, the subjects of one partition share records; off, one subject
per record) this fills ``repeats`` + 1 topics (the first warms up) by calling ``send``
once per event of generated telemetry (``subjects`` subjects interleaved at random, 10 %
re-sent), as fast as it can or at an offered ``rate`` (events/s, in ticks of 10 ms: many
subjects at a modest rate is the traffic where a subject rarely has company within its
own window), reporting the producer's events/s, its process CPU per event (librdkafka's
threads included) and the events per Kafka record; then runs the stream stage
(``bench_pipeline.Bench.streams``: one worker, exact totals checked) on those topics.
The window and the lane are the only differences between the sides: same events, same
producer settings otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import Bench, BenchError, summary  # noqa: E402

from ingest import Delivery, UsageProducer  # noqa: E402
from ingest.admin import ensure_topics, meterline_topics  # noqa: E402

TICK_S = 0.01
T = TypeVar("T")


def fill(bench: Bench, pack_ms: int, runs: int, pack_subjects: bool, rate: float) -> dict[str, Any]:
    """``runs`` topics filled by ``send`` per event with window ``pack_ms`` (at ``rate``
    events/s, 0: as fast as it goes), listed under the layout ``layout(...)`` for the
    stream stage; the producer's figures."""
    name = layout(pack_ms, pack_subjects)
    bench.topics[name] = []
    rates, cpu_us, per_record = [], [], []
    for run in range(runs + 1):
        settings = bench.settings()
        ensure_topics(settings.kafka_bootstrap, meterline_topics(settings))
        records: set[tuple[int | None, int | None]] = set()

        def landed(delivery: Delivery, records: set[Any] = records) -> None:
            records.add((delivery.partition, delivery.offset))

        with UsageProducer(
            settings.kafka_bootstrap,
            settings.events_topic,
            pack_ms=pack_ms,
            pack_subjects=pack_subjects,
        ) as p:
            start, cpu = time.perf_counter(), time.process_time()
            for tick in paced(bench.telemetry.events, rate):
                for event in tick:
                    p.send(event, landed)
            p.flush()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        if p.report.delivered != bench.events or p.report.failed:
            raise BenchError(f"{name}: delivered {p.report.delivered}/{bench.events}")
        bench.topics[name].append(settings.events_topic)
        if run:
            rates.append(bench.events / wall)
            cpu_us.append(cpu / bench.events * 1e6)
            per_record.append(bench.events / len(records))
    out = summary(rates)
    out["cpu_us_per_event"] = summary(cpu_us)
    out["events_per_record"] = summary(per_record)
    return out


def paced(
    items: Sequence[T],
    rate: float,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[Sequence[T]]:
    """``items`` in ticks of :data:`TICK_S` at ``rate`` items/s (0: all at once): after
    the caller has used a tick, sleep until the next one is due.  Open loop: each tick is
    due on its own clock, ``start + n × TICK_S``, so a late tick is not made up by the
    next, nor does a slow sender slow the offered schedule further."""
    if not rate:
        yield items
        return
    per_tick = max(int(rate * TICK_S), 1)
    start = clock()
    for tick, at in enumerate(range(0, len(items), per_tick)):
        yield items[at : at + per_tick]
        sleep(max(0.0, start + (tick + 1) * TICK_S - clock()))


def layout(pack_ms: int, pack_subjects: bool) -> str:
    return f"sent_{pack_ms}_{'partition' if pack_subjects else 'subject'}"


def subjects(count: int) -> list[str]:
    return [f"customer-{n:05d}" for n in range(count)]


def lanes(bench: Bench, pack_ms: int, rate: float, repeats: int) -> dict[str, Any]:
    """``make bench``'s stage: the same events sent one at a time at ``rate``, packed by
    partition and by subject; per lane the producer's figures and the stream stage's."""
    out: dict[str, Any] = {"pack_ms": pack_ms, "rate": rate, "events": bench.events}
    for lane, on in (("partition", True), ("subject", False)):
        producer = fill(bench, pack_ms, repeats, on, rate)
        stream = bench.streams(1, [ROOT], layout(pack_ms, on))[0]
        stream.pop("checks")
        out[lane] = {"producer": producer, "stream": stream}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="0,50", help="pack_ms values, comma-separated")
    parser.add_argument("--pack-subjects", default="on", help="on, off or on,off")
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--events-per-subject", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=0.0, help="offered events/s (0: flat out)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    bench = Bench(
        args.events_per_subject,
        seed=7,
        repeats=args.repeats,
        partitions=4,
        subjects=subjects(args.subjects),
    )
    results: dict[str, Any] = {"events": bench.events, "subjects": args.subjects}
    try:
        for pack_ms in (int(w) for w in args.windows.split(",")):
            for lane in args.pack_subjects.split(","):
                name = layout(pack_ms, lane == "on")
                producer = fill(bench, pack_ms, args.repeats, lane == "on", args.rate)
                stream = bench.streams(1, [ROOT], name)[0]
                stream.pop("checks")
                results[name] = {"producer": producer, "stream": stream}
                print(json.dumps({name: results[name]}), flush=True)
                if not stream["exact"]:
                    raise BenchError(f"{name}: the stream stage was not exact")
    finally:
        print(json.dumps({"cleanup": bench.cleanup()}), flush=True)


if __name__ == "__main__":
    main()
