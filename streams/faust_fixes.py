"""One targeted fix to faust-streaming's offset bookkeeping, applied by the worker.

Symptom seen here: after a restart, Faust delivers some records twice (records fetched
while tables recover, then again after it seeks to the committed offsets).  Each copy is
acknowledged, so the per-partition list of acknowledged offsets holds duplicates.  Faust
computes the offset to commit from the first run of *consecutive* numbers in that list,
and a duplicate breaks the run: commits then advance by one offset per commit interval
and the consumer lag never drains (the same defect is reported publicly against Faust:
"Offsets not committed due to duplicate in _acked").

For Meterline a second acknowledgement of a record is harmless — every record is
acknowledged only after its effects are stored, and the sink is idempotent — so the fix
is to drop duplicate offsets before Faust looks for the consecutive run.  It changes no
other behaviour.  ``tests/streams/test_faust_fixes.py`` pins the defect and the fix.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer

__all__ = ["apply"]

_APPLIED = False


def apply() -> None:
    """Install the fix once per process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    original = Consumer._new_offset

    def _new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return original(self, tp)  # type: ignore[no-any-return]

    Consumer._new_offset = _new_offset
    _APPLIED = True
