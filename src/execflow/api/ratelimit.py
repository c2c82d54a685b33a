"""Requests per API key: a token bucket per key, in this process.

Hand-written because it is a dozen lines over an injected clock; the libraries that do
this (``limits``, ``slowapi``) bring storage backends and decorators the API does not
use. Each API instance limits on its own: N instances allow N times the rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from execflow.clock import Clock

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``rate_per_s`` sustained, ``burst`` at once, per key id."""

    def __init__(self, clock: Clock, rate_per_s: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate_per_s
        self._burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key_id: str) -> int | None:
        """Spend one token: None when allowed, else the seconds to wait (Retry-After)."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / self._rate))
