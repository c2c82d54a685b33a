"""A commit whose answer was lost: did it land all the same?

A commit that timed out may still run: Redis executes what was already in its socket
once it answers again (a frozen server), and a retried call then conflicts with its own
first attempt. So after a ``StoreError`` (a ``VersionConflict`` included) the intake asks
here: the order is read back once the store answers; it holds exactly what the commit
wrote -> applied (``INTAKE:COMMIT_LANDED``); it still has the version read -> not applied
(a conflict retries, an outage is raised to the caller); else -> unknown, a CRITICAL
``INTAKE:COMMIT_UNKNOWN`` line naming the order, for an operator to reconcile.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from execflow.backends.state import StateStore
from execflow.clock import Clock
from execflow.domain import intake as rules
from execflow.domain.codec import order_to_dict
from execflow.errors import StoreError, VersionConflict
from execflow.logs.events import EventLogger
from execflow.pipeline.retry import RetryPolicy

__all__ = ["LostCommitAnswers"]


class LostCommitAnswers:
    """Resolves a commit that raised: applied, not applied, or unknown (logged)."""

    def __init__(
        self,
        state: StateStore,
        log: EventLogger,
        retry: RetryPolicy,
        timeout_s: float,
        clock: Clock,
    ) -> None:
        self._state = state
        self._clock = clock
        self._log = log
        self._retry = retry
        self._timeout_s = timeout_s
        self._rng = random.Random()

    async def landed(self, order_version: int, accepted: rules.Accepted, exc: StoreError) -> bool:
        """Whether the commit of ``accepted`` over ``order_version`` was applied after all."""
        order = accepted.order
        lifecycle_id = accepted.request.lifecycle_id
        outage = not isinstance(exc, VersionConflict)
        if outage and not await self._store_answers():
            hint = "the state store did not come back: this order may hold a reservation"
            self._log.critical(
                "INTAKE:COMMIT_UNKNOWN", exc=exc, lifecycle_id=lifecycle_id, hint=hint
            )
            return False
        found = await self._state.get_order(order.account_id, order.order_id)
        if found is None or found.version == order_version:
            return False
        written = _as_stored(order_to_dict(order))
        if found.version == order_version + 1 and found.data == written:
            kind = type(exc).__name__
            self._log.info("INTAKE:COMMIT_LANDED", lifecycle_id=lifecycle_id, error_type=kind)
            return True
        if outage:
            hint = "the order changed since: check whether this request was applied"
            self._log.critical(
                "INTAKE:COMMIT_UNKNOWN",
                exc=exc,
                lifecycle_id=lifecycle_id,
                found_version=found.version,
                hint=hint,
            )
        return False

    async def _store_answers(self) -> bool:
        """Wait (with backoff, at most the timeout on the injected clock) until the store answers.

        A successful round trip also means every command the store had already received
        (the timed-out commit's included) has run: a read after it sees their effect.
        """
        deadline = self._clock.monotonic() + self._timeout_s
        attempt = 0
        while True:
            try:
                await self._state.ping()
            except StoreError:
                attempt += 1
                if self._clock.monotonic() >= deadline:
                    return False
                await asyncio.sleep(self._retry.delay_s(attempt, self._rng.random()))
                continue
            return True


def _as_stored(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as the state store gives it back (JSON types: lists, not tuples)."""
    stored: dict[str, Any] = orjson.loads(orjson.dumps(data))
    return stored
