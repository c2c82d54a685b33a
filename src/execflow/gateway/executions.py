"""The gateway's execution-quality records into the database, off the session's path.

A record changes three or four times (sent, first report, fills, final report); each
change replaces the one waiting for the same lifecycle id, and one background task
writes what waits every ``interval_s`` (at once when ``batch_max`` wait) as one
statement. Nothing here slows a request or a report: the database being slow or away
only makes records wait (their count is bounded: beyond ``kept`` the oldest are
dropped, counted and logged) and the write is retried with backoff. Quality figures,
not books: a gateway killed -9 loses the changes of its last ``interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

from execflow.backends.lp_store import LpExecutionStore
from execflow.domain.lpquality import LpExecution
from execflow.errors import DatabaseError
from execflow.logs.events import EventLogger

__all__ = ["ExecutionWriter"]

_BACKOFF_MAX_S = 5.0


class ExecutionWriter:
    """Coalesces record changes per lifecycle id and writes them in batches."""

    def __init__(
        self,
        store: LpExecutionStore,
        log: EventLogger,
        *,
        interval_s: float = 0.2,
        batch_max: int = 500,
        kept: int = 100_000,
    ) -> None:
        self._store = store
        self._log = log
        self._interval_s = interval_s
        self._batch_max = batch_max
        self._kept = kept
        self._dirty: OrderedDict[str, LpExecution] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._full = asyncio.Event()

    @property
    def waiting(self) -> int:
        """Records changed and not written yet."""
        return len(self._dirty)

    def put(self, execution: LpExecution) -> None:
        """Write ``execution`` soon (replacing an unwritten older state of it)."""
        self._dirty[execution.lifecycle_id] = execution
        self._dirty.move_to_end(execution.lifecycle_id)
        if len(self._dirty) > self._kept:
            self._dirty.popitem(last=False)
            self._log.stats.incr("quality_records_dropped")
            if self._log.stats.count("quality_records_dropped") % 1000 == 1:
                self._log.warning("LPGW:QUALITY_DROPPED", waiting=len(self._dirty))
        if len(self._dirty) >= self._batch_max:
            self._full.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="lpgw-quality-writer"
            )

    async def flush(self) -> None:
        """Wait until every change so far is written (retrying while the database fails)."""
        while self._dirty or (self._task is not None and not self._task.done()):
            self._full.set()
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run())
            await asyncio.shield(self._task)

    async def close(self, timeout_s: float) -> None:
        """Write what waits (bounded by ``timeout_s``), then stop; what is left is logged."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.flush()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._dirty:
            self._log.warning("LPGW:QUALITY_NOT_STORED", records=len(self._dirty))

    async def _run(self) -> None:
        while self._dirty:
            if len(self._dirty) < self._batch_max:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._interval_s)
            self._full.clear()
            batch: list[LpExecution] = []
            while self._dirty and len(batch) < self._batch_max:
                batch.append(self._dirty.popitem(last=False)[1])
            try:
                await self._store.upsert(batch)
            except DatabaseError as exc:
                for execution in batch:
                    # a newer state that arrived meanwhile wins
                    self._dirty.setdefault(execution.lifecycle_id, execution)
                self._failures += 1
                self._log.stats.incr("quality_write_failures")
                if self._failures % 50 == 1:
                    self._log.warning(
                        "LPGW:QUALITY_WRITE_FAILED", records=len(batch), error=str(exc)
                    )
                backoff_s = self._interval_s * 2 ** min(self._failures, 10)
                await asyncio.sleep(min(_BACKOFF_MAX_S, backoff_s))
                continue
            self._failures = 0
            self._log.stats.incr("quality_records_written", len(batch))
