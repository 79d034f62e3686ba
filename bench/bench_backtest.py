"""Pricing backtest at scale: 100k customers × 5 meters re-priced under a draft card.

Set-up (not timed): ``customers`` subscriptions on 5 meters and their October usage
(``bench/backtest_workload.py``), stored through ``WindowsTable.insert_args`` (the
worker's write path).  October is then billed by the real billing run (``run_period``,
no Kafka publisher: the invoices are stored exactly as billing stores them), so the
backtest reads real invoices.

Timed: what ``meterline backtest`` does — the customers file read and checked
(:func:`invoicing.customers.load_customers`, YAML as the docs write it, 100k entries),
:func:`invoicing.backtest.run_backtest` (the invoiced periods and their usage read in
bulk, every subscription re-priced with the draft card, rows and totals), then the CSV
and the HTML report rendered, as the command does (cycle collector paused).  Wall time
and this process's CPU time (user + system; ClickHouse's own is not in it) for a
warm-up and ``repeats`` runs.  Only the interpreter's start, the imports and the meters
and card files (a few kB) are left out.

Baseline, in the same run: the bare reads the backtest needs, with clickhouse-driver and
no product logic — one ``SELECT`` of every subject's usage per meter as of the cutoff
(grouped by subject and meter) and one of the invoices' line amounts per (invoice,
meter).  ``ratio`` = backtest seconds / baseline seconds: the cost of re-pricing and
reporting on top of the reads.

Exactness, every run: with the billed card every row's difference is zero; with the
draft card every row equals an independent recomputation — the generated usage, added
up per customer, priced with ``rate_plan`` — and every invoiced amount equals the
billing run's own lines.  Any difference raises :class:`BenchError`.

Run as ``python bench/bench_backtest.py [CUSTOMERS]``; it prints the result as JSON.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from backtest_workload import BILLED, CUTOFF_S, DRAFT, METERS, MONTH, PERIOD, customers_of, feed_of
from bench_pipeline import BenchError, summary
from clickhouse_driver import Client

from invoicing.backtest import (
    Backtest,
    BacktestRequest,
    backtest_csv,
    backtest_html,
    meter_key,
    run_backtest,
)
from invoicing.customers import Customer, load_customers
from invoicing.run import BillingRun, run_period
from invoicing.usage import customer_usage
from rating import RateCard, rate_plan
from schemas.memory import collection_paused
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.invoices_table import InvoicesTable
from schemas.storage.migrations import drop_database
from schemas.storage.sql import lit
from schemas.storage.windows_table import WindowsTable

__all__ = ["backtest", "table"]

TARGET_SECONDS = 30.0


class BacktestBench:
    def __init__(self, customers: int, seed: int) -> None:
        self.settings = Settings()
        self.database = "bench_" + uuid.uuid4().hex[:8] + "_backtest"
        rng = random.Random(seed)  # noqa: S311 - reproducible data, not security
        self.customers = customers_of(customers, rng)
        self.folder = tempfile.TemporaryDirectory(prefix="meterline-backtest-")
        self.customers_file = Path(self.folder.name) / "customers.yaml"
        entries = [c.model_dump(mode="json", exclude_defaults=True) for c in self.customers]
        self.customers_file.write_text(yaml.safe_dump({"customers": entries}, sort_keys=False))
        self.feed, self.truth = feed_of(self.customers, rng, self.settings.namespace)
        self.feed_rows = len(self.feed)
        self.billed: dict[tuple[str, str], Decimal] = {}

    def engine(self) -> ServerEngine:
        return ServerEngine(self.settings.clickhouse_host, self.settings.clickhouse_tcp_port)

    def prepare(self) -> dict[str, float]:
        """Store the usage and bill October with the real billing run."""
        engine = self.engine()
        ensure_schema(engine, self.database)
        start = time.perf_counter()
        windows = WindowsTable(self.database)
        for first in range(0, len(self.feed), 200_000):
            engine.insert(*windows.insert_args(self.feed[first : first + 200_000]))
        self.feed_rows, self.feed = len(self.feed), []  # the command's heap holds no feed
        stored = time.perf_counter()
        result = run_period(
            BillingRun(
                self.settings.namespace,
                self.database,
                MONTH,
                self.customers,
                BILLED,
                METERS,
                cutoff_s=CUTOFF_S,
            ),
            engine=engine,
            publish=None,
            now=datetime.fromtimestamp(CUTOFF_S + 30, UTC),
        )
        engine.close()
        if len(result.invoices) != len(self.customers):
            raise BenchError(f"billed {len(result.invoices)} of {len(self.customers)} customers")
        for invoice in result.invoices:
            for line in invoice.rated.lines:
                key = (invoice.customer.id, meter_key(line.meter, line.model))
                self.billed[key] = self.billed.get(key, Decimal(0)) + line.amount
        return {"usage_seconds": stored - start, "billing_seconds": time.perf_counter() - stored}

    def request(
        self, card: RateCard, name: str, customers: tuple[Customer, ...]
    ) -> BacktestRequest:
        ns, db = self.settings.namespace, self.database
        return BacktestRequest(ns, db, (MONTH,), customers, card, METERS, name)

    def timed(self, card: RateCard, name: str) -> tuple[Backtest, dict[str, float]]:
        """The customers file loaded, one backtest and both reports, with wall and CPU
        seconds."""
        engine = self.engine()
        engine.execute("SELECT 1")  # connected before the clock starts
        wall, cpu = time.perf_counter(), _cpu()
        customers = load_customers(self.customers_file)
        load_wall, load_cpu = time.perf_counter() - wall, _cpu() - cpu
        if customers != self.customers:
            raise BenchError("the customers file read back differs from what was written")
        started = time.perf_counter()
        result = run_backtest(self.request(card, name, customers), engine)
        run_wall, run_cpu = time.perf_counter() - started, _cpu() - cpu - load_cpu
        with collection_paused():  # as the command renders its report
            csv_bytes, csv_s = _clocked(lambda: len(backtest_csv(result)))
            html_bytes, html_s = _clocked(lambda: len(backtest_html(result)))
        engine.close()
        seconds = {
            "load_seconds": load_wall,
            "load_cpu_seconds": load_cpu,
            "run_seconds": run_wall,
            "run_cpu_seconds": run_cpu,
            "csv_seconds": csv_s,
            "html_seconds": html_s,
            "seconds": time.perf_counter() - wall,
            "cpu_seconds": _cpu() - cpu,
            "csv_bytes": csv_bytes,
            "html_bytes": html_bytes,
        }
        return result, seconds

    def check_same_card(self, result: Backtest) -> None:
        moved = [r for r in result.rows if r.difference != 0]
        if moved or result.invoices != len(self.customers):
            raise BenchError(
                f"the billed card re-priced {len(moved)} rows differently (e.g. {moved[:1]}),"
                f" {result.invoices} invoices for {len(self.customers)} customers"
            )

    def check_draft(self, result: Backtest) -> None:
        """Every row against the generated usage priced with the draft, and the lines."""
        expected: dict[tuple[str, str], Decimal] = {}
        for index, customer in enumerate(self.customers):
            by_subject = {
                subject: {m.slug: self.truth.get((subject, m.slug), Decimal(0)) for m in METERS}
                for subject in customer.subjects
            }
            quantities, _ = customer_usage(customer, index, METERS, by_subject)
            for line in rate_plan(DRAFT, customer.plan, customer.currency, quantities).lines:
                key = (customer.id, meter_key(line.meter, line.model))
                expected[key] = expected.get(key, Decimal(0)) + line.amount
        wrong = [
            r
            for r in result.rows
            if r.repriced != expected.get((r.customer_id, r.meter), Decimal(0))
            or r.invoiced != self.billed.get((r.customer_id, r.meter), Decimal(0))
        ]
        keys = {*expected, *self.billed}  # a true-up the draft no longer needs is a row too
        if wrong or len(result.rows) != len(keys):
            raise BenchError(
                f"{len(wrong)} rows differ from the independent re-pricing (e.g. {wrong[:1]});"
                f" {len(result.rows)} rows, {len(keys)} expected"
            )

    def baseline(self) -> float:
        """The bare reads: every subject's usage per meter as of the cutoff, and the
        invoices' line amounts per (invoice, meter)."""
        ns, db = lit(self.settings.namespace), self.database
        usage = (
            "SELECT subject, meter, sumMerge(value_sum), countMerge(event_count)"
            f" FROM {WindowsTable(db).name} WHERE namespace = {ns}"
            f" AND window_start >= toDateTime({PERIOD.start_s})"
            f" AND window_start < toDateTime({PERIOD.end_s})"
            f" AND ingest_minute < toDateTime({CUTOFF_S}) GROUP BY subject, meter"
        )
        lines = (
            f"SELECT invoice_id, meter, sum(amount) FROM {InvoicesTable(db).lines}"
            f" WHERE namespace = {ns} GROUP BY invoice_id, meter"
        )
        client = Client(host=self.settings.clickhouse_host, port=self.settings.clickhouse_tcp_port)
        client.execute("SELECT 1")
        start = time.perf_counter()
        got = len(client.execute(usage)) + len(client.execute(lines))
        seconds = time.perf_counter() - start
        client.disconnect()
        if got < len(self.truth):
            raise BenchError(f"the baseline read {got} rows, fewer than {len(self.truth)}")
        return seconds

    def cleanup(self) -> None:
        self.folder.cleanup()
        engine = self.engine()
        engine.execute(drop_database(self.database).to_sql())
        engine.close()


