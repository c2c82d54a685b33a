"""When a scenario stops waiting for its orders to end: on progress, within an overall limit.

Closing out waits as long as orders keep reaching a final status: a loaded machine (or a
slow LP, or a FIX session carrying thousands of reports) may take minutes to work off
what the trading phase left queued, and a fixed wait would then give up on orders that
were about to end. It gives up when no order has become final for ``stall_s`` (the
pipeline is stuck, or waits on something that will not come), and in any case once
``limit_s`` has passed since closing out began.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from execflow.clock import Clock

__all__ = ["SettleStop", "SettleWatch"]


class SettleStop(StrEnum):
    """Why closing out stopped before every order was final."""

    STALLED = "stalled"
    LIMIT = "limit"


@dataclass
class SettleWatch:
    """Tracks closing-out progress; ``stop()`` says whether (and why) to give up now."""

    clock: Clock
    stall_s: float
    limit_s: float
    started_at: float = 0.0
    last_progress_at: float = 0.0
    final: int = 0

    def __post_init__(self) -> None:
        self.started_at = self.last_progress_at = self.clock.monotonic()

    def seen(self, final: int) -> None:
        """``final`` orders are final now; more than before is progress."""
        if final > self.final:
            self.final = final
            self.last_progress_at = self.clock.monotonic()

    def stop(self) -> SettleStop | None:
        """``LIMIT`` past the overall limit, ``STALLED`` after ``stall_s`` without progress."""
        now = self.clock.monotonic()
        if now - self.started_at > self.limit_s:
            return SettleStop.LIMIT
        if now - self.last_progress_at > self.stall_s:
            return SettleStop.STALLED
        return None

    def left_s(self) -> float:
        """Seconds until ``stop()`` would give up if nothing moves (for bounded waits)."""
        now = self.clock.monotonic()
        return max(
            0.0,
            min(self.started_at + self.limit_s, self.last_progress_at + self.stall_s) - now,
        )

    def elapsed_s(self) -> float:
        """Seconds since closing out began."""
        return self.clock.monotonic() - self.started_at
