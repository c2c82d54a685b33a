"""Tiny server-side SVG charts (lines, bars) for the self-contained HTML report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from execflow.safetext import html_text

__all__ = ["PALETTE", "bar_chart", "line_chart"]

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip

_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 760, 260, 56, 150, 16, 40


def _axis(y_max: float, x_labels: Sequence[str]) -> list[str]:
    parts = [
        f'<line x1="{_PAD_L}" y1="{_H - _PAD_B}" x2="{_W - _PAD_R}" y2="{_H - _PAD_B}" '
        'stroke="#444"/>',
        f'<line x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{_H - _PAD_B}" stroke="#444"/>',
    ]
    for i in range(5):
        value = y_max * i / 4
        y = _H - _PAD_B - (_H - _PAD_T - _PAD_B) * i / 4
        parts.append(
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{value:.4g}</text>"
        )
        parts.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
        )
    if x_labels:
        for i in sorted({0, len(x_labels) // 2, len(x_labels) - 1}):
            x = _x(i, len(x_labels))
            parts.append(
                f'<text x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" font-size="11">'
                f"{html_text(x_labels[i])}</text>"
            )
    return parts


def _x(i: int, n: int) -> float:
    width = _W - _PAD_L - _PAD_R
    return _PAD_L + (width * i / (n - 1) if n > 1 else width / 2)


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


def _svg(title: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{html_text(title)}">'
        f"<title>{html_text(title)}</title>" + "".join(body) + "</svg>"
    )


def line_chart(title: str, x_labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """One polyline per series over shared x labels (e.g. minutes)."""
    y_max = max((max(v) for v in series.values() if v), default=0.0) or 1.0
    body = _axis(y_max, x_labels)
    n = len(x_labels)
    for i, (_, values) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{_x(j, n):.1f},{_y(v, y_max):.1f}" for j, v in enumerate(values))
        if n == 1:
            x, y = _x(0, 1), _y(values[0], y_max)
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        body.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{points}"/>'
        )
    body.extend(_legend(list(series)))
    return _svg(title, body)


def bar_chart(title: str, bars: Sequence[tuple[str, float]], colour: str = PALETTE[0]) -> str:
    """Vertical bars, one per ``(label, value)``."""
    y_max = max((v for _, v in bars), default=0.0) or 1.0
    body = _axis(y_max, [label for label, _ in bars])
    n = max(len(bars), 1)
    slot = (_W - _PAD_L - _PAD_R) / n
    for i, (label, value) in enumerate(bars):
        y = _y(value, y_max)
        body.append(
            f'<rect x="{_PAD_L + i * slot + slot * 0.1:.1f}" y="{y:.1f}" '
            f'width="{max(slot * 0.8, 1):.1f}" height="{_H - _PAD_B - y:.1f}" fill="{colour}">'
            f"<title>{html_text(label)}: {value:g}</title></rect>"
        )
    return _svg(title, body)