def _cpu() -> float:
    """User + system seconds of this process."""
    return time.process_time()


def _note(text: str) -> None:
    print(f"[backtest bench] {text}", file=sys.stderr, flush=True)


def _clocked(action: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    value = action()
    return value, time.perf_counter() - start


def backtest(customers: int = 100_000, seed: int = 7, repeats: int = 3) -> dict[str, Any]:
    """Set up, check the billed card gives no difference, then a warm-up and ``repeats``
    timed backtests with the draft card, each checked, each beside the bare reads."""
    wall = time.perf_counter()
    bench = BacktestBench(customers, seed)
    runs: list[dict[str, float]] = []
    bases: list[float] = []
    try:
        prepared = bench.prepare()
        stored, billed = prepared["usage_seconds"], prepared["billing_seconds"]
        _note(f"set up: usage stored in {stored:.0f}s, October billed in {billed:.0f}s")
        same, same_seconds = bench.timed(BILLED, "billed card")
        bench.check_same_card(same)
        _note(f"billed card: no difference in any of {len(same.rows)} rows")
        del same  # as in the command, one backtest's rows are alive at a time
        rows = 0
        for number in range(repeats + 1):
            result, seconds = bench.timed(DRAFT, "draft card")
            bench.check_draft(result)
            rows = len(result.rows)
            del result
            base = bench.baseline()
            if number:
                runs.append(seconds)
                bases.append(base)
            _note(
                f"{'run' if number else 'warm-up'} {number}: {seconds['seconds']:.2f}s wall,"
                f" {seconds['cpu_seconds']:.2f}s CPU; baseline {base:.2f}s"
            )
    finally:
        bench.cleanup()
    median = summary([r["seconds"] for r in runs])["median"]
    return {
        "benchmark": "invoicing.backtest.run_backtest + CSV + HTML",
        "customers": customers,
        "meters": len(METERS),
        "subjects": sum(len(c.subjects) for c in bench.customers),
        "feed_rows": bench.feed_rows,
        "rows": rows,
        "seed": seed,
        "repeats": repeats,
        "prepare": prepared,
        "same_card_seconds": same_seconds["seconds"],
        **{key: summary([r[key] for r in runs]) for key in runs[0]},
        "baseline_seconds": summary(bases),
        "ratio": median / summary(bases)["median"],
        "target_seconds": TARGET_SECONDS,
        "within_target": median <= TARGET_SECONDS,
        "exact": True,
        "wall_seconds": time.perf_counter() - wall,
    }


def table(bt: dict[str, Any]) -> list[str]:
    """The ``make bench`` row: wall and CPU seconds against the goal and the bare reads."""
    wall, cpu, base = bt["seconds"], bt["cpu_seconds"], bt["baseline_seconds"]
    alone, load = bt["run_seconds"]["median"], bt["load_seconds"]["median"]
    goal = "met" if bt["within_target"] else "**missed**"
    return [
        f"| pricing backtest: {bt['customers']:,} customers × {bt['meters']} meters "
        f"({bt['rows']:,} rows; customers file, read, re-price, CSV + HTML), goal ≤ "
        f"{bt['target_seconds']:.0f} s {goal}; exact: {'yes' if bt['exact'] else 'NO'} | "
        f"{wall['median']:.1f} s wall (±{wall['spread_pct']:.0f} %; loading the customers "
        f"{load:.1f} s, the backtest without the reports {alone:.1f} s), "
        f"{cpu['median']:.1f} s CPU | bare reads of the same usage and invoice "
        f"lines: {base['median']:.2f} s | {bt['ratio']:.1f}× |",
    ]


if __name__ == "__main__":
    figures = backtest(int(sys.argv[1])) if len(sys.argv) > 1 else backtest()
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
