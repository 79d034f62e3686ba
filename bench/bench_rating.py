"""Rating-engine throughput: priced lines per second over generated usage rows.

``run()`` builds one in-memory rate card with a plan per pricing mix, generates
``rows`` (customer, meter) usage rows from a fixed seed, then rates every customer's
period with :func:`rating.rate_plan`: once to warm up, then ``repeats`` timed runs.  It
reports the median.  Generation is outside the timed part; rounding, breakdowns and the
total check are inside it.  Pure CPU work on one core: no services are needed.

Run as ``python bench/bench_rating.py [ROWS]`` (with the repository on the import path,
e.g. after ``make install``); it prints the result as JSON.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Mapping
from decimal import Decimal

from rating import RateCard, Usage, load_rate_card_data, rate_plan

__all__ = ["run"]

_TIERS = [
    {"up_to": 1000, "unit_price": "0"},
    {"up_to": 10000, "unit_price": "0.002", "flat_fee": "5.00"},
    {"up_to": 100000, "unit_price": "0.0015"},
    {"up_to": None, "unit_price": "0.001"},
]

#: meter -> the charge pricing it.  Every model of the engine appears at least once.
_CHARGES: dict[str, dict[str, object]] = {
    "api_calls": {"model": "graduated", "tiers": _TIERS},
    "seats": {"model": "volume", "tiers": _TIERS},
    "storage_gb": {"model": "per_unit", "unit_price": "0.023"},
    "sms": {"model": "package", "package_size": 100, "package_price": "2.50", "free_units": 50},
    "compute_s": {
        "model": "overage",
        "base_fee": "49.00",
        "included_units": 100000,
        "unit_price": "0.0004",
    },
    "payments": {
        "model": "percentage",
        "percent": "2.9",
        "fixed_fee": "0.30",
        "min_per_event": "0.50",
        "max_per_event": "10.00",
    },
}

#: plan -> its metered charges; each plan also has a flat fee and a minimum commitment.
_PLANS: dict[str, tuple[str, ...]] = {
    "starter": ("api_calls", "storage_gb", "sms"),
    "growth": ("api_calls", "seats", "compute_s", "payments"),
    "scale": tuple(_CHARGES),
}


def _card() -> RateCard:
    plans = {}
    for plan, meters in _PLANS.items():
        charges: list[dict[str, object]] = [{"meter": meter, **_CHARGES[meter]} for meter in meters]
        charges.append({"id": "platform", "model": "flat", "amount": "20.00"})
        charges.append({"id": "commitment", "model": "minimum", "amount": "150.00"})
        plans[plan] = {"USD": {"charges": charges}}
    return load_rate_card_data({"plans": plans})


def _usage(rng: random.Random, meter: str) -> Usage:
    if meter == "payments":
        count = rng.randint(0, 8)
        amounts = tuple(Decimal(rng.randint(100, 200_000)).scaleb(-2) for _ in range(count))
        return Usage(quantity=Decimal(count), event_amounts=amounts)
    return Usage(quantity=Decimal(rng.randint(0, 250_000_000)).scaleb(-3))


def _customers(rows: int, seed: int) -> list[tuple[str, dict[str, Usage]]]:
    """(plan, usage) per customer, until ``rows`` (customer, meter) rows exist."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not security
    plans = list(_PLANS)
    customers: list[tuple[str, dict[str, Usage]]] = []
    made = 0
    while made < rows:
        plan = rng.choice(plans)
        meters = _PLANS[plan][: rows - made]
        customers.append((plan, {meter: _usage(rng, meter) for meter in meters}))
        made += len(meters)
    return customers


def _rate_all(card: RateCard, customers: list[tuple[str, Mapping[str, Usage]]]) -> int:
    lines = 0
    for plan, usage in customers:
        lines += len(rate_plan(card, plan, "USD", usage).lines)
    return lines


def run(rows: int = 500_000, seed: int = 7, repeats: int = 3) -> dict[str, object]:
    """Rate ``rows`` usage rows ``repeats`` times after a warm-up; report the median rate."""
    card = _card()
    customers: list[tuple[str, Mapping[str, Usage]]] = list(_customers(rows, seed))
    warm = _rate_all(card, customers[: max(1, len(customers) // 10)])
    durations: list[float] = []
    lines = 0
    for _ in range(repeats):
        start = time.perf_counter()
        lines = _rate_all(card, customers)
        durations.append(time.perf_counter() - start)
    median = statistics.median(durations)
    return {
        "benchmark": "rating.rate_plan",
        "rows": rows,
        "customers": len(customers),
        "lines": lines,
        "seed": seed,
        "repeats": repeats,
        "warmup_lines": warm,
        "seconds": [round(d, 3) for d in durations],
        "median_seconds": round(median, 3),
        "lines_per_second": round(lines / median),
        "rows_per_second": round(rows / median),
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    result = run(int(sys.argv[1])) if len(sys.argv) > 1 else run()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
