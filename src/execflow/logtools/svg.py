"""Tiny server-side SVG charts (lines, bars) for the self-contained HTML report.

Axis values are written as people read them (``15.2k``, ``1.5M``) on round ticks, with
room for the widest label; every bar of a histogram carries its bucket's label, and
categories with long names (error types, LPs, symbols) are drawn as horizontal bars
with the name on the left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from execflow.safetext import html_text

__all__ = ["PALETTE", "bar_chart", "hbar_chart", "human_number", "line_chart", "nice_max"]

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip

_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 760, 260, 64, 150, 16, 44
_TICKS = 4
_BAR_PAD_R = 16
# Average advance of a character at font-size 11 (system-ui), used to make room for labels.
_CHAR_PX = 7.4
_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def human_number(value: float) -> str:
    """``15240`` -> ``15.2k``, ``1500000`` -> ``1.5M``, ``0.25`` -> ``0.25``: short and readable."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    for scale, suffix in _SUFFIXES:
        if magnitude >= scale:
            shown = f"{value / scale:.3g}"
            return shown + suffix if "e" not in shown else f"{value / scale:.0f}{suffix}"
    return f"{value:.3g}"


def nice_max(value: float, ticks: int = _TICKS) -> float:
    """The smallest round number >= ``value`` that ``ticks`` equal steps divide roundly."""
    if value <= 0:
        return 1.0
    raw_step = value / ticks
    power = 10.0 ** math.floor(math.log10(raw_step))
    for factor in (1.0, 2.0, 2.5, 5.0):
        if factor * power >= raw_step * (1 - 1e-12):
            return factor * power * ticks
    return 10.0 * power * ticks


def _axis(y_max: float, left: float, right: float = _W - _PAD_R) -> list[str]:
    parts = [
        f'<line x1="{left}" y1="{_H - _PAD_B}" x2="{right}" y2="{_H - _PAD_B}" stroke="#444"/>',
        f'<line x1="{left}" y1="{_PAD_T}" x2="{left}" y2="{_H - _PAD_B}" stroke="#444"/>',
    ]
    for i in range(_TICKS + 1):
        value = y_max * i / _TICKS
        y = _H - _PAD_B - (_H - _PAD_T - _PAD_B) * i / _TICKS
        parts.append(
            f'<text class="y-label" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11">{human_number(value)}</text>'
        )
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>')
    return parts


def _left(y_max: float) -> float:
    """Room on the left for the widest y label."""
    widest = max(len(human_number(y_max * i / _TICKS)) for i in range(_TICKS + 1))
    return max(float(_PAD_L), 12 + widest * _CHAR_PX)


def _x_labels(labels: Sequence[str], left: float) -> list[str]:
    """First, middle and last label under a line chart."""
    parts = []
    if labels:
        for i in sorted({0, len(labels) // 2, len(labels) - 1}):
            x = _x(i, len(labels), left)
            anchor = "start" if i == 0 and len(labels) > 1 else "middle"
            if i == len(labels) - 1 and len(labels) > 1:
                anchor = "end"
            parts.append(
                f'<text class="x-label" x="{x:.1f}" y="{_H - _PAD_B + 16}" '
                f'text-anchor="{anchor}" font-size="11">{html_text(labels[i])}</text>'
            )
    return parts


def _x(i: int, n: int, left: float) -> float:
    width = _W - left - _PAD_R
    return left + (width * i / (n - 1) if n > 1 else width / 2)


def _y(value: float, y_max: float) -> float:
    return _H - _PAD_B - (_H - _PAD_T - _PAD_B) * (value / y_max if y_max else 0)


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        y = _PAD_T + 14 * i + 8
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{_W - _PAD_R + 10}" y="{y - 8}" width="10" height="10" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{_W - _PAD_R + 24}" y="{y + 1}" font-size="11">{html_text(name)}</text>'
        )
    return parts


def _svg(title: str, body: list[str], height: int = _H) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" role="img" aria-label="{html_text(title)}">'
        f"<title>{html_text(title)}</title>" + "".join(body) + "</svg>"
    )


