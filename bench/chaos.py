"""``make chaos``: the fault matrix, against a real Kafka and ClickHouse of its own.

    python bench/chaos.py [CASE ...]      (default: every case, in order)

Starts a second local stack (``bench/chaos_kit.py``: ``$METERLINE_HOME/chaos``, ports
39092/39093/39000/38123) so that killing its broker or ClickHouse disturbs nothing else,
runs each case of ``bench/chaos_cases.py`` on an isolated pipeline (topics, database,
consumer group, supervised workers), prints one line per case, writes the figures to
``docs/reliability.md`` (above its hand-written part) and ``bench/chaos-results.json``,
and stops the stack.  Exit 1 when any case is not exact.  Every loop is bounded in
count and time; everything targets 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from chaos_cases import CASES, Result  # noqa: E402
from chaos_kit import ChaosStack  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "bench" / "chaos-results.json"
MARKER = "<!-- Everything below this line is written by hand; make chaos keeps it. -->"


def main(argv: list[str]) -> int:
    wanted = [c for c in CASES if not argv or c.__name__ in argv]
    unknown = set(argv) - {c.__name__ for c in CASES}
    if unknown:
        print(f"unknown cases {sorted(unknown)}; known: {[c.__name__ for c in CASES]}")
        return 2
    home = Path(os.environ.get("METERLINE_HOME") or Path.home() / ".cache/meterline") / "chaos"
    stack = ChaosStack(home)
    work = home / "runs" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=work / "chaos.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    print(f"chaos stack under {home}; client logs in {work / 'chaos.log'}", flush=True)
    stack.up()
    results: list[Result] = []
    started = time.monotonic()
    try:
        for case in wanted:
            try:
                result = case(stack, work / case.__name__)
            except Exception as exc:  # noqa: BLE001 - a case that cannot run is a failed case
                traceback.print_exc()
                result = Result(case.__name__, 0, 0, f"could not run: {exc}", 0.0, False)
                stack.up()  # bring back whatever the case left down
            results.append(result)
            print(result.line(), flush=True)
    finally:
        if not os.environ.get("CHAOS_KEEP_STACK"):
            stack.down()
    took = time.monotonic() - started
    failed = [r.case for r in results if not r.exact]
    print(
        f"{len(results)} cases in {took / 60:.1f} min; "
        + (f"NOT EXACT: {failed}" if failed else "all exact")
    )
    if not argv:
        write(results, took)
    return 1 if failed else 0


def write(results: list[Result], took: float) -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        "| case | events sent (duplicates) | faults injected | exact | recovered in "
        "| exact after the last send | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        notes = "; ".join(f"{k}: {v}" for k, v in r.notes.items())
        exact = "yes" if r.exact else f"**no** (|diff| {r.difference})"
        rows.append(
            f"| `{r.case}` | {r.sent:,} ({r.duplicates:,}) | {r.faults} | {exact} | "
            f"{r.recover_s:.1f} s | {r.settle_s:.1f} s | {notes} |"
        )
    head = "\n".join(
        [
            "# Reliability",
            "",
            f"## The fault matrix (`make chaos`, {when}, {took / 60:.1f} min)",
            "",
            "Written by `bench/chaos.py`; each case runs on the real Kafka and ClickHouse of",
            "its own stack and ends with the exactness check (every record committed, every",
            "(subject, meter) total equal to the generated truth, one raw row per unique",
            "event). *Recovered in*: from the end of the last fault until the check held",
            "(senders still sending part of that time); *exact after the last send*: from",
            "the last event acknowledged until the check held.",
            "",
            *rows,
            "",
        ]
    )
    keep = ""
    if DOC.exists() and MARKER in DOC.read_text():
        keep = DOC.read_text().split(MARKER, 1)[1]
    DOC.write_text(f"{head}\n{MARKER}{keep}")
    history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    history.append(
        {
            "at": when,
            "minutes": round(took / 60, 1),
            "cases": [{**r.__dict__, "difference": str(r.difference)} for r in results],
        }
    )
    RESULTS.write_text(json.dumps(history, indent=1, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
