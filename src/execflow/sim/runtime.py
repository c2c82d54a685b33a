"""The simulator as one component: a price feed ticking on a timer plus the LP on the bus."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from execflow.backends.bus import Bus
from execflow.backends.state import StateStore
from execflow.clock import Clock, IdGenerator, SystemClock, UuidIds
from execflow.errors import StoreError
from execflow.logs.events import EventLogger
from execflow.metrics import Metrics
from execflow.sim.config import LpConfig
from execflow.sim.feed import DEFAULT_SYMBOLS, PriceFeed, SymbolSpec
from execflow.sim.lp import LpSimulator

__all__ = ["Simulator"]


class Simulator:
    """Feed + LP with ``start`` / ``stop``; quotes go to the state store (conversion rates).

    With ``metrics`` the LP's answer times are ``execflow_lp_latency_seconds``.
    """

    def __init__(
        self,
        bus: Bus,
        state: StateStore,
        log: EventLogger,
        config: LpConfig,
        *,
        seed: int = 1,
        symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS,
        tick_interval_s: float = 0.02,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        # one stream for prices, one for the venue: changing a rate keeps the price path
        self._state = state
        self.feed = PriceFeed(symbols, self._put_price, random.Random(seed), self._clock)
        self.lp = LpSimulator(
            bus,
            self.feed,
            log,
            config,
            random.Random(seed + 1),
            self._clock,
            ids or UuidIds(),
            on_answered=None if metrics is None else metrics.observe_lp_latency,
        )
        self._log = log
        self._interval_s = tick_interval_s
        self._stop = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    async def _put_price(self, symbol: str, data: dict[str, Any]) -> None:
        """Write a quote; while the state store is away, skip it (the next tick re-sends)."""
        try:
            await self._state.put_price(symbol, data)
        except StoreError as exc:
            self._log.stats.incr("price_write_failures")
            if self._log.stats.count("price_write_failures") % 100 == 1:
                self._log.warning("SIM:PRICE_NOT_STORED", symbol=symbol, error=str(exc))

    async def start(self) -> None:
        """Publish the first quotes, start the LP, then tick the feed."""
        await self.feed.publish()
        await self.lp.start()
        self._stop.clear()
        self._ticker = asyncio.create_task(
            self.feed.run(self._interval_s, self._stop), name="sim-feed"
        )

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop the feed, then the LP (in-flight reports are published first)."""
        self._stop.set()
        if self._ticker is not None:
            await self._ticker
            self._ticker = None
        await self.lp.stop(drain_timeout_s)
