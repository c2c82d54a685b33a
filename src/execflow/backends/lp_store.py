"""Where the LP gateways keep their execution-quality records (``lp_executions``).

One row per request sent to an LP (``execflow.domain.lpquality.LpExecution``), written
by that LP's gateway as the request goes out and as its reports come in; read by
``execflow lp quality``. Implementation: ``SqlLpExecutionStore``
(``execflow.backends.sql_lp``), on the engine of the pipeline's ``SqlDatabase``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

from execflow.domain.lpquality import LpExecution

__all__ = ["LpExecutionStore"]


class LpExecutionStore(Protocol):
    """The records of requests sent to LPs."""

    async def upsert(self, executions: Sequence[LpExecution]) -> int:
        """Insert or replace each record (keyed by lifecycle id); return how many were written."""
        ...

    async def get(self, lifecycle_id: str) -> LpExecution | None:
        """One record, or None."""
        ...

    def iter(
        self,
        since: datetime | None = None,
        lp: str | None = None,
        batch_size: int = 1000,
    ) -> AsyncIterator[LpExecution]:
        """Records sent at or after ``since`` (of one LP), by send time, read in batches."""
        ...
