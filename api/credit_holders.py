"""Who probably holds prepaid credit (pure): a hint that lets the entitlement check read
everything a credit holder's answer needs in one round.

A customer's balance needs the period's spend, so a credit holder's check reads every
meter its plan prices, not only the feature's.  Without a hint that is a second round
after the ledger shows credit; with it, the check reads the ledger and all those meters
at once.  The hint is **only** about speed: the ledger read with every check decides.

* A hint that says "holds" for a customer with no credit in effect (an expired or voided
  grant) costs the reads of the plan's other meters, unused.
* A hint that says "no" for a customer who holds credit (granted through another API
  replica since the last refresh) costs the second round, as without a hint.

The set is the ledger's customers with a grant (``CreditsTable.holders``), read again when
:attr:`CreditHolders.refresh_s` has passed (the handler starts the read and does not wait
for it); every ledger read a check makes, and every grant made here, corrects it at once.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CreditHolders"]


class CreditHolders:
    def __init__(self, refresh_s: float = 30.0) -> None:
        self.refresh_s = refresh_s
        self._holders: set[str] = set()
        self._read_at: float | None = None
        self._reading = False

    def likely(self, customer_id: str) -> bool:
        """Whether the customer held a grant when last seen."""
        return customer_id in self._holders

    def due(self, now: float) -> bool:
        """Whether a refresh should start now (none running, the last one old enough);
        ``True`` marks one as running until :meth:`refreshed` or :meth:`failed`."""
        if self._reading:
            return False
        if self._read_at is not None and now - self._read_at < self.refresh_s:
            return False
        self._reading = True
        return True

    def refreshed(self, holders: Iterable[str], now: float) -> None:
        self._holders = set(holders)
        self._read_at = now
        self._reading = False

    def failed(self, now: float) -> None:
        """A refresh that failed: keep the hint, try again after ``refresh_s``."""
        self._read_at = now
        self._reading = False

    def learn(self, customer_id: str, holds: bool) -> None:
        """What a ledger read showed for one customer (it has a grant, or none)."""
        if holds:
            self._holders.add(customer_id)
        else:
            self._holders.discard(customer_id)
