"""The stream stage of ``make bench`` alone, with its same-run baseline.

    python bench/stream_stage.py [--events-per-subject 10000] [--repeats 2] [--workers 1]
                                 [--baseline-code DIR] [--live]
                                 [--window-states needed,full]

Produces the generated telemetry (20 subjects, 10 % duplicates, packed records) into
fresh topics, times the bare confluent-kafka consume + orjson baseline on them, then one
supervised worker (``python -m streams worker``) per run, each run right after a bare
consume of its own topic (``ratio_paired``: the median of the runs' ratios to their own
bare consume, beside the ratio of the medians; ``ratio_fastest_bare``: the median against
the fastest bare consume of the run, the least flattering): events/s from the first stored
event until everything is stored (every raw event, and windows holding exactly the
generated totals), and beside it until everything is also committed (zero consumer lag;
the worker commits on a timer, which on a run of a few seconds moves this figure by up to
a timer period), the worker's process CPU per event (supervisor and child, every
thread), the ClickHouse server's and the broker's CPU per event over the same span, and
exact totals.  Prints one JSON line per stage; everything is deleted after.

The telemetry spans 31 days of October by default: a backfill, in which nearly every
event is an aggregated window row of its own, the costliest shape for ClickHouse's
window views.  ``--live`` stamps it over the minute before the run instead, the shape of
live traffic, whose events share windows.

``--baseline-code DIR`` runs the same stage a second time with the worker started from
another checkout (``git worktree add DIR <commit>``) and that checkout's own native
module (``bench/baseline_native.py``), on the same topics in the same run, the two
alternating run by run: the same-run ablation a change to the worker's hot path is
measured with.

``--window-states needed,full`` runs the same code on a database of each windows-table
state setting (``schemas.storage.window_states``), alternating run by run, and prints the
second against the first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_pipeline  # noqa: E402

from schemas.storage.window_states import WindowStates  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-per-subject", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--baseline-code", type=Path, default=None)
    parser.add_argument(
        "--window-states",
        default="",
        help="the windows tables' state sets to run on, alternating run by run: "
        "'needed,full' is the same-run ablation of the default and the full set (default: the "
        "environment's METERLINE_CLICKHOUSE_WINDOW_STATES, needed unless set)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="stamp the events over the minute before the run (live traffic, events share "
        "windows) instead of 31 days of October (a backfill, a window row per event)",
    )
    args = parser.parse_args()
    try:
        states = [WindowStates(name) for name in args.window_states.split(",") if name]
    except ValueError:
        parser.error(f"--window-states: choose from {', '.join(WindowStates)}")
    if states and args.baseline_code is not None:
        parser.error("--window-states and --baseline-code are two ablations: run one at a time")
    with bench_pipeline.stage_bench(args.events_per_subject, args.repeats, args.live) as bench:
        stage = bench_pipeline.timed_stage
        bench.watch_pids = bench_pipeline.server_pids()
        out: dict[str, Any] = {
            "events": bench.events,
            "telemetry": "live (the last minute)" if args.live else "backfill (31 days)",
            "producer": stage("producer SDK", bench.producer),
            "consume_baseline": stage("bare consume + orjson", bench.consume_baseline),
        }
        roots = [bench_pipeline.ROOT]
        if args.baseline_code is not None:
            roots.append(args.baseline_code.resolve())
        found = stage(
            f"stream stage, {args.workers} worker(s), code in {', '.join(map(str, roots))}",
            lambda: bench.streams(args.workers, roots, window_states=states),
        )
        out["stream"] = found[0]
        if args.baseline_code is not None:
            out["stream_baseline_code"] = found[1]
        for other in found[1:] if states else ():
            out[f"stream_{other['window_states']}"] = other
    base, stream = out["consume_baseline"], out["stream"]
    out["ratio_events_per_s"] = stream["median"] / base["median"]
    out["ratio_paired"] = stream["paired_ratio"]["median"]
    out["ratio_fastest_bare"] = stream["median"] / bench_pipeline.fastest_bare(stream, base)
    out["ratio_committed_events_per_s"] = (
        stream["committed_events_per_s"]["median"] / base["median"]
    )
    out["ratio_cpu_per_event"] = (
        stream["cpu_us_per_event"]["median"] / base["cpu_us_per_event"]["median"]
    )
    for name, value in out.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "checks"}
        print(json.dumps({name: value}, default=str))
    if "stream_baseline_code" in out:
        old = out["stream_baseline_code"]
        print(
            json.dumps(
                {
                    "against_baseline_code": {
                        "cpu_per_event": stream["cpu_us_per_event"]["median"]
                        / old["cpu_us_per_event"]["median"],
                        "events_per_s": stream["median"] / old["median"],
                        "committed_events_per_s": stream["committed_events_per_s"]["median"]
                        / old["committed_events_per_s"]["median"],
                    }
                }
            )
        )
    for other in found[1:] if states else ():
        print(
            json.dumps(
                {
                    f"{other['window_states']}_against_{stream['window_states']}": {
                        "cpu_per_event": other["cpu_us_per_event"]["median"]
                        / stream["cpu_us_per_event"]["median"],
                        "events_per_s": other["median"] / stream["median"],
                        "ratio_events_per_s": other["median"] / base["median"],
                        "ratio_paired": other["paired_ratio"]["median"],
                        "server_cpu_per_event": {
                            name: value / stream["server_cpu_us_per_event"][name]
                            for name, value in other["server_cpu_us_per_event"].items()
                        },
                    }
                }
            )
        )
    exact = (
        all(side["exact"] for side in found) and out.get("stream_baseline_code", stream)["exact"]
    )
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
