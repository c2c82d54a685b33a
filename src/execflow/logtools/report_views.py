"""The breakdown views of ``logs report``: per symbol, per LP, reject reasons, errors.

Each function returns one HTML section (a heading, a chart, a table); a view with no data
says so in a sentence instead of drawing an empty chart.
"""

from __future__ import annotations

from execflow.logtools.breakdown import Breakdown, GroupStats
from execflow.logtools.error_groups import ErrorGroup
from execflow.logtools.svg import PALETTE, hbar_chart
from execflow.safetext import html_text

__all__ = ["errors_view", "lp_view", "ms", "rejects_view", "symbol_view"]

_TOP = 15


def ms(value: float | None) -> str:
    """A processing time for a table cell (``-`` when there is none)."""
    return "-" if value is None else f"{value:g}"


def _table(head: tuple[str, ...], rows: list[tuple[object, ...]], css_class: str) -> str:
    header = "".join(f"<th>{html_text(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html_text(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="{css_class}"><tr>{header}</tr>{body}</table>'


def _ranked(groups: dict[str, GroupStats]) -> list[tuple[str, GroupStats]]:
    return sorted(groups.items(), key=lambda item: (-item[1].total, item[0]))


def _none(text: str) -> str:
    return f'<p class="small none">{html_text(text)}</p>'


def symbol_view(breakdown: Breakdown) -> str:
    """Outcomes of the workers per symbol: a chart of the busiest, a table of all."""
    section = "<h2>Per symbol (worker outcomes)</h2>"
    if not breakdown.symbols:
        return section + _none("no worker line names a symbol in this period")
    ranked = _ranked(breakdown.symbols)
    head = ("symbol", "outcomes", "success", "of which rejects", "errors", "DLQ", "p50 ms",
            "p95 ms")  # fmt: skip
    rows: list[tuple[object, ...]] = [
        (name, g.total, g.success, g.rejected, g.failure, g.dead_lettered, ms(g.p(50)), ms(g.p(95)))
        for name, g in ranked
    ]
    bars = [(name, float(g.total)) for name, g in ranked[:_TOP]]
    return (
        section
        + hbar_chart("outcomes per symbol", bars, PALETTE[0])
        + _table(head, rows, "per-symbol")
    )


def lp_view(breakdown: Breakdown) -> str:
    """Requests each LP answered (gateway or simulator lines) and their times."""
    section = "<h2>Per LP (LP gateway and simulator outcomes)</h2>"
    if not breakdown.lps:
        return section + _none("no LP gateway or simulator line in this period")
    ranked = _ranked(breakdown.lps)
    head = ("LP", "outcomes", "success", "errors", "DLQ", "p50 ms", "p95 ms")
    rows: list[tuple[object, ...]] = [
        (name, g.total, g.success, g.failure, g.dead_lettered, ms(g.p(50)), ms(g.p(95)))
        for name, g in ranked
    ]
    bars = [(name, float(g.total)) for name, g in ranked[:_TOP]]
    return section + hbar_chart("outcomes per LP", bars, PALETTE[1]) + _table(head, rows, "per-lp")


def rejects_view(breakdown: Breakdown) -> str:
    """The LP's rejects by reason (and the request they refused)."""
    section = "<h2>Reject reasons (worker_reject)</h2>"
    if not breakdown.reject_reasons:
        return section + _none("no reject in this period")
    ranked = breakdown.reject_reasons.most_common()
    bars = [(f"{reason} ({kind})", float(n)) for (kind, reason), n in ranked[:_TOP]]
    rows: list[tuple[object, ...]] = [(reason, kind, n) for (kind, reason), n in ranked]
    return (
        section
        + hbar_chart("reject reasons", bars, PALETTE[3])
        + _table(("reason", "rejection type", "rejects"), rows, "rejects")
    )


def errors_view(errors: list[ErrorGroup]) -> str:
    """Top error types as a chart, then the five biggest with an example each.

    The example's traceback is shown when the line has one; otherwise its error message
    (or a dead letter's detail or reason) in a sentence, and no empty box.
    """
    section = "<h2>Top error types</h2>"
    if not errors:
        return section + _none("no ERROR or CRITICAL line in this period")
    top = errors[:_TOP]
    parts = [
        section,
        hbar_chart(
            "top error types",
            [(f"{g.error_type} ({g.component})", float(g.count)) for g in top],
            PALETTE[3],
        ),
    ]
    for group in top[:5]:
        parts.append(
            f'<h3 class="error-group">{html_text(group.error_type)} in '
            f"{html_text(group.component)}: {group.count}x "
            f"({html_text(group.first_ts)} .. {html_text(group.last_ts)})</h3>"
        )
        example = group.example
        # an exception's message; a dead letter logged at ERROR says why in detail / reason
        message = example.get("error") or example.get("detail") or example.get("reason")
        where = f"{example.file}, {example.ts}, [{example.tag}]"
        if message:
            parts.append(f'<p class="small">example ({html_text(where)}): {html_text(message)}</p>')
        traceback = example.get("traceback")
        if traceback:
            parts.append(f'<pre class="traceback">{html_text(traceback, keep_newlines=True)}</pre>')
        elif not message:
            parts.append(f'<p class="small">example ({html_text(where)}): no message</p>')
    return "".join(parts)
