"""``make bench``: run the benchmarks, write ``bench/results.json`` and ``docs/benchmarks.md``.

Every figure is reported next to a baseline measured in the same run, with the ratio:
these machines are noisy, so absolute rates are context and the ratios are the result.

Benchmarks here (the pipeline ones are described in ``bench/bench_pipeline.py``):
- producer SDK, bare consume baseline, stream stage (one and two worker processes), sink
  against bare inserts, meter query latency — on the local Kafka and ClickHouse;
- rating: ``rating.rate_plan`` over 500k (customer, meter) rows against a baseline of
  bare ``Decimal`` per-unit arithmetic (multiply + quantize) over the same rows — the cost
  of pricing with no models, breakdowns or validation.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_backtest  # noqa: E402
import bench_http  # noqa: E402
import bench_invoicing  # noqa: E402
import bench_latency  # noqa: E402
import bench_pipeline  # noqa: E402
import bench_query  # noqa: E402
import bench_rating  # noqa: E402
import hot_path  # noqa: E402
import sdk_window  # noqa: E402

from schemas.storage.window_states import WindowStates  # noqa: E402
from streams.app import COMMIT_INTERVAL_S  # noqa: E402

ROWS = 500_000
SEED = 7
REPEATS = 3
#: 20 subjects × this many events, plus 10 % duplicates (fixed seed).
EVENTS_PER_SUBJECT = int(os.environ.get("BENCH_EVENTS_PER_SUBJECT", "10000"))
PARTITIONS = 4
LATENCY_RATE = 10_000
#: Many subjects that each send rarely, one event at a time: this many subjects × events
#: each (+10 % duplicates), offered at MANY_RATE events/s (each subject ~10 a second,
#: fewer than one per 50 ms packing window), packed by partition and by subject.
MANY_SUBJECTS, MANY_EVENTS, MANY_RATE = 2_000, 50, 20_000
#: (offered events/s, SDK packing window in ms): the issue's load, as each 10 ms tick's
#: ``send_many`` packs it, and with a 50 ms window packing a subject's events across ticks.
LATENCY_RUNS = ((LATENCY_RATE, 0), (LATENCY_RATE, 50))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))
INVOICE_CUSTOMERS = 2000
#: The pricing backtest's scale: customers × 5 meters (the goal: ≤ 30 s).
BACKTEST_CUSTOMERS = int(os.environ.get("BENCH_BACKTEST_CUSTOMERS", "100000"))
HTTP_EVENTS = int(os.environ.get("BENCH_HTTP_EVENTS", "200000"))
#: The usage-query stage loads the windows of this many events (1,000 subjects × 30 days).
QUERY_EVENTS = int(os.environ.get("BENCH_QUERY_EVENTS", "50000000"))
#: Optional: a git ref whose worker also runs the one-event-per-record stream stage in the
#: same run (before/after figures of a change), e.g. ``BENCH_COMPARE_REF=4e806ac``.
COMPARE_REF = os.environ.get("BENCH_COMPARE_REF", "")
NOTES_MARKER = "<!-- Everything below this line is written by hand; make bench keeps it. -->"


def decimal_baseline(rows: int, seed: int, repeats: int) -> dict[str, float]:
    """Rows/s of bare per-unit Decimal pricing: quantity × price, rounded to cents."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not security
    data = [(Decimal(rng.randint(0, 10**6)).scaleb(-3), Decimal("0.0015")) for _ in range(rows)]
    cent = Decimal("0.01")
    durations = []
    for _ in range(repeats + 1):  # the first run warms up
        start = time.perf_counter()
        total = Decimal(0)
        for quantity, price in data:
            total += (quantity * price).quantize(cent, rounding=ROUND_HALF_UP)
        durations.append(time.perf_counter() - start)
    median = statistics.median(durations[1:])
    return {"rows_per_second": rows / median, "median_seconds": median}


def spread(seconds: list[float]) -> float:
    """Half the min–max range of the timed runs, in % of their median."""
    median = statistics.median(seconds)
    return 100 * (max(seconds) - min(seconds)) / 2 / median


def rate(summary: dict[str, object]) -> str:
    return f"{summary['median']:,.0f} events/s (±{summary['spread_pct']:.0f} %)"


