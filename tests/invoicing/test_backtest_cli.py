"""``backtest`` as a user runs it, with bad input: exit 2, the field and the fix, no
traceback — all checked before ClickHouse is asked anything, so no service is needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRAFT = "deploy/demo/rate-card-draft.yaml"


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env["PYTHONPATH"] = str(REPO)
    env["METERLINE_CLICKHOUSE_TCP_PORT"] = "1"  # nothing listens: input is checked first
    return subprocess.run(
        [sys.executable, "-m", module, "backtest", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_bad_draft_card_names_the_field_and_the_fix(tmp_path: Path) -> None:
    card = tmp_path / "draft.yaml"
    card.write_text(
        "plans:\n  pro:\n    USD:\n      charges:\n"
        "        - meter: api_calls\n          model: tiered\n          unit_price: 0.01\n"
    )
    err = refused(run("invoicing", "--rate-card", str(card), "--period", "2026-10"))
    assert err.startswith(f"error: invalid rate card {card}: 1 problem\n")
    assert "  - plans.pro.USD.charges[0].model: unknown model 'tiered' (fix: use one of:" in err


def test_a_missing_draft_card() -> None:
    err = refused(run("meterline", "--rate-card", "nope.yaml", "--period", "2026-10"))
    assert "nope.yaml: file not found (fix: check the path)" in err


def test_every_bad_period_at_once() -> None:
    result = run("invoicing", "--rate-card", DRAFT, "--period", "2026-13", "--period", "2026-9")
    assert refused(result) == (
        "error: invalid backtest: 2 problems\n"
        "  - --period: '2026-13' is not a month or months (fix: write YYYY-MM or a range"
        " YYYY-MM..YYYY-MM, e.g. 2026-10 or 2026-07..2026-09)\n"
        "  - --period: '2026-9' is not a month or months (fix: write YYYY-MM or a range"
        " YYYY-MM..YYYY-MM, e.g. 2026-10 or 2026-07..2026-09)\n"
    )


def test_an_output_folder_that_does_not_exist(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "report.html"
    result = run("meterline", "--rate-card", DRAFT, "--period", "2026-10", "--output", str(target))
    assert f"--output: the folder '{target.parent}' does not exist" in refused(result)


def test_an_unknown_customer() -> None:
    result = run("invoicing", "--rate-card", DRAFT, "--period", "2026-10", "--customer", "acne")
    assert "--customer: unknown customers ['acne']" in refused(result)


def test_a_bad_format_is_refused_by_the_parser() -> None:
    result = run("invoicing", "--rate-card", DRAFT, "--period", "2026-10", "--format", "pdf")
    assert result.returncode == 2
    assert "invalid choice: 'pdf' (choose from 'csv', 'html', 'table')" in result.stderr


@pytest.mark.parametrize("module", ["meterline", "invoicing"])
def test_both_names_reach_the_command(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "backtest", "--help"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--rate-card RATE_CARD --period PERIOD" in result.stdout
