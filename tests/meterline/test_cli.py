"""The ``meterline`` command: every command behind one name, each with its own help,
each one definition shared with its package's ``python -m`` entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meterline.cli import parser
from rating import cli as rating_cli
from tests.conftest import ROOT

NAMED_BY_THE_README = [
    "up",
    "down",
    "status",
    "demo",
    "worker",
    "api",
    "send",
    "quote",
    "bill",
    "void",
    "reconcile",
    "backfill",
    "migrate",
    "init",
    "reset",
]


def commands() -> dict[str, object]:
    (group,) = [a for a in parser()._actions if a.dest == "command"]
    return dict(group.choices)  # type: ignore[arg-type]


def test_help_lists_every_command() -> None:
    found = commands()
    assert set(NAMED_BY_THE_README) <= set(found)
    listing = parser().format_help()
    for name in found:
        assert f"    {name}" in listing


@pytest.mark.parametrize("name", sorted(["send", "worker", "bill", "quote", "backfill", "api"]))
def test_each_command_has_its_own_options(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        parser().parse_args([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: meterline {name}")
    others = {"send": "--period", "bill": "--rate-card", "quote": "--period", "worker": "--from"}
    if name in others:
        assert others[name] not in text  # not every option for every command


def test_quote_is_one_definition_behind_two_names(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "quote",
        "--rate-card",
        str(ROOT / "deploy/demo/rate-card.yaml"),
        "--plan",
        "pro",
        "--currency",
        "USD",
        "--usage",
        "api_calls=1500.5",
    ]
    from meterline.cli import main

    assert main(args) == 0
    through_meterline = json.loads(capsys.readouterr().out)
    assert rating_cli.main(args) == 0
    assert json.loads(capsys.readouterr().out) == through_meterline
    assert through_meterline["total"] == "2.25"  # 1500.5 × 0.0015 = 2.25075


def test_bad_input_exits_2_naming_the_field(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text('{"specversion": "1.0"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "meterline", "send", str(events)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "line 1: id" in done.stderr
    assert "nothing was sent" in done.stderr