def pipeline() -> dict[str, object]:
    """The benchmarks on the local Kafka and ClickHouse; cleaned up even on failure."""
    out: dict[str, object] = {}
    with bench_pipeline.isolated_bench(
        events_per_subject=EVENTS_PER_SUBJECT, seed=SEED, repeats=REPEATS, partitions=PARTITIONS
    ) as bench:
        out["events"] = bench.events
        out["unique_events"] = bench.telemetry.unique
        out["partitions"] = PARTITIONS
        stage = bench_pipeline.timed_stage
        packed, single = bench_pipeline.PACKED, bench_pipeline.SINGLE
        out["producer"] = stage("producer SDK", bench.producer)
        out["consume_baseline"] = stage("bare consume + orjson", bench.consume_baseline)
        bench.watch_pids = bench_pipeline.server_pids()
        # the default window states (needed: the demo meters' sum and count) and the full
        # set, alternating run by run
        needed, full = stage(
            "stream stage, 1 worker, needed and full window states",
            lambda: bench.streams(
                1, [ROOT], window_states=[WindowStates.NEEDED, WindowStates.FULL]
            ),
        )
        out["stream_1_worker"], out["stream_1_worker_full"] = needed, full
        bench.watch_pids = {}
        out["per_chunk"] = stage(
            "per-chunk path in one process",
            lambda: hot_path.alternated({"current": ROOT}, EVENTS_PER_SUBJECT, REPEATS)["current"],
        )
        out["queries"] = stage("meter queries", lambda: bench.queries(bench.last_database))
        out["stream_2_workers"] = stage("stream stage, 2 workers", lambda: bench.stream(2))
        # One event per record, as before records were packed: one run after the warm-up.
        out["producer_single"] = stage(
            "producer SDK, one event per record", lambda: bench.producer(single, runs=1)
        )
        out["consume_baseline_single"] = stage(
            "bare consume, one event per record", lambda: bench.consume_baseline(single)
        )
        out["faust_floor_single"] = stage(
            "no-op Faust agent, one event per record", lambda: bench.faust_floor(single)
        )
        out["stream_1_worker_single"] = stage(
            "stream stage, 1 worker, one event per record", lambda: bench.stream(1, single)
        )
        if COMPARE_REF:
            with bench_pipeline.checkout(COMPARE_REF) as tree:
                out["stream_1_worker_ref"] = stage(
                    f"stream stage, 1 worker, code at {COMPARE_REF}, one event per record",
                    lambda: bench.stream(1, single, worker_root=tree),
                )
            out["compare_ref"] = COMPARE_REF
        out["sink"] = stage("sink vs bare insert", bench.sink)
        out["record_events"] = bench_pipeline.RECORD_EVENTS[packed]
    with bench_pipeline.isolated_bench(
        events_per_subject=MANY_EVENTS,
        seed=SEED,
        repeats=2,
        partitions=PARTITIONS,
        subjects=sdk_window.subjects(MANY_SUBJECTS),
    ) as many:
        lanes: dict[str, Any] = bench_pipeline.timed_stage(
            f"{MANY_SUBJECTS:,} subjects sent one at a time, by partition and by subject",
            lambda: sdk_window.lanes(many, 50, MANY_RATE, repeats=2),
        )
        out["many_subjects"] = {**lanes, "subjects": MANY_SUBJECTS}
    return out


def exact(stage: dict[str, Any]) -> str:
    if stage["exact"]:
        return "yes, every run"
    bad = [c for c in stage["checks"] if not c["exact"]]
    return (
        f"**NO** in {len(bad)} of {len(stage['checks'])} runs (warm-up included; "
        "see `checks` in `bench/results.json`)"
    )


def exactness_lines(p: dict[str, Any]) -> list[str]:
    lines = []
    names = ["stream_1_worker", "stream_1_worker_full", "stream_2_workers"]
    names += ["stream_1_worker_single", "sink"]
    for name in [*names, *(["stream_1_worker_ref"] if "stream_1_worker_ref" in p else [])]:
        for check in p[name]["checks"]:
            if check["exact"]:
                continue
            wrong = ", ".join(
                f"{key} stored {v['stored']}, truth {v['truth']}"
                for key, v in check["wrong_totals"].items()
            )
            lines.append(
                f"- `{name}`, database `{check['database']}`: `usage_events` rows "
                f"{check['raw_rows']:,} of {p['unique_events']:,}; "
                f"{check['wrong_total_count']} wrong totals ({wrong})."
            )
    return lines or ["- Every run of every stage stored exactly the generated totals and rows."]


