"""Per-event cost of the worker's decode + meter + digest: reference path vs fast path.

``run()`` generates the demo's telemetry (:func:`ingest.telemetry.generate`, the demo's
subjects and meters, 10% retried duplicates), encodes each event as the producer does
(:func:`schemas.wire.encode_event`), then puts every line through

* the reference path: ``decode_event`` + ``contributions`` + ``content_hash``;
* the fast path: ``schemas.metering.fastpath.decode`` + ``meter``, and the reference path for
  each line the fast path hands back (``decode`` returned ``None``);
* the worker's chain: the native decoder's fused decode + meter
  (``FastMeters.native.decode``) first, then the fast path for what it leaves (``native``;
  left out when the native module is not installed).

Each pass is timed ``repeats`` times, alternating; the best of each is reported, as µs
per event of process CPU time (``time.process_time``) and of wall time.  Generation and
encoding are outside the timed part.  After timing, every line's fast result is checked
against the reference (untimed), so a figure is never reported for a wrong answer.  Pure
CPU on one core: no services are needed.

Run as ``python bench/fastpath_micro.py [EVENTS]`` (with the repository on the import
path, e.g. after ``make install``); it prints a table and the result as JSON.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest.telemetry import generate
from schemas.errors import InvalidInput
from schemas.metering.contributions import Unmeterable, contributions
from schemas.metering.definitions import MeterSet, load_meters
from schemas.metering.fastpath import FastMeters, decode, meter
from schemas.wire import content_hash, decode_event, encode_event

__all__ = ["run"]

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = ["acme", "globex", "initech", "umbrella-eu", "umbrella-us"]  # as deploy/demo.py
START = datetime(2026, 10, 1, tzinfo=UTC)


def _reference(line: bytes, meters: MeterSet) -> object:
    try:
        event = decode_event(line)
        rows = contributions(event, meters)
    except (InvalidInput, Unmeterable):
        return None
    return rows, content_hash(event)


def _reference_pass(lines: Sequence[bytes], meters: MeterSet) -> int:
    for line in lines:
        _reference(line, meters)
    return 0


def _native_pass(lines: Sequence[bytes], meters: MeterSet, fast: FastMeters) -> int:
    """The worker's chain: the native decoder's fused decode + meter first, the lean path
    for what it leaves; the lines handed back to the reference path."""
    fell_back = 0
    native = fast.native
    for line in lines:
        full = native.decode(line, False, False)  # as the worker calls it
        if full is None:
            fell_back += _fast_pass([line], meters, fast)
        elif full[7] is None:
            _source, _id, type_, subject, time_ms, data, _digest, _rows = full
            try:
                meter(fast, type_, subject, time_ms, data, False)
            except Unmeterable:
                continue
    return fell_back


def _fast_pass(lines: Sequence[bytes], meters: MeterSet, fast: FastMeters) -> int:
    """The lines handed back to the reference path (each is also metered by it)."""
    fell_back = 0
    for line in lines:
        decoded = decode(line)
        if decoded is None:
            fell_back += 1
            _reference(line, meters)
            continue
        _source, _id, type_, subject, time_ms, data, _digest = decoded
        try:
            meter(fast, type_, subject, time_ms, data, False)
        except Unmeterable:
            continue  # a dead letter; the demo telemetry has none
    return fell_back


def _timed(work: Callable[[], int]) -> tuple[float, float, int]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def _check(lines: Sequence[bytes], meters: MeterSet, fast: FastMeters) -> None:
    """Every line the fast path (and the native decoder) decides agrees with the reference
    (untimed)."""
    for line in lines:
        decoded = decode(line)
        if decoded is None:
            continue
        if fast.native is not None:
            full = fast.native.decode(line, False)
            lean = meter(fast, *decoded[2:6], False)
            if full is not None and (
                repr(full[:7]) != repr(decoded)
                or (full[7] is not None and repr(full[7]) != repr(lean))
            ):
                raise SystemExit(f"the native decoder disagrees with the fast path on {line!r}")
        event = decode_event(line)
        want = (event.source, event.id, event.type, event.subject, event.time_ms, event.data)
        rows = meter(fast, event.type, event.subject, event.time_ms, decoded[5], False)
        if (
            decoded[:6] != want
            or decoded[6] != content_hash(event)
            or repr(rows) != repr([astuple(c) for c in contributions(event, meters)])
        ):
            raise SystemExit(f"the fast path disagrees with the reference on {line!r}")


def run(events: int = 200_000, repeats: int = 3) -> dict[str, object]:
    meters = load_meters(ROOT / "deploy" / "demo" / "meters.yaml")
    fast = FastMeters(meters)
    per_subject = max(events // len(SUBJECTS), 1)
    telemetry = generate(SUBJECTS, START, timedelta(days=31), per_subject)
    lines = [encode_event(event) for event in telemetry.events]
    best: dict[str, tuple[float, float]] = {}
    fell_back = 0
    for _ in range(repeats):
        passes: list[tuple[str, Callable[[], int]]] = [
            ("reference", lambda: _reference_pass(lines, meters)),
            ("fast", lambda: _fast_pass(lines, meters, fast)),
        ]
        if fast.native is not None:
            passes.append(("native", lambda: _native_pass(lines, meters, fast)))
        for name, work in passes:
            cpu, wall, result = _timed(work)
            fell_back = result if name == "fast" else fell_back
            old = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(old[0], cpu), min(old[1], wall))
    _check(lines, meters, fast)
    n = len(lines)
    native = {
        f"native_{kind}_us": round(best["native"][i] / n * 1e6, 2)
        for i, kind in enumerate(("cpu", "wall"))
        if "native" in best
    }
    return {
        "events": n,
        "repeats": repeats,
        "python": platform.python_version(),
        "reference_cpu_us": round(best["reference"][0] / n * 1e6, 2),
        "reference_wall_us": round(best["reference"][1] / n * 1e6, 2),
        "fast_cpu_us": round(best["fast"][0] / n * 1e6, 2),
        "fast_wall_us": round(best["fast"][1] / n * 1e6, 2),
        **native,
        "fell_back": fell_back,
        "fell_back_share": round(fell_back / n, 6),
    }


def main(argv: Sequence[str]) -> None:
    result = run(int(argv[0])) if argv else run()
    n = result["events"]
    print(f"{n} events (demo telemetry), best of {result['repeats']}, µs/event:")
    print(f"  {'path':<10} {'CPU':>8} {'wall':>8}")
    for name in ("reference", "fast", "native"):
        if f"{name}_cpu_us" not in result:
            continue
        print(f"  {name:<10} {result[f'{name}_cpu_us']:>8} {result[f'{name}_wall_us']:>8}")
    print(f"  fell back to the reference: {result['fell_back']} ({result['fell_back_share']:.2%})")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
