"""Per-component statistics: outcome counters, own counters, processing-time percentiles.

Pure bookkeeping (no I/O): the event logger writes the ``STATS`` line when ``due()``
says so, and the metrics/health module and the demo summary read ``snapshot()``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from execflow.clock import Clock, SystemClock

__all__ = ["COMMON_COUNTERS", "OUTCOMES", "ComponentStats"]

COMMON_COUNTERS = (
    "processed",
    "success",
    "failure",
    "skipped",
    "parked",
    "retried",
    "dead_lettered",
)
# Outcomes that finish an item count as processed; parked and retried items come back.
OUTCOMES: Mapping[str, bool] = {
    "success": True,
    "failure": True,
    "skipped": True,
    "dead_lettered": True,
    "parked": False,
    "retried": False,
}


class ComponentStats:
    """Counters and a bounded window of processing times for one component instance."""

    def __init__(
        self,
        component: str,
        instance: int = 1,
        clock: Clock | None = None,
        every_n: int = 100,
        interval_s: float = 300.0,
        window: int = 256,
        log_counters: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.component = component
        self.instance = instance
        self.every_n = every_n
        self.interval_s = interval_s
        self._clock: Clock = clock or SystemClock()
        self._log_counters = log_counters
        # ``counts``, ``times`` and ``due_at`` are read and updated inline by
        # ``EventLogger.success`` (the hottest call of every worker); elsewhere use the methods.
        self.counts: dict[str, int] = dict.fromkeys(COMMON_COUNTERS, 0)
        self._custom: dict[str, int] = {}
        # A bounded ring (the oldest value drops out in C, one call per item). 256 values
        # keep the sort at each STATS line cheap and the percentiles about recent traffic.
        self.times: deque[float] = deque(maxlen=max(16, window))
        self._started = self._clock.monotonic()
        self._last_emit = self._started
        self._processed_at_emit = 0
        self.due_at = every_n
        self._lock = threading.Lock()

    # -- recording ------------------------------------------------------------------------
    def record(self, outcome: str, processing_time_ms: float | None = None) -> bool:
        """Count one outcome (``success``, ``failure``, ``skipped``, ``parked``, ...).

        Returns True when a STATS line is due by count (the caller then emits it).
        """
        finishes = OUTCOMES.get(outcome)
        if finishes is None:
            raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(OUTCOMES)}")
        counts = self.counts
        counts[outcome] += 1
        if processing_time_ms is not None:
            self.observe(processing_time_ms)
        if finishes:
            counts["processed"] += 1
            return counts["processed"] >= self.due_at
        return False

    def record_success(self, processing_time_ms: float | None) -> bool:
        """``record("success", processing_time_ms)``, trimmed for the hot path."""
        counts = self.counts
        counts["success"] += 1
        counts["processed"] = processed = counts["processed"] + 1
        if processing_time_ms is not None:
            self.times.append(processing_time_ms)
        return processed >= self.due_at

    def incr(self, name: str, amount: int = 1) -> None:
        """Add to a component counter (``orders_opened``, ``routed.worker_open``, ...)."""
        self._custom[name] = self._custom.get(name, 0) + amount

    def observe(self, processing_time_ms: float) -> None:
        """Add one processing time to the percentile window (the oldest value drops out)."""
        self.times.append(float(processing_time_ms))

    # -- reading --------------------------------------------------------------------------
    def count(self, name: str) -> int:
        """The value of a common or component counter (0 when never incremented)."""
        return self.counts.get(name, self._custom.get(name, 0))

    def percentiles(self) -> tuple[float, float, float]:
        """p50, p95, p99 in ms over the window (nearest rank); zeros when empty."""
        values = sorted(self.times)
        if not values:
            return 0.0, 0.0, 0.0
        last = len(values) - 1

        def rank(q: float) -> float:
            return values[min(last, max(0, math.ceil(q * len(values)) - 1))]

        return rank(0.50), rank(0.95), rank(0.99)

    def due(self) -> bool:
        """True when a STATS line is owed: ``every_n`` processed or ``interval_s`` elapsed."""
        if self.counts["processed"] >= self.due_at:
            return True
        return self._clock.monotonic() - self._last_emit >= self.interval_s

    def snapshot(self) -> dict[str, Any]:
        """Every figure of a STATS line as a dict, without resetting the cadence."""
        now = self._clock.monotonic()
        elapsed_min = (now - self._last_emit) / 60.0
        recent = self.counts["processed"] - self._processed_at_emit
        p50, p95, p99 = self.percentiles()
        fields: dict[str, Any] = {"component": self.component, "instance": self.instance}
        fields.update(self.counts)
        fields.update(sorted(self._custom.items()))
        fields["p50_ms"] = round(p50, 3)
        fields["p95_ms"] = round(p95, 3)
        fields["p99_ms"] = round(p99, 3)
        fields["rate_per_min"] = round(recent / elapsed_min, 2) if elapsed_min > 0 else 0.0
        fields["uptime_s"] = round(now - self._started, 3)
        if self._log_counters is not None:
            fields.update(self._log_counters())
        return fields

    def take_line(self, final: bool = False, force: bool = False) -> dict[str, Any] | None:
        """The fields of the owed STATS line (and restart the cadence), or None if not due.

        Safe to call from the caller and the writer thread at once: one of them gets it.
        """
        with self._lock:
            if not (force or final or self.due()):
                return None
            fields = self.snapshot()
            if final:
                fields["final"] = True
            self._last_emit = self._clock.monotonic()
            self._processed_at_emit = self.counts["processed"]
            self.due_at = self._processed_at_emit + self.every_n
            return fields
