"""How every command line of the project runs (``meterline``, ``python -m …``): the
packages define their commands (``add_parsers``), this runs the chosen one."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from schemas.errors import MeterlineError, ServiceUnavailable

__all__ = ["command_line", "run_handler", "run_parsed"]


def command_line(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    add_parsers: Callable[[Any], None],
) -> int:
    """Parse ``argv`` against the commands ``add_parsers`` defines and run the chosen one."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run_parsed(parser, argv)


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` with ``parser`` (whose commands set a ``handler``) and run it."""
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_handler(args)


def run_handler(args: argparse.Namespace) -> int:
    """Run a parsed command line's ``handler``: the command's exit code, or a
    :class:`MeterlineError` printed as ``error: ...`` with 3 when a service did not
    answer (retry later) and 2 otherwise (fix the input), and a settings value the
    environment got wrong named by its variable, also with 2."""
    try:
        return int(args.handler(args))
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except MeterlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        for line in settings_errors(exc):
            print(f"error: {line}", file=sys.stderr)
        return 2


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per wrong setting: its environment variable, the value it holds and what
    the setting takes (``schemas.settings``)."""
    lines = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        name = f"METERLINE_{field.upper()}" if field else "settings"
        value = f"={error['input']!r}" if field and not isinstance(error["input"], dict) else ""
        lines.append(f"{name}{value}: {error['msg']}")
    return lines
