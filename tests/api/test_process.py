"""``execflow run api`` as a process: ready once it listens, PROCESS:START / STOP on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.test_readme import _free_port


@pytest.mark.slow
def test_run_api_serves_until_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECFLOW_")}
    env["EXECFLOW_LOG_DIR"] = str(tmp_path / "logs")
    env["EXECFLOW_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    execflow = Path(sys.executable).parent / "execflow"
    process = subprocess.Popen(
        [str(execflow), "run", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = None
        for _ in range(300):
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, ready
        assert ready.json()["checks"]["state_rebuilt"] is True
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    log = (tmp_path / "logs" / "api.log").read_text()
    assert "[PROCESS:START] component=api" in log
    assert "[PROCESS:STOP] component=api" in log and "signal=SIGTERM" in log
