"""Bar charts as inline SVG (pure): no script, no library, no network.

Coordinates are computed with ``Decimal`` and printed to 0.1 px, so the same backtest
always renders the same bytes and no amount ever passes through a float.  Every bar has
a ``<title>`` with its exact value (the browser shows it on hover) and its value is
written above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from html import escape

__all__ = ["PALETTE", "bar_chart"]

PALETTE = ("#8a99ad", "#2f6db5", "#c76b29", "#3c8d5a")
"""Series colours, in order (the first is the reference series, in grey)."""

_TENTH = Decimal("0.1")
_PLOT_HEIGHT = 180
_TOP = 40
_LEFT = 12
_BAR = 28
_GAP = 6
_GROUP_GAP = 28
_CHAR = 7
"""About the width of one character of an 11 px label."""


def _px(value: Decimal) -> str:
    return format(value.quantize(_TENTH, rounding=ROUND_HALF_UP), "f")


def _height(value: Decimal, peak: Decimal) -> Decimal:
    """A bar's height in px: ``value`` against the chart's largest; 0 for none or below."""
    if peak <= 0 or value <= 0:
        return Decimal(0)
    return value * _PLOT_HEIGHT / peak


def bar_chart(
    title: str,
    series: Sequence[str],
    groups: Sequence[tuple[str, Sequence[Decimal]]],
    unit: str = "",
) -> str:
    """Grouped bars: one group per ``(label, values)``, one bar per series in each, all on
    one scale from 0 to the largest value; a legend names the series."""
    peak = max((v for _, values in groups for v in values), default=Decimal(0))
    group_width = len(series) * _BAR + (len(series) - 1) * _GAP
    longest = max((len(label) for label, _ in groups), default=0)
    slot = max(group_width + _GROUP_GAP, _CHAR * longest + _GAP)  # labels never overlap
    width = _LEFT * 2 + max(1, len(groups)) * slot
    height = _TOP + _PLOT_HEIGHT + 44
    base = _TOP + _PLOT_HEIGHT
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{_LEFT}" y1="{base}" x2="{width - _LEFT}" y2="{base}" stroke="#444"/>',
    ]
    parts += _legend(series)
    for number, (label, values) in enumerate(groups):
        left = _LEFT + number * slot + (slot - group_width) // 2
        for index, value in enumerate(values):
            x = left + index * (_BAR + _GAP)
            tip = f"{label}, {series[index]}: {value:f} {unit}".rstrip()
            parts += _bar(x, base, value, peak, tip, PALETTE[index % len(PALETTE)])
        middle = left + group_width // 2
        parts.append(
            f'<text x="{middle}" y="{base + 16}" text-anchor="middle"'
            f' font-size="11">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _legend(series: Sequence[str]) -> list[str]:
    out = []
    x = _LEFT
    for index, name in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        out.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="18" font-size="12">{escape(name)}</text>')
        x += 24 + 8 * len(name)
    return out


def _bar(x: int, base: int, value: Decimal, peak: Decimal, tip: str, fill: str) -> list[str]:
    """The value above the bar, then the bar with its exact value as a tooltip."""
    tall = _height(value, peak)
    top = Decimal(base) - tall
    return [
        f'<text x="{x + _BAR // 2}" y="{_px(top - 4)}" text-anchor="middle"'
        f' font-size="10">{value:f}</text>',
        f'<rect x="{x}" y="{_px(top)}" width="{_BAR}" height="{_px(tall)}" fill="{fill}">'
        f"<title>{escape(tip)}</title></rect>",
    ]
