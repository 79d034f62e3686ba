"""``rate_card_versions``: every rate-card version that has priced an invoice, as priced.

One row per (namespace, version): the version (``rc_`` + digest, ``rating.versions``),
the SHA-256 of its canonical document, when it was first recorded, and the document
itself.  A version's name is a digest of its document, so a row never needs to change:
the table is append-only in effect (a ReplacingMergeTree, so recording a version twice —
two runs at once, or a run repeated after a crash — collapses to one row of identical
content).  Rows are written before the invoices they price, so every stored invoice's
version can be read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.storage.sql import Statement, lit

__all__ = ["RateCardRow", "RateCardsTable"]

COLUMNS = ("namespace", "version", "digest", "recorded_ms", "document")


@dataclass(frozen=True, slots=True)
class RateCardRow:
    namespace: str
    version: str
    digest: str
    recorded_ms: int
    document: str

    def as_row(self) -> tuple[object, ...]:
        return (self.namespace, self.version, self.digest, self.recorded_ms, self.document)


class RateCardsTable:
    def __init__(self, database: str) -> None:
        self.name = f"{database}.rate_card_versions"

    def ddl(self) -> list[Statement]:
        return [
            Statement(
                f"CREATE TABLE IF NOT EXISTS {self.name} ("
                " namespace String, version String, digest String, recorded_ms Int64,"
                " document String"
                ") ENGINE = ReplacingMergeTree() ORDER BY (namespace, version)"
            )
        ]

    def insert(
        self, rows: Sequence[RateCardRow]
    ) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
        return self.name, COLUMNS, [row.as_row() for row in rows]

    def known(self, namespace: str, versions: Sequence[str]) -> Statement:
        """Rows ``(version,)`` of the given versions already recorded."""
        names = ", ".join(lit(v) for v in versions) or "''"
        return Statement(
            f"SELECT DISTINCT version FROM {self.name}"
            f" WHERE namespace = {lit(namespace)} AND version IN ({names})"
        )

    def listing(self, namespace: str) -> Statement:
        """Rows ``(version, digest, recorded_ms)``, the earliest recorded first."""
        return Statement(
            "SELECT version, any(digest), min(recorded_ms) AS first"
            f" FROM {self.name} WHERE namespace = {lit(namespace)}"
            " GROUP BY version ORDER BY first, version"
        )

    def document(self, namespace: str, version: str) -> Statement:
        """Rows ``(digest, document)`` of one version (one row, or none)."""
        return Statement(
            f"SELECT digest, document FROM {self.name}"
            f" WHERE namespace = {lit(namespace)} AND version = {lit(version)} LIMIT 1"
        )
