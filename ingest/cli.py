"""``send``: validate usage events from a file and send them to Kafka, for
``python -m ingest`` and ``meterline``.

The file holds one CloudEvents JSON object per line (NDJSON; blank lines are skipped);
``-`` reads standard input.  Every line is validated first, with the same rules as the
worker and the HTTP gateway (numbers kept exact), and nothing is sent unless every line
is valid: a file is accepted whole, or refused with every problem, each naming its line
and field.  Accepted events are sent packed per subject and each delivery is waited for;
a re-sent file is harmless, the worker drops the duplicates.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ingest.producer import UsageProducer
from schemas.cli import command_line
from schemas.errors import InvalidInput, Problem
from schemas.events import UsageEvent
from schemas.settings import Settings
from schemas.wire import decode_event

__all__ = ["add_parsers", "main", "read_events"]


def read_events(raw: bytes, name: str = "input") -> list[UsageEvent]:
    """The events of an NDJSON body, or :class:`InvalidInput` with every problem of every
    line (paths ``line N`` or ``line N: field``)."""
    events: list[UsageEvent] = []
    problems: list[Problem] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            events.append(decode_event(line.strip()))
        except InvalidInput as exc:
            problems += [
                Problem(
                    f"line {number}: {p.path}" if p.path else f"line {number}", p.message, p.fix
                )
                for p in exc.problems
            ]
    if problems:
        raise InvalidInput(f"events in {name} (nothing was sent)", problems)
    if not events:
        raise InvalidInput.single(
            f"events in {name}", "", "no events", "give one CloudEvents JSON object per line"
        )
    return events


def add_parsers(sub: Any) -> None:
    """Add ``send`` to ``sub`` (an argparse sub-parser set)."""
    send = sub.add_parser(
        "send",
        help="validate usage events from an NDJSON file and send them to Kafka",
        description=__doc__.split("\n\n")[1],
    )
    send.add_argument("file", help="NDJSON file of CloudEvents, or - for standard input")
    send.add_argument("--topic", help="default: $METERLINE_EVENTS_TOPIC")
    send.set_defaults(handler=_send)


def main(argv: Sequence[str] | None = None, prog: str = "python -m ingest") -> int:
    return command_line(
        argv, prog=prog, description="Send usage events to Kafka.", add_parsers=add_parsers
    )


def _send(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.file == "-":
        raw, name = sys.stdin.buffer.read(), "standard input"
    else:
        path = Path(args.file)
        if not path.is_file():
            raise InvalidInput.single("send", "file", f"{path} is not a file", "give a file path")
        raw, name = path.read_bytes(), str(path)
    events = read_events(raw, name)
    topic = args.topic or settings.events_topic
    with UsageProducer(
        settings.kafka_bootstrap, topic, compression=settings.kafka_compression
    ) as producer:
        producer.send_and_wait(events, timeout=60.0)
    print(f"sent {len(events)} events to {topic} at {settings.kafka_bootstrap}")
    return 0
