"""The logging layer's own counters and its rate-limited stderr reports.

Logging never raises into the pipeline: a write that fails is counted here and reported
on stderr at most once per interval, with how many failures were not reported.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["FailureReporter", "WriterCounters"]


class WriterCounters:
    """Lines, bytes and rotations written; lines dropped; failed writes (cumulative)."""

    __slots__ = ("bytes", "dropped", "lines", "rotations", "write_failures")

    def __init__(self) -> None:
        self.lines = 0
        self.bytes = 0
        self.rotations = 0
        self.dropped = 0
        self.write_failures = 0

    def snapshot(self) -> dict[str, int]:
        """The counters under the names STATS lines use (``log_lines``, ``log_bytes``, ...)."""
        return {
            "log_lines": self.lines,
            "log_bytes": self.bytes,
            "log_rotations": self.rotations,
            "log_dropped": self.dropped,
            "log_write_failures": self.write_failures,
        }


class FailureReporter:
    """Count failures; print one line to stderr at most every ``interval_s`` seconds."""

    def __init__(
        self,
        counters: WriterCounters,
        stream: TextIO | None = None,
        interval_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counters = counters
        self._stream = stream
        self._interval_s = interval_s
        self._monotonic = monotonic
        self._last_report: float | None = None
        self._suppressed = 0
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def failed(self, what: str, error: BaseException, lines_lost: int = 0) -> None:
        """Record one failed operation on ``what`` (a path) that lost ``lines_lost`` lines."""
        self._counters.write_failures += 1
        self._counters.dropped += lines_lost
        with self._lock:
            self._failing.add(what)
            now = self._monotonic()
            if self._last_report is not None and now - self._last_report < self._interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last_report = now
        extra = f" ({suppressed} similar failures not shown)" if suppressed else ""
        self._print(
            f"execflow logging: cannot write {what}: {type(error).__name__}: {error}; "
            f"{lines_lost} line(s) lost, retrying{extra}"
        )

    def recovered(self, what: str) -> None:
        """``what`` accepted a write again after failing; said once per recovery."""
        with self._lock:
            if what not in self._failing:
                return
            self._failing.discard(what)
        self._print(f"execflow logging: writing to {what} again")

    def _print(self, message: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(message + "\n")
            stream.flush()
        except (OSError, ValueError):
            # stderr itself is gone (closed pipe): the counters still hold the truth.
            return