def cpu(stage: dict[str, Any]) -> str:
    c = stage["cpu_us_per_event"]
    return f"{c['median']:.1f} µs/event (runs {', '.join(f'{r:.1f}' for r in c['runs'])})"


def cpu_ratio(stage: dict[str, Any], base: dict[str, Any]) -> float:
    return float(stage["cpu_us_per_event"]["median"]) / float(base["cpu_us_per_event"]["median"])


def pipeline_rows(p: dict[str, Any]) -> list[str]:
    events = f"{p['events']:,} events ({p['unique_events']:,} unique), {p['partitions']} partitions"
    base = p["consume_baseline"]
    base_text = f"bare confluent-kafka consume + orjson: {rate(base)}"
    one, two = p["stream_1_worker"], p["stream_2_workers"]
    full = p["stream_1_worker_full"]
    single, single_base = p["stream_1_worker_single"], p["consume_baseline_single"]
    floor_single = p["faust_floor_single"]
    sink, bare = p["sink"]["sink"], p["sink"]["bare_insert"]
    q = p["queries"]
    servers, chunk = one["server_cpu_us_per_event"], p["per_chunk"]
    worker_cpu = float(one["cpu_us_per_event"]["median"])
    fastest = bench_pipeline.fastest_bare(one, base)
    return [
        f"| producer SDK → local broker, {events} | {rate(p['producer'])} | {base_text} | "
        f"{p['producer']['median'] / base['median']:.3f} |",
        f"| stream stage, 1 worker process (Faust dedupe + aggregation + ClickHouse write), "
        f"first to last stored event; exact totals and row counts: {exact(one)} | "
        f"{rate(one)} | {base_text} | {one['median'] / base['median']:.3f} |",
        f"| the same runs, each against a bare consume of its own topic right before it "
        f"(paired: a drift of the box's speed falls on both sides of each ratio), the "
        f"median of the runs' ratios | {rate(one)} | bare confluent-kafka consume + orjson, "
        f"right before each run: {rate(one['paired_baseline'])} | "
        f"**{one['paired_ratio']['median']:.3f}** (runs "
        f"{', '.join(f'{r:.3f}' for r in one['paired_ratio']['runs'])}) |",
        f"| the same runs against the fastest bare consume of the run (the baseline stage's "
        f"or a paired one: the least flattering of the three ratios) | {rate(one)} | "
        f"fastest bare consume: {fastest:,.0f} events/s | "
        f"**{one['median'] / fastest:.3f}** |",
        f"| the same runs, first stored event to the commit (zero consumer lag, the worker "
        f"commits every {COMMIT_INTERVAL_S:g} s) | {rate(one['committed_events_per_s'])} | "
        f"{base_text} | {one['committed_events_per_s']['median'] / base['median']:.3f} |",
        f"| worker CPU per event, 1 worker, packed records: process CPU seconds of the "
        f"worker (supervisor + child, every thread) ÷ events, first to last stored event "
        f"(goal ≤ 15 µs) | {cpu(one)} | bare consume + orjson, its process CPU: "
        f"{cpu(base)} | {cpu_ratio(one, base):.1f}× |",
        f"| the same span: the ClickHouse server's and the broker's CPU per stored event, "
        f"and the worker's peak RSS | ClickHouse {servers['clickhouse']:.1f} µs/event, "
        f"broker {servers['kafka']:.1f} µs/event; worker peak RSS {one['peak_rss_mb']:.0f} MB "
        f"| worker CPU: {cpu(one)} | ClickHouse {servers['clickhouse'] / worker_cpu:.2f}× |",
        f"| stream stage, 1 worker, a database of the **full window states** (every "
        f"aggregation's, `METERLINE_CLICKHOUSE_WINDOW_STATES=full`; runs alternating with the "
        f"rows above, whose database keeps the default `needed` states: the demo meters' sum "
        f"and count); exact: {exact(full)}; ClickHouse "
        f"{full['server_cpu_us_per_event']['clickhouse']:.1f} µs/event, worker "
        f"{cpu(full)} | {rate(full)} | {base_text} | "
        f"{full['median'] / base['median']:.3f} |",
        f"| the worker's per-chunk path in one process, no Faust or Kafka "
        f"(`bench/hot_path.py`: `plan`, `write` to the server, `finish` into the on-disk "
        f"dedupe store), CPU per event, median of {REPEATS}; exact: "
        f"{'yes' if chunk['exact'] else '**NO**'} | {chunk['total']:.1f} µs/event (`plan` "
        f"{chunk['plan']:.1f}, `write` {chunk['write']:.1f}, `finish` {chunk['finish']:.1f}) "
        f"| the real worker: {cpu(one)} | {chunk['total'] / worker_cpu:.2f} |",
        f"| scale-out: 2 worker processes, same topic; exact totals and row counts: "
        f"{exact(two)} | {rate(two)} | 1 worker: {rate(one)} | "
        f"{two['median'] / one['median']:.3f} |",
        f"| stream stage, 1 worker, **one event per record** (the layout before packing; "
        f"one run after a warm-up, as for every *one event per record* row); "
        f"exact: {exact(single)} | {rate(single)} | same stage, packed records "
        f"(≤ {p['record_events']} events per record): {rate(one)} | "
        f"{single['median'] / one['median']:.3f} |",
        f"| bare consume, one event per record | {rate(single_base)} | "
        f"bare consume, packed records: {rate(base)} | "
        f"{single_base['median'] / base['median']:.3f} |",
        f"| Faust floor: a no-op agent (`take_events`, nothing done), one event per record | "
        f"{rate(floor_single['events_per_second'])} | bare consume, one event per record: "
        f"{rate(single_base)} | "
        f"{floor_single['events_per_second']['median'] / single_base['median']:.3f} |",
        f"| stream stage, 1 worker, one event per record, against its own baseline | "
        f"{rate(single)} | bare consume, one event per record: {rate(single_base)} | "
        f"{single['median'] / single_base['median']:.3f} |",
        *many_subjects_rows(p["many_subjects"]),
        *compare_rows(p),
        f"| sink: `MeteringSink` plan + write in-process, batches of {p['sink']['batch']:,}; "
        f"exact: {'yes' if p['sink']['exact'] else 'NO'} | "
        f"{rate(sink)} | bare clickhouse-driver insert of the same rows: {rate(bare)} | "
        f"{sink['median'] / bare['median']:.3f} |",
        f"| meter query (hourly windows over a month, per meter), {q['samples']} samples | "
        f"p50 {q['meter_query_ms']['p50']:.1f} ms, p95 {q['meter_query_ms']['p95']:.1f} ms | "
        f"`SELECT 1` round trip: p50 {q['select_1_ms']['p50']:.1f} ms, "
        f"p95 {q['select_1_ms']['p95']:.1f} ms | "
        f"{q['meter_query_ms']['p50'] / q['select_1_ms']['p50']:.1f} (p50) |",
    ]


