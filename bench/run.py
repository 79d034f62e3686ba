"""``make bench``: run the benchmarks, write ``bench/results.json`` and ``docs/benchmarks.md``.

Every figure is reported next to a baseline measured in the same run, with the ratio:
these machines are noisy, so absolute rates are context and the ratios are the result.

Benchmarks here:
- rating: ``rating.rate_plan`` over 500k (customer, meter) rows against a baseline of
  bare ``Decimal`` per-unit arithmetic (multiply + quantize) over the same rows — the cost
  of pricing with no models, breakdowns or validation.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_rating  # noqa: E402

ROWS = 500_000
SEED = 7
REPEATS = 3


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


def main() -> int:
    started = datetime.now(UTC)
    print(f"rating: {ROWS} rows, {REPEATS} runs after a warm-up …", flush=True)
    rating = bench_rating.run(ROWS, SEED, REPEATS)
    baseline = decimal_baseline(ROWS, SEED, REPEATS)
    rating_rows = float(rating["rows_per_second"])  # type: ignore[arg-type]
    ratio = rating_rows / baseline["rows_per_second"]
    results = {
        "when": started.isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
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
            f"{platform.python_version()}, 2 cores). Absolute rates are context only: the "
            "ratio to the baseline measured in the same run is the figure to compare.",
            "",
            "| benchmark | result | baseline (same run) | ratio |",
            "| --- | --- | --- | --- |",
            f"| rating: `rate_plan` over {ROWS:,} (customer, meter) rows, all models | "
            f"{rating_rows:,.0f} rows/s ({rating['lines_per_second']:,} priced lines/s) | "
            f"bare Decimal per-unit pricing: {baseline['rows_per_second']:,.0f} rows/s | "
            f"{ratio:.3f} |",
            "",
            "Method: fixed seed, one warm-up, then the median of "
            f"{REPEATS} runs (each run's seconds are in `bench/results.json`).",
            "",
        ]
    )
    (ROOT / "docs" / "benchmarks.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