def _axis_title(text: str, left: float, right: float = _W - _PAD_R) -> str:
    return (
        f'<text class="axis-title" x="{(left + right) / 2:.1f}" y="{_H - 6}" '
        f'text-anchor="middle" font-size="11" fill="#555">{html_text(text)}</text>'
    )


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    x_title: str = "",
) -> str:
    """One polyline per series over shared x labels (time buckets)."""
    y_max = nice_max(max((max(v) for v in series.values() if v), default=0.0))
    left = _left(y_max)
    body = [*_axis(y_max, left), *_x_labels(x_labels, left)]
    if x_title:
        body.append(_axis_title(x_title, left))
    n = len(x_labels)
    for i, (_, values) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{_x(j, n, left):.1f},{_y(v, y_max):.1f}" for j, v in enumerate(values))
        if n == 1:
            x, y = _x(0, 1, left), _y(values[0], y_max)
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        body.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{points}"/>'
        )
    body.extend(_legend(list(series)))
    return _svg(title, body)


def bar_chart(
    title: str,
    bars: Sequence[tuple[str, float]],
    colour: str = PALETTE[0],
    x_title: str = "",
) -> str:
    """Vertical bars, one per ``(label, value)``; every bar's label is written under it."""
    y_max = nice_max(max((v for _, v in bars), default=0.0))
    left = _left(y_max)
    right = _W - _BAR_PAD_R  # no legend: the bars take the width, each label its slot
    body = _axis(y_max, left, right)
    if x_title:
        body.append(_axis_title(x_title, left, right))
    n = max(len(bars), 1)
    slot = (right - left) / n
    for i, (label, value) in enumerate(bars):
        y = _y(value, y_max)
        centre = left + i * slot + slot / 2
        body.append(
            f'<rect x="{left + i * slot + slot * 0.1:.1f}" y="{y:.1f}" '
            f'width="{max(slot * 0.8, 1):.1f}" height="{_H - _PAD_B - y:.1f}" fill="{colour}">'
            f"<title>{html_text(label)}: {value:g}</title></rect>"
        )
        body.append(
            f'<text class="x-label" x="{centre:.1f}" y="{_H - _PAD_B + 14}" '
            f'text-anchor="middle" font-size="10">{html_text(label)}</text>'
        )
        if value:
            body.append(
                f'<text x="{centre:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="9" '
                f'fill="#333">{human_number(value)}</text>'
            )
    return _svg(title, body)


_ROW_H = 20


def hbar_chart(
    title: str, bars: Sequence[tuple[str, float]], colour: str = PALETTE[0], unit: str = ""
) -> str:
    """Horizontal bars, one row per ``(name, value)``: long names stay readable."""
    names = [html_text(label) for label, _ in bars]
    label_w = min(max((len(n) for n in names), default=4) * _CHAR_PX + 16, _W * 0.45)
    top, value_w = 6, 70
    width = _W - label_w - value_w
    v_max = max((v for _, v in bars), default=0.0) or 1.0
    body = []
    for i, ((_, value), name) in enumerate(zip(bars, names, strict=True)):
        y = top + i * _ROW_H
        # a name too long for the column is cut; the full one is in the bar's tooltip
        shown = (
            name
            if len(name) * _CHAR_PX <= label_w - 12
            else name[: int(label_w / _CHAR_PX) - 3] + "..."
        )
        body.append(
            f'<text class="y-label" x="{label_w - 6:.1f}" y="{y + 14}" text-anchor="end" '
            f'font-size="11">{shown}</text>'
        )
        bar_w = max(width * value / v_max, 1.0)
        body.append(
            f'<rect x="{label_w:.1f}" y="{y + 3}" width="{bar_w:.1f}" height="{_ROW_H - 6}" '
            f'fill="{colour}"><title>{name}: {value:g}{unit}</title></rect>'
        )
        body.append(
            f'<text x="{label_w + bar_w + 4:.1f}" y="{y + 14}" font-size="11">'
            f"{human_number(value)}{html_text(unit)}</text>"
        )
    return _svg(title, body, height=max(top * 2 + len(bars) * _ROW_H, 40))
