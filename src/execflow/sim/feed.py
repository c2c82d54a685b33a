"""Seeded price feed: one random walk per symbol, bid/ask around it, written through a sink.

Prices move in whole ticks (integers), so every quote is an exact ``Decimal`` with the
symbol's precision; the randomness comes from an injected ``random.Random`` and the
timestamps from an injected clock, so a seed replays the same path.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from execflow.clock import Clock
from execflow.domain.models import Quote

__all__ = ["DEFAULT_SYMBOLS", "PriceFeed", "PriceSink", "SymbolSpec", "quote_to_dict"]

PriceSink = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Where quotes go, e.g. ``StateStore.put_price``: ``(symbol, {"bid": ..., "ask": ...})``."""


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One simulated symbol: start mid, tick size, raw LP spread and volatility, in ticks."""

    symbol: str
    start: Decimal
    tick: Decimal
    spread_ticks: int
    sigma_ticks: float

    def ticks(self, price: Decimal) -> int:
        """A price as a whole number of ticks (rounded to the nearest)."""
        return int((price / self.tick).to_integral_value())


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    SymbolSpec("EURUSD", Decimal("1.08500"), Decimal("0.00001"), 2, 3.0),
    SymbolSpec("GBPUSD", Decimal("1.27000"), Decimal("0.00001"), 3, 4.0),
    SymbolSpec("USDJPY", Decimal("150.000"), Decimal("0.001"), 3, 4.0),
    SymbolSpec("EURGBP", Decimal("0.85000"), Decimal("0.00001"), 2, 2.0),
    SymbolSpec("XAUUSD", Decimal("2650.00"), Decimal("0.01"), 20, 30.0),
    SymbolSpec("US30", Decimal("44000.0"), Decimal("0.1"), 10, 20.0),
    SymbolSpec("BTCUSD", Decimal("60000.0"), Decimal("0.1"), 100, 150.0),
)
"""Symbols the demo trades; JPY and GBP profits convert through USDJPY and GBPUSD."""


def quote_to_dict(quote: Quote) -> dict[str, Any]:
    """The state store's price document: ``{"bid": "...", "ask": "..."}``."""
    return {"bid": str(quote.bid), "ask": str(quote.ask)}


class PriceFeed:
    """Random-walk quotes for a set of symbols."""

    def __init__(
        self,
        specs: Sequence[SymbolSpec],
        sink: PriceSink,
        rng: random.Random,
        clock: Clock,
    ) -> None:
        if not specs:
            raise ValueError("a price feed needs at least one symbol")
        self._specs = {s.symbol: s for s in specs}
        self._sink = sink
        self._rng = rng
        self._clock = clock
        self._mid: dict[str, int] = {s.symbol: s.ticks(s.start) for s in specs}
        self._listeners: list[Callable[[Sequence[Quote]], None]] = []
        self.steps = 0
        self.last_published_at = clock.now()

    @property
    def symbols(self) -> tuple[str, ...]:
        """The simulated symbols, in spec order."""
        return tuple(self._specs)

    def spec(self, symbol: str) -> SymbolSpec | None:
        """The spec of a symbol, or None when it is not simulated."""
        return self._specs.get(symbol)

    def quote(self, symbol: str) -> Quote | None:
        """The current quote of a symbol, or None when it is not simulated."""
        spec = self._specs.get(symbol)
        if spec is None:
            return None
        mid = self._mid[symbol]
        half = spec.spread_ticks // 2
        bid = mid - half
        ask = bid + spec.spread_ticks
        return Quote(symbol, spec.tick * bid, spec.tick * ask)

    def quotes(self) -> list[Quote]:
        """Every current quote."""
        return [q for s in self._specs if (q := self.quote(s)) is not None]

    def on_quotes(self, listener: Callable[[Sequence[Quote]], None]) -> None:
        """Call ``listener`` with the new quotes after every step (the LP checks crosses)."""
        self._listeners.append(listener)

    def set_mid(self, symbol: str, price: Decimal) -> None:
        """Move a symbol's mid to ``price`` (tests and scripted scenarios)."""
        spec = self._specs[symbol]
        self._mid[symbol] = spec.ticks(price)

    async def publish(self, symbols: Iterable[str] | None = None) -> list[Quote]:
        """Write the current quotes through the sink and notify listeners."""
        chosen = list(symbols) if symbols is not None else list(self._specs)
        out = [q for s in chosen if (q := self.quote(s)) is not None]
        for quote in out:
            await self._sink(quote.symbol, quote_to_dict(quote))
        self.last_published_at = self._clock.now()
        for listener in self._listeners:
            listener(out)
        return out

    async def step(self) -> list[Quote]:
        """Move every mid by a Gaussian number of ticks (never below one spread), then publish."""
        for symbol, spec in self._specs.items():
            move = round(self._rng.gauss(0.0, spec.sigma_ticks))
            self._mid[symbol] = max(spec.spread_ticks * 2, self._mid[symbol] + move)
        self.steps += 1
        return await self.publish()

    async def run(self, interval_s: float, stop: asyncio.Event) -> None:
        """Step every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.step()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                continue
