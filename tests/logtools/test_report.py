"""``logs report``: one self-contained HTML file, checked in headless Chromium (rendered
charts, no script error, no chart label outside its chart)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from execflow.logtools.report import build_report, render_report, write_report
from execflow.logtools.stats import PeriodStats, StatsReport
from execflow.settings import require_services
from tests.logtools.pipeline_logs import Written
from tests.logtools.png import colour_counts


def test_report_is_self_contained(mixed_logs: Written, tmp_path: Path) -> None:
    html = build_report(mixed_logs.directory)
    out = tmp_path / "report.html"
    write_report(out, html)
    text = out.read_text(encoding="utf-8")
    # No external resource of any kind.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text
    for title in ("throughput per component", "errors and DLQ", "top error types"):
        assert f"<title>{title}</title>" in text
    assert "processing time worker_open" in text
    assert "KeyError (worker_open)" in text
    assert "Traceback (most recent call last)" in text


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (Debian package chromium; .ci/apt-deps installs it)"
        if require_services():
            pytest.fail(message + " and EXECFLOW_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return found


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_renders_in_headless_chromium(mixed_logs: Written, tmp_path: Path) -> None:
    binary = _chromium()
    page = tmp_path / "report.html"
    write_report(page, build_report(mixed_logs.directory))
    dom = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The page's script sets the title to "ok" only when every chart has a size and no
    # script error happened; errors are written into <pre id="errors">.
    assert "<title>ok</title>" in dom.stdout, dom.stdout[:2000]
    assert re.search(r'<pre id="errors"[^>]*></pre>', dom.stdout)
    shot = tmp_path / "shot.png"
    result = _run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=900,700",
        "--hide-scrollbars",
        page.as_uri(),
    )
    assert shot.exists(), result.stderr[-2000:]
    colours = colour_counts(shot.read_bytes())
    background, background_pixels = colours.most_common(1)[0]
    assert background == b"\xff\xff\xff"
    # Charts and text: many colours, and a good share of non-background pixels.
    assert len(colours) > 20
    assert sum(colours.values()) - background_pixels > 0.03 * sum(colours.values())


def _big_report() -> StatsReport:
    """Counts in the tens of thousands, over 80 s, with errors that have no traceback."""
    stats = PeriodStats(processed=15240 * 16, success=15240 * 16)
    stats.times_ms.update({0.4: 15240, 3.0: 9000, 12000.0: 3})
    for second in range(0, 80, 5):
        stats.per_second[f"2026-11-29T12:00:{second:02d}" if second < 60 else
                         f"2026-11-29T12:01:{second - 60:02d}"] = 15240  # fmt: skip
    stats.first_ts, stats.last_ts = "2026-11-29T12:00:00.0Z", "2026-11-29T12:01:15.0Z"
    return StatsReport({"worker_open": stats, "dispatcher": stats}, ["worker_open.log"])


def _dom(binary: str, tmp_path: Path, html: str, name: str) -> str:
    page = tmp_path / f"{name}.html"
    write_report(page, html)
    dom = _run_chromium(binary, tmp_path / f"profile-{name}", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def test_big_numbers_are_readable_and_no_label_is_clipped(
    mixed_logs: Written, tmp_path: Path
) -> None:
    binary = _chromium()
    html = render_report(_big_report(), [], "big counts")
    assert "15k" in html and "e+" not in html
    assert "processed per 5 s" in html
    dom = _dom(binary, tmp_path, html, "big")
    # the page checks in the browser that every text of every chart lies inside it
    assert "<title>ok</title>" in dom, re.search(r'<pre id="errors"[^>]*>([^<]*)', dom)
    # the real logs, with per-symbol, per-LP and reject views, pass the same check
    dom = _dom(binary, tmp_path, build_report(mixed_logs.directory), "mixed")
    assert "<title>ok</title>" in dom, re.search(r'<pre id="errors"[^>]*>([^<]*)', dom)


def test_the_page_check_catches_a_clipped_label_and_overlapping_labels(tmp_path: Path) -> None:
    binary = _chromium()
    html = render_report(_big_report(), [], "clipped on purpose")
    # the old axis: the label's right edge at x=50, anchored at the end, far too long
    clipped = html.replace(
        "</svg>",
        '<text x="50" y="40" text-anchor="end" font-size="11">1.524e+04 1.524e+04</text></svg>',
        1,
    )
    dom = _dom(binary, tmp_path, clipped, "clipped")
    assert "<title>error</title>" in dom
    assert "label outside its chart: 1.524e+04" in dom
    # and two bucket labels written over each other (the old histogram's 1000-2000)
    crowded = html.replace(
        "</svg>",
        '<text class="x-label" x="100" y="230" text-anchor="middle" font-size="10">1000-2000</text>'
        '<text class="x-label" x="120" y="230" text-anchor="middle" font-size="10">2000-5000</text>'
        "</svg>",
        1,
    )
    dom = _dom(binary, tmp_path, crowded, "crowded")
    assert "<title>error</title>" in dom
    assert "labels overlap: 1000-2000 / 2000-5000" in dom
