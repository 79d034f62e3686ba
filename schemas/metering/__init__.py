"""The meter domain: what a meter is and what an event adds to it (pure, no I/O).

The contract, importable from here:

* **definitions** (``definitions.py``): :class:`Aggregation`, :class:`MeterDefinition`,
  :class:`MeterSet`, loaded and validated from the meters file (:func:`load_meters`);
* **paths** (``paths.py``): the JSONPath subset a meter reads its value and groups with;
* **contributions** (``contributions.py``): what one event adds to which meter's minute
  window, or why it cannot be metered (:class:`Unmeterable`, a dead-letter reason) — the
  reference definition;
* **window state** (``windows.py``): how contributions fold into a window's value, for
  every aggregation, exactly;
* **the lean path** (``fastpath.py``): the worker's and the gateway's per-event decode and
  metering, held to the reference by property tests.

Its storage adapter sits beside it in the storage layer, with every other statement
(``schemas/storage/windows_table.py``, ``agg_feed.py``, ``rollups.py``); the worker
(``streams/``), the API and billing use the domain through this package.
"""

from schemas.metering.contributions import (
    Contribution,
    DeadLetterReason,
    Unmeterable,
    contributions,
    group_key,
    window_start_ms,
)
from schemas.metering.definitions import (
    Aggregation,
    MeterDefinition,
    MeterSet,
    load_meters,
    parse_meters,
)
from schemas.metering.paths import MISSING, JsonPath
from schemas.metering.windows import WindowState, fold

__all__ = [
    "MISSING",
    "Aggregation",
    "Contribution",
    "DeadLetterReason",
    "JsonPath",
    "MeterDefinition",
    "MeterSet",
    "Unmeterable",
    "WindowState",
    "contributions",
    "fold",
    "group_key",
    "load_meters",
    "parse_meters",
    "window_start_ms",
]
