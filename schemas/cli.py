"""How every command line of the project runs (``meterline``, ``python -m …``): the
packages define their commands (``add_parsers``), this runs the chosen one."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

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
    answer (retry later) and 2 otherwise (fix the input)."""
    try:
        return int(args.handler(args))
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except MeterlineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
