"""The intake's sends: a committed action's effects go out now, or later in the background.

Once the intake committed an action, the order exists and its margin is reserved: the
commit cannot be taken back, so its effects must go out. When the publish fails (the
broker or the state store away) the action is kept here, logged ``INTAKE:SEND_DEFERRED``
and re-sent with the error-retry backoff, oldest first, until it goes through
(``INTAKE:RESENT``). Re-publishing is harmless: message ids are deterministic, the
lifecycle registration is idempotent, and the LP answers a re-sent ClOrdID once.
``shutdown()`` (or ``flush()``) waits for them; what is still unsent when it gives up is
logged CRITICAL with its order ids (they live in this process's memory, not in a durable
outbox). How many wait is the ``execflow_intake_unsent`` gauge.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass

from execflow.domain import intake as rules
from execflow.domain.effects import Effect, LpRequest
from execflow.errors import ExecflowError
from execflow.logs.context import log_context
from execflow.logs.events import EventLogger, error_fields
from execflow.pipeline.effects import publish_effects
from execflow.pipeline.retry import RetryPolicy
from execflow.pipeline.services import Services

__all__ = ["IntakeSends"]


@dataclass(slots=True)
class _Deferred:
    """A committed action whose effects are still to be published."""

    accepted: rules.Accepted
    trace_id: str
    since: float
    """When the send was deferred (``Clock.monotonic``)."""
    attempts: int = 1


class IntakeSends:
    """Publishes accepted actions' effects; keeps and re-sends those that failed."""

    def __init__(self, services: Services, log: EventLogger, retry: RetryPolicy) -> None:
        self._services = services
        self._clock = services.clock
        self._log = log
        self._retry = retry
        self._rng = random.Random()
        self._deferred: dict[str, _Deferred] = {}  # by lifecycle id, oldest first
        self._resender: asyncio.Task[None] | None = None
        self._count_unsent()

    def _count_unsent(self) -> None:
        """Keep ``execflow_intake_unsent`` equal to what waits here."""
        if self._services.metrics is not None:
            self._services.metrics.set_intake_unsent(len(self._deferred))

    @property
    def deferred(self) -> int:
        """Committed actions whose request is still waiting to be sent."""
        return len(self._deferred)

    async def try_send(self, accepted: rules.Accepted, trace_id: str) -> bool:
        """Send now; on failure keep it for the background resender. True when sent."""
        try:
            await self._send(accepted, trace_id)
        except Exception as exc:  # noqa: BLE001 - the commit stands whatever failed: send later
            lid = accepted.request.lifecycle_id
            self._deferred[lid] = _Deferred(accepted, trace_id, self._clock.monotonic())
            self._count_unsent()
            self._log.retried(
                "INTAKE:SEND_DEFERRED",
                lifecycle_id=lid,
                kind=accepted.request.kind.value,
                deferred=len(self._deferred),
                outage=isinstance(exc, ExecflowError),
                **error_fields(exc, with_traceback=not isinstance(exc, ExecflowError)),
            )
            if self._resender is None or self._resender.done():
                self._resender = asyncio.create_task(self._resend_loop(), name="intake-resend")
            return False
        return True

    async def _send(self, accepted: rules.Accepted, trace_id: str) -> None:
        effects: tuple[Effect, ...] = (*accepted.events, LpRequest(accepted.request))
        await publish_effects(self._services, effects, trace_id)

    async def _resend_loop(self) -> None:
        """Re-send deferred effects, oldest first, backing off while the outage lasts."""
        while self._deferred:
            head = next(iter(self._deferred.values()))
            await asyncio.sleep(self._retry.delay_s(head.attempts, self._rng.random()))
            for lid, item in list(self._deferred.items()):
                order = item.accepted.order
                with log_context(trace_id=item.trace_id, order_id=order.order_id):
                    try:
                        await self._send(item.accepted, item.trace_id)
                    except Exception as exc:  # noqa: BLE001 - logged; retried after backoff
                        item.attempts += 1
                        self._log.retried(
                            "INTAKE:RESEND_FAILED",
                            lifecycle_id=lid,
                            attempts=item.attempts,
                            deferred=len(self._deferred),
                            **error_fields(exc, with_traceback=False),
                        )
                        break  # still away: back off before trying the others
                    del self._deferred[lid]
                    self._count_unsent()
                    self._log.success(
                        "INTAKE:RESENT",
                        processing_time_ms=round((self._clock.monotonic() - item.since) * 1000, 3),
                        lifecycle_id=lid,
                        kind=item.accepted.request.kind.value,
                        attempts=item.attempts + 1,
                        user=order.account_id,
                    )

    async def flush(self, timeout_s: float | None = None) -> int:
        """Wait until every deferred send went out (at most ``timeout_s``); how many remain."""
        task = self._resender
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout_s)
        return len(self._deferred)

    async def shutdown(self, timeout_s: float = 30.0) -> None:
        """Give deferred sends ``timeout_s`` to go out; log CRITICAL what never went."""
        remaining = await self.flush(timeout_s)
        if self._resender is not None and not self._resender.done():
            self._resender.cancel()
            await asyncio.gather(self._resender, return_exceptions=True)
        if remaining:
            orders = sorted({d.accepted.order.order_id for d in self._deferred.values()})
            self._log.critical(
                "INTAKE:UNSENT",
                unsent=remaining,
                order_ids=",".join(orders),
                hint="committed to the state store but never sent: reconcile these orders",
            )
