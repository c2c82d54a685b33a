"""``logs report``: one self-contained HTML file, checked in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from execflow.logtools.report import build_report, write_report
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
