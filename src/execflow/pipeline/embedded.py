"""The whole pipeline in one process: dispatcher, seven workers, db writer (and an LP).

Runs on whatever backends the services were opened with: in-memory queues and state
with SQLite (the embedded deployment, the demo, the unit tests), or RabbitMQ, Redis
and PostgreSQL (integration tests, a single-host install). Every component logs to its
own file through the one ``LogSystem`` of the services.

::

    async with open_services(settings, logs) as services:
        pipeline = EmbeddedPipeline(services, lp=Simulator(...))
        await pipeline.start()
        ... OrderIntake(services).open_market(...) ...
        await pipeline.drain()
        await pipeline.stop()

Start order: the state is rebuilt from the database if it is empty (``STATE:REBUILT``),
then the db writer, the workers, the dispatcher and last the LP start, so nothing is
produced before its consumer is listening. Stop runs in reverse: the LP stops sending,
then each stage drains before the one it feeds stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from execflow.backends.memory_bus import InMemoryBus
from execflow.pipeline.dbwriter import DbWriter, db_writer_spec
from execflow.pipeline.dispatcher import dispatcher_consumer
from execflow.pipeline.rebuild import RebuildReport, rebuild_if_needed
from execflow.pipeline.runner import Runner
from execflow.pipeline.services import Services
from execflow.pipeline.workers import worker_consumers

__all__ = ["EmbeddedPipeline", "LpAdapter"]

_SUPERVISOR = "supervisor"
_POLL_S = 0.02
_QUIET_POLLS = 5


class LpAdapter(Protocol):
    """What plays the LP: consumes ``provider_requests``, publishes to ``reports``."""

    async def start(self) -> None:
        """Start consuming requests."""
        ...

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop consuming; publish what is in flight."""
        ...


class EmbeddedPipeline:
    """Dispatcher, seven workers and db writer on one set of services."""

    def __init__(
        self,
        services: Services,
        *,
        lp: LpAdapter | None = None,
        rebuild: bool = True,
    ) -> None:
        self.services = services
        self.lp = lp
        self._rebuild = rebuild
        self.db_writer = DbWriter(services)
        self.db_writer_runner = Runner(services, db_writer_spec(services, self.db_writer))
        self.workers = [Runner(services, spec) for spec in worker_consumers(services)]
        self.dispatcher = Runner(services, dispatcher_consumer(services))
        self.rebuilt: RebuildReport | None = None
        self._log = services.logger(_SUPERVISOR)
        self._started = False

    @property
    def runners(self) -> list[Runner]:
        """Every consumer, in start order."""
        return [self.db_writer_runner, *self.workers, self.dispatcher]

    def consumed_queues(self) -> list[str]:
        """The queues this pipeline consumes (``provider_requests`` too with an LP)."""
        queues = [runner.spec.queue for runner in self.runners]
        if self.lp is not None:
            queues.append(self.services.queues.provider_requests)
        return queues

    async def start(self) -> None:
        """Rebuild the state if needed, then start consumers, then the LP."""
        if self._started:
            return
        services = self.services
        if self._rebuild:
            self.rebuilt = await rebuild_if_needed(
                services.state, services.database, services.settings.seed_file, self._log
            )
        for runner in self.runners:
            await runner.start()
        if self.lp is not None:
            await self.lp.start()
        self._started = True
        self._log.info(
            "PIPELINE:STARTED",
            consumers=len(self.runners),
            lp=self.lp is not None,
            broker=type(services.bus).__name__,
            state=type(services.state).__name__,
        )

    async def drain(self, timeout_s: float = 30.0, until: Callable[[], bool] | None = None) -> None:
        """Wait until every consumed queue is empty and nothing is in flight.

        On the in-memory bus this is exact (delayed retries included) and re-raises the
        first exception a handler raised. On RabbitMQ it polls the ready counts and the
        runners' in-flight and handled counts until all stand still for 100 ms; a parked message
        waiting in a delay queue is not seen, so pass ``until`` to wait for an outcome.
        ``TimeoutError`` after ``timeout_s``.
        """
        bus = self.services.bus
        async with asyncio.timeout(timeout_s):
            if isinstance(bus, InMemoryBus):
                await bus.join(*self.consumed_queues())
                while until is not None and not until():
                    await asyncio.sleep(_POLL_S)
                    await bus.join(*self.consumed_queues())
                return
            quiet, last = 0, -1
            while quiet < _QUIET_POLLS:
                await asyncio.sleep(_POLL_S)
                busy = any(runner.in_flight for runner in self.runners)
                for queue in self.consumed_queues():
                    busy = busy or await bus.queue_depth(queue) > 0
                # a message prefetched but not yet handled shows in no count: wait for
                # the handled totals to stand still too
                progress = sum(runner.log.stats.count("processed") for runner in self.runners)
                done = until is None or until()
                quiet = quiet + 1 if not busy and done and progress == last else 0
                last = progress

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop the LP, then each stage after the one feeding it (in-flight work drains)."""
        if not self._started:
            return
        self._started = False
        drain_s = self.services.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        if self.lp is not None:
            await self.lp.stop(drain_s)
        await self.dispatcher.stop(drain_s)
        await asyncio.gather(*(runner.stop(drain_s) for runner in self.workers))
        await self.db_writer_runner.stop(drain_s)
        await self.db_writer.close()
        self._log.info("PIPELINE:STOPPED")
