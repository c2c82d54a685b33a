"""The simulator as its own process (``execflow simulate``), against any backends.

Without a scenario it plays the LP until told to stop. With one (``orders > 0``) it
also loads the demo's reference data, drives the scenario through the intake, waits
until the distributed pipeline is quiet, and reconciles.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from execflow.apps.scenario import Progress, ScenarioConfig, ScenarioDriver, ScenarioResult
from execflow.backends.bus import Bus
from execflow.backends.database import Database
from execflow.pipeline.intake import OrderIntake
from execflow.pipeline.reconcile import ReconcileReport, reconcile
from execflow.pipeline.seed import apply_seed
from execflow.pipeline.services import Services
from execflow.sim.config import LpConfig
from execflow.sim.feed import PriceFeed
from execflow.sim.refdata import demo_seed
from execflow.sim.runtime import Simulator

__all__ = ["SimulateOptions", "SimulateOutcome", "simulate", "wait_quiet"]

_POLL_S = 0.05
_RECONCILE_QUIET_S = 2.0  # as the fault harness waits before its own checks


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    """LP behaviour, and the scenario to drive (none when ``scenario.orders`` is 0)."""

    lp: LpConfig = field(default_factory=LpConfig)
    scenario: ScenarioConfig = field(default_factory=lambda: ScenarioConfig(orders=0))
    accounts: int = 20
    seed: int = 42
    tick_interval_s: float = 0.02
    quiet_timeout_s: float = 120.0
    fix_port: int | None = None
    """Serve the LP as a FIX 4.4 acceptor on 127.0.0.1:port instead of on the bus."""
    fix_sender_comp_id: str = "SIMLP"
    fix_target_comp_id: str = "EXECFLOW"
    fix_password: str | None = None


@dataclass(frozen=True, slots=True)
class SimulateOutcome:
    """What a scenario run ended with."""

    scenario: ScenarioResult
    reconciliation: ReconcileReport


async def wait_quiet(
    bus: Bus,
    queues: list[str],
    database: Database | None = None,
    timeout_s: float = 120.0,
    quiet_polls: int = 3,
    quiet_s: float = 0.0,
) -> None:
    """Poll until every queue is empty (and the event count stable) ``quiet_polls`` times
    in a row, and for at least ``quiet_s``.

    Works on any bus; messages being handled by another process are not visible, which
    is why several quiet polls in a row are required, and, before a reconciliation, a
    stretch of time longer than a batch of the db writer: on a saturated box one took
    over 0.5 s, its messages held unacknowledged (not counted in the queue), and 6 polls
    of 50 ms had ended inside it (a stressed fault run reconciled a database one batch
    behind the state store).
    """
    loop = asyncio.get_running_loop()
    quiet = 0
    still_since = loop.time()
    last_events = -1
    async with asyncio.timeout(timeout_s):
        while quiet < quiet_polls or loop.time() - still_since < quiet_s:
            await asyncio.sleep(_POLL_S)
            busy = False
            for queue in queues:
                if await bus.queue_depth(queue) > 0:
                    busy = True
                    break
            if database is not None:
                events = await database.count_events()
                busy = busy or events != last_events
                last_events = events
            quiet = 0 if busy else quiet + 1
            if busy:
                still_since = loop.time()


def pipeline_queues(bus: Bus) -> list[str]:
    """Every queue the pipeline consumes (the DLQ excluded)."""
    return [q for q in bus.queues.all() if q != bus.dlq_name]


async def simulate(
    services: Services,
    options: SimulateOptions,
    stop: asyncio.Event,
    progress: Progress | None = None,
) -> SimulateOutcome | None:
    """Play the LP until ``stop`` (no scenario), or drive the scenario and reconcile.

    ``progress`` hears the scenario's phases (``orders``, ``settle``) as it advances.
    """
    if options.fix_port is not None:
        return await _simulate_fix(services, options, stop, progress)
    sim = Simulator(
        services.bus,
        services.state,
        services.logger("simulator"),
        options.lp,
        seed=options.seed,
        tick_interval_s=options.tick_interval_s,
        clock=services.clock,
        metrics=services.metrics,
    )
    await sim.start()
    try:
        if options.scenario.orders <= 0:
            await stop.wait()
            return None
        return await _scenario(services, sim.feed, sim.lp.idle, options, progress)
    finally:
        await sim.stop(services.settings.shutdown_timeout_s)


async def _simulate_fix(
    services: Services,
    options: SimulateOptions,
    stop: asyncio.Event,
    progress: Progress | None = None,
) -> SimulateOutcome | None:
    """The LP as a FIX acceptor; a scenario (if any) reaches it through a running gateway."""
    from execflow.sim.fixlp import FixLpSession, FixSimulator  # loads the FIX engine

    session = FixLpSession(
        port=options.fix_port or 0,
        sender_comp_id=options.fix_sender_comp_id,
        target_comp_id=options.fix_target_comp_id,
        password=options.fix_password,
    )
    sim = FixSimulator(
        services.logger("simulator"),
        options.lp,
        session,
        services.clock,
        services.ids,
        seed=options.seed,
        tick_interval_s=options.tick_interval_s,
    )
    await sim.start()
    try:
        if options.scenario.orders <= 0:
            await stop.wait()
            return None
        return await _scenario(services, sim.feed, sim.lp.idle, options, progress)
    finally:
        await sim.stop(services.settings.shutdown_timeout_s)


async def _scenario(
    services: Services,
    feed: PriceFeed,
    lp_idle: Callable[[], Awaitable[None]],
    options: SimulateOptions,
    progress: Progress | None = None,
) -> SimulateOutcome:
    rng = random.Random(options.seed + 2)
    seed = demo_seed(options.accounts, rng, feed)
    await apply_seed(seed, services.state, services.database)
    queues = pipeline_queues(services.bus)

    async def drain() -> None:
        await wait_quiet(services.bus, queues, timeout_s=options.quiet_timeout_s)
        await lp_idle()

    async def backlog() -> int:
        return sum([await services.bus.queue_depth(q) for q in queues])

    intake = OrderIntake(services)
    driver = ScenarioDriver(
        intake,
        services.state,
        feed,
        seed,
        options.scenario,
        rng,
        drain,
        progress=progress,
        backlog=backlog,
    )
    try:
        result = await driver.run()
    finally:
        await intake.shutdown()
    await lp_idle()
    await wait_quiet(
        services.bus,
        queues,
        services.database,
        options.quiet_timeout_s,
        quiet_polls=6,
        quiet_s=_RECONCILE_QUIET_S,
    )
    report = await reconcile(services.database, services.state)
    return SimulateOutcome(result, report)
