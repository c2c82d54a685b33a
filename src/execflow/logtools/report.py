"""``logs report``: one self-contained HTML file (inline CSS, SVG and a few lines of JS).

Charts are drawn in Python as SVG, so the page needs no library and no network. Time
charts use buckets that fit the period (``execflow.logtools.buckets``); the page also
breaks outcomes down per symbol and per LP and lists the LP's reject reasons
(``execflow.logtools.report_views``). A small script checks that every chart rendered
and that no label falls outside its chart, then sets ``document.title`` to ``ok``; any
script error or problem is written into the page (``#errors``), which tests look for.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path

from execflow.logtools.breakdown import Breakdown, collect_breakdown
from execflow.logtools.buckets import fit_buckets
from execflow.logtools.error_groups import ErrorGroup, collect_errors
from execflow.logtools.report_views import errors_view, lp_view, ms, rejects_view, symbol_view
from execflow.logtools.scan import ScanProgress
from execflow.logtools.stats import PeriodStats, StatsReport, collect_stats
from execflow.logtools.svg import PALETTE, bar_chart, human_number, line_chart
from execflow.safetext import html_text

__all__ = ["build_report", "render_report", "write_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}h3{font-size:14px}
table{border-collapse:collapse;font-size:13px;margin-bottom:10px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.chart{display:block;margin:6px 0 14px 0}.small{color:#666;font-size:12px}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}#errors:empty{display:none}
"""

# What the Python side cannot check: every chart has a size, no text of a chart lies
# outside it (a clipped axis value) and no two x labels overlap. A problem is written
# into #errors.
_JS = """
window.onerror=function(m){var e=document.getElementById('errors');
e.textContent+=String(m)+'\\n';document.title='error';};
document.addEventListener('DOMContentLoaded',function(){
var charts=document.querySelectorAll('svg.chart');var bad=0;
var e=document.getElementById('errors');
charts.forEach(function(c){
if(c.getBBox().width<=0){bad++;}
var w=c.width.baseVal.value,h=c.height.baseVal.value;
c.querySelectorAll('text').forEach(function(t){var b=t.getBBox();
if(b.x<-0.5||b.y<-0.5||b.x+b.width>w+0.5||b.y+b.height>h+0.5){
e.textContent+='label outside its chart: '+t.textContent+'\\n';}});
var xs=c.querySelectorAll('text.x-label');
for(var i=1;i<xs.length;i++){var a=xs[i-1].getBBox(),b=xs[i].getBBox();
if(a.x+a.width>b.x+0.5){e.textContent+='labels overlap: '+xs[i-1].textContent+
' / '+xs[i].textContent+'\\n';}}
});
if(charts.length===0||bad>0){e.textContent+='charts not rendered: '+bad+'\\n';}
document.title=e.textContent===''?'ok':'error';
});
"""

# Upper edges of the processing-time histogram (ms); the last bucket is open.
_LATENCY_EDGES_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _latency_bars(stats: PeriodStats) -> list[tuple[str, float]]:
    """Processing times in log-spaced buckets, each labelled with its edges (ms)."""
    edges = _LATENCY_EDGES_MS
    counts = [0] * (len(edges) + 1)
    for value, count in stats.times_ms.items():
        counts[next((i for i, edge in enumerate(edges) if value <= edge), len(edges))] += count
    # short enough for a bar's width: 500-1k, 2k-5k
    labels = [f"≤{human_number(edges[0])}"]
    labels += [f"{human_number(lo)}-{human_number(hi)}" for lo, hi in pairwise(edges)]
    labels.append(f">{human_number(edges[-1])}")
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
        rows.append(
            f"<tr><td>{html_text(name)}</td><td>{s.processed}</td>"
            f"<td>{rates['success_rate'] * 100:.2f}</td><td>{rates['error_rate'] * 100:.2f}</td>"
            f"<td>{s.skipped}</td><td>{s.parked}</td><td>{s.dead_lettered}</td>"
            f"<td>{ms(lat['p50_ms'])}</td><td>{ms(lat['p95_ms'])}</td><td>{ms(lat['p99_ms'])}</td>"
            f"<td>{ms(lat['max_ms'])}</td><td>{rates['throughput_per_min']:.1f}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _time_sections(comps: dict[str, PeriodStats]) -> list[str]:
    seconds = [k for s in comps.values() for k in (*s.per_second, *s.errors_per_second)]
    buckets = fit_buckets(seconds)
    if buckets is None:
        return ["<h2>Throughput over time</h2>" + '<p class="small none">no outcome line</p>']
    x_title = f"time (UTC, {buckets.day()}), {buckets.width_text()} buckets"
    throughput = {name: buckets.sums(s.per_second) for name, s in sorted(comps.items())}
    errors: Counter[str] = Counter()
    dlq: Counter[str] = Counter()
    for s in comps.values():
        errors.update(s.errors_per_second)
        dlq.update(s.dlq_per_second)
    return [
        f"<h2>Throughput over time (processed per {buckets.width_text()})</h2>"
        + line_chart("throughput per component", buckets.labels(), throughput, x_title),
        f"<h2>Errors and DLQ over time (per {buckets.width_text()})</h2>"
        + line_chart(
            "errors and DLQ",
            buckets.labels(),
            {"errors": buckets.sums(errors), "DLQ": buckets.sums(dlq)},
            x_title,
        ),
    ]


def _latency_sections(comps: dict[str, PeriodStats]) -> list[str]:
    parts = ["<h2>Processing-time distribution per component</h2>"]
    for i, (name, s) in enumerate(sorted(comps.items())):
        if s.times_ms:
            parts.append(f"<h3>{html_text(name)}</h3>")
            parts.append(
                bar_chart(
                    f"processing time {name}",
                    _latency_bars(s),
                    PALETTE[i % len(PALETTE)],
                    "processing time (ms); bar height: success lines",
                )
            )
    return parts


def render_report(
    report: StatsReport,
    errors: list[ErrorGroup],
    title: str,
    breakdown: Breakdown | None = None,
) -> str:
    """The HTML page for a statistics report, its grouped errors and its breakdown."""
    comps = report.components
    details = breakdown if breakdown is not None else Breakdown()
    sections = [
        f"<h1>{html_text(title)}</h1>",
        f'<p class="small">{len(report.files)} files; period '
        f"{html_text(report.since or 'start')} to {html_text(report.until or 'end')}</p>",
        "<h2>Summary</h2>" + _summary_table(report),
        *_time_sections(comps),
        *_latency_sections(comps),
        symbol_view(details),
        lp_view(details),
        rejects_view(details),
        errors_view(errors),
    ]
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
    progress: ScanProgress | None = None,
) -> str:
    """The HTML report for the logs under ``directory``."""
    stats = collect_stats(
        directory, since=since, until=until, components=components, progress=progress
    )
    errors = collect_errors(
        directory, since=since, until=until, components=components, progress=progress
    )
    breakdown = collect_breakdown(
        directory, since=since, until=until, components=components, progress=progress
    )
    return render_report(stats, errors, f"execflow logs report: {directory}", breakdown)


def write_report(out: Path, html: str) -> None:
    """Write the page atomically (temp file, then rename); a failure leaves no temp file."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(out)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
