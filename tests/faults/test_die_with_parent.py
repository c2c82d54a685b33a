"""A process a fault test starts in its own session dies with the test process.

The supervised pipeline, the driver and stress-ng run in sessions of their own (so a test
can signal each group); a test process killed without tearing down (SIGTERM or SIGKILL
of pytest) must not leave them running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# a parent that starts a long sleeper as the harness starts the pipeline, prints its pid,
# and waits to be killed
_PARENT = """
import subprocess, sys, time
from tests.faults.stress import die_with_parent
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(60)"],
    start_new_session=True, preexec_fn=die_with_parent,
)
print(child.pid, flush=True)
time.sleep(60)
"""


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":  # exited, not yet reaped by init
            return True
        time.sleep(0.05)
    return False


def test_the_child_gets_sigterm_when_the_test_process_is_killed() -> None:
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdout=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])},
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert not _gone(child, 0.3)  # alive while its parent is
        parent.send_signal(signal.SIGKILL)  # no teardown at all
        parent.wait(10)
        assert _gone(child, 10), "the child outlived the killed test process"
    finally:
        parent.stdout.close()
        for pid in (child, parent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait(10)