def many_subjects_rows(m: dict[str, Any]) -> list[str]:
    by_part, by_subject = m["partition"], m["subject"]
    one, other = by_part["stream"], by_subject["stream"]
    sdk_one = by_part["producer"]["cpu_us_per_event"]["median"]
    sdk_other = by_subject["producer"]["cpu_us_per_event"]["median"]

    def per_record(lane: dict[str, Any]) -> str:
        return f"{lane['producer']['events_per_record']['median']:,.1f} events per record"

    sent = (
        f"{m['events']:,} events of {m['subjects']:,} subjects sent one at a time with `send`, "
        f"{m['rate']:,.0f} events/s offered (each subject about "
        f"{m['rate'] / m['subjects']:,.0f} a second), `pack_ms={m['pack_ms']}`"
    )
    return [
        f"| stream stage, 1 worker, {sent}: records packing the subjects of a partition "
        f"({per_record(by_part)}); exact: {exact(one)} | {rate(one)} | the same events in "
        f"records of one subject (`pack_subjects=False`, {per_record(by_subject)}); exact: "
        f"{exact(other)}: {rate(other)} | {one['median'] / other['median']:.2f}× |",
        f"| the same runs: worker CPU per event, and the producer's (process CPU, "
        f"librdkafka's threads included) | worker {cpu(one)}, producer {sdk_one:.1f} µs/event "
        f"| records of one subject: worker {cpu(other)}, producer {sdk_other:.1f} µs/event | "
        f"worker {cpu_ratio(one, other):.2f}×, producer {sdk_one / sdk_other:.2f}× |",
    ]


