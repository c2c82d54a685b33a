"""One ``asyncio.Lock`` per key, created on first use and dropped when nobody holds it.

A worker runs up to ``concurrency`` handlers at once; two of them on one account would
both read version ``n``, and one would lose the compare-and-set and start again. Holding
the account's lock around load-transition-commit makes handlers of one consumer take
turns on an account instead (they still run side by side on different accounts); the
compare-and-set stays, for other processes. asyncio has no keyed lock and the small
packages that offer one add nothing over these few lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["KeyedLock"]


class KeyedLock:
    """``async with locks.hold(key):`` — one holder per key at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def __len__(self) -> int:
        """Keys held or waited for right now."""
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Wait for ``key``'s lock, hold it for the block, drop it when unused."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            left = self._users[key] - 1
            if left:
                self._users[key] = left
            else:
                del self._users[key], self._locks[key]
