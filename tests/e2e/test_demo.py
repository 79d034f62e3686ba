"""``make demo``'s billing steps (close M-2, meter late M-2 usage, close M-1, check every
invoice against an independent recomputation) pass whatever second of the minute they
start at.  Two isolated pipelines run them at once: one starting 0.7 s before a minute
ends, one 0.3 s after the next one begins."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploy import demo, demo_plan_change
from schemas.settings import Settings
from tests.conftest import WorkerProcess, isolated_settings
from tests.e2e.pipeline_kit import prepare, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_demo_billing_passes_at_the_end_and_at_the_start_of_a_minute(
    stack: Settings, tmp_path: Path
) -> None:
    pools: list[WorkerProcess] = []
    demos: list[demo.Demo] = []
    try:
        for name in ("end", "start"):
            settings = isolated_settings(stack, tmp_path / name)
            logs = tmp_path / name / "logs"
            logs.mkdir(parents=True)
            pool = WorkerProcess(settings, logs)
            pools.append(pool)
            engine = prepare(settings)
            loaded = demo.load(settings, engine, events_per_subject=100)
            for label, telemetry in loaded.months.items():
                demo.send(settings, telemetry, label)
            worker = pool.start()
            demos.append(
                replace(
                    loaded,
                    worker_alive=lambda worker=worker: worker.poll() is None,
                    worker_log=logs,
                )
            )
        for pool in pools:
            wait_caught_up(pool.settings, pool, timeout=180)

        minute = (int(time.time()) // 60 + 2) * 60  # a boundary at least a minute away
        starts = {"end": minute - 0.7, "start": minute + 0.3}
        results: dict[str, bool] = {}
        began: dict[str, float] = {}

        def run(name: str, one: demo.Demo) -> None:
            time.sleep(max(0.0, starts[name] - time.time()))
            began[name] = time.time()
            results[name] = demo.billing_steps(one)[0]

        threads = [
            threading.Thread(target=run, args=(name, one))
            for name, one in zip(("end", "start"), demos, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        seconds = {name: datetime.fromtimestamp(t, UTC).second for name, t in began.items()}
        assert seconds == {"end": 59, "start": 0}, began
        assert results == {"end": True, "start": True}
    finally:
        for pool in pools:
            pool.stop_all()
        for one in demos:
            one.engine.close()


def test_demo_plan_change_bills_prorated_fees_as_computed_by_hand(
    stack: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan change of ``make demo`` (``deploy/demo_plan_change.py``) on an isolated
    pipeline: two invoices for hooli, each fee line as the by-hand computation says."""
    settings = isolated_settings(stack, tmp_path)
    engine = prepare(settings)
    try:
        loaded = demo.load(settings, engine, events_per_subject=1)
        assert demo.plan_change_step(loaded, demo.close_month, demo.step)
        out = capsys.readouterr().out
        want = demo_plan_change.expected_fees(loaded.last)
        assert f"team      fees {want['team']} USD, recomputed by hand {want['team']}: ok" in out
        assert "(its first period, " in out
        assert "flat fee in advance for " in out
        # billed again, nothing new is emitted and the stored invoices still check out
        assert demo.plan_change_step(loaded, demo.close_month, demo.step)
        assert "0 invoices issued now, 2 issued before" in capsys.readouterr().out
    finally:
        engine.close()