def compare_rows(p: dict[str, Any]) -> list[str]:
    if "stream_1_worker_ref" not in p:
        return []
    ref, one, single = p["stream_1_worker_ref"], p["stream_1_worker"], p["stream_1_worker_single"]
    name = f"`{p['compare_ref']}`"
    return [
        f"| before/after: stream stage, 1 worker, code at {name}, one event per record; "
        f"exact: {exact(ref)} | {rate(ref)} | current code, one event per record: "
        f"{rate(single)} | {single['median'] / ref['median']:.3f} (current ÷ {name}) |",
        f"| before/after: current code with packed records | {rate(one)} | code at {name}, "
        f"one event per record: {rate(ref)} | {one['median'] / ref['median']:.3f} |",
    ]


def latency_rows(lat: dict[str, Any]) -> list[str]:
    base = lat["baseline"]
    kept = "kept up" if lat["kept_up"] else "**fell behind**"
    return [
        f"| end-to-end latency, event → queryable meter window, {lat['rate']:,} events/s "
        f"offered for {lat['seconds']:.0f} s ({lat['offered_rate_achieved']:,.0f}/s achieved), "
        f"SDK `pack_ms={lat['pack_ms']}`, 1 worker; {kept}; "
        f"exact: {'yes' if lat['exact'] else 'NO'} | "
        f"p50 {lat['p50_ms']:,.0f} ms, p99 {lat['p99_ms']:,.0f} ms | "
        f"bare consume + insert: p50 {base['p50_ms']:,.0f} ms, p99 {base['p99_ms']:,.0f} ms | "
        f"{lat['ratio']['p50']:.1f} (p50), {lat['ratio']['p99']:.1f} (p99) |",
    ]


def query_rows(q: dict[str, Any]) -> list[str]:
    """Rows of the usage-query stage: the API on the current layout, against the same
    query's SQL on the layout before (time-ordered minute table, no rollups)."""
    rows = []
    for name, r in q["queries"].items():
        api, before = r["api_ms"], r["before_direct_sql_ms"]
        rows.append(
            f"| usage query at {q['events'] / 1e6:.0f}M events ({q['subjects']:,} subjects): "
            f"{name}, {api['samples']} samples via the API, read from "
            f"`{', '.join(r['tables'])}` | p50 {api['p50']:.1f} ms, p95 {api['p95']:.1f} ms | "
            f"the same query's SQL on the layout before, direct (no API): p50 "
            f"{before['p50']:.1f} ms, p95 {before['p95']:.1f} ms | "
            f"{api['p95'] / before['p95']:.3f} (p95) |"
        )
    exact = q["kolkata_exact"]
    dash = q["dashboard"]
    rows.append(
        f"| Asia/Kolkata daily = the minute windows summed per local day, "
        f"{len(exact['subjects'])} random subjects | {'exact' if exact['exact'] else 'NOT EXACT'} "
        "| — | — |"
    )
    rows.append(
        f"| dashboard at that size in headless Chromium (daily chart, all time, "
        f"{dash['points']} points drawn), median of 3 | {dash['dashboard_s']:.2f} s over the "
        f"browser's own start ({dash['chromium_wall_s']:.2f} s in all) | the browser on "
        f"`/healthz`: {dash['chromium_blank_s']:.2f} s | — |"
    )
    return rows


