"""A pipeline process of ``execflow bench --profile-dir DIR``, run under cProfile.

The bench starts each distributed process as ``python -c "from execflow.cli.profiled
import run; run(PATH)" run worker open --instance 1`` instead of the plain entry point
(``apps.bench.PROFILED_ENTRY``):
the same command line, the same settings, and at its end (SIGTERM from the bench, a
clean stop) the profile is written to ``PATH``. The timer is the loop thread's CPU time
(``time.thread_time``): what the process waits for (the broker, Redis, its next message)
is not counted, so the figures add up to the process's own work, as the bench's CPU
columns count it. Read one with ``python -m pstats PATH``.
"""

from __future__ import annotations

import cProfile
import time

from execflow.cli.app import main

__all__ = ["run"]


def run(path: str) -> None:
    """``execflow`` (its arguments from ``sys.argv``) under cProfile; the stats to ``path``."""
    profiler = cProfile.Profile(time.thread_time)
    try:
        profiler.runcall(main)
    finally:
        profiler.dump_stats(path)
