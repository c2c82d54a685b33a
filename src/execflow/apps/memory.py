"""Resident memory of the pipeline's processes, beside a bare interpreter's in the same run.

``execflow bench`` and ``bench/memory.py`` print the RSS of each pipeline process
(dispatcher, worker open, db writer) after its warm-up, and the RSS of ``python -c``
running nothing, started from the same interpreter on the same host: the ratio holds
on any machine, the megabytes only on this one (docs/benchmarks.md, "Memory").
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]

__all__ = ["MemoryFigures", "ProcessRss", "bare_interpreter_rss", "process_rss"]

_MB = 1024 * 1024
# prints one line once it is up, then blocks on stdin: imports nothing ``-c pass`` does not
_BARE = "print('up', flush=True); import sys; sys.stdin.read()"


@dataclass(frozen=True, slots=True)
class ProcessRss:
    """One process's resident set size."""

    name: str
    rss_bytes: int

    @property
    def rss_mb(self) -> float:
        """Resident set size in MiB."""
        return self.rss_bytes / _MB


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """Each pipeline process's RSS and the bare interpreter's, measured in one run."""

    processes: tuple[ProcessRss, ...]
    bare_rss_bytes: int

    def lines(self) -> list[str]:
        """``worker_open  52.1 MB  (5.3x a bare interpreter)``, one per process, then the bare."""
        bare = self.bare_rss_bytes
        width = max((len(p.name) for p in self.processes), default=0)
        out = [
            f"{p.name:<{width}}  {p.rss_mb:6.1f} MB  ({p.rss_bytes / bare:.1f}x a bare interpreter)"
            for p in self.processes
        ]
        out.append(f"bare interpreter (python -c pass): {bare / _MB:.1f} MB")
        return out


def process_rss(pids: Mapping[str, int]) -> tuple[ProcessRss, ...]:
    """The RSS of each named process now (a process that has exited is left out)."""
    found: list[ProcessRss] = []
    for name, pid in pids.items():
        try:
            found.append(ProcessRss(name, int(psutil.Process(pid).memory_info().rss)))
        except psutil.NoSuchProcess:
            continue
    return tuple(found)


def bare_interpreter_rss(python: str = sys.executable) -> int:
    """The RSS of ``python`` started with ``-c`` and nothing to run (blocking, ~50 ms)."""
    with subprocess.Popen(
        [python, "-c", _BARE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        child.stdout.readline()
        try:
            return int(psutil.Process(child.pid).memory_info().rss)
        finally:
            child.stdin.close()
            child.wait(timeout=10)
