"""Run the SIGKILL end-to-end tests again and again with a CPU hog beside them.

    python tests/stress/sigkill_under_load.py [--runs 20] [--hogs 1] [TEST ...]

(``make stress``).  Each round runs the tests in a fresh pytest process against the
local stack (``make up``); the round fails on any failure.  The run stops at the first
failed round and exits 1, so "20 rounds passed" means 20 in a row.  The hogs are
``yes > /dev/null`` processes, killed by pid at the end.  Not part of ``make test``: it
takes about a minute a round.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TESTS = [
    "tests/e2e/test_meters.py::test_all_kinds_exact_through_duplicates_late_malformed_and_sigkill",
    "tests/e2e/test_pipeline.py::test_sigkill_mid_consumption_and_redelivery_stay_exact",
    "tests/e2e/test_meters.py::test_two_workers_rebalance_without_loss_or_double_count",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--hogs", type=int, default=1, help="CPU hogs beside the tests")
    parser.add_argument("--out", default=str(ROOT / "build" / "stress"))
    parser.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(args.hogs)]
    print(f"{args.runs} rounds of {len(args.tests)} tests beside {args.hogs} CPU hog(s)")
    passed = 0
    try:
        for round_no in range(1, args.runs + 1):
            started = time.monotonic()
            log = out / f"round-{round_no}.log"
            with log.open("wb") as sink:
                code = subprocess.call(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        "-q",
                        "-x",
                        "-p",
                        "no:cacheprovider",
                        f"--basetemp={out / f'round-{round_no}'}",
                        *args.tests,
                    ],
                    cwd=ROOT,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=1800,
                )
            took = time.monotonic() - started
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            verdict = "pass" if code == 0 else "FAIL"
            print(f"round {round_no:>3}: {verdict} in {took:5.0f}s  {' '.join(tail)}", flush=True)
            if code != 0:
                print(f"stopped at the first failure; log {log}")
                return 1
            passed += 1
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    print(f"{passed} rounds in a row passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
