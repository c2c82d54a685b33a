"""Cross-cutting work around the runner's loop, as small before/after hooks.

The runner consumes, calls the handler, settles the message and writes its outcome line;
what else a consumer needs around that (Prometheus metrics, the state-store check after
an outage) is a hook, as dramatiq's middleware is: ``before`` runs ahead of the handler
(an exception there is the message's, retried like the handler's own), ``raised`` sees
what the handler raised, ``settled`` runs once the message was acked, parked, retried or
dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from execflow.errors import StoreError, VersionConflict
from execflow.logs.events import EventLogger
from execflow.pipeline.dbfence import wait_for_db_writer
from execflow.pipeline.rebuild import rebuild_after_outage
from execflow.pipeline.services import Services

if TYPE_CHECKING:
    # only annotations: prometheus_client loads where metrics are configured (cli.run)
    from execflow.metrics import Metrics

__all__ = ["MetricsHook", "Outcome", "RunnerHook", "StateCheckHook", "default_hooks"]

Outcome = Literal["success", "skipped", "parked", "dead_lettered", "retried"]
"""How a message was settled (``retried`` includes an outage's back-off)."""


class RunnerHook(Protocol):
    """Work a runner does around each message, beside its own loop."""

    async def before(self) -> None:
        """Before the handler runs; raising here fails the message like the handler."""

    def raised(self, exc: Exception) -> None:
        """The handler (or a ``before``) raised ``exc``; the retry policy decides next."""

    def settled(self, outcome: Outcome, elapsed_ms: float, reason: str | None) -> None:
        """The message was settled; ``reason`` is the DLQ reason of a dead letter."""


class MetricsHook:
    """Outcome counters and processing times in the process's Prometheus metrics."""

    def __init__(self, metrics: Metrics, component: str, worker: str | None) -> None:
        self._metrics = metrics
        self._component = component
        self._worker = worker
        metrics.declare_component(component, worker=worker is not None)

    async def before(self) -> None:
        """Nothing before the handler."""

    def raised(self, exc: Exception) -> None:
        """Nothing: the outcome is counted once settled."""

    def settled(self, outcome: Outcome, elapsed_ms: float, reason: str | None) -> None:
        """Count the outcome: a worker's by outcome, every component's processing time."""
        metrics = self._metrics
        if outcome == "retried":
            metrics.retried(self._component)
            return
        if outcome == "dead_lettered" and reason is not None:
            metrics.dead_lettered(reason)
        seconds = elapsed_ms / 1000.0
        if self._worker is not None:
            metrics.worker_outcome(self._component, outcome, seconds)
        elif outcome != "parked":
            metrics.observe_processing(self._component, seconds)


class StateCheckHook:
    """After a state-store error, check (and rebuild) the store before the next message.

    An outage, or an order or account missing, may mean the store lost its state: the
    next message first rebuilds it from the database if it came back empty.
    """

    def __init__(self, services: Services, log: EventLogger) -> None:
        self._services = services
        self._log = log
        self._suspect = False
        self._check = asyncio.Lock()

    async def before(self) -> None:
        """Rebuild the store first when the last error made it suspect (one check at once)."""
        if not self._suspect:
            return
        async with self._check:
            if not self._suspect:
                return
            services = self._services
            await rebuild_after_outage(
                services.state,
                services.database,
                services.settings.seed_file,
                self._log,
                fence=lambda: wait_for_db_writer(services, self._log),
                clock=services.clock,
            )
            self._suspect = False

    def raised(self, exc: Exception) -> None:
        """A store error (a version conflict is not one) makes the store suspect."""
        if isinstance(exc, StoreError) and not isinstance(exc, VersionConflict):
            self._suspect = True

    def settled(self, outcome: Outcome, elapsed_ms: float, reason: str | None) -> None:
        """Nothing after the settle."""


def default_hooks(
    services: Services, log: EventLogger, component: str, worker: str | None
) -> Sequence[RunnerHook]:
    """Every runner's hooks: the state check, and metrics when the process has them."""
    hooks: list[RunnerHook] = [StateCheckHook(services, log)]
    if services.metrics is not None:
        hooks.append(MetricsHook(services.metrics, component, worker))
    return hooks