def main() -> int:
    started = datetime.now(UTC)
    wall = time.perf_counter()
    pipe = pipeline()
    stage = bench_pipeline.timed_stage
    query = stage(
        f"usage queries at {QUERY_EVENTS:,} events", lambda: bench_query.run(QUERY_EVENTS, SEED)
    )

    def latency_at(offered: int, pack_ms: int) -> dict[str, Any]:
        return bench_latency.latency(offered, LATENCY_SECONDS, SEED, pack_ms)

    lats = [
        stage(
            f"end-to-end latency at {offered:,} events/s, pack_ms={pack_ms}",
            partial(latency_at, offered, pack_ms),
        )
        for offered, pack_ms in LATENCY_RUNS
    ]
    http = stage("HTTP ingest", lambda: bench_http.run(HTTP_EVENTS, repeats=REPEATS))
    inv = stage(
        f"invoicing, {INVOICE_CUSTOMERS:,} customers",
        lambda: bench_invoicing.invoicing(INVOICE_CUSTOMERS, SEED, REPEATS),
    )
    backtest = stage(
        f"pricing backtest, {BACKTEST_CUSTOMERS:,} customers × 5 meters",
        lambda: bench_backtest.backtest(BACKTEST_CUSTOMERS, SEED, REPEATS),
    )
    print(f"rating: {ROWS} rows, {REPEATS} runs after a warm-up …", flush=True)
    rating = bench_rating.run(ROWS, SEED, REPEATS)
    baseline = decimal_baseline(ROWS, SEED, REPEATS)
    rating_rows = float(rating["rows_per_second"])  # type: ignore[arg-type]
    ratio = rating_rows / baseline["rows_per_second"]
    rating_spread = spread(rating["seconds"][1:])  # type: ignore[index]
    wall_seconds = time.perf_counter() - wall
    results = {
        "when": started.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "wall_seconds": round(wall_seconds, 1),
        "pipeline": pipe,
        "usage_queries": query,
        "latency": lats,
        "http_ingest": http,
        "invoicing": inv,
        "backtest": backtest,
        "rating": rating,
        "rating_baseline_decimal": baseline,
        "rating_ratio_to_baseline": ratio,
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Written by `make bench` on {started:%Y-%m-%d %H:%M} UTC (Python "
            f"{platform.python_version()}, 2 cores, {wall_seconds / 60:.1f} min in all), on "
            "the local Kafka and ClickHouse of `make up`. The machine was shared with other "
            "work while this ran, so the figures are noisy: absolute rates are context only, "
            "the ratio to the baseline measured in the same run is the figure to compare.",
            "",
            "| benchmark | result (median, ± half the min–max range) | baseline (same run) "
            "| ratio |",
            "| --- | --- | --- | --- |",
            *pipeline_rows(pipe),
            *query_rows(query),
            *[row for lat in lats for row in latency_rows(lat)],
            *bench_http.table(http),
            f"| invoicing: `run_period` for {inv['customers']:,} customers "
            f"({inv['lines']:,} priced lines, drafts + transactional publish + storage); "
            f"exact: {'yes' if inv['exact'] else 'NO'} | "
            f"{inv['runs']['median']:,.0f} invoices/s (±{inv['runs']['spread_pct']:.0f} %) | "
            f"bare I/O of the same run (usage SELECT, row inserts, one Kafka transaction): "
            f"{inv['baseline']['median']:,.0f} invoices/s | {inv['ratio']:.3f} |",
            *bench_backtest.table(backtest),
            f"| rating: `rate_plan` over {ROWS:,} (customer, meter) rows, all models | "
            f"{rating_rows:,.0f} rows/s (±{rating_spread:.0f} %, "
            f"{rating['lines_per_second']:,} priced lines/s) | "
            f"bare Decimal per-unit pricing: {baseline['rows_per_second']:,.0f} rows/s | "
            f"{ratio:.3f} |",
            "",
            "## Method",
            "",
            f"- Fixed seeds: {pipe['events']:,} events generated by `ingest.telemetry.generate` "
            f"(20 subjects, seed {SEED}, 10 % duplicates, shuffled) for every pipeline "
            f"benchmark; one warm-up run, then the median of {REPEATS} runs. Each run's "
            "figures are in `bench/results.json`.",
            "- Producer SDK: `UsageProducer.send_many` then `flush` (acks=all, idempotent) "
            "into a fresh topic per run; those topics are then read by the other stages. "
            "`send_many` packs up to 500 events of the subjects of one partition into one "
            "record (`schemas/wire.py`); the *one event per record* rows use the same "
            "producer with `record_events=1`, the layout every record had before packing.",
            f"- Many subjects (`bench/sdk_window.py`, also runs alone): {MANY_SUBJECTS:,} "
            f"subjects × {MANY_EVENTS} events (+10 % re-sent, shuffled), sent one at a time "
            f"with `send` at {MANY_RATE:,} events/s offered (ticks of 10 ms), `pack_ms=50`, "
            "into a fresh topic per run (one warm-up, then 2), once with records packing the "
            "subjects of a partition (the default) and once with records of one subject "
            "(`pack_subjects=False`); then the stream stage (one worker, exact totals "
            "checked) on each topic.",
            "- Baseline for the producer and the stream stage: a bare confluent-kafka "
            "consumer reading the same topic on the same broker with `orjson.loads` per "
            "event (a packed record is split on newlines first), timed from the first "
            "record received (group join excluded). Each stream-stage run is also preceded "
            "by a bare consume of its own topic: the *paired* row is the median of the runs' "
            "ratios to those, and the *fastest* row takes the fastest bare consume of the run.",
            "- Stream stage: `python -m streams worker` on a topic already holding every "
            "event, with its own consumer group and ClickHouse database; the rate is "
            "taken from the first stored event to the last (worker start-up excluded), by "
            "polling the `usage_events` row count every 0.1 s, and the run ends only at zero "
            "consumer lag. "
            "After every run (warm-up included) the stored totals per (subject, meter) are "
            "compared with the generated truth and the `usage_events` row count with the "
            "unique events; a run that is not exact is flagged in the table and listed "
            "below.",
            "- Scale-out: the same with two worker processes in one group on the "
            f"{PARTITIONS}-partition topic, against the one-worker figure. On this "
            "2-core machine the two workers and ClickHouse share the cores.",
            "- Sink: `MeteringSink.plan` + `write` + `finish` in-process (decode, meter, "
            "dedupe, two inserts per batch) into a fresh database, against the same raw "
            "and feed rows inserted with a bare clickhouse-driver `Client.execute`; both "
            "results are checked for exact totals.",
            "- Meter query: `WindowsTable.meter_query` (hourly windows over October, one "
            "query per meter in turn) on the database of the last one-worker run, after a "
            "warm-up; baseline is `SELECT 1` on the same connection.",
            "- Usage queries (`bench/bench_query.py`): the windows of "
            f"{QUERY_EVENTS:,} events loaded server-side (minute table, then both rollups "
            "with the product's backfill statement, then a copy in the layout before as the "
            "baseline); 50 API requests per shape after a warm-up, one at a time, a random "
            "subject each; the baseline is the same query's SQL on the copy, on a direct "
            "connection.",
            "- Pricing backtest (`bench/bench_backtest.py`, also runs alone): October billed "
            "by the real billing run for generated customers on 5 meters, then "
            "`run_backtest` with a draft card plus the CSV and HTML reports, wall and this "
            "process's CPU time; every row checked against an independent re-pricing of the "
            "generated usage; baseline is the bare usage and invoice-line reads.",
            "- Rating: `rate_plan` against bare Decimal per-unit pricing "
            "(`bench/bench_rating.py`).",
            "- Everything runs under a `bench_<random>` prefix (topics, consumer groups, "
            "databases), deleted at the end.",
            "",
            "## Exactness",
            "",
            *exactness_lines(pipe),
            "",
            "- End-to-end latency (`bench/bench_latency.py`): an open-loop load of "
            f"{LATENCY_RATE:,} events/s for {LATENCY_SECONDS:.0f} s (one tick of events "
            "every 10 ms through `UsageProducer.send_many`, the load generator on the same "
            "2 cores) into one worker, first with each tick packed on its own (about 5 "
            "events per record), then with the SDK's 50 ms packing window; an event is "
            "queryable when the meter windows' stored progress for its partition covers its "
            "offset, polled "
            "every 10 ms. Baseline: the same load through a bare confluent-kafka consumer "
            "that decodes with orjson and inserts one row per event with clickhouse-driver "
            "every 50 ms, polled the same way.",
            "- HTTP ingest (`bench/bench_http.py`, also runs alone): `python -m api serve` "
            f"with 1 and 2 uvicorn processes, {HTTP_EVENTS:,} unique events posted in "
            "batches of 100 by 8 and by 1 keep-alive clients (the clients on the same 2 "
            "cores), a fresh topic per run, the first tenth as a warm-up; every 204'd event "
            "is read back from the topic with the bytes the worker reads. Baseline: a bare "
            "confluent-kafka producer (acks=all, idempotent) sending the same events in the "
            "same records. CPU is the server processes' user + system time per event.",
            "- Invoicing (`bench/bench_invoicing.py`): `invoicing.run.run_period` for one "
            "closed month over generated customers and usage, into a fresh database and "
            "topic per run, totals checked against `invoicing.check.expected_totals`; "
            "baseline is the bare I/O the same run performs.",
            "",
        ]
    )
    notes = ROOT / "docs" / "benchmarks.md"
    kept = ""
    if notes.exists() and NOTES_MARKER in notes.read_text():
        kept = notes.read_text().split(NOTES_MARKER, 1)[1]
    table += NOTES_MARKER + kept
    notes.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
