"""``logs report``: readable axes, buckets that fit the run, labelled histograms, a
traceback only when there is one, per-symbol and per-LP views, reject reasons."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from execflow.logs import setup_logging
from execflow.logtools.breakdown import collect_breakdown
from execflow.logtools.buckets import fit_buckets
from execflow.logtools.error_groups import ErrorGroup
from execflow.logtools.record import LogRecord
from execflow.logtools.report import build_report, render_report
from execflow.logtools.stats import PeriodStats, StatsReport
from execflow.logtools.svg import bar_chart, human_number, line_chart, nice_max
from execflow.settings import load_settings


def _y_labels(svg: str) -> list[str]:
    return re.findall(r'<text class="y-label"[^>]*>([^<]*)</text>', svg)


def _x_labels(svg: str) -> list[str]:
    return re.findall(r'<text class="x-label"[^>]*>([^<]*)</text>', svg)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"),
        (7, "7"),
        (0.25, "0.25"),
        (999, "999"),
        (15240, "15.2k"),
        (1.524e4, "15.2k"),
        (20000, "20k"),
        (1_500_000, "1.5M"),
        (2.5e9, "2.5G"),
    ],
)
def test_human_numbers(value: float, shown: str) -> None:
    assert human_number(value) == shown


def test_axis_has_round_ticks_in_human_numbers() -> None:
    assert nice_max(15240) == 20000
    assert nice_max(7) == 8
    assert nice_max(0) == 1
    svg = line_chart("big", ["a", "b", "c"], {"s": [0.0, 15240.0, 3.0]})
    assert _y_labels(svg) == ["0", "5k", "10k", "15k", "20k"]
    assert "e+" not in svg


def test_y_labels_get_room_on_the_left() -> None:
    narrow = line_chart("small", ["a", "b"], {"s": [1.0, 2.0]})
    wide = line_chart("wide", ["a", "b"], {"s": [1.0, 123456789.0]})
    axis_x = [float(re.search(r'<line x1="([0-9.]+)" y1="16"', svg).group(1))  # type: ignore[union-attr]
              for svg in (narrow, wide)]  # fmt: skip
    assert axis_x[1] >= axis_x[0]
    # every label's right edge sits left of the axis, its left edge inside the chart
    for svg, x in zip((narrow, wide), axis_x, strict=True):
        for label in _y_labels(svg):
            assert len(label) * 7.4 <= x - 6


def _seconds(start: str, span_s: int) -> list[str]:
    from datetime import datetime, timedelta

    first = datetime.fromisoformat(start)
    return [(first + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S") for s in range(span_s)]


@pytest.mark.parametrize(
    ("span_s", "width_s", "label"),
    [(80, 5, "12:00:05"), (10, 1, "12:00:01"), (600, 30, "12:00:30"), (3 * 3600, 600, "12:10")],
)
def test_buckets_fit_the_run(span_s: int, width_s: int, label: str) -> None:
    buckets = fit_buckets(_seconds("2026-11-29T12:00:00", span_s))
    assert buckets is not None
    assert buckets.width_s == width_s
    assert 1 < buckets.count <= 30
    assert buckets.labels()[1] == label
    counts = Counter(_seconds("2026-11-29T12:00:00", span_s))
    assert sum(buckets.sums(counts)) == span_s


def test_buckets_of_a_day_and_across_midnight() -> None:
    day = fit_buckets(["2026-11-29T00:00:00", "2026-11-29T23:59:59"])
    assert day is not None and day.width_s == 3600 and day.count == 24
    night = fit_buckets(["2026-11-29T23:00:00", "2026-11-30T01:00:00"])
    assert night is not None
    assert night.labels()[0] == "11-29 23:00" and night.labels()[-1] == "11-30 01:00"
    assert fit_buckets([]) is None


def test_histogram_bars_carry_their_edges() -> None:
    svg = bar_chart("h", [("≤0.5", 3.0), ("0.5-1", 0.0), (">5000", 1.0)])
    assert _x_labels(svg) == ["≤0.5", "0.5-1", "&gt;5000"]


def _stats_with_times() -> StatsReport:
    stats = PeriodStats(processed=3, success=3)
    stats.times_ms.update({0.3: 1, 7.0: 1, 9000.0: 1})
    stats.per_second.update({"2026-11-29T12:00:00": 2, "2026-11-29T12:01:20": 1})
    stats.first_ts, stats.last_ts = "2026-11-29T12:00:00.0Z", "2026-11-29T12:01:20.0Z"
    return StatsReport({"worker_open": stats}, ["worker_open.log"])


def test_report_histogram_labels_and_fitting_buckets() -> None:
    html = render_report(_stats_with_times(), [], "t")
    assert "processed per 5 s" in html
    assert "5 s buckets" in html
    labels = _x_labels(html)
    assert "≤0.5" in labels and "5-10" in labels and "500-1k" in labels and "&gt;5k" in labels
    assert "processing time (ms)" in html


def _group(**fields: str) -> ErrorGroup:
    record = LogRecord("2026-11-29T12:00:00.000000Z", "ERROR", "provider.worker.open",
                       "OPEN:ERROR", dict(fields), "worker_open.log")  # fmt: skip
    return ErrorGroup("KeyError", "worker_open", 2, record.ts, record.ts, record)


def test_traceback_box_only_when_there_is_a_traceback() -> None:
    report = _stats_with_times()
    without = render_report(report, [_group(error="no rate for JPY")], "t")
    assert "<pre" not in without.replace('<pre id="errors"', "")
    assert "no rate for JPY" in without
    with_tb = render_report(
        report, [_group(error="x", traceback="Traceback (most recent call last):\n  boom")], "t"
    )
    found = re.findall(r'<pre class="traceback">([^<]*)</pre>', with_tb)
    assert len(found) == 1 and found[0].startswith("Traceback (most recent call last):")
    nothing = render_report(report, [], "t")
    assert "no ERROR or CRITICAL line" in nothing


def _breakdown_logs(directory: Path) -> Path:
    """Reject, simulator, gateway and worker lines through the real writer."""
    settings = load_settings(log_dir=directory, log_format="text")
    with setup_logging(settings, "worker_reject", bridge=False) as system:
        reject, opener = system.logger("reject"), system.logger("open")
        sim, gateway = system.logger("simulator"), system.logger("lp_gateway")
        reasons = ["NO_LIQUIDITY"] * 3 + ["MARKET_CLOSED"] * 2
        for i, reason in enumerate(reasons):
            reject.success(
                "REJECT:SUCCESS", processing_time_ms=2.0, order_id=str(i), symbol="GBPUSD",
                rejection_type="ORDER_PLACEMENT", reason=reason,
            )  # fmt: skip
        for i in range(4):
            opener.success("OPEN:SUCCESS", processing_time_ms=1.0 + i, order_id=str(i),
                           symbol="EURUSD")  # fmt: skip
        opener.dead_lettered("OPEN:DLQ", reason="needs_review", order_id="9", symbol="EURUSD")
        sim.success("SIM:FILLED", processing_time_ms=0.5, order_id="1", symbol="EURUSD")
        sim.success("SIM:REJECTED", processing_time_ms=0.4, order_id="2", symbol="GBPUSD")
        for lp in ("primebank", "primebank", "lmax"):
            gateway.success("LPGW:SUCCESS", processing_time_ms=0.2, lp=lp, symbol="EURUSD")
    return directory


def test_breakdown_per_symbol_per_lp_and_reject_reasons(tmp_path: Path) -> None:
    directory = _breakdown_logs(tmp_path)
    breakdown = collect_breakdown(directory)
    assert set(breakdown.symbols) == {"EURUSD", "GBPUSD"}  # workers only
    eur, gbp = breakdown.symbols["EURUSD"], breakdown.symbols["GBPUSD"]
    assert (eur.success, eur.dead_lettered, eur.rejected) == (4, 1, 0)
    assert (gbp.success, gbp.rejected) == (5, 5)
    assert eur.p(50) == 2.0
    assert {name: g.total for name, g in breakdown.lps.items()} == {
        "primebank": 2, "lmax": 1, "simulator": 2,
    }  # fmt: skip
    assert breakdown.lps["simulator"].rejected == 1
    assert breakdown.reject_reasons == Counter(
        {("ORDER_PLACEMENT", "NO_LIQUIDITY"): 3, ("ORDER_PLACEMENT", "MARKET_CLOSED"): 2}
    )
    html = build_report(directory)
    for heading in ("Per symbol", "Per LP", "Reject reasons"):
        assert f"<h2>{heading}" in html
    assert '<table class="per-symbol">' in html and '<table class="per-lp">' in html
    assert re.search(r"<td>NO_LIQUIDITY</td><td>ORDER_PLACEMENT</td><td>3</td>", html)
    assert re.search(r"<td>primebank</td><td>2</td>", html)
    # a component filter narrows the views too
    only_open = build_report(directory, components={"worker_open"})
    assert "no reject in this period" in only_open
    assert "no LP gateway or simulator line" in only_open


def test_empty_views_say_so(tmp_path: Path) -> None:
    html = build_report(tmp_path)
    assert "no worker line names a symbol" in html
    assert "no outcome line" in html


def test_a_dead_letter_example_says_why() -> None:
    html = render_report(_stats_with_times(), [_group(detail="second close of one position")], "t")
    assert "second close of one position" in html
    assert "no message" not in html
