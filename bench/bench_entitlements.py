"""Entitlement check latency: ``GET /api/v1/customers/{id}/entitlements/{feature}`` with
10,000 customers and a month of per-minute windows, against a same-run baseline.

Standalone: ``.venv/bin/python bench/bench_entitlements.py [--customers N] [--requests N]``
(``make bench-entitlements``; needs the ClickHouse of ``make up``).

The world (a fresh database ``bench_ent_<random>``, dropped at the end):

- **customers**: N (10,000) on the demo card's ``starter`` and ``pro`` plans in USD, one
  in ten with two subjects, billed monthly from the day after today (so the billing
  period holding now began a month ago and every day of it has usage).
- **windows**: per subject, ``api_calls`` and ``llm_tokens`` (the meters the metered
  features read) in ``--sparse-minutes`` (120) distinct random minutes each of the
  period so far, and ``--dense`` (10) customers with a window in *every* minute of the
  period so far for both meters.  Rows are built as ``FeedRow``s and written through
  ``WindowsTable.insert_args`` (the worker's insert: the views fill the minute table and
  its rollups).  The exact count is printed.
- **grants**: one customer in ten holds a 50.00 USD grant in effect.
- **features** (a file of its own): ``api-access`` (starter: 120 calls, exactly what a
  sparse subject has, so those are answered ``limit_reached`` at the limit; pro:
  unlimited), ``llm`` (starter 2,000,000 tokens; pro 50,000,000) and ``sso`` (pro only).

The API is ``python -m api serve`` in a subprocess (one process, as ``make run``).  One
client on one kept-alive connection sends, one after the other, alternately a check for
a random customer and feature (a quantity in three of ten metered checks) and the
**baseline** ``GET /api/v1/whoami`` (the same authentication, routing and rendering,
without reads), after a warm-up; then the same for the dense customers only.  Times are
wall-clock per request as the client sees them.

**Exactness**: every answer is compared with an independent computation from the
generated rows: usage (the subjects' values added up, the period only), the limit,
access (usage below the limit, or usage + quantity within it), what remains, and the
balance (the grant less the spend: each meter's quantity times the card's unit price,
rounded half up to the cent per line, added up).  The run fails on any difference.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from api.server import start_background  # noqa: E402
from invoicing.credit_ledger import grant_row  # noqa: E402
from invoicing.customers import Customer  # noqa: E402
from invoicing.grants import parse_grant  # noqa: E402
from invoicing.periods import Period  # noqa: E402
from rating import load_rate_card  # noqa: E402
from schemas.errors import ServiceUnavailable  # noqa: E402
from schemas.metering.definitions import load_meters  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from schemas.storage.bootstrap import ensure_schema  # noqa: E402
from schemas.storage.credits_table import CreditsTable  # noqa: E402
from schemas.storage.engine import ServerEngine  # noqa: E402
from schemas.storage.feed import FeedRow  # noqa: E402
from schemas.storage.migrations import drop_database  # noqa: E402
from schemas.storage.windows_table import WindowsTable  # noqa: E402

NAMESPACE = "default"
KEY = "ml_bench_entitlements_key_0123"
METERS = ("api_calls", "llm_tokens")
#: The demo card's per-unit prices (checked against the card at start): the independent
#: side of the exactness check prices with these, not with the rating engine.
PRICES = {
    "starter": {"api_calls": "0.002", "llm_tokens": "0.00002", "storage_gb_hours": "0.0125"},
    "pro": {"api_calls": "0.0015", "llm_tokens": "0.000015", "storage_gb_hours": "0.01"},
}
LIMITS: dict[str, dict[str, Decimal | None]] = {
    "api-access": {"starter": Decimal(120), "pro": None},
    "llm": {"starter": Decimal(2_000_000), "pro": Decimal(50_000_000)},
}
FEATURES = {
    "features": [
        {"key": "api-access", "kind": "metered", "meter": "api_calls",
         "plans": {"starter": 120, "pro": None}},
        {"key": "llm", "kind": "metered", "meter": "llm_tokens",
         "plans": {"starter": 2_000_000, "pro": 50_000_000}},
        {"key": "sso", "kind": "boolean", "plans": {"pro": True}},
    ]
}  # fmt: skip
GRANT = Decimal("50.00")


class BenchError(RuntimeError):
    """The run cannot give a trustworthy figure (a wrong answer, an unexpected status)."""


@dataclass
class World:
    customers: list[Customer]
    period: Period
    usage: dict[tuple[str, str], Decimal]  # (subject, meter) -> the period's usage
    granted: set[str]
    rows: int
    dense: list[str]


def anchor_day(now: datetime) -> int:
    """The day after today (so the current period began about a month ago); 1 when that
    day does not exist in every month."""
    day = (now + timedelta(days=1)).day
    return day if day <= 28 else 1


def build(engine: ServerEngine, database: str, args: argparse.Namespace, now: datetime) -> World:
    rng = random.Random(args.seed)  # noqa: S311 - reproducible data, not security
    anchor = anchor_day(now)
    customers = []
    for n in range(args.customers):
        entry: dict[str, Any] = {
            "id": f"cust-{n:05d}",
            "plan": "starter" if n % 2 else "pro",
            "currency": "USD",
            "anchor_day": anchor,
            "start": date(2025, 1, 1),
        }
        if n % 10 == 3:
            entry["subjects"] = [f"cust-{n:05d}-eu", f"cust-{n:05d}-us"]
        customers.append(Customer.model_validate(entry))
    period = customers[0].schedule.period_containing(now.date())
    assert period is not None
    assert period.start <= now < period.end
    minutes = (int(now.timestamp()) - period.start_s) // 60  # whole minutes before now
    dense = [c.id for c in rng.sample(customers, args.dense)]
    usage: dict[tuple[str, str], Decimal] = {}
    windows = WindowsTable(database)
    batch: list[FeedRow] = []
    written = 0

    def add(subject: str, meter: str, minute: int, value: Decimal) -> None:
        nonlocal written
        at_s = period.start_s + 60 * minute
        batch.append(
            FeedRow(NAMESPACE, meter, subject, "{}", at_s, at_s, value, "",
                    at_s * 1000, 0, written + len(batch))
        )  # fmt: skip
        usage[(subject, meter)] = usage.get((subject, meter), Decimal(0)) + value
        if len(batch) >= 200_000:
            flush()

    def flush() -> None:
        nonlocal written
        if batch:
            engine.insert(*windows.insert_args(batch))
            written += len(batch)
            batch.clear()

    dense_set = set(dense)
    for customer in customers:
        for subject in customer.subjects:
            for meter in METERS:
                counted = meter == "api_calls"
                chosen = (
                    range(minutes)
                    if customer.id in dense_set
                    else rng.sample(range(minutes), min(args.sparse_minutes, minutes))
                )
                for minute in chosen:
                    value = Decimal(1) if counted else Decimal(rng.randint(1, 400_000))
                    add(subject, meter, minute, value)
    # usage that must not count: the minute before the period
    for customer in customers[:50]:
        for meter in METERS:
            add(customer.subjects[0], meter, -1, Decimal(7))
            usage[(customer.subjects[0], meter)] -= Decimal(7)
    flush()

    granted = {c.id for c in customers if int(c.id[-5:]) % 10 == 7}
    ledger = CreditsTable(database)
    rows = []
    for customer_id in sorted(granted):
        grant = parse_grant(
            {"id": f"bench-{customer_id}", "amount": str(GRANT), "currency": "USD",
             "effective_at": "2025-01-01T00:00:00Z"},
            customer_id=customer_id, billed_currencies={"USD"},
            grant_id=f"bench-{customer_id}", now=now,
        )  # fmt: skip
        rows.append(grant_row(NAMESPACE, grant, int(now.timestamp() * 1000)))
    engine.insert(*ledger.insert(rows))
    return World(customers, period, usage, granted, written, dense)


def expected(
    world: World, customer: Customer, feature: str, quantity: Decimal | None
) -> dict[str, Any]:
    """The answer computed independently from the generated rows (module docstring)."""
    totals = {
        meter: sum((world.usage.get((s, meter), Decimal(0)) for s in customer.subjects), Decimal(0))
        for meter in METERS
    }
    out: dict[str, Any] = {"customer": customer.id, "plan": customer.plan}
    if feature == "sso":
        out.update(has_access=customer.plan == "pro", usage=None, limit=None, remaining=None)
    else:
        meter = "api_calls" if feature == "api-access" else "llm_tokens"
        limit = LIMITS[feature][customer.plan]
        used = totals[meter]
        if limit is None:
            access, remaining = True, None
        else:
            access = used + quantity <= limit if quantity is not None else used < limit
            remaining = max(Decimal(0), limit - used)
        out.update(has_access=access, usage=used, limit=limit, remaining=remaining)
    balance = None
    if customer.id in world.granted:
        spend = sum(
            (
                (totals.get(meter, Decimal(0)) * Decimal(price)).quantize(
                    Decimal("0.01"), rounding=ROUND_HALF_UP
                )
                for meter, price in PRICES[customer.plan].items()
            ),
            Decimal(0),
        )
        balance = GRANT - spend
    out["balance"] = balance
    return out


def compare(got: dict[str, Any], want: dict[str, Any]) -> None:
    def number(text: str | None) -> Decimal | None:
        return None if text is None else Decimal(text)

    seen = {
        "customer": got["customer"],
        "plan": got["plan"],
        "has_access": got["has_access"],
        "usage": number(got["usage"]),
        "limit": number(got["limit"]),
        "remaining": number(got["remaining"]),
        "balance": number(got["balance"]["remaining"]) if got["balance"] else None,
    }
    if seen != want:
        raise BenchError(f"wrong answer:\n  got  {seen}\n  want {want}")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(cuts[94] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def measure(
    port: int, world: World, ids: list[str], count: int, warmup: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    """``count`` checks of random customers among ``ids``, each followed by a baseline
    request, after ``warmup`` of each; every check's answer compared (exactness)."""
    by_id = {c.id: c for c in world.customers}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {KEY}"}
    checks: list[float] = []
    baseline: list[float] = []

    def get(path: str) -> tuple[float, bytes]:
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        took = time.perf_counter() - started
        if answer.status != 200:
            raise BenchError(f"GET {path}: {answer.status} {body[:300]!r}")
        return took, body

    for n in range(warmup + count):
        customer = by_id[rng.choice(ids)]
        feature = rng.choice(("api-access", "llm", "sso"))
        quantity = None
        if feature != "sso" and rng.random() < 0.3:
            quantity = Decimal(rng.randint(1, 200))
        path = f"/api/v1/customers/{customer.id}/entitlements/{feature}"
        took, body = get(path + (f"?quantity={quantity}" if quantity is not None else ""))
        compare(json.loads(body), expected(world, customer, feature, quantity))
        base, _ = get("/api/v1/whoami")
        if n >= warmup:
            checks.append(took)
            baseline.append(base)
    connection.close()
    return checks, baseline


