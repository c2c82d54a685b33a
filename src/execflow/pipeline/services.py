"""The bundle of ports and tools every pipeline component is built from.

The composition root (an entry point, or a test) builds ``Settings`` and a ``LogSystem``
once, then opens the services::

    async with open_services(settings, logs) as services:
        runner = Runner(services, dispatcher_consumer(services))
        ...

``open_services`` connects the database, the state store and the bus in that order and
closes them in reverse (the bus first, so no consumer touches a closed store). Nothing
here is global but the garbage collector's thresholds (``settings.gc_thresholds``), which
``open_services`` sets for the process: with Python's defaults (700, 10, 10) the full
collections a busy pipeline triggers stalled the event loop for tens of ms, the whole of
the p99 at half rate in ``execflow bench`` (docs/pipeline.md, "Garbage collection").
The memo of decoded reference data is a field of ``Services`` (``services.decoded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from execflow.backends.bus import Bus, QueueNames
from execflow.backends.database import Database
from execflow.backends.factory import make_bus, make_database, make_feed, make_state_store
from execflow.backends.feed import EventFeed
from execflow.backends.state import ReplicatedStore, StateStore
from execflow.clock import Clock, IdGenerator, SystemClock, UuidIds
from execflow.logs.events import EventLogger
from execflow.logs.setup import LogSystem
from execflow.pipeline.decoded import DecodedRefdata
from execflow.settings import Settings

if TYPE_CHECKING:
    # only annotations: prometheus_client loads where metrics are configured (cli.run)
    from execflow.metrics import Metrics

__all__ = ["Services", "open_services"]


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a runner or handler needs, passed down from the composition root."""

    settings: Settings
    bus: Bus
    state: StateStore
    database: Database
    logs: LogSystem
    clock: Clock
    ids: IdGenerator
    queues: QueueNames
    metrics: Metrics | None = None
    feed: EventFeed | None = None
    """Where the db writer announces the accounts it wrote events for (live streams)."""
    decoded: DecodedRefdata = field(default_factory=DecodedRefdata)
    """The decoded reference data of this process (``pipeline.decoded``): built with the
    services, shared by every component they are passed to (``dataclasses.replace`` keeps
    it), never by two ``Services``."""

    @property
    def instance(self) -> int:
        """The process's instance number (``worker_open-2.log`` for 2)."""
        return self.logs.instance

    def logger(self, component: str) -> EventLogger:
        """The event logger of ``component`` (``dispatcher``, ``worker_open``, ...)."""
        return self.logs.logger(component)


@asynccontextmanager
async def open_services(
    settings: Settings,
    logs: LogSystem,
    *,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    metrics: Metrics | None = None,
    bus: Bus | None = None,
    state: StateStore | None = None,
    database: Database | None = None,
    feed: EventFeed | None = None,
) -> AsyncIterator[Services]:
    """Build (from ``settings`` unless given), connect, yield, then close every port.

    Ports passed in are connected and closed here too (their ``connect`` is idempotent),
    so a test can hand over an ``InMemoryBus`` it keeps a reference to.
    """
    gc.set_threshold(*settings.gc_thresholds)
    bus = bus if bus is not None else make_bus(settings)
    state = state if state is not None else make_state_store(settings)
    database = database if database is not None else make_database(settings)
    feed = feed if feed is not None else make_feed(settings)
    async with AsyncExitStack() as stack:
        await database.connect()
        stack.push_async_callback(database.close)
        await state.connect()
        stack.push_async_callback(state.close)
        await bus.connect()
        stack.push_async_callback(bus.close)
        await feed.connect()
        stack.push_async_callback(feed.close)
        if metrics is not None:
            await stack.enter_async_context(_counters_in_metrics(metrics, logs, state))
        yield Services(
            settings=settings,
            bus=bus,
            state=state,
            database=database,
            logs=logs,
            clock=clock or SystemClock(),
            ids=ids or UuidIds(),
            queues=bus.queues,
            metrics=metrics,
            feed=feed,
        )


_METRICS_REFRESH_S = 5.0


@asynccontextmanager
async def _counters_in_metrics(
    metrics: Metrics, logs: LogSystem, state: StateStore
) -> AsyncIterator[None]:
    """The logging layer's counters, and a replicated store's, in the process's metrics.

    A process serving its own endpoint refreshes them at each scrape; under ``run all``
    (multiprocess mode) nobody scrapes this process, so they are refreshed on a timer.
    Only a store that waits for replicas (Redis Cluster) adds its replication counts.
    """
    # loaded with the metrics (see TYPE_CHECKING)
    from execflow.metrics import LogSnapshot, ReplicationSnapshot

    counters = logs.counters

    def snapshot() -> LogSnapshot:
        return LogSnapshot({logs.file: counters.lines}, counters.write_failures, counters.dropped)

    metrics.watch_logs(snapshot)
    if isinstance(state, ReplicatedStore):
        replicated = state

        def replication() -> ReplicationSnapshot:
            return ReplicationSnapshot(
                replicated.under_replicated_writes, replicated.replicas_by_node
            )

        metrics.watch_replication(replication)
    if not metrics.multiprocess:
        yield
        return

    async def refresh() -> None:
        while True:
            metrics.refresh()
            await asyncio.sleep(_METRICS_REFRESH_S)

    task = asyncio.get_running_loop().create_task(refresh(), name="metrics-refresh")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.refresh()
