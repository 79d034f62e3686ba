"""What a YAML document's nodes may hold, checked before anything is built, and the
plain values of a document without anchors (``schemas.documents`` reads every
configuration file through these).

Refused, every one of a document at once, each with its key path and line: a key written
twice in one mapping; YAML 1.1's number and boolean surprises in plain scalars (a
leading zero, base 60, hexadecimal, octal and binary forms, ``yes``/``no``/``on``/``off``);
number literals over :data:`MAX_NUMBER_CHARS` characters; aliases adding more than
:data:`MAX_EXPANDED_VALUES` values to what is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import yaml

from schemas.errors import Problem

__all__ = ["MAX_EXPANDED_VALUES", "MAX_NUMBER_CHARS", "built", "node_problems"]

#: Values aliases may add to a YAML document beyond what is written (alias bombs).
MAX_EXPANDED_VALUES = 2_000_000
#: The longest number literal read; longer ones are refused before any conversion.
MAX_NUMBER_CHARS = 200

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_STR, _SEQ, _MAP = (f"tag:yaml.org,2002:{kind}" for kind in ("str", "seq", "map"))
_SURPRISING = frozenset((_INT, _FLOAT, _BOOL))  # what a plain scalar may be read as
_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")
_PREFIXED = re.compile(r"[-+]?0([xob])", re.IGNORECASE)
_BASES = {"x": ("hexadecimal", 16), "o": ("octal", 8), "b": ("binary", 2)}


def built(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    """``node`` as Python values, as ``loader.construct_document`` builds them, for a
    document without anchors: mappings with plain string keys, sequences and strings
    are built here; any other node (numbers, dates, merge keys, ...) by the loader."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _STR:
            return node.value
    elif isinstance(node, yaml.SequenceNode):
        if node.tag == _SEQ:
            return [built(loader, item) for item in node.value]
    elif node.tag == _MAP and all(key.tag == _STR for key, _ in node.value):
        return {key.value: built(loader, value) for key, value in node.value}
    return loader.construct_object(node, deep=True)


