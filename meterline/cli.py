"""``meterline COMMAND [options]``: every command of the project behind one name, each
with its own help (``meterline COMMAND --help``).

This module only parses and dispatches.  Each package keeps its commands and their
options (``add_parsers`` in ``streams.cli``, ``invoicing.cli``, ``api.cli``,
``rating.cli``, ``ingest.cli``), so ``python -m streams worker`` and ``meterline worker``
are one definition with two names.  The local stack's commands (``up``, ``down``,
``status``, ``env``, ``start``, ``stop``, ``demo``) run the scripts in the checkout's
``deploy/``, as the Makefile does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from api import cli as api_cli
from ingest import cli as ingest_cli
from invoicing import cli as invoicing_cli
from rating import cli as rating_cli
from schemas.cli import run_parsed
from schemas.errors import InvalidInput
from streams import cli as streams_cli

__all__ = ["main", "parser"]

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="meterline",
        description="Usage metering and billing: events into Kafka, windows in ClickHouse, "
        "exact invoices.  `meterline COMMAND --help` shows a command's options.",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _script(sub, "up", "start Kafka and ClickHouse on 127.0.0.1 (installs them when missing)")
    _script(sub, "down", "stop everything started here: pipeline, demo API, Kafka, ClickHouse")
    _script(sub, "status", "health of Kafka, ClickHouse and the pipeline's processes")
    _script(sub, "env", "print the connection settings of the local stack")
    _script(
        sub, "start", "start the always-on pipeline (supervised worker + API) in the background"
    )
    _script(sub, "stop", "stop the pipeline that `start` started")
    _script(sub, "demo", "run the pipeline on generated telemetry, print invoices, stay live")
    ingest_cli.add_parsers(sub)
    streams_cli.add_parsers(sub)
    api_cli.add_parsers(sub, serve_name="api", demo=False)
    rating_cli.add_parsers(sub)
    invoicing_cli.add_parsers(sub, run_name="bill")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    return run_parsed(parser(), argv)


SCRIPTS: dict[str, list[list[str]]] = {
    "up": [["stack.py", "up"]],
    "down": [["pipeline.py", "stop"], ["stack.py", "down"]],
    "status": [["stack.py", "status"], ["pipeline.py", "status"]],
    "env": [["stack.py", "env"]],
    "start": [["pipeline.py", "start"]],
    "stop": [["pipeline.py", "stop"]],
    "demo": [["demo.py"]],
}
"""What each stack command runs, in order, from ``deploy/``."""


def _script(sub: Any, name: str, help_text: str) -> None:
    sub.add_parser(name, help=help_text, description=help_text).set_defaults(handler=_run_scripts)


def _run_scripts(args: argparse.Namespace) -> int:
    if not DEPLOY.is_dir():
        raise InvalidInput.single(
            "meterline",
            args.command,
            f"needs the repository's deploy/ directory ({DEPLOY} is missing)",
            "run it from a checkout installed with `make install`",
        )
    if args.command == "down":
        from api.server import stop_demo

        stop_demo()  # the API `make demo` started in the background
    code = 0
    for script, *rest in SCRIPTS[args.command]:
        done = subprocess.run([sys.executable, str(DEPLOY / script), *rest], check=False)
        code = code or done.returncode
    return code
