"""The event feed port: "these accounts have new events in the database", to every listener.

The db writer announces the accounts of each batch it committed; every API process
listens and wakes the live streams that follow one of them, which then read the new
events from the database in audit-chain order (``chain_seq``). The feed carries hints,
not the events: it may drop or repeat one (a listener that reconnects misses what was
announced meanwhile) without a stream losing or repeating an event, because the stream
always reads "after the last position it sent" from the durable record.

Implementations: ``InMemoryFeed`` (below; one process) and ``RabbitMQFeed`` (a fanout
exchange, one exclusive queue per listener).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import orjson

__all__ = ["EventFeed", "FeedHandler", "InMemoryFeed", "Listening", "decode_hint", "encode_hint"]

log = logging.getLogger("execflow.backends.feed")

FeedHandler = Callable[[frozenset[str]], Awaitable[None]]
"""Called with the account ids of one announcement; must return quickly."""


def encode_hint(account_ids: Iterable[str]) -> bytes:
    """The wire form of an announcement."""
    return orjson.dumps(sorted(set(account_ids)))


def decode_hint(body: bytes) -> frozenset[str] | None:
    """The account ids of an announcement, or None when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, list) or not all(isinstance(a, str) for a in data):
        return None
    return frozenset(data)


class Listening(Protocol):
    """A running listener."""

    async def stop(self) -> None:
        """Stop listening."""
        ...


class EventFeed(Protocol):
    """Best-effort fan-out of "new events for these accounts"."""

    async def connect(self) -> None:
        """Open connections; idempotent."""
        ...

    async def close(self) -> None:
        """Stop every listener and disconnect."""
        ...

    async def announce(self, account_ids: Iterable[str]) -> None:
        """Tell every current listener; raises ``BusError`` when the broker is away."""
        ...

    async def listen(self, handler: FeedHandler) -> Listening:
        """Call ``handler`` for every announcement from now on."""
        ...


class _Listener:
    def __init__(self, feed: InMemoryFeed, handler: FeedHandler) -> None:
        self._feed = feed
        self.handler = handler

    async def stop(self) -> None:
        self._feed._listeners.discard(self)


class InMemoryFeed:
    """The feed in one process: announcements go to the listeners' handlers directly."""

    def __init__(self) -> None:
        self._listeners: set[_Listener] = set()

    async def connect(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Forget every listener."""
        self._listeners.clear()

    async def announce(self, account_ids: Iterable[str]) -> None:
        """Call each listener's handler (a failing one is logged, never the announcer's)."""
        accounts = frozenset(account_ids)
        if not accounts:
            return
        for listener in list(self._listeners):
            try:
                await listener.handler(accounts)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.error("event feed listener failed", exc_info=True)

    async def listen(self, handler: FeedHandler) -> Listening:
        """Add a listener."""
        listener = _Listener(self, handler)
        self._listeners.add(listener)
        return listener
