"""Reading YAML and JSON documents without ever producing a ``float``: the one loader
of every configuration file (meters, rate cards, customers, auth, usage files).

YAML floats become :class:`~decimal.Decimal` built from the scalar's text; JSON numbers
with a fraction or exponent go through ``json.loads(parse_float=Decimal)``.  Integers stay
``int`` (already exact).  A file that cannot be read or parsed raises
:class:`~schemas.errors.InvalidInput` naming the file and, where known, line and column.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from schemas.errors import InvalidInput, Problem

__all__ = ["load_document", "parse_json", "parse_yaml"]


class _ExactLoader(yaml.SafeLoader):
    """A safe YAML loader whose float scalars are Decimal, read from their text."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    assert isinstance(node, yaml.ScalarNode)
    text = str(loader.construct_scalar(node)).replace("_", "")
    special = {".inf": "Infinity", "+.inf": "Infinity", "-.inf": "-Infinity", ".nan": "NaN"}
    try:
        return Decimal(special.get(text.lower(), text))
    except InvalidOperation:
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot read {text!r} as an exact number", node.start_mark
        ) from None


_ExactLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number a price or quantity can have")


def parse_yaml(text: str, what: str, source: str) -> object:
    """Parse YAML ``text``; ``what`` and ``source`` name it in errors."""
    try:
        return yaml.load(text, Loader=_ExactLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            what,
            [Problem(source, f"not valid YAML{where}: {problem}", fix="correct the YAML syntax")],
        ) from None


def parse_json(text: str, what: str, source: str) -> object:
    """Parse JSON ``text`` with exact numbers; NaN and Infinity are rejected."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" at line {exc.lineno}, column {exc.colno}"
            exc_text = exc.msg
        else:
            exc_text = str(exc)
        raise InvalidInput(
            what,
            [Problem(source, f"not valid JSON{where}: {exc_text}", fix="correct the JSON syntax")],
        ) from None


def load_document(path: str | Path, what: str) -> object:
    """Read a ``.json`` file as JSON and anything else as YAML, keeping numbers exact."""
    file = Path(path)
    source = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(
            what, [Problem(source, "file not found", fix="check the path")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            what, [Problem(source, f"cannot read file: {exc}", fix="pass a readable UTF-8 file")]
        ) from None
    if file.suffix.lower() == ".json":
        return parse_json(text, what, source)
    return parse_yaml(text, what, source)