def node_problems(
    root: yaml.Node, source: str, anchored: bool
) -> Iterator[tuple[tuple[int, int], Problem]]:
    """Every duplicate key and YAML 1.1 surprise under ``root``, each at its key path
    with its line; then, for a document with anchors, the alias expansion limit.

    Without anchors (``anchored`` false: no ``&`` in the text) no node is reached twice,
    so the walk keeps no visited set, checks scalars where their parent lists them, and
    spells a path out only for a problem: a 100k-entry customers file is 1.4M nodes."""
    if anchored:
        yield from _anchored_problems(root, source)
        return
    stack: list[tuple[yaml.Node, _Path]] = [(root, None)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                here: _Path = (path, key.value if isinstance(key, yaml.ScalarNode) else "<key>")
                if isinstance(key, yaml.ScalarNode):
                    if key.tag != _MERGE:
                        found = _key_problem(first, key, here, source)
                        if found is not None:
                            yield found
                    if not key.style and key.tag in _SURPRISING:
                        yield from _scalar_problems(key, here, source)
                else:
                    stack.append((key, here))
                if isinstance(value, yaml.ScalarNode):
                    if not value.style and value.tag in _SURPRISING:
                        yield from _scalar_problems(value, here, source)
                else:
                    stack.append((value, here))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                if isinstance(item, yaml.ScalarNode):
                    if not item.style and item.tag in _SURPRISING:
                        yield from _scalar_problems(item, (path, index), source)
                else:
                    stack.append((item, (path, index)))
        elif isinstance(node, yaml.ScalarNode) and not node.style:  # a scalar document
            yield from _scalar_problems(node, path, source)


#: A key path, built as the walk descends and spelt out only for a problem:
#: ``None`` is the root, ``(parent, key)`` a mapping entry, ``(parent, index)`` an item.
_Path = tuple["_Path", str | int] | None

_MERGE = "tag:yaml.org,2002:merge"


def _spelt(path: _Path) -> str:
    parts: list[str | int] = []
    while path is not None:
        path, part = path
        parts.append(part)
    out = ""
    for part in reversed(parts):
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


def _key_problem(
    first: dict[tuple[str, str], int], key: yaml.ScalarNode, here: _Path, source: str
) -> tuple[tuple[int, int], Problem] | None:
    """A key written a second time in its mapping (``first``: line of each key so far)."""
    line = key.start_mark.line + 1
    written = first.get((key.tag, key.value))
    if written is None:
        first[key.tag, key.value] = line
        return None
    return (
        (key.start_mark.line, key.start_mark.column),
        Problem(
            f"{source}: {_spelt(here)}",
            f"key {key.value!r} is written twice in one mapping (lines {written} and {line});"
            " YAML would keep the last one without a word",
            fix="keep one of them",
        ),
    )


def _scalar_problems(
    node: yaml.ScalarNode, path: _Path, source: str
) -> Iterator[tuple[tuple[int, int], Problem]]:
    problem = _scalar_problem(node)
    if problem is not None:
        message, fix = problem
        at = f"line {node.start_mark.line + 1}"
        yield (
            (node.start_mark.line, node.start_mark.column),
            Problem(f"{source}: {_spelt(path) or '<root>'}", f"{message} ({at})", fix=fix),
        )


def _anchored_problems(root: yaml.Node, source: str) -> Iterator[tuple[tuple[int, int], Problem]]:
    """The walk of a document with anchors: an aliased node is checked once, where it
    was anchored; then the values its aliases add, against :data:`MAX_EXPANDED_VALUES`."""
    stack: list[tuple[yaml.Node, _Path]] = [(root, None)]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:  # an alias: checked where it was anchored
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                here: _Path = (path, key.value if isinstance(key, yaml.ScalarNode) else "<key>")
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE:
                    found = _key_problem(first, key, here, source)
                    if found is not None:
                        yield found
                stack.append((key, here))
                stack.append((value, here))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (path, index)) for index, item in enumerate(node.value))
        elif isinstance(node, yaml.ScalarNode) and not node.style:  # plain: None or ""
            yield from _scalar_problems(node, path, source)
    written = len(seen)
    limit = written + MAX_EXPANDED_VALUES
    expanded = _expanded_size(root, {}, limit)
    if expanded > limit:
        yield (
            (0, 0),
            Problem(
                source,
                f"the document's aliases expand to {expanded:,} values, more than the"
                f" {written:,} written plus the {MAX_EXPANDED_VALUES:,} aliases may add",
                fix="write the repeated parts out, or use fewer nested aliases",
            ),
        )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _scalar_problem(node: yaml.ScalarNode) -> tuple[str, str] | None:
    """What is surprising about a plain scalar YAML 1.1 resolved to a number or boolean."""
    text: str = node.value
    if node.tag in (_INT, _FLOAT) and len(text) > MAX_NUMBER_CHARS:
        return (
            f"a number of {len(text)} characters is longer than the {MAX_NUMBER_CHARS} read",
            "write a shorter number",
        )
    if node.tag == _BOOL and text.lower() not in ("true", "false"):
        value = "true" if text.lower() in ("yes", "on", "y") else "false"
        return (
            f"{text!r} is read as the boolean {value} by YAML 1.1",
            f"write {value}, or quote it ('{text}') if it is text",
        )
    if node.tag not in (_INT, _FLOAT):
        return None
    digits = text.replace("_", "")
    if ":" in digits:
        return (
            f"{text} is a base-60 number in YAML 1.1 ({_sexagesimal(digits)})",
            f"write the number as a decimal, or quote it ('{text}') if it is text",
        )
    prefixed = _PREFIXED.match(digits)
    if prefixed and node.tag == _INT:
        name, base = _BASES[prefixed.group(1).lower()]
        return (
            f"{text} is a {name} number ({_in_base(digits, base)})",
            f"write it in decimal, or quote it ('{text}') if it is text",
        )
    if node.tag == _INT and _LEADING_ZERO.fullmatch(digits):
        return (
            f"{text} has a leading zero, so YAML 1.1 reads it as the octal number"
            f" {_in_base(digits, 8)}",
            f"write {int(digits, 10)} without the leading zero, or quote it ('{text}') if it"
            " is text",
        )
    return None


def _sexagesimal(digits: str) -> str:
    sign, body = ("-", digits[1:]) if digits.startswith("-") else ("", digits.lstrip("+"))
    value = Decimal(0)
    for part in body.split(":"):
        value = value * 60 + Decimal(part)
    return f"{sign}{value}"


def _in_base(digits: str, base: int) -> str:
    sign, body = ("-", digits[1:]) if digits.startswith("-") else ("", digits.lstrip("+"))
    if base != 8 or body[:2].lower() == "0o":
        body = body[2:]
    try:
        return f"{sign}{int(body, base)}"
    except ValueError:  # e.g. 09: not octal either; YAML 1.1 then reads it as text
        return "not a number at all"


def _expanded_size(root: yaml.Node, sizes: dict[int, int], limit: int) -> int:
    """Values in the document with every alias expanded (at most ``limit`` + 1), memoised
    per node so that the count itself stays linear in the document."""
    order: list[yaml.Node] = []
    stack = [root]
    while stack:  # post-order without recursion: nested documents can be deep
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = min(
            1 + sum(max(sizes[id(child)], 1) for child in _children(node)),
            limit + 1,
        )
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
