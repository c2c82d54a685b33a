"""How messy the simulated LP is: latency, slippage, rejects, partials, duplicates, noise."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["LatencyModel", "LpConfig"]


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Triangular latency distribution in milliseconds; all zero means no wait at all."""

    min_ms: float = 0.5
    mode_ms: float = 2.0
    max_ms: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_ms <= self.mode_ms <= self.max_ms:
            raise ValueError("latency must satisfy 0 <= min_ms <= mode_ms <= max_ms")

    def sample_s(self, rng: random.Random) -> float:
        """One latency draw, in seconds."""
        if self.max_ms <= 0:
            return 0.0
        return rng.triangular(self.min_ms, self.max_ms, self.mode_ms) / 1000.0


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within [0, 1], got {value}")


@dataclass(frozen=True, slots=True)
class LpConfig:
    """Behaviour knobs of the LP simulator; every ``*_rate`` is a probability per item.

    * ``reject_rate``: share of requests refused with a realistic reason.
    * ``partial_rate``: share of fills delivered as 2-3 partial reports.
    * ``duplicate_rate``: share of reports sent twice (same exec_id).
    * ``reorder_rate``: share of reports held back by up to ``reorder_window_ms`` (or
      swapped with the next report of the same answer), so later ones overtake them.
    * ``malformed_rate``: share of reports followed by a malformed message (DLQ food).
    * ``ack_rate``: share of market orders acknowledged (39=0) before the fill.
    * ``slippage_rate`` / ``slippage_max_ticks``: adverse slippage of market and stop fills.
    * ``double_fill_rate``: share of SL/TP fills after which the LP also fills the other
      leg of the same position (a venue bug on price gaps; the pipeline must refuse the
      second close and send it to the DLQ for review).
    """

    latency: LatencyModel = LatencyModel()
    reject_rate: float = 0.0
    partial_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    reorder_window_ms: float = 20.0
    malformed_rate: float = 0.0
    ack_rate: float = 0.1
    slippage_rate: float = 0.2
    slippage_max_ticks: int = 3
    double_fill_rate: float = 0.0
    prefetch: int = 64
    provider: str = "sim"

    def __post_init__(self) -> None:
        for name in (
            "reject_rate",
            "partial_rate",
            "duplicate_rate",
            "reorder_rate",
            "malformed_rate",
            "ack_rate",
            "slippage_rate",
            "double_fill_rate",
        ):
            _check_share(name, getattr(self, name))
        if self.reorder_window_ms < 0 or self.slippage_max_ticks < 0 or self.prefetch < 1:
            raise ValueError("reorder_window_ms, slippage_max_ticks >= 0 and prefetch >= 1")
