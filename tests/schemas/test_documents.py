"""YAML and JSON reading never produces a float."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import yaml_nodes
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


def test_every_surprise_in_a_document_is_reported_at_once_with_its_key_path() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_yaml("a:\n  b: 010\n  c: [1:30, yes]\n  b: 2\n", "t", "f.yaml")
    assert [p.path for p in caught.value.problems] == [
        "f.yaml: a.b",
        "f.yaml: a.c[0]",
        "f.yaml: a.c[1]",
        "f.yaml: a.b",
    ]
    assert "written twice in one mapping (lines 2 and 4)" in caught.value.problems[3].message


def test_quoted_text_and_plain_decimals_and_dates_read_as_before() -> None:
    data = parse_yaml("a: '010'\nb: \"1:30\"\nc: 'yes'\nd: 10\ne: true\nf: 2026-01-31\n", "t", "t")
    assert isinstance(data, dict)
    assert data["a"] == "010"
    assert (data["b"], data["c"], data["d"], data["e"]) == ("1:30", "yes", 10, True)
    assert str(data["f"]) == "2026-01-31"


def test_merge_keys_may_override_what_they_merge() -> None:
    data = parse_yaml("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n", "t", "t")
    assert data == {"base": {"x": 1, "y": 2}, "use": {"x": 1, "y": 3}}


def test_an_alias_bomb_is_refused_before_it_is_built() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(InvalidInput) as caught:
        parse_yaml("\n".join(lines) + "\n", "t", "bomb.yaml")
    assert "aliases expand to" in caught.value.problems[0].message


def test_numbers_longer_than_the_limit_are_refused_in_both_formats() -> None:
    with pytest.raises(InvalidInput) as yaml_caught:
        parse_yaml(f"a: {'1' * 5000}\n", "t", "t.yaml")
    assert "5000 characters" in yaml_caught.value.problems[0].message
    with pytest.raises(InvalidInput) as json_caught:
        parse_json(f'{{"a": {"1" * 5000}}}', "t", "t.json")
    assert "5000 digits" in json_caught.value.problems[0].message


def test_a_file_over_its_size_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("a: 1\n" * 100)
    with pytest.raises(InvalidInput) as caught:
        load_document(tmp_path / "big.yaml", "thing", max_bytes=99)
    assert "more than the 99 a thing may have" in caught.value.problems[0].message


def test_a_large_document_without_aliases_is_read_whatever_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The alias limit counts what aliases add, not what is written: a customers file of
    150k entries (2.1M values) is not an alias bomb."""
    monkeypatch.setattr(yaml_nodes, "MAX_EXPANDED_VALUES", 50)
    written = "".join(f"- [a{i}, {i}]\n" for i in range(100))  # 301 values, no alias
    assert len(parse_yaml(written, "t", "t.yaml")) == 100  # type: ignore[arg-type]
    anchored = "x: &x [1, 2, 3]\nys:\n" + "".join(f"  - {i}\n" for i in range(100))
    anchored += "z: [*x, *x]\n"  # 6 values added by aliases, within 50
    assert parse_yaml(anchored, "t", "t.yaml")["z"] == [[1, 2, 3], [1, 2, 3]]  # type: ignore[index]
    bomb = "x: &x [1, 2, 3, 4, 5, 6, 7, 8, 9]\nz: [" + ", ".join(["*x"] * 10) + "]\n"
    with pytest.raises(InvalidInput) as caught:  # 100 added: over 50
        parse_yaml(bomb, "t", "bomb.yaml")
    assert "aliases expand to" in caught.value.problems[0].message


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.dates(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8),
)
_TREES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text("abcxyz_", min_size=1, max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(_TREES)
def test_the_anchor_free_reading_builds_what_the_loader_builds(tree: object) -> None:
    """A document without ``&`` is built by the lean walk, one with it by PyYAML's
    constructor; a comment holding ``&`` switches paths without changing the document."""
    text = yaml.safe_dump({"root": tree}, sort_keys=False)
    assert parse_yaml(text, "t", "t.yaml") == parse_yaml(text + "# & switches\n", "t", "t.yaml")


def test_problems_name_the_same_path_on_both_walks() -> None:
    text = "a:\n  - b: 1\n  - b: 010\n    c: [1, 0x1f]\n    c: 2\nd: yes\n"
    with pytest.raises(InvalidInput) as lean:
        parse_yaml(text, "t", "f.yaml")
    with pytest.raises(InvalidInput) as anchored:
        parse_yaml(text + "# &\n", "t", "f.yaml")
    fields = [p.path for p in lean.value.problems]
    assert fields == [p.path for p in anchored.value.problems]
    assert fields == ["f.yaml: a[1].b", "f.yaml: a[1].c[1]", "f.yaml: a[1].c", "f.yaml: d"]
