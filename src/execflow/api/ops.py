"""What the ops console reads: readiness, queues, component health, LP quality, trails.

Nothing here knows about HTTP: ``routes_ops`` renders what these return. What one API
process can see: the broker's queue depths and consumer counts (the bus port), the
state store, the database (LP execution records), its own metrics registry (under
``run all`` with a multiprocess directory, every process's; else only its own) and the
log directory it is configured with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from execflow.api.context import ApiContext
from execflow.backends.bus import WORKER_KINDS
from execflow.backends.sql import SqlDatabase
from execflow.backends.sql_lp import SqlLpExecutionStore
from execflow.domain.lpquality import LpQuality, QualitySummary
from execflow.errors import ConfigError
from execflow.logtools.trace import TraceResult, trace_order
from execflow.metrics.summary import ComponentFigures, RegistryFigures, read_figures
from execflow.pipeline.services import Services

__all__ = [
    "ComponentHealth",
    "QueueState",
    "component_health",
    "lp_quality",
    "queue_states",
    "readiness_checks",
    "registry_figures",
    "trace_lines",
]


async def readiness_checks(ctx: ApiContext) -> dict[str, Any]:
    """``/readyz``'s checks: True per server that answers, else the error's type name."""
    services = ctx.services
    checks: dict[str, Any] = {"state_rebuilt": ctx.readiness.state_rebuilt}
    probes: tuple[tuple[str, Callable[[], Awaitable[object]]], ...] = (
        ("state_store", services.state.ping),
        ("database", services.database.schema_version),
        ("broker", lambda: services.bus.queue_depth(services.queues.provider_requests)),
    )
    for name, probe in probes:
        try:
            await probe()
        except Exception as exc:  # noqa: BLE001 - any failure is "not ready", named below
            checks[name] = type(exc).__name__  # no message: it may name a server
        else:
            checks[name] = True
    return checks


@dataclass(frozen=True, slots=True)
class QueueState:
    """One queue as the broker sees it now; ``error`` names a failed look-up."""

    queue: str
    component: str
    depth: int | None
    consumers: int | None
    error: str | None = None


def _queues(services: Services) -> list[tuple[str, str]]:
    """``(queue, component consuming it)``: the pipeline's, then each routed LP's, DLQ last."""
    names = services.queues
    routing = services.settings.lp_routing
    found: list[tuple[str, str]] = [(names.reports, "dispatcher")]
    found += [(names.worker(kind), f"worker_{kind}") for kind in WORKER_KINDS]
    lps = sorted(
        {*services.settings.lps, *routing.routes.values()}
        | ({routing.default} if routing.default else set())
    )
    if routing.enabled:
        found += [(names.provider_requests_of(lp), f"lp_{lp}") for lp in lps]
    else:
        found.append((names.provider_requests, "lp"))
    found.append((names.db_updates, "db_writer"))
    found.append((names.dlq, "dlq"))
    return found


async def queue_states(services: Services) -> list[QueueState]:
    """Depth and consumers of every queue of the pipeline (a failed look-up is named)."""
    states = []
    for queue, component in _queues(services):
        try:
            depth, consumers = await services.bus.queue_counts(queue)
        except Exception as exc:  # noqa: BLE001 - shown per queue, the others still answer
            states.append(QueueState(queue, component, None, None, type(exc).__name__))
        else:
            states.append(QueueState(queue, component, depth, consumers))
    return states


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """A component: its queue (up = someone consumes it) and its metrics, where known."""

    component: str
    queue: str | None
    consumers: int | None
    depth: int | None
    figures: ComponentFigures | None

    @property
    def up(self) -> bool | None:
        """True while its queue has a consumer; None where no queue tells (the DLQ, the API)."""
        if self.queue is None or self.consumers is None or self.component == "dlq":
            return None
        return self.consumers > 0


def _metric_name(label: str) -> str:
    """A metrics label as a component name (workers are labelled by their kind)."""
    return f"worker_{label}" if label in WORKER_KINDS else label


def component_health(
    queues: list[QueueState], figures: RegistryFigures | None
) -> list[ComponentHealth]:
    """Every queue's component, with its figures, then components only the metrics know."""
    known = {} if figures is None else figures.components
    by_name = {_metric_name(label): f for label, f in known.items()}
    rows = [
        ComponentHealth(q.component, q.queue, q.consumers, q.depth, by_name.pop(q.component, None))
        for q in queues
        if q.component != "dlq"
    ]
    rows += [ComponentHealth(name, None, None, None, f) for name, f in sorted(by_name.items())]
    return rows


def registry_figures(services: Services) -> RegistryFigures | None:
    """The process's metrics figures; None when it has no metrics registry."""
    metrics = services.metrics
    return None if metrics is None else read_figures(metrics.registry)


async def lp_quality(
    services: Services, since: datetime | None = None, lp: str | None = None
) -> list[LpQuality]:
    """``execflow lp quality``'s fold over the records the LP gateways wrote."""
    database = services.database
    if not isinstance(database, SqlDatabase):
        raise ConfigError("LP quality is read from the SQL database", setting="database_url")
    summary = QualitySummary()
    async for execution in SqlLpExecutionStore(database).iter(since=since, lp=lp):
        summary.add(execution)
    return summary.result()


async def trace_lines(services: Services, order_id: str) -> TraceResult:
    """``execflow logs trace ORDER_ID`` over the configured log directory, off the loop.

    One process (``jobs=1``): forking a pool from a threaded server is not safe.
    """
    directory = services.settings.log_dir
    if not directory.is_dir():
        return TraceResult(order_id, [], [], 0)
    return await asyncio.to_thread(trace_order, directory, order_id, jobs=1)
