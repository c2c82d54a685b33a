"""CPU saturation for the fault suite: ``stress-ng --cpu N`` for one test's duration.

``EXECFLOW_FAULT_STRESS=1`` asks for it (the money divergence of issue 11 showed only on
a busy box). The load generator is ``stress-ng`` (Debian package ``stress-ng``, installed
by ``.ci/apt-deps``): one CPU hog per core, in its own process group, stopped (SIGTERM,
then SIGKILL of the group) when the test ends. Its ``--timeout`` and a parent-death
signal stop it by itself should the test process die without tearing down.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

__all__ = [
    "DEADLINE_SCALE",
    "STRESS_ENV",
    "cpu_load",
    "deadline_s",
    "die_with_parent",
    "stress_requested",
]

STRESS_ENV = "EXECFLOW_FAULT_STRESS"
BACKSTOP_S = 3600  # longer than any fault test (the soak's timeout is 600 s)
_PR_SET_PDEATHSIG = 1
# prctl(2) has no stdlib wrapper; looked up here, not in the forked child (no dlopen there)
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def stress_requested() -> bool:
    """True when ``EXECFLOW_FAULT_STRESS`` is set to anything but empty or 0."""
    return os.environ.get(STRESS_ENV, "").strip() not in ("", "0")


DEADLINE_SCALE = 3.0
"""How much longer a fault test waits for recovery while stress-ng holds every core.

With one CPU hog per core the pipeline's processes get roughly a third of the CPU time
they get otherwise (the scheduler shares each core between the hog and them), so a
backlog takes about three times as long to drain. A deadline only bounds how long the
test waits for the pipeline; the verdict (nothing lost, nothing applied twice,
reconciliation clean) is the same with or without stress.
"""


def deadline_s(seconds: float) -> float:
    """A fault test's wait bound: ``seconds``, stretched when the CPU is saturated."""
    return seconds * DEADLINE_SCALE if stress_requested() else seconds


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies, however it dies.

    For the processes a test starts in a session of their own (stress-ng, the supervised
    pipeline, the driver): a test process killed without tearing down would otherwise
    leave them running (a pipeline restarting its children against servers gone).
    """
    # stress-ng passes the signal on to its hogs
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def cpu_load(workers: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Saturate ``workers`` CPUs (default: every core) until the block ends."""
    binary = shutil.which("stress-ng")
    if binary is None:
        raise FileNotFoundError(
            f"{STRESS_ENV} is set but stress-ng is missing (apt-get install stress-ng)"
        )
    count = workers or os.cpu_count() or 2
    process = subprocess.Popen(
        [binary, "--cpu", str(count), "--timeout", f"{BACKSTOP_S}s", "--quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
        # the hogs are in the same group: none may outlive the test
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
