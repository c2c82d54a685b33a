"""``execflow reconcile --every``: keeps reconciling, each result a metric, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ENTRY = "from execflow.cli.app import main; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("execflow_reconcile"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_reconcile_every_exports_each_run_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "EXECFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'execflow.db'}",
        "EXECFLOW_LOG_DIR": str(tmp_path / "logs"),
        "EXECFLOW_METRICS_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", ENTRY, "reconcile", "--every", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        first: dict[str, float] = {}
        deadline = time.monotonic() + 60
        # served at once, set when the first run ends
        while not first.get("execflow_reconcile_last_success_timestamp_seconds"):
            assert time.monotonic() < deadline, first
            first = _scrape(port)
            time.sleep(0.2)
        assert first["execflow_reconcile_mismatches"] == 0
        assert first["execflow_reconcile_failures_total"] == 0
        stamp = first["execflow_reconcile_last_success_timestamp_seconds"]
        assert abs(stamp - time.time()) < 60
        later = first
        while time.monotonic() < deadline:
            later = _scrape(port)
            if later["execflow_reconcile_last_success_timestamp_seconds"] > stamp:
                break
            time.sleep(0.2)
        assert later["execflow_reconcile_last_success_timestamp_seconds"] > stamp
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out.decode()
    log = (tmp_path / "logs" / "supervisor.log").read_text()
    assert log.count("RECONCILE:DONE") >= 2 and "RECONCILE:STOPPED" in log
