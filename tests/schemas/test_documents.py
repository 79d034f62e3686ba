"""YAML and JSON reading never produces a float."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from schemas.documents import load_document, parse_json, parse_yaml
from schemas.errors import InvalidInput


def walk(value: object) -> list[object]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in walk(item)]
    if isinstance(value, list):
        return [v for item in value for v in walk(item)]
    return [value]


def test_yaml_numbers_are_decimal_or_int_never_float() -> None:
    data = parse_yaml(
        "a: 0.1\nb: 1_000.5\nc: 3\nd: .inf\ne: -2.5e-3\nf: '0.30'\ng: [1.10, 2]\n", "t", "t"
    )
    assert data == {
        "a": Decimal("0.1"),
        "b": Decimal("1000.5"),
        "c": 3,
        "d": Decimal("Infinity"),
        "e": Decimal("-2.5e-3"),
        "f": "0.30",
        "g": [Decimal("1.10"), 2],
    }
    assert not any(isinstance(v, float) for v in walk(data))
    assert isinstance(data, dict)
    assert str(data["g"][0]) == "1.10"  # the trailing zero is kept


def test_json_numbers_are_exact_and_constants_rejected() -> None:
    assert parse_json('{"a": 0.1, "b": 2}', "t", "t") == {"a": Decimal("0.1"), "b": 2}
    with pytest.raises(InvalidInput) as caught:
        parse_json('{"a": NaN}', "t", "source.json")
    assert caught.value.problems[0].path == "source.json"


def test_syntax_errors_name_the_place() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_yaml("a: [1,\n", "t", "f.yaml")
    assert "line 2" in caught.value.problems[0].message
    with pytest.raises(InvalidInput) as caught:
        parse_json("{\n  'a': 1}", "t", "f.json")
    assert "line 2, column 3" in caught.value.problems[0].message


def test_load_document_picks_the_format_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"a": 1.5}')
    (tmp_path / "x.yml").write_text("a: 1.5\n")
    assert load_document(tmp_path / "x.json", "t") == {"a": Decimal("1.5")}
    assert load_document(tmp_path / "x.yml", "t") == {"a": Decimal("1.5")}
    with pytest.raises(InvalidInput) as caught:
        load_document(tmp_path / "missing.yaml", "rate card")
    assert caught.value.problems[0].message == "file not found"
