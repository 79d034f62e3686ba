"""``python -m alerts run``: the alerts evaluator (``alerts.service``)."""

from __future__ import annotations

import argparse
import logging
import sys

from alerts.service import run
from schemas.errors import InvalidInput
from schemas.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alerts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="evaluate the thresholds of METERLINE_THRESHOLDS_FILE every"
        " METERLINE_ALERTS_INTERVAL_S and send what is crossed (one instance evaluates)",
    )
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return run(Settings())
    except InvalidInput as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
