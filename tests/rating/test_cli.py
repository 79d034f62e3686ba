"""``python -m rating quote`` as a user runs it: the docs' examples, exactly, and bad input."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from rating import RateCard, kinds, load_rate_card_data
from schemas.documents import parse_yaml

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "pricing.md"
CARD = "rating/examples/pricing.yaml"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang == language]


def doc_examples() -> list[tuple[str, str]]:
    """(command, expected output) for every console block of docs/pricing.md."""
    examples = []
    for body in blocks("console"):
        first, _, rest = body.partition("\n")
        assert first.startswith("$ python -m rating "), first
        examples.append((first.removeprefix("$ "), rest.rstrip("\n")))
    return examples


def run(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "rating", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def example_id(value: str) -> str:
    return value.removeprefix(f"python -m rating quote --rate-card {CARD} ")[:60]


@pytest.mark.parametrize(("command", "expected"), doc_examples(), ids=example_id)
def test_docs_examples_print_exactly_what_the_docs_show(command: str, expected: str) -> None:
    args = shlex.split(command)[3:]  # drop "python -m rating"
    result = run(args)
    if expected.startswith("error:"):
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.rstrip("\n") == expected
        assert "Traceback" not in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.rstrip("\n") == expected


def test_docs_cover_every_model_with_a_priced_example() -> None:
    outputs = "\n".join(expected for _, expected in doc_examples())
    for kind in kinds():
        assert f"| `{kind}` |" in DOC.read_text(), f"{kind} missing from the model table"
        assert f"·  {kind}  ·" in outputs, f"no worked example prices a {kind} charge"


def test_docs_rate_card_snippets_are_the_shipped_example_plans(example_card: RateCard) -> None:
    documented: set[str] = set()
    for body in blocks("yaml"):
        data = parse_yaml(body, "doc snippet", "docs/pricing.md")
        if not (isinstance(data, dict) and "plans" in data):
            continue
        snippet = load_rate_card_data(data)  # every snippet is a valid card
        for name, plan in snippet.plans.items():
            if name in example_card.plans:
                assert plan == example_card.plans[name], f"docs differ from the file for {name}"
                documented.add(name)
    assert documented == set(example_card.plans), "every example plan is shown in the docs"


def test_docs_usage_snippets_are_the_shipped_usage_files() -> None:
    text = DOC.read_text()
    shown = re.findall(r"Usage file `([^`]+)`:\n\n```yaml\n(.*?)```", text, re.DOTALL)
    assert len(shown) == 2
    for path, body in shown:
        file_data = parse_yaml((REPO / path).read_text(), "usage", path)
        assert parse_yaml(body, "usage", "docs") == file_data


def test_json_output_is_exact_and_totals_the_rounded_lines() -> None:
    result = run(["quote", "--rate-card", CARD, "--plan", "minimum", "--usage", "api_calls=1234"])
    assert result.returncode == 0, result.stderr
    quote = json.loads(result.stdout, parse_float=Decimal)
    assert quote["currency"] == "USD"
    amounts = [Decimal(line["amount"]) for line in quote["lines"]]
    assert amounts == [Decimal("12.34"), Decimal("10.00"), Decimal("27.66")]
    assert quote["total"] == "50.00"


def test_usage_file_in_json_with_quantity_and_events(tmp_path: Path) -> None:
    usage = tmp_path / "usage.json"
    usage.write_text('{"payments": {"quantity": 2, "events": [10.00, 0.10]}}')
    result = run(["quote", "--rate-card", CARD, "--plan", "percentage", "--usage-file", str(usage)])
    assert result.returncode == 0, result.stderr
    # 10.00 -> 0.29 + 0.30 = 0.59; 0.10 -> 0.0029 + 0.30 = 0.3029 < 0.50 -> 0.50
    assert json.loads(result.stdout)["total"] == "1.09"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plan", "flat", "--rate-card", "missing.yaml"], "missing.yaml: file not found"),
        (["--rate-card", CARD, "--plan", "nope"], "plan: no plan named 'nope'"),
        (["--rate-card", CARD, "--plan", "per-unit"], "--currency: plan 'per-unit' is priced in"),
        (["--rate-card", CARD, "--plan", "flat", "--currency", "EUR"], "currency: plan 'flat'"),
        (
            ["--rate-card", CARD, "--plan", "graduated", "--usage", "api_calls=ten"],
            "--usage api_calls=ten: 'ten' is not a number",
        ),
        (
            ["--rate-card", CARD, "--plan", "graduated", "--usage", "api_calls=-1"],
            "--usage api_calls=-1: '-1': Input should be greater than or equal to 0",
        ),
        (
            ["--rate-card", CARD, "--plan", "graduated", "--usage", "api_calls"],
            "expected METER=QUANTITY",
        ),
        (
            ["--rate-card", CARD, "--plan", "graduated", "--usage", "seats=1"],
            "usage.seats: this price list does not price meter 'seats'",
        ),
    ],
)
def test_bad_input_exits_2_with_the_field_and_the_fix(args: list[str], message: str) -> None:
    result = run(["quote", *args])
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: invalid ")
    assert message in result.stderr
    assert "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_rate_card_lists_every_problem(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(
        "plans:\n  p:\n    usd:\n      charges:\n"
        "        - {meter: m, model: package, package_size: 0, package_price: -1}\n"
    )
    usage = tmp_path / "usage.yaml"
    usage.write_text("m: {quantity: -2}\n")
    result = run(["quote", "--rate-card", str(card), "--plan", "p", "--usage-file", str(usage)])
    assert result.returncode == 2
    for path in (
        "plans.p.usd:",
        "plans.p.usd.charges[0].package_size:",
        "plans.p.usd.charges[0].package_price:",
        "usage.m.quantity:",
    ):
        assert f"  - {path}" in result.stderr
    assert "4 problems" in result.stderr


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text("plans:\n  p: [\n")
    result = run(["quote", "--rate-card", str(card), "--plan", "p"])
    assert result.returncode == 2
    assert "not valid YAML at line" in result.stderr


def test_argument_errors_exit_2() -> None:
    assert run(["quote", "--plan", "x"]).returncode == 2
    both = run(
        ["quote", "--rate-card", CARD, "--plan", "flat", "--usage", "a=1", "--usage-file", "u.yaml"]
    )
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_runs_from_any_directory_with_absolute_paths(tmp_path: Path) -> None:
    result = run(["quote", "--rate-card", str(REPO / CARD), "--plan", "flat"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"] == "99.00"


def test_the_docs_python_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    (source,) = blocks("python")
    monkeypatch.chdir(REPO)
    exec(compile(source, str(DOC), "exec"), {})
