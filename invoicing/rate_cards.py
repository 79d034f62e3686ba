"""``rate-cards``: the versions of the rate card, as invoices name them.

* ``rate-cards version FILE``: the version a card file would bill as (nothing running);
  run it after an edit to see that the edit is a new version.
* ``rate-cards list``: every version that has priced an invoice, first recorded first.
* ``rate-cards show VERSION``: that version's canonical document, exactly as it priced;
  save it and it loads as a rate card of the same version (``rating.versions``).

Exit codes: 0 done, 2 invalid input (an unreadable card, an unknown version), 3 a
service unavailable.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from rating import card_version, load_rate_card
from rating.validation import choose_fix
from schemas.errors import InvalidInput, Problem
from schemas.settings import Settings
from schemas.storage.bootstrap import require_configured
from schemas.storage.engine import Engine, ServerEngine
from schemas.storage.rate_cards_table import RateCardsTable
from schemas.timeutil import format_ms

__all__ = ["add_rate_cards_parser", "stored_version"]


def add_rate_cards_parser(sub: Any) -> None:
    cards = sub.add_parser("rate-cards", help="rate-card versions: of a file, and as billed")
    commands = cards.add_subparsers(dest="rate_cards_command", required=True, metavar="ACTION")
    version = commands.add_parser("version", help="the version a rate card file bills as")
    version.add_argument("file")
    version.set_defaults(handler=_version)
    listing = commands.add_parser("list", help="every version that has priced an invoice")
    listing.set_defaults(handler=lambda args: _list(Settings()))
    show = commands.add_parser("show", help="a version's document, exactly as it priced")
    show.add_argument("version")
    show.set_defaults(handler=lambda args: _show(args, Settings()))


def stored_version(engine: Engine, database: str, namespace: str, version: str) -> bytes:
    """The canonical document of a recorded ``version``; InvalidInput naming the known
    versions when there is none."""
    table = RateCardsTable(database)
    rows = engine.execute(table.document(namespace, version).to_sql())
    if rows:
        return str(rows[0][1]).encode()
    known = [str(row[0]) for row in engine.execute(table.listing(namespace).to_sql())]
    raise InvalidInput(
        "rate card version",
        [
            Problem(
                "version",
                f"no rate card {version!r} has priced an invoice",
                choose_fix(version, known),
            )
        ],
    )


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _version(args: argparse.Namespace) -> int:
    _out(card_version(load_rate_card(args.file)))
    return 0


def _engine(settings: Settings) -> ServerEngine:
    """The database, checked (or created, as the worker would create it: with the window
    states the catalogue's meters need) before a command reads or writes it."""
    engine = ServerEngine.of(settings)
    require_configured(engine, settings)
    return engine


def _list(settings: Settings) -> int:
    engine = _engine(settings)
    table = RateCardsTable(settings.clickhouse_database)
    rows = engine.execute(table.listing(settings.namespace).to_sql())
    if not rows:
        sys.stderr.write("no rate card has priced an invoice yet\n")
    for version, digest, recorded_ms in rows:
        _out(f"{version}  first used {format_ms(int(recorded_ms))}  sha256:{digest}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
    document = stored_version(
        engine, settings.clickhouse_database, settings.namespace, args.version
    )
    _out(
        orjson.dumps(
            orjson.loads(document), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        ).decode()
    )
    return 0
