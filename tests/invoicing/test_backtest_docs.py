"""The worked example of docs/invoicing.md (*Backtest*), run as documented: its usage is
billed by the real billing run on the ClickHouse server, then the documented command's
output must be exactly the page's; and the command refuses a database it would have had
to create."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.documents import parse_yaml
from schemas.settings import Settings
from schemas.storage.bootstrap import ensure_schema
from schemas.storage.engine import ServerEngine
from schemas.storage.migrations import drop_database, tables_of
from tests.conftest import isolated_settings, settings_env
from tests.invoicing.backtest_kit import (
    DOC_USAGE,
    DRAFT_FILE,
    NAMESPACE,
    OCTOBER,
    bill,
    store_usage,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "invoicing.md").read_text()
SECTION = DOC[DOC.index("## Backtest") : DOC.index("## The demo")]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def example() -> tuple[list[str], str]:
    """The documented command's arguments (after ``meterline``) and its output."""
    (body,) = [body for lang, body in FENCE.findall(SECTION) if lang == "console"]
    first, _, output = body.partition("\n")
    assert first.startswith("$ meterline backtest "), first
    return shlex.split(first.removeprefix("$ meterline ")), output


def run(settings: Settings, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "meterline", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def billed(stack: Settings, tmp_path: Path) -> Iterator[Settings]:
    """October of the example, billed into a fresh database on the server."""
    settings = isolated_settings(stack, tmp_path, namespace=NAMESPACE)
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    database = settings.clickhouse_database
    ensure_schema(engine, database)
    day = OCTOBER.start_s + 86400
    store_usage(engine, database, DOC_USAGE, day, day + 120)
    assert len(bill(engine, database).invoices) == 4
    yield settings
    engine.execute(drop_database(database).to_sql())
    engine.close()


def test_the_documented_example_prints_what_the_docs_show(billed: Settings) -> None:
    args, expected = example()
    result = run(billed, args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert "nothing emitted" in result.stderr


def test_the_documented_usage_and_draft_are_what_the_example_runs() -> None:
    rows = re.findall(r"^\| ([a-z-]+) \| (\d+) \| (\d+) \| (\d+) \|$", SECTION, re.MULTILINE)
    meters = ("api_calls", "llm_tokens", "storage_gb_hours")
    shown = {subject: dict(zip(meters, map(int, values), strict=True)) for subject, *values in rows}
    assert shown == DOC_USAGE
    (snippet,) = [body for lang, body in FENCE.findall(SECTION) if lang == "yaml"]
    draft = parse_yaml((REPO / DRAFT_FILE).read_text(), "rate card", DRAFT_FILE)
    assert parse_yaml(snippet, "rate card", "docs") == draft


def test_the_html_and_csv_reports_of_the_example(billed: Settings, tmp_path: Path) -> None:
    args, _ = example()
    page, sheet = tmp_path / "backtest.html", tmp_path / "backtest.csv"
    assert run(billed, [*args, "--format", "html", "--output", str(page)]).returncode == 0
    assert run(billed, [*args, "--format", "csv", "--output", str(sheet)]).returncode == 0
    html = page.read_text()
    assert html.count("<svg ") == 2
    assert "<title>llm_tokens, re-priced (draft): 18.00 USD</title>" in html
    assert "overall,,,,,,USD,,43.75,40.25,-3.50,-8.00,," in sheet.read_text().splitlines()


def test_a_database_without_tables_is_refused_not_created(stack: Settings, tmp_path: Path) -> None:
    settings = isolated_settings(stack, tmp_path)
    args, _ = example()
    result = run(settings, args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "error: invalid backtest: 1 problem\n  - METERLINE_CLICKHOUSE_DATABASE: ClickHouse"
        f" database '{settings.clickhouse_database}' holds no Meterline tables"
    )
    engine = ServerEngine(settings.clickhouse_host, settings.clickhouse_tcp_port)
    assert tables_of(engine, settings.clickhouse_database) == {}
    engine.close()
