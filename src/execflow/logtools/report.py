"""``logs report``: one self-contained HTML file (inline CSS, SVG and a few lines of JS).

Charts are drawn in Python as SVG, so the page needs no library and no network. A small
script checks that every chart rendered and then sets ``document.title`` to ``ok``;
any script error is written into the page (``#errors``), which tests look for.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from pathlib import Path

from execflow.logtools.error_groups import ErrorGroup, collect_errors
from execflow.logtools.stats import PeriodStats, StatsReport, collect_stats
from execflow.logtools.svg import PALETTE, bar_chart, line_chart
from execflow.logtools.timeutil import parse_ts
from execflow.safetext import html_text

__all__ = ["build_report", "render_report", "write_report"]

_MAX_MINUTES = 1440

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.chart{display:block;margin:6px 0 14px 0}.small{color:#666;font-size:12px}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}#errors:empty{display:none}
"""

_JS = """
window.onerror=function(m){var e=document.getElementById('errors');
e.textContent+=String(m)+'\\n';document.title='error';};
document.addEventListener('DOMContentLoaded',function(){
var charts=document.querySelectorAll('svg.chart');var bad=0;
charts.forEach(function(c){if(c.getBBox().width<=0){bad++;}});
var e=document.getElementById('errors');
if(charts.length===0||bad>0){
e.textContent+='charts not rendered: '+bad+'\\n';document.title='error';}
else if(e.textContent===''){document.title='ok';}
});
"""


def _minutes(stats: dict[str, PeriodStats]) -> list[str]:
    keys = [m for s in stats.values() for m in (*s.per_minute, *s.errors_per_minute)]
    if not keys:
        return []
    first, last = parse_ts(min(keys) + ":00Z"), parse_ts(max(keys) + ":00Z")
    span = min(int((last - first).total_seconds() // 60) + 1, _MAX_MINUTES)
    step = max(1, math.ceil(span / 240))
    return [(first + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M") for i in range(0, span, step)]


def _bucketed(counts: Counter[str], minutes: list[str]) -> list[float]:
    if len(minutes) < 2:
        return [float(sum(counts.values()))] if minutes else []
    values = [0.0] * len(minutes)
    for minute, count in counts.items():
        index = 0
        for i, start in enumerate(minutes):
            if minute >= start:
                index = i
        values[index] += count
    return values


def _latency_bars(stats: PeriodStats) -> list[tuple[str, float]]:
    """Processing times in log-spaced buckets (ms)."""
    edges = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, math.inf]
    counts = [0] * len(edges)
    for value, count in stats.times_ms.items():
        counts[next(i for i, edge in enumerate(edges) if value <= edge)] += count
    labels = [f"≤{e:g}" if e != math.inf else ">5000" for e in edges]
    return list(zip(labels, map(float, counts), strict=True))


def _summary_table(report: StatsReport) -> str:
    head = (
        "<tr><th>component</th><th>processed</th><th>success %</th><th>error %</th>"
        "<th>skipped</th><th>parked</th><th>DLQ</th><th>p50 ms</th><th>p95 ms</th>"
        "<th>p99 ms</th><th>max ms</th><th>per min</th></tr>"
    )
    rows = []
    for name, s in sorted(report.components.items()):
        rates, lat = s.rates(), s.latency()

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:g}"

        rows.append(
            f"<tr><td>{html_text(name)}</td><td>{s.processed}</td>"
            f"<td>{rates['success_rate'] * 100:.2f}</td><td>{rates['error_rate'] * 100:.2f}</td>"
            f"<td>{s.skipped}</td><td>{s.parked}</td><td>{s.dead_lettered}</td>"
            f"<td>{ms(lat['p50_ms'])}</td><td>{ms(lat['p95_ms'])}</td><td>{ms(lat['p99_ms'])}</td>"
            f"<td>{ms(lat['max_ms'])}</td><td>{rates['throughput_per_min']:.1f}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def render_report(report: StatsReport, errors: list[ErrorGroup], title: str) -> str:
    """The HTML page for a statistics report and its grouped errors."""
    comps = report.components
    minutes = _minutes(comps)
    sections = [f"<h1>{html_text(title)}</h1>"]
    sections.append(
        f'<p class="small">{len(report.files)} files; period {html_text(report.since or "start")}'
        f" to {html_text(report.until or 'end')}</p>"
    )
    sections.append("<h2>Summary</h2>" + _summary_table(report))
    throughput = {name: _bucketed(s.per_minute, minutes) for name, s in sorted(comps.items())}
    sections.append(
        "<h2>Throughput over time (processed per bucket)</h2>"
        + line_chart("throughput per component", minutes, throughput)
    )
    sections.append("<h2>Processing-time distribution per worker (ms)</h2>")
    for i, (name, s) in enumerate(sorted(comps.items())):
        if s.times_ms:
            sections.append(f"<h3>{html_text(name)}</h3>")
            sections.append(
                bar_chart(f"processing time {name}", _latency_bars(s), PALETTE[i % len(PALETTE)])
            )
    errors_total: Counter[str] = Counter()
    dlq_total: Counter[str] = Counter()
    for s in comps.values():
        errors_total.update(s.errors_per_minute)
        dlq_total.update(s.dlq_per_minute)
    sections.append(
        "<h2>Errors and DLQ over time</h2>"
        + line_chart(
            "errors and DLQ",
            minutes,
            {"errors": _bucketed(errors_total, minutes), "DLQ": _bucketed(dlq_total, minutes)},
        )
    )
    top = errors[:15]
    sections.append(
        "<h2>Top error types</h2>"
        + bar_chart(
            "top error types",
            [(f"{g.error_type} ({g.component})", float(g.count)) for g in top],
            PALETTE[3],
        )
    )
    for group in top[:5]:
        example = group.example.get("traceback") or group.example.get("error") or ""
        sections.append(
            f"<h3>{html_text(group.error_type)} in {html_text(group.component)}: {group.count}x "
            f"({html_text(group.first_ts)} .. {html_text(group.last_ts)})</h3>"
            f"<pre>{html_text(example, keep_newlines=True)}</pre>"
        )
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>loading</title><style>{_CSS}</style></head><body>"
        f'<pre id="errors" style="color:#b00"></pre>{body}<script>{_JS}</script></body></html>'
    )


def build_report(
    directory: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    components: set[str] | None = None,
) -> str:
    """The HTML report for the logs under ``directory``."""
    stats = collect_stats(directory, since=since, until=until, components=components)
    errors = collect_errors(directory, since=since, until=until, components=components)
    return render_report(stats, errors, f"execflow logs report: {directory}")


def write_report(out: Path, html: str) -> None:
    """Write the page atomically (temp file, then rename)."""
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