def check_prices() -> None:
    meters = load_meters(ROOT / "deploy/demo/meters.yaml")
    card = load_rate_card(ROOT / "deploy/demo/rate-card.yaml", known_meters=meters.slugs())
    for plan, prices in PRICES.items():
        charges = {c.meter: c for c in card.charges(plan, "USD")}
        for meter, price in prices.items():
            if Decimal(price) != getattr(charges[meter].model, "unit_price", None):
                raise BenchError(f"the demo card's {plan} {meter} price is not {price}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_prices()
    settings = Settings()
    database = "bench_ent_" + uuid.uuid4().hex[:8]
    engine = ServerEngine.of(settings)
    now = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="bench-entitlements-"))
    try:
        ensure_schema(engine, database)
        started = time.monotonic()
        world = build(engine, database, args, now)
        built_s = time.monotonic() - started
        settled_s = settle(engine, database)
        print(
            f"world: {len(world.customers)} customers, {world.rows:,} window rows, "
            f"{len(world.granted)} grants, period {world.period.label} ({built_s:.0f} s;"
            f" merges settled in {settled_s:.0f} s)"
        )
        customers = [
            {"id": c.id, "plan": c.plan, "currency": c.currency, "anchor_day": c.anchor_day,
             "start": "2025-01-01", "subjects": list(c.subjects)}
            for c in world.customers
        ]  # fmt: skip
        (work / "customers.yaml").write_text(yaml.safe_dump({"customers": customers}))
        (work / "features.yaml").write_text(yaml.safe_dump(FEATURES))
        auth = {"api_keys": [{"name": "bench", "key": KEY, "namespace": NAMESPACE}]}
        (work / "auth.yaml").write_text(yaml.safe_dump(auth))
        env = {
            **os.environ,
            "METERLINE_CLICKHOUSE_DATABASE": database,
            "METERLINE_CUSTOMERS_FILE": str(work / "customers.yaml"),
            "METERLINE_FEATURES_FILE": str(work / "features.yaml"),
            "METERLINE_API_AUTH_FILE": str(work / "auth.yaml"),
            "METERLINE_NAMESPACE": NAMESPACE,
        }
        api = start_background(env=env, log_path=work / "api.log", timeout=120)
        try:
            port = int(api.url.rsplit(":", 1)[1])
            rng = random.Random(args.seed + 1)  # noqa: S311 - reproducible load
            everyone = [c.id for c in world.customers]
            checks, baseline = measure(port, world, everyone, args.requests, args.warmup, rng)
            dense, dense_base = measure(port, world, world.dense, args.dense_requests, 20, rng)
        finally:
            api.stop()
        dense_rows = (
            sum(1 for c in world.customers if c.id in set(world.dense) for _ in c.subjects)
            * len(METERS)
            * ((int(now.timestamp()) - world.period.start_s) // 60)
        )
        return {
            "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "customers": len(world.customers),
            "window_rows": world.rows,
            "dense_customers": len(world.dense),
            "dense_rows": dense_rows,
            "sparse_minutes": args.sparse_minutes,
            "grants": len(world.granted),
            "period": [world.period.start.isoformat(), world.period.end.isoformat()],
            "checks": percentiles(checks),
            "baseline_whoami": percentiles(baseline),
            "dense_checks": percentiles(dense),
            "dense_baseline_whoami": percentiles(dense_base),
            "exact": True,
            "load_avg": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        if args.keep:
            print(f"kept database {database}", file=sys.stderr)
            engine.close()
        else:
            drop(engine, database)


def drop(engine: ServerEngine, database: str) -> None:
    """Drop the bench's database.  On this server a drop waits for the merges of the
    fresh parts and may outlast a query's timeout; the server goes on with it, so a
    timed-out drop is waited for (up to 15 minutes), then reported if still there."""
    try:
        engine.execute(drop_database(database).to_sql())
        engine.close()
        return
    except ServiceUnavailable as exc:
        print(f"drop of {database} still running ({exc}); waiting for it", file=sys.stderr)
    engine.close()
    engine = ServerEngine.of(Settings())
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            if not engine.execute(f"SELECT 1 FROM system.databases WHERE name = '{database}'"):
                return
            time.sleep(5)
        print(f"warning: drop {database} by hand (DROP DATABASE {database})", file=sys.stderr)
    finally:
        engine.close()


def settle(engine: ServerEngine, database: str) -> float:
    """Wait until the server has no merge running in ``database`` (the month of windows
    just written is merged, as a month written over a month would be); the seconds
    waited."""
    started = time.monotonic()
    while time.monotonic() - started < 900:
        sql = f"SELECT count() FROM system.merges WHERE database = '{database}'"
        if int(engine.execute(sql)[0][0]) == 0:
            break
        time.sleep(2)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--sparse-minutes", type=int, default=120)
    parser.add_argument("--dense", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--dense-requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the database (profiling)")
    parser.add_argument("--out", default=str(ROOT / "bench/entitlements-results.json"))
    args = parser.parse_args()
    result = run(args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
