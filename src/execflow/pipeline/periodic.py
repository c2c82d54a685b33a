"""One coroutine run now and then every ``interval_s``, until stopped.

The dispatcher's timers (the queue sampler, the stuck-order watch) share this loop: a
step that fails with an :class:`~execflow.errors.ExecflowError` (a server away) is
reported to ``on_error`` and tried again on the next tick; anything else is a bug and
ends the task, where asyncio's unhandled-exception logging shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from execflow.errors import ExecflowError

__all__ = ["Periodic"]


class Periodic:
    """Runs ``step`` now and every ``interval_s`` in a named task, from ``start`` to ``stop``."""

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        interval_s: float,
        *,
        on_error: Callable[[ExecflowError], None],
        on_success: Callable[[], None] | None = None,
    ) -> None:
        self._name = name
        self._step = step
        self._interval_s = interval_s
        self._on_error = on_error
        self._on_success = on_success
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the step now and every ``interval_s`` (a second call while running: no-op)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Cancel the task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except ExecflowError as exc:
                self._on_error(exc)
            else:
                if self._on_success is not None:
                    self._on_success()
            await asyncio.sleep(self._interval_s)
