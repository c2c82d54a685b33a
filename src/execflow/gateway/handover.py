"""Calls from the FIX engine's threads onto the event loop, handed over in batches.

``loop.call_soon_threadsafe`` per message wakes the loop once per message (a write to
its self-pipe) and each wake-up is a turn through the loop. A ``Handover`` queues the
calls and wakes the loop only when none is pending: a burst of messages arriving while
the loop is busy is run in one turn, in arrival order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Handover"]


class Handover:
    """Runs callbacks queued from any thread on one event loop, in order, in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self._lock = threading.Lock()
        self._woken = False

    def call(self, callback: Callable[..., object], *args: Any) -> None:
        """Queue ``callback(*args)`` for the loop (from any thread); dropped once it closed."""
        with self._lock:
            self._calls.append((callback, args))
            if self._woken:
                return
            self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: nothing will run there any more
            with self._lock:
                self._calls.clear()
                self._woken = False

    def _run(self) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
            self._woken = False
        for callback, args in calls:
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - as the loop treats a failing callback
                self._loop.call_exception_handler(
                    {"message": f"handed-over callback {callback!r} failed", "exception": exc}
                )
