"""Reading YAML and JSON documents without ever producing a ``float``: the one loader
of every configuration file (meters, rate cards, customers, auth, usage files).

YAML floats become :class:`~decimal.Decimal` built from the scalar's text; JSON numbers
with a fraction or exponent go through ``json.loads(parse_float=Decimal)``.  Integers stay
``int`` (already exact).  A file that cannot be read or parsed raises
:class:`~schemas.errors.InvalidInput` naming the file and, where known, line and column.

A document reads as it is written, or not at all.  These are refused, every one of a
document at once, each with its key path and line:

* a key written twice in one mapping (YAML and JSON would keep the last one silently);
* YAML 1.1's number and boolean surprises in plain scalars: a leading zero (``010``,
  octal 8), base 60 (``1:30``, 90), hexadecimal, octal and binary forms, and ``yes``,
  ``no``, ``on``, ``off`` as booleans.  Quoted, they are text; written as decimal
  numbers or ``true``/``false``, they are what they look like;
* numbers of more than :data:`MAX_NUMBER_CHARS` characters, files over their size limit
  (:data:`MAX_DOCUMENT_BYTES` unless the caller gives one), and documents whose aliases
  add more than :data:`MAX_EXPANDED_VALUES` values to what is written.

The YAML checks walk the parsed nodes before anything is built (``schemas.yaml_nodes``).
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml

from schemas.errors import InvalidInput, Problem
from schemas.memory import collection_paused
from schemas.yaml_nodes import MAX_EXPANDED_VALUES, MAX_NUMBER_CHARS, built, node_problems

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "MAX_EXPANDED_VALUES",
    "MAX_NUMBER_CHARS",
    "load_document",
    "parse_json",
    "parse_yaml",
]

#: Default size limit of a document file.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when installed
_FLOAT = "tag:yaml.org,2002:float"


class _ExactLoader(_BASE):  # type: ignore[misc,valid-type]  # libyaml's class is untyped
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


_ExactLoader.add_constructor(_FLOAT, _construct_decimal)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number a price or quantity can have")


def parse_yaml(text: str, what: str, source: str) -> object:
    """Parse YAML ``text``; ``what`` and ``source`` name it in errors."""
    loader = _ExactLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        anchored = "&" in text
        problems = sorted(node_problems(node, source, anchored), key=lambda found: found[0])
        if problems:
            raise InvalidInput(what, [problem for _, problem in problems])
        return loader.construct_document(node) if anchored else built(loader, node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            what,
            [Problem(source, f"not valid YAML{where}: {problem}", fix="correct the YAML syntax")],
        ) from None
    finally:
        loader.dispose()


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"key {key!r} is written twice in one object")
        out[key] = value
    return out


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(
            f"a number of {len(text)} digits is longer than the {MAX_NUMBER_CHARS} read"
        )
    return int(text)


def _bounded_decimal(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(
            f"a number of {len(text)} characters is longer than the {MAX_NUMBER_CHARS} read"
        )
    return Decimal(text)


def parse_json(text: str, what: str, source: str) -> object:
    """Parse JSON ``text`` with exact numbers; NaN, Infinity and repeated keys are rejected."""
    try:
        return json.loads(
            text,
            parse_float=_bounded_decimal,
            parse_int=_bounded_int,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except _DuplicateKey as exc:
        raise InvalidInput(
            what, [Problem(source, f"{exc}; JSON would keep the last one", fix="keep one of them")]
        ) from None
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


def load_document(path: str | Path, what: str, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> object:
    """Read a ``.json`` file as JSON and anything else as YAML, keeping numbers exact.

    A file over ``max_bytes`` is refused before it is read."""
    file = Path(path)
    source = str(path)
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise InvalidInput(
                what,
                [
                    Problem(
                        source,
                        f"the file has {size:,} bytes, more than the {max_bytes:,} a {what}"
                        " may have",
                        fix=f"split it, or keep a {what} under {max_bytes // 1024:,} KiB",
                    )
                ],
            )
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(
            what, [Problem(source, "file not found", fix="check the path")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            what, [Problem(source, f"cannot read file: {exc}", fix="pass a readable UTF-8 file")]
        ) from None
    with collection_paused():  # a large document is one batch of objects, none cyclic
        if file.suffix.lower() == ".json":
            return parse_json(text, what, source)
        return parse_yaml(text, what, source)
