"""An invoice's lifecycle (pure): ``draft → issued → void``.

* **draft**: built and recorded (``invoice_drafts``), not yet sent.  The document is
  final already: issuing it sends exactly these bytes.
* **issued**: committed to the ``invoices`` topic and stored in ``invoices``.  An issued
  invoice is never modified.
* **void**: withdrawn, with a reason.  Voiding is terminal; the period is then billed
  again by the next run under the next *revision* (a new invoice id), rated with the
  voided invoice's own ingestion cutoff so that later adjustments stay consistent.

The states only move forward, so the current state is the highest one recorded.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.errors import InvalidInput

__all__ = ["RANK", "Status", "check_transition", "status_of"]


class Status(StrEnum):
    DRAFT = "draft"
    ISSUED = "issued"
    VOID = "void"


RANK = {Status.DRAFT: 0, Status.ISSUED: 1, Status.VOID: 2}
_ALLOWED = {(Status.DRAFT, Status.ISSUED), (Status.ISSUED, Status.VOID)}


def status_of(rank: int) -> Status:
    return next(status for status, value in RANK.items() if value == rank)


def check_transition(invoice_id: str, current: Status, target: Status, reason: str = "") -> None:
    """Raise :class:`InvalidInput` unless ``current → target`` is allowed."""
    if (current, target) not in _ALLOWED:
        fix = {
            Status.DRAFT: "a draft can only be issued (run the billing run again)",
            Status.ISSUED: "an issued invoice can only be voided, with a reason",
            Status.VOID: "a void invoice is final; the next run bills its period again",
        }[current]
        raise InvalidInput.single(
            "invoice lifecycle",
            invoice_id,
            f"cannot go from {current} to {target}",
            fix,
        )
    if target is Status.VOID and not reason.strip():
        raise InvalidInput.single(
            "invoice lifecycle", "reason", "voiding needs a reason", "pass --reason TEXT"
        )
