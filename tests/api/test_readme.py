"""The README's curl session runs as printed (on a free port instead of 8080)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _session() -> str:
    text = README.read_text()
    start = text.index("```bash", text.index("## Platform API")) + len("```bash")
    return text[start : text.index("```", start)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_the_readme_curl_session_works_as_printed(tmp_path: Path) -> None:
    port = _free_port()
    script = _session().replace("8080", str(port))
    script = script.replace("execflow serve &", f"execflow serve --port {port} &")
    # the printed `sleep 3` waits for the server; a loaded machine may need longer
    wait = (
        f"for _ in $(seq 100); do curl -s localhost:{port}/healthz >/dev/null && break; "
        "sleep 0.2; done"
    )
    script = script.replace("sleep 3", wait)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECFLOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # its own process group: whatever happens, the server it starts is stopped with it
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    assert '"status":"' in out and '"symbol":"EURUSD"' in out, err
    assert "event: ready" in out and "id: live:1=1" in out
    assert '"kind":"ORDER_SUBMITTED"' in out and '"kind":"ORDER_OPENED"' in out
