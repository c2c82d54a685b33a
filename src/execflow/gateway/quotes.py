"""Market data from an LP into the state store: the latest bid/ask per symbol, with its time.

A quote is a state, not an event: when the store is slower than the LP's updates, only
the newest quote of a symbol is written (one writer task, updates coalesced), so a burst
of incrementals never queues up work. The document is the one the simulator writes
(``{"bid", "ask"}``) plus ``time`` (ISO 8601, UTC, when the gateway received it) and
``provider``; the intake refuses a quote older than ``quote_max_age_s`` as stale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from execflow.backends.state import StateStore
from execflow.clock import Clock
from execflow.errors import StoreError
from execflow.gateway.fixmap import QuoteUpdate
from execflow.logs.events import EventLogger

__all__ = ["QuoteWriter"]


class QuoteWriter:
    """Keeps the best bid/ask per symbol and writes changed ones to the state store."""

    def __init__(self, state: StateStore, log: EventLogger, clock: Clock, provider: str) -> None:
        self._state = state
        self._log = log
        self._clock = clock
        self._provider = provider
        self._book: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self._dirty: dict[str, dict[str, Any]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._updated = asyncio.Event()

    def latest(self, symbol: str) -> tuple[Decimal | None, Decimal | None]:
        """The last bid and ask received for ``symbol`` (None: never)."""
        return self._book.get(symbol, (None, None))

    async def wait_complete(self, symbols: Sequence[str]) -> None:
        """Wait until a bid and an ask arrived for each of ``symbols``."""
        while any(None in self.latest(symbol) for symbol in symbols):
            self._updated.clear()
            await self._updated.wait()

    def update(self, updates: list[QuoteUpdate]) -> None:
        """Apply bid/ask changes (on the loop); complete quotes are written soon."""
        self._updated.set()
        now = self._clock.now().isoformat()
        for update in updates:
            bid, ask = self._book.get(update.symbol, (None, None))
            bid = update.bid if update.bid is not None else bid
            ask = update.ask if update.ask is not None else ask
            self._book[update.symbol] = (bid, ask)
            if bid is None or ask is None:
                continue
            self._dirty[update.symbol] = {
                "bid": str(bid),
                "ask": str(ask),
                "time": now,
                "provider": self._provider,
            }
            self._log.stats.incr("quotes_received")
        self._ensure_writer()

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a reference to a task of the gateway until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait until every pending quote is written (tests, shutdown)."""
        while self._dirty or (self._writer is not None and not self._writer.done()):
            self._ensure_writer()
            if self._writer is not None:
                await asyncio.shield(self._writer)

    def _ensure_writer(self) -> None:
        writer = self._writer
        if self._dirty and (writer is None or writer.done()):
            self._writer = asyncio.get_running_loop().create_task(self._write())
            self._writer.add_done_callback(self._writer_done)

    def _writer_done(self, task: asyncio.Task[None]) -> None:
        if self._writer is task:
            self._writer = None
        self._ensure_writer()

    async def _write(self) -> None:
        while self._dirty:
            batch, self._dirty = self._dirty, {}
            for symbol, document in batch.items():
                try:
                    await self._state.put_price(symbol, document)
                except StoreError as exc:
                    # the next update re-sends the symbol; a quote is never worth a retry loop
                    self._log.stats.incr("quote_write_failures")
                    if self._log.stats.count("quote_write_failures") % 100 == 1:
                        self._log.warning("LPGW:QUOTE_NOT_STORED", symbol=symbol, error=str(exc))
                    continue
                self._log.stats.incr("quotes_written")
