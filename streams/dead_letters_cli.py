"""``meterline dead-letters``: the command over :mod:`streams.dead_letters`.

Without options it lists the dead letters as JSON lines; with ``--resend`` it sends the
events the given meters now accept back to the events topic, and with ``--dry-run`` it
says what a resend would do.  Its parser is declared with the others in
:mod:`streams.cli`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable

import orjson

from schemas.errors import InvalidInput
from schemas.metering.contributions import DeadLetterReason
from schemas.metering.definitions import MeterSet
from schemas.settings import Settings
from schemas.timeutil import format_ms
from streams.dead_letters import DeadLetterEntry, read_letters, since_ms

__all__ = ["run_dead_letters", "run_resend"]


def run_dead_letters(
    settings: Settings,
    args: argparse.Namespace,
    meters: Callable[[argparse.Namespace], MeterSet],
) -> int:
    """Print the dead letters (one JSON object a line: when, reason, validation message,
    where the event was read, the event's exact bytes), then a count by reason on stderr;
    with ``--resend`` or ``--dry-run``, what :func:`run_resend` does instead (with the
    meters ``meters`` loads from the arguments)."""
    since = None if args.since is None else since_ms(args.since, int(time.time() * 1000))
    reasons = set(args.reason or ())
    known = {reason.value for reason in DeadLetterReason}
    unknown = sorted(reasons - known)
    if unknown:
        raise InvalidInput.single(
            "--reason",
            unknown[0],
            "not a dead-letter reason",
            f"use one of {', '.join(sorted(known))}",
        )
    selected = (
        entry
        for entry in read_letters(settings.kafka_bootstrap, settings.dead_letter_topic, since)
        if not reasons or entry.reason in reasons
    )
    window = "" if since is None else f" since {format_ms(since)}"
    if args.resend or args.dry_run:
        return run_resend(settings, meters(args), selected, window, dry_run=args.dry_run)
    counts: Counter[str] = Counter()
    for entry in selected:
        counts[entry.reason] += 1
        sys.stdout.write(orjson.dumps(entry.as_json()).decode() + "\n")
    sys.stdout.flush()
    print(
        f"{counts.total()} dead letter(s) in {settings.dead_letter_topic}{window}"
        + (f" ({_by_reason(counts)})" if counts else ""),
        file=sys.stderr,
    )
    return 0


def run_resend(
    settings: Settings,
    meters: MeterSet,
    letters: Iterable[DeadLetterEntry],
    window: str,
    *,
    dry_run: bool,
) -> int:
    """``dead-letters --resend`` / ``--dry-run``: each selected letter judged by ``meters``
    (as the worker would meter its event now); the accepted ones sent back to the events
    topic (not on a dry run).  One JSON line per letter, then a summary on stderr; exit 1
    when some are still refused, so a script sees that letters stay behind."""
    from streams.dead_letters import LetterSender, resend
    from streams.planner import Planner

    planner = Planner(
        namespace=settings.namespace,
        meters=meters,
        unknown_type_is_error=settings.unknown_event_type_is_error,
    )
    send = (
        None
        if dry_run
        else LetterSender(
            settings.kafka_bootstrap, settings.events_topic, compression=settings.kafka_compression
        )
    )
    accepted, refused = 0, Counter[str]()
    for done in resend(letters, planner.refusal, send):
        sys.stdout.write(orjson.dumps(done.as_json()).decode() + "\n")
        if done.refused is None:
            accepted += 1
        else:
            refused[done.refused[0]] += 1
    sys.stdout.flush()
    verb = "would resend" if dry_run else "resent"
    summary = f"{verb} {accepted} dead letter(s) of {settings.dead_letter_topic}{window}"
    if not dry_run:
        summary += f" to {settings.events_topic}"
    if refused:
        summary += (
            f"; {refused.total()} still refused by these meters ({_by_reason(refused)}), left"
            " where they are: fix the meters (--meters) or send corrected events"
        )
    print(summary, file=sys.stderr)
    return 1 if refused else 0


def _by_reason(counts: Counter[str]) -> str:
    """``reason: n, …`` in the order of the reasons' names."""
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))
