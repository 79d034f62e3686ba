"""How rows reach clickhouse-driver on the worker's write path (pure, but for the one
driver hook it installs).

Two costs of the driver's row inserts showed in the worker's profile (``docs/benchmarks.md``,
*Scaling the worker*), and both are paid per cell in Python:

* a row-oriented insert is transposed by the driver one column at a time
  (``[row[i] for row in rows]`` per column); :func:`columns_of` transposes in C
  (``zip``) and the insert is sent ``columnar``;
* a ``Decimal`` column converts every value with ``int(Decimal(str(value)) * 10**scale)``:
  a text round trip per value.  :func:`scaled` skips the round trip (``str`` then
  ``Decimal`` gives back an equal ``Decimal``) and multiplies by the power of ten as a
  ``Decimal`` (made once per column): the same multiplication, rounded to the same
  context precision, so the integer is identical (property-tested against the driver's
  own conversion in ``tests/schemas/test_driver.py``).  Multiplying measured ~35 % cheaper than
  ``Decimal.scaleb`` per value here.  Values that are not ``Decimal`` (floats, ints) and
  columns of scale 0 keep the driver's conversion.

:func:`install` puts :func:`scaled` in place of the driver's conversion once per process;
``ServerEngine`` calls it.  If the driver's class no longer has the method this replaces,
nothing is installed and the driver's own conversion runs (slower, same result).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

__all__ = ["columns_of", "install", "scaled"]


def columns_of(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows to columns (lists: the driver converts some columns in place)."""
    return [list(column) for column in zip(*rows, strict=True)]


def scaled(column: Any, items: list[Any], nulls_map: Sequence[bool] | None = None) -> None:
    """``DecimalColumn.before_write_items``: each value as the integer the column stores."""
    scale = column.scale
    if scale < 1:
        _DRIVER_CONVERSION(column, items, nulls_map)
        return
    power = Decimal(10**scale)
    if not nulls_map and set(map(type, items)) <= _DECIMAL_ONLY:  # the type test in C
        items[:] = [int(item * power) for item in items]  # the worker's columns
        return
    null_value = column.null_value
    for i, item in enumerate(items):
        if nulls_map and nulls_map[i]:
            items[i] = null_value
        elif type(item) is Decimal:
            items[i] = int(item * power)
        else:
            items[i] = int(Decimal(str(item)) * power)


def install() -> None:
    """Put :func:`scaled` in place of the driver's conversion (once; cheap to repeat)."""
    global _DRIVER_CONVERSION
    from clickhouse_driver.columns.decimalcolumn import DecimalColumn

    original = DecimalColumn.__dict__.get("before_write_items")
    if original is None or original is scaled:
        return
    _DRIVER_CONVERSION = original
    DecimalColumn.before_write_items = scaled


_DECIMAL_ONLY = frozenset({Decimal})

_DRIVER_CONVERSION: Any = None
"""The driver's own conversion, kept by :func:`install` for what :func:`scaled` leaves to it."""
